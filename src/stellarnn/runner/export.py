"""Survey summary exports of a pipeline's results: FITS, Parquet, CSV.

Column units and descriptions come from the glossary the store recorded at run time (the
pipeline's ``FieldInfo`` plus the runner's columns): FITS gets ``TUNITn`` and ``TCOMMn``,
Parquet gets per-field metadata ``unit`` / ``description``.  Missing values (e.g. the
pipeline fields of an unreadable input): NaN for floats, FITS ``TNULL`` (masked) for integers,
empty strings for text, and ``False`` for FITS logical columns, which have no null that astropy
writes (such rows always carry a non-zero ``runner_flags``); CSV leaves them empty and Parquet
stores nulls.

CSV text cells that a spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return; OWASP, "CSV Injection") are written with a leading single
quote; numbers, including text that is a plain number such as ``-1.5`` or ``+3``, stay as they are.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_write
from ..fits_tables import write_fits_table
from ..labels.pipeline import FieldInfo
from .store import ResultsStore
from .task import field_kind

EXPORT_FORMATS = ("fits", "parquet", "csv")
#: pseudo-version selecting every version's rows
ALL_VERSIONS = "all"


def choose_version(store: ResultsStore, pipeline: str, version: str | None) -> tuple[str | None, str]:
    """(version filter for the query, version whose glossary describes the columns)."""
    latest = store.latest_version(pipeline)
    if version is None:
        if latest is None:
            raise KeyError(f"pipeline {pipeline!r} has never run in this database; have: {store.pipelines()}")
        return latest, latest
    if version == ALL_VERSIONS:
        return None, latest
    return version, version


def column_array(values: list, info: FieldInfo):
    """A numpy (masked where needed) array for one column."""
    kind = field_kind(info)
    if kind == "f":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "b":
        return np.array([bool(v) for v in values], dtype=bool)  # None -> False (see module docstring)
    if kind in "iu":
        mask = np.array([v is None for v in values], dtype=bool)
        data = np.array([0 if v is None else v for v in values], dtype=np.int64)
        return np.ma.MaskedArray(data, mask=mask) if mask.any() else data
    return np.array(["" if v is None else str(v) for v in values], dtype=str)


def export_results(db_url: str, pipeline: str, fmt: str, out_path: str | os.PathLike | None = None,
                   version: str | None = None, chunk_rows: int = 50_000) -> Path:
    """Write a pipeline's results as a FITS, Parquet or CSV table.

    Parameters
    ----------
    db_url : str
        Results database (URL or SQLite path).
    pipeline : str
        Pipeline name.
    fmt : {"fits", "parquet", "csv"}
    out_path : path, optional
        Default ``<pipeline>_summary.<fmt>`` in the current folder.
    version : str, optional
        Model version to export; default the version of the pipeline's latest run; ``"all"``: every version.

    Returns
    -------
    Path of the written file (written atomically).
    """
    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {EXPORT_FORMATS}")
    out = Path(out_path) if out_path is not None else Path(f"{pipeline}_summary.{fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with ResultsStore(db_url) as store:
        query_version, glossary_version = choose_version(store, pipeline, version)
        fields = store.glossary(pipeline, glossary_version)
        table_cols = [c.name for c in store.results_table(pipeline).columns]
        fields = {k: v for k, v in fields.items() if k in table_cols}
        chunks = store.iter_results(pipeline, query_version, chunk_rows, columns=list(fields))
        with atomic_write(out) as tmp:
            if fmt == "csv":
                write_csv(chunks, fields, tmp)
            elif fmt == "parquet":
                write_parquet(chunks, fields, tmp, pipeline, query_version)
            else:
                write_fits(chunks, fields, tmp, pipeline, query_version)
    return out


#: first characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection")
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def csv_safe_cell(value):
    """A CSV cell that no spreadsheet evaluates as a formula.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
    single quote, as OWASP recommends against spreadsheet formula injection ("CSV Injection",
    owasp.org); numbers and text that is a plain decimal number (``-1.5``, ``+3``, ``-2e-5``) are
    returned unchanged, and ``None`` becomes an empty cell.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_csv(chunks, fields: dict[str, FieldInfo], path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([csv_safe_cell(c) for c in fields])
        for rows in chunks:
            w.writerows([[csv_safe_cell(r[c]) for c in fields] for r in rows])


def arrow_type(info: FieldInfo):
    import pyarrow as pa

    kind = field_kind(info)
    return {"f": pa.float64(), "i": pa.int64(), "u": pa.int64(), "b": pa.bool_()}.get(kind, pa.string())


def write_parquet(chunks, fields: dict[str, FieldInfo], path: str, pipeline: str, version: str | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c, arrow_type(info), metadata={"unit": info.unit, "description": info.description})
                        for c, info in fields.items()],
                       metadata={"pipeline": pipeline, "version": version or ALL_VERSIONS})
    with pq.ParquetWriter(path, schema) as writer:
        for rows in chunks:
            arrays = [pa.array([r[c] for r in rows], type=schema.field(c).type) for c in fields]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


def write_fits(chunks, fields: dict[str, FieldInfo], path: str, pipeline: str, version: str | None) -> None:
    values: dict[str, list] = {c: [] for c in fields}
    for rows in chunks:
        for c in fields:
            values[c].extend(r[c] for r in rows)
    write_fits_table({c: column_array(values[c], info) for c, info in fields.items()}, path,
                     units={c: info.unit for c, info in fields.items()},
                     descriptions={c: info.description for c, info in fields.items()}, name=pipeline,
                     header={"PIPELINE": (pipeline, "stellarnn pipeline name"),
                             "PVERSION": (version or ALL_VERSIONS, "pipeline model version")})
