"""The one FITS table writer: columns with their units (``TUNITn``) and descriptions (``TCOMMn``).

Used by the survey export (:mod:`stellarnn.runner.export`) and meant for every other table the
package writes as FITS.  Units are written as given, so that units astropy accepts but the FITS
standard does not (``dex``) stay readable by people.  ``TUNITn`` is the FITS standard's column
unit keyword (Pence et al. 2010, A&A 524, A42, FITS 3.0); ``TCOMMn``, a column's description, is a
keyword of the HEASARC conventions that astropy and TOPCAT read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_fits_table(columns: dict, path: str | os.PathLike, units: dict[str, str] | None = None,
                     descriptions: dict[str, str] | None = None, name: str | None = None,
                     header: dict | None = None) -> Path:
    """Write ``columns`` as a binary table (HDU 1, behind an empty primary HDU), overwriting ``path``.

    Parameters
    ----------
    columns : dict
        Column name -> 1-D array (numpy, masked for integer columns with missing values, or a list).
        Text columns that are empty everywhere get width 1 (FITS has no zero-width strings).
    units, descriptions : dict, optional
        Column name -> unit string (``TUNITn``; empty or missing: none) and description (``TCOMMn``).
    name : str, optional
        ``EXTNAME`` of the table (upper case, at most 68 characters kept).
    header : dict, optional
        Further keywords of the table HDU: name -> value or (value, comment).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        A unit or description given for a column that ``columns`` does not have.
    """
    from astropy.io import fits
    from astropy.table import Table

    units, descriptions = dict(units or {}), dict(descriptions or {})
    unknown = sorted((set(units) | set(descriptions)) - set(columns))
    if unknown:
        raise ValueError(f"units or descriptions given for columns the table does not have: {unknown}")
    table = Table({c: np.asanyarray(v) for c, v in columns.items()}, masked=False)
    for c in list(table.colnames):
        if table[c].dtype.kind == "U" and table[c].dtype.itemsize == 0:
            table[c] = table[c].astype("U1")
    hdu = fits.table_to_hdu(table)
    if name:
        hdu.name = name.upper()[:68]
    for i, c in enumerate(table.colnames, start=1):
        if units.get(c):
            hdu.header[f"TUNIT{i}"] = units[c]
        if c in descriptions:
            hdu.header[f"TCOMM{i}"] = descriptions[c]
    for key, value in (header or {}).items():
        hdu.header[key] = value
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return Path(path)
