"""Does a spectrum carry stellar information?  Checks made before any network runs (both pipelines).

A label network returns a confident-looking answer for any input, including an all-zero, constant,
negative or pure-noise spectrum, or one with a chip missing.  :func:`assess_information` measures,
batched over spectra (torch, float64), what each apStar spectrum (8575 px) can support:

* ``good_fraction_blue|green|red``: the fraction of *good* pixels in each APOGEE detector (apStar
  pixel ranges 246-3274, 3585-6080, 6344-8335, :data:`stellarnn.spectra.APOGEE_CHIP_SLICES`);
  a good pixel has finite flux, finite ivar > 0 and none of the APOGEE_PIXMASK bits 0-7, 12
  (the pixels the DR17 continuum normalisation discards);
* ``snr_robust``: the smaller of two per-pixel S/N estimates over the good pixels,

  - from the error array: median of flux x sqrt(ivar);
  - from the flux itself: median flux / sigma_diff, with sigma_diff = 1.4826 MAD(f[i+1] - f[i]) / sqrt(2)
    over adjacent good pixels of a chip (the difference of two independent pixels has variance
    2 sigma^2; 1.4826 turns a Gaussian's MAD into its sigma; cf. the DER_SNR estimator of
    Stoehr et al. 2008, ASPC 394, 505, which uses second differences of the same kind).

  The second one cannot be fooled by an error array that lies (errors of 1e-30 on noise), the
  first one catches errors of 1e30; a spectrum with a missing chip is caught by the chip checks;
* ``line_contrast``: absorption structure above the noise after the DR17 continuum normalisation
  (:func:`stellarnn.spectra.apogee_continuum`): the rms deviation from their median of the good
  normalised pixels inside the ASPCAP element windows (the union of the ``aspcap-masks`` bits of
  the 19 AstroNN branches and Fe; Leung & Bovy 2019), divided by the noise of the normalised flux,
  max(median normalised error, sigma_diff of the normalised flux).  Pure noise gives 1; stellar
  lines give more; a constant spectrum gives 0.

Spectra failing a check get the bits below (the same values in both pipelines' ``result_flags``,
documented in their ``flags`` modules), ``flag_bad``, NaN labels and a ``reason``:

=====  ======================  =================================================================
bit    name                    set when (thresholds are the module constants)
=====  ======================  =================================================================
2^4    flag_missing_chip       a chip has < 50 % good pixels (``CHIP_GOOD_FRACTION_MIN``) or its
                               error-array S/N (median flux x sqrt(ivar)) is < 2 (``CHIP_SNR_MIN``)
2^5    flag_low_snr            ``snr_robust`` < 5 (``SNR_MIN``), or no good pixel
2^6    flag_featureless        ``line_contrast`` < 0.5 (``LINE_CONTRAST_MIN``): less structure than
                               half the noise (constant or smooth spectra)
=====  ======================  =================================================================

A noise-only spectrum has ``line_contrast`` ~ 1, and so has a hot metal-poor star of the held-out
grid at S/N 100 (its few weak lines vanish in the rms over thousands of pixels: 12 % of
``grids/apogee/test`` at S/N 100 lie below 1.15), so pixel statistics alone cannot separate them.
Noise-only spectra get ``flag_featureless`` after the network instead, from the matched-filter S/N
of the emulator's line pattern (:mod:`.emulator_ood`, ``line_snr`` < 5), which sums the weak lines.

The continuum-normalised spectra are returned too, so that the pipelines normalise only once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..spectra import (APOGEE_BAD_PIXEL_MASK, APOGEE_CHIP_SLICES, APOGEE_N_KEPT, APOGEE_N_PIXELS, ContinuumResult,
                       apogee_continuum)

FLAG_MISSING_CHIP = 1 << 4
FLAG_LOW_SNR = 1 << 5
FLAG_FEATURELESS = 1 << 6
INFORMATION_FLAG_BITS = {"flag_missing_chip": FLAG_MISSING_CHIP, "flag_low_snr": FLAG_LOW_SNR,
                         "flag_featureless": FLAG_FEATURELESS}
INFORMATION_FLAGS = FLAG_MISSING_CHIP | FLAG_LOW_SNR | FLAG_FEATURELESS

CHIP_NAMES = ("blue", "green", "red")
CHIP_GOOD_FRACTION_MIN = 0.5
CHIP_SNR_MIN = 2.0
SNR_MIN = 5.0
LINE_CONTRAST_MIN = 0.5
ROBUST_SIGMA_FACTOR = 1.4826  # MAD -> sigma for a Gaussian
#: ASPCAP mask bits whose windows the line-contrast test uses (19 branch elements and Fe, bits 0-19)
WINDOW_MASK_BITS = tuple(range(20))


@dataclass
class InformationReport:
    """What :func:`assess_information` measured, one entry per spectrum (numpy arrays)."""

    good_fraction: np.ndarray  # (B, 3): blue, green, red
    chip_snr: np.ndarray  # (B, 3): error-array S/N per chip
    snr_error: np.ndarray  # (B,)
    snr_scatter: np.ndarray  # (B,)
    snr_robust: np.ndarray  # (B,)
    line_contrast: np.ndarray  # (B,)
    noise: np.ndarray  # (B,): noise of the normalised flux, max(median error, flux-difference sigma)
    flags: np.ndarray  # (B,) int64, bits of INFORMATION_FLAG_BITS
    reasons: list[str]
    continuum: ContinuumResult  # DR17 normalisation on the 7514 kept pixels
    normalised_good: torch.Tensor  # (B, 7514) bool: good pixels that were normalised

    @property
    def usable(self) -> np.ndarray:
        """True where no information bit is set."""
        return self.flags == 0

    def columns(self, i: int) -> dict:
        """The row columns of spectrum ``i`` (see :data:`INFORMATION_FIELDS`)."""
        out = {f"good_fraction_{c}": float(self.good_fraction[i, k]) for k, c in enumerate(CHIP_NAMES)}
        out.update(snr_error=float(self.snr_error[i]), snr_robust=float(self.snr_robust[i]),
                   line_contrast=float(self.line_contrast[i]))
        return out


@lru_cache(maxsize=1)
def element_window_pixels() -> np.ndarray:
    """Indices (into the 7514 normalised pixels) of the union of the ASPCAP windows used for line contrast."""
    from ..data import fetch

    mask = np.load(fetch("aspcap-masks")).astype(np.int64)
    if mask.shape != (APOGEE_N_KEPT,):
        raise ValueError(f"aspcap-masks has shape {mask.shape}, expected ({APOGEE_N_KEPT},)")
    bits = sum(1 << b for b in WINDOW_MASK_BITS)
    return np.flatnonzero(mask & bits)


def _nanmedian_rows(x: torch.Tensor) -> torch.Tensor:
    """Median of each row ignoring NaN (NaN for an all-NaN row)."""
    return torch.nanmedian(x, dim=1).values


def _diff_sigma(values: torch.Tensor, good: torch.Tensor, segments) -> torch.Tensor:
    """1.4826 MAD(f[i+1] - f[i]) / sqrt(2) over adjacent good pixels inside each segment, per row."""
    diffs = []
    for sl in segments:
        v, g = values[:, sl], good[:, sl]
        d = v[:, 1:] - v[:, :-1]
        diffs.append(torch.where(g[:, 1:] & g[:, :-1], d, torch.nan))
    d = torch.cat(diffs, dim=1)
    med = _nanmedian_rows(d)
    return ROBUST_SIGMA_FACTOR * _nanmedian_rows((d - med[:, None]).abs()) / np.sqrt(2.0)


def _as_rows(a, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a, dtype=np.float64)) if not isinstance(a, torch.Tensor) else a.to(torch.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != APOGEE_N_PIXELS:
        raise ValueError(f"{name} must have shape (B, {APOGEE_N_PIXELS}), got {tuple(t.shape)}")
    return t


def _good_pixel_snr(flux: torch.Tensor, ivar: torch.Tensor, bm: torch.Tensor | None):
    """(good pixels, flux x sqrt(ivar) on them and NaN elsewhere), both (B, 8575)."""
    good = torch.isfinite(flux) & torch.isfinite(ivar) & (ivar > 0)
    if bm is not None:
        good &= (bm & APOGEE_BAD_PIXEL_MASK) == 0
    return good, torch.where(good, flux * ivar.clamp_min(0).sqrt(), torch.nan)


def _kept_pixels() -> torch.Tensor:
    return torch.as_tensor(np.concatenate([np.arange(s.start, s.stop) for s in APOGEE_CHIP_SLICES]))


def error_array_snr(flux, ivar, bitmask=None) -> np.ndarray:
    """``snr_error`` of :func:`assess_information` alone: median flux x sqrt(ivar) over the good pixels of the three
    chips, per spectrum (array (B,); NaN without a good pixel), for apStar arrays of shape (B, 8575)."""
    flux, ivar = _as_rows(flux, "flux"), _as_rows(ivar, "ivar")
    if ivar.shape != flux.shape:
        raise ValueError(f"ivar shape {tuple(ivar.shape)} differs from flux {tuple(flux.shape)}")
    bm = None if bitmask is None else torch.as_tensor(np.asarray(bitmask, dtype=np.int64)).reshape(flux.shape)
    _, pixel_snr = _good_pixel_snr(flux, ivar, bm)
    return _nanmedian_rows(pixel_snr[:, _kept_pixels()]).numpy()


def assess_information(flux, ivar, bitmask=None) -> InformationReport:
    """Measure the usable information of apStar spectra and flag those without (module docstring).

    Parameters
    ----------
    flux, ivar : array or Tensor, shape (B, 8575)
        apStar flux and inverse variance (ivar <= 0 or NaN: no information).
    bitmask : array of int, shape (B, 8575), optional
        APOGEE_PIXMASK.

    Returns
    -------
    InformationReport
    """
    flux, ivar = _as_rows(flux, "flux"), _as_rows(ivar, "ivar")
    if ivar.shape != flux.shape:
        raise ValueError(f"ivar shape {tuple(ivar.shape)} differs from flux {tuple(flux.shape)}")
    b = flux.shape[0]
    bm = None if bitmask is None else torch.as_tensor(np.asarray(bitmask, dtype=np.int64)).reshape(flux.shape)
    good, pixel_snr = _good_pixel_snr(flux, ivar, bm)
    good_fraction = torch.stack([good[:, sl].to(torch.float64).mean(dim=1) for sl in APOGEE_CHIP_SLICES], dim=1)
    chip_snr = torch.stack([_nanmedian_rows(pixel_snr[:, sl]) for sl in APOGEE_CHIP_SLICES], dim=1)
    kept = _kept_pixels()
    snr_error = _nanmedian_rows(pixel_snr[:, kept])
    f_good = torch.where(good, flux, torch.nan)
    sigma = _diff_sigma(f_good, good, APOGEE_CHIP_SLICES)
    level = _nanmedian_rows(f_good[:, kept])
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_scatter = torch.where(sigma > 0, level / sigma, torch.where(level > 0, torch.inf, 0.0))
    snr_robust = torch.nan_to_num(torch.minimum(snr_error, snr_scatter), nan=0.0)

    # exactly the pipelines' DR17 normalisation (AstroNN's input; APOGEENet's continuum_normalised input)
    has_ivar = torch.isfinite(ivar) & (ivar > 0)
    error = torch.where(has_ivar, ivar.clamp_min(1e-300).rsqrt(), torch.inf)
    cont = apogee_continuum(flux, error, None if bm is None else bm.numpy())
    ngood = good[:, kept] & ~cont.not_normalised
    fn = torch.where(ngood, cont.flux, torch.nan)
    # noise of the normalised flux: chips are consecutive segments of the 7514 kept pixels
    bounds = np.cumsum([0] + [s.stop - s.start for s in APOGEE_CHIP_SLICES])
    segments = [slice(int(bounds[k]), int(bounds[k + 1])) for k in range(3)]
    noise = torch.fmax(_diff_sigma(fn, ngood, segments), _nanmedian_rows(torch.where(ngood, cont.error, torch.nan)))
    win = torch.as_tensor(element_window_pixels())
    w = fn[:, win]
    dev = w - _nanmedian_rows(w)[:, None]
    rms = torch.sqrt(torch.nanmean(dev ** 2, dim=1))
    contrast = torch.where(rms > 1e-12, rms / noise, torch.zeros_like(rms))
    contrast = torch.nan_to_num(contrast, nan=0.0, posinf=np.inf)

    gf, cs = good_fraction.numpy(), torch.nan_to_num(chip_snr, nan=0.0).numpy()
    snr_r, lc = snr_robust.numpy(), contrast.numpy()
    flags = np.zeros(b, dtype=np.int64)
    reasons = []
    for i in range(b):  # strings only; the measurements above are batched
        why = []
        for k, c in enumerate(CHIP_NAMES):
            if gf[i, k] < CHIP_GOOD_FRACTION_MIN:
                why.append(f"{c} chip has {100 * gf[i, k]:.0f}% good pixels (< {100 * CHIP_GOOD_FRACTION_MIN:.0f}%)")
            elif not cs[i, k] >= CHIP_SNR_MIN:
                why.append(f"{c} chip S/N {cs[i, k]:.3g} < {CHIP_SNR_MIN:g}")
        if why:
            flags[i] |= FLAG_MISSING_CHIP
        if not snr_r[i] >= SNR_MIN:
            flags[i] |= FLAG_LOW_SNR
            why.append(f"robust S/N {snr_r[i]:.3g} < {SNR_MIN:g}")
        if not lc[i] >= LINE_CONTRAST_MIN:
            flags[i] |= FLAG_FEATURELESS
            why.append(f"featureless: line contrast {lc[i]:.3g} < {LINE_CONTRAST_MIN:g} (no absorption above the noise)")
        reasons.append(("no stellar information: " + "; ".join(why)) if why else "")
    return InformationReport(gf, cs, snr_error.numpy(), snr_scatter.numpy(), snr_r, lc,
                             torch.nan_to_num(noise, nan=np.inf).numpy(), flags, reasons, cont, ngood)
