"""The pipeline contract helpers: unusable spectra, failure isolation inside batches, shipped weights."""
import json
import logging

import numpy as np
import pytest

from stellarnn.labels.pipeline import (FieldInfo, failed_row, process_in_batches, resolve_shipped_weights,
                                       spectrum_problem)
from stellarnn.spectra import APOGEE_N_PIXELS, Spectrum

log = logging.getLogger("test")


def _spectrum(value: float, n: int = APOGEE_N_PIXELS, ivar: float = 1.0) -> Spectrum:
    return Spectrum(np.linspace(15100, 17000, n), np.full(n, value), np.full(n, ivar))


def test_spectrum_problem_names_the_reason():
    assert spectrum_problem(_spectrum(1.0)) == ""
    assert "pixels" in spectrum_problem(_spectrum(1.0, n=100))
    assert "inverse variance" in spectrum_problem(_spectrum(1.0, ivar=0.0))
    assert "not a Spectrum" in spectrum_problem("apStar.fits")


def test_failed_row_is_nan_with_flags():
    fields = {"teff": FieldInfo("K", "Teff"), "result_flags": FieldInfo("", "flags", "int64"),
              "name": FieldInfo("", "a string", "str")}
    row = failed_row(fields, 4, "why", True, False)
    assert np.isnan(row["teff"]) and row["name"] is None
    assert (row["result_flags"], row["flag_bad"], row["flag_warn"], row["reason"]) == (4, True, False, "why")


def test_process_in_batches_keeps_order_and_isolates_the_failing_spectrum():
    calls = []

    def run_batch(batch):
        calls.append(len(batch))
        if any(s.flux[0] == 13 for s in batch):
            raise ArithmeticError("unlucky")
        return [{"value": float(s.flux[0])} for s in batch]

    spectra = [_spectrum(v) for v in range(20)]
    spectra[5] = _spectrum(5.0, n=10)  # refused before any batch
    rows = process_in_batches(spectra, 8, run_batch, lambda reason: {"failed": reason}, log)
    assert len(rows) == 20
    assert "pixels" in rows[5]["failed"]
    assert rows[13] == {"failed": "ArithmeticError: unlucky"}
    assert [r["value"] for i, r in enumerate(rows) if i not in (5, 13)] == [v for v in range(20) if v not in (5, 13)]
    assert calls[:2] == [8, 8] and calls.count(1) == 8  # the failing batch (8 spectra) was retried one by one


def test_resolve_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("STELLARNN_WEIGHTS_DIR", raising=False)
    shipped = resolve_shipped_weights("apogeenet")  # the repository's weights/apogeenet, by its manifest
    assert shipped.parent.name == "apogeenet" and shipped.parent.parent.name == "weights" and shipped.is_file()
    with pytest.raises(FileNotFoundError, match="do not exist"):
        resolve_shipped_weights("astronn", tmp_path / "missing.pt")
    monkeypatch.setenv("STELLARNN_WEIGHTS_DIR", str(tmp_path))
    # a group the folder lacks comes from the next root (the checkout here, the installed copy in a wheel)
    assert resolve_shipped_weights("astronn").parent.parent.name == "weights"
    (tmp_path / "astronn").mkdir()
    (tmp_path / "astronn" / "manifest.json").write_text(json.dumps({"models": [{"file": "net.pt"}]}))
    with pytest.raises(FileNotFoundError, match="which is missing"):
        resolve_shipped_weights("astronn")
    (tmp_path / "astronn" / "net.pt").write_bytes(b"x")
    assert resolve_shipped_weights("astronn") == tmp_path / "astronn" / "net.pt"


def test_spectrum_seed_follows_identity_not_batch():
    from stellarnn.labels.pipeline import spectrum_seed

    wl, f = np.arange(5.0), np.arange(5.0)
    a = Spectrum(wl, f, np.ones(5), meta={"apogee_id": "2M0001", "kind": "combined", "row": 0})
    same_star_other_reader = Spectrum(wl, f + 1, np.ones(5), meta={"apogee_id": "2M0001"})
    visit = Spectrum(wl, f, np.ones(5), meta={"apogee_id": "2M0001", "kind": "visit", "row": 2})
    anon, anon2 = Spectrum(wl, f, np.ones(5)), Spectrum(wl, f * 2, np.ones(5))
    assert spectrum_seed(a) == spectrum_seed(same_star_other_reader)
    assert len({spectrum_seed(a), spectrum_seed(visit), spectrum_seed(anon), spectrum_seed(anon2)}) == 4
    assert spectrum_seed(anon) == spectrum_seed(Spectrum(wl, f.copy(), np.zeros(5)))  # flux bytes
    assert spectrum_seed(a, 1) != spectrum_seed(a, 0) and 0 <= spectrum_seed(a) < 2 ** 63


def test_device_defaults_and_precision_checks():
    import torch

    from stellarnn.labels.pipeline import check_precision, device_defaults, inference_autocast

    table = {"cpu": {"chunk": 128}, "cuda": {"chunk": 65536}}
    assert device_defaults(table, "cpu") == {"chunk": 128}
    assert device_defaults(table, torch.device("cuda:1")) == {"chunk": 65536}  # by type, no GPU needed
    assert device_defaults(table, "meta") == {"chunk": 128}  # a device the table lacks: the CPU sizes
    device_defaults(table, "cpu")["chunk"] = 1
    assert table["cpu"]["chunk"] == 128  # a copy
    assert check_precision("float32", "cpu") == "float32" and check_precision("bf16", "cuda:0") == "bf16"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        check_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("float16", "cuda")
    with inference_autocast("float32", "cpu"):
        assert not torch.is_autocast_enabled()


def test_rows_from_columns_gives_python_scalars_in_column_order():
    from stellarnn.labels.pipeline import rows_from_columns

    cols = {"teff": np.array([4000.5, np.nan]), "result_flags": np.array([3, 0], dtype=np.int64),
            "flag_bad": np.array([True, False]), "reason": np.array(["x", ""], dtype=object)}
    rows = rows_from_columns(cols, 2)
    assert rows[0] == {"teff": 4000.5, "result_flags": 3, "flag_bad": True, "reason": "x"}
    assert list(rows[1]) == list(cols) and np.isnan(rows[1]["teff"])
    assert [type(v) for v in rows[0].values()] == [float, int, bool, str]
    with pytest.raises(ValueError, match="shape"):
        rows_from_columns({"a": np.zeros(3)}, 2)


def test_quality_rows_from_columns(real_file):
    """QualityChecks.rows on columns: network columns on the usable spectra, the label-box bit and its reason
    on the one far outside the training box, NaN rows with the information reason elsewhere, summary flags
    from the merged bits."""
    from stellarnn.labels.apogeenet.flags import FIELDS, flag_bad, flag_warn
    from stellarnn.labels.emulator_ood import FLAG_FAR_OUTSIDE_TRAINING
    from stellarnn.labels.pipeline import QualityChecks, information_columns
    from stellarnn.spectra import read_apstar

    real = read_apstar(real_file("apstar-2M17335483"))
    batch = [real.combined, _spectrum(1.0), *real.visits[:1]]
    quality = QualityChecks(False)
    info = quality.assess(batch)
    good = np.flatnonzero(info.usable)
    assert good.tolist() == [0, 2]
    for i in range(len(batch)):  # the batch's columns are the per-spectrum ones
        assert {k: v[i] for k, v in information_columns(info).items()} == info.columns(i)
    cols = {"teff": np.array([4800.0, 20000.0]), "e_teff": np.array([50.0, 60.0]), "logg": np.array([2.5, 2.0]),
            "e_logg": np.array([0.1, 0.1]), "fe_h": np.array([-0.3, 0.0]), "e_fe_h": np.array([0.05, 0.05]),
            "raw_e_teff": np.array([40.0, 48.0]), "raw_e_logg": np.array([0.08, 0.08]),
            "raw_e_fe_h": np.array([0.05, 0.05]), "result_flags": np.array([0, 0], dtype=np.int64),
            "reason": np.array(["", ""], dtype=object)}
    labels = {k: cols[k] for k in ("teff", "logg", "fe_h")}
    rows = quality.rows(len(batch), info, good, cols, labels, FIELDS, (), flag_warn, flag_bad)
    assert len(rows) == 3 and all(set(r) == set(FIELDS) | {"reason"} for r in rows)
    assert rows[0]["teff"] == 4800.0 and rows[0]["result_flags"] == 0 and rows[0]["reason"] == ""
    assert rows[2]["teff"] == 20000.0 and rows[2]["result_flags"] & FLAG_FAR_OUTSIDE_TRAINING
    assert rows[2]["reason"].startswith("out of distribution: ") and rows[2]["flag_bad"] is True
    assert np.isnan(rows[1]["teff"]) and rows[1]["reason"] == info.reasons[1] != ""
    assert rows[1]["result_flags"] == int(info.flags[1]) and rows[1]["snr_robust"] == info.columns(1)["snr_robust"]
    for r in rows:
        assert r["flag_warn"] == bool(flag_warn(np.array([r["result_flags"]]))[0])
        assert r["flag_bad"] == bool(flag_bad(np.array([r["result_flags"]]))[0])
        assert type(r["result_flags"]) is int and type(r["teff"]) is float
