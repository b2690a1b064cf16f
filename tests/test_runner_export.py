"""Tests of stellarnn.runner.export: FITS (TUNITn, TCOMMn from the glossary), Parquet metadata, CSV."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from astropy.io import fits

from stellarnn.runner.engine import run_pipeline
from stellarnn.runner.export import export_results
from test_runner_task import STATS_FIELDS, write_test_apstars


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    write_test_apstars(folder, [0.3, 1.0, 1.5], nvisits=[1, 2, 1])
    (folder / "apStar-broken.fits").write_bytes(b"broken")
    url = f"sqlite:///{folder / 'r.sqlite'}"
    run_pipeline("runner_test_stats", [str(folder / "apStar-*.fits")], url, workers=0, include_visits=True,
                 progress=False)
    run_pipeline("runner_test_stats", [str(folder / "apStar-test-0000.fits")], url, workers=0,
                 pipeline_kwargs={"version": "stats-2"}, progress=False)
    return url


def test_fits_units_and_descriptions(db, tmp_path):
    path = export_results(db, "runner_test_stats", "fits", tmp_path / "s.fits", version="stats-1")
    with fits.open(path) as hdul:
        hdu = hdul["RUNNER_TEST_STATS"]
        names = hdu.columns.names
        h = hdu.header
        i = names.index("teff") + 1
        assert h[f"TUNIT{i}"] == "K" and h[f"TCOMM{i}"] == STATS_FIELDS["teff"].description
        j = names.index("spectrum_id") + 1
        assert h[f"TCOMM{j}"].startswith("spectrum identity") and h["PVERSION"] == "stats-1"
        data = hdu.data
        assert len(data) == 1 + 3 + 1 + 1
        broken = data[np.char.find(data["item"], "broken") >= 0][0]
        assert broken["runner_flags"] == 1 and np.isnan(broken["teff"]) and broken["row"] == -1
        assert data["n_good"].dtype.kind == "i"
    assert len(fits.getdata(export_results(db, "runner_test_stats", "fits", tmp_path / "l.fits"))) == 1  # latest
    assert len(fits.getdata(export_results(db, "runner_test_stats", "fits", tmp_path / "a.fits", "all"))) == 7


def test_parquet_metadata_and_nulls(db, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(export_results(db, "runner_test_stats", "parquet", tmp_path / "s.parquet", "stats-1"))
    assert table.num_rows == 6
    meta = table.schema.field("teff").metadata
    assert meta[b"unit"] == b"K" and meta[b"description"] == STATS_FIELDS["teff"].description.encode()
    assert table.schema.metadata[b"version"] == b"stats-1"
    teff = table.column("teff").to_pylist()
    assert sum(v is None for v in teff) == 1 and str(table.schema.field("flag_bad").type) == "bool"


def test_csv(db, tmp_path):
    path = export_results(db, "runner_test_stats", "csv", tmp_path / "s.csv", "stats-1")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and list(rows[0])[:2] == ["spectrum_id", "item"]
    assert {r["kind"] for r in rows} == {"combined", "visit", "unreadable"}


def test_errors(db, tmp_path):
    with pytest.raises(ValueError, match="unknown export format"):
        export_results(db, "runner_test_stats", "xlsx", tmp_path / "x")
    with pytest.raises(KeyError, match="never run"):
        export_results(db, "runner_test_flaky", "csv", tmp_path / "x.csv")
    assert not list(tmp_path.glob("*.part"))


def test_csv_cells_that_would_be_formulas_are_escaped_numbers_are_not():
    from stellarnn.runner.export import csv_safe_cell

    for text in ('=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3+cmd", "@SUM(1+1)", "\t=1", "\r=1",
                 "-", "+", "-1.5abc", "- 1"):
        assert csv_safe_cell(text) == "'" + text
    for text in ("-1.5", "+3", "-2e-5", "+.5", "-7.", "1e3", "plain", "a=b", "", "'=quoted"):
        assert csv_safe_cell(text) == text
    for number in (-1.5, 3, -7, float("-inf"), True):
        assert csv_safe_cell(number) is number
    assert csv_safe_cell(None) == ""


def test_csv_export_escapes_formulas_from_headers_and_values(tmp_path):
    from stellarnn.labels.pipeline import FieldInfo
    from stellarnn.runner.export import write_csv
    from stellarnn.spectra.apstar import write_apstar

    fields = {'=HYPERLINK("http://evil","x")': FieldInfo("", "a header"), "teff": FieldInfo("K", "Teff"),
              "note": FieldInfo("", "text", "str")}
    rows = [{'=HYPERLINK("http://evil","x")': 1.0, "teff": -1.5, "note": "@SUM(A1)"},
            {'=HYPERLINK("http://evil","x")': None, "teff": 4500.0, "note": "-3"}]
    write_csv([rows], fields, str(tmp_path / "t.csv"))
    with open(tmp_path / "t.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table == [["'=HYPERLINK(\"http://evil\",\"x\")", "teff", "note"], ["1.0", "-1.5", "'@SUM(A1)"],
                     ["", "4500.0", "-3"]]
    # end to end: an object identifier from a FITS header
    write_apstar(tmp_path / "apStar-evil.fits", np.ones((1, 8575)), np.full((1, 8575), 0.01),
                 header={"OBJID": "=2+5+cmd|calc!A0"})
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    run_pipeline("runner_test_stats", [str(tmp_path / "apStar-evil.fits")], url, workers=0, progress=False)
    with open(export_results(url, "runner_test_stats", "csv", tmp_path / "e.csv"), newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["object_id"] == "'=2+5+cmd|calc!A0"
    assert all(not v.startswith(("=", "+", "@")) for v in row.values())


def test_export_file_mode_follows_the_umask(db, tmp_path):
    import os

    for mask, expected in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(mask)
        try:
            path = export_results(db, "runner_test_stats", "csv", tmp_path / f"m{mask:o}.csv", "stats-1")
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == expected
