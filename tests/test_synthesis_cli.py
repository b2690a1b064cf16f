import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from stellarnn.cli import main

REPO = Path(__file__).resolve().parents[1]
TEST_GRID = REPO / "grids" / "apogee" / "test"


def test_emulator_train_evaluate_and_fit(tmp_path, real_file, capsys):
    weights = tmp_path / "emu.pt"
    assert main(["emulator", "train", "--grid", str(TEST_GRID), "--hidden", "16", "--epochs", "2",
                 "--continuum-epochs", "1", "--threads", "1", "-q", "-o", str(weights)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())["models"][0]
    assert manifest["file"] == "emu.pt" and manifest["provenance"]["grid"] == str(TEST_GRID)
    assert len(manifest["sha256"]) == 64
    # the recorded command is the one given to main(), not the test runner's argv
    assert manifest["command"] == (f"stellarnn emulator train --grid {TEST_GRID} --hidden 16 --epochs 2 "
                                   f"--continuum-epochs 1 --threads 1 -q -o {weights}")
    capsys.readouterr()
    assert main(["emulator", "evaluate", "--weights", str(weights), "--grid", str(TEST_GRID),
                 "--plot", str(tmp_path / "emu.png")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_spectra"] >= 100 and 0 < metrics["median_abs_dflux"] < 1
    assert (tmp_path / "emu.png").stat().st_size > 10_000

    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not a fits file")
    out = tmp_path / "fit.csv"
    assert main(["fit", str(real_file("apstar-2M19485057")), str(bad), "--weights", str(weights),
                 "--threads", "1", "-o", str(out)]) == 1  # non-zero: an input failed
    err = capsys.readouterr().err
    assert "bad.fits" in err  # an unreadable file is reported, flagged, and the good one still fitted
    table = Table.read(out)
    assert len(table) == 2 and table["apogee_id"][0] == "2M19485057+5005279"
    assert [str(v) for v in table["flag_bad"]] == ["False", "True"] and np.isnan(table["teff"][1]) and "bad.fits" in table["reason"][1]
    assert np.isfinite(table["teff"][0]) and table["e_teff"][0] > 0
    assert 3400 < table["teff"][0] < 8100 and np.isfinite(table["chi2_reduced"][0])
