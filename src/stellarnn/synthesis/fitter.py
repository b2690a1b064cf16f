"""Bounded least-squares fit of emulator labels and radial velocity to observed spectra, batched.

The Payne's fitter (Ting et al. 2019) minimises chi^2 over the scaled labels within
[-0.5, 0.5] and the radial velocity with scipy's trust-region reflective method, spectrum
by spectrum.  Here the same problem is solved for a whole batch at once with a projected
Levenberg-Marquardt iteration in torch (the shared step of
:mod:`stellarnn.numerics.levenberg_marquardt`): Jacobians by forward-mode autodiff (vmap over
spectra), per-spectrum damping, bounds by projection, several starting points, the best
chi^2 kept.  Formal errors are sqrt(diag((J^T W J)^-1)) at the solution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..constants import SPEED_OF_LIGHT_KM_S
from ..numerics.levenberg_marquardt import DampingSchedule, clip_to_bounds, formal_errors, levenberg_marquardt_step
from ..spectra.apogee_grid import APOGEE_DLOG10_LAMBDA

RV_SCALE = 100.0  # km/s per unit of the RV parameter
LABEL_MARGIN = 0.0  # bounds are exactly the training range ([-0.5, 0.5] scaled), as in The Payne
#: λ of the fitter's Levenberg-Marquardt steps: × 0.3 after an accepted step, × 10 after a rejected one
FITTER_DAMPING = DampingSchedule(initial=1e-2, accepted=0.3, rejected=10.0, minimum=1e-7, maximum=1e7)


#: default starts and iterations of :func:`fit_spectra`: on 120 held-out spectra fitted with the emulator's own
#: spectra at S/N 50 and 100, 2 Sobol starts + 2 abundance starts + 40 iterations left 1-3 of the fits whose true
#: labels lie inside the emulator's box at a chi^2 above the truth's (local minima of the abundances); 4 + 4 + 60
#: left at most 1, at a chi^2 0.4 above (``bench/labels.py`` -> ``fitter_on_emulator_spectra``), for 3x the time
FIT_STARTS = 4
FIT_ABUNDANCE_STARTS = 4
FIT_ITERATIONS = 60


def doppler_shift(flux: torch.Tensor, rv_kms: torch.Tensor) -> torch.Tensor:
    """Flux of a source moving at ``rv_kms`` on the same log10-lambda grid (linear interpolation).

    A line at rest wavelength lambda0 appears at lambda0 (1 + v/c); on a log-lambda grid this is
    a shift of log10(1 + v/c) / dlog10(lambda) pixels; edge pixels are extended.
    """
    n = flux.shape[-1]
    shift = torch.log10(1 + rv_kms / SPEED_OF_LIGHT_KM_S) / APOGEE_DLOG10_LAMBDA  # (B,)
    pos = torch.arange(n, dtype=flux.dtype, device=flux.device)[None, :] - shift[:, None]
    pos = pos.clamp(0, n - 1)
    lo = pos.floor().long().clamp(max=n - 2)
    frac = pos - lo
    return torch.gather(flux, -1, lo) * (1 - frac) + torch.gather(flux, -1, lo + 1) * frac


def _ccf_peak(template: torch.Tensor, flux: torch.Tensor, weight: torch.Tensor,
              max_kms: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RV (km/s) at the cross-correlation peak of ``flux`` with ``template`` and the peak's height divided by the
    template's weighted norm (comparable between templates for one spectrum); see :func:`cross_correlation_rv`."""
    n_pix = flux.shape[-1]
    kms_per_pixel = SPEED_OF_LIGHT_KM_S * (10 ** APOGEE_DLOG10_LAMBDA - 1)
    k = int(np.ceil(max_kms / kms_per_pixel))
    d = (1 - flux) * weight
    t = 1 - template
    used = weight > 0
    t = t - (t * used).sum(-1, keepdim=True) / used.sum(-1, keepdim=True).clamp_min(1)
    norm = ((t * used) ** 2 * weight).sum(-1).clamp_min(1e-30).sqrt()
    pad = torch.nn.functional.pad(t, (k, k))
    # ccf[:, j] = sum_i d[i] * t[i - (j - k)]  (template shifted redward by j - k pixels)
    windows = pad.unfold(-1, n_pix, 1)  # (n, 2k+1, n_pix), windows[:, j] = t shifted by k - j
    ccf = torch.einsum("np,nsp->ns", d, windows).flip(-1)
    j = ccf.argmax(-1).clamp(1, 2 * k - 1)
    y0, y1, y2 = (ccf.gather(-1, (j + o)[:, None])[:, 0] for o in (-1, 0, 1))
    denom = y0 - 2 * y1 + y2
    frac = torch.where(denom < 0, 0.5 * (y0 - y2) / denom.clamp(max=-1e-30), torch.zeros_like(y1))
    shift_px = (j - k).to(flux.dtype) + frac.clamp(-0.5, 0.5)
    return SPEED_OF_LIGHT_KM_S * (10 ** (shift_px * APOGEE_DLOG10_LAMBDA) - 1), y1 / norm


def cross_correlation_rv(template: torch.Tensor, flux: torch.Tensor, weight: torch.Tensor,
                         max_kms: float = 500.0) -> torch.Tensor:
    """Radial velocity (km/s) by weighted cross-correlation of ``flux`` with ``template``.

    Both are normalised spectra on the APOGEE log-lambda grid; the correlation of
    (1 - flux) with the template shifted by whole pixels, within +-``max_kms``, is maximised
    and refined by a parabola through the peak and its neighbours (a sub-pixel estimate),
    as a starting point for the least-squares fit (APOGEE's Doppler code does the same).
    """
    return _ccf_peak(template, flux, weight, max_kms)[0]


def best_template_rv(templates: torch.Tensor, flux: torch.Tensor, weight: torch.Tensor,
                     max_kms: float = 500.0) -> torch.Tensor:
    """Radial velocity (km/s) from the template, of ``templates`` (K, n_pixels), that correlates best with each
    spectrum of ``flux`` (n, n_pixels): the highest cross-correlation peak per unit template norm wins.

    One mid-grid template misleads the cross-correlation for stars unlike it: an M dwarf's molecular bands
    against a 5700 K template peaked at the +-500 km/s edge (3 of 40 held-out m_dwarfs, whose fits then ended
    at 10-50x the chi^2 of their true labels, ``bench/results/emulator.json`` of 0.6.0).  APOGEE's pipeline
    likewise takes its RVs from the best-matching template of a grid of synthetic spectra (Nidever et al. 2015,
    AJ 150, 173) rather than from one.
    """
    best_rv, best_peak = None, None
    for template in templates:  # K templates (~10), each correlated with the whole batch at once
        rv, peak = _ccf_peak(template.expand_as(flux), flux, weight, max_kms)
        if best_rv is None:
            best_rv, best_peak = rv, peak
        else:
            take = peak > best_peak
            best_rv, best_peak = torch.where(take, rv, best_rv), torch.where(take, peak, best_peak)
    return best_rv


#: scaled (Teff, log g, [M/H]) of the cross-correlation templates of :func:`fit_spectra` (other labels at the centre
#: of their range): five temperatures (~3600-6900 K on the APOGEE-like emulator) for a giant and a dwarf, near-solar
#: metallicity, so that molecular (M dwarf), metal-line (FGK) and hydrogen-line (hot) spectra each find a template
RV_TEMPLATE_LABELS = tuple((teff, logg, 0.25) for teff in (-0.42, -0.3, -0.15, 0.0, 0.25) for logg in (-0.25, 0.35))


def _best_candidates(emulator, flux, weight, good, rv0, n_lab: int, n_candidates: int, n_starts: int) -> torch.Tensor:
    """The ``n_starts`` lowest-chi^2 Sobol candidates per spectrum (scaled labels), (n, n_starts, n_lab)."""
    sobol = torch.quasirandom.SobolEngine(3, scramble=True, seed=0).draw(max(n_candidates, n_starts))
    cands = torch.zeros(sobol.shape[0], n_lab)
    cands[:, :3] = 0.9 * (sobol - 0.5)  # Teff, log g, [M/H] within the central 90 % of the range
    models = emulator.forward_scaled(cands)  # (K, n_pixels)
    data = flux if rv0 is None else doppler_shift(torch.where(good, flux, 1.0), -rv0)
    # chi2[i, k] = sum_p w (d - m)^2 = sum w d^2 - 2 (w d) . m + w . m^2
    chi2 = ((weight * data ** 2).sum(1, keepdim=True) - 2 * (weight * data) @ models.T + weight @ (models ** 2).T)
    best = chi2.argsort(dim=1)[:, :n_starts]
    return cands[best]


@dataclass
class FitResult:
    labels: np.ndarray  # (n, n_labels) physical units
    label_errors: np.ndarray  # (n, n_labels) formal 1-sigma
    rv: np.ndarray  # (n,) km/s
    rv_error: np.ndarray
    chi2: np.ndarray  # (n,)
    dof: np.ndarray  # (n,)
    at_bound: np.ndarray  # (n, n_labels) bool: label pinned to the training range
    #: (n,) bool: False for a spectrum without any usable pixel, not fitted (NaN labels, errors, RV and chi^2)
    fitted: np.ndarray | None = None


def _spread_over_batch(part: FitResult, fitted: np.ndarray) -> FitResult:
    """A result for the whole batch from ``part``, fitted on the rows where ``fitted`` is True (NaN elsewhere)."""
    def spread(values, fill):
        out = np.full((fitted.size,) + values.shape[1:], fill, dtype=np.result_type(values, type(fill)))
        out[fitted] = values
        return out

    return FitResult(spread(part.labels, np.nan), spread(part.label_errors, np.nan), spread(part.rv, np.nan),
                     spread(part.rv_error, np.nan), spread(part.chi2, np.nan), spread(part.dof, 0),
                     spread(part.at_bound, False), fitted.copy())


def chip_continuum_design(n_pixels: int, degree: int) -> torch.Tensor:
    """Chebyshev basis per APOGEE chip: (3 (degree+1), n_pixels), zero outside each chip."""
    from ..spectra.apogee_grid import APOGEE_CHIP_SLICES

    rows = []
    for sl in APOGEE_CHIP_SLICES:
        x = torch.linspace(-1.0, 1.0, sl.stop - sl.start)
        cols = [torch.ones_like(x), x]
        for _ in range(2, degree + 1):
            cols.append(2 * x * cols[-1] - cols[-2])
        for k in range(degree + 1):
            r = torch.zeros(n_pixels)
            r[sl] = cols[k]
            rows.append(r)
    return torch.stack(rows)


def fit_spectra(emulator, flux, ivar, mask=None, fit_rv: bool = True, n_iter: int = FIT_ITERATIONS,
                n_starts: int = FIT_STARTS, n_candidates: int = 128, continuum_degree: int = -1,
                n_abundance_starts: int = FIT_ABUNDANCE_STARTS, model_error=None) -> FitResult:
    """Fit labels (+ RV) of normalised spectra with the emulator.

    Parameters
    ----------
    emulator : PayneEmulator
    flux, ivar : array (n, n_pixels)
        Normalised flux and inverse variance (0 for pixels without information).
    mask : bool array (n, n_pixels), optional
        True for pixels to use (default: ivar > 0 and finite flux).
    n_starts, n_candidates : int
        The chi^2 of ``n_candidates`` quasi-random (Sobol) points in scaled (Teff, log g, [M/H])
        (other labels at the centre of their range) is computed for every spectrum at once
        (matrix products, the data shifted to rest frame by the cross-correlation RV); the LM
        iteration then starts from the ``n_starts`` best of them and the best chi^2 wins.
    continuum_degree : int
        When >= 0, the model is multiplied by a Chebyshev polynomial of this degree per chip,
        fitted with the labels (as The Payne does for observed spectra, whose pseudo-continuum
        normalisation differs from the synthetic flux / true continuum); -1: no correction.
    n_abundance_starts : int
        Further LM runs from the best solution so far with every label after the first three
        ([X/M], v_micro, ...) moved to a quasi-random (Sobol) point within the central 80 % of its range:
        a fit trapped in a local minimum of the abundances escapes when one of them lands in the right
        basin; the best chi^2 wins.  0 disables them.
    model_error : float or array (n_pixels,), optional
        The emulator's own error (normalised flux), added to each pixel's variance in quadrature
        (1/ivar + model_error^2), so that pixels the emulator gets wrong weigh less and the formal
        errors include the model's error.

    Returns
    -------
    FitResult
        A spectrum without any usable pixel is not fitted: ``fitted`` is False for it and its
        labels, errors, RV and chi^2 are NaN; the rest of the batch is fitted as usual.

    Raises
    ------
    ValueError
        Arrays of different shapes, or no spectrum of the batch with a usable pixel.
    """
    emulator.eval()
    f = torch.as_tensor(np.asarray(flux), dtype=torch.float32)
    w = torch.as_tensor(np.asarray(ivar), dtype=torch.float32)
    if f.ndim != 2 or f.shape != w.shape:
        raise ValueError(f"flux and ivar must both be (n, n_pixels); got {tuple(f.shape)} and {tuple(w.shape)}")
    good = torch.isfinite(f) & torch.isfinite(w) & (w > 0)
    if model_error is not None:
        me = torch.as_tensor(np.broadcast_to(np.asarray(model_error, dtype=np.float64), (f.shape[1],)).copy(),
                             dtype=torch.float32)
        if not bool(torch.all(torch.isfinite(me) & (me >= 0))):
            raise ValueError("model_error must be finite and >= 0")
        w = torch.where(good, 1.0 / (1.0 / torch.where(good, w, 1.0) + me ** 2), w)
    if mask is not None:
        good &= torch.as_tensor(np.asarray(mask), dtype=torch.bool)
    has_pixels = (good.sum(1) > 0).numpy()
    if not has_pixels.any():
        raise ValueError("no usable pixel in any spectrum of the batch (all ivar = 0 or masked)")
    if not has_pixels.all():  # fit the others; these get NaN and fitted = False
        part = fit_spectra(emulator, np.asarray(flux)[has_pixels], np.asarray(ivar)[has_pixels],
                           None if mask is None else np.asarray(mask)[has_pixels], fit_rv=fit_rv, n_iter=n_iter,
                           n_starts=n_starts, n_candidates=n_candidates, continuum_degree=continuum_degree,
                           n_abundance_starts=n_abundance_starts, model_error=model_error)
        return _spread_over_batch(part, has_pixels)
    f = torch.where(good, f, 0.0)
    sw = torch.where(good, w, 0.0).sqrt()
    n, _ = f.shape
    n_lab = emulator.label_min.numel()
    n_rv = 1 if fit_rv else 0
    design = chip_continuum_design(f.shape[1], continuum_degree) if continuum_degree >= 0 else None
    n_cont = 0 if design is None else design.shape[0]
    outside = None if design is None else 1.0 - design[::continuum_degree + 1].sum(0)
    n_par = n_lab + n_rv + n_cont
    lo = torch.full((n_par,), -0.5 - LABEL_MARGIN)
    hi = torch.full((n_par,), 0.5 + LABEL_MARGIN)
    if fit_rv:
        lo[n_lab], hi[n_lab] = -5.0, 5.0  # +-500 km/s
    if n_cont:
        lo[n_lab + n_rv:], hi[n_lab + n_rv:] = -2.0, 2.0
        lo[n_lab + n_rv::continuum_degree + 1], hi[n_lab + n_rv::continuum_degree + 1] = 0.2, 5.0

    def model(theta):  # theta (n_par,) -> model flux (n_pixels,)
        spec = emulator.forward_scaled(theta[:n_lab][None])
        if fit_rv:
            spec = doppler_shift(spec, theta[n_lab:n_lab + 1] * RV_SCALE)
        if n_cont:
            spec = spec * (theta[n_lab + n_rv:] @ design + outside)
        return spec[0]

    jac = torch.func.vmap(torch.func.jacfwd(model))
    batched = torch.func.vmap(model)

    def chi2_of(theta):
        r = (batched(theta) - f) * sw
        return (r ** 2).sum(1)

    def project(theta):
        return clip_to_bounds(theta, lo, hi)

    best_theta, best_chi2 = None, None
    with torch.no_grad():
        rv0 = None
        if fit_rv:  # a cross-correlation RV against the best of a few templates starts every run
            scaled = torch.zeros(len(RV_TEMPLATE_LABELS), n_lab)
            scaled[:, :3] = torch.tensor(RV_TEMPLATE_LABELS)
            rv0 = best_template_rv(emulator.forward_scaled(scaled), torch.where(good, f, 1.0), sw ** 2)
        starts = _best_candidates(emulator, f, sw ** 2, good, rv0, n_lab, n_candidates, n_starts)  # (n, s, n_lab)
        n_extra = n_abundance_starts if n_lab > 3 else 0
        extra = (0.8 * (torch.quasirandom.SobolEngine(n_lab - 3, scramble=True, seed=1).draw(n_extra) - 0.5)
                 if n_extra else None)
        for k in range(starts.shape[1] + n_extra):
            theta = torch.zeros(n, n_par)
            if k < starts.shape[1]:
                theta[:, :n_lab] = starts[:, k]
                if fit_rv:
                    theta[:, n_lab] = rv0 / RV_SCALE
                if n_cont:
                    theta[:, n_lab + n_rv::continuum_degree + 1] = 1.0
            else:  # from the best so far, the other labels moved to a Sobol point
                theta = best_theta.clone()
                theta[:, 3:n_lab] = extra[k - starts.shape[1]]
            lam = FITTER_DAMPING.start(n)
            chi2 = chi2_of(theta)
            prev_stalled = torch.zeros(n, dtype=torch.bool)
            for _ in range(n_iter):
                J = jac(theta) * sw[:, :, None]  # (n, p, k)
                r = (batched(theta) - f) * sw
                step = levenberg_marquardt_step(theta, chi2, lam, J, r, chi2_of, project, FITTER_DAMPING)
                theta, chi2, lam = step.params, step.chi2, step.damping
                # converged: a step improved chi^2 by less than 1e-3 (absolute; chi^2 ~ n_pixels) or
                # the damping has grown so large that steps are negligible
                stalled = (step.accepted & (step.gain < 1e-3)) | (lam >= 1e5)
                if bool((stalled & prev_stalled).all()):  # two stalled iterations in a row: stop
                    break
                prev_stalled = stalled
            if best_theta is None:
                best_theta, best_chi2 = theta, chi2
            else:
                take = chi2 < best_chi2
                best_theta = torch.where(take[:, None], theta, best_theta)
                best_chi2 = torch.where(take, chi2, best_chi2)
        err = formal_errors(jac(best_theta) * sw[:, :, None])
    span = (emulator.label_max - emulator.label_min)
    labels = emulator.unscale(best_theta[:, :n_lab]).numpy()
    label_err = (err[:, :n_lab] * span).numpy()
    rv = (best_theta[:, n_lab] * RV_SCALE).numpy() if fit_rv else np.zeros(n)
    rv_err = (err[:, n_lab] * RV_SCALE).numpy() if fit_rv else np.zeros(n)
    at_bound = ((best_theta[:, :n_lab] <= lo[:n_lab] + 1e-6) | (best_theta[:, :n_lab] >= hi[:n_lab] - 1e-6)).numpy()
    dof = (good.sum(1) - n_par).numpy()
    return FitResult(labels, label_err, rv, rv_err, best_chi2.numpy(), dof, at_bound, np.ones(n, dtype=bool))


@torch.no_grad()
def chi2_at_labels(emulator, flux, ivar, labels, rv=None, model_error=None) -> np.ndarray:
    """chi^2 of the emulator's spectrum at given labels (physical units) and RV (km/s) against ``flux``,
    on the pixels with positive finite ivar and finite flux, with ``model_error`` in the variance as
    :func:`fit_spectra` does.  With the true labels this tells whether a fit found the global minimum:
    a fit whose chi^2 exceeds the chi^2 at the truth stopped in a local minimum."""
    f = torch.as_tensor(np.asarray(flux), dtype=torch.float32)
    w = torch.as_tensor(np.asarray(ivar), dtype=torch.float32)
    good = torch.isfinite(f) & torch.isfinite(w) & (w > 0)
    if model_error is not None:
        me = torch.as_tensor(np.broadcast_to(np.asarray(model_error, dtype=np.float64), (f.shape[1],)).copy(),
                             dtype=torch.float32)
        w = torch.where(good, 1.0 / (1.0 / torch.where(good, w, 1.0) + me ** 2), w)
    model = emulator(torch.as_tensor(np.asarray(labels), dtype=torch.float32))
    if rv is not None:
        model = doppler_shift(model, torch.as_tensor(np.asarray(rv), dtype=torch.float32))
    r2 = torch.where(good, (model - torch.where(good, f, 0.0)) ** 2 * torch.where(good, w, 0.0), 0.0)
    return r2.sum(1).numpy().astype(np.float64)
