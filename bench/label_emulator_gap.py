"""How much of a label network's error on PySME spectra comes from training on emulator spectra.

The retrained networks see ~11,000 PySME spectra and ~57,000 emulator spectra per epoch (the emulator's
held-out error is <= 0.3 sigma at S/N 100 in every population, ``emulator_population_gate``).  An emulator
error that varies smoothly with the labels is a systematic the network can learn as if it were physics; on
PySME spectra it then shows as extra scatter or bias.

For the first ``--per-population`` held-out stars of each population (:mod:`stellarnn.synthesis.populations`)
this observes two spectra with the *same* continuum and the *same* noise draw (S/N ``--snr``): the PySME
spectrum of the held-out grid and the emulator's spectrum at the star's true labels (all 23, broadening
included).  Per population and label (Teff, log g, [Fe/H]; for AstroNN also the [X/H] of issue 19's abundance
targets, ``ABUNDANCES``, truth [X/M] + [M/H]) it writes the robust scatter (1.4826 MAD) and median of
(prediction - truth) on each, and the robust scatter and median of the paired difference
prediction(PySME) - prediction(emulator), which holds only what the emulator's error does to the labels, as
well as the median rms (emulator - PySME) in units of the S/N-100 noise.  A network whose scatter on emulator
spectra is far below that on PySME spectra is limited by the emulator's systematics, not by the noise.

Run: ``.venv/bin/python bench/label_emulator_gap.py --weights NAME=PATH [NAME=PATH ...] [--pipeline astronn]``
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.labels.accuracy_guard import first_per_population
from stellarnn.labels.astronn.training import robust_scatter, synthetic_observations
from stellarnn.labels.pipeline import get_pipeline
from stellarnn.spectra import Spectrum, apogee_wavelength
from stellarnn.synthesis.emulator import load_emulator
from stellarnn.synthesis.grid_builder import BROADENING_LABELS, LABEL_NAMES, grid_rows, load_grid
from stellarnn.labels.accuracy_guard import ABUNDANCE_TARGETS
from stellarnn.synthesis.populations import POPULATIONS

REPO = Path(__file__).resolve().parents[1]
LABELS = {"teff": "teff", "logg": "logg", "fe_h": "m_h"}  # pipeline field -> grid label
#: AstroNN [X/H] with an issue-19 target (giants C, N, O, Mg, Al, Si, Ca, Mn, Ni; dwarfs Mg, Si, Ca, Ni)
ABUNDANCES = tuple(ABUNDANCE_TARGETS["giants"])


def truth_labels(labels: np.ndarray, names: list[str], pipeline: str) -> dict:
    """Pipeline field -> true value per star: Teff, log g, [Fe/H] = [M/H], and for AstroNN [X/H] = [X/M] + [M/H]."""
    out = {lab: labels[:, names.index(g)] for lab, g in LABELS.items()}
    if pipeline == "astronn":
        out.update({x: labels[:, names.index(x[:-2] + "_m")] + labels[:, names.index("m_h")] for x in ABUNDANCES})
    return out


def predict(pipe, obs, fields) -> dict:
    wl = apogee_wavelength()
    rows = pipe.process([Spectrum(wl, f, iv) for f, iv in zip(obs["flux"], obs["ivar"])])
    return {lab: np.array([np.nan if r.get(lab) is None else float(r[lab]) for r in rows]) for lab in fields}


def stats(d: np.ndarray) -> dict:
    d = d[np.isfinite(d)]
    return {"robust_scatter": float(robust_scatter(d)), "median": float(np.median(d)), "n": int(d.size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True, help="NAME=PATH of each checkpoint")
    ap.add_argument("--pipeline", default="astronn", choices=("astronn", "apogeenet"))
    ap.add_argument("--emulator", default=str(REPO / "retrain" / "v4" / "weights" / "emulator" / "payne_apogee.pt"))
    ap.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    ap.add_argument("--per-population", type=int, default=60)
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "label_emulator_gap.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    grid = load_grid(args.test_grid)
    names = list(grid["label_names"])
    labels = np.asarray(grid["labels"], dtype=float)
    chosen, pop = first_per_population(grid, args.per_population, where=args.test_grid)
    sub = grid_rows(grid, chosen)
    emulator, _ = load_emulator(args.emulator)
    n_lab = emulator.label_min.numel()
    emulator_names = list((LABEL_NAMES + BROADENING_LABELS)[:n_lab])
    if names[:n_lab] != emulator_names:
        raise SystemExit(f"the grid's labels {names} are not the emulator's {emulator_names}")
    with torch.inference_mode():
        emu_flux = emulator(torch.as_tensor(labels[chosen, :n_lab], dtype=torch.float32)).double().numpy()
    emulated = dict(sub, flux=emu_flux)  # the grid's own continuum: only the line spectrum differs
    obs = {"pysme": synthetic_observations(sub, args.snr, seed=5),
           "emulator": synthetic_observations(emulated, args.snr, seed=5)}
    rms_sigma = np.sqrt(np.mean((emu_flux - np.asarray(sub["flux"], dtype=float)) ** 2, axis=1)) * 100.0
    truth = truth_labels(labels[chosen], names, args.pipeline)
    p_chosen = pop[chosen]
    results = {}
    for item in args.weights:
        name, path = item.split("=", 1)
        pipe = get_pipeline(args.pipeline, weights=path, ood_emulator=False)
        pred = {k: predict(pipe, o, truth) for k, o in obs.items()}
        per = {}
        for p in POPULATIONS:
            rows = p_chosen == p
            per[p] = {"n": int(rows.sum()), "emulator_rms_over_sigma100_median": float(np.median(rms_sigma[rows]))}
            for lab in truth:
                per[p][lab] = {**{k: stats(pred[k][lab][rows] - truth[lab][rows]) for k in obs},
                               "pysme_minus_emulator": stats(pred["pysme"][lab][rows] - pred["emulator"][lab][rows])}
            e = per[p]
            line = []
            for lab in LABELS:
                diff = e[lab]["pysme_minus_emulator"]
                line.append(f"{lab}: pysme {e[lab]['pysme']['robust_scatter']:.3g} "
                            f"emu {e[lab]['emulator']['robust_scatter']:.3g} "
                            f"diff {diff['robust_scatter']:.3g}/{diff['median']:+.3g}")
            print(f"{name} {p:18s} " + "  ".join(line), flush=True)
            extra = [f"{x[:-2]} {e[x]['pysme']['robust_scatter']:.3f}/{e[x]['emulator']['robust_scatter']:.3f}"
                     for x in truth if x not in LABELS]
            if extra:
                print(f"{'':{len(name) + 20}s}[X/H] pysme/emu: " + ", ".join(extra), flush=True)
        results[name] = {"weights": path, "by_population": per}
    Path(args.out).write_text(json.dumps({
        "benchmark": "label_emulator_gap", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "pipeline": args.pipeline,
        "emulator": args.emulator, "test_grid": args.test_grid, "snr": args.snr,
        "per_population": args.per_population,
        "measure": "robust scatter (1.4826 MAD) and median of prediction - truth on PySME and on emulator spectra "
                   "(same continuum, same noise) and of the paired difference; Teff [K], log g, [Fe/H] = grid [M/H], "
                   "AstroNN [X/H] = grid [X/M] + [M/H]",
        "checkpoints": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
