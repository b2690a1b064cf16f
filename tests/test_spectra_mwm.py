"""Tests of stellarnn.spectra.mwm: SDSS-V mwmStar files (Astra's DR19 data model), written here from the real apStar
of 2M17335483-2753043 in that layout (no registry package ships an mwmStar file)."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from stellarnn.data import fetch
from stellarnn.spectra import SpectrumFileError, apogee_wavelength, read_apogee_file, read_apstar, read_mwm_star
from stellarnn.spectra import read_spectrum
from stellarnn.spectra.mwm import is_mwm_file

N = 8575


def apogee_hdu(observatory, rows, visit=False, crval=4.179):
    """An APOGEE/<observatory> table: rows of (flux, ivar, snr, pixel_flags)."""
    n = len(rows)
    columns = [fits.Column(name="sdss_id", format="K", array=[42] * n),
               fits.Column(name="obj", format="18A", array=["2M17335483-2753043"] * n),
               fits.Column(name="telescope", format="6A", array=[f"{observatory.lower()}25m"] * n),
               fits.Column(name="snr", format="E", array=[r[2] for r in rows])]
    columns += ([fits.Column(name="mjd", format="J", array=[59804 + i for i in range(n)])] if visit else
                [fits.Column(name="min_mjd", format="J", array=[59804] * n),
                 fits.Column(name="max_mjd", format="J", array=[59866] * n)])
    if n:
        columns += [fits.Column(name=name, format=f"{N}E", dim=f"({N})", array=np.array([r[k] for r in rows]))
                    for k, name in ((0, "flux"), (1, "ivar"))]
        flags = np.array([r[3] for r in rows])
        columns += [fits.Column(name="pixel_flags", format=f"{N}{'J' if flags.dtype.kind in 'iu' else 'E'}",
                                dim=f"({N})", array=flags)]
    hdu = fits.BinTableHDU.from_columns(columns)
    hdu.header.update({"EXTNAME": f"APOGEE/{observatory}", "INSTRMNT": "APOGEE", "CRVAL": crval, "CDELT": 6e-6,
                       "CTYPE": "LOG-LINEAR", "NPIXELS": N})
    return hdu


def mwm_file(path, apo_rows=(), lco_rows=(), visit=False, crval=4.179):
    primary = fits.PrimaryHDU()
    primary.header.update({"V_ASTRA": "0.6.0", "SDSS_ID": 42, "APOGEEID": "2M17335483-2753043"})
    boss = [fits.BinTableHDU.from_columns([fits.Column(name="sdss_id", format="K", array=[])], name=f"BOSS/{o}")
            for o in ("APO", "LCO")]
    fits.HDUList([primary, *boss, apogee_hdu("APO", list(apo_rows), visit, crval),
                  apogee_hdu("LCO", list(lco_rows), visit, crval)]).writeto(path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def combined():
    return read_apstar(fetch("apstar-2M17335483")).combined


def test_mwmstar_reads_the_apogee_coadd_of_higher_snr(tmp_path, combined):
    flux, ivar, flags = combined.flux, combined.ivar, combined.bitmask
    path = mwm_file(tmp_path / "mwmStar-0.6.0-42.fits", apo_rows=[(flux, ivar, 150.0, flags)],
                    lco_rows=[(0.5 * flux, 4 * ivar, 40.0, np.zeros(N, np.int64))])
    with fits.open(path) as hdul:
        assert is_mwm_file(hdul)
    star = read_mwm_star(path)
    assert star.nvisits == 2 and star.header["apogee_id"] == "2M17335483-2753043" and star.header["sdss_id"] == 42
    s = star.combined
    assert s.meta["telescope"] == "apo25m" and s.meta["kind"] == "combined" and s.meta["format"] == "mwmStar"
    np.testing.assert_array_equal(s.wavelength, apogee_wavelength())
    np.testing.assert_allclose(s.flux, flux.astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(s.ivar, ivar.astype(np.float32), rtol=1e-6)
    assert np.all(s.ivar[ivar == 0] == 0) and s.meta["n_bad_pixels"] == int((ivar == 0).sum())
    np.testing.assert_array_equal(s.bitmask, flags)  # pixel_flags are APOGEE_PIXMASK bits
    np.testing.assert_allclose(star.visits[1].flux, 0.5 * flux.astype(np.float32), rtol=1e-6)
    # every APOGEE entry point reads it
    np.testing.assert_array_equal(read_apogee_file(path).combined.flux, s.flux)
    np.testing.assert_array_equal(read_spectrum(path).flux, s.flux)
    # the LCO coadd alone
    only_lco = read_mwm_star(mwm_file(tmp_path / "lco.fits", lco_rows=[(flux, ivar, 80.0, flags)]))
    assert only_lco.combined.meta["telescope"] == "lco25m" and only_lco.nvisits == 1


def test_labels_from_the_mwmstar_equal_those_from_the_apstar(tmp_path, combined):
    from stellarnn import predict_labels

    path = mwm_file(tmp_path / "mwmStar.fits", apo_rows=[(combined.flux, combined.ivar, 150.0, combined.bitmask)])
    for pipeline, kw in (("astronn", {"mc_passes": 8}), ("apogeenet", {})):
        a = predict_labels(fetch("apstar-2M17335483"), pipeline=pipeline, **kw)
        b = predict_labels(path, pipeline=pipeline, **kw)
        for name, tol in (("teff", 2.0), ("logg", 0.005), ("fe_h", 0.002)):  # float32 storage only
            x, y = (float(np.asarray(getattr(t[name], "value", t[name]))[0]) for t in (a, b))
            assert abs(x - y) < tol, (pipeline, name, x, y)


def test_what_is_refused(tmp_path, combined):
    rows = [(combined.flux, combined.ivar, 50.0, combined.bitmask)] * 3
    with pytest.raises(SpectrumFileError, match="mwmVisit file .*3 single visits.*mwmStar"):
        read_mwm_star(mwm_file(tmp_path / "visit.fits", apo_rows=rows, visit=True))
    with pytest.raises(SpectrumFileError, match="no APOGEE spectrum .*BOSS-only"):
        read_mwm_star(mwm_file(tmp_path / "boss.fits"))
    with pytest.raises(SpectrumFileError, match="not the apStar grid"):
        read_mwm_star(mwm_file(tmp_path / "grid.fits", apo_rows=rows[:1], crval=4.18))
    with pytest.raises(SpectrumFileError, match="not bit masks .*pixel_flags must hold APOGEE_PIXMASK bits"):
        read_mwm_star(mwm_file(tmp_path / "flags.fits", apo_rows=[(combined.flux, combined.ivar, 50.0,
                                                                    np.full(N, 0.5))]))
    dead = (np.zeros(N), np.zeros(N), 0.0, np.zeros(N, np.int64))  # a coadd without one usable pixel
    with pytest.raises(SpectrumFileError, match="no positive finite error"):
        read_mwm_star(mwm_file(tmp_path / "dead.fits", apo_rows=[dead]))
    star = read_mwm_star(mwm_file(tmp_path / "one_dead.fits", apo_rows=[dead], lco_rows=rows[:1]))
    assert star.nvisits == 1 and star.combined.meta["hdu"] == 4 and star.header["unusable_coadds"] == 1
    with pytest.raises(SpectrumFileError, match="not an SDSS-V mwmStar"):
        read_mwm_star(fetch("apstar-2M17335483"))
    for name in ("apstar-2M17335483", "apvisit-5095-55844-128"):
        with fits.open(fetch(name)) as hdul:
            assert not is_mwm_file(hdul)


def test_spectra_info_names_the_coadds(tmp_path, combined, capsys):
    from stellarnn.cli import main

    rows = [(combined.flux, combined.ivar, 150.0, combined.bitmask)]
    path = mwm_file(tmp_path / "mwmStar.fits", apo_rows=rows, lco_rows=[(combined.flux, combined.ivar, 40.0,
                                                                        combined.bitmask)])
    assert main(["spectra", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SDSS-V mwmStar (Astra 0.6.0), 2 APOGEE coadd(s)" in out
    assert "apo25m: S/N" in out and "(the combined spectrum)" in out and "lco25m: S/N" in out
