"""APOGEE continuum normalisation, DR17 mode (AstroNN), vectorised over a batch.

Reference: Leung & Bovy 2019, MNRAS 483, 3255; astroNN ``apogee_continuum`` (DR17 mode),
as specified in REFERENCE.md:

1. keep apStar pixels [246:3274], [3585:6080], [6344:8335] (3028 + 2495 + 1991 = 7514);
2. per chip, fit a degree-2 Chebyshev polynomial through the 532 DR17 continuum pixels
   (``dr17_contmask``) by weighted least squares with weights w = 1 / (err^2 + 1e-8) applied
   to the residuals (numpy ``chebfit`` convention: minimise sum (w (y - p))^2);
3. divide flux and error by the fitted continuum;
4. negative flux -> 0; inf/NaN flux -> 1 (error -> 1 likewise; pixels without a usable error,
   i.e. ivar = 0, are treated as NaN flux);
5. pixels with APOGEE_PIXMASK bits 0-7 or 12 set get flux 1 and error 1.

The Chebyshev variable is the chip pixel index mapped to [-1, 1]; a degree-2 fit spans the
same functions whatever the affine map, so this only improves conditioning.

Safety (not in the reference, which can divide by zero): pixels with non-finite flux or
error, or error <= 0, get weight 0 in the fit.  A chip whose continuum pixels give fewer
than 3 usable points, or whose fitted continuum is not positive and finite at a pixel,
is not normalised there: those pixels get flux 1, error 1 and are reported in the returned
``not_normalised`` mask, never a division by zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .apogee_grid import APOGEE_BAD_PIXEL_MASK, APOGEE_CHIP_SLICES, APOGEE_N_KEPT, APOGEE_N_PIXELS

CHEBYSHEV_DEGREE = 2
WEIGHT_EPSILON = 1e-8


@dataclass
class ContinuumResult:
    """Normalised spectra on the 7514 kept pixels."""

    flux: torch.Tensor  # (B, 7514)
    error: torch.Tensor  # (B, 7514)
    continuum: torch.Tensor  # (B, 7514): fitted continuum (NaN where not normalised)
    not_normalised: torch.Tensor  # (B, 7514) bool
    chip_failed: torch.Tensor  # (B, 3) bool: too few usable continuum pixels in the chip


def load_dr17_contmask() -> np.ndarray:
    """The DR17 continuum pixel mask (bool, 7514) from the data layer."""
    from ..data import fetch

    mask = np.load(fetch("dr17-contmask")).astype(bool)
    if mask.shape != (APOGEE_N_KEPT,):
        raise ValueError(f"dr17_contmask has shape {mask.shape}, expected ({APOGEE_N_KEPT},)")
    return mask


def _chebyshev_design(n: int, degree: int) -> torch.Tensor:
    x = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    cols = [torch.ones_like(x), x]
    for _ in range(2, degree + 1):
        cols.append(2 * x * cols[-1] - cols[-2])
    return torch.stack(cols[:degree + 1], dim=1)  # (n, degree+1)


def apogee_continuum(flux, error, bitmask=None, contmask: np.ndarray | None = None,
                     degree: int = CHEBYSHEV_DEGREE) -> ContinuumResult:
    """Continuum-normalise apStar spectra (DR17 mode).

    Parameters
    ----------
    flux, error : array-like or Tensor, shape (B, 8575) or (8575,)
        apStar flux and 1-sigma error (non-finite and non-positive errors allowed: they get no weight).
    bitmask : array-like of int, shape like flux, optional
        APOGEE_PIXMASK; pixels with bits 0-7 or 12 get flux 1, error 1.
    contmask : ndarray of bool, shape (7514,), optional
        Continuum pixels (default: DR17 mask from the data layer).

    Returns
    -------
    ContinuumResult
    """
    flux = torch.as_tensor(np.asarray(flux) if not isinstance(flux, torch.Tensor) else flux).to(torch.float64)
    error = torch.as_tensor(np.asarray(error) if not isinstance(error, torch.Tensor) else error).to(torch.float64)
    if flux.ndim == 1:
        flux, error = flux[None], error[None]
        if bitmask is not None:
            bitmask = torch.as_tensor(np.asarray(bitmask))[None]
    if flux.ndim != 2 or flux.shape[1] != APOGEE_N_PIXELS:
        raise ValueError(f"flux must have shape (B, {APOGEE_N_PIXELS}), got {tuple(flux.shape)}")
    if error.shape != flux.shape:
        raise ValueError(f"error shape {tuple(error.shape)} differs from flux {tuple(flux.shape)}")
    if contmask is None:
        contmask = load_dr17_contmask()
    contmask = torch.as_tensor(np.asarray(contmask, dtype=bool))
    if contmask.shape != (APOGEE_N_KEPT,):
        raise ValueError(f"contmask must have shape ({APOGEE_N_KEPT},)")

    idx = torch.cat([torch.arange(s.start, s.stop) for s in APOGEE_CHIP_SLICES])
    f, e = flux[:, idx], error[:, idx]
    usable = torch.isfinite(f) & torch.isfinite(e) & (e > 0)
    weight = torch.where(usable, 1.0 / (torch.where(usable, e, 1.0) ** 2 + WEIGHT_EPSILON), 0.0)
    y = torch.where(usable, f, 0.0)

    continuum = torch.full_like(f, float("nan"))
    chip_failed = torch.zeros(f.shape[0], len(APOGEE_CHIP_SLICES), dtype=torch.bool)
    start = 0
    for c, sl in enumerate(APOGEE_CHIP_SLICES):  # three chips: fixed loop, batched inside
        n = sl.stop - sl.start
        chip = slice(start, start + n)
        start += n
        A = _chebyshev_design(n, degree)  # (n, k)
        cm = contmask[chip]
        Ac = A[cm]  # (m, k)
        w = weight[:, chip][:, cm]  # (B, m)
        yc = y[:, chip][:, cm]
        n_usable = (w > 0).sum(dim=1)
        w2 = w ** 2  # chebfit weights multiply residuals: normal equations use w^2
        ata = torch.einsum("mk,bm,ml->bkl", Ac, w2, Ac)
        aty = torch.einsum("mk,bm,bm->bk", Ac, w2, yc)
        ok = n_usable >= degree + 1
        # scale for conditioning (weights can span many decades); ridge only guards singular systems
        scale = ata.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)
        ata_s = ata / scale[:, None, None] + 1e-14 * torch.eye(degree + 1, dtype=torch.float64)
        coef = torch.linalg.solve(ata_s, (aty / scale[:, None]).unsqueeze(-1)).squeeze(-1)
        cont = coef @ A.T  # (B, n)
        cont[~ok] = float("nan")
        chip_failed[:, c] = ~ok
        continuum[:, chip] = cont

    good_cont = torch.isfinite(continuum) & (continuum > 0)
    safe_cont = torch.where(good_cont, continuum, 1.0)
    norm_flux = f / safe_cont
    norm_err = e / safe_cont
    norm_flux = torch.where(norm_flux < 0, 0.0, norm_flux)
    # NaN/inf flux -> 1; a pixel without a usable error (ivar = 0, e.g. NaN flux zeroed by a reader) likewise
    bad_value = ~torch.isfinite(norm_flux) | ~usable
    norm_flux = torch.where(bad_value, 1.0, norm_flux)
    norm_err = torch.where(~torch.isfinite(norm_err) | bad_value, 1.0, norm_err)
    not_normalised = ~good_cont
    norm_flux = torch.where(not_normalised, 1.0, norm_flux)
    norm_err = torch.where(not_normalised, 1.0, norm_err)
    if bitmask is not None:
        bm = torch.as_tensor(np.asarray(bitmask) if not isinstance(bitmask, torch.Tensor) else bitmask)
        if bm.shape != flux.shape:
            raise ValueError(f"bitmask shape {tuple(bm.shape)} differs from flux {tuple(flux.shape)}")
        masked = (bm[:, idx].to(torch.int64) & APOGEE_BAD_PIXEL_MASK) != 0
        norm_flux = torch.where(masked, 1.0, norm_flux)
        norm_err = torch.where(masked, 1.0, norm_err)
    return ContinuumResult(norm_flux, norm_err, continuum, not_normalised, chip_failed)
