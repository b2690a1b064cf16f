"""KRZ writer: round trip with our reader and PySME's KrzFile, and a PySME synthesis with it."""
import numpy as np
import pandas as pd
import pytest

from stellarnn.atmospheres import AtmosphereGrid, read_krz, write_krz
from stellarnn.atmospheres.krz import KrzFormatError, sme_abundances


@pytest.fixture(scope="module")
def atmosphere():
    return AtmosphereGrid.load_atlas9().interpolate_linear(teff=4750.0, logg=2.3, m_h=-0.4)


def test_round_trip_with_our_reader(atmosphere, tmp_path):
    back = read_krz(write_krz(atmosphere, tmp_path / "m.krz"))
    assert back["teff"] == 4750.0 and back["logg"] == 2.3 and back["model_type"] == 0
    np.testing.assert_allclose(back["rhox"], atmosphere.rhox, rtol=1e-8)
    np.testing.assert_allclose(back["temperature"], atmosphere.temperature, atol=0.006)
    np.testing.assert_allclose(back["n_e"], atmosphere.n_e, rtol=1e-6)
    np.testing.assert_allclose(back["n_atoms"], atmosphere.n_atoms, rtol=1e-6)
    np.testing.assert_allclose(back["density"], atmosphere.density, rtol=1e-6)
    np.testing.assert_allclose(back["abundances"], sme_abundances(-0.4), atol=1e-3)


def test_sme_abundances_scale_the_metals():
    solar, poor = sme_abundances(0.0), sme_abundances(-1.0)
    assert solar[0] == pytest.approx(0.9204, abs=5e-4)
    assert poor[25] - solar[25] == pytest.approx(-1.0, abs=2e-3)  # Fe
    assert poor[40] - solar[40] == pytest.approx(-1.0, abs=2e-3)  # Nb: elements beyond Ni scale too
    assert poor[42] == solar[42] == -20.0  # Tc: absent


def test_round_trip_with_pysme_reader(atmosphere, tmp_path):
    from pysme.atmosphere.krzfile import KrzFile

    k = KrzFile(str(write_krz(atmosphere, tmp_path / "m.krz")))
    assert (k.teff, k.logg, k.depth, k.geom) == (4750.0, 2.3, "RHOX", "PP")
    np.testing.assert_allclose(k.rhox, atmosphere.rhox, rtol=1e-8)
    np.testing.assert_allclose(k.temp, atmosphere.temperature, atol=0.006)
    np.testing.assert_allclose(k.xne, atmosphere.n_e, rtol=1e-6)
    np.testing.assert_allclose(k.xna, atmosphere.n_atoms, rtol=1e-6)
    np.testing.assert_allclose(k.rho, atmosphere.density, rtol=1e-6)


def test_pysme_synthesises_with_it_offline(atmosphere, tmp_path):
    """PySME with sme.atmo embedded from our KRZ: three lines near 6302 A; no grid is downloaded."""
    from pysme.atmosphere.krzfile import KrzFile
    from pysme.linelist.linelist import LineList
    from pysme.sme import SME_Structure
    from pysme.synthesize import synthesize_spectrum

    lines = pd.DataFrame({
        "species": ["Fe 1", "Fe 1", "Ti 1"], "atom_number": [26.0, 26.0, 22.0], "ionization": [1.0, 1.0, 1.0],
        "wlcent": [6301.5012, 6302.4936, 6303.7568], "excit": [3.654, 3.686, 1.443],
        "gflog": [-0.718, -1.165, -1.566], "gamrad": [8.24, 8.24, 7.0], "gamqst": [-6.16, -6.16, -6.0],
        "gamvw": [-7.69, -7.69, -7.6], "lande": [1.67, 2.49, 1.0], "depth": [0.5, 0.5, 0.3],
        "reference": ["test"] * 3})
    sme = SME_Structure()
    sme.teff, sme.logg, sme.monh, sme.vmic, sme.vmac, sme.vsini = 4750.0, 2.3, -0.4, 2.0, 0.0, 0.0
    sme.abund = "solar"
    sme.linelist = LineList(lines, lineformat="short")
    sme.atmo = KrzFile(str(write_krz(atmosphere, tmp_path / "m.krz")))
    sme.atmo.method, sme.atmo.geom, sme.atmo.depth, sme.atmo.interp = "embedded", "PP", "RHOX", "RHOX"
    sme.wran = [[6300.0, 6305.0]]
    sme = synthesize_spectrum(sme)
    wave, flux = np.asarray(sme.wave[0]), np.asarray(sme.synth[0])
    assert np.isfinite(flux).all() and flux.max() <= 1.0001
    assert wave[np.argmin(flux)] == pytest.approx(6301.50, abs=0.05)   # strongest line
    assert flux.min() < 0.5
    assert flux[np.argmin(np.abs(wave - 6300.5))] > 0.98          # continuum between lines


def test_writer_and_reader_errors(atmosphere, tmp_path):
    grid = AtmosphereGrid.load_atlas9()
    batch = grid.interpolate_linear(teff=np.array([4750.0, 5000.0]), logg=2.3, m_h=-0.4)
    with pytest.raises(ValueError, match="one atmosphere"):
        write_krz(batch, tmp_path / "b.krz")
    with pytest.raises(FileNotFoundError):
        read_krz(tmp_path / "none.krz")
    bad = tmp_path / "bad.krz"
    bad.write_text("x\n" * 20)
    with pytest.raises(KrzFormatError):
        read_krz(bad)
