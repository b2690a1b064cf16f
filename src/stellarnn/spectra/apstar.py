"""APOGEE apStar files: reader (combined spectrum and visits) and writer.

Data model (SDSS DR17 apStar): HDU1 flux, HDU2 error, HDU3 APOGEE_PIXMASK bitmask, each
(rows, 8575) on the log-lambda grid of :mod:`stellarnn.spectra.apogee_grid`; HDU4/5 sky and
sky error, HDU6/7 telluric and its error.  Row 0 is the combined spectrum; with more
than one visit, row 1 is the second (global-weighted) combination and the visits follow
from row 2.  With one visit, row 0 is that visit and row 1 is left empty (all zeros), as in
the real DR17 file of 2M19485057+5005279.  Real DR17 files carry NaN flux and error in the
chip gaps: such pixels get ``ivar = 0`` and flux 0 (``on_bad_pixels="mask"``, the default)
or raise (``"raise"``).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..atomic_files import atomic_write
from .apogee_grid import APOGEE_DLOG10_LAMBDA, APOGEE_LOG10_LAMBDA0, APOGEE_N_PIXELS, apogee_wavelength
from .errors import SpectrumFileError
from .spectrum import Spectrum

#: primary-header keywords copied into ``Spectrum.meta`` (lower-case keys)
APSTAR_HEADER_KEYS = ("OBJID", "APOGEE_ID", "TELESCOP", "FIELD", "RA", "DEC", "SNR", "NVISITS", "VHELIO",
                      "VSCATTER", "RV_TEFF", "RV_LOGG", "RV_FEH", "RV_ALPH", "RV_CARB", "J", "H", "K")


@dataclass
class ApStar:
    """Contents of one apStar file."""

    path: str
    header: dict
    combined: Spectrum
    visits: list[Spectrum] = field(default_factory=list)

    @property
    def nvisits(self) -> int:
        return len(self.visits)


def open_fits(path: str | os.PathLike):
    """Open a FITS file, turning every low-level failure into :class:`SpectrumFileError`.

    A truncated file is refused: the size on disk must reach the end of the last HDU's data
    as its headers declare it (padding included; FITS standard 4.0, sect. 3.3).  Astropy
    itself only warns and reads the missing part as zeros, or drops the HDUs it cannot reach.
    Compressed files (.gz, .bz2, .zip) are checked when their data are read instead.
    """
    path = Path(path)
    if path.is_dir():
        raise SpectrumFileError(path, "is a folder, not a FITS file")
    if not path.is_file():
        raise SpectrumFileError(path, "file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            warnings.filterwarnings("ignore", message="File may have been truncated")  # refused below
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except Exception as exc:  # OSError, VerifyWarning, TypeError from truncated headers
        raise SpectrumFileError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from exc
    if not path.name.lower().endswith((".gz", ".bz2", ".zip")):
        try:
            declared = max(info["datLoc"] + info["datSpan"] for info in (hdul.fileinfo(i) for i in range(len(hdul))))
            actual = path.stat().st_size
        except Exception as exc:
            hdul.close()
            raise SpectrumFileError(path, f"not a readable FITS file ({type(exc).__name__}: {exc})") from exc
        if actual < declared:
            hdul.close()
            raise SpectrumFileError(path, f"truncated FITS file: {actual} bytes, its {len(hdul)} readable HDU "
                                          f"header(s) declare {declared}")
    return hdul


def read_image_hdu(hdul, path, index: int, n_pixels: int | None, ndim_max: int = 2) -> np.ndarray:
    """Data of image HDU ``index`` as an array, checked for presence and pixel count."""
    if len(hdul) <= index:
        raise SpectrumFileError(path, f"missing HDU (file has {len(hdul)} HDUs)", hdu=index)
    try:
        data = hdul[index].data
    except Exception as exc:  # truncated data
        raise SpectrumFileError(path, f"cannot read data ({type(exc).__name__}: {exc})", hdu=index) from exc
    if data is None:
        raise SpectrumFileError(path, "HDU has no data", hdu=index)
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim > ndim_max:
        raise SpectrumFileError(path, f"unexpected data shape {data.shape}", hdu=index)
    if n_pixels is not None and data.shape[-1] != n_pixels:
        raise SpectrumFileError(path, f"has {data.shape[-1]} pixels per row, expected {n_pixels}", hdu=index)
    return data


def spectrum_from_arrays(path, row: int, wavelength: np.ndarray, flux: np.ndarray, error: np.ndarray,
                         bitmask: np.ndarray, meta: dict, on_bad_pixels: str, hdus=(1, 2)) -> Spectrum:
    """Build a Spectrum from flux/error rows; bad pixels become ivar = 0 (or raise)."""
    flux = np.asarray(flux, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    finite_flux = np.isfinite(flux)
    good_err = np.isfinite(error) & (error > 0)
    if not finite_flux.any():
        raise SpectrumFileError(path, f"row {row}: no finite flux value", hdu=hdus[0])
    if not good_err.any():
        raise SpectrumFileError(path, f"row {row}: no positive finite error (ivar would be zero everywhere)",
                                hdu=hdus[1])
    if on_bad_pixels == "raise":
        if not finite_flux.all():
            raise SpectrumFileError(path, f"row {row}: {np.sum(~finite_flux)} NaN/inf flux values", hdu=hdus[0])
        if not good_err.all():
            raise SpectrumFileError(path, f"row {row}: {np.sum(~good_err)} zero, negative or non-finite errors",
                                    hdu=hdus[1])
    elif on_bad_pixels != "mask":
        raise ValueError(f"on_bad_pixels must be 'mask' or 'raise', not {on_bad_pixels!r}")
    usable = finite_flux & good_err
    ivar = np.zeros_like(flux)
    with np.errstate(over="ignore"):  # errors beyond ~1e154 give ivar 0: no information, as it should
        ivar[usable] = 1.0 / error[usable] ** 2
    flux = np.where(finite_flux, flux, 0.0)
    meta = dict(meta, row=row, n_bad_pixels=int(np.sum(~usable)))
    return Spectrum(wavelength, flux, ivar, np.asarray(bitmask, dtype=np.int64), meta)


#: apStar keywords that must hold numbers when present (primary header; CRVAL1/CDELT1 of HDU 1)
APSTAR_NUMERIC_KEYS = ("ra", "dec", "snr", "nvisits", "vhelio", "vscatter", "rv_teff", "rv_logg", "rv_feh",
                       "rv_alph", "rv_carb", "j", "h", "k", "crval1", "cdelt1")


def _check_header_types(path, header: dict, wcs: dict) -> None:
    """Refuse keywords of the wrong type (e.g. NVISITS = 'three'), naming the file, HDU and keyword."""
    for key in APSTAR_NUMERIC_KEYS:
        value, hdu = (header.get(key), 0) if key in header else (wcs.get(key), 1)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SpectrumFileError(path, f"keyword {key.upper()} = {value!r} is not a number", hdu=hdu)
    nvisits = header.get("nvisits")
    if nvisits is not None and not (np.isfinite(nvisits) and nvisits == int(nvisits) and nvisits >= 1):
        raise SpectrumFileError(path, f"keyword NVISITS = {nvisits!r} is not a whole number >= 1", hdu=0)


def bitmask_values(path, values, hdu, why: str = "") -> np.ndarray:
    """``values`` as int64 bit masks: integers as they are, floats only when every one is a whole non-negative
    number (a bitmask stored as float); anything else is refused naming the file, the HDU and ``why``."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(values) & (values >= 0) & (values == np.round(values))
        if not whole.all():
            raise SpectrumFileError(path, f"holds {values.dtype.name} values that are not bit masks (e.g. "
                                          f"{float(values[~whole].flat[0]):g})" + (f"; {why}" if why else ""), hdu=hdu)
    elif values.dtype.kind not in "iu":
        raise SpectrumFileError(path, f"holds {values.dtype} values, not bit masks", hdu=hdu)
    return values.astype(np.int64)


def check_apstar_grid(path, crval, cdelt, hdu: int = 1) -> None:
    """Refuse a file whose CRVAL1/CDELT1 (when given) are not the apStar log-lambda grid."""
    if crval is not None and cdelt is not None and (abs(crval - APOGEE_LOG10_LAMBDA0) > 1e-9
                                                    or abs(cdelt - APOGEE_DLOG10_LAMBDA) > 1e-12):
        raise SpectrumFileError(path, f"wavelength grid CRVAL1={crval}, CDELT1={cdelt} is not the apStar grid",
                                hdu=hdu)


def read_apstar(path: str | os.PathLike, on_bad_pixels: str = "mask") -> ApStar:
    """Read an apStar file.

    Parameters
    ----------
    path : path-like
        The apStar FITS file.
    on_bad_pixels : {"mask", "raise"}
        What to do with NaN/inf flux or non-positive error at individual pixels.

    Raises
    ------
    SpectrumFileError
        Not FITS or truncated, a missing HDU, a wrong pixel count, or a row without any usable pixel.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        flux = read_image_hdu(hdul, path, 1, APOGEE_N_PIXELS)
        error = read_image_hdu(hdul, path, 2, APOGEE_N_PIXELS)
        bitmask = read_image_hdu(hdul, path, 3, APOGEE_N_PIXELS)
        if error.shape != flux.shape:
            raise SpectrumFileError(path, f"error shape {error.shape} differs from flux {flux.shape}", hdu=2)
        if bitmask.shape != flux.shape:
            raise SpectrumFileError(path, f"bitmask shape {bitmask.shape} differs from flux {flux.shape}", hdu=3)
        # an apStar's HDU 3 is APOGEE_PIXMASK (integers); floats that are not whole numbers are something else
        # (e.g. a model spectrum on the apStar grid) and, cast to integers, would set arbitrary mask bits
        bitmask = bitmask_values(path, bitmask, 3, "an apStar file's HDU 3 is the APOGEE_PIXMASK of each pixel (an "
                                 "aspcapStar file, whose HDU 3 is ASPCAP's best fit, is read by read_apogee_file)")
        hdr = hdul[0].header
        header = {k.lower(): hdr[k] for k in APSTAR_HEADER_KEYS if k in hdr}
        crval, cdelt = hdul[1].header.get("CRVAL1"), hdul[1].header.get("CDELT1")
    _check_header_types(path, header, {"crval1": crval, "cdelt1": cdelt})
    check_apstar_grid(path, crval, cdelt)
    if "apogee_id" not in header and "objid" in header:
        header["apogee_id"] = header["objid"]
    header["source"] = str(path)
    nrows = flux.shape[0]
    nvisits = int(header.get("nvisits", max(nrows - 2, 1) if nrows > 2 else 1))
    wl = apogee_wavelength()
    combined = spectrum_from_arrays(path, 0, wl, flux[0], error[0], bitmask[0], dict(header, kind="combined"),
                                    on_bad_pixels)
    if nvisits == 1:
        visit_rows = [0]
    else:
        visit_rows = list(range(2, 2 + nvisits))
        if nrows < 2 + nvisits:
            raise SpectrumFileError(path, f"NVISITS={nvisits} needs {2 + nvisits} rows, file has {nrows}", hdu=1)
    visits = [spectrum_from_arrays(path, r, wl, flux[r], error[r], bitmask[r],
                                   dict(header, kind="visit", visit=i), on_bad_pixels)
              for i, r in enumerate(visit_rows)]
    return ApStar(str(path), header, combined, visits)


def write_apstar(path: str | os.PathLike, flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray | None = None,
                 header: dict | None = None, overwrite: bool = True) -> Path:
    """Write spectra in the apStar layout (rows: combined first, then visits).

    Parameters
    ----------
    flux, error : ndarray, shape (rows, 8575) or (8575,)
        Flux and 1-sigma error; with more than one row, rows follow the apStar convention
        (row 0 combined, row 1 second combination, visits from row 2).
    bitmask : ndarray of int, optional
        APOGEE_PIXMASK values (0 when omitted).
    header : dict, optional
        Primary-header keywords (e.g. OBJID, SNR, NVISITS, TEFF/LOGG/FE_H of synthetic truth).
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    error = np.atleast_2d(np.asarray(error, dtype=np.float64))
    if flux.shape[-1] != APOGEE_N_PIXELS or error.shape != flux.shape:
        raise ValueError(f"flux/error must be (rows, {APOGEE_N_PIXELS}); got {flux.shape} and {error.shape}")
    bitmask = np.zeros(flux.shape, dtype=np.int64) if bitmask is None else np.atleast_2d(bitmask).astype(np.int64)
    primary = fits.PrimaryHDU()
    for k, v in (header or {}).items():
        primary.header[k.upper()[:8]] = v
    primary.header.setdefault("NVISITS", 1 if flux.shape[0] <= 2 else flux.shape[0] - 2)

    def image(data, bunit):
        hdu = fits.ImageHDU(data)
        hdu.header["CRVAL1"] = APOGEE_LOG10_LAMBDA0
        hdu.header["CDELT1"] = APOGEE_DLOG10_LAMBDA
        hdu.header["CRPIX1"] = 1
        hdu.header["CTYPE1"] = "LOG-LINEAR"
        hdu.header["BUNIT"] = bunit
        return hdu

    hdus = [primary, image(flux, "Flux (10^-17 erg/s/cm^2/Ang)"), image(error, "Err (10^-17 erg/s/cm^2/Ang)"),
            image(bitmask, "Pixel bitmask"), image(np.zeros_like(flux), "Sky (10^-17 erg/s/cm^2/Ang)"),
            image(np.zeros_like(flux), "Sky error (10^-17 erg/s/cm^2/Ang)"), image(np.ones_like(flux), "Telluric"),
            image(np.zeros_like(flux), "Telluric error")]
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    return path
