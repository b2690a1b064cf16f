import numpy as np
import pytest
from astropy.io import fits

from stellarnn.spectra import SpectrumFileError, read_apvisit


@pytest.fixture(scope="module", params=["apvisit-5095-55844-128", "apvisit-9518-57729-104"])
def visit(request, real_file):
    return read_apvisit(real_file(request.param))


def test_layout(visit):
    assert visit.flux.shape == (3, 4096) and visit.wavelength.shape == (3, 4096)
    assert visit.lsf_coefficients.shape == (3, 26) and visit.wavelength_coefficients.shape == (3, 14)
    # chip 0 red, chip 2 blue; wavelength decreases along the pixels
    assert visit.wavelength[0].min() > visit.wavelength[2].max()
    assert np.all(np.diff(visit.wavelength, axis=1) < 0)
    s = visit.to_spectrum()
    assert len(s) == 3 * 4096 and np.all(np.diff(s.wavelength) > 0)


def test_lsf_kernel_normalised_and_resolution(visit):
    lsf = visit.lsf
    offsets = np.arange(-12, 13)
    k = lsf.kernel(1, np.array([10, 2048, 4080]), offsets)
    np.testing.assert_allclose(k.sum(axis=1), 1.0)
    assert np.all(k >= 0) and np.all(np.abs(offsets[k.argmax(axis=1)]) <= 1)
    for chip in range(3):
        r = lsf.resolution(chip, np.array([200, 2048, 3900]))
        assert np.all((r > 19_000) & (r < 30_000)), r  # APOGEE R ~ 22,500 (REFERENCE.md)


def test_lsf_in_wavelength_units(visit):
    lsf = visit.lsf
    dl = np.linspace(-2, 2, 401)
    k = lsf.kernel_in_wavelength(np.array([15300.0, 15850.0, 16200.0, 16800.0]), dl)
    np.testing.assert_allclose(k.sum(axis=1), 1.0)
    fwhm = np.array([np.ptp(dl[row >= row.max() / 2]) for row in k])
    r = np.array([15300.0, 15850.0, 16200.0, 16800.0]) / fwhm
    assert np.all((r > 19_000) & (r < 30_000)), r


def test_all_masked_chip(tmp_path, real_file):
    src = real_file("apvisit-5095-55844-128")
    with fits.open(src) as h:
        hdus = fits.HDUList([x.copy() for x in h])
    hdus[1].data[2] = np.nan
    out = tmp_path / "bad.fits"
    hdus.writeto(out)
    with pytest.raises(SpectrumFileError, match=r"bad.fits \[HDU 1\]: chip 2 has no usable pixel"):
        read_apvisit(out)


def test_missing_lsf_hdu(tmp_path, real_file):
    with fits.open(real_file("apvisit-5095-55844-128")) as h:
        hdus = fits.HDUList([x.copy() for x in h[:10]])
    out = tmp_path / "nolsf.fits"
    hdus.writeto(out)
    with pytest.raises(SpectrumFileError, match=r"\[HDU 10\]: missing HDU"):
        read_apvisit(out)


# --- visits on the apStar grid: what the label pipelines read from an apVisit file --------------------------
from stellarnn.constants import SPEED_OF_LIGHT_KM_S  # noqa: E402
from stellarnn.spectra import apogee_wavelength, kept_pixel_index, read_apogee_file, read_apstar  # noqa: E402
from stellarnn.spectra.apvisit import ApVisit  # noqa: E402

#: rest wavelengths [Angstrom] and depths of Gaussian lines of FWHM 0.7 Angstrom (R ~ 22,500 at 15,700 Angstrom)
LINES = np.column_stack([np.linspace(15160.0, 16940.0, 180), np.tile([0.5, 0.2, 0.35], 60)])


def line_spectrum(rest_wavelength):
    sigma = 0.7 / 2.3548
    depth = LINES[:, 1] * np.exp(-0.5 * ((rest_wavelength[..., None] - LINES[:, 0]) / sigma) ** 2)
    return 1.0 - depth.sum(axis=-1)


def synthetic_visit(real: ApVisit, v_kms: float) -> ApVisit:
    """The real visit's observed wavelengths, flux from the known line spectrum seen at ``v_kms``."""
    rest = real.wavelength / (1.0 + v_kms / SPEED_OF_LIGHT_KM_S)
    header = {"objid": "2M-test", "vrad": v_kms}
    return ApVisit(real.path, header, line_spectrum(rest), np.full(real.flux.shape, 0.01),
                   np.zeros(real.flux.shape, np.int64), real.wavelength, real.wavelength_coefficients,
                   real.lsf_coefficients)


@pytest.mark.parametrize("v_kms", [-67.5, 0.0, 120.0])
def test_a_visit_lands_on_the_apstar_grid_in_the_rest_frame(visit, v_kms):
    s = synthetic_visit(visit, v_kms).to_apstar_grid()
    grid = apogee_wavelength()
    good = s.ivar > 0
    np.testing.assert_array_equal(s.wavelength, grid)
    # the kept pixels (the three chips of the DR17 normalisation) are covered, but for the chips' ends
    assert good[kept_pixel_index()].mean() > 0.98
    assert np.max(np.abs(s.flux[good] - line_spectrum(grid[good]))) < 2e-3  # spline error in 0.5-deep lines
    np.testing.assert_allclose(1 / np.sqrt(s.ivar[good]), 0.01)
    assert np.all(s.bitmask[~good] & 1)
    assert s.meta["doppler_shift_kms"] == v_kms and s.meta["kind"] == "visit"


def test_a_wrong_velocity_would_show():
    """The test above can fail: 5 km/s off moves 0.26 Angstrom, more than a third of a line width."""
    real = read_apvisit_cached()
    s = synthetic_visit(real, 40.0).to_apstar_grid(doppler_shift_kms=35.0)
    good = s.ivar > 0
    assert np.max(np.abs(s.flux[good] - line_spectrum(s.wavelength[good]))) > 0.1


def read_apvisit_cached(name="apvisit-9518-57729-104"):
    from stellarnn.data import fetch

    return read_apvisit(fetch(name))


def test_pixels_without_data_and_bits_travel_to_their_neighbours():
    real = read_apvisit_cached()
    v = synthetic_visit(real, 0.0)
    v.flux[1, 2000:2003] = np.nan  # a short run of dead pixels in the green chip
    v.bitmask[1, 1500] = 1 << 12   # SIG_SKYLINE
    s = v.to_apstar_grid()
    dead = (s.wavelength > v.wavelength[1, 2003]) & (s.wavelength < v.wavelength[1, 1999])
    assert dead.sum() >= 2 and np.all(s.ivar[dead] == 0) and np.all(s.bitmask[dead] & 1)
    sky = (s.wavelength > v.wavelength[1, 1501]) & (s.wavelength < v.wavelength[1, 1499])
    assert np.all(s.bitmask[sky] & (1 << 12)) and np.all(s.ivar[sky] > 0)
    near = (s.wavelength > v.wavelength[1, 2040]) & (s.wavelength < v.wavelength[1, 1960]) & ~dead
    assert np.max(np.abs(s.flux[near] - line_spectrum(s.wavelength[near]))) < 2e-3  # no ringing from the gap


def test_the_velocity_comes_from_vrad_or_vhelio_minus_bc():
    real = read_apvisit_cached()
    assert real.doppler_shift_kms == pytest.approx(-67.472)  # the header's VRAD
    assert real.header["vhelio"] - real.header["bc"] == pytest.approx(-67.472, abs=1e-3)
    no_vrad = ApVisit(real.path, {"vhelio": -10.0, "bc": 5.0}, *[getattr(real, k) for k in (
        "flux", "error", "bitmask", "wavelength", "wavelength_coefficients", "lsf_coefficients")])
    assert no_vrad.doppler_shift_kms == -15.0
    no_rv = ApVisit(real.path, {}, *[getattr(real, k) for k in (
        "flux", "error", "bitmask", "wavelength", "wavelength_coefficients", "lsf_coefficients")])
    with pytest.raises(SpectrumFileError, match="no VRAD"):
        no_rv.to_apstar_grid()
    assert np.any(no_rv.to_apstar_grid(doppler_shift_kms=0.0).ivar > 0)
    with pytest.raises(SpectrumFileError, match="doppler shift nan km/s cannot be removed"):
        no_rv.to_apstar_grid(doppler_shift_kms=float("nan"))


def test_read_apogee_file_takes_apstar_and_apvisit_files(real_file):
    star = read_apogee_file(real_file("apvisit-9518-57729-104"))
    assert star.nvisits == 1 and star.combined is star.visits[0]
    assert star.header["apogee_id"] == "2M00242666+5341178" and len(star.combined) == 8575
    assert star.combined.meta["resampled_from"] == "apVisit"
    path = real_file("apstar-2M17335483")
    assert read_apogee_file(path).combined.meta == read_apstar(path).combined.meta
