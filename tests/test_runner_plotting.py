"""Tests of stellarnn.runner.plotting: Kiel diagram and flag summary."""
from __future__ import annotations

import pytest

from stellarnn.runner.engine import run_pipeline
from stellarnn.runner.plotting import flag_counts, plot_flag_summary, plot_kiel, write_survey_plots
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
    written = write_survey_plots(db, "runner_test_stats", tmp_path)
    assert written["kiel"] == tmp_path / "runner_test_stats_kiel.png"
    for p in written.values():
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000
    flaky = write_survey_plots(db, "runner_test_flaky", tmp_path)
    assert flaky["kiel"] is None and not (tmp_path / "runner_test_flaky_kiel.png").exists()
    assert flaky["flags"].exists()
    with pytest.raises(KeyError):
        plot_kiel(db, "never_run")


def test_plots_draw_into_the_given_axes_without_touching_the_backend(db, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("a library plot function selected a matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    fig, (left, right) = plt.subplots(1, 2)
    try:
        assert plot_kiel(db, "runner_test_stats", ax=left) is fig
        assert len(left.collections) == 1  # the scatter of the unflagged spectra
        assert left.xaxis_inverted() and left.yaxis_inverted()
        assert plot_flag_summary(db, "runner_test_stats", ax=right) is fig
        bars = [p.get_width() for p in right.patches]
        assert 2 in bars and 1 in bars  # flag_bad on 2 spectra, one unreadable input
        assert plt.fignum_exists(fig.number)  # drawn, not closed
        assert plot_kiel(db, "runner_test_flaky", ax=left) is None
    finally:
        plt.close(fig)
