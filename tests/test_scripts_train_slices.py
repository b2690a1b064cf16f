"""scripts/train_slices.sh: a training continued in slices across sessions, with a fake trainer."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: a trainer that logs its arguments and writes a checkpoint whose metrics follow a plan (one entry per call)
FAKE_TRAINER = r'''
import json, sys, time, torch
from pathlib import Path
args = sys.argv[1:]
log = Path(sys.argv[0]).with_name("calls.jsonl")
calls = log.read_text().splitlines() if log.exists() else []
plan = json.loads(Path(sys.argv[0]).with_name("plan.json").read_text())[len(calls)]
with log.open("a") as fh:
    fh.write(json.dumps(args) + "\n")
opt = {a: args[i + 1] for i, a in enumerate(args) if a in ("--lr", "--init", "--max-seconds", "--resume", "-o")}
Path(opt["--resume"]).write_text("resume state")
time.sleep(plan.get("wall", 0.0))
metrics = {"train_seconds": plan["seconds"], "stopped_by": plan["stopped_by"], "call": len(calls)}
if "best_val_loss" in plan:
    metrics["best_val_loss"] = plan["best_val_loss"]
torch.save({"metrics": metrics}, opt["-o"])
Path(opt["-o"]).with_name("manifest.json").write_text(json.dumps({"call": len(calls)}))
'''


def _run(tmp_path, plan, budget, slice_seconds=100, runs=1):
    (tmp_path / "fake.py").write_text(FAKE_TRAINER)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    script = (f"source {ROOT / 'scripts' / 'train_slices.sh'}; "
              f"train_step net {budget} {tmp_path / 'net.pt'} 1e-3 {sys.executable} {tmp_path / 'fake.py'} --epochs 9")
    env = {**os.environ, "STATE": str(state), "PY": sys.executable, "SLICE_SECONDS": str(slice_seconds),
           "CONTINUE_LR_FACTOR": "0.3"}
    outs = [subprocess.run(["bash", "-c", "set -euo pipefail; " + script], capture_output=True, text=True, env=env,
                           timeout=120) for _ in range(runs)]
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    return outs, calls, state


def _opt(call, name):
    return call[call.index(name) + 1] if name in call else None


def test_slices_continue_from_the_last_checkpoint_until_early_stopping(tmp_path):
    plan = [{"seconds": 100.0, "stopped_by": "max_seconds"}, {"seconds": 100.0, "stopped_by": "max_seconds"},
            {"seconds": 40.0, "stopped_by": "early_stop"}]
    outs, calls, state = _run(tmp_path, plan, budget=1000)
    assert outs[0].returncode == 0, outs[0].stderr
    assert len(calls) == 3 and all(c[:2] == ["--epochs", "9"] for c in calls)
    assert _opt(calls[0], "--init") is None and float(_opt(calls[0], "--lr")) == 1e-3
    for c in calls[1:]:  # later slices: from the checkpoint, at 0.3 x the learning rate
        assert _opt(c, "--init") == str(tmp_path / "net.pt") and abs(float(_opt(c, "--lr")) - 3e-4) < 1e-12
    assert [float(_opt(c, "--max-seconds")) for c in calls] == [100, 100, 100]
    assert float((state / "net.seconds").read_text()) == 240.0
    assert (state / "net.done").exists() and not (state / "net.resume.pt").exists()
    # a later run (the next session) skips a finished training
    lib = ROOT / "scripts" / "train_slices.sh"
    again = subprocess.run(["bash", "-c", f"source {lib}; train_step net 1000 x 1 false"], capture_output=True,
                           text=True, env={**os.environ, "STATE": str(state)}, timeout=60)
    assert again.returncode == 0 and "done" in again.stdout


def test_the_budget_ends_a_training_that_never_stops_by_itself(tmp_path):
    plan = [{"seconds": 100.0, "stopped_by": "max_seconds"}, {"seconds": 60.0, "stopped_by": "max_seconds"}]
    outs, calls, state = _run(tmp_path, plan, budget=160)
    assert outs[0].returncode == 0, outs[0].stderr
    assert [float(_opt(c, "--max-seconds")) for c in calls] == [100, 60]  # the last slice gets what is left
    assert (state / "net.done").exists() and "its 160 s are spent" in outs[0].stdout


def test_a_remainder_shorter_than_min_last_slice_ends_the_training(tmp_path):
    """Budget 230 s, slices of 100 s, MIN_LAST_SLICE 50 s: after two slices 30 s are left, too few for a restart at
    the lower learning rate, so the training is done; the first slice is never skipped, whatever its budget."""
    plan = [{"seconds": 100.0, "stopped_by": "max_seconds"}, {"seconds": 100.0, "stopped_by": "max_seconds"}]
    os.environ["MIN_LAST_SLICE"] = "50"
    try:
        outs, calls, state = _run(tmp_path, plan, budget=230)
        assert outs[0].returncode == 0, outs[0].stderr
        assert len(calls) == 2 and (state / "net.done").exists()
        assert "30 s of its 230 s left, less than MIN_LAST_SLICE (50 s): done" in outs[0].stdout
        first = tmp_path / "first"
        first.mkdir()
        outs, calls, state = _run(first, [{"seconds": 20.0, "stopped_by": "max_seconds"}], budget=20)
        assert len(calls) == 1 and float(_opt(calls[0], "--max-seconds")) == 20  # a budget below it still trains
    finally:
        del os.environ["MIN_LAST_SLICE"]


def test_a_failing_trainer_stops_the_chain_and_keeps_the_spent_seconds(tmp_path):
    plan = [{"seconds": 100.0, "stopped_by": "max_seconds"}]  # the second call finds no plan entry: it fails
    outs, calls, state = _run(tmp_path, plan, budget=1000)
    assert outs[0].returncode != 0
    assert float((state / "net.seconds").read_text()) == 100.0 and not (state / "net.done").exists()


def test_stop_at_shortens_the_slice_and_ends_the_script_before_the_session_ends(tmp_path):
    import datetime as dt

    plan = [{"seconds": 50.0, "stopped_by": "max_seconds", "wall": 8.0}]
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=16)).strftime("%Y-%m-%d %H:%M:%S UTC")
    os.environ.update(STOP_AT=soon, STOP_MARGIN="5", STOP_MIN_TAIL="5")
    try:
        outs, calls, state = _run(tmp_path, plan, budget=10_000, slice_seconds=8400)
    finally:
        del os.environ["STOP_AT"], os.environ["STOP_MARGIN"], os.environ["STOP_MIN_TAIL"]
    # ~16 s to the end, a 5 s margin: one slice of <= 11 s; after its 8 s, too little time for another
    assert len(calls) == 1 and 5 <= float(_opt(calls[0], "--max-seconds")) <= 11
    assert outs[0].returncode == 0 and "continue in the next session" in outs[0].stdout
    assert float((state / "net.seconds").read_text()) == 50.0 and not (state / "net.done").exists()


def test_an_unreadable_stop_at_is_an_error_not_the_end_of_the_session(tmp_path):
    plan = [{"seconds": 50.0, "stopped_by": "early_stop"}]
    os.environ["STOP_AT"] = "25:99 UTC"
    try:
        (tmp_path / "calls.jsonl").write_text("")
        outs, calls, state = _run(tmp_path, plan, budget=1000)
    finally:
        del os.environ["STOP_AT"]
    assert outs[0].returncode == 2 and "25:99 UTC" in outs[0].stderr and "next session" not in outs[0].stdout
    assert calls == [] and not (state / "net.done").exists()


def test_no_short_slice_is_left_at_the_end_of_the_session(tmp_path):
    """~40 s to the end, a 5 s margin, slices of 10 s: the first slice takes the whole ~35 s rather than leave a
    tail shorter than STOP_MIN_TAIL (30 s) for a slice that would restart at the lower learning rate."""
    import datetime as dt

    plan = [{"seconds": 30.0, "stopped_by": "max_seconds", "wall": 0.0}]
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=40)).strftime("%Y-%m-%d %H:%M:%S UTC")
    os.environ.update(STOP_AT=soon, STOP_MARGIN="5", STOP_MIN_TAIL="30")
    try:
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        outs, calls, state = _run(tmp_path, plan + [{"seconds": 1.0, "stopped_by": "early_stop"}], budget=10_000,
                                  slice_seconds=10)
    finally:
        del os.environ["STOP_AT"], os.environ["STOP_MARGIN"], os.environ["STOP_MIN_TAIL"]
    assert outs[0].returncode == 0, outs[0].stderr
    assert 25 <= float(_opt(calls[0], "--max-seconds")) <= 35


def test_no_slice_shorter_than_the_tail_starts_unless_it_ends_the_training(tmp_path):
    """~40 s to the end, a 5 s margin, STOP_MIN_TAIL 60 s: a training with 10,000 s left waits for the next session
    (a ~35 s first slice would put all later ones at the lower learning rate); one with 20 s left finishes now."""
    import datetime as dt

    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=40)).strftime("%Y-%m-%d %H:%M:%S UTC")
    os.environ.update(STOP_AT=soon, STOP_MARGIN="5", STOP_MIN_TAIL="60")
    try:
        (tmp_path / "calls.jsonl").write_text("")
        outs, calls, state = _run(tmp_path, [{"seconds": 1.0, "stopped_by": "early_stop"}], budget=10_000)
        assert outs[0].returncode == 0 and "continue in the next session" in outs[0].stdout and calls == []
        assert not (state / "net.done").exists()
        last = tmp_path / "last"
        last.mkdir()
        (last / "calls.jsonl").write_text("")
        outs, calls, state = _run(last, [{"seconds": 20.0, "stopped_by": "max_seconds"}], budget=20)
    finally:
        del os.environ["STOP_AT"], os.environ["STOP_MARGIN"], os.environ["STOP_MIN_TAIL"]
    assert outs[0].returncode == 0, outs[0].stderr
    assert len(calls) == 1 and float(_opt(calls[0], "--max-seconds")) == 20 and (state / "net.done").exists()


def test_first_init_starts_a_fine_tuning_from_a_finished_network(tmp_path):
    """FIRST_INIT: the first slice starts from that checkpoint at the given rate; later slices from the
    fine-tuning's own checkpoint at CONTINUE_LR_FACTOR times it."""
    base = tmp_path / "base.pt"
    base.write_text("finished network")
    plan = [{"seconds": 100.0, "stopped_by": "max_seconds"}, {"seconds": 30.0, "stopped_by": "early_stop"}]
    os.environ["FIRST_INIT"] = str(base)
    try:
        outs, calls, state = _run(tmp_path, plan, budget=1000)
    finally:
        del os.environ["FIRST_INIT"]
    assert outs[0].returncode == 0, outs[0].stderr
    assert _opt(calls[0], "--init") == str(base) and float(_opt(calls[0], "--lr")) == 1e-3
    assert _opt(calls[1], "--init") == str(tmp_path / "net.pt") and abs(float(_opt(calls[1], "--lr")) - 3e-4) < 1e-12


def test_step_runs_a_command_once(tmp_path):
    lib = ROOT / "scripts" / "train_slices.sh"
    state = tmp_path / "state"
    state.mkdir()
    script = f"source {lib}; step count bash -c 'echo x >> {tmp_path / 'ran'}'"
    runs = [subprocess.run(["bash", "-c", "set -euo pipefail; " + script], capture_output=True, text=True,
                           env={**os.environ, "STATE": str(state)}, timeout=60) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert (tmp_path / "ran").read_text() == "x\n" and (state / "count.done").exists()
    assert "done already" in runs[1].stdout
    failing = subprocess.run(["bash", "-c", f"set -euo pipefail; source {lib}; step bad false"], capture_output=True,
                             text=True, env={**os.environ, "STATE": str(state)}, timeout=60)
    assert failing.returncode != 0 and not (state / "bad.done").exists()


def test_a_slice_that_validates_worse_gives_back_the_last_checkpoint_and_ends_the_training(tmp_path):
    plan = [{"seconds": 100.0, "stopped_by": "max_seconds", "best_val_loss": 0.0069},
            {"seconds": 100.0, "stopped_by": "max_seconds", "best_val_loss": 0.0072},
            {"seconds": 100.0, "stopped_by": "max_seconds", "best_val_loss": 0.0050}]
    outs, calls, state = _run(tmp_path, plan, budget=1000)
    assert outs[0].returncode == 0, outs[0].stderr
    assert len(calls) == 2 and (state / "net.done").exists()  # no third slice from the same start
    assert "(0.0072) is worse than the last slice's (0.0069)" in outs[0].stdout
    import torch

    assert torch.load(tmp_path / "net.pt", weights_only=True)["metrics"]["call"] == 0
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"call": 0}
    assert float((state / "net.seconds").read_text()) == 200.0 and not (state / "net.previous").exists()
    better = tmp_path / "better"
    better.mkdir()
    plan[1]["best_val_loss"] = 0.0060
    outs, calls, state = _run(better, plan[:2] + [{"seconds": 10.0, "stopped_by": "early_stop"}], budget=1000)
    assert outs[0].returncode == 0, outs[0].stderr
    assert len(calls) == 3 and "is worse" not in outs[0].stdout
