"""The runner's device option: argument checks, the pass-through to pipelines, one GPU per worker."""
from __future__ import annotations

import os
import time

import pytest
import torch

from stellarnn.cli import main
from stellarnn.labels.pipeline import FieldInfo, register_pipeline
from stellarnn.runner.engine import run_pipeline, run_survey, with_device
from stellarnn.runner.store import ResultsStore
from stellarnn.runner.task import PipelineSpec, spec_for_worker, worker_device, worker_index
from test_runner_task import write_test_apstars


@register_pipeline("runner_test_device")
class DevicePipeline:
    """Records the device it was built with, its worker number and process id."""

    name = "runner_test_device"
    version = "device-1"
    fields = {"device": FieldInfo("", "device= given to the constructor", "U"),
              "worker": FieldInfo("", "runner worker number", "int64"),
              "pid": FieldInfo("", "process id", "int64")}

    def __init__(self, device: str = "default", sleep: float = 0.0):
        self.device = device
        self.sleep = sleep

    def process(self, spectra):
        time.sleep(self.sleep)
        return [{"device": self.device, "worker": worker_index(), "pid": os.getpid()} for _ in spectra]


def rows(db):
    with ResultsStore(db) as store:
        return [r for part in store.iter_results("runner_test_device") for r in part]


@pytest.mark.parametrize("device, index, n_gpus, expected", [
    ("cuda", 0, 2, "cuda:0"), ("cuda", 3, 2, "cuda:1"), ("cuda", 5, 4, "cuda:1"), ("auto", 2, 3, "cuda:2"),
    ("auto", 7, 0, "cpu"), ("cuda:1", 4, 2, "cuda:1"), ("cpu", 3, 2, "cpu"), ("cuda", 1, 0, "cuda")])
def test_one_gpu_per_worker_round_robin(device, index, n_gpus, expected):
    assert worker_device(device, index, n_gpus) == expected


def test_spec_for_worker_maps_only_the_device_keyword(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    spec = PipelineSpec.create("runner_test_device", {"device": "cuda"})
    assert dict(spec_for_worker(spec, 4).kwargs) == {"device": "cuda:1"}
    pinned = PipelineSpec.create("runner_test_device", {"device": "cuda:2"})
    assert spec_for_worker(pinned, 4) == pinned
    plain = PipelineSpec.create("runner_test_device", {})
    assert spec_for_worker(plain, 4) == plain
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dict(spec_for_worker(PipelineSpec.create("x", {"device": "auto"}), 1).kwargs) == {"device": "cpu"}


def test_with_device_adds_the_keyword_or_refuses_two():
    assert with_device(None, None) == {}
    assert with_device({"n": 1}, "cpu") == {"n": 1, "device": "cpu"}
    assert with_device({"device": "cpu"}, "cpu") == {"device": "cpu"}
    with pytest.raises(ValueError, match="two devices given"):
        with_device({"device": "cpu"}, "cuda")


def test_cpu_device_reaches_the_pipeline_inline(tmp_path):
    paths = write_test_apstars(tmp_path, [1.0, 1.1])
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    rep = run_pipeline("runner_test_device", paths, db, workers=0, device="cpu", progress=False)
    assert rep.status == "finished" and rep.n_rows == 2
    assert {r["device"] for r in rows(db)} == {"cpu"}
    rep = run_pipeline("runner_test_device", paths, db, workers=0, rerun=True, progress=False)  # no device given
    assert {r["device"] for r in rows(db)} == {"default"}


def test_workers_are_numbered_and_auto_without_gpu_is_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU resolution of 'auto'")
    paths = write_test_apstars(tmp_path, [1.0, 1.1, 1.2, 0.9, 1.05, 0.95])
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    rep = run_pipeline("runner_test_device", paths, db, workers=2, batch_size=1, device="auto", progress=False,
                       pipeline_kwargs={"sleep": 0.4})  # slow tasks: both workers take some
    assert rep.status == "finished" and rep.n_rows == 6
    got = rows(db)
    assert {r["device"] for r in got} == {"cpu"}
    by_pid = {r["pid"]: r["worker"] for r in got}
    assert os.getpid() not in by_pid and sorted(by_pid.values()) == [0, 1]  # each worker has its own number


def test_missing_cuda_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    paths = write_test_apstars(tmp_path, [1.0])
    db_file = tmp_path / "r.sqlite"
    with pytest.raises(ValueError, match="no CUDA device on this machine"):
        run_pipeline("runner_test_device", paths, f"sqlite:///{db_file}", workers=0, device="cuda", progress=False)
    with pytest.raises(ValueError, match="no CUDA device on this machine"):
        run_survey(["runner_test_device"], paths, f"sqlite:///{db_file}", tmp_path, workers=0, device="cuda:1",
                   progress=False)
    assert not db_file.exists()


@pytest.mark.parametrize("action", ["run", "survey"])
def test_cli_device_cuda_without_gpu_is_one_line(tmp_path, monkeypatch, capsys, action):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    paths = write_test_apstars(tmp_path, [1.0])
    out = tmp_path / "out"
    args = (["runner", "run", "runner_test_device", str(paths[0])] if action == "run" else
            ["runner", "survey", "--pipelines", "runner_test_device", "--inputs", str(paths[0])])
    with pytest.raises(SystemExit) as exc:
        main(args + ["--out", str(out), "--workers", "0", "--device", "cuda", "--import", "test_runner_device"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no CUDA device on this machine" in err[-1] and "Traceback" not in "".join(err)
    assert not (out / "stellarnn_results.sqlite").exists()


def test_cli_device_cpu_passes_through(tmp_path, capsys):
    paths = write_test_apstars(tmp_path, [1.0, 1.2])
    out = tmp_path / "out"
    code = main(["runner", "run", "runner_test_device", *map(str, paths), "--out", str(out), "--workers", "0",
                 "--device", "cpu", "--import", "test_runner_device", "-q"])
    assert code == 0
    assert {r["device"] for r in rows(f"sqlite:///{out / 'stellarnn_results.sqlite'}")} == {"cpu"}
    code = main(["runner", "run", "runner_test_device", str(paths[0]), "--out", str(out), "--workers", "0",
                 "--device", "cpu", "--option", "device=auto", "--import", "test_runner_device", "-q", "--rerun"])
    assert code == 1 and "two devices given" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["runner", "run", "runner_test_device", str(paths[0]), "--device", "tpu7"])
