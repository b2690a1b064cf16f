"""Line-list culling: drop lines too weak to matter at given stellar labels, before synthesis.

The strength of a line is estimated by the ratio of its line-centre opacity to the continuous
opacity, ``R = kappa_line(lambda_0) / kappa_cont``, evaluated in LTE on a few layers of the
model atmosphere (log tau_Ross = -2 ... 0) and maximised over them.  This is the criterion
synspec uses to select lines (Hubeny & Lanz 2017, "A brief introductory guide to TLUSTY and
SYNSPEC", arXiv:1706.01937, section on the line list; synspec54.f, subroutine INILIN: a line is
kept when ``R >= RELOP`` on any depth), here written out with textbook ingredients so that it
runs in a few milliseconds for 40,000 lines:

* line-centre cross-section of the Doppler core per absorber in the lower level (Gray 2005,
  *The Observation and Analysis of Stellar Photospheres*, 3rd ed., eqs. 11.4, 11.13):
  ``sigma_0 = sqrt(pi) e^2 / (m_e c^2) * lambda^2 / Delta lambda_D * g f * (1 - exp(-h c / lambda k T))``
  with ``Delta lambda_D = lambda / c * sqrt(2 k T / m + xi^2)`` (thermal + micro-turbulence);
* Boltzmann population of the lower level ``n_l = N_stage g_l 10^(-theta chi) / U``,
  ``theta = 5040 / T`` (Gray eq. 1.18; g_l is inside gf);
* Saha ionisation balance of neutral, singly and doubly ionised stages with
  ``N_{i+1} / N_i = Phi_i(T) / P_e``, ``Phi = 1.2020e9 (U_{i+1} / U_i) theta^(-5/2) 10^(-theta I)``
  (Gray eq. 1.20), P_e = n_e k T from the atmosphere, first and second ionisation energies I
  from NIST ASD; partition functions U are constant, rounded values representative of
  4000-6000 K (cf. Gray Table D.2) -- an error of 0.2 dex in U shifts R by 0.2 dex, small
  against the threshold's range of useful values;
* molecules AB: number density from dissociation equilibrium with free (neutral) atoms,
  ``n_AB = n_A n_B / K``, ``K = (U_A U_B / U_AB) (2 pi mu k T / h^2)^(3/2) exp(-D_0 / k T)``
  (Gray eq. 8.26 in number-density form; Tatum 1966), with U_AB = g_el * U_rot * U_vib of a
  rigid rotor and harmonic oscillator (U_rot = k T / (sigma h c B), U_vib = 1 / (1 - exp(-h c
  omega / k T))), molecular constants from Huber & Herzberg (1979, *Constants of Diatomic
  Molecules*); H2O is H + OH with D_0(H-OH) = 5.10 eV and an asymmetric-top U_rot.  CO is
  solved together with free C and O (it locks up the rarer of the two in cool stars, which
  controls CN, C2 and OH); other molecules do not deplete their atoms, and n_AB is capped at the
  smaller atomic density;
* continuum: H- bound-free (Gray eq. 8.11-8.12, cross-section polynomial of Wishart 1979 /
  John 1988 as given by Gray, zero longwards of the 16,419 A threshold) plus H- free-free (Gray
  eq. 8.13, Bell & Berrington 1987) per neutral H atom, times the neutral-H density.  Other
  continuum sources (H I bound-free from n >= 5, metals, scattering) are left out: they only
  lower kappa_cont, so the estimate errs on the side of keeping lines (relevant in hot stars).

The threshold on R is calibrated against full-list PySME spectra at APOGEE resolution
(``bench/synthesis.py``): :data:`DEFAULT_CULL_THRESHOLD`.
"""
from __future__ import annotations

import numpy as np

from ..constants import (ATOMIC_MASS_UNIT_CGS, BOLTZMANN_CGS, ELECTRON_RADIUS_CGS, ELECTRONVOLT_CGS, PLANCK_CGS,
                         SPEED_OF_LIGHT_CGS)
from .linelists import ELEMENT_SYMBOLS, LineTable

#: measured by bench/synthesis.py at 4 labels (cool giant, Sun, metal-poor giant, warm dwarf): worst rms of
#: full - culled APOGEE spectra 3.6e-4 and worst max ``|difference|`` 6.8e-3 at 1e-2 (3e-2: 6.8e-4 and 1.7e-2,
#: only ~0.3 s faster; 1e-1: rms 2.3e-3 in the cool giant, too coarse)
DEFAULT_CULL_THRESHOLD = 1e-2

#: log10 tau_Ross of the layers on which R is evaluated (maximum taken over them)
CULL_LOG_TAU = (-2.0, -1.5, -1.0, -0.5, 0.0)

# physical constants (cgs, CODATA 2018: stellarnn.constants)
_K_B = BOLTZMANN_CGS
_H = PLANCK_CGS
_C = SPEED_OF_LIGHT_CGS
_M_U = ATOMIC_MASS_UNIT_CGS
_EV = ELECTRONVOLT_CGS
_SIGMA_CLASSICAL = np.sqrt(np.pi) * ELECTRON_RADIUS_CGS  # sqrt(pi) e^2 / (m_e c^2) [cm]

#: first and second ionisation energies [eV] (NIST Atomic Spectra Database)
IONISATION_ENERGY = {
    "H": (13.598, 99.0), "He": (24.587, 54.418), "Li": (5.392, 75.64), "Be": (9.323, 18.211),
    "B": (8.298, 25.155), "C": (11.260, 24.383), "N": (14.534, 29.601), "O": (13.618, 35.121),
    "F": (17.423, 34.971), "Na": (5.139, 47.286), "Mg": (7.646, 15.035), "Al": (5.986, 18.829),
    "Si": (8.152, 16.346), "P": (10.487, 19.769), "S": (10.360, 23.338), "Cl": (12.968, 23.814),
    "K": (4.341, 31.625), "Ca": (6.113, 11.872), "Sc": (6.561, 12.800), "Ti": (6.828, 13.576),
    "V": (6.746, 14.620), "Cr": (6.767, 16.486), "Mn": (7.434, 15.640), "Fe": (7.902, 16.199),
    "Co": (7.881, 17.084), "Ni": (7.640, 18.169), "Cu": (7.726, 20.292), "Zn": (9.394, 17.964),
    "Ge": (7.899, 15.935), "Rb": (4.177, 27.290), "Sr": (5.695, 11.030), "Y": (6.217, 12.224),
    "Zr": (6.634, 13.130), "Cs": (3.894, 23.157), "Ba": (5.212, 10.004), "Au": (9.226, 20.203),
}

#: log10 partition functions of stages I, II, III, constant (rounded values near 5000 K)
LOG_PARTITION = {
    "H": (0.30, 0.0, 0.0), "He": (0.0, 0.30, 0.0), "Li": (0.32, 0.0, 0.30), "B": (0.78, 0.0, 0.30),
    "C": (0.97, 0.78, 0.0), "N": (0.61, 0.95, 0.78), "O": (0.94, 0.60, 0.95), "F": (0.75, 0.95, 0.60),
    "Na": (0.31, 0.0, 0.75), "Mg": (0.01, 0.31, 0.0), "Al": (0.77, 0.0, 0.30), "Si": (0.98, 0.76, 0.0),
    "P": (0.65, 0.91, 0.78), "S": (0.95, 0.61, 0.91), "Cl": (0.72, 0.92, 0.61), "K": (0.34, 0.0, 0.75),
    "Ca": (0.07, 0.34, 0.0), "Sc": (1.08, 1.36, 1.0), "Ti": (1.47, 1.75, 1.3), "V": (1.55, 1.64, 1.5),
    "Cr": (1.02, 0.87, 1.4), "Mn": (0.81, 0.89, 1.2), "Fe": (1.43, 1.63, 1.4), "Co": (1.52, 1.46, 1.4),
    "Ni": (1.47, 1.02, 1.4), "Cu": (0.36, 0.01, 1.0), "Zn": (0.0, 0.30, 0.0), "Ge": (0.90, 0.60, 0.0),
    "Rb": (0.34, 0.0, 0.75), "Sr": (0.0, 0.34, 0.0), "Y": (1.10, 1.20, 0.8), "Zr": (1.50, 1.70, 1.5),
    "Cs": (0.34, 0.0, 0.75), "Ba": (0.36, 0.62, 0.0), "Au": (0.32, 0.0, 1.0),
}
_DEFAULT_IONISATION = (7.0, 15.0)
_DEFAULT_LOG_PARTITION = (0.5, 0.5, 0.5)

#: standard atomic weights [u] of the elements present in the line lists (IUPAC 2013)
ATOMIC_WEIGHT = {
    "H": 1.008, "He": 4.003, "Li": 6.94, "B": 10.81, "C": 12.011, "N": 14.007, "O": 15.999, "F": 18.998,
    "Na": 22.990, "Mg": 24.305, "Al": 26.982, "Si": 28.085, "P": 30.974, "S": 32.06, "Cl": 35.45,
    "K": 39.098, "Ca": 40.078, "Sc": 44.956, "Ti": 47.867, "V": 50.942, "Cr": 51.996, "Mn": 54.938,
    "Fe": 55.845, "Co": 58.933, "Ni": 58.693, "Cu": 63.546, "Zn": 65.38, "Ge": 72.63, "Rb": 85.468,
    "Sr": 87.62, "Y": 88.906, "Zr": 91.224, "Cs": 132.905, "Ba": 137.327, "Au": 196.967,
}

#: diatomic (and H2O) data: constituent atoms, D_0 [eV], B [cm^-1], omega_e [cm^-1], symmetry number,
#: ground-state electronic degeneracy (Huber & Herzberg 1979; H2O as H + OH, B = sqrt of ABC product)
MOLECULE_DATA = {
    "CO": (("C", "O"), 11.092, 1.931, 2169.8, 1, 1),
    "CN": (("C", "N"), 7.72, 1.900, 2068.6, 1, 2),
    "OH": (("O", "H"), 4.392, 18.91, 3737.8, 1, 4),
    "C2": (("C", "C"), 6.21, 1.820, 1854.7, 2, 1),
    "FeH": (("Fe", "H"), 1.63, 6.0, 1826.9, 1, 8),
    "HF": (("H", "F"), 5.87, 20.95, 4138.3, 1, 1),
    "HCl": (("H", "Cl"), 4.434, 10.59, 2990.9, 1, 1),
    "H2O": (("OH", "H"), 5.10, None, 1594.7, 2, 1),
}
_H2O_ROTATION = (27.88, 14.51, 9.28)  # A, B, C [cm^-1] of H2O (Herzberg 1966)
_HC_OVER_K = 1.438777  # h c / k [cm K]


def _solar_log_eps() -> dict[str, float]:
    """log epsilon of the solar mixture PySME uses (Asplund et al. 2009, ARA&A 47, 481)."""
    from pysme.abund import Abund

    pattern = Abund(0.0, "asplund2009").get_pattern("H=12")
    return {k: float(v) for k, v in pattern.items() if np.isfinite(v)}


def _saha_fractions(element: str, theta: np.ndarray, p_e: np.ndarray) -> np.ndarray:
    """Fractions of neutral, singly and doubly ionised atoms, shape (3, n_depth) (Gray eq. 1.20)."""
    i1, i2 = IONISATION_ENERGY.get(element, _DEFAULT_IONISATION)
    u0, u1, u2 = LOG_PARTITION.get(element, _DEFAULT_LOG_PARTITION)
    log_r1 = np.log10(1.2020e9) + (u1 - u0) - 2.5 * np.log10(theta) - theta * i1 - np.log10(p_e)
    log_r2 = np.log10(1.2020e9) + (u2 - u1) - 2.5 * np.log10(theta) - theta * i2 - np.log10(p_e)
    r1 = 10.0 ** np.clip(log_r1, -60, 60)
    r2 = r1 * 10.0 ** np.clip(log_r2, -60, 60)
    norm = 1.0 + r1 + r2
    return np.stack([1.0 / norm, r1 / norm, r2 / norm])


def _h_minus_opacity_per_h(wavelength: np.ndarray, temperature: np.ndarray, p_e: np.ndarray) -> np.ndarray:
    """H- bound-free + free-free opacity per neutral H atom [cm^2] (Gray 2005, eqs. 8.11-8.13).

    ``wavelength`` [Angstrom] (n_lines, 1); ``temperature``, ``p_e`` (1, n_depth).
    """
    lam = np.asarray(wavelength, dtype=np.float64)
    theta = 5040.0 / temperature
    coeffs = (1.99654, -1.18267e-5, 2.64243e-6, -4.40524e-10, 3.23992e-14, -1.39568e-18, 2.78701e-23)
    alpha_bf = sum(a * lam ** i for i, a in enumerate(coeffs)) * 1e-18
    alpha_bf = np.where(lam < 16419.0, np.clip(alpha_bf, 0.0, None), 0.0)
    stim = 1.0 - 10.0 ** (-1.2398e4 / lam * theta)
    kappa_bf = 4.158e-10 * alpha_bf * p_e * theta ** 2.5 * 10.0 ** (0.754 * theta) * stim
    x = np.log10(lam)
    lt = np.log10(theta)
    f0 = -2.2763 - 1.6850 * x + 0.76661 * x ** 2 - 0.053346 * x ** 3
    f1 = 15.2827 - 9.2846 * x + 1.99381 * x ** 2 - 0.142631 * x ** 3
    f2 = -197.789 + 190.266 * x - 67.9775 * x ** 2 + 10.6913 * x ** 3 - 0.625151 * x ** 4
    kappa_ff = 1e-26 * p_e * 10.0 ** (f0 + f1 * lt + f2 * lt ** 2)
    return kappa_bf + kappa_ff


def _dissociation_constant(atoms, d0, rot_b, omega, sym, g_el, temperature) -> np.ndarray:
    """K = n_A n_B / n_AB [cm^-3] of a diatomic molecule (Gray 2005, eq. 8.26, number-density form)."""
    a, b = atoms
    u_ab = g_el * temperature / (_HC_OVER_K * rot_b * sym) / (1.0 - np.exp(-_HC_OVER_K * omega / temperature))
    log_ua = LOG_PARTITION.get(a, _DEFAULT_LOG_PARTITION)[0]
    log_ub = LOG_PARTITION.get(b, _DEFAULT_LOG_PARTITION)[0]
    mu = ATOMIC_WEIGHT[a] * ATOMIC_WEIGHT[b] / (ATOMIC_WEIGHT[a] + ATOMIC_WEIGHT[b]) * _M_U
    return 10.0 ** (log_ua + log_ub - np.log10(u_ab) + 1.5 * np.log10(2 * np.pi * mu * _K_B * temperature / _H ** 2)
                    - d0 * _EV / (_K_B * temperature) / np.log(10))


def _molecule_number_density(name: str, temperature, n_free: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """n_AB [cm^-3], log10 U_AB and mass [u] of a molecule from dissociation equilibrium.

    ``n_free`` holds the free neutral atom densities (C and O after CO formation) and ``"CO"``.
    """
    (a, b), d0, rot_b, omega, sym, g_el = MOLECULE_DATA[name]
    if name == "CO" and "CO" in n_free:
        u_ab = g_el * temperature / (_HC_OVER_K * rot_b * sym) / (1.0 - np.exp(-_HC_OVER_K * omega / temperature))
        return n_free["CO"], np.log10(u_ab), ATOMIC_WEIGHT["C"] + ATOMIC_WEIGHT["O"]
    if name == "H2O":
        n_a, log_ua, m_a = _molecule_number_density("OH", temperature, n_free)
        rot_a, rot_b2, rot_c = _H2O_ROTATION
        u_rot = np.sqrt(np.pi) / sym * np.sqrt((temperature / _HC_OVER_K) ** 3 / (rot_a * rot_b2 * rot_c))
    else:
        n_a, log_ua, m_a = n_free[a], LOG_PARTITION.get(a, _DEFAULT_LOG_PARTITION)[0], ATOMIC_WEIGHT[a]
        u_rot = temperature / (_HC_OVER_K * rot_b * sym)
    n_b, log_ub, m_b = n_free[b], LOG_PARTITION.get(b, _DEFAULT_LOG_PARTITION)[0], ATOMIC_WEIGHT[b]
    u_vib = 1.0 / (1.0 - np.exp(-_HC_OVER_K * omega / temperature))
    log_u_ab = np.log10(g_el * u_rot * u_vib)
    mu = m_a * m_b / (m_a + m_b) * _M_U
    log_k = (log_ua + log_ub - log_u_ab + 1.5 * np.log10(2 * np.pi * mu * _K_B * temperature / _H ** 2)
             - d0 * _EV / (_K_B * temperature) / np.log(10))
    n_ab = 10.0 ** (np.log10(np.maximum(n_a, 1e-300)) + np.log10(np.maximum(n_b, 1e-300)) - log_k)
    n_ab = np.minimum(n_ab, np.minimum(n_a, n_b))
    return n_ab, log_u_ab, m_a + m_b


def line_strength(lines: LineTable, atmosphere, m_h: float, v_micro: float = 1.5, x_m: dict | None = None,
                  log_tau: tuple[float, ...] = CULL_LOG_TAU) -> np.ndarray:
    """log10 of the line-centre to continuum opacity ratio of every line, maximised over depth.

    Parameters
    ----------
    lines : LineTable
        Line list (vacuum wavelengths [Angstrom], excitation [eV], log gf).
    atmosphere : stellarnn.atmospheres.Atmosphere
        Single (unbatched) model with ``log_tau_ross``, ``temperature``, ``n_e`` and ``p_gas``.
    m_h : float
        [M/H]: every element heavier than He is scaled by 10**m_h from the Asplund et al. (2009)
        solar mixture (as in :class:`~stellarnn.synthesis.pysme_driver.PySMESynthesizer`).
    v_micro : float
        Micro-turbulence [km/s] in the Doppler width.
    x_m : dict, optional
        Element symbol -> [X/M] offsets.
    log_tau : tuple of float
        log10 tau_Ross of the layers on which the ratio is evaluated.

    Returns
    -------
    numpy.ndarray (n_lines,)
        log10 R; ``-inf`` for species without abundance data.

    Raises
    ------
    ValueError
        The atmosphere has no Rosseland optical-depth scale or is a batch.
    """
    if atmosphere.log_tau_ross is None or np.ndim(atmosphere.rhox) != 1:
        raise ValueError("line_strength needs a single atmosphere with a log_tau_ross scale")
    lt_atm = np.asarray(atmosphere.log_tau_ross, dtype=np.float64)
    order = np.argsort(lt_atm)
    grid = np.asarray(log_tau, dtype=np.float64)

    def at(q):
        return 10.0 ** np.interp(grid, lt_atm[order], np.log10(np.asarray(q, dtype=np.float64)[order]))

    temp, n_e, p_gas = at(atmosphere.temperature), at(atmosphere.n_e), at(atmosphere.p_gas)
    theta = 5040.0 / temp
    p_e = n_e * _K_B * temp
    n_nuclei = p_gas / (_K_B * temp) - n_e
    x_m = x_m or {}

    log_eps = _solar_log_eps()
    scale = {el: (m_h + float(x_m.get(el, 0.0)) if el not in ("H", "He") else 0.0) for el in log_eps}
    abund = {el: 10.0 ** (log_eps[el] - 12.0 + scale[el]) for el in log_eps}  # N_X / N_H
    n_h = n_nuclei / sum(abund.values())
    h_frac = _saha_fractions("H", theta, p_e)
    kappa_c_per_h = h_frac[0] * n_h  # neutral H density; multiplied by the per-atom opacity below

    species = np.asarray(lines.species).astype(str)
    names = np.array([s.split()[0] for s in species])
    stage = np.asarray(lines.ionization, dtype=int)
    is_mol = np.asarray(lines.is_molecule, dtype=bool)
    log_r = np.full(len(lines), -np.inf)

    fractions: dict[str, np.ndarray] = {}
    n_free: dict[str, np.ndarray] = {}
    for el in set(names[~is_mol]) | {a for m in set(names[is_mol]) if m in MOLECULE_DATA
                                     for a in MOLECULE_DATA[m][0] if a != "OH"} | {"H", "O"}:
        if el not in log_eps:
            continue
        fractions[el] = _saha_fractions(el, theta, p_e)
        n_free[el] = fractions[el][0] * abund[el] * n_h

    if "C" in n_free and "O" in n_free:
        # CO locks up carbon (or oxygen): solve (C - x)(O - x) = K_CO x for x = n_CO
        (_, _), d0, rot_b, omega, sym, g_el = MOLECULE_DATA["CO"]
        k_co = _dissociation_constant(("C", "O"), d0, rot_b, omega, sym, g_el, temp)
        c_tot, o_tot = n_free["C"], n_free["O"]
        b = c_tot + o_tot + k_co
        x = 2.0 * c_tot * o_tot / (b + np.sqrt(np.maximum(b * b - 4.0 * c_tot * o_tot, 0.0)))
        n_free["C"], n_free["O"] = c_tot - x, o_tot - x
        n_free["CO"] = x

    # (absorber density / n_HI) [per depth], log10 U, mass [u], per group of species
    for key in np.unique(species):
        sel = species == key
        name = key.split()[0]
        mol = bool(is_mol[sel][0])
        if mol:
            if name not in MOLECULE_DATA:
                continue
            n_abs, log_u, mass = _molecule_number_density(name, temp, n_free)
        else:
            if name not in fractions or name not in ATOMIC_WEIGHT:
                continue
            st = int(stage[sel][0])
            if st < 1 or st > 3:
                continue
            n_abs = fractions[name][st - 1] * abund[name] * n_h
            log_u = LOG_PARTITION.get(name, _DEFAULT_LOG_PARTITION)[st - 1]
            mass = ATOMIC_WEIGHT[name]
        wl = np.asarray(lines.wavelength[sel], dtype=np.float64)[:, None]  # Angstrom
        v_dopp = np.sqrt(2 * _K_B * temp / (mass * _M_U) + (v_micro * 1e5) ** 2)  # cm/s
        stim = 1.0 - 10.0 ** (-1.2398e4 / wl * theta)
        log_sigma = (np.log10(_SIGMA_CLASSICAL) + np.log10(wl * 1e-8) + np.log10(_C / v_dopp)
                     + np.asarray(lines.loggf[sel])[:, None] - theta * np.asarray(lines.excitation[sel])[:, None]
                     - log_u + np.log10(stim))
        kappa_c = _h_minus_opacity_per_h(wl, temp, p_e) * kappa_c_per_h
        ratio = log_sigma + np.log10(np.maximum(n_abs, 1e-300)) - np.log10(kappa_c)
        log_r[sel] = ratio.max(axis=1)
    return log_r


def cull_lines(lines: LineTable, teff: float, logg: float, m_h: float, threshold: float = DEFAULT_CULL_THRESHOLD,
               v_micro: float | None = None, x_m: dict | None = None, atmosphere=None, atmospheres=None,
               ) -> LineTable:
    """Keep only the lines whose line-to-continuum opacity ratio reaches ``threshold`` at these labels.

    Parameters
    ----------
    lines : LineTable
        Full line list.
    teff, logg, m_h : float
        Stellar labels [K, cgs, dex].
    threshold : float
        Minimum ratio R = kappa_line(centre) / kappa_cont on at least one of the layers
        :data:`CULL_LOG_TAU` (see the module notes); 0 keeps every line.
    v_micro : float, optional
        Micro-turbulence [km/s]; default the APOGEE relation in log g.
    x_m : dict, optional
        [X/M] offsets by element symbol.
    atmosphere : Atmosphere, optional
        The model to evaluate R on; default interpolated in ``atmospheres``.
    atmospheres : object with ``interpolate_linear(teff, logg, m_h)``, optional
        Default: the ATLAS9 grid.

    Returns
    -------
    LineTable
        The kept lines (H I lines and lines of species without atomic or molecular data here are always kept).
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if threshold == 0:
        return lines
    if v_micro is None:
        from .pysme_driver import microturbulence_apogee

        v_micro = float(microturbulence_apogee(logg))
    if atmosphere is None:
        if atmospheres is None:
            from ..atmospheres import AtmosphereGrid

            atmospheres = AtmosphereGrid.load_atlas9()
        atmosphere = atmospheres.interpolate_linear(teff=teff, logg=logg, m_h=m_h)
    log_r = line_strength(lines, atmosphere, m_h=m_h, v_micro=v_micro, x_m=x_m)
    # H I lines are always kept: their Stark wings reach far beyond what the line-centre ratio measures
    hydrogen = np.asarray(lines.species).astype(str) == "H 1"
    keep = (log_r >= np.log10(threshold)) | ~_has_data(lines) | hydrogen
    return lines.select(keep)


def _has_data(lines: LineTable) -> np.ndarray:
    """True where :func:`line_strength` can evaluate the species."""
    names = np.array([s.split()[0] for s in np.asarray(lines.species).astype(str)])
    mol = np.asarray(lines.is_molecule, dtype=bool)
    known_atoms = set(ATOMIC_WEIGHT) & set(ELEMENT_SYMBOLS)
    return np.where(mol, np.isin(names, list(MOLECULE_DATA)), np.isin(names, list(known_atoms)))
