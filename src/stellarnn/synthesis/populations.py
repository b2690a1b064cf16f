"""The stellar populations every per-population figure of stellarnn is reported in.

Accuracy in the H band differs by more than an order of magnitude between regimes (the Cramér-Rao
bound on Teff of a metal-rich K giant is ~30x smaller than that of a 7000 K dwarf), so a median over a
whole grid says little.  These names and edges (issue "Training data that carries the information")
are used for bench JSON keys, README tables and plots:

===================== ===================== ============ ===============
name                  Teff [K]              log g        [M/H]
===================== ===================== ============ ===============
``giants``            3800 <= Teff < 5200   < 3.5        > -1
``metal_poor_giants`` 3800 <= Teff < 5200   < 3.5        <= -1
``warm_giants``       5200 <= Teff < 6500   < 3.5        any
``dwarfs``            4000 <= Teff < 6500   >= 3.5       > -1
``m_dwarfs``          Teff < 4000           >= 3.5       any
``hot``               Teff >= 6500          any          any
===================== ===================== ============ ===============

A star may belong to none of them (a giant cooler than 3800 K, a metal-poor dwarf); :func:`population_of`
then gives ``""``.
"""
from __future__ import annotations

import numpy as np

POPULATIONS = ("giants", "metal_poor_giants", "warm_giants", "dwarfs", "m_dwarfs", "hot")


def population_masks(teff, logg, m_h) -> dict[str, np.ndarray]:
    """Boolean membership of each star in each population (``{name: (n,) bool}``); NaN labels belong to none."""
    t, g, m = (np.asarray(v, dtype=float) for v in (teff, logg, m_h))
    giant_t = (t >= 3800) & (t < 5200) & (g < 3.5)
    return {
        "giants": giant_t & (m > -1),
        "metal_poor_giants": giant_t & (m <= -1),
        "warm_giants": (t >= 5200) & (t < 6500) & (g < 3.5),
        "dwarfs": (t >= 4000) & (t < 6500) & (g >= 3.5) & (m > -1),
        "m_dwarfs": (t < 4000) & (g >= 3.5),
        "hot": t >= 6500,
    }


def population_of(teff, logg, m_h) -> np.ndarray:
    """Population name of each star (``""`` for none), as a string array of the inputs' broadcast shape."""
    masks = population_masks(teff, logg, m_h)
    shape = np.broadcast(*(np.asarray(v) for v in (teff, logg, m_h))).shape
    out = np.full(shape, "", dtype=object)
    for name in POPULATIONS:  # the populations are disjoint
        out[masks[name]] = name
    return out.astype(str)
