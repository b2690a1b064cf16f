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
