"""One batched, bounded Levenberg-Marquardt step on tensors (the spectrum fitter and the ME inversion).

Every row b of a batch is its own least-squares problem χ²_b(p) = Σ_k r_bk(p)², with r the weighted
residual (model − data)/σ and J = ∂r/∂p.  One step solves the damped normal equations
(Levenberg 1944, Q. Appl. Math. 2, 164; Marquardt 1963, J. SIAM 11, 431, whose scaling by the
diagonal of JᵀJ makes the step invariant to the units of the parameters)

    (JᵀJ + λ diag JᵀJ) δ = −Jᵀ r,

projects the trial point p + δ onto the feasible set (bounds by clipping: a projected
Levenberg-Marquardt step, cf. Kanzow, Yamashita & Fukushima 2004, J. Comput. Appl. Math. 172, 375),
keeps it where χ² decreased, and then lowers λ (accepted) or raises it (rejected) per row
(Press et al. 2007, Numerical Recipes, 3rd ed., §15.5.2).  The callers keep their own loops:
starting points, which rows are still active and when a row has converged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class DampingSchedule:
    """How λ evolves: ``initial`` value, factor after an accepted (``accepted``) or rejected (``rejected``)
    step, and the range ``[minimum, maximum]`` it is kept in."""

    initial: float = 1e-2
    accepted: float = 0.1
    rejected: float = 10.0
    minimum: float = 1e-7
    maximum: float = 1e9

    def __post_init__(self):
        if not (0 < self.accepted < 1 < self.rejected and 0 < self.minimum <= self.initial <= self.maximum):
            raise ValueError("damping schedule needs 0 < accepted < 1 < rejected and 0 < minimum <= initial <= maximum")

    def start(self, n_rows: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """λ for ``n_rows`` fresh rows."""
        return torch.full((n_rows,), self.initial, dtype=dtype)

    def update(self, damping: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
        """λ after a step, per row: lowered where ``accepted``, raised elsewhere, kept in range."""
        return torch.where(accepted, damping * self.accepted, damping * self.rejected).clamp(self.minimum, self.maximum)


@dataclass
class StepResult:
    """Outcome of :func:`levenberg_marquardt_step` for every row."""

    params: torch.Tensor    #: (B, P) the trial point where accepted, the old point elsewhere
    chi2: torch.Tensor      #: (B,) χ² at ``params``
    damping: torch.Tensor   #: (B,) λ for the next step
    accepted: torch.Tensor  #: (B,) bool: χ² decreased
    gain: torch.Tensor      #: (B,) decrease of χ² (0 where rejected)


def damped_normal_step(jacobian: torch.Tensor, residual: torch.Tensor, damping: torch.Tensor) -> torch.Tensor:
    """Solve (JᵀJ + λ diag JᵀJ) δ = −Jᵀ r for every row.

    Parameters
    ----------
    jacobian : tensor (B, K, P)
        ∂r/∂p of the weighted residuals.
    residual : tensor (B, K)
        Weighted residuals r = (model − data)/σ.
    damping : tensor (B,)
        λ per row.

    Returns
    -------
    tensor (B, P): the step δ.  A parameter the residuals do not depend on (zero column) gets δ = 0
    (its diagonal is floored at 1e-12 so that the system stays solvable).
    """
    jt = jacobian.transpose(1, 2)
    jtj = jt @ jacobian
    jtr = jt @ residual.unsqueeze(-1)
    diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-12)
    return torch.linalg.solve(jtj + torch.diag_embed(damping[:, None] * diag), -jtr).squeeze(-1)


def levenberg_marquardt_step(params: torch.Tensor, chi2: torch.Tensor, damping: torch.Tensor,
                             jacobian: torch.Tensor, residual: torch.Tensor,
                             chi2_of: Callable[[torch.Tensor], torch.Tensor],
                             project: Callable[[torch.Tensor], torch.Tensor],
                             schedule: DampingSchedule) -> StepResult:
    """One projected Levenberg-Marquardt step for a batch of independent problems.

    Parameters
    ----------
    params : tensor (B, P)
        Current parameters (feasible).
    chi2 : tensor (B,)
        χ² at ``params``.
    damping : tensor (B,)
        λ per row.
    jacobian, residual : tensors (B, K, P) and (B, K)
        At ``params``, as for :func:`damped_normal_step`.
    chi2_of : callable
        (B, P) parameters -> (B,) χ².
    project : callable
        (B, P) parameters -> the nearest feasible parameters (e.g. clipped to bounds).
    schedule : DampingSchedule

    Returns
    -------
    StepResult
    """
    trial = project(params + damped_normal_step(jacobian, residual, damping))
    trial_chi2 = chi2_of(trial)
    accepted = trial_chi2 < chi2
    return StepResult(params=torch.where(accepted[:, None], trial, params),
                      chi2=torch.where(accepted, trial_chi2, chi2),
                      damping=schedule.update(damping, accepted), accepted=accepted,
                      gain=torch.where(accepted, chi2 - trial_chi2, torch.zeros_like(chi2)))


def clip_to_bounds(params: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Project ``params`` (B, P) onto the box ``low <= p <= high`` (bounds (P,), broadcast over rows)."""
    return torch.maximum(torch.minimum(params, high), low)


def formal_errors(jacobian: torch.Tensor) -> torch.Tensor:
    """1σ errors sqrt(diag((JᵀJ)⁻¹)) per row from the weighted Jacobian (B, K, P) at the solution.

    The pseudo-inverse is used, so a parameter the data do not constrain gets a finite (0) error
    instead of an exception; the callers flag such parameters themselves.
    """
    cov = torch.linalg.pinv(jacobian.transpose(1, 2) @ jacobian)
    return torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0).sqrt()
