"""stellarnn.figures: where drawings go and how figures are written."""
import matplotlib
import matplotlib.pyplot as plt
import pytest

from stellarnn.figures import axes_for, new_figure, save_figure


def test_new_figure_uses_the_given_empty_figure_or_makes_one():
    given = plt.figure()
    try:
        fig, axes = new_figure(given, nrows=1, ncols=2)
        assert fig is given and len(axes) == 2
        with pytest.raises(ValueError, match="already holds axes"):
            new_figure(given, nrows=1)
    finally:
        plt.close(given)
    fig, ax = new_figure(figsize=(3, 2))
    try:
        assert tuple(fig.get_size_inches()) == (3, 2)
        assert isinstance(fig.get_layout_engine(), matplotlib.layout_engine.TightLayoutEngine)
        assert axes_for(ax) == (fig, ax)
    finally:
        plt.close(fig)


def test_save_figure_keeps_or_closes_and_respects_the_layout(tmp_path):
    fig = plt.figure(layout="constrained")
    fig.subplots().plot([0, 1])
    out = save_figure(fig, tmp_path / "deep" / "f.png", dpi=40, close=False)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(fig.get_layout_engine(), matplotlib.layout_engine.ConstrainedLayoutEngine)  # not replaced
    assert plt.fignum_exists(fig.number)
    save_figure(fig, tmp_path / "g.svg")
    assert not plt.fignum_exists(fig.number)
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")
