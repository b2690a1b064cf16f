"""Tests for stellarnn.blase.sources: clone sources, echelle reader, air/vacuum."""
import numpy as np
import pytest
from astropy.io import fits

from stellarnn.blase.sources import load_clone_source, load_observed, read_echelle_fits, vacuum_to_air


def test_npz_and_csv_clone_sources(tmp_path):
    wl = np.linspace(8000, 8010, 101)
    np.savez(tmp_path / "s.npz", wavelength=wl, flux=np.ones(101))
    w, f = load_clone_source(tmp_path / "s.npz", 8002, 8004)
    assert w.min() >= 8002 and w.max() <= 8004 and f.shape == w.shape
    (tmp_path / "s.csv").write_text("wave_ang,flux\n" + "\n".join(f"{a},{b}" for a, b in zip(wl, wl / 8000)))
    w, f = load_clone_source(tmp_path / "s.csv")
    np.testing.assert_allclose(f, wl / 8000)
    with pytest.raises(ValueError, match="fewer than 3"):
        load_clone_source(tmp_path / "s.npz", 9000, 9100)
    with pytest.raises(FileNotFoundError):
        load_clone_source("no-such-entry-or-file")


def _echelle(path, n_orders=3, npx=200):
    hdus = [fits.PrimaryHDU()]
    for i in range(n_orders):
        wl_nm = 800 + 5 * i + np.linspace(0, 6, npx)
        cols = [fits.Column(name="wavelength", format="D", array=wl_nm),
                fits.Column(name="error", format="D", array=np.full(npx, 10.0)),
                fits.Column(name="continuum", format="D", array=np.full(npx, 1000.0)),
                fits.Column(name="flux", format="D", array=np.full(npx, 990.0))]
        hdus.append(fits.BinTableHDU.from_columns(cols))
    fits.HDUList(hdus).writeto(path)


def test_echelle_reader_units_and_normalisation(tmp_path):
    _echelle(tmp_path / "e.fits")
    spec = read_echelle_fits(tmp_path / "e.fits")
    assert spec.wavelength.min() == pytest.approx(8000.0)  # nm -> Angstrom
    np.testing.assert_allclose(spec.flux, 0.99)
    np.testing.assert_allclose(spec.error, 0.01)
    assert list(np.unique(spec.segment)) == [0, 1, 2] and list(spec.order) == [1, 2, 3]
    cut = load_observed(tmp_path / "e.fits", 8055, 8200, min_pixels_per_segment=50)
    assert list(cut.order) == [2, 3] and cut.segment.min() == 0


def test_real_chiron_layout():
    spec = load_observed("chiron-hip108294", 8060, 8640)
    assert spec.order.size >= 4 and spec.good_pixels().mean() > 0.99
    assert 0.8 < np.median(spec.flux) < 1.1
    assert 8060 <= spec.wavelength.min() and spec.wavelength.max() <= 8640


def test_vacuum_to_air_paschen():
    # P14: 8600.75 A vacuum, 8598.39 A air
    assert vacuum_to_air(8600.75) == pytest.approx(8598.39, abs=0.01)
