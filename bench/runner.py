"""Survey runner benchmark -> bench/results/runner.json.

1. Overhead: the runner (inline, and with one and two worker processes; SQLite store) against
   calling the pipeline directly on the same apStar files (read each file, ``pipeline.process`` in
   batches of the same size), medians over repeats.  The pipeline is APOGEENet with its shipped
   weights (``--pipeline``, one torch thread per process; a small random 1D CNN, ``bench_cnn``,
   when the weights are missing).  A worker process pays a one-off start (spawn, import torch,
   load the weights), measured separately on a one-file run and reported both ways.
2. Scale: 20,000 synthetic spectra (a grid folder in the grid_builder layout, float16 fluxes)
   through one run of a cheap statistics pipeline, with 1 and 2 local workers, each run in a
   fresh subprocess: throughput, peak RSS of the runner process and of its workers, and the
   runner's RSS sampled during the run (flat memory means no growth with spectra done).

Usage: ``python bench/runner.py [--quick] [--out bench/results/runner.json]``; scratch under
``$TMPDIR/runner_bench`` (about 0.4 GB for the 20,000-spectrum grid).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.labels.pipeline import FieldInfo, register_pipeline

N_PIXELS = 8575


@register_pipeline("bench_cnn")
class BenchCNNPipeline:
    """log-flux -> Conv1d(1,8,k15) -> ELU -> MaxPool(4) -> Conv1d(8,16,k15) -> ELU -> AdaptiveAvgPool(64)
    -> Linear(1024, 3): a small stand-in network with fixed random weights (cost, not physics)."""

    name = "bench_cnn"
    version = "bench-cnn-1"
    fields = {"teff": FieldInfo("K", "stand-in output (random network): 4500 K + 500 K x out0"),
              "logg": FieldInfo("dex", "stand-in output: 2.5 + out1"),
              "fe_h": FieldInfo("dex", "stand-in output: out2"),
              "flag_bad": FieldInfo("", "non-finite output", "bool")}

    def __init__(self):
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(1, 8, 15, padding=7), torch.nn.ELU(), torch.nn.MaxPool1d(4),
            torch.nn.Conv1d(8, 16, 15, padding=7), torch.nn.ELU(), torch.nn.AdaptiveAvgPool1d(64),
            torch.nn.Flatten(), torch.nn.Linear(1024, 3)).eval()

    def process(self, spectra):
        flux = torch.as_tensor(np.stack([s.flux for s in spectra]), dtype=torch.float32)
        with torch.inference_mode():
            out = self.net(torch.log(flux.clamp_min(1e-6))[:, None, :]).double().numpy()
        ok = np.isfinite(out).all(axis=1)
        return [{"teff": 4500.0 + 500.0 * o[0], "logg": 2.5 + o[1], "fe_h": o[2], "flag_bad": not g,
                 "reason": "" if g else "non-finite output"} for o, g in zip(out, ok)]


@register_pipeline("bench_stats")
class BenchStatsPipeline:
    """Cheap vectorised statistics of the flux (median, spread): the runner's cost dominates."""

    name = "bench_stats"
    version = "bench-stats-1"
    fields = {"median_flux": FieldInfo("", "median flux"), "mad_flux": FieldInfo("", "median absolute deviation")}

    def process(self, spectra):
        flux = np.stack([s.flux for s in spectra])
        med = np.median(flux, axis=1)
        mad = np.median(np.abs(flux - med[:, None]), axis=1)
        return [{"median_flux": m, "mad_flux": d, "reason": ""} for m, d in zip(med, mad)]


def write_apstars(folder: Path, n: int) -> list[Path]:
    from stellarnn.spectra import write_apstar

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"apStar-bench-{i:05d}.fits"
        if not p.exists():
            flux = 1.0 + 0.02 * rng.standard_normal(N_PIXELS)
            write_apstar(p, flux, np.full(N_PIXELS, 0.02), header={"OBJID": f"bench{i}"})
        paths.append(p)
    return paths


def write_grid(folder: Path, n: int, chunk: int = 500) -> Path:
    """Grid folder in the grid_builder layout (uncompressed float16 chunks), n spectra, all ok."""
    import h5py

    done = folder / "done"
    if done.exists() and done.read_text() == str(n):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "chunks").mkdir(parents=True)
    (folder / "pending").mkdir()
    (folder / "spec.json").write_text(json.dumps({"spec": {"name": "bench", "n": n}}))
    rng = np.random.default_rng(2)
    base = (1.0 - 0.3 * rng.random(N_PIXELS)).astype(np.float32)
    for k in range(-(-n // chunk)):
        idx = np.arange(k * chunk, min((k + 1) * chunk, n))
        flux = (base + 0.01 * rng.standard_normal((len(idx), N_PIXELS), dtype=np.float32)).astype(np.float16)
        with h5py.File(folder / "chunks" / f"chunk_{k:04d}.h5", "w") as h:
            h["index"] = idx
            h["flux"] = flux
            h["status"] = np.full(len(idx), b"ok", dtype="S8")
    done.write_text(str(n))
    return folder


def bench_pipeline(name: str) -> tuple[str, dict]:
    """(registered pipeline name, its keyword arguments): the shipped weights when present."""
    if name == "bench_cnn":
        return name, {}
    weights = Path(__file__).resolve().parents[1] / "weights" / name / f"{name}.pt"
    if not weights.is_file():
        return "bench_cnn", {}
    return name, {"weights": str(weights)}


def direct_run(paths, batch_size: int, pipeline: str, kwargs: dict) -> float:
    """Baseline: read every file and call the pipeline directly in batches (no runner, no database)."""
    from stellarnn.labels.pipeline import get_pipeline
    from stellarnn.spectra import read_apstar

    pipe = get_pipeline(pipeline, **kwargs)
    t0 = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        spectra = [read_apstar(p).combined for p in paths[i:i + batch_size]]
        rows = pipe.process(spectra)
        assert len(rows) == len(spectra)
    return time.perf_counter() - t0


def runner_run(paths, batch_size: int, workers: int, db: Path, pipeline: str, kwargs: dict) -> dict:
    from stellarnn.runner.engine import run_pipeline

    db.unlink(missing_ok=True)
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rep = run_pipeline(pipeline, [str(p) for p in paths], f"sqlite:///{db}", batch_size=batch_size,
                       workers=workers, pipeline_kwargs=kwargs, progress=False)
    wall = time.perf_counter() - t0
    assert rep.n_rows == len(paths) and rep.status == "finished"
    return {"wall": wall, "process": rep.process_seconds, "read": rep.read_seconds, "write": rep.write_seconds}


def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def child_scale_run(grid: str, workers: int, db: str, batch_size: int) -> dict:
    """One 20,000-spectrum run in this (fresh) process; samples RSS of itself and its workers."""
    import psutil

    from stellarnn.runner.engine import run_pipeline

    samples = []
    stop = threading.Event()
    me = psutil.Process()

    def sample():
        t0 = time.perf_counter()
        while not stop.is_set():
            kids = 0.0
            for c in me.children(recursive=True):
                try:
                    kids = max(kids, c.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
            samples.append((time.perf_counter() - t0, rss_mb(), kids))
            stop.wait(1.0)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    rep = run_pipeline("bench_stats", [grid], f"sqlite:///{db}", batch_size=batch_size, workers=workers,
                       progress=False)
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    parent = [s[1] for s in samples]
    q = max(1, len(parent) // 10)
    return {"workers": workers, "n_spectra": rep.n_spectra, "n_rows": rep.n_rows, "wall_s": wall,
            "throughput_spectra_per_s": rep.n_spectra / wall,
            "peak_rss_runner_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_worker_mb": max((s[2] for s in samples), default=float("nan")),
            "rss_runner_first_10pct_mb": statistics.median(parent[:q]) if parent else None,
            "rss_runner_last_10pct_mb": statistics.median(parent[-q:]) if parent else None,
            "rss_samples": [[round(t, 1), round(a, 1), round(b, 1)] for t, a, b in samples[::max(1, len(samples) // 40)]],
            "worker_seconds": {"read": rep.read_seconds, "process": rep.process_seconds},
            "write_seconds": rep.write_seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "runner.json"))
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test of the script)")
    ap.add_argument("--pipeline", default="apogeenet", help="pipeline for the overhead runs (apogeenet, astronn, "
                    "bench_cnn); its shipped weights are used")
    ap.add_argument("--child", nargs=4, metavar=("GRID", "WORKERS", "DB", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.child:
        grid, workers, db, batch = args.child
        print(json.dumps(child_scale_run(grid, int(workers), db, int(batch))))
        return 0

    load_start = os.getloadavg()
    scratch = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "runner_bench"
    n_files, repeats, n_scale = (48, 2, 2000) if args.quick else (256, 3, 20000)
    batch = 32
    paths = write_apstars(scratch / "apstar", n_files)
    pipeline, kwargs = bench_pipeline(args.pipeline)
    direct_run(paths[:batch], batch, pipeline, kwargs)  # warm caches and imports
    direct = [direct_run(paths, batch, pipeline, kwargs) for _ in range(repeats)]
    db = scratch / "overhead.sqlite"
    inline = [runner_run(paths, batch, 0, db, pipeline, kwargs) for _ in range(repeats)]
    start1 = [runner_run(paths[:1], batch, 1, db, pipeline, kwargs) for _ in range(repeats)]
    pool1 = [runner_run(paths, batch, 1, db, pipeline, kwargs) for _ in range(repeats)]
    pool2 = [runner_run(paths, batch, 2, db, pipeline, kwargs) for _ in range(repeats)]
    med = statistics.median
    direct_s = med(direct)
    startup = med(r["wall"] for r in start1)
    overhead = {
        "pipeline": pipeline, "pipeline_kwargs": {k: str(Path(v).name) for k, v in kwargs.items()},
        "torch_threads_per_process": 1, "n_spectra": n_files, "batch_size": batch, "repeats": repeats,
        "direct_read_and_process_s": direct_s,
        "runner_inline_s": med(r["wall"] for r in inline),
        "runner_inline_write_s": med(r["write"] for r in inline),
        "runner_1_worker_process_s": med(r["wall"] for r in pool1),
        "runner_1_worker_busy_s": med(r["read"] + r["process"] for r in pool1),
        "worker_start_s": startup,
        "runner_2_workers_process_s": med(r["wall"] for r in pool2),
        "note": "worker_start_s: wall time of a one-file run with one worker (spawn, imports, weights, one "
                "spectrum): paid once per run, so it vanishes on survey-size runs",
    }
    overhead["overhead_inline"] = overhead["runner_inline_s"] / direct_s - 1
    overhead["overhead_1_worker_process"] = overhead["runner_1_worker_process_s"] / direct_s - 1
    overhead["overhead_1_worker_process_after_start"] = (overhead["runner_1_worker_process_s"] - startup) / direct_s - 1
    overhead["speedup_2_vs_1_workers"] = overhead["runner_1_worker_process_s"] / overhead["runner_2_workers_process_s"]
    grid = write_grid(scratch / f"grid{n_scale}", n_scale)
    scale = []
    for workers in (1, 2):
        db = scratch / f"scale_{workers}.sqlite"
        for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            f.unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, __file__, "--child", str(grid), str(workers), str(db), "200"],
                              capture_output=True, text=True, check=True)
        scale.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg(),
                    "load_average_at_start": load_start,
                    "note": "shared 2-core machine: absolute times are noisy; compare ratios"},
        "overhead": overhead,
        "scale": {"grid_spectra": n_scale, "batch_size": 200, "pipeline": "bench_stats", "runs": scale,
                  "throughput_ratio_2_vs_1_workers": scale[1]["throughput_spectra_per_s"]
                  / scale[0]["throughput_spectra_per_s"]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in overhead.items()}, indent=2))
    for r in scale:
        print(f"workers={r['workers']}: {r['n_spectra']} spectra in {r['wall_s']:.1f} s "
              f"({r['throughput_spectra_per_s']:.0f}/s), peak RSS runner {r['peak_rss_runner_mb']:.0f} MB, "
              f"worker {r['peak_rss_worker_mb']:.0f} MB; runner RSS first/last 10%: "
              f"{r['rss_runner_first_10pct_mb']:.0f}/{r['rss_runner_last_10pct_mb']:.0f} MB")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
