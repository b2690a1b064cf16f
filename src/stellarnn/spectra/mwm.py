"""SDSS-V Milky Way Mapper spectrum files (Astra's ``mwmStar``): the APOGEE coadd of a star on the apStar grid.

Data model (SDSS DR19, Astra ``mwmStar``/``mwmVisit``; SDSS Collaboration 2025, DR19): the primary header
names the star (``SDSS_ID``, ``APOGEEID``) and the Astra version (``V_ASTRA``); HDU 1 and 2 hold the BOSS spectra
from APO and LCO, HDU 3 and 4 (``EXTNAME`` ``APOGEE/APO``, ``APOGEE/LCO``) the APOGEE spectra: binary tables with
one row per spectrum and 8575-pixel columns ``flux`` (10^-17 erg/s/cm^2/Å), ``ivar``, ``pixel_flags`` and
``continuum`` on the apStar log-lambda grid (``CRVAL`` 4.179, ``CDELT`` 6e-6, ``NPIXELS`` 8575, vacuum, rest frame),
with ``snr``, ``telescope`` and ``obj`` (the 2MASS-style APOGEE identifier).  An ``mwmStar`` has one coadded row per
observatory that observed the star (and ``min_mjd``/``max_mjd``); an ``mwmVisit`` has one row per visit (``mjd``).

:func:`read_mwm_star` reads an ``mwmStar`` as an :class:`~stellarnn.spectra.ApStar`: ``combined`` is the APOGEE
coadd with the higher S/N (APO or LCO), ``visits`` every APOGEE coadd in the file.  Pixels with ``ivar`` <= 0 or
a non-finite flux carry no information (ivar 0).  ``pixel_flags`` is the spectrum's bitmask: Astra takes the APOGEE
spectra's pixel flags from HDU 3 of the apStar/apVisit files they come from, so they are APOGEE_PIXMASK bits and the
pipelines mask the same pixels as in the apStar (without them the labels of 2M17335483-2753043 move by ~90 K).
An ``mwmVisit`` file is refused with a pointer to the star's ``mwmStar``: its rows are single visits, and the
label pipelines' combined spectrum is the coadd.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from .apogee_grid import APOGEE_N_PIXELS, apogee_wavelength
from .apstar import ApStar, bitmask_values, check_apstar_grid, open_fits, spectrum_from_arrays
from .errors import SpectrumFileError
from .spectrum import Spectrum

#: the APOGEE extensions of an mwmStar / mwmVisit file
APOGEE_HDUS = (3, 4)


def is_mwm_file(hdul: fits.HDUList) -> bool:
    """True for an Astra ``mwmStar``/``mwmVisit`` file (primary ``V_ASTRA`` and ``SDSS_ID``, HDU 3 a table
    ``APOGEE/...``), from the headers alone."""
    primary = hdul[0].header
    return bool("V_ASTRA" in primary and "SDSS_ID" in primary and len(hdul) >= 5
                and isinstance(hdul[3], fits.BinTableHDU)
                and str(hdul[3].header.get("EXTNAME", "")).upper().startswith("APOGEE"))


def _pixmask(path, hdu: int, row: int, values) -> np.ndarray:
    """A row of ``pixel_flags`` as int64 APOGEE_PIXMASK bits (:func:`~stellarnn.spectra.apstar.bitmask_values`)."""
    values = np.asarray(values).ravel()
    if values.size != APOGEE_N_PIXELS:
        raise SpectrumFileError(path, f"row {row}: pixel_flags has {values.size} pixels", hdu=hdu)
    return bitmask_values(path, values, hdu, f"row {row}: pixel_flags must hold APOGEE_PIXMASK bits")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value).strip()


def read_mwm_star(path: str | os.PathLike) -> ApStar:
    """Read the APOGEE spectra of an Astra ``mwmStar`` file (module docstring).

    Raises
    ------
    SpectrumFileError
        Not an mwm file, an ``mwmVisit`` file, no APOGEE spectrum (BOSS only), another wavelength grid, or a
        spectrum without any usable pixel.
    """
    path = Path(path)
    rows = []
    with open_fits(path) as hdul:
        if not is_mwm_file(hdul):
            raise SpectrumFileError(path, "not an SDSS-V mwmStar file (primary V_ASTRA and SDSS_ID, HDU 3 APOGEE/...)")
        primary = hdul[0].header
        for index in APOGEE_HDUS:
            hdu = hdul[index]
            data = hdu.data
            if data is None or len(data) == 0:
                continue
            names = {n.lower(): n for n in data.columns.names}
            if "mjd" in names and "min_mjd" not in names:
                raise SpectrumFileError(path, f"an mwmVisit file ({len(data)} single visits in "
                                              f"{hdu.header.get('EXTNAME')}): label the star's mwmStar file, "
                                              "which holds the coadd", hdu=index)
            missing = [c for c in ("flux", "ivar") if c not in names]
            if missing:
                raise SpectrumFileError(path, f"no {'/'.join(missing)} column", hdu=index)
            if hdu.header.get("NPIXELS", APOGEE_N_PIXELS) != APOGEE_N_PIXELS:
                raise SpectrumFileError(path, f"NPIXELS = {hdu.header.get('NPIXELS')}, not the apStar grid's "
                                              f"{APOGEE_N_PIXELS}", hdu=index)
            check_apstar_grid(path, hdu.header.get("CRVAL"), hdu.header.get("CDELT"), hdu=index)
            for r in range(len(data)):
                flux = np.asarray(data[names["flux"]][r], np.float64).ravel()
                ivar = np.asarray(data[names["ivar"]][r], np.float64).ravel()
                if flux.size != APOGEE_N_PIXELS or ivar.size != APOGEE_N_PIXELS:
                    raise SpectrumFileError(path, f"row {r} has {flux.size} pixels, expected {APOGEE_N_PIXELS}",
                                            hdu=index)
                flags = _pixmask(path, index, r, data[names["pixel_flags"]][r] if "pixel_flags" in names
                                 else np.zeros(APOGEE_N_PIXELS, np.int64))
                meta = {k: _text(data[names[k]][r]) for k in ("telescope", "obj") if k in names}
                snr = float(data[names["snr"]][r]) if "snr" in names else float("nan")
                rows.append((snr, index, r, flux, ivar, flags, meta))
        header = {"sdss_id": primary.get("SDSS_ID"), "v_astra": primary.get("V_ASTRA"), "source": str(path)}
        apogee_id = _text(primary.get("APOGEEID", "")) or next((m["obj"] for *_, m in rows if m.get("obj")), "")
    if not rows:
        raise SpectrumFileError(path, "no APOGEE spectrum (HDU 3 and 4 are empty: a BOSS-only star)")
    header["apogee_id"] = apogee_id or f"sdss_id {header['sdss_id']}"
    spectra, unusable = [], []
    for snr, index, r, flux, ivar, flags, meta in rows:
        with np.errstate(divide="ignore"):
            error = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), np.nan)
        meta = dict(header, **meta, kind="visit", hdu=index, snr=snr, format="mwmStar")
        try:
            spectra.append(spectrum_from_arrays(path, r, apogee_wavelength(), flux, error, flags, meta, "mask",
                                                hdus=(index, index)))
        except SpectrumFileError as exc:  # a coadd without one usable pixel: the other observatory's may do
            unusable.append(exc)
    if not spectra:
        raise unusable[0]
    header["unusable_coadds"] = len(unusable)
    best = max(spectra, key=lambda s: s.meta["snr"] if np.isfinite(s.meta["snr"]) else s.snr)
    combined = Spectrum(best.wavelength, best.flux, best.ivar, best.bitmask, dict(best.meta, kind="combined"))
    return ApStar(str(path), header, combined, spectra)
