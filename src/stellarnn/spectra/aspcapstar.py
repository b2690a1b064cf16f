"""APOGEE aspcapStar files: ASPCAP's pseudo-continuum-normalised spectrum of one star on the apStar grid.

Data model (SDSS DR16/DR17 ``aspcapStar``; Jönsson et al. 2020, AJ 160, 120; Abdurro'uf et al. 2022, ApJS 259,
35): HDU 1 the pseudo-continuum-normalised flux and HDU 2 its 1σ error, one row of the 8575 apStar pixels
(log-linear, CRVAL1 = 4.179, CDELT1 = 6e-6); HDU 3 ASPCAP's best-fitting synthetic spectrum on the same pixels;
HDU 4 a binary table with ASPCAP's results for the star.  There is no pixel mask: ASPCAP leaves pixels without
data (the chip gaps, rejected pixels) at flux 0, so a flux of exactly 0, a non-finite flux or a non-positive or
non-finite error gets ``ivar = 0`` here.

The label pipelines read such a spectrum as they read an apStar's combined spectrum (through
:func:`stellarnn.spectra.read_apogee_file`): their own DR17 continuum (:func:`~stellarnn.spectra.apogee_continuum`)
divides a flux that is already normalised by a continuum close to 1.  ASPCAP's own labels, where HDU 4 has the
named columns, are kept in the header (``aspcap_teff``, ``aspcap_logg``, ``aspcap_m_h``, ``aspcap_fe_h``) for
comparison; its best fit is returned by :func:`read_aspcapstar_model`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from .apogee_grid import APOGEE_N_PIXELS, apogee_wavelength
from .apstar import APSTAR_HEADER_KEYS, ApStar, check_apstar_grid, open_fits, read_image_hdu, spectrum_from_arrays
from .errors import SpectrumFileError

#: scalar columns of HDU 4 kept in the header (as ``aspcap_<name>``) when present
ASPCAP_RESULT_COLUMNS = ("TEFF", "LOGG", "M_H", "FE_H", "ALPHA_M", "VMICRO", "SNR", "ASPCAPFLAG")


def is_aspcapstar(hdul: fits.HDUList) -> bool:
    """True for the aspcapStar layout, from the headers alone: HDU 1 one row of 8575 pixels, HDU 3 a
    floating-point image (an apStar's HDU 3 is an integer pixel mask) and HDU 4 a binary table."""
    if len(hdul) < 5:
        return False
    h1, h3 = hdul[1].header, hdul[3].header
    one_row = h1.get("NAXIS1") == APOGEE_N_PIXELS and (h1.get("NAXIS") == 1 or h1.get("NAXIS2") == 1)
    return bool(one_row and isinstance(hdul[3], fits.ImageHDU) and h3.get("BITPIX", 0) < 0
                and isinstance(hdul[4], fits.BinTableHDU))


def _scalar(value):
    value = np.asarray(value)
    if value.ndim != 0:
        return None
    item = value.item()
    return item.strip() if isinstance(item, str) else item


def read_aspcapstar(path: str | os.PathLike) -> ApStar:
    """Read an aspcapStar file as a one-spectrum :class:`ApStar` (``combined`` and its one "visit").

    The spectrum's ``meta`` has ``format = "aspcapStar"`` and ``continuum_normalised = True``.

    Raises
    ------
    SpectrumFileError
        Not the aspcapStar layout (:func:`is_aspcapstar`), another wavelength grid, or no usable pixel.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        if not is_aspcapstar(hdul):
            raise SpectrumFileError(path, "not an aspcapStar file (HDU 1 one row of 8575 pixels, HDU 3 a float "
                                          "image, HDU 4 a table)")
        flux = read_image_hdu(hdul, path, 1, APOGEE_N_PIXELS)[0].astype(np.float64)
        error = read_image_hdu(hdul, path, 2, APOGEE_N_PIXELS)[0].astype(np.float64)
        check_apstar_grid(path, hdul[1].header.get("CRVAL1"), hdul[1].header.get("CDELT1"))
        primary = hdul[0].header
        header = {k.lower(): primary[k] for k in APSTAR_HEADER_KEYS if k in primary}
        table = hdul[4].data
        names = {n.upper(): n for n in (table.columns.names if table is not None else [])}
        if table is not None and len(table) >= 1:
            for column in ("APOGEE_ID",) + ASPCAP_RESULT_COLUMNS:
                if column in names and (value := _scalar(table[names[column]][0])) is not None:
                    key = "apogee_id" if column == "APOGEE_ID" else f"aspcap_{column.lower()}"
                    header.setdefault(key, value)
    if "apogee_id" not in header:  # aspcapStar-<release>-<APOGEE_ID>.fits
        parts = path.name.split(".")[0].split("-", 2)
        header["apogee_id"] = header.get("objid", parts[2] if len(parts) == 3 and parts[0] == "aspcapStar"
                                         else path.name.split(".")[0])
    header["source"] = str(path)
    no_data = ~np.isfinite(flux) | (flux == 0)
    error = np.where(no_data, np.nan, error)  # flux 0 is ASPCAP's "no data"
    meta = dict(header, kind="combined", format="aspcapStar", continuum_normalised=True)
    spectrum = spectrum_from_arrays(path, 0, apogee_wavelength(), flux, error, np.zeros(flux.size, np.int64),
                                    meta, "mask")
    return ApStar(str(path), header, spectrum, [spectrum])


def read_aspcapstar_model(path: str | os.PathLike) -> np.ndarray:
    """ASPCAP's best-fitting synthetic spectrum (HDU 3, normalised, 8575 apStar pixels) of an aspcapStar file."""
    path = Path(path)
    with open_fits(path) as hdul:
        if not is_aspcapstar(hdul):
            raise SpectrumFileError(path, "not an aspcapStar file")
        return read_image_hdu(hdul, path, 3, APOGEE_N_PIXELS)[0].astype(np.float64)
