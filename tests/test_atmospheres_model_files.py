"""Written model files are complete (issue 23): the decks' VTURB, all 99 abundances, the grid's 72 layers.

Each file is read back with our readers and with PySME's ``KrzFile`` (which reads both layouts).
"""
import numpy as np
import pytest

from stellarnn.atmospheres import AtmosphereGrid, read_krz, read_kurucz, write_krz, write_kurucz
from stellarnn.atmospheres.abundances import kurucz_abundances
from stellarnn.atmospheres.grid import deck_vturb
from stellarnn.atmospheres.krz import sme_abundances
from stellarnn.atmospheres.kurucz import read_kurucz_abundances

SR, BA, EU = 37, 55, 62  # 0-based indices of Sr, Ba, Eu


@pytest.fixture(scope="module")
def grid():
    return AtmosphereGrid.load_atlas9()


def test_deck_vturb_follows_the_grid_slices():
    assert deck_vturb(0.0) == 0.0                       # the grid's [Fe/H] = 0 decks
    assert deck_vturb(-0.1) == pytest.approx(2.0e5)
    assert deck_vturb(0.05) == pytest.approx(1.0e5)     # halfway between a 0 and a 2 km/s slice
    assert deck_vturb(3.0) == pytest.approx(2.0e5)      # beyond the end: the end slice
    assert deck_vturb(0.0, exclude_m_h=[0.0]) == pytest.approx(2.0e5)


@pytest.mark.parametrize("m_h", [0.0, -0.4])
def test_linear_model_writes_72_layers_with_its_vturb_and_abundances(grid, tmp_path, m_h):
    atm = grid.interpolate_linear(teff=5000.0, logg=3.0, m_h=m_h)
    assert atm.n_layers == 72
    vt = 0.0 if m_h == 0.0 else 2.0
    deck = read_kurucz(write_kurucz(atm, tmp_path / "m.mod"))
    assert deck.n_layers == 72
    np.testing.assert_allclose(deck.vturb, vt * 1e5, atol=1.0)
    np.testing.assert_allclose(deck.temperature, atm.temperature, atol=0.05)
    cards = read_kurucz_abundances(tmp_path / "m.mod")
    np.testing.assert_allclose(cards, kurucz_abundances(m_h), atol=0.006)
    krz = read_krz(write_krz(atm, tmp_path / "m.krz"))
    assert krz["vturb_kms"] == vt and len(krz["rhox"]) == 72
    np.testing.assert_allclose(krz["abundances"], sme_abundances(m_h), atol=1e-3)
    assert krz["abundances"][BA] == pytest.approx(2.13 - 12.036 + m_h, abs=0.01)


@pytest.mark.parametrize("m_h", [0.0, -0.4])
def test_pysme_reads_vturb_and_abundances_of_both_layouts(grid, tmp_path, m_h):
    from pysme.atmosphere.krzfile import KrzFile

    atm = grid.interpolate_linear(teff=5000.0, logg=3.0, m_h=m_h)
    vt = 0.0 if m_h == 0.0 else 2.0
    k = KrzFile(str(write_kurucz(atm, tmp_path / "m.mod")))
    assert k.vturb == vt and k.lonh == 1.25 and len(k.rhox) == 72
    assert k.monh == pytest.approx(m_h, abs=1e-4)
    np.testing.assert_allclose(k.temp, atm.temperature, atol=0.05)
    np.testing.assert_allclose(k.xne, atm.n_e, rtol=2e-3)
    h12 = k.abund.get_pattern(type="H=12", raw=True)  # the solar pattern of the deck (scale in monh)
    assert h12[SR] == pytest.approx(2.97, abs=0.01) and h12[BA] == pytest.approx(2.13, abs=0.01)
    assert h12[EU] == pytest.approx(0.51, abs=0.01)
    k = KrzFile(str(write_krz(atm, tmp_path / "m.krz")))
    assert k.vturb == vt and len(k.rhox) == 72
    np.testing.assert_allclose(k.xne, atm.n_e, rtol=1e-6)
    # the KRZ pattern is the scaled mixture itself (PySME reads it with monh = 0)
    h12 = k.abund.get_pattern(type="H=12", raw=True)
    assert h12[BA] == pytest.approx(2.13 + m_h, abs=0.01) and h12[SR] == pytest.approx(2.97 + m_h, abs=0.01)


def test_emulated_model_carries_the_deck_vturb_and_71_layers(tmp_path):
    from stellarnn.atmospheres.emulator import Innterpol

    atm = Innterpol.load().atmosphere(5777.0, 4.44, -0.1)
    assert atm.vturb is None  # the emulator does not predict VTURB: the writers take the decks'
    deck = read_kurucz(write_kurucz(atm, tmp_path / "e.mod"))
    assert deck.n_layers == 71  # the emulator's scale ends at log tau = +1.875 (see emulator docs)
    np.testing.assert_allclose(deck.vturb, 2.0e5)
    assert read_krz(write_krz(atm, tmp_path / "e.krz"))["vturb_kms"] == 2.0
    solar = Innterpol.load().atmosphere(5777.0, 4.44, 0.0)
    assert read_krz(write_krz(solar, tmp_path / "s.krz"))["vturb_kms"] == 0.0
