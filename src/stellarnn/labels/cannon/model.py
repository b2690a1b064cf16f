"""The Cannon: a quadratic-in-labels, per-pixel, data-driven model of continuum-normalised spectra.

Ness et al. 2015 (ApJ 808, 16, §2) model the normalised flux of star n at pixel λ as

    f_nλ = θ_λᵀ q(ℓ_n) + noise,   noise variance σ_nλ² + s_λ²,

with q(ℓ) = [1, ℓ_1 … ℓ_D, ℓ_i ℓ_j (i ≤ j)] the quadratic label vector (1 + D + D(D+1)/2
coefficients per pixel; 276 for D = 22) of the labels measured from a pivot, σ_nλ the pixel's
measurement error and s_λ² an intrinsic scatter per pixel that absorbs what the quadratic model cannot
describe.

*Training step* (per pixel, with the labels known): maximise the likelihood

    ln L_λ = −½ Σ_n [ (f_nλ − θ_λᵀ q_n)² / (σ_nλ² + s_λ²) + ln(σ_nλ² + s_λ²) ]

over θ_λ and s_λ².  For fixed s_λ² this is weighted linear least squares; for fixed θ_λ it is a 1-D
problem in s_λ².  Both are solved for all pixels at once: when every pixel's σ is the same for all
training spectra and no pixel is masked (noise-free synthetic spectra, σ = 0, in particular) the
weights within a pixel are equal, θ does not depend on s², one Cholesky factor of XᵀX (X: the design
matrix, rows q(ℓ_n)) serves every pixel and s_λ² = max(0, mean_n r_nλ² − σ_λ²) in closed form; otherwise the two steps alternate a few
times on pixel blocks (batched normal equations, the scatter by the fixed-point iteration
s² ← Σ_n v_n² (r_n² − σ_n²) / Σ_n v_n², v_n = 1/(σ_n² + s²), whose fixed point is ∂ ln L/∂s² = 0).

*Test step* (per spectrum, with the model known): the labels minimise
χ²(ℓ) = Σ_λ (f_λ − θ_λᵀ q(ℓ))² / (σ_λ² + s_λ²), a non-linear least-squares problem solved for a batch
of spectra with the package's projected Levenberg-Marquardt step
(:mod:`stellarnn.numerics.levenberg_marquardt`), labels bounded to the training range, started from the
training-set mean (the pivot) and from the labels of the linear part of the model (the model
linearised about the pivot, solved by weighted least squares); the lower χ² wins.  Formal errors are
sqrt(diag H⁻¹) of the Gauss-Newton Hessian H = JᵀWJ at the solution (the least-squares covariance),
reported with the reduced χ² of the fit.

Labels are offset by the training mean (Ness et al. 2015 pivot about the training labels) and divided
by half the central 95 % range of the training labels, for the conditioning of the normal equations
only: an affine change of the labels leaves the span of the quadratic model, and so its fit, unchanged.
An optional ridge penalty Λ Σ_n w_nλ Σ_{k≥1} θ_λk² (Tikhonov; Λ is relative to the weighted second
moments of the design, which are O(0.01-1) for the scaled labels) regularises a training set that is
small against the number of coefficients.

The flux must be normalised the same way at training and test time (the model knows nothing about
continua); :mod:`bench.labels` trains on the noise-free synthetic flux / true continuum and tests on
noisy flux / true continuum.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...numerics.levenberg_marquardt import DampingSchedule, clip_to_bounds, formal_errors, levenberg_marquardt_step
from ...train import load_checkpoint, register_model, save_checkpoint

MODEL_KIND = "cannon"
#: damping of the test step's Levenberg-Marquardt iteration
CANNON_DAMPING = DampingSchedule(initial=1e-3, accepted=0.3, rejected=10.0, minimum=1e-9, maximum=1e7)
#: half the central 95 % range of a training label is its scale (a label with no range gets scale 1)
SCALE_PERCENTILES = (2.5, 97.5)
#: relative floor on the diagonal of the training normal equations (numerical only: keeps a rank-deficient
#: design solvable; 1e-12 of the mean diagonal changes no well-posed solution)
NORMAL_EQUATIONS_FLOOR = 1e-12
#: floor on a training pixel's variance σ_nλ² + s_λ² (1e-7 in normalised flux: numerical only, it keeps the weights
#: of noise-free pixels without scatter finite)
VARIANCE_FLOOR = 1e-14


def n_coefficients(n_labels: int) -> int:
    """Coefficients per pixel of the quadratic model: 1 + D + D(D+1)/2 (Ness et al. 2015)."""
    return 1 + n_labels + n_labels * (n_labels + 1) // 2


def quadratic_design(x: torch.Tensor) -> torch.Tensor:
    """The quadratic label vectors q(x) = [1, x_i, x_i x_j (i ≤ j, row-major upper triangle)], (n, D) -> (n, P)."""
    d = x.shape[1]
    i, j = torch.triu_indices(d, d)
    return torch.cat([torch.ones_like(x[:, :1]), x, x[:, i] * x[:, j]], dim=1)


@dataclass
class CannonLabels:
    """Result of :meth:`CannonModel.predict_labels` (physical units, columns in ``label_names`` order)."""

    labels: np.ndarray        #: (n, D)
    label_errors: np.ndarray  #: (n, D) formal 1σ, sqrt(diag H⁻¹)
    chi2: np.ndarray          #: (n,)
    dof: np.ndarray           #: (n,) usable pixels − D
    reduced_chi2: np.ndarray  #: (n,) chi2 / dof
    at_bound: np.ndarray      #: (n, D) bool: label pinned to the training range
    fitted: np.ndarray        #: (n,) bool: False for a spectrum without a usable pixel (NaN labels)


def _noise_variance(flux: np.ndarray, ivar) -> tuple[np.ndarray, np.ndarray]:
    """(usable mask, σ²) from flux and ivar: ivar = inf means noise-free (σ² = 0); ivar <= 0, NaN ivar or
    non-finite flux mark a pixel unusable (σ² set to 0 there, never used).  ``ivar=None``: σ² is a (1, L)
    row of zeros (broadcast; no (N, L) array is made for noise-free training spectra)."""
    if ivar is None:
        return np.isfinite(flux), np.zeros((1, flux.shape[1]))
    ivar = np.asarray(ivar, dtype=np.float64)
    if ivar.shape != flux.shape:
        raise ValueError(f"flux {flux.shape} and ivar {ivar.shape} differ in shape")
    good = np.isfinite(flux) & (ivar > 0) & ~np.isnan(ivar)
    with np.errstate(divide="ignore"):
        sigma2 = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0)
    return good, sigma2


@register_model(MODEL_KIND)
class CannonModel(torch.nn.Module):
    """The Cannon's quadratic model for ``n_pixels`` pixels and the labels ``label_names``.

    Built untrained (zero coefficients) from its hyper-parameters, as :func:`stellarnn.train.load_checkpoint`
    rebuilds it; :meth:`fit` returns a trained one.  The buffers are float32 (the checkpoint's precision:
    a float32 flux model is exact to 1e-7, far below any noise); every computation runs in float64.
    """

    def __init__(self, label_names, n_pixels: int):
        super().__init__()
        self.label_names = [str(n) for n in label_names]
        if len(set(self.label_names)) != len(self.label_names) or not self.label_names:
            raise ValueError(f"label names must be unique and non-empty, got {self.label_names}")
        d = len(self.label_names)
        self.n_pixels = int(n_pixels)
        self.register_buffer("coefficients", torch.zeros(self.n_pixels, n_coefficients(d)))  # θ_λ (L, P)
        self.register_buffer("scatter_variance", torch.zeros(self.n_pixels))  # s_λ² (inf: pixel unused)
        self.register_buffer("pivot", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        self.register_buffer("label_min", torch.zeros(d))
        self.register_buffer("label_max", torch.zeros(d))

    @property
    def hyperparameters(self) -> dict:
        return {"label_names": list(self.label_names), "n_pixels": self.n_pixels}

    # ------------------------------------------------------------------ training step
    @classmethod
    def fit(cls, flux, ivar, labels, label_names, regularization: float = 0.0, n_scatter_iterations: int = 4,
            pixel_block: int | None = None) -> "CannonModel":
        """Train the model on spectra with known labels (the training step).

        Parameters
        ----------
        flux : array (N, L)
            Continuum-normalised flux of the training spectra.
        ivar : array (N, L) or None
            Inverse variance; ``inf`` (or ``None`` for all) means noise-free, 0 / NaN flux an unusable pixel.
        labels : array (N, D)
            Physical labels, in ``label_names`` order (finite).
        label_names : sequence of str
        regularization : float
            Ridge Λ on the non-constant coefficients (see the module docstring); 0: plain maximum likelihood.
        n_scatter_iterations : int
            Alternations of the θ and s² steps where the weights differ between spectra (heteroscedastic
            or masked training data); the closed form needs none.
        pixel_block : int, optional
            Pixels per batched solve in the alternating case (default: about 2e7 / (N P) for memory).

        Returns
        -------
        CannonModel (eval mode).  A pixel with fewer usable training spectra than coefficients gets zero
        coefficients and infinite scatter, so that the test step ignores it.
        """
        flux = np.asarray(flux, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        if flux.ndim != 2 or labels.ndim != 2 or labels.shape[0] != flux.shape[0]:
            raise ValueError(f"flux (N, L) and labels (N, D) expected, got {flux.shape} and {labels.shape}")
        if labels.shape[1] != len(label_names):
            raise ValueError(f"labels have {labels.shape[1]} columns for {len(label_names)} label names")
        if not np.isfinite(labels).all():
            raise ValueError("training labels must be finite")
        if regularization < 0:
            raise ValueError("regularization must be >= 0")
        model = cls(label_names, flux.shape[1])
        n, d = labels.shape
        p = n_coefficients(d)
        if n < p:
            raise ValueError(f"{n} training spectra for {p} coefficients per pixel: the quadratic model needs more")
        good, sigma2 = _noise_variance(flux, ivar)
        lo, hi = np.percentile(labels, SCALE_PERCENTILES, axis=0)
        pivot = labels.mean(0)
        scale = np.where(hi > lo, 0.5 * (hi - lo), 1.0)
        x = torch.as_tensor((labels - pivot) / scale)
        design = quadratic_design(x)  # (N, P) float64
        ridge = torch.full((p,), float(regularization), dtype=torch.float64)
        ridge[0] = 0.0  # the constant term is not penalised
        f = torch.as_tensor(flux if good.all() else np.where(good, flux, 0.0))
        g = torch.as_tensor(good)
        s2v = torch.as_tensor(sigma2)
        uniform = bool(good.all()) and bool((sigma2 == sigma2[:1]).all())
        if uniform:
            theta, s2 = _fit_equal_weights(design, f, s2v[0], ridge)
        else:
            block = pixel_block or max(1, int(2e7 // (n * p)))
            theta = torch.zeros(flux.shape[1], p, dtype=torch.float64)
            s2 = torch.zeros(flux.shape[1], dtype=torch.float64)
            for a in range(0, flux.shape[1], block):
                sl = slice(a, a + block)
                theta[sl], s2[sl] = _fit_weighted(design, f[:, sl], g[:, sl], s2v[:, sl], ridge,
                                                  n_scatter_iterations)
            short = g.sum(0) < p
            theta[short], s2[short] = 0.0, float("inf")
        with torch.no_grad():
            model.coefficients.copy_(theta)
            model.scatter_variance.copy_(s2)
            model.pivot.copy_(torch.as_tensor(pivot))
            model.scale.copy_(torch.as_tensor(scale))
            model.label_min.copy_(torch.as_tensor(labels.min(0)))
            model.label_max.copy_(torch.as_tensor(labels.max(0)))
        model.training_summary = {"n_train": int(n), "n_coefficients_per_pixel": int(p),
                                  "regularization": float(regularization), "equal_weights_closed_form": uniform,
                                  "design_condition_number": float(torch.linalg.cond(design.T @ design)),
                                  "median_scatter": float(np.sqrt(np.median(s2.numpy())))}
        return model.eval()

    # ------------------------------------------------------------------ test step
    def _parts(self):
        """Constant c (L,), linear b (L, D) and symmetric quadratic Q (L, D, D) terms of θ, float64."""
        theta = self.coefficients.double()
        d = len(self.label_names)
        c, b = theta[:, 0], theta[:, 1:d + 1]
        i, j = torch.triu_indices(d, d)
        q = torch.zeros(theta.shape[0], d, d, dtype=torch.float64)
        q[:, i, j] = theta[:, d + 1:]
        q = 0.5 * (q + q.transpose(1, 2))  # x_i x_j (i < j) split evenly over Q_ij and Q_ji
        return c, b, q

    def spectra(self, labels) -> np.ndarray:
        """The model flux θ_λᵀ q(ℓ) at physical labels (n, D) -> (n, L)."""
        x = (torch.as_tensor(np.asarray(labels, dtype=np.float64)) - self.pivot.double()) / self.scale.double()
        with torch.inference_mode():
            return (quadratic_design(x) @ self.coefficients.double().T).numpy()

    def predict_labels(self, flux, ivar, n_iterations: int = 60, chunk_size: int = 64,
                       extra_starts=None) -> CannonLabels:
        """Labels of continuum-normalised spectra (the test step), batched over spectra.

        Parameters
        ----------
        flux, ivar : array (n, L)
            Flux normalised as the training flux was, and its inverse variance (0, NaN ivar or
            non-finite flux: pixel ignored; ``inf``: noise-free).
        n_iterations : int
            Levenberg-Marquardt steps per start at most; a spectrum stops earlier when it has stalled twice
            in a row (an accepted step gained less than 0.01 max(1, χ²/dof) in χ², or the damping reached 1e5).
        chunk_size : int
            Spectra per batch (the Jacobian is chunk × L × D float64).
        extra_starts : array (k, D), optional
            Further starting labels (physical units) besides the training mean and the linearised solution;
            the lowest χ² over all starts wins.

        Returns
        -------
        CannonLabels
        """
        if not bool(self.coefficients.any()):
            raise ValueError("the model is not trained (all coefficients zero)")
        flux = np.asarray(flux, dtype=np.float64)
        if flux.ndim != 2 or flux.shape[1] != self.n_pixels:
            raise ValueError(f"flux must be (n, {self.n_pixels}), got {flux.shape}")
        good, sigma2 = _noise_variance(flux, ivar)
        s2 = self.scatter_variance.double().numpy()
        good &= np.isfinite(s2)[None, :]
        with np.errstate(divide="ignore"):
            weight = np.where(good, 1.0 / np.where(good, sigma2 + s2[None, :], 1.0), 0.0)
        if np.isinf(weight).any():
            raise ValueError("a pixel without noise and without model scatter has infinite weight: give a finite ivar")
        d = len(self.label_names)
        pivot, scale = self.pivot.double(), self.scale.double()
        starts = []
        if extra_starts is not None:
            extra = np.atleast_2d(np.asarray(extra_starts, dtype=np.float64))
            if extra.shape[1] != d:
                raise ValueError(f"extra_starts must be (k, {d})")
            starts = list((torch.as_tensor(extra) - pivot) / scale)
        n = flux.shape[0]
        out_x = np.full((n, d), np.nan)
        out_err = np.full((n, d), np.nan)
        out_chi2 = np.full(n, np.nan)
        has = good.any(1)
        parts = self._parts()
        lo = (self.label_min.double() - pivot) / scale
        hi = (self.label_max.double() - pivot) / scale
        rows = np.flatnonzero(has)
        with torch.inference_mode():
            for a in range(0, rows.size, chunk_size):
                sel = rows[a:a + chunk_size]
                x, err, chi2 = self._fit_chunk(torch.as_tensor(np.where(good[sel], flux[sel], 0.0)),
                                               torch.as_tensor(weight[sel]), parts, lo, hi, starts, n_iterations)
                out_x[sel], out_err[sel], out_chi2[sel] = x.numpy(), err.numpy(), chi2.numpy()
        at_bound = (out_x <= lo.numpy() + 1e-9) | (out_x >= hi.numpy() - 1e-9)
        labels = out_x * scale.numpy() + pivot.numpy()
        dof = good.sum(1) - d
        with np.errstate(divide="ignore", invalid="ignore"):
            reduced = np.where(dof > 0, out_chi2 / np.maximum(dof, 1), np.nan)
        return CannonLabels(labels=labels, label_errors=out_err * scale.numpy(), chi2=out_chi2, dof=dof,
                            reduced_chi2=reduced, at_bound=at_bound & has[:, None], fitted=has)

    def _fit_chunk(self, f, w, parts, lo, hi, extra_starts, n_iterations):
        """Levenberg-Marquardt in scaled labels for one chunk: (x (B, D), formal errors (B, D), χ² (B,)).

        Each row iterates until it has stalled twice in a row (see :meth:`predict_labels`) and then drops
        out of the batch, so a row's result does not depend on the other rows.
        """
        c, b, q = parts
        theta_t = self.coefficients.double().T.contiguous()  # (P, L)
        bsz, d = f.shape[0], lo.numel()
        n_pix = b.shape[0]
        q_flat = q.permute(2, 0, 1).reshape(d, n_pix * d)  # Q x as one matrix product, (B, L·D) contiguous
        sw = w.sqrt()
        dof = ((w > 0).sum(1) - d).clamp_min(1).double()

        def chi2_rows(x, rows):
            return (((quadratic_design(x) @ theta_t) - f[rows]) ** 2 * w[rows]).sum(1)

        def jacobian(x):  # ∂model/∂x = b + 2 Q x, (B, L, D)
            return (x @ q_flat).view(-1, n_pix, d).mul_(2.0).add_(b)

        def project(x):
            return clip_to_bounds(x, lo, hi)

        # linearised start: the labels of the linear part about the pivot, by weighted least squares
        normal = torch.einsum("bl,li,lj->bij", w, b, b) + 1e-12 * torch.eye(d, dtype=torch.float64)
        rhs = torch.einsum("bl,li->bi", w * (f - c[None]), b)
        starts = [torch.zeros(bsz, d, dtype=torch.float64).clamp(lo, hi), project(torch.linalg.solve(normal, rhs))]
        starts += [project(s.expand(bsz, d).clone()) for s in extra_starts]
        all_rows = torch.arange(bsz)
        best_x, best_chi2 = None, None
        for x in starts:
            x = x.clone()
            chi2 = chi2_rows(x, all_rows)
            lam = CANNON_DAMPING.start(bsz, dtype=torch.float64)
            stalled_before = torch.zeros(bsz, dtype=torch.bool)
            active = all_rows
            for _ in range(n_iterations):
                if active.numel() == 0:
                    break
                xa = x[active]
                residual = ((quadratic_design(xa) @ theta_t) - f[active]) * sw[active]
                step = levenberg_marquardt_step(xa, chi2[active], lam[active], jacobian(xa) * sw[active, :, None],
                                                residual, lambda t, rows=active: chi2_rows(t, rows), project,
                                                CANNON_DAMPING)
                x[active], chi2[active], lam[active] = step.params, step.chi2, step.damping
                # stalled: an accepted step gained less than 0.01 in χ² (in units of the reduced χ² when it
                # exceeds 1: a shift of about 0.1 σ), or the damping has grown so large that steps vanish
                tol = 0.01 * (step.chi2 / dof[active]).clamp_min(1.0)
                stalled = (step.accepted & (step.gain < tol)) | (step.damping >= 1e5)
                done = stalled & stalled_before[active]
                stalled_before[active] = stalled
                active = active[~done]
            if best_x is None:
                best_x, best_chi2 = x, chi2
            else:
                take = chi2 < best_chi2
                best_x = torch.where(take[:, None], x, best_x)
                best_chi2 = torch.where(take, chi2, best_chi2)
        err = formal_errors(jacobian(best_x) * sw[:, :, None])
        return best_x, err, best_chi2

    # ------------------------------------------------------------------ checkpoint
    def save(self, path, metrics: dict | None = None, provenance: dict | None = None) -> Path:
        """Write the model in the project's checkpoint format (:func:`stellarnn.train.save_checkpoint`)."""
        summary = dict(getattr(self, "training_summary", {}))
        return save_checkpoint(path, self, MODEL_KIND, self.hyperparameters, metrics={**summary, **(metrics or {})},
                               provenance=provenance)

    @classmethod
    def load(cls, path, device: str = "cpu") -> "CannonModel":
        """A model saved by :meth:`save` (``weights_only`` loading, weights strict; the training summary from
        the checkpoint's metrics)."""
        model, payload = load_checkpoint(path, expected_kind=MODEL_KIND, device=device)
        model.training_summary = dict(payload.get("metrics") or {})
        return model


def _fit_equal_weights(design: torch.Tensor, f: torch.Tensor, sigma2: torch.Tensor, ridge: torch.Tensor):
    """Training step when every pixel's weights are equal over the spectra: one factor for all pixels.

    θ = (XᵀX + Λ N I')⁻¹ Xᵀ f (the common weight cancels) and s_λ² = max(0, mean_n r_nλ² − σ_λ²), the
    maximum of ln L_λ over s² at fixed θ.
    """
    n = design.shape[0]
    gram = design.T @ design
    gram = gram + torch.diag(ridge * n + NORMAL_EQUATIONS_FLOOR * gram.diagonal().mean())
    factor = torch.linalg.cholesky(gram)
    theta = torch.cholesky_solve(design.T @ f, factor).T  # (L, P)
    mean_r2 = ((f - design @ theta.T) ** 2).mean(0)
    return theta, (mean_r2 - sigma2).clamp_min(0.0)


def _fit_weighted(design, f, good, sigma2, ridge, n_iterations: int, n_scatter_steps: int = 20):
    """Training step for a block of pixels with unequal weights: alternate weighted least squares for θ
    and the fixed-point iteration for s² (module docstring), batched over the block's pixels.

    Returns θ (l, P) and s² (l,).
    """
    g = good.double()

    def solve(weight):  # (N, l) -> θ (l, P)
        normal = torch.einsum("np,nl,nq->lpq", design, weight, design)
        floor = NORMAL_EQUATIONS_FLOOR * normal.diagonal(dim1=1, dim2=2).mean(1, keepdim=True)
        normal = normal + torch.diag_embed(ridge[None] * weight.sum(0)[:, None] + floor)
        rhs = torch.einsum("np,nl->lp", design, weight * f)
        return torch.linalg.solve(normal, rhs.unsqueeze(-1)).squeeze(-1)

    def scatter(r2, s2):
        for _ in range(n_scatter_steps):
            v = g / (sigma2 + s2[None]).clamp_min(VARIANCE_FLOOR)
            s2 = ((v ** 2 * (r2 - sigma2 * g)).sum(0) / (v ** 2).sum(0).clamp_min(VARIANCE_FLOOR)).clamp_min(0.0)
        return s2

    theta = solve(g)  # unweighted start
    r2 = (f - design @ theta.T) ** 2 * g
    s2 = ((r2 - sigma2 * g).sum(0) / g.sum(0).clamp_min(1)).clamp_min(0.0)
    for _ in range(n_iterations):
        theta = solve(g / (sigma2 + s2[None]).clamp_min(VARIANCE_FLOOR))
        r2 = (f - design @ theta.T) ** 2 * g
        s2 = scatter(r2, s2)
    return theta, s2
