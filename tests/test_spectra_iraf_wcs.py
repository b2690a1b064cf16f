"""Tests of stellarnn.spectra.iraf_wcs: IRAF linear, equispec and multispec wavelengths, as files carry them.

No registry package ships an IRAF multispec file, so the files here are written in the layout of Valdes (1993),
"The IRAF/NOAO Spectral World Coordinate Systems": WAT cards of 68 characters, physical lines and pixels, bands.
"""
import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra import SpectrumFileError, read_echelle_fits, read_spectrum
from stellarnn.spectra.generic_io import is_echelle_fits
from stellarnn.spectra.iraf_wcs import (band_roles, dispersion_function, iraf_system, linear_wavelengths,
                                        multispec_lines, wat_attributes, wat_string)

P = np.arange(1.0, 201.0)


def _wat_cards(header, axis, text):
    """Split a WAT string into 68-character card values, as IRAF writes them."""
    for k in range(0, len(text), 68):
        header[f"WAT{axis}_{k // 68 + 1:03d}"] = text[k:k + 68]


def _multispec_header(specs, units="Angstroms", **extra):
    h = fits.Header()
    _wat_cards(h, 0, "system=multispec")
    _wat_cards(h, 1, f"wtype=multispec label=Wavelength units={units}")
    _wat_cards(h, 2, "wtype=multispec " + " ".join(f'spec{k + 1} = "{s}"' for k, s in enumerate(specs)))
    h.update(CTYPE1="MULTISPE", CTYPE2="MULTISPE", WCSDIM=2, **extra)
    return h


def test_wat_strings_are_pasted_from_68_character_cards():
    text = ('wtype=multispec spec1 = "1 113 0 4955.4428 0.05 200 0. 23.22 31.27" spec2 = "2 112 0 5000. 0.05 200 '
            '0. 46.09 58.44"')
    h = fits.Header()
    _wat_cards(h, 2, text)
    assert "WAT2_002" in h and wat_string(h, 2) == text
    attrs = wat_attributes(wat_string(h, 2))
    assert attrs["wtype"] == "multispec" and attrs["spec2"].split()[:4] == ["2", "112", "0", "5000."]
    assert wat_string(h, 3) == "" and iraf_system(h) is None  # no WAT0 system and no MULTISPE axis


def test_a_card_boundary_on_a_blank_keeps_two_fields_apart():
    h = fits.Header()
    h["WAT2_001"] = 'wtype=multispec spec1 = "1 1 0 5000.0 0.1 200 0. 1.'.ljust(66) + "2."  # 68 characters
    h["WAT2_002"] = ' 3 4"'  # IRAF's card starts with the blank ...
    h2 = fits.Header()
    h2["WAT2_001"] = 'wtype=multispec spec1 = "1 1 0 5000.0 0.1 200 0. 1.'.ljust(65) + "2. "  # ... or ends with it,
    h2["WAT2_002"] = '3 4"'
    assert str(h2["WAT2_001"]).endswith("2.")  # which a FITS reader drops
    for header in (h, h2):
        assert wat_attributes(wat_string(header, 2))["spec1"].split()[-3:] == ["2.", "3", "4"]


def test_linear_log_linear_and_doppler():
    np.testing.assert_allclose(dispersion_function([1, 1, 0, 5000.0, 0.1, 200, 0.0, 0, 0], P), 5000.0 + 0.1 * (P - 1))
    np.testing.assert_allclose(dispersion_function([1, 1, 1, 3.7, 1e-5, 200, 0.0, 0, 0], P),
                               10 ** (3.7 + 1e-5 * (P - 1)))
    z = 1e-4  # "multiplying by 1/(1+z)"
    np.testing.assert_allclose(dispersion_function([1, 1, 0, 5000.0, 0.1, 200, z, 0, 0], P),
                               (5000.0 + 0.1 * (P - 1)) / (1 + z))
    w = dispersion_function([1, 1, 0, 5000.0, 0.1, 150, 0.0, 0, 0], P)  # only nw = 150 valid pixels
    assert np.isfinite(w[:150]).all() and np.isnan(w[150:]).all()


@pytest.mark.parametrize("ftype, basis", [(1, np.polynomial.Chebyshev), (2, np.polynomial.Legendre)])
def test_polynomial_dispersions_against_numpy_series_on_the_physical_range(ftype, basis):
    c = [5100.0, 55.0, -0.8, 0.02]
    pmin, pmax = 1.0, 200.0
    fields = [1, 120, 2, 5045.0, 0.55, 200, 0.0, 10.0, 20.0, 1.0, 3.5, ftype, len(c), pmin, pmax, *c]
    expected = 3.5 + basis(c, domain=[pmin, pmax])(P)  # weight 1, zero point 3.5
    np.testing.assert_allclose(dispersion_function(fields, P), expected, rtol=1e-13)
    # two weighted functions (arcs before and after the exposure): the weighted sum
    two = fields[:9] + [0.25, 0.0, ftype, len(c), pmin, pmax, *c] + [0.75, 1.0, ftype, len(c), pmin, pmax, *c]
    np.testing.assert_allclose(dispersion_function(two, P), basis(c, domain=[pmin, pmax])(P) + 0.75, rtol=1e-13)


def test_splines_and_arrays():
    knots = np.array([5000.0, 5010.0, 5025.0, 5030.0])  # linear spline: the coefficients are the knot values
    fields = [1, 1, 2, 5000.0, 0.15, 200, 0.0, 0, 0, 1.0, 0.0, 4, 3, 1.0, 200.0, *knots]
    s = (P - 1.0) / 199.0 * 3
    np.testing.assert_allclose(dispersion_function(fields, P), np.interp(s, np.arange(4.0), knots), rtol=1e-13)
    # cubic spline: a basis that sums to 6 (Valdes 1993's unnormalised B-splines), so constant coefficients
    # give 6 c, and the result is smooth (continuous first differences) across the knots
    const = [1, 1, 2, 5000.0, 0.15, 200, 0.0, 0, 0, 1.0, 0.0, 3, 4, 1.0, 200.0, *([850.0] * 7)]
    np.testing.assert_allclose(dispersion_function(const, P), 6 * 850.0, rtol=1e-13)
    rng = np.random.default_rng(1)
    cubic = const[:15] + list(5000.0 / 6 + np.cumsum(rng.uniform(1, 2, 7)))
    w = dispersion_function(cubic, P)
    assert np.all(np.diff(w) > 0) and np.max(np.abs(np.diff(w, 3))) < 1e-3
    table = 5000.0 + 0.1 * np.arange(200) + 1e-4 * np.arange(200) ** 2  # pixel array: wavelengths at 1, 2, ...
    np.testing.assert_allclose(dispersion_function([1, 1, 2, 0, 0, 200, 0, 0, 0, 1.0, 0.0, 5, 200, *table], P),
                               table)
    pairs = [1.0, 5000.0, 100.0, 5010.0, 200.0, 5030.0]  # sampled array: (pixel, wavelength), dummy field first
    np.testing.assert_allclose(dispersion_function([1, 1, 2, 0, 0, 200, 0, 0, 0, 1.0, 0.0, 6, 3, 0, *pairs], P),
                               np.interp(P, [1, 100, 200], [5000, 5010, 5030]))


def test_bad_attributes_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="not dispersion calibrated"):
        dispersion_function([1, 1, -1, 1.0, 1.0, 200, 0, 0, 0], P)
    with pytest.raises(ValueError, match="unknown dispersion function type 9"):
        dispersion_function([1, 1, 2, 0, 0, 200, 0, 0, 0, 1.0, 0.0, 9, 1], P)
    with pytest.raises(ValueError, match="the attribute ends after"):
        dispersion_function([1, 1, 2, 0, 0, 200, 0, 0, 0, 1.0, 0.0, 2, 4, 1.0, 200.0, 5000.0], P)
    with pytest.raises(ValueError, match="range pmin 200 >= pmax 200"):  # not NaN wavelengths, silently dropped
        dispersion_function([1, 1, 2, 0, 0, 200, 0, 0, 0, 1.0, 0.0, 2, 2, 200.0, 200.0, 5000.0, 1.0], P)
    with pytest.raises(ValueError, match="a spline of 0 pieces"):
        dispersion_function([1, 1, 2, 0, 0, 200, 0, 0, 0, 1.0, 0.0, 4, 0, 1.0, 200.0, 5000.0], P)
    with pytest.raises(ValueError, match="without a function"):
        dispersion_function([1, 1, 2, 0, 0, 200, 0, 0, 0], P)


def test_physical_pixels_and_lines_follow_ltv_ltm():
    """A trimmed image ([11:210, 2:3]): logical pixel 1 is physical pixel 11, logical line 1 is physical line 2."""
    specs = ["1 101 0 5000. 0.1 300 0. 1 2", "2 102 0 6000. 0.1 300 0. 3 4", "3 103 0 7000. 0.1 300 0. 5 6"]
    h = _multispec_header(specs, LTV1=-10.0, LTV2=-1.0, LTM1_1=1.0, LTM2_2=1.0)
    wave, info = multispec_lines(h, 2, 200, "f")
    np.testing.assert_allclose(wave[0], 6000.0 + 0.1 * (np.arange(200) + 10))
    assert [i["aperture"] for i in info] == [2, 3] and [i["beam"] for i in info] == [102, 103]


def test_equispec_and_linear_axes():
    h = fits.Header({"CRVAL1": 3.6, "CD1_1": 2e-5, "CRPIX1": 1.0, "DC-FLAG": 1, "APNUM1": "7 3 1.0 5.0"})
    _wat_cards(h, 0, "system=equispec")
    assert iraf_system(h) == "equispec"
    wave, info = multispec_lines(h, 2, 100, "f")
    np.testing.assert_allclose(wave[1], 10 ** (3.6 + 2e-5 * np.arange(100)))
    assert info[0] == {"aperture": 7, "beam": 3, "line": 1} and info[1]["aperture"] == 2
    with pytest.raises(ValueError, match="no CRVAL1"):
        linear_wavelengths(fits.Header({"CDELT1": 1.0}), 5, "f")


def test_band_roles():
    h = fits.Header({"BANDID1": "spectrum - background fit, weights variance, clean no",
                     "BANDID2": "raw - background fit, weights none, clean no",
                     "BANDID3": "background - background fit",
                     "BANDID4": "sigma - background fit, weights variance, clean no"})
    assert band_roles(h, 4) == {"flux": 0, "sigma": 3}
    assert band_roles(fits.Header(), 2) == {"flux": 0}


def _write_multispec(path, n_orders=3, n_pixels=200, bands=True, units="Angstroms"):
    """An échelle spectrum as IRAF apall + dispcor write it: Legendre dispersions, 4 bands."""
    specs, truth = [], []
    for k in range(n_orders):
        c = [5000.0 + 60 * k, 25.0, -0.3, 0.01]
        specs.append(f"{k + 1} {110 - k} 2 {c[0] - 25:.6f} 0.25 {n_pixels} 0. {10 * k} {10 * k + 8} 1. 0. 2 4 1. "
                     f"{n_pixels:.0f}. " + " ".join(repr(v) for v in c))
        truth.append(np.polynomial.Legendre(c, domain=[1, n_pixels])(np.arange(1.0, n_pixels + 1)))
    h = _multispec_header(specs, units=units)
    flux = 1.0 - 0.3 * np.exp(-0.5 * ((np.arange(n_pixels) - 100) / 3.0) ** 2)
    cube = np.stack([np.tile(flux, (n_orders, 1)) * (1 + 0.1 * b) for b in range(4)])
    cube[3] = 0.02  # the sigma band
    if bands:
        h.update(BANDID1="spectrum - background none, weights variance, clean no", BANDID2="raw - background none",
                 BANDID3="background - background none", BANDID4="sigma - background none, weights variance")
    hdu = fits.PrimaryHDU(cube if bands else cube[0], header=h)
    hdu.writeto(path)
    return np.array(truth), flux


def test_read_echelle_fits_reads_a_multispec_file_with_bands(tmp_path):
    truth, flux = _write_multispec(tmp_path / "ech.ms.fits")
    spec = read_echelle_fits(tmp_path / "ech.ms.fits")
    assert spec.metadata["format"] == "iraf-multispec" and spec.metadata["n_orders"] == 3
    assert list(spec.order) == [1, 2, 3] and [a["beam"] for a in spec.metadata["iraf_apertures"]] == [110, 109, 108]
    for k in range(3):
        np.testing.assert_allclose(spec.wavelength[spec.segment == k], truth[k], rtol=1e-12)
        np.testing.assert_allclose(spec.flux[spec.segment == k], flux)  # band 1, not the raw band
    np.testing.assert_allclose(spec.error, 0.02)
    assert spec.metadata["wavelength_unit_source"] == "WAT1 units"
    assert spec.metadata["columns"][0]["uncertainty"].startswith("band 4 (sigma")
    assert is_echelle_fits(tmp_path / "ech.ms.fits")
    with pytest.raises(SpectrumFileError, match=r"an échelle file \(3 orders\)"):
        read_spectrum(tmp_path / "ech.ms.fits")


def test_a_multispec_file_in_nanometres_and_one_without_sigma(tmp_path):
    truth, _ = _write_multispec(tmp_path / "nm.fits", units="nanometers")
    np.testing.assert_allclose(read_echelle_fits(tmp_path / "nm.fits").wavelength[:200], 10 * truth[0], rtol=1e-12)
    _write_multispec(tmp_path / "one_band.fits", bands=False)
    with pytest.raises(ValueError, match=r"one_band.fits: HDU 0: spectrum without an uncertainty"):
        read_echelle_fits(tmp_path / "one_band.fits")


def test_one_dimensional_iraf_spectra(tmp_path):
    """A log-linear 1-D spectrum (DC-FLAG = 1), and one order cut out of a multispec file (WAXMAP01)."""
    hdu = fits.PrimaryHDU(np.ones(100))
    hdu.header.update(CRVAL1=3.7, CD1_1=1e-5, CRPIX1=1.0, **{"DC-FLAG": 1})
    unc = fits.ImageHDU(np.full(100, 0.05), name="SIGMA")
    fits.HDUList([hdu, unc]).writeto(tmp_path / "log.fits")
    np.testing.assert_allclose(read_echelle_fits(tmp_path / "log.fits").wavelength, 10 ** (3.7 + 1e-5 * np.arange(100)))
    np.testing.assert_allclose(read_spectrum(tmp_path / "log.fits").wavelength, 10 ** (3.7 + 1e-5 * np.arange(100)))
    specs = ["1 110 0 5000. 0.1 80 0. 1 2", "2 109 0 6000. 0.1 80 0. 3 4"]
    h = _multispec_header(specs, WAXMAP01="1 0 0 1")  # [*,2] of a two-line image: physical line 2
    fits.PrimaryHDU(np.ones(100), header=h).writeto(tmp_path / "order2.fits")
    s = read_spectrum(tmp_path / "order2.fits")
    assert len(s) == 80  # nw = 80 valid pixels of 100
    np.testing.assert_allclose(s.wavelength, 6000.0 + 0.1 * np.arange(80))


def test_one_aperture_with_bands_is_a_1d_spectrum(tmp_path):
    """apall on a long-slit frame: one aperture, 4 bands (NAXIS3 = 4, NAXIS2 = 1); read_spectrum reads band 1 with
    the sigma band as its uncertainty, as read_echelle_fits does."""
    truth, flux = _write_multispec(tmp_path / "one.fits", n_orders=1)
    s = read_spectrum(tmp_path / "one.fits")
    np.testing.assert_allclose(s.wavelength, truth[0], rtol=1e-12)
    np.testing.assert_allclose(s.flux, flux)
    np.testing.assert_allclose(s.ivar, 1 / 0.02 ** 2)
    assert s.meta["has_uncertainty"] and not is_echelle_fits(tmp_path / "one.fits")
    np.testing.assert_allclose(read_echelle_fits(tmp_path / "one.fits").wavelength, truth[0], rtol=1e-12)
