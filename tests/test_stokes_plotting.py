import numpy as np
import pytest

from stellarnn.stokes.milne_eddington import hinode_sp_wavelengths
from stellarnn.stokes.plotting import plot_parameter_maps, plot_stokes_profiles


def test_map_plot_writes_png(tmp_path):
    maps = {"B": np.random.default_rng(0).random((5, 7)) * 1000, "v_los": np.zeros((5, 7)), "chi": np.ones((5, 7))}
    path = plot_parameter_maps(maps, tmp_path / "maps.png", {"B": "G"})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no maps"):
        plot_parameter_maps(maps, tmp_path / "x.png", names=("nothing",))


def test_profile_plot(tmp_path):
    wl = hinode_sp_wavelengths()
    obs = np.zeros((4, 112))
    path = plot_stokes_profiles(wl, obs, tmp_path / "p.png", models={"fit": obs})
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="shape"):
        plot_stokes_profiles(wl, np.zeros((4, 50)), tmp_path / "q.png")
