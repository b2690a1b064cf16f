import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from stellarnn.figures import save_figure
from stellarnn.stokes.milne_eddington import hinode_sp_wavelengths
from stellarnn.stokes.plotting import plot_parameter_maps, plot_stokes_profiles


def test_map_plot_writes_png(tmp_path):
    maps = {"B": np.random.default_rng(0).random((5, 7)) * 1000, "v_los": np.zeros((5, 7)), "chi": np.ones((5, 7))}
    fig = plot_parameter_maps(maps, {"B": "G"})
    assert [ax.get_title() for ax in fig.axes[:3]] == ["B [G]", "v_los", "chi"]  # the maps (colour bars after)
    path = save_figure(fig, tmp_path / "maps.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no maps"):
        plot_parameter_maps(maps, names=("nothing",))


def test_profile_plot(tmp_path):
    wl = hinode_sp_wavelengths()
    obs = np.zeros((4, 112))
    path = save_figure(plot_stokes_profiles(wl, obs, models={"fit": obs}), tmp_path / "p.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="shape"):
        plot_stokes_profiles(wl, np.zeros((4, 50)))


def test_plots_draw_into_the_given_figure_and_leave_the_backend_alone(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a library plot function selected a matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    wl = hinode_sp_wavelengths()
    obs = np.zeros((4, 112))
    obs[3] = np.linspace(-0.1, 0.1, 112)
    profiles, maps = plt.figure(), plt.figure()
    try:
        assert plot_stokes_profiles(wl, obs, fig=profiles) is profiles
        np.testing.assert_allclose(profiles.axes[3].lines[0].get_ydata(), obs[3])  # the V panel
        field = np.arange(12.0).reshape(3, 4)
        assert plot_parameter_maps({"B": field}, fig=maps) is maps
        np.testing.assert_allclose(maps.axes[0].images[0].get_array(), field.T)  # x along the horizontal axis
        assert plt.fignum_exists(profiles.number) and plt.fignum_exists(maps.number)
    finally:
        plt.close(profiles)
        plt.close(maps)
