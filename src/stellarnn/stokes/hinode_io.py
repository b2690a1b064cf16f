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
        raise ValueError(f"{path}: level-1 SP data are 16-bit integers, found {raw.dtype}")
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
    """A raster: stokes (n_x, n_slit, 4, n_λ) in continuum units, wavelengths (Å), continuum counts."""

    stokes: np.ndarray
    wavelengths: np.ndarray
    continuum_counts: float
    headers: list = field(default_factory=list)


def read_sp_map(paths: Iterable[str | Path] | str | Path, continuum_counts: float | None = None) -> SPMap:
    """Read a raster of slit files (a directory or a sorted list) and normalise to the continuum.

    The normalisation is the mean Stokes I over :data:`CONTINUUM_PIXELS` of the whole raster
    unless ``continuum_counts`` is given (e.g. a quiet-Sun value).
    """
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        files: Sequence[Path] = sorted(Path(paths).glob("*.fits"))
    elif isinstance(paths, (str, Path)):
        files = [Path(paths)]
    else:
        files = [Path(p) for p in paths]
    if not files:
        raise FileNotFoundError("no Hinode SP level-1 FITS files found")
    slits = [read_sp_level1(f) for f in files]
    shapes = {s.counts.shape for s in slits}
    if len(shapes) != 1:
        raise ValueError(f"slit files have different shapes: {sorted(shapes)}")
    counts = np.stack([s.counts for s in slits])
    if continuum_counts is None:
        continuum_counts = float(counts[:, :, 0, CONTINUUM_PIXELS].mean())
    if not continuum_counts > 0:
        raise ValueError("continuum counts must be positive")
    return SPMap(counts / continuum_counts, slits[0].wavelengths, continuum_counts, [s.header for s in slits])


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
