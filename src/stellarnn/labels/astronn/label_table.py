"""Training sets from a user's own apStar files and an ASPCAP-style FITS label table.

The table (any format astropy reads; FITS expected) has one row per star with an ``APOGEE_ID``
column (or ``FILE``, the apStar file name) and ASPCAP-style label columns: ``TEFF`` (K),
``LOGG`` (dex), ``FE_H`` (or ``M_H``) and, per element X, ``X_H`` or ``X_FE`` ([X/H] = [X/Fe] + [Fe/H]),
with optional ``<column>_ERR`` uncertainties.  Element names follow ASPCAP: C, CI, N, O, NA, MG,
AL, SI, P, S, K, CA, TI, TIII, V, CR, MN, CO, NI.  Missing values are -9999 (or NaN, or masked).
"""
from __future__ import annotations

import glob
import logging
from pathlib import Path

import numpy as np

from ...spectra import SpectrumFileError, read_apstar
from .network import OUTPUT_LABELS

log = logging.getLogger(__name__)

#: ASPCAP element name of each AstroNN abundance field
ASPCAP_ELEMENT = {"c_h": "C", "c_1_h": "CI", "n_h": "N", "o_h": "O", "na_h": "NA", "mg_h": "MG", "al_h": "AL",
                  "si_h": "SI", "p_h": "P", "s_h": "S", "k_h": "K", "ca_h": "CA", "ti_h": "TI", "ti_2_h": "TIII",
                  "v_h": "V", "cr_h": "CR", "mn_h": "MN", "co_h": "CO", "ni_h": "NI"}
MISSING = -9999.0


def _column(table, name):
    names = {c.upper(): c for c in table.colnames}
    if name.upper() not in names:
        return None
    col = table[names[name.upper()]]
    data = np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)
    return np.where(data <= MISSING + 0.5, np.nan, data)


def read_label_table(path, labels=OUTPUT_LABELS) -> dict:
    """Read labels (physical units, NaN where missing) from an ASPCAP-style table.

    Returns
    -------
    dict with ``apogee_id`` (n,) str or None, ``file`` (n,) str or None, ``labels`` (n, L) and
    ``errors`` (n, L) float64, ``columns`` (the column used for each label, or None).

    Raises
    ------
    ValueError
        The table has neither APOGEE_ID nor FILE, or none of the requested labels.
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label table {path} does not exist")
    try:
        table = Table.read(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from exc
    n = len(table)
    upper = {c.upper(): c for c in table.colnames}
    ids = np.array([str(v).strip() for v in table[upper["APOGEE_ID"]]]) if "APOGEE_ID" in upper else None
    files = np.array([Path(str(v).strip()).name for v in table[upper["FILE"]]]) if "FILE" in upper else None
    if ids is None and files is None:
        raise ValueError(f"{path}: needs an APOGEE_ID or FILE column to match spectra")
    fe_h = _column(table, "FE_H")
    if fe_h is None:
        fe_h = _column(table, "M_H")
    fe_h_err = _column(table, "FE_H_ERR")
    values = np.full((n, len(labels)), np.nan)
    errors = np.full((n, len(labels)), np.nan)
    used = {}
    for j, name in enumerate(labels):
        if name in ("teff", "logg"):
            col = name.upper()
            v, e = _column(table, col), _column(table, col + "_ERR")
        elif name == "fe_h":
            col, v, e = "FE_H", fe_h, fe_h_err
        else:
            el = ASPCAP_ELEMENT[name]
            col, v, e = f"{el}_H", _column(table, f"{el}_H"), _column(table, f"{el}_H_ERR")
            if v is None and _column(table, f"{el}_FE") is not None and fe_h is not None:
                col, v, e = f"{el}_FE", _column(table, f"{el}_FE") + fe_h, _column(table, f"{el}_FE_ERR")
        used[name] = col if v is not None else None
        if v is not None:
            values[:, j] = v
        if e is not None:
            errors[:, j] = e
    if all(c is None for c in used.values()):
        raise ValueError(f"{path}: none of the label columns {[n.upper() for n in labels]} found")
    return {"apogee_id": ids, "file": files, "labels": values, "errors": errors, "columns": used}


def load_apstar_training_set(spectra, labels_path, use: str = "combined", labels=OUTPUT_LABELS) -> dict:
    """Read apStar files, match them to a label table, and stack the arrays.

    Parameters
    ----------
    spectra : str or list of paths
        A glob pattern (``'apStar*.fits'``) or a list of files.
    labels_path : path
        ASPCAP-style label table (see module docstring).
    use : {"combined", "visits", "all"}
        Which spectra of each file become training examples (each with the star's labels).

    Returns
    -------
    dict with ``flux``, ``ivar`` (N, 8575) float64, ``bitmask`` (N, 8575) int64, ``labels``,
    ``errors`` (N, L), ``source`` (N,) and ``skipped`` (list of (file, reason)).

    Raises
    ------
    ValueError
        No file matches the pattern, or no spectrum could be matched to a labelled star.
    """
    if use not in ("combined", "visits", "all"):
        raise ValueError(f"use must be 'combined', 'visits' or 'all', not {use!r}")
    files = sorted(glob.glob(spectra)) if isinstance(spectra, str) else [str(p) for p in spectra]
    if not files:
        raise ValueError(f"no spectrum file matches {spectra!r}")
    table = read_label_table(labels_path, labels)
    by_id = {k: i for i, k in enumerate(table["apogee_id"])} if table["apogee_id"] is not None else {}
    by_file = {k: i for i, k in enumerate(table["file"])} if table["file"] is not None else {}
    flux, ivar, bitmask, rows, source, skipped = [], [], [], [], [], []
    for path in files:
        try:
            star = read_apstar(path)
        except SpectrumFileError as exc:
            skipped.append((path, str(exc)))
            continue
        row = by_file.get(Path(path).name)
        if row is None:
            row = by_id.get(str(star.header.get("apogee_id", "")).strip())
        if row is None:
            skipped.append((path, "no matching row in the label table"))
            continue
        chosen = {"combined": [star.combined], "visits": star.visits, "all": [star.combined] + star.visits}[use]
        for s in chosen:
            flux.append(s.flux), ivar.append(s.ivar), bitmask.append(s.bitmask)
            rows.append(row), source.append(f"{path}[{s.meta.get('row', 0)}]")
    for path, why in skipped:
        log.warning("skipped %s: %s", path, why)
    if not rows:
        raise ValueError(f"none of the {len(files)} spectrum files matched a labelled star "
                         f"({len(skipped)} skipped: {skipped[:3]})")
    rows = np.asarray(rows)
    return {"flux": np.stack(flux), "ivar": np.stack(ivar), "bitmask": np.stack(bitmask),
            "labels": table["labels"][rows], "errors": table["errors"][rows], "source": np.asarray(source),
            "skipped": skipped, "columns": table["columns"]}
