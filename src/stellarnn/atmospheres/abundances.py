"""Solar chemical mixture of the ATLAS9 ODFNEW grid and the mean mass per nucleus.

The ATLAS9 grids of Castelli & Kurucz (2003, IAU Symp. 210, A20) use the solar
abundances of Grevesse & Sauval (1998, Space Sci. Rev. 85, 161).  The table below holds
log epsilon (log10 N_X/N_H + 12) of GS98 for H to Ni, exactly the values written in the
``ABUNDANCE CHANGE`` cards of the solar ATLAS9 deck ``ksun.mod`` (converted from
log10 N_X/N_tot), and standard atomic weights (IUPAC 2013, in atomic mass units).
Elements beyond Ni (Z > 28) change the mean mass per nucleus by less than 1e-6
relative and are left out of it; they are in :data:`SOLAR_HEAVY_GS98` (log epsilon of the same
ATLAS9 solar deck, GS98, Cu to U; elements it marks absent -- Tc, Pm, Po to Ac, Pa, Np and
beyond -- stay absent), which completes the abundance table written into model files
(:func:`kurucz_abundances`).

Scaling by [M/H]: every element heavier than He is multiplied by 10**[M/H]; H and He
keep their solar ratio (the ATLAS9 convention for a scaled-solar mixture).  No alpha
enhancement is applied (the species ATLAS9 grid is the scaled-solar ODFNEW grid).
"""
from __future__ import annotations

import numpy as np

# (symbol, Z, log eps GS98, atomic weight [u])
SOLAR_MIXTURE_GS98: tuple[tuple[str, int, float, float], ...] = (
    ("H", 1, 12.00, 1.008), ("He", 2, 10.93, 4.002602), ("Li", 3, 1.10, 6.94),
    ("Be", 4, 1.40, 9.0121831), ("B", 5, 2.55, 10.81), ("C", 6, 8.52, 12.011),
    ("N", 7, 7.92, 14.007), ("O", 8, 8.83, 15.999), ("F", 9, 4.56, 18.998403163),
    ("Ne", 10, 8.08, 20.1797), ("Na", 11, 6.33, 22.98976928), ("Mg", 12, 7.58, 24.305),
    ("Al", 13, 6.47, 26.9815385), ("Si", 14, 7.55, 28.085), ("P", 15, 5.45, 30.973761998),
    ("S", 16, 7.33, 32.06), ("Cl", 17, 5.50, 35.45), ("Ar", 18, 6.40, 39.948),
    ("K", 19, 5.12, 39.0983), ("Ca", 20, 6.36, 40.078), ("Sc", 21, 3.17, 44.955908),
    ("Ti", 22, 5.02, 47.867), ("V", 23, 4.00, 50.9415), ("Cr", 24, 5.67, 51.9961),
    ("Mn", 25, 5.39, 54.938044), ("Fe", 26, 7.50, 55.845), ("Co", 27, 4.92, 58.933194),
    ("Ni", 28, 6.25, 58.6934),
)

#: (symbol, Z, log eps GS98) for Z > 28, from the ABUNDANCE CHANGE cards of the ATLAS9 solar deck
#: ``ksun.mod`` (Castelli & Kurucz 2003; Grevesse & Sauval 1998, Space Sci. Rev. 85, 161), converted from
#: log10 N_X/N_tot with N_H/N_tot = 0.92040; elements the deck marks absent (-20) are not listed
SOLAR_HEAVY_GS98: tuple[tuple[str, int, float], ...] = (
    ("Cu", 29, 4.21), ("Zn", 30, 4.60), ("Ga", 31, 2.88), ("Ge", 32, 3.41), ("As", 33, 2.37), ("Se", 34, 3.41),
    ("Br", 35, 2.63), ("Kr", 36, 3.31), ("Rb", 37, 2.60), ("Sr", 38, 2.97), ("Y", 39, 2.24), ("Zr", 40, 2.60),
    ("Nb", 41, 1.42), ("Mo", 42, 1.92), ("Ru", 44, 1.84), ("Rh", 45, 1.12), ("Pd", 46, 1.69), ("Ag", 47, 0.94),
    ("Cd", 48, 1.77), ("In", 49, 1.66), ("Sn", 50, 2.00), ("Sb", 51, 1.00), ("Te", 52, 2.24), ("I", 53, 1.51),
    ("Xe", 54, 2.17), ("Cs", 55, 1.13), ("Ba", 56, 2.13), ("La", 57, 1.17), ("Ce", 58, 1.58), ("Pr", 59, 0.71),
    ("Nd", 60, 1.50), ("Sm", 62, 1.01), ("Eu", 63, 0.51), ("Gd", 64, 1.12), ("Tb", 65, 0.35), ("Dy", 66, 1.14),
    ("Ho", 67, 0.26), ("Er", 68, 0.93), ("Tm", 69, 0.00), ("Yb", 70, 1.08), ("Lu", 71, 0.06), ("Hf", 72, 0.88),
    ("Ta", 73, -0.13), ("W", 74, 1.11), ("Re", 75, 0.28), ("Os", 76, 1.45), ("Ir", 77, 1.35), ("Pt", 78, 1.80),
    ("Au", 79, 1.01), ("Hg", 80, 1.13), ("Tl", 81, 0.90), ("Pb", 82, 1.95), ("Bi", 83, 0.71), ("Th", 90, 0.09),
    ("U", 92, -0.50),
)

_LOG_EPS = np.array([row[2] for row in SOLAR_MIXTURE_GS98])
_WEIGHT = np.array([row[3] for row in SOLAR_MIXTURE_GS98])
_IS_METAL = np.array([row[1] > 2 for row in SOLAR_MIXTURE_GS98])
_N_REL = 10.0 ** (_LOG_EPS - 12.0)  # number per H nucleus

#: sums over the mixture, per H nucleus: numbers and masses of H+He and of the metals
LIGHT_NUMBER = float(_N_REL[~_IS_METAL].sum())
LIGHT_MASS = float((_N_REL * _WEIGHT)[~_IS_METAL].sum())
METAL_NUMBER = float(_N_REL[_IS_METAL].sum())
METAL_MASS = float((_N_REL * _WEIGHT)[_IS_METAL].sum())


def mean_mass_per_nucleus(m_h):
    """Mean mass per nucleus (atomic mass units) of the scaled-solar GS98 mixture.

    ``mu(s) = (M_light + s M_metal) / (N_light + s N_metal)`` with ``s = 10**[M/H]``, where
    ``N`` and ``M`` are the number and mass per H nucleus of H+He ("light") and of the
    elements Li–Ni ("metal").  Works on floats, numpy arrays and torch tensors
    (differentiable in ``m_h``).

    Parameters
    ----------
    m_h : float, array or tensor
        Metallicity [M/H] in dex.

    Returns
    -------
    Same type as ``m_h``: mean mass per nucleus in u (1.2996 for the solar mixture).
    """
    scale = 10.0 ** m_h
    return (LIGHT_MASS + scale * METAL_MASS) / (LIGHT_NUMBER + scale * METAL_NUMBER)


def kurucz_abundances(m_h: float) -> np.ndarray:
    """The 99 ATLAS9 abundance entries for a scaled-solar mixture.

    Entries 1 and 2 are the number fractions N_H/N_tot and N_He/N_tot (linear), entries
    3..99 log10(N_X/N_tot) *before* the ``ABUNDANCE SCALE`` (10**[M/H]) is applied, as in
    ATLAS9 decks: H to Ni from :data:`SOLAR_MIXTURE_GS98`, Cu to U from :data:`SOLAR_HEAVY_GS98`
    (the ATLAS9 solar deck's full table); elements without a solar abundance there get -20.00,
    ATLAS9's code for "absent".

    Parameters
    ----------
    m_h : float
        [M/H] in dex; it enters N_tot (the number fractions of H and He change with the metals).
    """
    n_rel = _N_REL.copy()
    total = LIGHT_NUMBER + 10.0 ** m_h * METAL_NUMBER
    out = np.full(99, -20.0)
    out[0] = n_rel[0] / total
    out[1] = n_rel[1] / total
    out[2:len(n_rel)] = np.log10(n_rel[2:] / (LIGHT_NUMBER + METAL_NUMBER))
    for _, z, log_eps in SOLAR_HEAVY_GS98:
        out[z - 1] = log_eps - 12.0 - np.log10(LIGHT_NUMBER + METAL_NUMBER)
    return out
