import shutil

import numpy as np
import pytest
from astropy.table import Table

from stellarnn.cli import main


def write_toy_grid(folder, labels) -> None:
    """A grid folder (pending spectra only) with one shifted absorption line per spectrum."""
    grid = folder / "pending"
    grid.mkdir(parents=True)
    wl = np.arange(8575)
    for i, lab in enumerate(labels):
        flux = 1 - 0.3 * np.exp(-0.5 * ((wl - 4000 - 10 * i) / 5.0) ** 2)
        np.savez(grid / f"{i:06d}.npz", index=i, labels=np.asarray(lab, dtype=float), flux=flux.astype(np.float16),
                 continuum=np.ones(858, np.float16), continuum_median=np.float32(1e5), status="ok")


def tiny_emulator(path):
    """An untrained 8x8 emulator over the grid's label ranges (near-flat spectra), saved to ``path``."""
    import torch

    from stellarnn.synthesis.emulator import EmulatorTrainingResult, PayneEmulator, save_emulator
    from stellarnn.synthesis.grid_builder import LABEL_NAMES

    torch.manual_seed(0)
    emu = PayneEmulator(n_labels=len(LABEL_NAMES), hidden=(8, 8))
    emu.label_min.copy_(torch.tensor([3500.0, 0.0, -2.5, 0.3] + [-0.5] * (len(LABEL_NAMES) - 4)))
    emu.label_max.copy_(torch.tensor([8000.0, 5.0, 0.5, 2.5] + [0.5] * (len(LABEL_NAMES) - 4)))
    with torch.no_grad():
        emu.flux_net[-1].weight.mul_(0.01)
        emu.continuum_net[-1].weight.mul_(0.01)
    return save_emulator(path, EmulatorTrainingResult(emu, {}, {}), {"grid": "toy"})


@pytest.fixture(scope="module")
def apstar_dir(tmp_path_factory, real_file):
    d = tmp_path_factory.mktemp("apstar")
    shutil.copy(real_file("apstar-2M17335483"), d / "apStar-a.fits")
    shutil.copy(real_file("apstar-2M19485057"), d / "apStar-b.fits")
    Table({"APOGEE_ID": ["2M17335483-2753043", "2M19485057+5005279"], "TEFF": [4600.0, 5700.0],
           "LOGG": [2.2, 4.2], "FE_H": [-0.2, 0.0], "MG_FE": [0.1, -9999.0]}).write(d / "labels.fits")
    return d


def test_train_astronn_from_apstar_and_run(apstar_dir, tmp_path, capsys):
    out = tmp_path / "ann.pt"
    rc = main(["train", "astronn", "--spectra", str(apstar_dir / "apStar*.fits"), "--labels",
               str(apstar_dir / "labels.fits"), "--use", "all", "--epochs", "1", "--batch-size", "4", "-o", str(out),
               "-q", "--val-fraction", "0.3"])
    assert rc == 0 and out.is_file()
    assert "6 spectra matched" in capsys.readouterr().err
    table = tmp_path / "rows.fits"
    rc = main(["run", "astronn", str(apstar_dir / "apStar-a.fits"), str(tmp_path / "missing.fits"), "--weights",
               str(out), "--spectra", "all", "--mc-passes", "5", "-o", str(table)])
    assert rc == 1  # one input failed: its row is flagged, the good file is still processed
    captured = capsys.readouterr()
    printed = captured.out
    assert "missing.fits: file does not exist" in captured.err
    assert "flag_no_result" in printed and "visit 2" in printed
    t = Table.read(table)
    assert len(t) == 5 and t["result_flags"][-1] == 2048 and np.isfinite(t["raw_e_mg_h"][0])
    assert "teff" in t.colnames and "raw_teff" in t.colnames and t["teff"].unit == "K"


def test_train_apogeenet_and_run_csv(apstar_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "anet.pt"
    rc = main(["train", "apogeenet", "--spectra", str(apstar_dir / "apStar*.fits"), "--labels",
               str(apstar_dir / "labels.fits"), "--epochs", "1", "-o", str(out), "-q", "--val-fraction", "0.5",
               "--manifest", "--size", "medium"])
    assert rc == 0
    import json

    from stellarnn.train import file_sha256

    manifest = json.loads((tmp_path / "manifest.json").read_text())["models"][0]
    assert manifest["file"] == "anet.pt" and manifest["sha256"] == file_sha256(out)
    from stellarnn.labels.apogeenet.network import APOGEENET_MEDIUM
    from stellarnn.train import load_checkpoint

    assert load_checkpoint(out)[1]["hyperparameters"]["pool_length"] == APOGEENET_MEDIUM["pool_length"]
    assert "apStar" in manifest["training_data"] and manifest["training_metrics"]["n_train"] == 1
    # fine-tuning from it: the manifest names the starting checkpoint and its sha256
    tuned = tmp_path / "tuned" / "anet2.pt"
    tuned.parent.mkdir()
    assert main(["train", "apogeenet", "--spectra", str(apstar_dir / "apStar*.fits"), "--labels",
                 str(apstar_dir / "labels.fits"), "--epochs", "1", "-o", str(tuned), "-q", "--val-fraction", "0.5",
                 "--init", str(out), "--manifest", "--size", "medium"]) == 0
    entry = json.loads((tuned.parent / "manifest.json").read_text())["models"][0]
    assert f"fine-tuned from {out} (sha256 {file_sha256(out)})" in entry["training_data"]
    # a manifest in the weights directory makes these the default weights
    from stellarnn.labels.pipeline import get_pipeline

    shipped = tmp_path / "weights"
    (shipped / "apogeenet").mkdir(parents=True)
    shutil.copy(out, shipped / "apogeenet" / "anet.pt")
    shutil.copy(tmp_path / "manifest.json", shipped / "apogeenet" / "manifest.json")
    monkeypatch.setenv("STELLARNN_WEIGHTS_DIR", str(shipped))
    assert get_pipeline("apogeenet").version == manifest["sha256"][:12]
    csv = tmp_path / "rows.csv"
    assert main(["run", "apogeenet", str(apstar_dir / "apStar-b.fits"), "--weights", str(out), "--draws", "3",
                 "-o", str(csv)]) == 0
    t = Table.read(csv, format="ascii.csv")
    assert len(t) == 1 and t["e_teff"][0] == pytest.approx(1.25 * t["raw_e_teff"][0] + 10, rel=1e-6)


def test_errors(tmp_path, capsys):
    assert main(["run", "apogeenet", "x.fits", "--weights", str(tmp_path / "none.pt")]) == 1
    assert "do not exist" in capsys.readouterr().err
    assert main(["train", "astronn", "-o", str(tmp_path / "x.pt")]) == 1
    assert "--grid" in capsys.readouterr().err


def test_calibrate_noise_on_a_grid(tmp_path, capsys):
    import torch

    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.synthesis.grid_builder import LABEL_NAMES
    from stellarnn.train import read_checkpoint, save_checkpoint

    rng = np.random.default_rng(0)
    write_toy_grid(tmp_path / "grid", [rng.uniform(0, 1, len(LABEL_NAMES)) for _ in range(12)])
    torch.manual_seed(0)
    tiny = dict(stem_channels=2, block_channels=[2], kernel_size=5, pool_length=8, head_width=8, n_head_layers=1)
    w = save_checkpoint(tmp_path / "w.pt", APOGEENetResNet(**tiny), "apogeenet", tiny)
    rc = main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--grid", str(tmp_path / "grid"),
               "--snr", "50"])
    assert rc == 0 and "stored" in capsys.readouterr().err
    stored = read_checkpoint(w)["normalisation"]["noise_model"]
    assert stored["labels"] == ["teff", "logg", "fe_h"] and stored["diagnostics"]["labels"]["teff"]["n_pairs"] == 12
    # accuracy floor on a labelled grid, keeping the stored precision model (twice: the floor is not compounded)
    for _ in range(2):
        assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                     str(tmp_path / "grid"), "--accuracy-snr", "50", "100"]) == 0
        assert "keeping the stored precision model" in capsys.readouterr().err
        floor = read_checkpoint(w)["normalisation"]["noise_model"]
        accuracy = floor["diagnostics"]["accuracy"]["labels"]
        assert accuracy["teff"]["n"] == 24 and floor["scale"] == stored["scale"]
        by_population = floor["diagnostics"]["accuracy_by_population"]  # 24 spectra: too few for any population
        assert by_population["min_spectra"] == 30 and "by_population" not in floor
        assert all(p["model"].startswith("global") for p in by_population["populations"].values())
        assert all(o >= p - 1e-12 for o, p in zip(floor["offset"], stored["offset"]))
        assert [accuracy[k]["offset_precision"] for k in ("teff", "logg", "fe_h")] == pytest.approx(stored["offset"])
    # --raise-scale: the scale is fitted too, never below the repeat-pair one, and the next
    # calibration starts again from the precision model (scale and offset)
    for _ in range(2):
        assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                     str(tmp_path / "grid"), "--accuracy-snr", "50", "100", "--raise-scale"]) == 0
        raised = read_checkpoint(w)["normalisation"]["noise_model"]
        accuracy = raised["diagnostics"]["accuracy"]
        assert "scale and offset" in accuracy["method"]
        assert accuracy["command"] == (f"stellarnn train calibrate-noise apogeenet --weights {w} --accuracy-grid "
                                       f"{tmp_path / 'grid'} --accuracy-snr 50 100 --raise-scale")
        assert [accuracy["labels"][k]["scale_precision"] for k in ("teff", "logg", "fe_h")] == pytest.approx(
            stored["scale"])
        assert all(s >= p - 1e-12 for s, p in zip(raised["scale"], stored["scale"]))
        assert raised["scale"] == pytest.approx([accuracy["labels"][k]["scale_accuracy"] for k in ("teff", "logg", "fe_h")])


def test_calibrate_noise_accuracy_on_two_grids(tmp_path, capsys):
    """--accuracy-grid A B: the accuracy step runs on both grids' spectra; grids of other physics are refused."""
    import json

    import torch

    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.synthesis.grid_builder import LABEL_NAMES
    from stellarnn.train import read_checkpoint, save_checkpoint

    rng = np.random.default_rng(3)
    for name, n, seed, wmin in (("a", 12, 1, 15090.0), ("b", 7, 2, 15090.0), ("c", 5, 3, 15100.0)):
        write_toy_grid(tmp_path / name, [[rng.uniform(4000, 6000), rng.uniform(1, 4), rng.uniform(-1, 0), 1.2]
                                         + [0.0] * (len(LABEL_NAMES) - 4) for _ in range(n)])
        (tmp_path / name / "spec.json").write_text(json.dumps({"spec": {"name": name, "n": n, "seed": seed,
                                                                        "wmin": wmin}}))
    torch.manual_seed(0)
    tiny = dict(stem_channels=2, block_channels=[2], kernel_size=5, pool_length=8, head_width=8, n_head_layers=1)
    w = save_checkpoint(tmp_path / "w.pt", APOGEENetResNet(**tiny), "apogeenet", tiny)
    assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                 str(tmp_path / "a"), str(tmp_path / "b"), "--accuracy-snr", "50", "200"]) == 0
    report = read_checkpoint(w)["normalisation"]["noise_model"]["diagnostics"]["accuracy"]
    assert report["labels"]["teff"]["n"] == 2 * (12 + 7)
    assert report["source"].startswith(f"labelled grids {tmp_path / 'a'} + {tmp_path / 'b'} (19 spectra)")
    capsys.readouterr()
    assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                 str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "another specification" in err and "differs in wmin" in err


def test_calibrate_noise_accuracy_with_emulated_stars_and_snr_term(tmp_path, capsys):
    import torch

    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.synthesis.grid_builder import LABEL_NAMES
    from stellarnn.train import read_checkpoint, save_checkpoint

    rng = np.random.default_rng(2)
    write_toy_grid(tmp_path / "grid", [[rng.uniform(4000, 6000), rng.uniform(1, 4), rng.uniform(-1, 0), 1.2]
                                       + [0.0] * (len(LABEL_NAMES) - 4) for _ in range(12)])
    torch.manual_seed(0)
    tiny = dict(stem_channels=2, block_channels=[2], kernel_size=5, pool_length=8, head_width=8, n_head_layers=1)
    w = save_checkpoint(tmp_path / "w.pt", APOGEENetResNet(**tiny), "apogeenet", tiny)
    emulator = str(tiny_emulator(tmp_path / "emu.pt"))
    assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                 str(tmp_path / "grid"), "--accuracy-snr", "50", "200", "--accuracy-emulated", "15",
                 "--emulator", emulator]) == 0
    err = capsys.readouterr().err
    assert "15 emulated stars" in err and "1/(S/N) term" in err
    stored = read_checkpoint(w)["normalisation"]["noise_model"]
    report = stored["diagnostics"]["accuracy"]
    assert report["labels"]["teff"]["n"] == 2 * 12 + 15 and "emulated stars" in report["source"]
    assert "snr_term" in report["method"] and "snr_term_accuracy" in report["labels"]["logg"]
    assert "snr_power" in report["method"] and "snr_power_accuracy" in report["labels"]["logg"]
    assert report["snr_ceiling"] > 0 and "(100/(S/N))^p factor" in err
    # --no-snr-power: the term alone
    assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                 str(tmp_path / "grid"), "--accuracy-snr", "50", "200", "--no-snr-power"]) == 0
    report = read_checkpoint(w)["normalisation"]["noise_model"]["diagnostics"]["accuracy"]
    assert "snr_power" not in report["method"] and "snr_term_accuracy" in report["labels"]["logg"]
    assert "snr_power_accuracy" not in report["labels"]["logg"] and "snr_ceiling" not in report
    capsys.readouterr()
    assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                 str(tmp_path / "grid"), "--accuracy-snr", "100", "--snr-power"]) == 1
    assert "--snr-power needs the S/N fit" in capsys.readouterr().err
    # one S/N only, or --no-snr-term: the linear model
    for extra in (["--accuracy-snr", "100"], ["--accuracy-snr", "50", "200", "--no-snr-term"]):
        assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--accuracy-grid",
                     str(tmp_path / "grid"), *extra]) == 0
        linear = read_checkpoint(w)["normalisation"]["noise_model"]
        report = linear["diagnostics"]["accuracy"]["labels"]["teff"]
        assert "snr_term" not in linear and "snr_term_accuracy" not in report
    capsys.readouterr()
    assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--emulated", "10",
                 "--emulator", emulator, "--accuracy-emulated", "15"]) == 1  # no --accuracy-grid to add them to
    assert "give that grid too" in capsys.readouterr().err


def test_train_on_grid_plus_emulated_spectra(tmp_path, capsys):
    import json

    from stellarnn.synthesis.grid_builder import LABEL_NAMES

    rng = np.random.default_rng(1)
    write_toy_grid(tmp_path / "grid", [
        [rng.uniform(4000, 6000), rng.uniform(1, 4), rng.uniform(-1, 0), 1.2] + [0.0] * (len(LABEL_NAMES) - 4)
        for _ in range(10)])
    ew = tiny_emulator(tmp_path / "emu.pt")
    out = tmp_path / "anet.pt"
    rc = main(["train", "apogeenet", "--grid", str(tmp_path / "grid"), "--emulated", "6", "--emulator", str(ew),
               "--epochs", "1", "--batch-size", "4", "-o", str(out), "-q", "--val-fraction", "0.25", "--manifest"])
    assert rc == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())["models"][0]
    assert "6 emulator spectra" in manifest["training_data"]
    assert manifest["training_metrics"]["n_train"] + manifest["training_metrics"]["n_val"] == 16


def test_calibrate_noise_on_emulated_repeat_visits(tmp_path, capsys):
    import torch

    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.train import read_checkpoint, save_checkpoint

    torch.manual_seed(0)
    tiny = dict(stem_channels=2, block_channels=[2], kernel_size=5, pool_length=8, head_width=8, n_head_layers=1)
    w = save_checkpoint(tmp_path / "w.pt", APOGEENetResNet(**tiny), "apogeenet", tiny)
    rc = main(["train", "calibrate-noise", "apogeenet", "--weights", str(w), "--emulated", "10",
               "--emulator", str(tiny_emulator(tmp_path / "emu.pt"))])
    assert rc == 0
    err = capsys.readouterr().err
    assert "10 repeat pairs" in err and "emulated" in err
    stored = read_checkpoint(w)["normalisation"]["noise_model"]
    assert stored["diagnostics"]["labels"]["teff"]["n_pairs"] == 10
    assert main(["train", "calibrate-noise", "apogeenet", "--weights", str(w)]) == 1
    assert "--emulated" in capsys.readouterr().err


def test_cli_defaults_come_from_the_training_function():
    import inspect

    from stellarnn.cli import build_parser
    from stellarnn.labels.astronn.training import train_astronn

    sig = inspect.signature(train_astronn).parameters
    args = build_parser().parse_args(["train", "astronn", "--grid", "g", "-o", "x.pt"])
    assert args.loss_beta == sig["loss_beta"].default
    assert args.select == sig["select"].default == "values"


def test_brackett_mask_option_reaches_training_and_run(apstar_dir, tmp_path, monkeypatch):
    from stellarnn.labels.pipeline import get_pipeline as real_get_pipeline
    from stellarnn.train import read_checkpoint

    out = tmp_path / "anet.pt"
    assert main(["train", "apogeenet", "--spectra", str(apstar_dir / "apStar*.fits"), "--labels",
                 str(apstar_dir / "labels.fits"), "--epochs", "1", "-o", str(out), "-q", "--val-fraction", "0.5",
                 "--brackett-mask"]) == 0
    assert read_checkpoint(out)["normalisation"]["brackett_mask"] is True
    made = []

    def recording(name, **kwargs):
        made.append(real_get_pipeline(name, **kwargs))
        return made[-1]

    monkeypatch.setattr("stellarnn.labels.pipeline.get_pipeline", recording)
    star = str(apstar_dir / "apStar-b.fits")
    assert main(["run", "apogeenet", star, "--weights", str(out), "--draws", "2"]) == 0
    assert main(["run", "apogeenet", star, "--weights", str(out), "--draws", "2", "--no-brackett-mask"]) == 0
    assert [p.brackett_mask for p in made] == [True, False]  # the checkpoint's setting, unless overridden


def test_train_with_fresh_noise_and_gated_emulator_spectra(tmp_path, capsys):
    import torch

    from stellarnn.synthesis.grid_builder import LABEL_NAMES
    from stellarnn.synthesis.populations import population_of
    from stellarnn.train import read_checkpoint  # the safe loader (weights_only)

    rng = np.random.default_rng(2)
    labels = [[rng.uniform(4000, 6000), rng.uniform(1, 4), rng.uniform(-0.8, 0), 1.2] + [0.0] * (len(LABEL_NAMES) - 4)
              for _ in range(10)]
    write_toy_grid(tmp_path / "grid", labels)
    ew = tiny_emulator(tmp_path / "emu.pt")
    out = tmp_path / "ann.pt"
    args = ["train", "astronn", "--grid", str(tmp_path / "grid"), "--fresh-noise", "--snr-range", "30", "500",
            "--emulated", "40", "--emulator", str(ew), "--gate-grid", str(tmp_path / "grid"), "--epochs", "2",
            "--early-stop", "3", "--batch-size", "8", "-o", str(out), "-q", "--val-fraction", "0.25",
            "--grad-clip", "1.0"]
    # every population's error is far below 1e6 sigma: the populations of the held-out grid are used, the others not
    assert main(args + ["--gate-sigma", "1e6"]) == 0
    prov = read_checkpoint(out)["provenance"]
    gate = prov["emulator_gate"]
    held_out = set(population_of(*np.array(labels)[:, :3].T)) - {""}
    assert set(gate["allowed"]) == held_out and set(gate["skipped"]).isdisjoint(held_out)
    assert 0 < gate["n_kept"] < gate["n_drawn"] == 40
    # with fresh noise the emulator spectra join the noise-free pool: new noise every epoch for them too
    assert f"+ {gate['n_kept']} noise-free emulator spectra with fresh noise" in prov["training_data"]
    metrics = read_checkpoint(out)["metrics"]
    assert metrics["n_train"] + metrics["n_val"] == 10 + gate["n_kept"]
    assert metrics["fresh_noise"]["n_spectra"] == 10 + gate["n_kept"]
    assert "populations used" in capsys.readouterr().err
    # an emulator no better than 1e-9 sigma anywhere: no emulator spectra at all, the grid alone
    assert main(args + ["--gate-sigma", "1e-9"]) == 0
    gate = read_checkpoint(out)["provenance"]["emulator_gate"]
    assert gate["allowed"] == [] and gate["n_kept"] == 0
    # --emulated-balance: the 40 emulated stars picked from a pool of prior draws with flattened population shares
    k = args.index("--gate-grid")
    assert main(args[:k] + args[k + 2:] + ["--emulated-balance", "1"]) == 0
    checkpoint = read_checkpoint(out)
    assert "population shares flattened (balance 1)" in checkpoint["provenance"]["training_data"]
    assert checkpoint["metrics"]["n_train"] + checkpoint["metrics"]["n_val"] == 10 + 40
    with pytest.raises(SystemExit):  # ALPHA outside 0-1 is refused, not read as no balance
        main(args[:k] + args[k + 2:] + ["--emulated-balance", "-0.5"])
    # --branch-dropout: a fine-tune from that network at another branch rate keeps its other hyper-parameters
    tuned = tmp_path / "ann_branch.pt"
    assert main(args[:k] + args[k + 2:] + ["--init", str(out), "--branch-dropout", "0.1", "-o", str(tuned)]) == 0
    hp, base_hp = read_checkpoint(tuned)["hyperparameters"], read_checkpoint(out)["hyperparameters"]
    assert hp["branch_dropout"] == 0.1 and "branch_dropout" not in base_hp
    assert {k: v for k, v in hp.items() if k != "branch_dropout"} == base_hp
    from stellarnn.train import load_checkpoint

    assert load_checkpoint(tuned, expected_kind="astronn")[0].branch_dropout == 0.1
    # --freeze-trunk: only the abundance branches train; the trunk and the main labels' heads keep --init's weights
    frozen = tmp_path / "ann_frozen.pt"
    assert main(args[:k] + args[k + 2:] + ["--init", str(out), "--freeze-trunk", "--lr", "1e-2", "-o",
                                           str(frozen)]) == 0
    before, after = read_checkpoint(out)["state_dict"], read_checkpoint(frozen)["state_dict"]
    trunk = [n for n in before if n.split(".")[0] in ("conv1", "conv2", "dense1", "dense2", "trunk_value", "aux")]
    assert len(trunk) == 12 and all(torch.equal(before[n], after[n]) for n in trunk)
    assert not all(torch.equal(before[n], after[n]) for n in before if n.startswith("branch_value"))
    assert "abundance branches only" in read_checkpoint(frozen)["provenance"]["trained"]
    assert main(args[:k] + args[k + 2:] + ["--freeze-trunk", "-o", str(frozen)]) == 1  # nothing to freeze
    assert "freeze_trunk needs init_from" in capsys.readouterr().err
    # fresh noise needs a grid
    assert main(["train", "astronn", "--fresh-noise", "--spectra", "x*.fits", "--labels", "t.fits",
                 "-o", str(tmp_path / "x.pt")]) == 1
    assert "--fresh-noise needs --grid" in capsys.readouterr().err


def test_train_config_takes_the_gradient_clip():
    import argparse

    from stellarnn.labels.cli import _train_config

    base = dict(pipeline="astronn", lr=None, epochs=3, batch_size=8, plateau_patience=4, max_seconds=None, seed=0,
                quiet=True, early_stop=None)
    assert _train_config(argparse.Namespace(**base, grad_clip=1.0)).grad_clip == 1.0
    assert _train_config(argparse.Namespace(**base, grad_clip=None)).grad_clip is None
