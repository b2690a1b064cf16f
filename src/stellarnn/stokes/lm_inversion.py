"""Classical Milne-Eddington inversion: batched Levenberg-Marquardt with several starts.

Minimises χ² = Σ_λ,s [(O_s(λ) − M_s(λ; p)) / σ]² over the nine ME parameters p
(:data:`~stellarnn.stokes.milne_eddington.PARAMETER_NAMES`) for many profiles at once: every
profile × start is one row of a batch, the Jacobian comes from forward-mode automatic
differentiation (one dual-number pass per parameter, the Faddeeva function carrying its exact
derivative), and the damped normal equations (Levenberg 1944; Marquardt 1963)

    (JᵀJ + λ diag JᵀJ) δ = −Jᵀ r

are solved for all rows together (the shared step of :mod:`stellarnn.numerics.levenberg_marquardt`);
λ is divided by 10 after an accepted step and multiplied by 10 after a rejected one (Press et al.,
Numerical Recipes, §15.5). Rows stop once the relative χ²
change of accepted steps falls below ``tolerance`` (or χ² per point falls below 1e-8, noiseless data). Starts: a weak-field estimate of the field
(B_LOS from V, B_⊥ and χ from Q, U; Landi Degl'Innocenti & Landolfi 2004, §9.6) and line-core
estimates of v_LOS and the continuum, then fixed alternative fields. The start with the lowest χ²
wins. Formal 1σ errors are σ·diag((JᵀJ)⁻¹)^½ at the solution.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.autograd.forward_ad as fwad

from ..constants import SPEED_OF_LIGHT_KM_S
from ..numerics.levenberg_marquardt import DampingSchedule, clip_to_bounds, formal_errors, levenberg_marquardt_step
from .milne_eddington import N_PARAMETERS, PARAMETER_NAMES, MilneEddington, check_stokes_profiles
from .zeeman import LARMOR_WAVELENGTH_CONSTANT

#: Box constraints of the inversion (units of PARAMETER_UNITS); χ is free and wrapped to [0, 180) at the end.
BOUNDS_LOW = (0.0, 0.0, -1e9, -15.0, 5.0, 0.05, 0.0, 0.0, 0.0)
BOUNDS_HIGH = (6000.0, 180.0, 1e9, 15.0, 150.0, 500.0, 3.0, 3.0, 3.0)
#: λ of the inversion's Levenberg-Marquardt steps: ÷ 10 after an accepted step, × 10 after a rejected one
ME_DAMPING = DampingSchedule(initial=1e-2, accepted=0.1, rejected=10.0, minimum=1e-7, maximum=1e9)


def initial_guesses(stokes: torch.Tensor, model: MilneEddington, n_starts: int = 4) -> torch.Tensor:
    """Starting parameters (n, n_starts, 9) from weak-field and line-core estimates.

    Start 0 is the weak-field estimate; starts 1… replace (B, γ, χ) by fixed alternatives
    ((400 G, 45°/135° by the sign of B_LOS, χ_wf + 90°), (1500 G, 70°/110°, χ_wf + 45°),
    (2500 G, γ_wf, χ_wf + 135°), …): the core-weighted azimuth estimate is unreliable where
    magneto-optical rotation or σ components dominate the core, so the starts span χ.
    """
    dtype = stokes.dtype
    wl = torch.as_tensor(model.wavelengths, dtype=dtype)
    n = stokes.shape[0]
    stokes_i, stokes_q, stokes_u, stokes_v = stokes.unbind(1)
    continuum = stokes_i.amax(dim=1)
    ref = model.lines[0]
    # line-core Doppler shift from the intensity-weighted minimum of the first line (±0.15 Å window)
    window = (wl > ref.wavelength - 0.15) & (wl < ref.wavelength + 0.15)
    depth = (continuum[:, None] - stokes_i).clamp_min(0.0) * window
    depth = depth ** 4
    core = (depth * wl).sum(1) / depth.sum(1).clamp_min(1e-30)
    core = torch.where(depth.sum(1) > 0, core, torch.full_like(core, ref.wavelength))
    v_los = ((core - ref.wavelength) / ref.wavelength * SPEED_OF_LIGHT_KM_S).clamp(-10, 10)
    # weak-field B_LOS: V = −C ḡ B_LOS dI/dλ (least squares over both lines, ḡ per pixel by nearest line)
    didl = torch.gradient(stokes_i, spacing=(wl,), dim=1)[0]
    centres = torch.tensor([line.wavelength for line in model.lines], dtype=dtype)
    nearest = torch.argmin(torch.abs(wl[:, None] - centres[None, :]), dim=1)
    coeff = torch.tensor([LARMOR_WAVELENGTH_CONSTANT * line.wavelength ** 2 * line.effective_lande
                          for line in model.lines], dtype=dtype)[nearest]
    x = -coeff * didl
    b_los = (x * stokes_v).sum(1) / (x * x).sum(1).clamp_min(1e-30)
    # weak-field transverse field from the linear-polarisation amplitude (order-of-magnitude calibration)
    lin = torch.sqrt(stokes_q ** 2 + stokes_u ** 2).amax(1) / continuum
    b_perp = 2500.0 * torch.sqrt(lin / 0.08)
    b_perp = b_perp.clamp(0, 3000)
    b = torch.sqrt(b_los ** 2 + b_perp ** 2).clamp(50.0, 4000.0)
    gamma = torch.rad2deg(torch.atan2(b_perp, b_los)).clamp(5.0, 175.0)
    # azimuth: Q, U at the σ-component positions have the sign opposite to the π core; use the core pixels
    core_w = window.to(dtype) * (continuum[:, None] - stokes_i).clamp_min(0.0)
    q_c, u_c = (stokes_q * core_w).sum(1), (stokes_u * core_w).sum(1)
    chi = (torch.rad2deg(0.5 * torch.atan2(-u_c, -q_c))) % 180.0
    base = torch.stack([b, gamma, chi, v_los, torch.full_like(b, 30.0), torch.full_like(b, 8.0),
                        torch.full_like(b, 0.2), 0.3 * continuum, 0.7 * continuum], dim=1)
    starts = [base]
    sign_up = b_los >= 0
    alternatives = [
        (400.0, torch.where(sign_up, 45.0, 135.0), chi + 90.0),
        (1500.0, torch.where(sign_up, 70.0, 110.0), chi + 45.0),
        (2500.0, gamma, chi + 135.0),
        (800.0, torch.where(sign_up, 20.0, 160.0), chi),
        (200.0, torch.full_like(b, 90.0), chi + 90.0),
    ]
    for k in range(1, n_starts):
        bb, gg, cc = alternatives[(k - 1) % len(alternatives)]
        s = base.clone()
        s[:, 0] = bb
        s[:, 1] = gg
        s[:, 2] = cc
        starts.append(s)
    return torch.stack(starts, dim=1).reshape(n, n_starts, N_PARAMETERS)


def _jacobian(model: MilneEddington, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model (n, M) and Jacobian (n, M, 9) by forward-mode AD, one dual pass per parameter (batched)."""
    n = params.shape[0]
    rep = params.repeat(N_PARAMETERS, 1)
    tangent = torch.eye(N_PARAMETERS, dtype=params.dtype).repeat_interleave(n, dim=0)
    with fwad.dual_level():
        out = model(fwad.make_dual(rep, tangent))
        primal, tang = fwad.unpack_dual(out)
    jac = tang.reshape(N_PARAMETERS, n, -1).permute(1, 2, 0)
    return primal[:n].reshape(n, -1), jac


def _clamp(params: torch.Tensor) -> torch.Tensor:
    """Project onto the box; γ is reflected into [0°, 180°] (γ and −γ are the same field up to
    χ → χ + 180°, to which the model is invariant) and χ wrapped into [0°, 180°)."""
    params = params.clone()
    gamma = torch.remainder(params[:, 1], 360.0)
    params[:, 1] = torch.where(gamma > 180.0, 360.0 - gamma, gamma)
    params[:, 2] = torch.remainder(params[:, 2], 180.0)
    return clip_to_bounds(params, torch.tensor(BOUNDS_LOW, dtype=params.dtype),
                          torch.tensor(BOUNDS_HIGH, dtype=params.dtype))


def levenberg_marquardt(model: MilneEddington, observed: torch.Tensor, start: torch.Tensor, sigma: float = 1e-3,
                        max_iterations: int = 50, tolerance: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor, torch.Tensor]:
    """Batched LM for rows (observed (n, 4, n_λ), start (n, 9)).

    Returns (parameters (n, 9), χ² (n,), formal σ (n, 9), iterations used (n,)).
    """
    n = observed.shape[0]
    obs = observed.reshape(n, -1)
    params = _clamp(start.clone())

    def chi2_of(p: torch.Tensor, rows: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        with torch.no_grad():
            return (((obs[rows] - model(p).reshape(p.shape[0], -1)) / sigma) ** 2).sum(1)

    chi2 = chi2_of(params)
    lam = ME_DAMPING.start(n, obs.dtype)
    active = torch.ones(n, dtype=torch.bool)
    iterations = torch.zeros(n, dtype=torch.long)
    for _ in range(max_iterations):
        idx = torch.nonzero(active).squeeze(1)
        if idx.numel() == 0:
            break
        synth, jac = _jacobian(model, params[idx])
        step = levenberg_marquardt_step(params[idx], chi2[idx], lam[idx], jac / sigma, (synth - obs[idx]) / sigma,
                                        lambda p: chi2_of(p, idx), _clamp, ME_DAMPING)
        rel = step.gain / chi2[idx].clamp_min(1e-30)
        params[idx], chi2[idx], lam[idx] = step.params, step.chi2, step.damping
        iterations[idx] += 1
        # converged: small relative χ² change, a χ² far below the noise (noiseless data), or stuck
        done = ((step.accepted & (rel < tolerance)) | (chi2[idx] < 1e-8 * obs.shape[1])
                | (lam[idx] >= ME_DAMPING.maximum))
        active[idx[done]] = False
    _, jac = _jacobian(model, params)
    return params, chi2, formal_errors(jac / sigma), iterations


def invert_lm(stokes, model: MilneEddington | None = None, sigma: float = 1e-3, n_starts: int = 4,
              max_iterations: int = 50, tolerance: float = 1e-5, chunk_size: int = 64,
              dtype: torch.dtype = torch.float64, progress: bool = False) -> dict[str, np.ndarray]:
    """Invert Stokes profiles (n, 4, n_λ) with multi-start Levenberg-Marquardt.

    Parameters
    ----------
    stokes : array (n, 4, n_λ), continuum units, on ``model.wavelengths``
    model : MilneEddington (default: Hinode SP)
    sigma : float, noise per pixel (continuum units) defining χ²
    n_starts : int, number of starting points per profile (≥ 1)
    chunk_size : int, rows (profile × start) solved together

    Returns
    -------
    dict with the nine parameters (χ wrapped to [0, 180)), their formal errors ``e_<name>``,
    ``chi2_reduced`` and ``iterations``.
    """
    from tqdm.auto import tqdm

    model = model or MilneEddington()
    stokes = check_stokes_profiles(stokes, model.n_wavelengths, dtype)
    if n_starts < 1:
        raise ValueError("n_starts must be >= 1")
    if sigma <= 0:
        raise ValueError("sigma must be > 0")
    n = stokes.shape[0]
    starts = initial_guesses(stokes, model, n_starts).reshape(n * n_starts, N_PARAMETERS)
    observed = stokes.repeat_interleave(n_starts, dim=0)
    params = torch.empty_like(starts)
    chi2 = torch.empty(n * n_starts, dtype=dtype)
    errors = torch.empty_like(starts)
    iters = torch.empty(n * n_starts, dtype=torch.long)
    for lo in tqdm(range(0, n * n_starts, chunk_size), desc="LM inversion", disable=not progress):
        hi = min(lo + chunk_size, n * n_starts)
        params[lo:hi], chi2[lo:hi], errors[lo:hi], iters[lo:hi] = levenberg_marquardt(
            model, observed[lo:hi], starts[lo:hi], sigma, max_iterations, tolerance)
    chi2 = chi2.reshape(n, n_starts)
    best = chi2.argmin(1)
    pick = lambda t: t.reshape(n, n_starts, *t.shape[1:])[torch.arange(n), best]  # noqa: E731
    p, e = pick(params), pick(errors)
    p[:, 2] = p[:, 2] % 180.0
    dof = 4 * model.n_wavelengths - N_PARAMETERS
    out = {name: p[:, k].numpy() for k, name in enumerate(PARAMETER_NAMES)}
    out.update({f"e_{name}": e[:, k].numpy() for k, name in enumerate(PARAMETER_NAMES)})
    out["chi2_reduced"] = (chi2[torch.arange(n), best] / dof).numpy()
    out["iterations"] = pick(iters).numpy()
    return out
