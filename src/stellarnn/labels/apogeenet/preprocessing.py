"""APOGEENet input preprocessing, batched (REFERENCE.md, "APOGEENet III"; Sizemore et al. 2024).

1. flux: NaN/inf -> 0;
2. error = ivar^(-1/2), clipped at 5 x its median (per spectrum, over finite values);
   pixels without information (ivar <= 0 or NaN) get 5 x median;
3. network input: log(clip(flux, 1e-6)), then clipped from above at the 95th percentile of that
   spectrum's own log-flux plus 1 (per spectrum: clipping at a percentile of the whole batch is a
   known defect of the public implementation, REFERENCE.md).

Steps 1-2 happen once per spectrum; step 3 is applied to the noiseless flux and to each noise
draw (flux + error * N(0, 1)), see :mod:`~stellarnn.labels.apogeenet.uncertainty`.

``input_flux="continuum_normalised"`` (for networks trained on continuum-normalised synthetic
spectra) first divides the flux by the DR17 AstroNN continuum (:func:`stellarnn.spectra.apogee_continuum`)
on the 7514 kept pixels and sets the chip gaps to flux 1; the steps above follow unchanged.

``masked`` (optional, e.g. the H I Brackett cores of :mod:`stellarnn.spectra.brackett_mask`) pixels
are set to the continuum (1 for normalised input, the DR17 continuum for raw input) with ivar 0 before
step 1, so that they carry no flux information and get the no-information error of step 2; training
(:mod:`~stellarnn.labels.apogeenet.training`) and the pipeline call :func:`preprocess` alike.
"""
from __future__ import annotations

import numpy as np
import torch

from ...spectra import APOGEE_N_PIXELS, apogee_continuum, kept_pixel_index

ERROR_CLIP_FACTOR = 5.0
FLUX_FLOOR = 1e-6
PERCENTILE = 0.95
PERCENTILE_MARGIN = 1.0
INPUT_FLUX_KINDS = ("raw", "continuum_normalised")


def _as_batch(a, name: str) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a, dtype=np.float64))
    t = t.to(torch.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, n_pixels) with B >= 1, got {tuple(t.shape)}")
    return t


def clean_flux_and_error(flux, ivar) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-2: flux with non-finite values set to 0, and the clipped 1-sigma error.

    Parameters
    ----------
    flux, ivar : array or Tensor, shape (B, n) or (n,)
        Flux (any unit) and its inverse variance (same unit^-2); ivar <= 0 marks no information.

    Returns
    -------
    flux, error : Tensor float64, shape (B, n)

    Raises
    ------
    ValueError
        Wrong shapes, or a spectrum without a single pixel with positive finite ivar.
    """
    flux, ivar = _as_batch(flux, "flux"), _as_batch(ivar, "ivar")
    if ivar.shape != flux.shape:
        raise ValueError(f"ivar shape {tuple(ivar.shape)} differs from flux {tuple(flux.shape)}")
    flux = torch.nan_to_num(flux, nan=0.0, posinf=0.0, neginf=0.0)
    good = torch.isfinite(ivar) & (ivar > 0)
    if not bool(good.any(dim=1).all()):
        bad = torch.nonzero(~good.any(dim=1)).flatten().tolist()
        raise ValueError(f"spectra {bad} have no pixel with positive inverse variance")
    error = torch.where(good, ivar.clamp_min(1e-300).rsqrt(), torch.nan)
    high = ERROR_CLIP_FACTOR * torch.nanquantile(error, 0.5, dim=1, keepdim=True)
    error = torch.where(torch.isnan(error), high, torch.minimum(error, high))
    return flux, error


def row_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """Quantile along the last axis with linear interpolation (numpy's default), by selection (no sort).

    Returns shape (..., 1).  Equals ``torch.quantile(x, q, dim=-1, keepdim=True)`` for finite x.
    """
    n = x.shape[-1]
    pos = q * (n - 1)
    lo = int(pos)
    frac = pos - lo
    v_lo = torch.kthvalue(x, lo + 1, dim=-1, keepdim=True).values
    if frac == 0.0 or lo + 1 >= n:
        return v_lo
    v_hi = torch.kthvalue(x, lo + 2, dim=-1, keepdim=True).values
    return v_lo + frac * (v_hi - v_lo)


def log_scale(flux: torch.Tensor) -> torch.Tensor:
    """Step 3, per spectrum (row): log(clip(flux, 1e-6)) clipped at its own 95th percentile + 1."""
    logf = torch.log(flux.clamp_min(FLUX_FLOOR))
    ceiling = row_quantile(logf, PERCENTILE) + PERCENTILE_MARGIN
    return torch.minimum(logf, ceiling)


def continuum_normalise_full_grid(flux, ivar, bitmask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """DR17 continuum normalisation put back on the 8575-pixel grid (gaps: flux 1, ivar 0).

    Returns normalised flux and ivar, shape (B, 8575).
    """
    flux, ivar = _as_batch(flux, "flux"), _as_batch(ivar, "ivar")
    if flux.shape[1] != APOGEE_N_PIXELS:
        raise ValueError(f"continuum normalisation needs apStar spectra of {APOGEE_N_PIXELS} pixels")
    if bitmask is not None:
        bitmask = np.asarray(bitmask).reshape(flux.shape)
    good = torch.isfinite(ivar) & (ivar > 0)
    error = torch.where(good, ivar.clamp_min(1e-300).rsqrt(), torch.inf)
    return full_grid_from_continuum(apogee_continuum(flux, error, bitmask), ivar)


def full_grid_from_continuum(cont, ivar) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`continuum_normalise_full_grid` from an already computed DR17 normalisation ``cont``
    (:class:`stellarnn.spectra.ContinuumResult` of the same spectra) and their ivar (B, 8575)."""
    ivar = _as_batch(ivar, "ivar")
    good = torch.isfinite(ivar) & (ivar > 0)
    idx = torch.as_tensor(kept_pixel_index())
    out_flux = torch.ones_like(ivar)
    out_ivar = torch.zeros_like(ivar)
    out_flux[:, idx] = cont.flux
    usable = good[:, idx] & ~cont.not_normalised
    out_ivar[:, idx] = torch.where(usable, cont.error.clamp_min(1e-300) ** -2, 0.0)
    return out_flux, out_ivar


def mask_to_continuum(flux, ivar, masked, continuum_full=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flux and ivar (B, n) with the ``masked`` pixels ((n,) or (B, n) bool) set to the continuum, ivar 0.

    ``continuum_full``: the continuum on the same pixels (B, n) (NaN where unknown: the flux is kept
    there, the ivar still 0); None for normalised flux (continuum 1).
    """
    flux, ivar = _as_batch(flux, "flux"), _as_batch(ivar, "ivar")
    m = torch.as_tensor(np.asarray(masked, dtype=bool)).expand(flux.shape)
    level = torch.ones_like(flux) if continuum_full is None else torch.as_tensor(continuum_full).to(flux)
    fill = torch.where(torch.isfinite(level), level, flux)
    return torch.where(m, fill, flux), torch.where(m, 0.0, ivar)


def _continuum_full_grid(cont, n_pixels: int) -> torch.Tensor:
    """The DR17 continuum of a ContinuumResult on the full apStar grid (NaN outside the kept pixels)."""
    out = torch.full((cont.continuum.shape[0], n_pixels), torch.nan, dtype=torch.float64)
    out[:, torch.as_tensor(kept_pixel_index())] = cont.continuum.to(torch.float64)
    return out


def preprocess(flux, ivar, bitmask=None, input_flux: str = "raw",
               continuum=None, masked=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flux and error ready for the noise draws: steps 1-2 (after normalisation if asked).

    Parameters
    ----------
    flux, ivar : (B, n)
        apStar flux and inverse variance.
    bitmask : (B, n) int, optional
        APOGEE_PIXMASK, used only by the continuum normalisation.
    input_flux : {"raw", "continuum_normalised"}
        What the network was trained on.
    continuum : ContinuumResult, optional
        The DR17 normalisation of these spectra, if already computed.
    masked : bool array (n,) or (B, n), optional
        Pixels set to the continuum with ivar 0 before the cleaning (module docstring).
    """
    if input_flux not in INPUT_FLUX_KINDS:
        raise ValueError(f"input_flux must be one of {INPUT_FLUX_KINDS}, not {input_flux!r}")
    if input_flux == "continuum_normalised":
        if continuum is not None:
            flux, ivar = full_grid_from_continuum(continuum, ivar)
        else:
            flux, ivar = continuum_normalise_full_grid(flux, ivar, bitmask)
        if masked is not None:
            flux, ivar = mask_to_continuum(flux, ivar, masked)
    elif masked is not None:
        flux, ivar = _as_batch(flux, "flux"), _as_batch(ivar, "ivar")
        if continuum is None:
            good = torch.isfinite(ivar) & (ivar > 0)
            error = torch.where(good, ivar.clamp_min(1e-300).rsqrt(), torch.inf)
            continuum = apogee_continuum(flux, error, None if bitmask is None else
                                         np.asarray(bitmask).reshape(flux.shape))
        flux, ivar = mask_to_continuum(flux, ivar, masked, _continuum_full_grid(continuum, flux.shape[1]))
    return clean_flux_and_error(flux, ivar)
