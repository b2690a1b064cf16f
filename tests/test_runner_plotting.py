"""Tests of stellarnn.runner.plotting: Kiel diagram and flag summary."""
from __future__ import annotations

import pytest

from stellarnn.runner.engine import run_pipeline
from stellarnn.runner.plotting import flag_counts, plot_flag_summary, plot_kiel
from stellarnn.runner.store import ResultsStore
from test_runner_task import write_test_apstars


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plots")
    write_test_apstars(folder, [0.3, 0.4, 1.0, 1.2, 1.5])
    (folder / "apStar-broken.fits").write_bytes(b"broken")
    url = f"sqlite:///{folder / 'r.sqlite'}"
    for name in ("runner_test_stats", "runner_test_flaky"):
        run_pipeline(name, [str(folder / "apStar-*.fits")], url, workers=0, progress=False)
    return url


def test_flag_counts(db):
    with ResultsStore(db) as store:
        counts = flag_counts(store, "runner_test_stats", "stats-1", store.glossary("runner_test_stats"))
    assert counts["spectra"] == 6
    assert counts["runner: input_unreadable"] == 1 and counts["runner: pipeline_exception"] == 0
    assert counts["flag_bad"] == 2 and counts["result_flags bit 0"] == 2


def test_png_files(db, tmp_path):
    kiel = plot_kiel(db, "runner_test_stats", tmp_path / "k.png")
    flags = plot_flag_summary(db, "runner_test_stats", tmp_path / "f.png")
    for p in (kiel, flags):
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000
    assert plot_kiel(db, "runner_test_flaky", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    assert plot_flag_summary(db, "runner_test_flaky", tmp_path / "f2.png").exists()
    with pytest.raises(KeyError):
        plot_kiel(db, "never_run", tmp_path / "x.png")
