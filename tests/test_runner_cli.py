"""Tests of stellarnn.runner.cli through the top-level ``stellarnn`` entry point."""
from __future__ import annotations

import pytest
from astropy.io import fits

from stellarnn.cli import main
from stellarnn.runner.cli import parse_options
from test_runner_task import STATS_FIELDS, write_test_apstars


def test_run_status_fields_export_plot(tmp_path, capsys):
    write_test_apstars(tmp_path / "data", [0.3, 1.0, 1.4], nvisits=[1, 2, 1])
    db = str(tmp_path / "r.sqlite")
    rc = main(["runner", "run", "runner_test_stats", str(tmp_path / "data" / "*.fits"), "--db", db, "--workers", "0",
               "--visits", "--option", "version=\"cli-1\"", "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "cli-1: run 1 finished" in out and "3 items done" in out and "5 rows" in out
    assert "0 pipeline failures, 1 flagged bad by the pipeline" in out  # the 0.3 file: low flux
    assert main(["runner", "status", "--db", db]) == 0
    assert "runner_test_stats: 5 result rows" in capsys.readouterr().out
    assert main(["runner", "fields", "runner_test_stats", "--db", db]) == 0
    assert STATS_FIELDS["teff"].description + " [K]" in capsys.readouterr().out
    assert main(["runner", "fields", "runner_test_stats"]) == 0
    assert "median flux over pixels" in capsys.readouterr().out
    out_fits = tmp_path / "summary.fits"
    assert main(["export", "--pipeline", "runner_test_stats", "--format", "fits", "--db", db, "-o", str(out_fits)]) == 0
    assert len(fits.getdata(out_fits)) == 5
    assert main(["runner", "plot", "--pipeline", "runner_test_stats", "--db", db, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "runner_test_stats_kiel.png").exists() and (tmp_path / "runner_test_stats_flags.png").exists()


def test_clear_errors(tmp_path, capsys):
    assert main(["runner", "run", "runner_test_stats", str(tmp_path / "*.fits"), "--db", str(tmp_path / "r.sqlite"),
                 "--workers", "0"]) == 1
    assert "no file matches" in capsys.readouterr().err
    assert main(["export", "--pipeline", "nothing", "--format", "csv", "--db", str(tmp_path / "r.sqlite")]) == 1
    assert "never run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--pipeline", "x", "--format", "xlsx"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["novalue"])
    assert parse_options(["a=1", "b=x", "c=[1, 2]"]) == {"a": 1, "b": "x", "c": [1, 2]}


def test_export_help_shows_the_glossary(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "runner columns" in out and "runner_flags bits" in out and "--format" in out
    assert "input file unreadable" in out


def test_db_retry_option_and_outage_message(tmp_path, capsys):
    from stellarnn.runner import cli as runner_cli
    from stellarnn.runner.store import DEFAULT_RETRY_SECONDS
    from test_runner_store import FailingWrites

    assert runner_cli.DEFAULT_RETRY_SECONDS == DEFAULT_RETRY_SECONDS  # the help text tells the truth
    paths = write_test_apstars(tmp_path, [0.8, 1.0])
    db = str(tmp_path / "r.sqlite")
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(SystemExit):
            main(["runner", "run", "runner_test_stats", str(paths[0]), "--db", db, "--db-retry", bad])
    capsys.readouterr()
    with FailingWrites():
        rc = main(["runner", "run", "runner_test_stats", *map(str, paths), "--db", db, "--workers", "0",
                   "--db-retry", "0.3", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "unavailable for 0.3 s" in err and "run the same command again to resume" in err
    assert main(["runner", "run", "runner_test_stats", *map(str, paths), "--db", db, "--workers", "0", "-q"]) == 0
    assert "2 items done" in capsys.readouterr().out
    assert main(["runner", "status", "--db", db]) == 0
    assert "runner_test_stats: 2 result rows" in capsys.readouterr().out
