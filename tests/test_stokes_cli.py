import numpy as np
import pytest

from stellarnn.cli import main
from stellarnn.stokes.cli import smooth_random_maps
from stellarnn.stokes.hinode_io import read_parameter_maps, read_sp_map
from stellarnn.stokes.me_cnn import PRIOR, train_me_cnn
from stellarnn.stokes.milne_eddington import PARAMETER_NAMES


def test_smooth_maps_inside_prior():
    maps = smooth_random_maps(8, 9, seed=2)
    assert maps.shape == (8, 9, 9)
    for k, name in enumerate(PARAMETER_NAMES):
        lo, hi = PRIOR[name]
        assert maps[..., k].min() >= lo and maps[..., k].max() <= hi
    with pytest.raises(ValueError):
        smooth_random_maps(0, 3, seed=1)


def test_synth_invert_plot_pipeline(tmp_path, capsys):
    raster = tmp_path / "raster"
    assert main(["stokes", "synth", "--out", str(raster), "--nx", "3", "--ny", "4", "--continuum-counts", "80000",
                 "--spbshft", "1", "--seed", "4"]) == 0
    sp = read_sp_map(raster, continuum_counts=80000.0)
    truth, _ = read_parameter_maps(tmp_path / "raster_truth.fits")
    assert sp.stokes.shape == (3, 4, 4, 112) and truth["B"].shape == (3, 4)
    # LM on two slit positions' worth of pixels recovers the true field map
    assert main(["stokes", "invert", str(raster / "SP4D_synth_0000.fits"), "--method", "lm", "--starts", "1",
                 "--continuum-counts", "80000", "--out", str(tmp_path / "lm.fits")]) == 0
    lm, units = read_parameter_maps(tmp_path / "lm.fits")
    assert units["B"] == "G" and lm["B"].shape == (1, 4)
    assert np.nanmedian(np.abs(lm["v_los"][0] - truth["v_los"][0])) < 0.1
    # CNN path with a tiny freshly trained checkpoint
    ckpt = tmp_path / "me.pt"
    train_me_cnn(ckpt, tmp_path / "data", n_train=300, n_val=100, epochs=1, channels=4, hidden=8, progress=False,
                 chunk_size=300)
    assert main(["stokes", "invert", str(raster), "--weights", str(ckpt), "--out", str(tmp_path / "cnn.fits"),
                 "--plot", str(tmp_path / "cnn.png")]) == 0
    assert (tmp_path / "cnn.png").is_file()
    assert main(["stokes", "plot", str(tmp_path / "cnn.fits"), "--out", str(tmp_path / "m.png")]) == 0
    assert main(["stokes", "plot", str(raster), "--profile", "1", "2", "--out", str(tmp_path / "p.png")]) == 0
    assert main(["stokes", "synth", "--params", "1000", "30", "20", "0.5", "30", "8", "0.2", "0.2", "0.8",
                 "--out", str(tmp_path / "one.npz")]) == 0
    assert np.load(tmp_path / "one.npz")["stokes"].shape == (4, 112)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["stokes", "invert", str(tmp_path / "missing"), "--out", str(tmp_path / "o.fits")]) == 1
    assert "stellarnn: error:" in capsys.readouterr().err
    assert main(["stokes", "invert", str(tmp_path), "--weights", str(tmp_path / "no.pt"),
                 "--out", str(tmp_path / "o.fits")]) == 1
    assert main(["stokes", "plot", str(tmp_path / "missing.fits"), "--out", str(tmp_path / "o.png")]) == 1
