"""Spectrum plots: a real apStar spectrum with its DR17 continuum, and the shared figure writer."""
import matplotlib
import matplotlib.pyplot as plt  # noqa: E402

from stellarnn.spectra import read_apstar  # noqa: E402
from stellarnn.spectra.continuum import apogee_continuum  # noqa: E402
from stellarnn.spectra.plotting import plot_apogee_spectrum, save_figure  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_save_figure_creates_the_folder_writes_png_and_closes(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "new" / "deeper" / "line.png", dpi=50)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert not plt.fignum_exists(fig.number)


def test_plot_of_a_real_apstar_spectrum(real_file, tmp_path):
    s = read_apstar(real_file("apstar-2M19485057")).combined
    res = apogee_continuum(s.flux, s.error, s.bitmask)
    open_before = set(plt.get_fignums())
    out = save_figure(plot_apogee_spectrum(s, res), tmp_path / "star.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE and out.stat().st_size > 20_000
    assert set(plt.get_fignums()) == open_before  # save_figure closed it


def test_plot_draws_into_a_given_figure_and_leaves_the_backend_alone(real_file, monkeypatch):
    import numpy as np

    def refuse(*args, **kwargs):
        raise AssertionError("a library plot function selected a matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    s = read_apstar(real_file("apstar-2M19485057")).combined
    res = apogee_continuum(s.flux, s.error, s.bitmask)
    fig = plt.figure()
    try:
        assert plot_apogee_spectrum(s, res, title="mine", fig=fig) is fig
        top, bottom = fig.axes
        assert top.get_title() == "mine"
        np.testing.assert_array_equal(top.lines[0].get_xdata(), s.wavelength)
        assert bottom.get_ylim() == (0.3, 1.3)
        assert plt.fignum_exists(fig.number)  # drawn, not closed
    finally:
        plt.close(fig)
