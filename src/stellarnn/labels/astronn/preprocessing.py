"""AstroNN input preprocessing (REFERENCE.md; Leung & Bovy 2019).

apStar flux (B, 8575) -> DR17 continuum normalisation (:func:`stellarnn.spectra.apogee_continuum`,
7514 kept pixels, masked pixels set to 1) -> minus the per-pixel mean of the training spectra
(no scaling).  Optionally (``brackett_mask``, :mod:`stellarnn.spectra.brackett_mask`) the H I Brackett
cores are set to 1 as well, like any masked pixel, in training and at inference alike
(:func:`mask_brackett_normalised`).  Label normalisation: z-scores whose mean and standard deviation are computed on
valid labels only (missing-label sentinels never enter the statistics, a defect of the public
implementation that REFERENCE.md asks us to avoid).
"""
from __future__ import annotations

import numpy as np
import torch

from ...spectra import APOGEE_N_KEPT, apogee_continuum, apogee_wavelength, kept_pixel_index
from ...spectra.brackett_mask import brackett_mask
from .loss import missing_label_mask


def normalise_apstar(flux, ivar, bitmask=None) -> torch.Tensor:
    """Continuum-normalised flux (B, 7514) float64 from apStar flux and ivar (B, 8575)."""
    flux = torch.as_tensor(np.asarray(flux, dtype=np.float64))
    ivar = torch.as_tensor(np.asarray(ivar, dtype=np.float64))
    if flux.ndim == 1:
        flux, ivar = flux[None], ivar[None]
        bitmask = None if bitmask is None else np.asarray(bitmask)[None]
    if bitmask is not None:
        bitmask = np.asarray(bitmask).reshape(flux.shape)
    if flux.shape != ivar.shape:
        raise ValueError(f"ivar shape {tuple(ivar.shape)} differs from flux {tuple(flux.shape)}")
    good = torch.isfinite(ivar) & (ivar > 0)
    error = torch.where(good, ivar.clamp_min(1e-300).rsqrt(), torch.inf)
    return apogee_continuum(flux, error, bitmask).flux


def mask_brackett_normalised(normalised_flux, teff=None):
    """Normalised flux (B, 7514) with the Brackett cores for ``teff`` (None, scalar or (B,)) set to 1.

    The same convention as the DR17 normalisation's masked pixels (flux 1); returns a new array or
    tensor of the input's type, float64.
    """
    is_tensor = isinstance(normalised_flux, torch.Tensor)
    x = torch.as_tensor(np.asarray(normalised_flux) if not is_tensor else normalised_flux).to(torch.float64)
    if x.ndim != 2 or x.shape[1] != APOGEE_N_KEPT:
        raise ValueError(f"need normalised flux (B, {APOGEE_N_KEPT}), got {tuple(x.shape)}")
    teff = None if teff is None else np.asarray(teff, dtype=np.float64)
    if teff is not None and teff.ndim == 1 and teff.shape[0] != x.shape[0]:
        raise ValueError(f"teff has {teff.shape[0]} values for {x.shape[0]} spectra")
    mask = torch.as_tensor(brackett_mask(apogee_wavelength()[kept_pixel_index()], teff), device=x.device)
    out = torch.where(mask, 1.0, x)
    return out if is_tensor else out.numpy()


def network_input(normalised_flux, spectrum_mean) -> torch.Tensor:
    """Normalised flux (B, 7514) minus the training mean spectrum (7514,), float32."""
    x = torch.as_tensor(np.asarray(normalised_flux) if not isinstance(normalised_flux, torch.Tensor)
                        else normalised_flux).to(torch.float64)
    mean = torch.as_tensor(np.asarray(spectrum_mean) if not isinstance(spectrum_mean, torch.Tensor)
                           else spectrum_mean).to(torch.float64)
    if x.ndim != 2 or x.shape[1] != APOGEE_N_KEPT or mean.shape != (APOGEE_N_KEPT,):
        raise ValueError(f"need normalised flux (B, {APOGEE_N_KEPT}) and mean ({APOGEE_N_KEPT},); got "
                         f"{tuple(x.shape)} and {tuple(mean.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("normalised flux contains NaN/inf")
    return (x - mean).to(torch.float32)


def label_statistics(labels) -> tuple[np.ndarray, np.ndarray]:
    """Per-label mean and std over valid values only (NaN/-9999 ignored); std 1 where undefined.

    Returns (mean, std), each (L,).  A label with no valid value gets mean 0, std 1 (the loss
    ignores it anyway).
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"labels must be (n, L), got {y.shape}")
    valid = ~missing_label_mask(torch.as_tensor(y)).numpy()
    n = valid.sum(axis=0)
    ym = np.where(valid, y, 0.0)
    mean = np.where(n > 0, ym.sum(axis=0) / np.maximum(n, 1), 0.0)
    var = np.where(valid, (y - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n - 1, 1)
    std = np.sqrt(var)
    std = np.where((n > 1) & (std > 0), std, 1.0)
    return mean, std


def normalise_labels(labels, mean, std, errors=None):
    """z-scored labels with missing ones as NaN, and errors scaled by std (NaN stays NaN)."""
    y = np.asarray(labels, dtype=np.float64)
    missing = missing_label_mask(torch.as_tensor(y)).numpy()
    z = np.where(missing, np.nan, (y - mean) / std)
    if errors is None:
        return z, None
    e = np.asarray(errors, dtype=np.float64)
    e = np.where(np.isfinite(e) & (e > 0) & ~missing, e / std, np.nan)
    return z, e
