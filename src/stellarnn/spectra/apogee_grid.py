"""The APOGEE apStar log-lambda pixel grid and pixel-mask bits.

References
----------
SDSS DR17 APOGEE data model (apStar): lambda_i = 10**(4.179 + 6e-6 i) Angstrom, vacuum,
i = 0..8574 (CRVAL1 = 4.179, CDELT1 = 6e-6, CTYPE1 = LOG-LINEAR).
APOGEE_PIXMASK bit names: Holtzman et al. 2015, AJ 150, 148 (DR12 pipeline), unchanged in DR17.
"""
from __future__ import annotations

import numpy as np

APOGEE_N_PIXELS = 8575
APOGEE_LOG10_LAMBDA0 = 4.179
APOGEE_DLOG10_LAMBDA = 6e-6
APOGEE_RESOLUTION = 22_500.0  # nominal R (REFERENCE.md)

#: pixel ranges [start, stop) of the three chips kept by the DR17 continuum normalisation
#: (blue, green, red): 3028 + 2495 + 1991 = 7514 pixels (Leung & Bovy 2019; astroNN DR17 gap_delete)
APOGEE_CHIP_SLICES = (slice(246, 3274), slice(3585, 6080), slice(6344, 8335))
APOGEE_N_KEPT = sum(s.stop - s.start for s in APOGEE_CHIP_SLICES)  # 7514

#: APOGEE_PIXMASK bits
APOGEE_PIXMASK_BITS = {
    0: "BADPIX", 1: "CRPIX", 2: "SATPIX", 3: "UNFIXABLE", 4: "BADDARK", 5: "BADFLAT", 6: "BADERR",
    7: "NOSKY", 8: "LITTROW_GHOST", 9: "PERSIST_HIGH", 10: "PERSIST_MED", 11: "PERSIST_LOW",
    12: "SIG_SKYLINE", 13: "SIG_TELLURIC", 14: "NOT_ENOUGH_PSF",
}
#: bits treated as bad by the DR17 AstroNN continuum normalisation (REFERENCE.md: bits 0-7 and 12)
APOGEE_BAD_PIXEL_BITS = (0, 1, 2, 3, 4, 5, 6, 7, 12)
APOGEE_BAD_PIXEL_MASK = int(sum(1 << b for b in APOGEE_BAD_PIXEL_BITS))


def apogee_wavelength(n_pixels: int = APOGEE_N_PIXELS) -> np.ndarray:
    """Vacuum wavelength in Angstrom of the apStar pixels (float64)."""
    return 10.0 ** (APOGEE_LOG10_LAMBDA0 + APOGEE_DLOG10_LAMBDA * np.arange(n_pixels))


def kept_pixel_index() -> np.ndarray:
    """Indices (length 7514) of the apStar pixels kept by :func:`apogee_continuum`."""
    return np.concatenate([np.arange(s.start, s.stop) for s in APOGEE_CHIP_SLICES])


def decode_pixmask(value: int) -> list[str]:
    """Names of the APOGEE_PIXMASK bits set in ``value``."""
    return [name for bit, name in APOGEE_PIXMASK_BITS.items() if int(value) >> bit & 1]
