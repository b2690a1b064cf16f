"""Tests for stellarnn.blase.plotting."""
import numpy as np
import pytest

from stellarnn.blase.plotting import plot_fit
from stellarnn.figures import save_figure


def test_writes_png(tmp_path):
    wl = np.linspace(8000, 8010, 500)
    seg = (wl > 8005).astype(int)
    fig = plot_fit(wl, np.ones(500), np.ones(500) * 0.99, segment=seg, extra={"telluric": np.ones(500)})
    assert len(fig.axes) == 4  # two segments: data+model and residual panels each
    out = save_figure(fig, tmp_path / "f.png", dpi=90)
    assert out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="equal length"):
        plot_fit(np.arange(3.0), np.ones(3), np.ones(4))


def test_draws_into_the_given_figure_and_leaves_the_backend_alone(monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("a library plot function selected a matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    wl = np.linspace(8000, 8010, 100)
    fig = plt.figure()
    try:
        assert plot_fit(wl, np.ones(100), np.full(100, 0.9), fig=fig) is fig
        residual_panel = fig.axes[1]
        np.testing.assert_allclose(residual_panel.lines[0].get_ydata(), 0.1)
        assert plt.fignum_exists(fig.number)
    finally:
        plt.close(fig)
