"""Hinode SOT/SP level-1 FITS reading and writing, and parameter maps in and out (FITS).

Level-1 SP data come as one FITS file per slit position, primary HDU of 16-bit integers with
numpy shape (4, n_slit, 112): Stokes I, Q, U, V × pixels along the slit × wavelength
(FITS NAXIS1 = 112 wavelengths, NAXIS2 = slit pixels, NAXIS3 = 4).

Two on-board/packaging conventions must be undone (Hinode SP data-analysis notes; SolarSoft
level-1 readers do the same):

* **Sign wrap** — Stokes I is an unsigned 16-bit quantity stored in signed 16-bit integers, so
  counts above 32767 appear negative: add 65536 to negative I values.
* **Bit shift** — the header keyword ``SPBSHFT`` says which Stokes parameters were divided by 2
  (shifted right by one bit) to fit 16 bits: SPBSHFT ≥ 1: I; ≥ 2: also V; ≥ 3: also Q and U.
  Multiply those back by 2 (after the sign unwrap).

Wavelengths come from the linear WCS of axis 1 (CRVAL1, CDELT1, CRPIX1, Å) when present, else the
nominal SP grid (6300.89 Å + 21.549 mÅ × pixel).

Stokes cubes (:func:`read_stokes_cube`): one 4-D image, numpy order (x, y, Stokes, λ)
unless the CTYPEn keywords say otherwise (``STOKES`` for the Stokes axis, ``WAVE``/``AWAV``/``LAMBDA``
for the wavelength axis). The wavelengths come from that axis' linear WCS (CRVALn, CDELTn or CDn_n,
CRPIXn, CUNITn, default Angstrom) or from a wavelength table (an image extension named
``WAVELENGTH``/``WAVE``/``LAMBDA``, or a binary table with a ``wavelength``/``wave``/``lambda``
column, TUNIT honoured); a cube with neither is refused rather than given the nominal grid. The image holds
floats (calibrated data, NaN for missing pixels) or integers (counts, as cameras and archives store them:
BSCALE/BZERO applied, BLANK pixels become NaN); either is normalised to the continuum below.

Continuum normalisation (:data:`NORMALISATIONS`, stated in :attr:`SPMap.normalisation`):

* ``quiet-sun`` — divide by the mean continuum intensity of the quiet-Sun pixels of the map (those
  whose continuum is ≥ 0.9 × the map median, so umbrae, penumbrae and pores do not lower it), or by
  a given ``continuum_counts``; keeps the intensity contrast the temperature inversion needs.
  For level-1 slit files the mean is over the whole raster (the historical behaviour).
* ``per-pixel`` — divide each pixel by its own continuum (I_c = 1 everywhere): removes the contrast.
* ``none`` — the cube is already in units of the quiet-Sun continuum; checked (median continuum
  within 0.5–1.5).

HSRA (absolute disc-centre intensity) normalisation needs the absolute calibration of the
instrument and is not offered. The continuum is the mean Stokes I over the pixels bluer than
:data:`CONTINUUM_MAX_ANGSTROM` (the first SP pixels, free of the Fe I lines).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from astropy.io import fits

from .milne_eddington import HINODE_SP_PIXELS, hinode_sp_wavelengths

SIGN_WRAP = 65536
#: continuum pixels of the SP grid (bluest pixels, free of the two Fe I lines), used for normalisation
CONTINUUM_PIXELS = slice(0, 8)
#: continuum window on any grid: pixels bluer than this (Å, air; the 8th nominal SP pixel is 6301.04 Å)
CONTINUUM_MAX_ANGSTROM = 6301.05
#: continuum normalisations offered by :func:`read_stokes_cube`
NORMALISATIONS = ("quiet-sun", "per-pixel", "none")
#: quiet-Sun pixels for the ``quiet-sun`` normalisation: continuum ≥ this fraction of the map median
QUIET_SUN_FRACTION = 0.9


def _wavelengths_from_header(header: fits.Header, n: int) -> np.ndarray:
    if all(k in header for k in ("CRVAL1", "CDELT1")):
        crpix = float(header.get("CRPIX1", 1.0))
        return float(header["CRVAL1"]) + float(header["CDELT1"]) * (np.arange(n) + 1.0 - crpix)
    return hinode_sp_wavelengths()[:n] if n <= HINODE_SP_PIXELS else hinode_sp_wavelengths()


def decode_level1(raw: np.ndarray, spbshft: int) -> np.ndarray:
    """Undo the I sign wrap and the SPBSHFT bit shift: int16 (4, n_slit, n_λ) → float64 counts."""
    if raw.ndim != 3 or raw.shape[0] != 4:
        raise ValueError(f"level-1 SP data must have shape (4, n_slit, n_wavelength); got {raw.shape}")
    if spbshft not in (0, 1, 2, 3):
        raise ValueError(f"SPBSHFT must be 0–3, got {spbshft}")
    data = raw.astype(np.float64)
    stokes_i = data[0]
    stokes_i[stokes_i < 0] += SIGN_WRAP
    if spbshft >= 1:
        data[0] *= 2.0
    if spbshft >= 2:
        data[3] *= 2.0
    if spbshft >= 3:
        data[1:3] *= 2.0
    return data


def encode_level1(counts: np.ndarray, spbshft: int) -> np.ndarray:
    """Inverse of :func:`decode_level1`: float counts (4, n_slit, n_λ) → int16 with shift and wrap.

    Raises ValueError if a value does not fit the 16-bit encoding.
    """
    if counts.ndim != 3 or counts.shape[0] != 4:
        raise ValueError(f"counts must have shape (4, n_slit, n_wavelength); got {counts.shape}")
    if not np.all(np.isfinite(counts)):
        raise ValueError("counts contain NaN or infinity")
    if spbshft not in (0, 1, 2, 3):
        raise ValueError(f"SPBSHFT must be 0–3, got {spbshft}")
    data = np.array(counts, dtype=np.float64)
    if spbshft >= 1:
        data[0] /= 2.0
    if spbshft >= 2:
        data[3] /= 2.0
    if spbshft >= 3:
        data[1:3] /= 2.0
    data = np.rint(data)
    if data[0].min() < 0 or data[0].max() >= SIGN_WRAP:
        raise ValueError("Stokes I does not fit an unsigned 16-bit value after the bit shift")
    if np.abs(data[1:]).max() > 32767:
        raise ValueError("Stokes Q/U/V do not fit a signed 16-bit value after the bit shift")
    stokes_i = data[0]
    stokes_i[stokes_i > 32767] -= SIGN_WRAP
    return data.astype(np.int16)


@dataclass
class SPLevel1:
    """One slit position: counts (n_slit, 4, n_λ) float64, wavelengths (Å), header."""

    counts: np.ndarray
    wavelengths: np.ndarray
    header: fits.Header


def read_sp_level1(path: str | Path) -> SPLevel1:
    """Read one Hinode SP level-1 slit file (decoded counts, slit pixel first)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Hinode SP file {path} does not exist")
    with fits.open(path) as hdul:
        header = hdul[0].header.copy()
        raw = hdul[0].data
        if raw is None:
            raise ValueError(f"{path}: primary HDU holds no data")
        raw = np.asarray(raw)
    if raw.dtype.kind not in "iu":
        raise ValueError(f"{path}: level-1 SP data are 16-bit integers, found {raw.dtype} (a calibrated float "
                         "cube (x, y, Stokes, λ) is read by read_stokes_cube or read_sp_map)")
    counts = decode_level1(raw, int(header.get("SPBSHFT", 0)))
    return SPLevel1(np.ascontiguousarray(counts.transpose(1, 0, 2)), _wavelengths_from_header(header, raw.shape[2]),
                    header)


def write_sp_level1(path: str | Path, counts: np.ndarray, spbshft: int = 3, wavelengths: np.ndarray | None = None,
                    header_cards: dict | None = None) -> Path:
    """Write one slit position, counts (n_slit, 4, n_λ), in the level-1 layout (int16, shift, sign wrap)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[1] != 4:
        raise ValueError(f"counts must have shape (n_slit, 4, n_wavelength); got {counts.shape}")
    raw = encode_level1(counts.transpose(1, 0, 2), spbshft)
    wl = hinode_sp_wavelengths() if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    hdu = fits.PrimaryHDU(raw)
    h = hdu.header
    h["SPBSHFT"] = (spbshft, "bit shift: 1 I/2, 2 +V/2, 3 +Q,U/2")
    h["CTYPE1"], h["CUNIT1"] = "WAVE", "Angstrom"
    h["CRPIX1"], h["CRVAL1"], h["CDELT1"] = 1.0, float(wl[0]), float(wl[1] - wl[0])
    h["INSTRUME"] = "SOT/SP"
    for key, value in (header_cards or {}).items():
        h[key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu.writeto(path, overwrite=True)
    return path


@dataclass
class SPMap:
    """A raster: stokes (n_x, n_slit, 4, n_λ) in continuum units, wavelengths (Å), continuum counts.

    ``normalisation`` states how the continuum unit was chosen (see the module docstring);
    ``continuum_counts`` is the divisor (NaN for ``per-pixel``, 1 for ``none``).
    """

    stokes: np.ndarray
    wavelengths: np.ndarray
    continuum_counts: float
    headers: list = field(default_factory=list)
    normalisation: str = ""


def read_sp_map(paths: Iterable[str | Path] | str | Path, continuum_counts: float | None = None,
                normalisation: str = "quiet-sun") -> SPMap:
    """Read a raster of slit files (a directory or a sorted list), or one Stokes cube of floats or integers
    (:func:`read_stokes_cube`), and normalise to the continuum.

    ``normalisation`` (:data:`NORMALISATIONS`): for slit files ``quiet-sun`` is the mean Stokes I
    over :data:`CONTINUUM_PIXELS` of the whole raster unless ``continuum_counts`` is given (e.g. a
    quiet-Sun value); ``per-pixel`` divides each pixel by its own continuum; ``none`` is refused
    (level-1 data are counts). The choice is stated in :attr:`SPMap.normalisation`.
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        files: Sequence[Path] = sorted(Path(paths).glob("*.fits"))
    elif isinstance(paths, (str, Path)):
        if _is_stokes_cube(Path(paths)):
            return read_stokes_cube(paths, normalisation=normalisation, continuum_counts=continuum_counts)
        files = [Path(paths)]
    else:
        files = [Path(p) for p in paths]
    if not files:
        raise FileNotFoundError("no Hinode SP level-1 FITS files found")
    if normalisation == "none":
        raise ValueError("level-1 slit files hold counts: normalisation 'none' applies only to calibrated cubes")
    slits = [read_sp_level1(f) for f in files]
    shapes = {s.counts.shape for s in slits}
    if len(shapes) != 1:
        raise ValueError(f"slit files have different shapes: {sorted(shapes)}")
    counts = np.stack([s.counts for s in slits])
    headers = [s.header for s in slits]
    if normalisation == "per-pixel":
        cont = counts[:, :, 0, CONTINUUM_PIXELS].mean(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            stokes = counts / np.where(cont > 0, cont, np.nan)[:, :, None, None]
        return SPMap(stokes, slits[0].wavelengths, float("nan"), headers,
                     normalisation="per-pixel: each pixel divided by its own continuum (contrast removed)")
    note = f"quiet-sun: given continuum {continuum_counts} counts"
    if continuum_counts is None:
        continuum_counts = float(counts[:, :, 0, CONTINUUM_PIXELS].mean())
        note = "quiet-sun: mean continuum (first 8 SP pixels) of the whole raster"
    if not continuum_counts > 0:
        raise ValueError("continuum counts must be positive")
    return SPMap(counts / continuum_counts, slits[0].wavelengths, continuum_counts, headers, normalisation=note)


def _is_stokes_cube(path: Path) -> bool:
    """True for a FITS file whose first data HDU is a 4-D image (level-1 slit files are 3-D)."""
    if not path.is_file():
        return False
    with fits.open(path) as hdul:
        for hdu in hdul:
            if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.header.get("NAXIS", 0) > 0:
                return hdu.header["NAXIS"] == 4
    return False


def _physical_values(stored: np.ndarray, header: fits.Header, where: str) -> np.ndarray:
    """float64 physical values of an image read without scaling: BSCALE * stored + BZERO (FITS standard
    4.0, §4.4.2.5), NaN where an integer image holds its BLANK value; BSCALE/BZERO/BLANK leave ``header``."""
    if stored.dtype.kind not in "iuf":
        raise ValueError(f"{where}: image of {stored.dtype} is not numeric")
    bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
    values = stored.astype(np.float64) * bscale + bzero
    if stored.dtype.kind in "iu" and "BLANK" in header:
        values[stored == int(header["BLANK"])] = np.nan
    for key in ("BSCALE", "BZERO", "BLANK"):
        header.remove(key, ignore_missing=True)
    return values


def _length_to_angstrom(unit_text: str | None, where: str) -> float:
    import astropy.units as u

    if not unit_text or str(unit_text).strip().lower() in ("a", "aa", "angstrom", "angstroms", "å"):
        return 1.0
    try:
        return float((1.0 * u.Unit(str(unit_text).strip())).to(u.AA).value)
    except (ValueError, u.UnitsError, TypeError) as exc:
        raise ValueError(f"{where}: wavelength unit {unit_text!r} is not a length") from exc


def _wavelength_table(hdul, path: Path) -> np.ndarray | None:
    """Wavelengths [Å] from a WAVELENGTH image extension or a table column, or None."""
    for number, hdu in enumerate(hdul):
        name = str(hdu.header.get("EXTNAME", "")).upper()
        if isinstance(hdu, fits.ImageHDU) and name in ("WAVELENGTH", "WAVE", "LAMBDA") and hdu.data is not None:
            where = f"{path}: HDU {number}"
            factor = _length_to_angstrom(hdu.header.get("BUNIT") or hdu.header.get("CUNIT1"), where)
            # the file may be open without scaling (read_stokes_cube): apply BSCALE/BZERO here as there
            return _physical_values(np.asarray(hdu.data), hdu.header.copy(), where).ravel() * factor
        if isinstance(hdu, fits.BinTableHDU) and hdu.data is not None:
            lower = {n.lower(): n for n in hdu.data.columns.names}
            col = next((lower[c] for c in ("wavelength", "wave", "lambda") if c in lower), None)
            if col is not None:
                factor = _length_to_angstrom(hdu.data.columns[col].unit, f"{path}: HDU {number} column {col!r}")
                return np.asarray(hdu.data[col], dtype=np.float64).ravel() * factor
    return None


def read_stokes_cube(path: str | Path, normalisation: str = "quiet-sun",
                     continuum_counts: float | None = None) -> SPMap:
    """Read a Stokes cube (see the module docstring) into an :class:`SPMap`.

    Parameters
    ----------
    path : FITS file with a 4-D image of floats or integers (numpy order (x, y, Stokes, λ) unless CTYPEn say
        otherwise: STOKES, WAVE/AWAV/LAMBDA, and HPLN/SOLAR_X/X for the x (scan) axis); integers are counts
        (BSCALE and BZERO applied, pixels equal to BLANK become NaN)
    normalisation : one of :data:`NORMALISATIONS`
    continuum_counts : float, optional
        The quiet-Sun continuum to divide by (``quiet-sun`` only; default: measured on the map).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Stokes cube {path} does not exist")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS} (HSRA needs an absolute calibration "
                         f"and is not offered), got {normalisation!r}")
    with fits.open(path, do_not_scale_image_data=True) as hdul:  # the stored values: BLANK is in their units
        number, hdu = next(((i, h) for i, h in enumerate(hdul)
                            if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) and h.data is not None), (None, None))
        if hdu is None:
            raise ValueError(f"{path}: no image data")
        header = hdu.header.copy()
        where = f"{path}: HDU {number}"
        data = _physical_values(np.asarray(hdu.data), header, where)
        table = _wavelength_table(hdul, path)
    if data.ndim != 4:
        raise ValueError(f"{where}: a Stokes cube is 4-D (x, y, Stokes, λ); got shape {data.shape}")
    ndim = data.ndim
    ctypes = {ndim - n: str(header.get(f"CTYPE{n}", "")).upper() for n in range(1, ndim + 1)}  # numpy axis → CTYPE
    wave_axis = next((a for a, c in ctypes.items() if c.startswith(("WAVE", "AWAV", "LAMBDA"))), None)
    if wave_axis is None:
        wave_axis = next((a for a in range(ndim) if table is not None and data.shape[a] == table.size), ndim - 1)
    stokes_axis = next((a for a, c in ctypes.items() if c.startswith("STOKES")), None)
    if stokes_axis is None:
        fours = [a for a in range(ndim) if a != wave_axis and data.shape[a] == 4]
        stokes_axis = 2 if 2 in fours else (fours[0] if fours else None)
    if stokes_axis is None or data.shape[stokes_axis] != 4:
        raise ValueError(f"{where}: no Stokes axis of length 4 in shape {data.shape} (CTYPEs {ctypes})")
    spatial = [a for a in range(ndim) if a not in (wave_axis, stokes_axis)]  # numpy order unless CTYPE says x
    x_like = [a for a in spatial if ctypes[a].startswith(("HPLN", "SOLAR_X", "SOLARX", "RA")) or ctypes[a] == "X"]
    if len(x_like) == 1 and x_like[0] != spatial[0]:
        spatial = spatial[::-1]
    cube = np.ascontiguousarray(np.transpose(data, spatial + [stokes_axis, wave_axis]), dtype=np.float64)
    n_wl = cube.shape[-1]
    n = ndim - wave_axis  # FITS axis number of λ
    step = header.get(f"CDELT{n}", header.get(f"CD{n}_{n}"))
    if f"CRVAL{n}" in header and step is not None:
        factor = _length_to_angstrom(header.get(f"CUNIT{n}"), f"{where} CUNIT{n}")
        wl = (float(header[f"CRVAL{n}"]) + float(step) * (np.arange(n_wl) + 1.0 - float(header.get(f"CRPIX{n}", 1.0))))
        wl, source = wl * factor, f"WCS of FITS axis {n}"
    elif table is not None:
        if table.size != n_wl:
            raise ValueError(f"{where}: the wavelength table has {table.size} values for {n_wl} spectral pixels")
        wl, source = table, "wavelength table"
    else:
        raise ValueError(f"{where}: no wavelengths: give CRVAL{n}/CDELT{n} (CRPIX{n}, CUNIT{n}) or a WAVELENGTH "
                         "extension / table")
    if not np.all(np.isfinite(wl)) or np.any(np.diff(wl) == 0):
        raise ValueError(f"{where}: wavelengths are not finite and strictly monotonic")
    if wl[-1] < wl[0]:
        wl, cube = wl[::-1].copy(), np.ascontiguousarray(cube[..., ::-1])
    window = wl < CONTINUUM_MAX_ANGSTROM
    if window.sum() < 3:
        raise ValueError(f"{where}: fewer than 3 continuum pixels bluer than {CONTINUUM_MAX_ANGSTROM} Å "
                         f"(grid {wl[0]:.3f}–{wl[-1]:.3f} Å)")
    with np.errstate(invalid="ignore"):
        cont = np.nanmean(cube[:, :, 0, window], axis=-1)  # (x, y)
    if normalisation == "per-pixel":
        with np.errstate(invalid="ignore", divide="ignore"):
            stokes = cube / np.where(cont > 0, cont, np.nan)[:, :, None, None]
        divisor, note = float("nan"), "per-pixel: each pixel divided by its own continuum (contrast removed)"
    elif normalisation == "none":
        med = float(np.nanmedian(cont))
        if not 0.5 <= med <= 1.5:
            raise ValueError(f"{where}: normalisation 'none' but the median continuum is {med:g}, not ~1: "
                             "use 'quiet-sun'")
        stokes, divisor, note = cube, 1.0, "none: the file is already in quiet-Sun continuum units"
    else:
        if continuum_counts is None:
            med = float(np.nanmedian(cont))
            quiet = cont >= QUIET_SUN_FRACTION * med
            continuum_counts = float(np.nanmean(cont[quiet]))
            note = (f"quiet-sun: mean continuum of the {int(quiet.sum())} pixels with continuum >= "
                    f"{QUIET_SUN_FRACTION} x the map median")
        else:
            note = f"quiet-sun: given continuum {continuum_counts}"
        if not continuum_counts > 0:
            raise ValueError(f"{where}: continuum must be positive, got {continuum_counts}")
        stokes, divisor = cube / continuum_counts, float(continuum_counts)
    header["WAVESRC"] = source
    return SPMap(stokes, wl, divisor, [header], normalisation=note)


def write_parameter_maps(path: str | Path, maps: dict[str, np.ndarray], units: dict[str, str] | None = None,
                         header_cards: dict | None = None) -> Path:
    """Write 2-D parameter maps, one image extension per quantity (EXTNAME = name, BUNIT = unit)."""
    if not maps:
        raise ValueError("no maps to write")
    shapes = {np.shape(v) for v in maps.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"maps must be 2-D and of one shape; got {sorted(shapes)}")
    primary = fits.PrimaryHDU()
    for key, value in (header_cards or {}).items():
        primary.header[key] = value
    hdus = [primary]
    for name, data in maps.items():
        hdu = fits.ImageHDU(np.asarray(data, dtype=np.float32), name=name.upper())
        hdu.header["QUANTITY"] = name
        if units and units.get(name):
            hdu.header["BUNIT"] = units[name]
        hdus.append(hdu)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def read_parameter_maps(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read maps written by :func:`write_parameter_maps`: ({name: array}, {name: unit})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"map file {path} does not exist")
    maps, units = {}, {}
    with fits.open(path) as hdul:
        for hdu in hdul[1:]:
            name = hdu.header.get("QUANTITY", hdu.name.lower())
            maps[name] = np.asarray(hdu.data, dtype=np.float64)
            units[name] = hdu.header.get("BUNIT", "")
    if not maps:
        raise ValueError(f"{path} holds no parameter maps")
    return maps, units
