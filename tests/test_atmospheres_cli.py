"""``stellarnn atmosphere get|train|evaluate``."""
import json

import numpy as np
import pytest

from stellarnn.cli import main


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    rc = main(["atmosphere", "train", "-o", str(path), "--components", "4", "--hidden", "8", "--layers", "1",
               "--epochs", "2", "-q"])
    assert rc == 0
    return path


def test_get_linear_writes_krz_and_plot(tmp_path, capsys):
    out = tmp_path / "m.krz"
    assert main(["atmosphere", "get", "4750", "2.3", "-0.4", "--linear", "-o", str(out), "--plot"]) == 0
    text = capsys.readouterr().out
    assert "multilinear ATLAS9" in text and out.is_file() and out.with_suffix(".png").is_file()
    from stellarnn.atmospheres import read_krz

    assert read_krz(out)["teff"] == 4750.0


def test_get_emulator_prints_table_and_writes_deck(tiny_weights, tmp_path, capsys):
    assert main(["atmosphere", "get", "5000", "3", "0", "--weights", str(tiny_weights)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert len(lines) == 72  # header + 71 depth points
    deck = tmp_path / "m.mod"
    assert main(["atmosphere", "get", "5000", "3", "0", "--weights", str(tiny_weights), "-o", str(deck)]) == 0
    from stellarnn.atmospheres import read_kurucz

    assert read_kurucz(deck).n_layers == 71


def test_short_form_without_get_is_the_same_command(tiny_weights, capsys):
    # the form: `stellarnn atmosphere TEFF LOGG MH`
    assert main(["atmosphere", "get", "5000", "3", "-0.5", "--weights", str(tiny_weights)]) == 0
    with_get = capsys.readouterr().out
    assert main(["atmosphere", "5000", "3", "-0.5", "--weights", str(tiny_weights)]) == 0
    assert capsys.readouterr().out == with_get
    with pytest.raises(SystemExit):  # a word that is not a number is still read as an action name
        main(["atmosphere", "sideways", "3", "0"])


def test_get_out_of_grid_is_a_one_line_error(capsys):
    assert main(["atmosphere", "get", "12000", "0.5", "0", "--linear"]) == 1
    assert "out of grid" in capsys.readouterr().err


def test_evaluate_prints_table_and_json(tiny_weights, tmp_path, capsys):
    js = tmp_path / "e.json"
    assert main(["atmosphere", "evaluate", "--weights", str(tiny_weights), "--plot-dir", str(tmp_path),
                 "--json", str(js)]) == 0
    assert "linear_raw" in capsys.readouterr().out
    data = json.loads(js.read_text())
    assert np.isfinite(data["sets"]["edge"]["emulator"]["log_temperature"]["rms_dex"])


def test_group_without_action_shows_help(capsys):
    assert main(["atmosphere"]) == 2
    assert "get" in capsys.readouterr().out


def test_train_with_cosine_schedule_records_it(tmp_path):
    from stellarnn.train import read_checkpoint

    path = tmp_path / "cos.pt"
    rc = main(["atmosphere", "train", "-o", str(path), "--components", "4", "--hidden", "8", "--layers", "1",
               "--epochs", "3", "--schedule", "cosine", "--min-lr", "1e-5", "--weight-decay", "1e-6", "-q"])
    assert rc == 0
    prov = read_checkpoint(path)["provenance"]
    assert prov["config"]["schedule"] == "cosine" and prov["config"]["min_lr"] == 1e-5
    assert prov["config"]["weight_decay"] == 1e-6
    assert "--schedule cosine" in prov["command"] and "--weight-decay 1e-06" in prov["command"]


def test_train_with_depth_weights_records_them_and_refuses_an_unknown_quantity(tmp_path, capsys):
    from stellarnn.train import read_checkpoint

    path = tmp_path / "dw.pt"
    common = ["--components", "4", "--hidden", "8", "--layers", "1", "--epochs", "2", "-q"]
    assert main(["atmosphere", "train", "-o", str(path), *common, "--depth-weight", "n_e", "-0.5", "1", "10"]) == 0
    prov = read_checkpoint(path)["provenance"]
    assert [list(w) for w in prov["config"]["depth_weights"]] == [["n_e", -0.5, 1.0, 10.0]]
    assert "--depth-weight n_e -0.5 1 10" in prov["command"]
    assert main(["atmosphere", "train", "-o", str(tmp_path / "bad.pt"), *common, "--depth-weight", "Ne", "0", "1", "2"]) != 0
    assert "depth-weight quantity must be one of" in capsys.readouterr().err
    assert not (tmp_path / "bad.pt").exists()


def test_train_polish_from_init_records_the_recipe(tmp_path, capsys):
    from stellarnn.train import read_checkpoint

    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    common = ["--components", "4", "--hidden", "8", "--layers", "1", "--activation", "silu", "-q"]
    assert main(["atmosphere", "train", "-o", str(first), "--epochs", "2", *common]) == 0
    capsys.readouterr()
    assert main(["atmosphere", "train", "-o", str(second), "--epochs", "0", "--polish-epochs", "2",
                 "--polish-iterations", "5", "--init", str(first), *common]) == 0
    assert "L-BFGS polish best at step" in capsys.readouterr().out
    ck = read_checkpoint(second)
    assert f"--init {first}" in ck["provenance"]["command"] and "--polish-epochs 2" in ck["provenance"]["command"]
    assert ck["hyperparameters"]["activation"] == "silu"
    m = ck["metrics"]
    assert m["best_val_mse"] == min(m["adam_best_val_mse"], m["polish_best_val_mse"])


def test_audit_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "audit.json"
    assert main(["atmosphere", "audit", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "break: m_h = 0: VTURB [0.0] km/s" in text
    assert json.loads(out.read_text())["breaks"] == [
        {"axis": "m_h", "value": 0.0, "reasons": ["VTURB [0.0] km/s, the axis' other slices [2.0] km/s"]}]


def test_evaluate_consistent_leaves_the_flagged_slice_out(tiny_weights, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["atmosphere", "evaluate", "--weights", str(tiny_weights), "--consistent", "--plot-dir",
                 str(tmp_path), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["excluded_m_h"] == [0.0] and res["sets"]["solar_columns"]["m_h_values"] == [-0.1, 0.1]


def test_get_family_with_the_shipped_emulator(tiny_weights, capsys):
    """--family picks the ATLAS9 family of the shipped (family-input) emulator; a 3-input checkpoint refuses it."""
    def t_at_tau1(argv):
        assert main(argv) == 0
        rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")][1:]
        return float(next(r for r in rows if abs(float(r[0])) < 1e-9)[2])

    default = t_at_tau1(["atmosphere", "get", "5800", "4.4", "0.1"])
    zero = t_at_tau1(["atmosphere", "get", "5800", "4.4", "0.1", "--family", "0"])
    one = t_at_tau1(["atmosphere", "get", "5800", "4.4", "0.1", "--family", "1"])
    assert default == zero and one != zero
    assert 0.0 < (one - zero) / zero < 0.03  # the short-deck family is hotter at tau_Ross = 1 (~1.5 %)
    assert main(["atmosphere", "get", "5000", "3", "0", "--weights", str(tiny_weights), "--family", "1"]) == 1
    assert "no ATLAS9 family input" in capsys.readouterr().err
