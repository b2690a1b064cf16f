"""What the pipelines' two-pass Brackett mask costs near its 5500 K switch (AstroNN).

In training, the H I Brackett mask (:mod:`stellarnn.spectra.brackett_mask`) is chosen from each star's *true*
Teff: wide Br 11-13 windows below ``COOL_TEFF`` = 5500 K, the cores only above.  The pipeline does not know the
true Teff: pass 1 masks every spectrum as a cool star, and spectra whose pass-1 Teff is >= 5500 K are predicted
again with the cores only (``AstroNNPipeline.predict_brackett_masked``).  A network may learn "wide windows
masked => cool"; then pass 1 pulls warm stars below the switch and they keep a cool-star prediction.

For held-out stars of the new grid with true Teff in ``--teff-range``, observed at S/N ``--snr``, this writes per
Teff bin:

* ``pass1_wrong_side``: fraction whose pass-1 Teff is on the other side of 5500 K from the true Teff;
* the robust scatter and median of (Teff - true) for the pipeline's two passes (``two_pass``), for pass 1
  alone (``pass1``, every star with the wide windows) and for the mask chosen at the true Teff (``oracle``, as
  in training), the same for log g and [Fe/H].

``two_pass`` close to ``oracle`` means the train/inference mismatch costs nothing measurable; ``pass1`` far
from ``oracle`` for warm stars means the wide windows alone mislead the network.

Run: ``.venv/bin/python bench/brackett_two_pass.py --weights retrain/v4/weights/astronn/astronn.pt``
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.labels.astronn.pipeline import AstroNNPipeline
from stellarnn.labels.astronn.preprocessing import mask_brackett_normalised
from stellarnn.labels.astronn.training import robust_scatter, synthetic_observations
from stellarnn.labels.spectrum_information import assess_information
from stellarnn.labels.astronn.network import OUTPUT_LABELS
from stellarnn.spectra.brackett_mask import COOL_TEFF
from stellarnn.synthesis.grid_builder import grid_rows, load_grid

REPO = Path(__file__).resolve().parents[1]
LABELS = {"teff": "teff", "logg": "logg", "fe_h": "m_h"}  # output label -> grid label


def summary(pred: dict, truth: dict, rows: np.ndarray) -> dict:
    out = {}
    for lab in LABELS:
        d = pred[lab][rows] - truth[lab][rows]
        out[lab] = {"robust_scatter": float(robust_scatter(d)), "median": float(np.median(d)),
                    "max_abs": float(np.max(np.abs(d)))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="AstroNN checkpoint trained with the Brackett mask")
    ap.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    ap.add_argument("--teff-range", type=float, nargs=2, default=(4900.0, 6500.0))
    ap.add_argument("--bin-edges", type=float, nargs="+", default=(4900, 5200, 5400, 5500, 5600, 5800, 6500))
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--mc-passes", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "brackett_two_pass.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    grid = load_grid(args.test_grid)
    names = list(grid["label_names"])
    labels = np.asarray(grid["labels"], dtype=float)
    t = labels[:, names.index("teff")]
    chosen = np.flatnonzero((t >= args.teff_range[0]) & (t < args.teff_range[1]))
    obs = synthetic_observations(grid_rows(grid, chosen), args.snr, seed=11)
    truth = {lab: labels[chosen, names.index(g)] for lab, g in LABELS.items()}
    pipe = AstroNNPipeline(args.weights, mc_passes=args.mc_passes, ood_emulator=False)
    if not pipe.brackett_mask:
        raise SystemExit(f"{args.weights} was trained without the Brackett mask: nothing to measure")
    info = assess_information(obs["flux"], obs["ivar"], np.zeros(obs["flux"].shape, dtype=np.int64))
    if not np.all(info.usable):  # the pipeline would not label these: they must not enter the comparison
        raise SystemExit(f"{int(np.sum(~np.asarray(info.usable)))} of {len(chosen)} spectra fail the information "
                         f"checks at S/N {args.snr:g}, e.g. {[r for r in info.reasons if r][0]!r}")
    x = info.continuum.flux.to(torch.float64)
    seeds = list(range(len(chosen)))
    j = {lab: OUTPUT_LABELS.index(lab) for lab in LABELS}
    t0 = time.perf_counter()
    runs = {"pass1": pipe.predict_normalised(mask_brackett_normalised(x, None), seeds),
            "two_pass": pipe.predict_brackett_masked(x, seeds),
            "oracle": pipe.predict_normalised(mask_brackett_normalised(x, truth["teff"]), seeds)}
    seconds = time.perf_counter() - t0
    pred = {name: {lab: r["value"][:, k] for lab, k in j.items()} for name, r in runs.items()}
    edges = np.asarray(args.bin_edges, dtype=float)
    bins = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        rows = np.flatnonzero((truth["teff"] >= lo) & (truth["teff"] < hi))
        if len(rows) < 5:
            continue
        wrong = (pred["pass1"]["teff"][rows] >= COOL_TEFF) != (truth["teff"][rows] >= COOL_TEFF)
        bins[f"{lo:.0f}-{hi:.0f}"] = {"n": int(len(rows)), "pass1_wrong_side": float(wrong.mean()),
                                     **{name: summary(p, truth, rows) for name, p in pred.items()}}
        b = bins[f"{lo:.0f}-{hi:.0f}"]
        print(f"{lo:.0f}-{hi:.0f} K n={len(rows):3d} pass-1 wrong side {wrong.mean():.2f}  Teff scatter/median: "
              + "  ".join(f"{name} {b[name]['teff']['robust_scatter']:.0f}/{b[name]['teff']['median']:+.0f}"
                          for name in pred), flush=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "brackett_two_pass", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "weights": args.weights,
        "test_grid": args.test_grid, "snr": args.snr, "mc_passes": args.mc_passes, "cool_teff": COOL_TEFF,
        "n_stars": int(len(chosen)), "predict_seconds_three_runs": seconds,
        "measure": "per true-Teff bin: fraction of pass-1 Teff on the wrong side of cool_teff; robust scatter "
                   "(1.4826 MAD), median and max |error| of Teff [K], log g, [Fe/H] (= grid [M/H]) for pass 1 "
                   "alone, the pipeline's two passes and the mask at the true Teff (as in training)",
        "bins": bins}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
