"""Tests of stellarnn.spectra.echelle_io: observed spectra as instruments write them (issue 21, item 1)."""
import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra.air_vacuum import air_to_vacuum
from stellarnn.spectra.echelle_io import from_spectrum1d, read_echelle_fits


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


def test_real_chiron_file_is_read_in_angstrom(real_file):
    """TelFit's CHIRON file stores nm without TUNIT (its primary header's WAT cards say 8512 Angstrom for
    order 1, the table 851.2): the values give the unit, and that is recorded."""
    spec = read_echelle_fits(real_file("chiron-hip108294"))
    assert spec.metadata["n_orders"] == 58 and spec.metadata["wavelength_unit"] == "nm"
    assert "inferred" in spec.metadata["wavelength_unit_source"]
    assert spec.wavelength.min() == pytest.approx(4578.03, abs=0.01)
    assert spec.wavelength.max() == pytest.approx(8629.23, abs=0.01)


def _table(path, wave, flux, err, names=("wavelength", "flux", "error"), unit=None, header=None,
           primary_header=None):
    cols = [fits.Column(name=names[0], format="D", array=wave, unit=unit),
            fits.Column(name=names[1], format="D", array=flux),
            fits.Column(name=names[2], format="D", array=err)]
    hdu = fits.BinTableHDU.from_columns(cols)
    for k, v in (header or {}).items():
        hdu.header[k] = v
    primary = fits.PrimaryHDU()
    for k, v in (primary_header or {}).items():
        primary.header[k] = v
    fits.HDUList([primary, hdu]).writeto(path)
    return path


@pytest.mark.parametrize("wave_name,err_name,kind", [
    ("wavelength", "uncertainty", "sigma"), ("WAVE", "ERROR", "sigma"), ("Lambda", "sigma", "sigma"),
    ("wave", "ivar", "ivar"), ("WAVELENGTH", "Err", "sigma")])
def test_table_column_spellings(tmp_path, wave_name, err_name, kind):
    wl = np.linspace(8500.0, 8510.0, 50)
    sigma = np.full(50, 0.02)
    err = 1.0 / sigma ** 2 if kind == "ivar" else sigma
    path = _table(tmp_path / "t.fits", wl, np.full(50, 0.9), err, (wave_name, "FLUX", err_name), unit="Angstrom")
    spec = read_echelle_fits(path)
    np.testing.assert_allclose(spec.wavelength, wl)
    np.testing.assert_allclose(spec.error, 0.02)
    assert spec.metadata["wavelength_unit_source"] == "TUNIT"
    assert spec.metadata["columns"]["wavelength"] == wave_name


@pytest.mark.parametrize("unit,scale", [("Angstrom", 1.0), ("AA", 1.0), ("A", 1.0), ("nm", 10.0),
                                        ("um", 1e4), ("micron", 1e4), ("m", 1e10)])
def test_table_units_honoured(tmp_path, unit, scale):
    wl_a = np.linspace(8500.0, 8510.0, 40)
    path = _table(tmp_path / "t.fits", wl_a / scale, np.ones(40), np.full(40, 0.01), unit=unit)
    spec = read_echelle_fits(path)
    np.testing.assert_allclose(spec.wavelength, wl_a, rtol=1e-12)


def test_mislabelled_unit_is_honoured_not_guessed(tmp_path):
    # Angstrom values labelled nm cannot be told from nm: the label wins (×10), no silent guess
    wl = np.linspace(8500.0, 8510.0, 40)
    spec = read_echelle_fits(_table(tmp_path / "t.fits", wl, np.ones(40), np.full(40, 0.01), unit="nm"))
    np.testing.assert_allclose(spec.wavelength, wl * 10.0)
    # without TUNIT the unit is inferred from the values and that is recorded
    spec = read_echelle_fits(_table(tmp_path / "u.fits", wl, np.ones(40), np.full(40, 0.01)))
    np.testing.assert_allclose(spec.wavelength, wl)
    assert spec.metadata["wavelength_unit"] == "Angstrom"
    assert "inferred" in spec.metadata["wavelength_unit_source"]
    # an explicit unit for unit-less columns
    spec = read_echelle_fits(tmp_path / "u.fits", wavelength_unit="nm")
    np.testing.assert_allclose(spec.wavelength, wl * 10.0)


def test_a_column_name_states_the_unit_after_tunit(tmp_path):
    wl = np.linspace(2000.0, 2010.0, 40)  # Angstrom values the inference would take for nm
    spec = read_echelle_fits(_table(tmp_path / "a.fits", wl, np.ones(40), np.full(40, 0.01),
                                    names=("wave_ang", "flux", "error")), wavelength_unit="nm")
    np.testing.assert_allclose(spec.wavelength, wl, rtol=1e-12)
    assert spec.metadata["wavelength_unit_source"] == "column name"
    spec = read_echelle_fits(_table(tmp_path / "b.fits", wl / 10, np.ones(40), np.full(40, 0.01),
                                    names=("wave_ang", "flux", "error"), unit="nm"))  # TUNIT comes first
    np.testing.assert_allclose(spec.wavelength, wl, rtol=1e-12)
    assert spec.metadata["wavelength_unit_source"] == "TUNIT"


def test_bad_unit_and_missing_columns_name_file_hdu_and_columns(tmp_path):
    wl = np.linspace(8500.0, 8510.0, 40)
    path = _table(tmp_path / "hz.fits", wl, np.ones(40), np.full(40, 0.01), unit="Hz")
    with pytest.raises(ValueError, match=r"hz\.fits: HDU 1 column 'wavelength'.*'Hz'"):
        read_echelle_fits(path)
    path = _table(tmp_path / "nocol.fits", wl, np.ones(40), np.full(40, 0.01), names=("wavelength", "flux", "snr"))
    with pytest.raises(ValueError, match=r"nocol\.fits: HDU 1 has no uncertainty column; columns found: "
                                         r"\['wavelength', 'flux', 'snr'\]"):
        read_echelle_fits(path)


def test_air_vacuum_from_header(tmp_path):
    wl = np.linspace(8500.0, 8510.0, 40)
    args = (wl, np.ones(40), np.full(40, 0.01))
    air = read_echelle_fits(_table(tmp_path / "a.fits", *args, unit="Angstrom", header={"AIRORVAC": "air"}))
    np.testing.assert_allclose(air.wavelength, air_to_vacuum(wl))
    assert air.wavelength[0] - wl[0] == pytest.approx(2.34, abs=0.02)  # n − 1 ≈ 2.75e-4 at 8500 Å
    assert air.metadata["medium"] == "vacuum (converted from air)"
    vac = read_echelle_fits(_table(tmp_path / "v.fits", *args, unit="Angstrom", primary_header={"VACUUM": True}))
    np.testing.assert_allclose(vac.wavelength, wl)
    assert vac.metadata["medium"] == "vacuum"
    kept = read_echelle_fits(tmp_path / "a.fits", medium="as-given")
    np.testing.assert_allclose(kept.wavelength, wl)
    suffix = read_echelle_fits(_table(tmp_path / "s.fits", *args, names=("wave_air", "flux", "sigma"),
                                       unit="Angstrom"))
    np.testing.assert_allclose(suffix.wavelength, air_to_vacuum(wl))
    unknown = read_echelle_fits(_table(tmp_path / "n.fits", *args, unit="Angstrom"))
    np.testing.assert_allclose(unknown.wavelength, wl)
    assert unknown.metadata["medium"].startswith("unknown")


def test_nan_pixels_masked_and_barycentric_keywords_reported(tmp_path):
    wl = np.linspace(8500.0, 8510.0, 40)
    flux = np.ones(40)
    flux[5] = np.nan
    err = np.full(40, 0.01)
    err[7] = np.nan
    wl_bad = wl.copy()
    wl_bad[39] = np.nan
    path = _table(tmp_path / "t.fits", wl_bad, flux, err, unit="Angstrom",
                  primary_header={"BERV": (-12.345, "barycentric Earth RV [km/s]")}, header={"BARYCORR": 0.5})
    spec = read_echelle_fits(path)
    assert spec.wavelength.size == 39 and spec.metadata["n_dropped_nonfinite_wavelength"] == 1
    good = spec.good_pixels()
    assert not good[5] and not good[7] and good.sum() == 37 and spec.metadata["n_masked_pixels"] == 2
    bc = spec.metadata["barycentric_correction"]
    assert bc["BERV"]["value"] == pytest.approx(-12.345) and bc["BARYCORR"]["value"] == pytest.approx(0.5)
    np.testing.assert_allclose(spec.wavelength, wl[:39])  # not shifted: reported, not applied


def test_multi_order_layouts(tmp_path):
    # TelFit-style: one table HDU per order, the nm unit stated
    _echelle(tmp_path / "e.fits", n_orders=3, npx=60)
    spec = read_echelle_fits(tmp_path / "e.fits")
    assert list(spec.order) == [1, 2, 3] and spec.metadata["hdus"] == [1, 2, 3]
    # one table, one row per order (2-D columns), wavelengths in µm, orders reversed in wavelength
    n_orders, npx = 4, 30
    wave = np.array([2.10 - 0.01 * k + np.linspace(0, 0.008, npx) for k in range(n_orders)])
    cols = [fits.Column(name="WAVE", format=f"{npx}D", array=wave, unit="um"),
            fits.Column(name="FLUX", format=f"{npx}D", array=np.ones((n_orders, npx))),
            fits.Column(name="IVAR", format=f"{npx}D", array=np.full((n_orders, npx), 1e4))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(tmp_path / "rows.fits")
    spec = read_echelle_fits(tmp_path / "rows.fits")
    assert list(spec.order) == [1, 2, 3, 4] and np.bincount(spec.segment).tolist() == [30] * 4
    np.testing.assert_allclose(spec.error, 0.01)
    assert spec.wavelength[spec.segment == 0].min() == pytest.approx(21000.0)


def test_wcs1d_image_layout(tmp_path):
    flux = np.linspace(0.9, 1.0, 50)
    primary = fits.PrimaryHDU(flux)
    primary.header.update(CRVAL1=850.0, CDELT1=0.01, CRPIX1=1.0, CUNIT1="nm", CTYPE1="WAVE")
    unc = fits.ImageHDU(np.full(50, 0.01), name="UNCERTAINTY")
    fits.HDUList([primary, unc]).writeto(tmp_path / "w.fits")
    spec = read_echelle_fits(tmp_path / "w.fits")
    assert spec.wavelength[0] == pytest.approx(8500.0) and spec.wavelength[1] - spec.wavelength[0] == pytest.approx(0.1)
    np.testing.assert_allclose(spec.error, 0.01)
    fits.HDUList([fits.PrimaryHDU(flux, header=primary.header)]).writeto(tmp_path / "nounc.fits")
    with pytest.raises(ValueError, match=r"nounc\.fits: HDU 0: spectrum without an uncertainty"):
        read_echelle_fits(tmp_path / "nounc.fits")


class _Uncertainty:
    def __init__(self, array, kind):
        self.array, self.uncertainty_type = array, kind


class _Spectrum1DLike:
    """The duck-typed interface of specutils.Spectrum1D (specutils is not a dependency)."""

    def __init__(self, spectral_axis, flux, uncertainty=None, mask=None):
        self.spectral_axis, self.flux, self.uncertainty, self.mask = spectral_axis, flux, uncertainty, mask


def test_spectrum1d_like_objects():
    import astropy.units as u

    wl = np.linspace(850.0, 851.0, 40) * u.nm
    mask = np.zeros(40, bool)
    mask[3] = True
    obj = _Spectrum1DLike(wl, np.ones(40) * u.Unit("erg / (s cm2 AA)"), _Uncertainty(np.full(40, 1e4), "ivar"), mask)
    spec = from_spectrum1d(obj)
    np.testing.assert_allclose(spec.wavelength, np.linspace(8500.0, 8510.0, 40))
    np.testing.assert_allclose(spec.error, 0.01)
    assert not spec.good_pixels()[3] and spec.good_pixels().sum() == 39
    assert spec.metadata["format"] == "spectrum1d"
    # frequency axis converted with u.spectral(); 2-D flux = orders
    freq = (np.linspace(8500.0, 8510.0, 40) * u.AA).to(u.Hz, equivalencies=u.spectral())
    two = from_spectrum1d(_Spectrum1DLike(freq, np.ones((2, 40)), _Uncertainty(np.full((2, 40), 0.02), "std")))
    assert list(two.order) == [1, 2] and two.wavelength.min() == pytest.approx(8500.0)
    with pytest.raises(ValueError, match="no uncertainty"):
        from_spectrum1d(_Spectrum1DLike(wl, np.ones(40)))
    with pytest.raises(ValueError, match="cannot be converted"):
        from_spectrum1d(_Spectrum1DLike(np.arange(40.0) * u.kg, np.ones(40), _Uncertainty(np.ones(40), "std")))


def test_real_specutils_spectrum1d_if_installed(tmp_path):
    specutils = pytest.importorskip("specutils")
    import astropy.units as u
    from astropy.nddata import StdDevUncertainty

    cls = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
    s = cls(spectral_axis=np.linspace(850.0, 851.0, 30) * u.nm, flux=np.ones(30) * u.Jy,
            uncertainty=StdDevUncertainty(np.full(30, 0.05)))
    spec = from_spectrum1d(s)
    np.testing.assert_allclose(spec.error, 0.05)
    np.testing.assert_allclose(spec.wavelength, np.linspace(8500.0, 8510.0, 30))
    # specutils' own FITS table format, read back by our reader (TUNIT honoured)
    s.write(tmp_path / "spec.fits", format="tabular-fits")
    back = read_echelle_fits(tmp_path / "spec.fits")
    np.testing.assert_allclose(back.wavelength, np.linspace(8500.0, 8510.0, 30))
    np.testing.assert_allclose(back.error, 0.05)


def test_auxiliary_tables_are_skipped_but_reported(tmp_path):
    wl = np.linspace(8500.0, 8510.0, 40)
    spectrum = fits.BinTableHDU.from_columns([fits.Column(name="wave", format="D", array=wl, unit="Angstrom"),
                                              fits.Column(name="flux", format="D", array=np.ones(40)),
                                              fits.Column(name="sigma", format="D", array=np.full(40, 0.01))])
    config = fits.BinTableHDU.from_columns([fits.Column(name="fibre", format="J", array=np.arange(3))])
    fits.HDUList([fits.PrimaryHDU(), config, spectrum]).writeto(tmp_path / "aux.fits")
    spec = read_echelle_fits(tmp_path / "aux.fits")
    assert spec.metadata["skipped_hdus"] == {1: ["fibre"]} and spec.metadata["hdus"] == [2]
    fits.HDUList([fits.PrimaryHDU(), config, config.copy()]).writeto(tmp_path / "none.fits")
    with pytest.raises(ValueError, match=r"none\.fits: no table HDU has wavelength and flux columns"):
        read_echelle_fits(tmp_path / "none.fits")


def test_eso_phase3_spectrum_quality_and_frame(tmp_path):
    from test_spectra_generic_io import _eso_sdp

    wave, qual = _eso_sdp(tmp_path / "ADP.fits")
    spec = read_echelle_fits(tmp_path / "ADP.fits")
    np.testing.assert_allclose(spec.wavelength, wave)
    assert (~spec.good_pixels()).sum() == 10 and not spec.good_pixels()[qual != 0].any()
    assert spec.metadata["columns"]["quality"] == "QUAL" and spec.metadata["n_masked_pixels"] == 10
    assert spec.metadata["barycentric_correction"]["SPECSYS"]["value"] == "BARYCENT"  # reported, not applied
