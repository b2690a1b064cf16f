"""Benchmark the APOGEENet and AstroNN label pipelines; writes bench/results/labels.json.

Measured in one run (medians over ``--repeats``):

* throughput of each pipeline end to end (``Pipeline.process`` on apStar spectra: preprocessing,
  network, uncertainties, noise model, flags) in spectra per second: AstroNN (published = shipped
  widths) with 100 MC-dropout passes; APOGEENet shipped (small) configuration with 20 noise
  draws, and the published ~72.6 M-parameter configuration on a few spectra;
* AstroNN's factorised MC dropout (layers before the first dropout computed once per spectrum)
  against the naive form (every pass through the whole network), same number of passes;
* with ``--astronn-weights`` / ``--apogeenet-weights`` and ``--test-grid``: accuracy on held-out
  PySME spectra at S/N 50, 100, 200 (robust scatter, bias, std of (prediction - truth)/e);
* both pipelines on the two real apStar spectra, next to the header Doppler labels.

Without trained weights, timings use randomly initialised networks of the same size (speed does
not depend on weight values) and accuracy is recorded as not measured.  The least-squares
(Payne) fitter the issue asks to compare against does not exist yet in stellarnn; its ratio is
recorded as not measured.  Timings are wall-clock on this machine with ``--threads`` torch
threads; the load average at start and end is recorded (other jobs share the CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.data import fetch
from stellarnn.labels.apogeenet.network import APOGEENET_FULL, APOGEENET_SMALL, APOGEENetResNet, count_parameters
from stellarnn.labels.astronn.network import OUTPUT_LABELS, build_astronn
from stellarnn.labels.pipeline import get_pipeline
from stellarnn.spectra import Spectrum, read_apstar
from stellarnn.train import save_checkpoint


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def real_spectra() -> tuple[list[Spectrum], list[dict]]:
    stars = [read_apstar(fetch("apstar-2M17335483")), read_apstar(fetch("apstar-2M19485057"))]
    spectra = [s.combined for s in stars]
    return spectra, [{k: s.header.get(k) for k in ("apogee_id", "snr", "rv_teff", "rv_logg", "rv_feh")} for s in stars]


def test_batch(n: int, seed: int = 0) -> list[Spectrum]:
    """n apStar-like spectra: the real spectra with fresh noise at their own error level."""
    base, _ = real_spectra()
    a = read_apstar(fetch("apstar-2M17335483"))
    base = base + a.visits
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = base[i % len(base)]
        err = np.where(s.ivar > 0, 1 / np.sqrt(np.where(s.ivar > 0, s.ivar, 1)), 0)
        out.append(Spectrum(s.wavelength, s.flux + err * rng.standard_normal(s.flux.size), s.ivar, s.bitmask))
    return out


def random_weights(tmpdir: Path) -> dict:
    torch.manual_seed(0)
    paths = {}
    m, hp = build_astronn()
    paths["astronn"] = save_checkpoint(tmpdir / "astronn.pt", m, "astronn", hp, half=True, normalisation={
        "spectrum_mean": np.ones(7514), "label_mean": np.r_[4500.0, 2.5, np.zeros(20)],
        "label_std": np.r_[500.0, 1.0, 0.2 * np.ones(20)]})
    for name, hp in (("apogeenet_small", APOGEENET_SMALL), ("apogeenet_full", APOGEENET_FULL)):
        paths[name] = save_checkpoint(tmpdir / f"{name}.pt", APOGEENetResNet(**hp), "apogeenet",
                                      {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()}, half=True)
    return paths


def bench_throughput(paths: dict, n_spectra: int, n_full: int, repeats: int) -> dict:
    spectra = test_batch(n_spectra)
    out = {}
    p = get_pipeline("astronn", weights=paths["astronn"], mc_passes=100, batch_size=64)
    p.process(spectra[:2])
    t = _median_time(lambda: p.process(spectra), repeats)
    out["astronn_mc100"] = {"n_spectra": n_spectra, "median_seconds": t, "spectra_per_second": n_spectra / t,
                            "target_spectra_per_second": 50,
                            "parameters": sum(q.numel() for q in p.model.parameters())}
    # factorised vs naive MC dropout on the network alone
    x = torch.randn(16, 7514)
    model = p.model
    model.mc_dropout = True
    with torch.inference_mode():
        t_fact = _median_time(lambda: model.forward_mc(x, 100), repeats)
        t_naive = _median_time(lambda: model(x.repeat_interleave(100, dim=0)), repeats)
    model.mc_dropout = False
    out["astronn_mc_factorised_vs_naive"] = {"n_spectra": 16, "passes": 100, "factorised_seconds": t_fact,
                                             "naive_seconds": t_naive, "speedup": t_naive / t_fact}
    p = get_pipeline("apogeenet", weights=paths["apogeenet_small"], n_draws=20)
    p.process(spectra[:2])
    t = _median_time(lambda: p.process(spectra), repeats)
    out["apogeenet_small_draws20"] = {"n_spectra": n_spectra, "median_seconds": t, "spectra_per_second": n_spectra / t,
                                      "target_spectra_per_second": 20, "config": APOGEENET_SMALL,
                                      "parameters": count_parameters(p.model)}
    p = get_pipeline("apogeenet", weights=paths["apogeenet_full"], n_draws=20)
    t = _median_time(lambda: p.process(spectra[:n_full]), 1)
    out["apogeenet_full_draws20"] = {"n_spectra": n_full, "seconds": t, "spectra_per_second": n_full / t,
                                     "parameters": count_parameters(p.model), "repeats": 1}
    return out


def bench_accuracy(args) -> dict:
    if not (args.test_grid and (args.astronn_weights or args.apogeenet_weights)):
        return {"measured": False, "reason": "no trained weights and/or no held-out PySME test grid given "
                                             "(grids/apogee/test is still being synthesised)"}
    from stellarnn.labels.astronn.training import grid_labels_to_astronn, robust_scatter, synthetic_observations
    from stellarnn.spectra import apogee_wavelength
    from stellarnn.synthesis.grid_builder import load_grid

    grid = load_grid(args.test_grid)
    wl = apogee_wavelength()
    result = {"measured": True, "test_grid": args.test_grid, "n_test": int(len(grid["index"]))}
    for snr in (50, 100, 200):
        obs = synthetic_observations(grid, snr, seed=snr)
        truth = grid_labels_to_astronn(obs["labels"], obs["label_names"])
        spectra = [Spectrum(wl, f, iv) for f, iv in zip(obs["flux"], obs["ivar"])]
        for name, w in (("astronn", args.astronn_weights), ("apogeenet", args.apogeenet_weights)):
            if not w:
                continue
            rows = get_pipeline(name, weights=w).process(spectra)
            labels = OUTPUT_LABELS if name == "astronn" else ("teff", "logg", "fe_h")
            per = {}
            for lab in labels:
                pred = np.array([r[lab] for r in rows])
                err = np.array([r[f"e_{lab}"] for r in rows])
                res = pred - truth[:, OUTPUT_LABELS.index(lab)]
                per[lab] = {"robust_scatter": float(robust_scatter(res[:, None])[0]), "bias": float(np.nanmedian(res)),
                            "std_z": float(np.nanstd(res / err))}
            result.setdefault(name, {})[f"snr_{snr}"] = per
    return result


def bench_real(paths: dict, args) -> dict:
    spectra, headers = real_spectra()
    out = {"headers": headers, "trained": bool(args.astronn_weights and args.apogeenet_weights)}
    for name, w in (("astronn", args.astronn_weights or paths["astronn"]),
                    ("apogeenet", args.apogeenet_weights or paths["apogeenet_small"])):
        rows = get_pipeline(name, weights=w).process(spectra)
        out[name] = [{k: r[k] for k in ("teff", "e_teff", "logg", "e_logg", "fe_h", "e_fe_h", "result_flags")}
                     for r in rows]
    if not out["trained"]:
        out["note"] = "randomly initialised networks: shows that both pipelines run on real apStar; values meaningless"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-spectra", type=int, default=32)
    ap.add_argument("--n-full", type=int, default=2, help="spectra for the full-size APOGEENet timing")
    ap.add_argument("--astronn-weights")
    ap.add_argument("--apogeenet-weights")
    ap.add_argument("--test-grid")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "labels.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                          "torch": torch.__version__, "load_average_start": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="labels_bench") as tmp:
        paths = random_weights(Path(tmp))
        paths.update({k: v for k, v in (("astronn", args.astronn_weights),) if v})
        if args.apogeenet_weights:
            paths["apogeenet_small"] = args.apogeenet_weights
        result["throughput"] = bench_throughput(paths, args.n_spectra, args.n_full, args.repeats)
        result["accuracy"] = bench_accuracy(args)
        result["least_squares_fitter"] = {"measured": False,
                                          "reason": "the Payne-style fitter (issue 5) is not in stellarnn yet"}
        result["real_apstar"] = bench_real(paths, args)
    result["machine"]["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps(result["throughput"], indent=1, default=float))


if __name__ == "__main__":
    main()
