"""scripts/innterpol_experiments.sh: variant names, STOP_AT and finished variants (no training in these tests)."""
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "innterpol_experiments.sh"


def _run(tmp_path, **env):
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OUT": str(tmp_path / "out"), "RESULT": str(tmp_path / "result.json"),
                               **env})


def test_an_unknown_variant_is_refused(tmp_path):
    r = _run(tmp_path, VARIANTS="b0_default e9_magic")
    assert r.returncode == 1 and "unknown variant 'e9_magic'" in r.stderr and "e1_components40" in r.stderr


def test_no_variant_starts_close_to_stop_at(tmp_path):
    soon = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + 60))
    r = _run(tmp_path, STOP_AT=soon, VARIANTS="e2_ne_weight4")
    assert r.returncode == 0, r.stderr
    assert "e2_ne_weight4:" in r.stdout and "left before STOP_AT: next session" in r.stdout
    assert not list((tmp_path / "out").glob("*.pt"))  # nothing trained, nothing evaluated
    assert not (tmp_path / "result.json").exists()


def test_finished_variants_are_skipped_and_not_evaluated_again(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b0_default.pt").write_bytes(b"checkpoint")
    time.sleep(0.05)
    (tmp_path / "result.json").write_text("{}")  # evaluated after the checkpoint was written
    r = _run(tmp_path, VARIANTS="b0_default")
    assert r.returncode == 0, r.stderr
    assert "b0_default: done already" in r.stdout and "evaluating" not in r.stdout
