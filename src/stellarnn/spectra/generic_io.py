"""Generic spectrum files: CSV and FITS (1-D image with a linear/log-linear WCS, or a binary table).

``read_spectrum`` also recognises apStar and apVisit files and reads their combined/joined spectrum.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .apstar import open_fits, read_apstar, spectrum_from_arrays
from .errors import SpectrumFileError
from .spectrum import Spectrum

_WAVE_NAMES = ("wavelength", "wave", "lambda", "wl", "loglam")
_FLUX_NAMES = ("flux", "f", "spec", "spectrum")
_ERR_NAMES = ("error", "err", "sigma", "uncertainty", "flux_err")
_IVAR_NAMES = ("ivar", "inverse_variance")
_MASK_NAMES = ("bitmask", "mask", "pixmask")


def _pick(colnames, candidates):
    low = {c.lower(): c for c in colnames}
    for c in candidates:
        if c in low:
            return low[c]
    return None


def _from_columns(path, cols: dict, hdu=None) -> Spectrum:
    names = list(cols)
    wname, fname = _pick(names, _WAVE_NAMES), _pick(names, _FLUX_NAMES)
    if wname is None or fname is None:
        raise SpectrumFileError(path, f"needs wavelength and flux columns; found {names}", hdu=hdu)
    def column(name, dtype=np.float64):
        try:
            return np.asarray(cols[name], dtype=dtype).ravel()
        except (TypeError, ValueError, OverflowError) as exc:
            kind = "numbers" if dtype is np.float64 else "integers"
            raise SpectrumFileError(path, f"column {name!r} does not hold {kind} ({exc})", hdu=hdu) from None

    wave = column(wname)
    if wname.lower() == "loglam":
        with np.errstate(over="ignore"):
            wave = 10 ** wave
    flux = column(fname)
    if wave.size == 0:
        raise SpectrumFileError(path, "no rows", hdu=hdu)
    if not np.all(np.isfinite(wave)):
        raise SpectrumFileError(path, f"column {wname!r}: {np.sum(~np.isfinite(wave))} non-finite wavelengths",
                                hdu=hdu)
    ename, iname, mname = _pick(names, _ERR_NAMES), _pick(names, _IVAR_NAMES), _pick(names, _MASK_NAMES)
    if iname is not None:
        ivar = column(iname)
        with np.errstate(divide="ignore"):
            error = np.where(ivar > 0, 1 / np.sqrt(np.where(ivar > 0, ivar, 1)), np.inf)
    elif ename is not None:
        error = column(ename)
    else:
        error = np.ones_like(flux)  # no uncertainty given: unit errors, recorded in meta
    mask = column(mname, np.int64) if mname is not None else np.zeros(flux.size, np.int64)
    if not (flux.size == wave.size == error.size == mask.size):
        raise SpectrumFileError(path, f"columns of different lengths ({wave.size} wavelengths, {flux.size} fluxes)",
                                hdu=hdu)
    if not np.all(np.diff(wave[np.isfinite(wave)]) > 0):
        order = np.argsort(wave)
        wave, flux, error, mask = wave[order], flux[order], error[order], mask[order]
    meta = {"source": str(path), "has_uncertainty": ename is not None or iname is not None}
    return spectrum_from_arrays(path, 0, wave, flux, error, mask, meta, "mask", hdus=(hdu, hdu))


def read_spectrum_csv(path: str | os.PathLike) -> Spectrum:
    """CSV with a header row naming wavelength and flux (and optionally error/ivar and bitmask) columns."""
    path = Path(path)
    if not path.is_file():
        raise SpectrumFileError(path, "file does not exist")
    try:
        table = Table.read(path, format="ascii.csv", comment="#")
    except Exception as exc:
        raise SpectrumFileError(path, f"not a readable CSV table ({exc})") from exc
    return _from_columns(path, {c: table[c] for c in table.colnames})


def read_spectrum_fits(path: str | os.PathLike, hdu: int | None = None) -> Spectrum:
    """A 1-D FITS spectrum: apStar/apVisit, an image with CRVAL1/CDELT1, or a table with named columns."""
    path = Path(path)
    with open_fits(path) as hdul:
        header0 = hdul[0].header
        if len(hdul) >= 4 and hdul[1].data is not None and np.ndim(hdul[1].data) >= 1 \
                and np.shape(hdul[1].data)[-1] == 8575 and hdu is None:
            pass  # apStar layout
        else:
            index = hdu if hdu is not None else next(
                (i for i, h in enumerate(hdul) if h.data is not None and getattr(h.data, "size", 0) > 0), None)
            if index is None:
                raise SpectrumFileError(path, "no HDU with data")
            h = hdul[index]
            if isinstance(h, (fits.BinTableHDU, fits.TableHDU)):
                return _from_columns(path, {c: h.data[c] for c in h.columns.names}, hdu=index)
            data = np.asarray(h.data, dtype=np.float64)
            if data.ndim != 1:
                raise SpectrumFileError(path, f"image data of shape {data.shape} is not a 1-D spectrum "
                                              "(use a dedicated reader, e.g. apVisit or echelle)", hdu=index)
            hdr = h.header
            if "CRVAL1" not in hdr or "CDELT1" not in hdr and "CD1_1" not in hdr:
                raise SpectrumFileError(path, "1-D image lacks CRVAL1/CDELT1 wavelength keywords", hdu=index)
            step = hdr.get("CDELT1", hdr.get("CD1_1"))
            for key, value in (("CRVAL1", hdr["CRVAL1"]), ("CDELT1" if "CDELT1" in hdr else "CD1_1", step),
                               ("CRPIX1", hdr.get("CRPIX1", 1))):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise SpectrumFileError(path, f"keyword {key} = {value!r} is not a number", hdu=index)
            pix = np.arange(data.size) + 1 - hdr.get("CRPIX1", 1)
            grid = hdr["CRVAL1"] + step * pix
            log = "LOG" in str(hdr.get("CTYPE1", "")).upper() or hdr.get("DC-FLAG", 0) == 1
            wave = 10 ** grid if log else grid
            return _from_columns(path, {"wavelength": wave, "flux": data}, hdu=index)
    apstar = read_apstar(path)
    return apstar.combined


def read_spectrum(path: str | os.PathLike) -> Spectrum:
    """Read a spectrum file by extension (.csv/.txt -> CSV; .fits/.fit/.fits.gz -> FITS)."""
    name = str(path).lower()
    if name.endswith((".csv", ".txt", ".dat")):
        return read_spectrum_csv(path)
    if name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
        return read_spectrum_fits(path)
    raise SpectrumFileError(path, "unknown extension (expected .csv, .txt or .fits)")


def write_spectrum_csv(path: str | os.PathLike, spectrum: Spectrum) -> Path:
    """CSV with columns wavelength (Angstrom, vacuum), flux, error, bitmask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    error = np.where(np.isfinite(spectrum.error), spectrum.error, np.nan)
    t = Table([spectrum.wavelength, spectrum.flux, error, spectrum.bitmask],
              names=("wavelength", "flux", "error", "bitmask"))
    t.write(path, format="ascii.csv", overwrite=True)
    return path
