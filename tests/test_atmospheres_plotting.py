"""The atmosphere figure: every axis label clear of the tick labels (issue 23: the T label overlapped them)."""
import pytest

from stellarnn.atmospheres import AtmosphereGrid
from stellarnn.atmospheres.plotting import plot_atmosphere
from stellarnn.figures import save_figure


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("teff", [5777.0, 9000.0])  # five-digit T tick labels at 9000 K
def test_labels_do_not_overlap_tick_labels(tmp_path, teff):
    atm = AtmosphereGrid.load_atlas9().interpolate_linear(teff=teff, logg=4.0, m_h=-0.1)
    fig = plot_atmosphere(atm, "title")
    save_figure(fig, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 10_000
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the closed figure, drawn again as it was saved
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = fig.axes
    for ax in axes:
        label = ax.yaxis.label.get_window_extent(renderer)
        for other in axes:  # its own tick labels, and no other panel
            ticks = [t.get_window_extent(renderer) for t in other.get_yticklabels() if t.get_text()]
            assert not any(_overlaps(label, t) for t in ticks), ax.get_ylabel()
            if other is not ax:
                assert not _overlaps(label, other.get_window_extent(renderer)), ax.get_ylabel()


def test_batch_is_refused(tmp_path):
    import numpy as np

    batch = AtmosphereGrid.load_atlas9().interpolate_linear(teff=np.array([5000.0, 5500.0]), logg=4.0, m_h=0.0)
    with pytest.raises(ValueError, match="one atmosphere"):
        plot_atmosphere(batch)


def test_draws_into_the_given_figure_and_leaves_the_backend_alone(monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np

    def refuse(*args, **kwargs):
        raise AssertionError("a library plot function selected a matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    atm = AtmosphereGrid.load_atlas9().interpolate_linear(teff=5777.0, logg=4.4, m_h=0.0)
    fig = plt.figure(layout="constrained")
    try:
        assert plot_atmosphere(atm, fig=fig) is fig
        assert plt.fignum_exists(fig.number)  # not closed
        temperature_panel = fig.axes[1]
        np.testing.assert_allclose(temperature_panel.lines[0].get_ydata(), atm.numpy().temperature)
        with pytest.raises(ValueError, match="already holds axes"):
            plot_atmosphere(atm, fig=fig)
    finally:
        plt.close(fig)
