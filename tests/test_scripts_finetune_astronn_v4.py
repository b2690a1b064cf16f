"""scripts/finetune_astronn_v4.sh refuses to start without its base network or emulator (and creates no state)."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "finetune_astronn_v4.sh"


def test_refuses_a_missing_base_network_or_emulator(tmp_path):
    emulator = tmp_path / "emulator.pt"
    emulator.write_text("x")
    env = {**os.environ, "FINETUNE_STATE": str(tmp_path / "state"), "BASE_WEIGHTS": str(tmp_path / "none.pt"),
           "EMULATOR": str(emulator)}
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "none.pt does not exist" in r.stderr
    env.update(BASE_WEIGHTS=str(emulator), EMULATOR=str(tmp_path / "no_emulator.pt"))
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "no_emulator.pt does not exist" in r.stderr
    assert not (tmp_path / "state").exists()
