"""ASPCAP element windows of the AstroNN censored branches (Leung & Bovy 2019, MNRAS 483, 3255).

The astroNN file ``aspcap_l31c_masks.npy`` (data entry ``aspcap-masks``) is an int32 bitmask
over the 7514 continuum-normalised pixels: bit k is set where the ASPCAP l31c window of element
k has weight.  Its bit layout, worked out from the pixel counts per bit and matching the branch
sizes in REFERENCE.md, follows the ASPCAP element order
C, C I, N, O, Na, Mg, Al, Si, P, S, K, Ca, Ti, Ti II, V, Cr, Mn, Fe, Co, Ni, ... :
bits 0-16 are C ... Mn, bit 17 is Fe (2403 px, not a branch: [Fe/H] comes from the trunk),
bits 18 and 19 are Co and Ni (bits 20-23 hold further elements the network does not use).
"""
from __future__ import annotations

import numpy as np

from ...spectra import APOGEE_N_KEPT

#: the 19 censored branches, in network order
BRANCH_ELEMENTS = ("C", "CI", "N", "O", "Na", "Mg", "Al", "Si", "P", "S", "K", "Ca", "Ti", "TiII", "V", "Cr",
                   "Mn", "Co", "Ni")
#: bit of each branch element in the ASPCAP l31c mask
ASPCAP_MASK_BIT = {**{e: i for i, e in enumerate(BRANCH_ELEMENTS[:17])}, "Fe": 17, "Co": 18, "Ni": 19}
#: window sizes in pixels (REFERENCE.md), checked against the mask file
BRANCH_PIXEL_COUNTS = (3806, 557, 3776, 505, 13, 106, 51, 102, 24, 8, 16, 19, 31, 28, 29, 46, 70, 24, 206)


def element_window_indices(mask: np.ndarray | None = None) -> list[np.ndarray]:
    """Pixel indices (into the 7514 normalised pixels) of each branch's window, in branch order.

    Parameters
    ----------
    mask : ndarray of int, shape (7514,), optional
        The ASPCAP bitmask (default: the ``aspcap-masks`` data entry).

    Raises
    ------
    ValueError
        The mask has the wrong shape, or its window sizes differ from :data:`BRANCH_PIXEL_COUNTS`.
    """
    if mask is None:
        from ...data import fetch

        mask = np.load(fetch("aspcap-masks"))
    mask = np.asarray(mask)
    if mask.shape != (APOGEE_N_KEPT,) or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"ASPCAP mask must be an integer array of shape ({APOGEE_N_KEPT},), got "
                         f"{mask.dtype} {mask.shape}")
    windows = [np.flatnonzero((mask.astype(np.int64) >> ASPCAP_MASK_BIT[e]) & 1) for e in BRANCH_ELEMENTS]
    counts = tuple(len(w) for w in windows)
    if counts != BRANCH_PIXEL_COUNTS:
        raise ValueError(f"ASPCAP mask window sizes {counts} differ from the expected {BRANCH_PIXEL_COUNTS}")
    return windows
