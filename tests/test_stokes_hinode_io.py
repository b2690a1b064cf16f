import numpy as np
import pytest
from astropy.io import fits

from stellarnn.stokes.hinode_io import (decode_level1, encode_level1, read_parameter_maps, read_sp_level1,
                                        read_sp_map, write_parameter_maps, write_sp_level1)
from stellarnn.stokes.milne_eddington import hinode_sp_wavelengths


def _raw_file(path, raw, spbshft, wcs=True):
    hdu = fits.PrimaryHDU(raw.astype(np.int16))
    hdu.header["SPBSHFT"] = spbshft
    if wcs:
        hdu.header["CRPIX1"], hdu.header["CRVAL1"], hdu.header["CDELT1"] = 1.0, 6300.89, 0.021549
    hdu.writeto(path)
    return path


def test_decoding_of_a_hand_made_level1_file(tmp_path):
    # real layout: (4 Stokes, n_slit, 112) int16; I stored shifted and wrapped
    raw = np.zeros((4, 3, 112), dtype=np.int16)
    raw[0] = -20000     # wrapped: 45536 stored counts, ×2 (SPBSHFT ≥ 1) → 91072
    raw[0, 0, 0] = 1000  # not wrapped: 2000
    raw[1] = 10
    raw[2] = -7
    raw[3] = 30
    for shift, (q, u, v, i) in {0: (10, -7, 30, 45536), 1: (10, -7, 30, 91072), 2: (10, -7, 60, 91072),
                                3: (20, -14, 60, 91072)}.items():
        path = _raw_file(tmp_path / f"s{shift}.fits", raw, shift)
        sp = read_sp_level1(path)
        assert sp.counts.shape == (3, 4, 112)  # slit pixel first
        assert sp.counts[1, 0, 5] == i and sp.counts[0, 1, 0] == q and sp.counts[0, 2, 0] == u
        assert sp.counts[0, 3, 0] == v
        assert sp.counts[0, 0, 0] == (1000 if shift == 0 else 2000)
        assert sp.wavelengths == pytest.approx(hinode_sp_wavelengths())


def test_encode_decode_roundtrip_and_limits():
    rng = np.random.default_rng(0)
    counts = np.empty((4, 5, 112))
    counts[0] = rng.uniform(20000, 120000, (5, 112))
    counts[1:] = rng.uniform(-4000, 4000, (3, 5, 112))
    for shift in (1, 2, 3):
        raw = encode_level1(counts, shift)
        assert raw.dtype == np.int16
        back = decode_level1(raw, shift)
        assert np.max(np.abs(back - counts)) <= 1.0 + 1e-9  # one count of rounding × shift
    assert (encode_level1(counts, 1)[0] < 0).any()  # values above 32767 wrap
    with pytest.raises(ValueError, match="16-bit"):
        encode_level1(counts, 0)  # I up to 120000 does not fit without the shift
    with pytest.raises(ValueError, match="SPBSHFT"):
        decode_level1(np.zeros((4, 2, 112), np.int16), 5)
    with pytest.raises(ValueError, match="shape"):
        decode_level1(np.zeros((3, 2, 112), np.int16), 1)


def test_map_roundtrip_through_level1_files(tmp_path):
    rng = np.random.default_rng(1)
    stokes = np.zeros((3, 4, 4, 112))
    stokes[:, :, 0] = 1.0 - 0.3 * rng.random((3, 4, 112))
    stokes[:, :, 0, :8] = 1.0
    stokes[:, :, 1:] = 0.02 * rng.standard_normal((3, 4, 3, 112))
    for x in range(3):
        write_sp_level1(tmp_path / "raster" / f"slit_{x:03d}.fits", stokes[x] * 70000.0, spbshft=3)
    sp = read_sp_map(tmp_path / "raster")
    assert sp.stokes.shape == (3, 4, 4, 112)
    assert sp.continuum_counts == pytest.approx(70000.0, rel=1e-4)
    assert np.max(np.abs(sp.stokes - stokes)) < 5e-5
    with pytest.raises(FileNotFoundError):
        read_sp_map(tmp_path / "empty_dir_that_is_missing.fits")
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError):
        read_sp_map(tmp_path / "none")


def test_bad_files(tmp_path):
    fits.PrimaryHDU(np.zeros((4, 2, 112), dtype=np.float32)).writeto(tmp_path / "float.fits")
    with pytest.raises(ValueError, match="16-bit"):
        read_sp_level1(tmp_path / "float.fits")
    fits.PrimaryHDU().writeto(tmp_path / "empty.fits")
    with pytest.raises(ValueError, match="no data"):
        read_sp_level1(tmp_path / "empty.fits")


def test_parameter_maps_roundtrip(tmp_path):
    maps = {"B": np.arange(12.0).reshape(3, 4), "v_los": -np.ones((3, 4))}
    path = write_parameter_maps(tmp_path / "m.fits", maps, {"B": "G", "v_los": "km/s"})
    back, units = read_parameter_maps(path)
    assert set(back) == {"B", "v_los"} and units == {"B": "G", "v_los": "km/s"}
    assert np.array_equal(back["B"], maps["B"])
    with pytest.raises(ValueError, match="2-D"):
        write_parameter_maps(tmp_path / "x.fits", {"B": np.zeros(3)})


# ---------------------------------------------------------------- calibrated float cubes (issue 21, item 4)
from stellarnn.stokes.hinode_io import read_stokes_cube  # noqa: E402


def _cube(nx=3, ny=5, seed=2):
    rng = np.random.default_rng(seed)
    stokes = np.zeros((nx, ny, 4, 112))
    stokes[:, :, 0] = 1.0 - 0.3 * rng.random((nx, ny, 112))
    stokes[:, :, 0, :8] = 1.0
    stokes[1, 2, 0] *= 0.3  # an umbral pixel: must not lower the quiet-Sun continuum
    stokes[:, :, 1:] = 0.01 * rng.standard_normal((nx, ny, 3, 112))
    return stokes


def test_float_cube_with_wcs_wavelengths(tmp_path):
    stokes = _cube()
    hdu = fits.PrimaryHDU((stokes * 5000.0).astype(">f8"))  # big-endian float64, the refused case
    # FITS axis 1 is λ (numpy last axis): 21.431 mÅ from 6300.8826 Å, in nm
    hdu.header.update(CTYPE1="WAVE", CUNIT1="nm", CRPIX1=1.0, CRVAL1=630.08826, CDELT1=0.0021431, CTYPE2="STOKES")
    hdu.writeto(tmp_path / "cube.fits")
    sp = read_stokes_cube(tmp_path / "cube.fits")
    assert sp.stokes.shape == (3, 5, 4, 112)
    assert sp.wavelengths[0] == pytest.approx(6300.8826) and np.diff(sp.wavelengths) == pytest.approx(0.021431)
    assert sp.continuum_counts == pytest.approx(5000.0)  # the umbral pixel is not in the quiet-Sun mean
    np.testing.assert_allclose(sp.stokes, stokes, atol=1e-12)
    assert sp.normalisation.startswith("quiet-sun")
    # read_sp_map dispatches a float cube file to the cube reader (the CLI path)
    assert read_sp_map(tmp_path / "cube.fits").stokes.shape == (3, 5, 4, 112)
    per = read_stokes_cube(tmp_path / "cube.fits", normalisation="per-pixel")
    assert per.stokes[1, 2, 0, :8] == pytest.approx(1.0) and per.normalisation.startswith("per-pixel")
    with pytest.raises(ValueError, match="median continuum"):
        read_stokes_cube(tmp_path / "cube.fits", normalisation="none")
    with pytest.raises(ValueError, match="HSRA"):
        read_stokes_cube(tmp_path / "cube.fits", normalisation="hsra")


def test_float_cube_axis_order_from_ctype_and_wavelength_table(tmp_path):
    stokes = _cube()
    wl = hinode_sp_wavelengths()
    # numpy order (Stokes, λ, y, x) stated through CTYPEs; wavelengths in a table extension, descending
    data = np.transpose(stokes[..., ::-1], (2, 3, 1, 0)).astype(np.float32)
    hdu = fits.PrimaryHDU(data)
    hdu.header.update(CTYPE1="HPLN-TAN", CTYPE2="HPLT-TAN", CTYPE3="AWAV", CTYPE4="STOKES")
    table = fits.BinTableHDU.from_columns([fits.Column(name="Wavelength", format="D", array=wl[::-1] / 10.0,
                                                       unit="nm")])
    fits.HDUList([hdu, table]).writeto(tmp_path / "cube.fits")
    sp = read_stokes_cube(tmp_path / "cube.fits", normalisation="none")
    assert sp.stokes.shape == (3, 5, 4, 112)
    np.testing.assert_allclose(sp.wavelengths, wl)
    np.testing.assert_allclose(sp.stokes, stokes, atol=1e-6)
    assert "already" in sp.normalisation


def test_float_cube_errors(tmp_path):
    fits.PrimaryHDU(_cube().astype(np.float32)).writeto(tmp_path / "nowl.fits")
    with pytest.raises(ValueError, match=r"nowl\.fits: HDU 0: no wavelengths: give CRVAL1/CDELT1"):
        read_stokes_cube(tmp_path / "nowl.fits")
    fits.PrimaryHDU(np.zeros((3, 4, 112), np.float32)).writeto(tmp_path / "three.fits")
    with pytest.raises(ValueError, match="4-D"):
        read_stokes_cube(tmp_path / "three.fits")
    fits.PrimaryHDU(np.zeros((2, 4, 112), np.int16)).writeto(tmp_path / "int3.fits")
    with pytest.raises(ValueError, match="4-D"):
        read_stokes_cube(tmp_path / "int3.fits")


@pytest.mark.parametrize("layout", ["int16", "int16 BLANK", "uint16 BLANK", "int32 BSCALE"])
def test_integer_cubes_of_counts(tmp_path, layout):
    """Counts as cameras and archives store them: BSCALE/BZERO applied, BLANK pixels NaN and left out of the
    quiet-Sun continuum, then normalised as a float cube is."""
    counts = np.round(_cube() * 20000.0)  # I up to 20000 counts (continuum pixels exactly), Q/U/V around +-200
    if layout.startswith("uint16"):
        counts += 10000.0  # unsigned: astropy stores it as int16 with BZERO = 32768
        stored = counts.astype(np.uint16)
    elif layout.startswith("int32"):
        stored = (counts * 4).astype(np.int32)  # with BSCALE = 0.25 below
    else:
        stored = counts.astype(np.int16)
    if "BLANK" in layout:
        stored[0, 0, 3, 50] = 0 if layout.startswith("uint16") else -32768  # stored as -32768 either way
    hdu = fits.PrimaryHDU(stored)
    hdu.header.update(CTYPE1="WAVE", CUNIT1="Angstrom", CRPIX1=1.0, CRVAL1=6300.89, CDELT1=0.021549)
    if "BLANK" in layout:
        hdu.header["BLANK"] = -32768
    if "BSCALE" in layout:
        hdu.header["BSCALE"] = 0.25  # astropy writes an integer array it is given as is
    hdu.writeto(tmp_path / "counts.fits")
    sp = read_sp_map(tmp_path / "counts.fits")  # dispatched to the cube reader, like a float cube
    continuum = 30000.0 if layout.startswith("uint16") else 20000.0
    assert sp.continuum_counts == pytest.approx(continuum)
    expected = counts / continuum
    if "BLANK" in layout:
        assert np.isnan(sp.stokes[0, 0, 3, 50])
        expected[0, 0, 3, 50] = np.nan
    np.testing.assert_allclose(sp.stokes, expected, atol=1e-12)
    assert not any(key in sp.headers[0] for key in ("BSCALE", "BZERO", "BLANK"))  # the values are physical now
    with pytest.raises(ValueError, match=f"median continuum is {continuum:g}"):
        read_stokes_cube(tmp_path / "counts.fits", normalisation="none")  # counts are not continuum units


def test_slit_raster_normalisations(tmp_path):
    rng = np.random.default_rng(4)
    stokes = np.zeros((2, 3, 4, 112))
    stokes[:, :, 0] = 1.0
    stokes[1, 1, 0] = 0.5  # a dark pixel
    stokes[:, :, 1:] = 0.01 * rng.standard_normal((2, 3, 3, 112))
    for x in range(2):
        write_sp_level1(tmp_path / "r" / f"s{x}.fits", stokes[x] * 40000.0, spbshft=3)
    per = read_sp_map(tmp_path / "r", normalisation="per-pixel")
    assert per.stokes[1, 1, 0, :8] == pytest.approx(1.0, abs=1e-4) and per.normalisation.startswith("per-pixel")
    quiet = read_sp_map(tmp_path / "r")
    assert quiet.stokes[1, 1, 0, 0] < 0.6 and quiet.normalisation.startswith("quiet-sun")
    with pytest.raises(ValueError, match="calibrated cubes"):
        read_sp_map(tmp_path / "r", normalisation="none")
    with pytest.raises(ValueError, match="normalisation must be"):
        read_sp_map(tmp_path / "r", normalisation="hsra")


def test_a_scaled_integer_wavelength_extension(tmp_path):
    """A WAVELENGTH image stored as integers with BSCALE/BZERO (mÅ steps from 6300 Å) gives physical wavelengths."""
    wl = hinode_sp_wavelengths()
    counts = np.round(_cube() * 20000.0).astype(np.int16)
    ext = fits.ImageHDU(np.round((wl - 6300.0) / 0.001).astype(np.int32), name="WAVELENGTH")
    ext.header.update(BSCALE=0.001, BZERO=6300.0, BUNIT="Angstrom")
    fits.HDUList([fits.PrimaryHDU(counts), ext]).writeto(tmp_path / "cube.fits")
    sp = read_stokes_cube(tmp_path / "cube.fits")
    np.testing.assert_allclose(sp.wavelengths, wl, atol=6e-4)
