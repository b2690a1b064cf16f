import numpy as np
import pytest

from stellarnn.atmospheres import AtmosphereGrid
from stellarnn.synthesis.culling import (ATOMIC_WEIGHT, IONISATION_ENERGY, _h_minus_opacity_per_h, _saha_fractions,
                                         _solar_log_eps, cull_lines, line_strength)
from stellarnn.synthesis.linelists import LineTable, load_line_list


@pytest.fixture(scope="module")
def grid():
    return AtmosphereGrid.load_atlas9()


@pytest.fixture(scope="module")
def hband():
    return load_line_list(15100, 17000)


def _table(species, wavelength, excitation, loggf):
    n = len(species)
    mol = np.array([s.split()[0] not in ATOMIC_WEIGHT for s in species])
    return LineTable(wavelength=np.asarray(wavelength, float), species=np.array(species),
                     atom_number=np.zeros(n, int), ionization=np.array([int(s.split()[1]) for s in species]),
                     excitation=np.asarray(excitation, float), loggf=np.asarray(loggf, float), vdw=np.zeros(n),
                     is_molecule=mol, source=np.full(n, "test"))


def test_saha_fractions_sun_photosphere():
    # T = 5040 K, P_e = 10 dyn/cm^2 (theta = 1): by hand (Gray eq. 1.20) N(Fe II)/N(Fe I) =
    # 1.202e9 * 10**(1.63 - 1.43) * 10**-7.902 / 10 = 2.39, i.e. 70.5 % ionised; Na almost fully, O neutral
    theta, p_e = np.array([1.0]), np.array([10.0])
    fe = _saha_fractions("Fe", theta, p_e)[:, 0]
    assert fe.sum() == pytest.approx(1.0)
    assert fe[1] == pytest.approx(0.705, abs=0.005)
    assert _saha_fractions("Na", theta, p_e)[1, 0] > 0.99
    assert _saha_fractions("O", theta, p_e)[0, 0] > 0.99
    assert IONISATION_ENERGY["Fe"][0] == pytest.approx(7.902, abs=1e-3)


def test_h_minus_opacity_gray_values():
    # Gray (2005) Fig. 8.5 region: at 5040 K, P_e = 1 dyn/cm^2, H- opacity per H atom ~ 1e-26 cm^2 near 1.6 um,
    # bound-free vanishes beyond the 16419 A threshold and free-free grows with wavelength
    t, pe = np.array([[5040.0]]), np.array([[1.0]])
    k16 = _h_minus_opacity_per_h(np.array([[16000.0]]), t, pe)[0, 0]
    k17 = _h_minus_opacity_per_h(np.array([[17000.0]]), t, pe)[0, 0]
    k08 = _h_minus_opacity_per_h(np.array([[8000.0]]), t, pe)[0, 0]
    assert 3e-27 < k16 < 5e-26
    assert k08 > k16  # bound-free peak near 8500 A dominates
    assert _h_minus_opacity_per_h(np.array([[17000.0]]), t, 2 * pe)[0, 0] == pytest.approx(2 * k17)


def test_solar_pattern_is_pysme_asplund():
    eps = _solar_log_eps()
    assert eps["Fe"] == pytest.approx(7.50) and eps["C"] == pytest.approx(8.43) and eps["O"] == pytest.approx(8.69)


def test_strength_scales_with_gf_excitation_and_metallicity(grid):
    atm = grid.interpolate_linear(5777.0, 4.44, 0.0)
    t = _table(["Fe 1", "Fe 1", "Fe 1", "Si 1", "CO 1"], [15600, 15600, 15600, 15960, 16000],
               [3.0, 3.0, 5.0, 5.0, 0.5], [-1.0, 0.0, 0.0, 0.0, -6.0])
    r = line_strength(t, atm, m_h=0.0)
    assert r[1] - r[0] == pytest.approx(1.0, abs=1e-9)  # log gf enters linearly
    assert 1.0 < r[1] - r[2] < 2.5  # 2 eV more excitation: theta ~ 0.7-1.0 at log tau -2..0
    assert np.all(np.isfinite(r))
    # at [M/H] = -1 Fe I weakens by about 1 dex: less H- opacity (fewer electrons) is offset by stronger
    # ionisation of Fe at the lower electron pressure
    atm_mp = grid.interpolate_linear(5777.0, 4.44, -1.0)
    r_mp = line_strength(t, atm_mp, m_h=-1.0)
    assert 0.6 < r[1] - r_mp[1] < 1.3
    # CO is much stronger in a cool giant than in the Sun
    atm_cool = grid.interpolate_linear(4000.0, 1.5, 0.0)
    assert line_strength(t, atm_cool, m_h=0.0)[4] > r[4] + 1.5


def test_cull_lines_monotone_and_keeps_strong_lines(grid, hband):
    atm = grid.interpolate_linear(4800.0, 2.0, -1.5)
    kept = [len(cull_lines(hband, 4800.0, 2.0, -1.5, threshold=thr, atmosphere=atm)) for thr in (0, 1e-3, 1e-2, 1e-1)]
    assert kept[0] == len(hband)
    assert kept[0] > kept[1] > kept[2] > kept[3] > 500
    culled = cull_lines(hband, 4800.0, 2.0, -1.5, threshold=1e-2, atmosphere=atm)
    # the strong APOGEE lines survive: Mg I 15753 (vac 15770.15), Si I 15964 (vac 15964.4 region), K I 15168 (vac)
    for sp, wl in (("Mg 1", 15770.1), ("K 1", 15172.5), ("Al 1", 16723.5)):
        sel = (culled.species == sp) & (np.abs(culled.wavelength - wl) < 1.0)
        assert sel.any(), (sp, wl)
    # weak hot-star species are gone in a metal-poor giant
    assert (culled.species == "C2 1").sum() == 0
    with pytest.raises(ValueError):
        cull_lines(hband, 4800.0, 2.0, -1.5, threshold=-1.0, atmosphere=atm)


def test_line_strength_needs_tau_scale(grid, hband):
    atm = grid.interpolate_linear(5777.0, 4.44, 0.0)
    from dataclasses import replace

    with pytest.raises(ValueError, match="log_tau_ross"):
        line_strength(hband, replace(atm, log_tau_ross=None, abross=None), m_h=0.0)


def test_synthesizer_cull_threshold(grid):
    from stellarnn.synthesis.pysme_driver import PySMESynthesizer, StellarLabels

    lo, hi = 15540.0, 15600.0  # CO, OH, CN and Fe I lines
    lines = load_line_list(lo - 2, hi + 2)
    labels = StellarLabels(4000.0, 1.5, 0.0)
    full = PySMESynthesizer(lo, hi, lines, atmospheres=grid)
    f_full, _ = full.synthesize(labels)
    culled = PySMESynthesizer(lo, hi, lines, atmospheres=grid, cull_threshold=1e-2)
    f_cull, _ = culled.synthesize(labels)
    assert full.last_n_lines == len(full.lines)
    assert culled.last_n_lines < 0.6 * full.last_n_lines
    # at full resolution (no LSF) the dropped lines change the flux by well under 1 %
    assert np.sqrt(np.mean((f_full - f_cull) ** 2)) < 3e-3
    assert np.max(np.abs(f_full - f_cull)) < 3e-2
    with pytest.raises(ValueError):
        PySMESynthesizer(lo, hi, lines, atmospheres=grid, cull_threshold=-1)
