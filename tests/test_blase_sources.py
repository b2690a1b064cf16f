"""Tests of stellarnn.blase.sources: clone sources and observed spectra from data entries, files and objects
(the reader itself: test_spectra_echelle_io)."""
import numpy as np
import pytest

from stellarnn.blase.sources import load_clone_source, load_observed, vacuum_to_air


def test_npz_and_csv_clone_sources(tmp_path):
    wl = np.linspace(8000, 8010, 101)
    np.savez(tmp_path / "s.npz", wavelength=wl, flux=np.ones(101))
    w, f = load_clone_source(tmp_path / "s.npz", 8002, 8004)
    assert w.min() >= 8002 and w.max() <= 8004 and f.shape == w.shape
    (tmp_path / "s.csv").write_text("wave_ang,flux\n" + "\n".join(f"{a},{b}" for a, b in zip(wl, wl / 8000)))
    w, f = load_clone_source(tmp_path / "s.csv")
    np.testing.assert_allclose(f, wl / 8000)
    (tmp_path / "bare.dat").write_text("\n".join(f"{a} {b}" for a, b in zip(wl, wl / 8000)))  # wspectext layout
    w, f = load_clone_source(tmp_path / "bare.dat", wavelength_unit="Angstrom")
    np.testing.assert_allclose(w, wl)
    np.testing.assert_allclose(f, wl / 8000)
    (tmp_path / "s.xyz").write_text("8000 1\n")
    with pytest.raises(ValueError, match=r"clone source must be .npz or a text table \(.csv, .ecsv, .txt, .dat\)"):
        load_clone_source(tmp_path / "s.xyz")
    with pytest.raises(ValueError, match="fewer than 3"):
        load_clone_source(tmp_path / "s.npz", 9000, 9100)
    with pytest.raises(FileNotFoundError):
        load_clone_source("no-such-entry-or-file")


def test_clone_sources_in_the_ultraviolet_keep_their_unit(tmp_path):
    """A unit-less 2000-2100 Angstrom column would be inferred as nm; the file's ECSV unit or the column's
    name (``wave_ang``) says Angstrom, and a clone source written by write_spectrum_csv reads back exactly."""
    from stellarnn.spectra import Spectrum, write_spectrum_csv

    wl = np.linspace(2000, 2100, 201)
    flux = 1 - 0.5 * np.exp(-0.5 * ((wl - 2050) / 0.2) ** 2)
    write_spectrum_csv(tmp_path / "uv.csv", Spectrum(wl, flux, np.full(wl.size, 1e4), np.zeros(wl.size, int), {}))
    w, f = load_clone_source(tmp_path / "uv.csv")
    np.testing.assert_allclose(w, wl, rtol=1e-12)
    np.testing.assert_allclose(f, flux, rtol=1e-12)
    (tmp_path / "named.csv").write_text("wave_ang,flux\n" + "\n".join(f"{a:.17g},{b:.17g}" for a, b in zip(wl, flux)))
    w, _ = load_clone_source(tmp_path / "named.csv")
    np.testing.assert_allclose(w, wl, rtol=1e-12)
    (tmp_path / "plain.csv").write_text("wavelength,flux\n" + "\n".join(f"{a:.17g},{b:.17g}" for a, b in zip(wl, flux)))
    np.testing.assert_allclose(load_clone_source(tmp_path / "plain.csv", wavelength_unit="Angstrom")[0], wl)
    np.testing.assert_allclose(load_clone_source(tmp_path / "plain.csv")[0], 10 * wl)  # inferred as nm


def test_clone_source_with_a_nan_flux_is_refused(tmp_path):
    wl = np.linspace(8000, 8010, 11)
    flux = np.ones(11)
    flux[4] = np.nan
    (tmp_path / "s.csv").write_text("wave_ang,flux\n" + "\n".join(f"{a},{b}" for a, b in zip(wl, flux)))
    with pytest.raises(ValueError, match=r"s\.csv.*1 NaN/inf flux"):
        load_clone_source(tmp_path / "s.csv")
    np.savez(tmp_path / "s.npz", wavelength=wl, flux=flux)
    with pytest.raises(ValueError, match="finite"):
        load_clone_source(tmp_path / "s.npz")


def test_observed_file_cut_to_a_range_drops_and_renumbers_segments(tmp_path):
    # three orders of 200 pixels, 8000-8060, 8050-8110, 8100-8160 Angstrom (the FITS layouts: test_spectra_echelle_io)
    wave = np.concatenate([8000 + 50 * i + np.linspace(0, 60, 200) for i in range(3)])
    np.savez(tmp_path / "e.npz", wavelength=wave, flux=np.full(600, 0.99), error=np.full(600, 0.01),
             segment=np.repeat([0, 1, 2], 200))
    cut = load_observed(tmp_path / "e.npz", 8055, 8200, min_pixels_per_segment=50)
    assert list(cut.order) == [2, 3] and cut.segment.min() == 0
    assert cut.wavelength.min() >= 8055 and cut.metadata["format"] == "npz"


def test_real_chiron_layout():
    spec = load_observed("chiron-hip108294", 8060, 8640)
    assert spec.order.size >= 4 and spec.good_pixels().mean() > 0.99
    assert 0.8 < np.median(spec.flux) < 1.1
    assert 8060 <= spec.wavelength.min() and spec.wavelength.max() <= 8640


def test_vacuum_to_air_paschen():
    # P14: 8600.75 A vacuum, 8598.39 A air (the package's one convention, importable from here for clone_to_air)
    assert vacuum_to_air(8600.75) == pytest.approx(8598.39, abs=0.01)


def test_spectrum1d_like_object_cut_like_a_file():
    import astropy.units as u

    class Uncertainty:
        array, uncertainty_type = np.full(40, 0.01), "std"

    class Spectrum1DLike:
        spectral_axis, flux, uncertainty, mask = np.linspace(850.0, 851.0, 40) * u.nm, np.ones(40), Uncertainty(), None

    spec = load_observed(Spectrum1DLike(), 8502, 8508, min_pixels_per_segment=10)
    assert spec.wavelength.min() >= 8502 and spec.wavelength.max() <= 8508 and spec.metadata["format"] == "spectrum1d"
    with pytest.raises(ValueError, match="no segment has 100 pixels"):
        load_observed(Spectrum1DLike(), 8502, 8508)
