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


def test_stratified_train_and_invert(tmp_path, capsys):
    from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES
    from stellarnn.stokes.me_cnn import sample_parameters
    from stellarnn.stokes.milne_eddington import MilneEddington
    import torch

    # stand-in chunk files: ME profiles with depth-independent targets (the format of the Lightweaver builder)
    me = MilneEddington()
    p = sample_parameters(120, torch.Generator().manual_seed(1))
    stokes = me(p).float().numpy()
    q = p.numpy()
    targets = np.repeat(np.stack([5000 + 0 * q[:, 0], q[:, 3], q[:, 0] * np.cos(np.deg2rad(q[:, 1])),
                                  q[:, 0] * np.sin(np.deg2rad(q[:, 1])), np.sin(np.deg2rad(2 * q[:, 2])),
                                  np.cos(np.deg2rad(2 * q[:, 2]))], 1)[:, :, None], LOG_TAU_NODES.size, 2)
    chunks = tmp_path / "set"
    chunks.mkdir()
    for k in range(2):
        np.savez(chunks / f"lw_seed0_chunk{k:05d}_n60.npz", stokes=stokes[60 * k:60 * (k + 1)],
                 targets=targets[60 * k:60 * (k + 1)].astype(np.float32), log_tau_nodes=LOG_TAU_NODES)
    ckpt = tmp_path / "strat.pt"
    assert main(["stokes", "train", "--stratified", str(chunks), "--out", str(ckpt), "--epochs", "1",
                 "--physics-weight", "0.1", "--batch-size", "32", "--manifest"]) == 0
    assert "120 Lightweaver profiles from 2 chunk files" in capsys.readouterr().out
    import json
    entry = json.loads((tmp_path / "manifest.json").read_text())["models"][0]
    assert entry["name"] == "strat" and entry["kind"] == "stokes_stratified_cnn" and "seed0" in entry["training_data"]
    raster = tmp_path / "raster"
    assert main(["stokes", "synth", "--out", str(raster), "--nx", "2", "--ny", "3", "--seed", "1"]) == 0
    assert main(["stokes", "invert", str(raster), "--method", "stratified", "--weights", str(ckpt),
                 "--out", str(tmp_path / "s.fits"), "--plot", str(tmp_path / "s.png")]) == 0
    maps, units = read_parameter_maps(tmp_path / "s.fits")
    assert maps["temperature_logtau-1.0"].shape == (2, 3) and units["B_los_logtau+0.0"] == "G"
    assert np.all((maps["chi_logtau-2.0"] >= 0) & (maps["chi_logtau-2.0"] < 180))
    assert (tmp_path / "s.png").is_file()
    assert main(["stokes", "train", "--out", str(tmp_path / "x.pt")]) == 1  # neither --data-dir nor --stratified


def test_invert_float_cube_on_its_own_wavelength_grid(tmp_path):
    """A calibrated float cube sampled at 21.431 mÅ from 6300.8826 Å (issue 21): read, resampled to the
    ME-CNN's grid, the normalisation and the grid stated in the output header."""
    from pathlib import Path

    import torch
    from astropy.io import fits

    from stellarnn.stokes.me_cnn import sample_parameters
    from stellarnn.stokes.milne_eddington import MilneEddington

    grid = 6300.8826 + 0.021431 * np.arange(112)
    params = sample_parameters(12, torch.Generator().manual_seed(8))
    with torch.inference_mode():
        stokes = MilneEddington(wavelengths=grid)(params).numpy().reshape(3, 4, 4, 112)
    hdu = fits.PrimaryHDU((stokes * 3.0e4).astype(">f8"))
    hdu.header.update(CTYPE1="WAVE", CUNIT1="Angstrom", CRPIX1=1.0, CRVAL1=grid[0], CDELT1=0.021431)
    hdu.writeto(tmp_path / "cube.fits")
    weights = Path(__file__).resolve().parents[1] / "weights" / "stokes" / "me_cnn.pt"
    assert main(["stokes", "invert", str(tmp_path / "cube.fits"), "--weights", str(weights),
                 "--continuum-counts", "30000", "--out", str(tmp_path / "maps.fits")]) == 0
    maps, _ = read_parameter_maps(tmp_path / "maps.fits")
    v_true = params[:, 3].numpy().reshape(3, 4)
    assert abs(np.mean(maps["v_los"] - v_true)) < 0.1  # was +0.58 km/s with the grid ignored
    header = fits.getheader(tmp_path / "maps.fits")
    assert header["NORMALIS"].startswith("quiet-sun") and header["WLSTEPMA"] == pytest.approx(21.431)


def test_smooth_random_maps_cover_the_prior_even_when_small():
    import numpy as np

    from stellarnn.stokes.cli import smooth_random_maps
    from stellarnn.stokes.me_cnn import PRIOR
    from stellarnn.stokes.milne_eddington import PARAMETER_NAMES

    maps = smooth_random_maps(8, 16, seed=1)  # smaller than the filter scale: used to collapse to one end
    for k, name in enumerate(PARAMETER_NAMES):
        lo, hi = PRIOR[name]
        span = (maps[..., k].max() - maps[..., k].min()) / (hi - lo)
        assert span > 0.3, (name, span)


def test_stratified_train_on_chosen_regimes_with_weighted_outputs(tmp_path, capsys):
    """--train-regimes keeps only those profiles; --quantity-weight / --weight-log-tau reach the loss weights."""
    from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES, TARGET_NAMES
    from stellarnn.train import read_checkpoint

    rng = np.random.default_rng(2)
    n = 90
    stokes = (rng.normal(0, 0.02, (n, 4, 112)) + np.array([1.0, 0, 0, 0])[None, :, None]).astype(np.float32)
    targets = rng.normal(0, 1, (n, 6, LOG_TAU_NODES.size)).astype(np.float32)
    regime = np.array(["quiet", "plage", "umbra"] * 30)
    chunks = tmp_path / "set"
    chunks.mkdir()
    np.savez(chunks / "lw_seed3_chunk00000_n90.npz", stokes=stokes, targets=targets, log_tau_nodes=LOG_TAU_NODES,
             regime=regime)
    ckpt = tmp_path / "strong.pt"
    assert main(["stokes", "train", "--stratified", str(chunks), "--out", str(ckpt), "--epochs", "1",
                 "--batch-size", "16", "--channels", "8", "--hidden", "16", "--train-regimes", "plage", "umbra",
                 "--quantity-weight", "B_los", "4", "--weight-log-tau", "-2", "0"]) == 0
    out = capsys.readouterr().out
    assert "60 Lightweaver profiles" in out and "quiet" not in out.split("regimes")[1].splitlines()[0]
    metrics = read_checkpoint(ckpt)["metrics"]
    assert metrics["n_train"] + metrics["n_val"] == 60
    w = np.array(metrics["target_weights"])
    inside = (LOG_TAU_NODES >= -2) & (LOG_TAU_NODES <= 0)
    assert (w[TARGET_NAMES.index("B_los"), inside] == 4).all() and w.sum() == w.size + 3 * inside.sum()
    assert main(["stokes", "train", "--stratified", str(chunks), "--out", str(tmp_path / "x.pt"), "--epochs", "1",
                 "--train-regimes", "penumbra"]) == 1  # no profile of that regime: a clear error
    assert main(["stokes", "train", "--stratified", str(chunks), "--out", str(tmp_path / "y.pt"), "--epochs", "1",
                 "--weight-log-tau", "-2", "0"]) == 1  # a depth range without a quantity to weigh
    assert "--weight-log-tau needs --quantity-weight" in capsys.readouterr().err


def test_stratified_invert_default_routes_strong_fields_to_the_specialist(tmp_path, capsys):
    """Without --weights, --method stratified runs the field-loss network and hands strong fields to the shipped
    strong-field specialist; the map 'route' says which network answered each pixel."""
    from stellarnn.stokes.cli import DEFAULT_FIELD_WEIGHTS, DEFAULT_STRONG_WEIGHTS

    assert DEFAULT_FIELD_WEIGHTS.is_file() and DEFAULT_STRONG_WEIGHTS.is_file()
    raster = tmp_path / "raster"
    assert main(["stokes", "synth", "--out", str(raster), "--nx", "3", "--ny", "4", "--seed", "2"]) == 0
    assert main(["stokes", "invert", str(raster), "--method", "stratified", "--out", str(tmp_path / "r.fits"),
                 "--route-threshold", "1"]) == 0
    assert f"and {DEFAULT_STRONG_WEIGHTS.name} where" in capsys.readouterr().out
    maps, _ = read_parameter_maps(tmp_path / "r.fits")
    route = maps["route"]
    b = np.hypot(maps["B_los_logtau-1.0"], maps["B_perp_logtau-1.0"])
    assert route.shape == (3, 4) and set(np.unique(route)) <= {0.0, 1.0}
    assert route.sum() > 0  # the synthetic raster's fields exceed 1 G somewhere
    assert (b[route == 0] <= 1.0 + 1e-3).all()  # where the field network answered, it found |B| <= 1 G
