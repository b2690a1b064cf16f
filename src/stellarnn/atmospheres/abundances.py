"""Solar chemical mixture of the ATLAS9 ODFNEW grid and the mean mass per nucleus.

The ATLAS9 grids of Castelli & Kurucz (2003, IAU Symp. 210, A20) use the solar
abundances of Grevesse & Sauval (1998, Space Sci. Rev. 85, 161).  The table below holds
log epsilon (log10 N_X/N_H + 12) of GS98 for H to Ni, exactly the values written in the
``ABUNDANCE CHANGE`` cards of the solar ATLAS9 deck ``ksun.mod`` (converted from
log10 N_X/N_tot), and standard atomic weights (IUPAC 2013, in atomic mass units).
Elements beyond Ni (Z > 28) change the mean mass per nucleus by less than 1e-6
relative and are left out.

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
    ATLAS9 decks; elements beyond Ni (absent from :data:`SOLAR_MIXTURE_GS98`) get -20.00,
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
    return out
