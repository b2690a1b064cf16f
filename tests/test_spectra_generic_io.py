"""Tests of stellarnn.spectra.generic_io: CSV and 1-D FITS spectra, their units, medium and layouts."""
import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra import (Spectrum, SpectrumFileError, air_to_vacuum, read_spectrum, read_spectrum_fits,
                               write_spectrum_csv)
from stellarnn.spectra.generic_io import is_echelle_fits


def test_csv_round_trip(tmp_path):
    wl = np.linspace(5000, 5010, 50)
    s = Spectrum(wl, np.linspace(1, 2, 50), np.full(50, 4.0), np.arange(50) % 2)
    path = write_spectrum_csv(tmp_path / "s.csv", s)
    back = read_spectrum(path)
    np.testing.assert_allclose(back.wavelength, wl)
    np.testing.assert_allclose(back.flux, s.flux)
    np.testing.assert_allclose(back.ivar, 4.0)
    np.testing.assert_array_equal(back.bitmask, s.bitmask)


def test_our_csv_round_trips_in_the_ultraviolet_and_plain_csv_takes_a_unit(tmp_path):
    wl = np.linspace(1200.0, 1300.0, 40)  # Angstrom values the unit inference would take for nm
    s = Spectrum(wl, np.ones(40), np.full(40, 4.0))
    back = read_spectrum(write_spectrum_csv(tmp_path / "uv.csv", s))
    np.testing.assert_allclose(back.wavelength, wl)
    assert back.meta["wavelength_unit_source"] == "header" and back.meta["medium"] == "vacuum"
    assert (tmp_path / "uv.csv").read_text().splitlines()[-1].count(",") == 3  # still comma-separated rows
    plain = tmp_path / "plain.csv"
    plain.write_text("wavelength,flux\n" + "\n".join(f"{w},1" for w in wl))
    assert read_spectrum(plain).wavelength[0] == pytest.approx(12000.0)  # inferred: nm
    given = read_spectrum(plain, wavelength_unit="Angstrom")
    np.testing.assert_allclose(given.wavelength, wl)
    assert given.meta["wavelength_unit_source"] == "argument"


def test_fits_log_linear_image(tmp_path):
    hdu = fits.PrimaryHDU(np.ones(100))
    hdu.header.update(CRVAL1=4.179, CDELT1=6e-6, CRPIX1=1, CTYPE1="LOG-LINEAR")
    path = tmp_path / "img.fits"
    hdu.writeto(path)
    s = read_spectrum(path)
    assert s.wavelength[0] == pytest.approx(10 ** 4.179) and s.wavelength[1] == pytest.approx(10 ** (4.179 + 6e-6))
    assert s.meta["has_uncertainty"] is False


def test_fits_table(tmp_path):
    cols = [fits.Column(name="WAVE", format="D", array=np.linspace(6000, 6001, 10)),
            fits.Column(name="FLUX", format="D", array=np.ones(10)),
            fits.Column(name="IVAR", format="D", array=np.r_[np.zeros(2), np.ones(8)])]
    path = tmp_path / "tab.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    s = read_spectrum(path)
    assert len(s) == 10 and s.ivar[0] == 0 and s.ivar[5] == 1


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SpectrumFileError, match="bad.csv: needs wavelength and flux"):
        read_spectrum(bad)
    with pytest.raises(SpectrumFileError, match="unknown extension"):
        read_spectrum(tmp_path / "x.xyz")
    nanflux = tmp_path / "nan.csv"
    nanflux.write_text("wavelength,flux\n1,nan\n2,nan\n")
    with pytest.raises(SpectrumFileError, match="no finite flux"):
        read_spectrum(nanflux)


# --- text tables as tools write them: whitespace, tabs, no header ---------------------------------------

def test_whitespace_text_tables_with_and_without_a_header(tmp_path):
    wl = 15100.0 + 0.2 * np.arange(5)
    rows = [f"{w:.2f}\t{0.9 + 0.01 * i:.3f}\t0.01" for i, w in enumerate(wl)]
    cases = {"header.txt": ["wavelength\tflux\terror", *rows],  # a header row, tab-separated
             "comment.dat": ["# produced by some tool", "# wavelength flux error", *rows],  # names in a comment
             "bare.txt": ["# IRAF wspectext output", *rows]}  # no names: wavelength, flux, error by position
    sources = {"header.txt": "header", "comment.dat": "comment line above the data",
               "bare.txt": "position (wavelength, flux, error; the file names none)"}
    for name, lines in cases.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        s = read_spectrum(tmp_path / name)
        np.testing.assert_allclose(s.wavelength, wl)
        np.testing.assert_allclose(s.flux, 0.9 + 0.01 * np.arange(5))
        np.testing.assert_allclose(s.ivar, 1e4)
        assert s.meta["column_names_source"] == sources[name] and s.meta["has_uncertainty"], name
    two = tmp_path / "two.txt"  # IRAF wspectext: wavelength and flux, in nm here (inferred, recorded)
    two.write_text("\n".join(f"{w / 10:.3f} 1.0" for w in wl) + "\n")
    s = read_spectrum(two)
    np.testing.assert_allclose(s.wavelength, wl)
    assert not s.meta["has_uncertainty"]
    assert s.meta["wavelength_unit_source"].startswith("inferred")
    ispec = tmp_path / "ispec.txt"  # iSpec: waveobs (nm), flux, err
    ispec.write_text("waveobs\tflux\terr\n" + "\n".join(f"{w / 10:.3f}\t1.0\t0.02" for w in wl) + "\n")
    np.testing.assert_allclose(read_spectrum(ispec).ivar, 2500.0)


def test_a_positional_third_column_that_reads_as_ivar_or_variance_is_refused(tmp_path):
    wl = 15100.0 + np.arange(50) * 0.2
    rng = np.random.default_rng(1)
    flux = 1.0 - 0.3 * rng.random(50)  # normalised, lines down to 0.7

    def bare(name, third, scale=1.0):
        path = tmp_path / name
        path.write_text("\n".join(f"{w:.2f} {scale * f:.6e} {t:.6e}" for w, f, t in zip(wl, flux, third)) + "\n")
        return path

    with pytest.raises(SpectrumFileError, match=r"ivar.txt: the third column.*median S/N of 8.46e-05 per pixel, but "
                                                r"84.6 read as an inverse variance: add a header row"):
        read_spectrum(bare("ivar.txt", np.full(50, 1e4)))  # S/N 100 written as ivar
    with pytest.raises(SpectrumFileError,
                       match=r"var.txt: .*median S/N of 8.46e\+03 per pixel, but 84.6 read as a variance"):
        read_spectrum(bare("var.txt", np.full(50, 1e-4)))  # S/N 100 written as variance
    # 1-sigma errors read as before: S/N ~85 and ~1.7 (normalised), ~42 in physical units (erg/s/cm2/A)
    np.testing.assert_allclose(read_spectrum(bare("sigma.txt", np.full(50, 0.01))).ivar, 1e4)
    np.testing.assert_allclose(read_spectrum(bare("noisy.txt", np.full(50, 0.5))).ivar, 4.0)
    np.testing.assert_allclose(read_spectrum(bare("cgs.txt", np.full(50, 2e-17), 1e-15)).ivar, 2.5e33)
    # a column that is not numbers keeps its own clear error (the check reads the columns once they are checked)
    broken = tmp_path / "broken.txt"
    head, tail = bare("tmp.txt", np.full(50, 0.01)).read_text().rsplit("1.000000e-02", 1)  # in the last row
    broken.write_text(head + "abc" + tail)
    with pytest.raises(SpectrumFileError, match="broken.txt: column 'error' does not hold numbers"):
        read_spectrum(broken)
    # with a header naming it, the same ivar column is read as ivar
    named = tmp_path / "named.txt"
    named.write_text("wavelength flux ivar\n" + bare("tmp.txt", np.full(50, 1e4)).read_text())
    np.testing.assert_allclose(read_spectrum(named).ivar, 1e4)


def test_text_tables_that_cannot_be_read_by_position_are_refused(tmp_path):
    four = tmp_path / "four.txt"
    four.write_text("15100 1 0.01 0\n15101 1 0.01 0\n")
    with pytest.raises(SpectrumFileError, match="four.txt: 4 columns and no header naming them"):
        read_spectrum(four)
    named = tmp_path / "named.txt"  # a header row whose names are not ours: refused, not read by position
    named.write_text("lam_obs fnu\n15100 1\n15101 1\n")
    with pytest.raises(SpectrumFileError, match=r"needs wavelength and flux columns; found \['lam_obs', 'fnu'\]"):
        read_spectrum(named)
    empty = tmp_path / "empty.dat"
    empty.write_text("# nothing\n\n")
    with pytest.raises(SpectrumFileError, match="empty.dat: no rows"):
        read_spectrum(empty)


# --- units, medium and échelle files: one convention with stellarnn.spectra.echelle_io ---------------------

def _table_fits(path, wave, unit=None, name="wavelength", header=None):
    cols = [fits.Column(name=name, format="D", array=wave, unit=unit),
            fits.Column(name="flux", format="D", array=np.ones(wave.size)),
            fits.Column(name="error", format="D", array=np.full(wave.size, 0.01))]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(header or {})
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


@pytest.mark.parametrize("unit, scale", [("nm", 10.0), ("um", 1e4), ("Angstrom", 1.0), (None, 10.0)])
def test_table_wavelengths_in_the_files_unit_become_angstrom(tmp_path, unit, scale):
    wave_a = np.linspace(8500.0, 8510.0, 30)
    s = read_spectrum(_table_fits(tmp_path / "t.fits", wave_a / scale, unit))  # None: nm values, no TUNIT
    np.testing.assert_allclose(s.wavelength, wave_a, rtol=1e-12)
    assert s.meta["wavelength_unit_source"] == ("header" if unit else "inferred from the values (no unit in the file)")


def test_image_cunit_and_air_wavelengths(tmp_path):
    hdu = fits.PrimaryHDU(np.ones(40))
    hdu.header.update(CRVAL1=850.0, CDELT1=0.01, CRPIX1=1, CUNIT1="nm", CTYPE1="AWAV")
    hdu.writeto(tmp_path / "air.fits")
    s = read_spectrum(tmp_path / "air.fits")
    np.testing.assert_allclose(s.wavelength, air_to_vacuum(8500.0 + 0.1 * np.arange(40)))
    assert s.meta["medium"] == "vacuum (converted from air)" and s.meta["wavelength_unit"] == "nm"
    t = read_spectrum(_table_fits(tmp_path / "t.fits", np.linspace(6000, 6001, 20), "Angstrom",
                                  header={"AIRORVAC": "air"}))
    np.testing.assert_allclose(t.wavelength, air_to_vacuum(np.linspace(6000, 6001, 20)))
    csv = tmp_path / "vac.csv"
    csv.write_text("wave_vac,flux\n6000,1\n6001,1\n6002,1\n")
    assert read_spectrum(csv).meta["medium"] == "vacuum"


def test_unitless_wavelengths_that_fit_no_unit_are_refused(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("wavelength,flux\n50,1\n51,1\n52,1\n")
    with pytest.raises(SpectrumFileError, match=r"odd.csv: no wavelength unit given and median wavelength 51"):
        read_spectrum(path)


def test_real_phoenix_template_csv(real_file):
    s = read_spectrum(real_file("phoenix-10kK"))  # muler's columns wave_ang,flux: no uncertainty
    assert len(s) == 338649
    assert s.wavelength[0] == pytest.approx(8038.01) and s.wavelength[-1] == pytest.approx(12848.98)
    assert s.meta["has_uncertainty"] is False and s.meta["wavelength_unit"] == "Angstrom"
    assert s.meta["wavelength_unit_source"] == "column name"


@pytest.mark.parametrize("name, scale", [("wave_ang", 1.0), ("wavelength_nm", 10.0), ("WAVE_UM", 1e4)])
def test_the_unit_a_column_name_states(tmp_path, name, scale):
    """1500 read as Angstrom (wave_ang), nm or µm as the name says, not as the values suggest (nm), and
    before the caller's wavelength_unit, which is only for files that state none."""
    path = tmp_path / "named.csv"
    path.write_text(f"{name},flux\n1500,1\n1501,1\n1502,1\n")
    s = read_spectrum(path, wavelength_unit="nm")
    np.testing.assert_allclose(s.wavelength, scale * np.array([1500.0, 1501.0, 1502.0]))
    assert s.meta["wavelength_unit_source"] == "column name"


def test_echelle_files_are_refused_with_a_pointer(tmp_path, real_file):
    chiron = real_file("chiron-hip108294")
    assert is_echelle_fits(chiron)
    with pytest.raises(SpectrumFileError, match=r"an échelle file \(58 orders\): read it with "
                                                 r"stellarnn.spectra.read_echelle_fits"):
        read_spectrum(chiron)
    rows = tmp_path / "rows.fits"
    cols = [fits.Column(name="WAVE", format="30D", array=np.ones((4, 30)) * np.arange(30) + 8000),
            fits.Column(name="FLUX", format="30D", array=np.ones((4, 30)))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(rows)
    assert is_echelle_fits(rows)
    with pytest.raises(SpectrumFileError, match=r"\(4 orders\)"):
        read_spectrum(rows)
    one_order = read_spectrum_fits(chiron, hdu=30)  # an order the caller picks is read as asked, in Angstrom
    assert len(one_order) == 3200 and 5980 < one_order.wavelength[0] < 6000
    single = _table_fits(tmp_path / "one.fits", np.linspace(6000, 6001, 20), "Angstrom")
    assert not is_echelle_fits(single)


def test_apogee_files_through_the_generic_reader(real_file):
    """apStar and apVisit alike come back as their combined spectrum on the apStar grid (read_apogee_file)."""
    from stellarnn.spectra import apogee_wavelength, read_apogee_file

    for name in ("apstar-2M19485057", "apvisit-5095-55844-128"):
        s = read_spectrum(real_file(name))
        np.testing.assert_array_equal(s.wavelength, apogee_wavelength())
        np.testing.assert_array_equal(s.flux, read_apogee_file(real_file(name)).combined.flux)


def _eso_sdp(path, n=400):
    """An ESO Phase 3 1-D spectrum (Science Data Products standard, ESO-044286): one table row of arrays WAVE,
    FLUX, ERR and QUAL (0 = good), SPECSYS in the header."""
    wave = np.linspace(5000.0, 5040.0, n)
    qual = np.zeros(n, np.int32)
    qual[100:110] = 4  # e.g. saturated
    cols = [fits.Column(name="WAVE", format=f"{n}D", unit="angstrom", array=wave[None]),
            fits.Column(name="FLUX", format=f"{n}E", unit="erg cm**(-2) s**(-1) angstrom**(-1)",
                        array=np.ones((1, n))),
            fits.Column(name="ERR", format=f"{n}E", array=np.full((1, n), 0.01)),
            fits.Column(name="QUAL", format=f"{n}J", array=qual[None])]
    table = fits.BinTableHDU.from_columns(cols)
    table.header.update(EXTNAME="SPECTRUM")
    primary = fits.PrimaryHDU()
    primary.header["SPECSYS"] = "BARYCENT"
    fits.HDUList([primary, table]).writeto(path)
    return wave, qual


def test_eso_quality_flags_mask_pixels(tmp_path):
    wave, qual = _eso_sdp(tmp_path / "ADP.fits")
    s = read_spectrum(tmp_path / "ADP.fits")
    np.testing.assert_allclose(s.wavelength, wave)
    assert (s.ivar[qual != 0] == 0).all() and (s.ivar[qual == 0] > 0).all()
    assert s.meta["n_quality_flagged"] == 10 and s.meta["n_bad_pixels"] == 10
    csv = tmp_path / "q.csv"  # a text table's "quality" column: the same rule
    csv.write_text("wavelength,flux,error,quality\n5000,1,0.01,0\n5001,1,0.01,1\n5002,1,0.01,0\n")
    assert read_spectrum(csv).ivar.tolist() == [pytest.approx(1e4), 0.0, pytest.approx(1e4)]
    from stellarnn.spectra import read_spectrum_csv

    with pytest.raises(SpectrumFileError, match="1 pixels flagged bad by column 'quality'"):
        read_spectrum_csv(csv, on_bad_pixels="raise")  # e.g. a clone source, which must have none
