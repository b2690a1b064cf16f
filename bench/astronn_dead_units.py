"""Dead ReLU units in AstroNN's dense trunk: how many of dense1's 192 and dense2's 96 units are ever active.

A unit whose pre-activation is <= 0 for every input passes nothing through its ReLU and gets no gradient: it is
dead for good. The spectra are the first ``--per-population`` held-out stars of each population at S/N ``--snr``
(:func:`stellarnn.labels.accuracy_guard.guard_subset`). They go through the pipeline with ``--mc-passes`` MC
dropout passes, and a forward hook on ``dense1`` and ``dense2`` ORs ``pre-activation > 0`` over every row the
layers see. The retrain's AstroNN attempts (``retrain/v4/attempts/README.md``) stopped improving after 1-6 epochs;
this measures whether their trunk had died.

Two more kinds of network are measured on the same spectra, normalised with the subset's own mean spectrum in
place of a checkpoint's training mean (the held-out grid is drawn from the training prior; with either of these
options each ``--weights`` checkpoint is also counted that way, ``direct_subset_mean``, to show what the
approximation changes): ``--at-init`` new networks, with the published
initialisation (:meth:`~stellarnn.labels.astronn.network.ApogeeBCNNCensored.init_published`) and with PyTorch's
default one, for a few seeds; and ``--resume NAME=PATH`` a training's resume file (its current and best weights),
to watch a training while it runs.  These go through the network once, without dropout.  For a resume file the
bench also reports each label's robust scatter (z-scored with the held-out grid's label statistics, which
stand in for the training's) of the deterministic prediction (dropout off, what the validation scored before
0.5.26) and of the mean of ``--mc-passes`` Monte-Carlo dropout passes (what the pipeline predicts), with their
geometric mean over labels.  Those statistics differ from a training's own (its emulator spectra and split), which
offsets every z-score a little: compare epochs and runs with these figures, not with the trainer's validation
values.

Run: ``.venv/bin/python bench/astronn_dead_units.py [--weights NAME=PATH ...] [--resume NAME=PATH ...]
[--at-init N]``
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from stellarnn.labels.accuracy_guard import guard_subset
from stellarnn.labels.pipeline import get_pipeline

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("dense1", "dense2")


def active_units(pipe, spectra) -> dict:
    """Per dense layer: units ever active (pre-activation > 0) over every row it saw, and the rows."""
    seen: dict = {}

    def record(name, out):
        rows = out.detach().reshape(-1, out.shape[-1])
        on = (rows > 0).any(dim=0)
        seen[name] = (seen[name][0] | on, seen[name][1] + rows.shape[0]) if name in seen else (on, rows.shape[0])

    hooks = [getattr(pipe.model, n).register_forward_hook(lambda m, i, o, n=n: record(n, o)) for n in LAYERS]
    try:
        pipe.process(spectra)
    finally:
        for h in hooks:
            h.remove()
    return {n: {"units": int(seen[n][0].numel()), "ever_active": int(seen[n][0].sum()), "rows_seen": int(seen[n][1])}
            for n in LAYERS}


def direct_active_units(model, x) -> dict:
    """Per dense layer of ``model`` (eval mode, no dropout): units ever active over the rows of ``x``."""
    seen = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o)) for n in LAYERS]
    mc = model.mc_dropout
    try:
        model.eval()
        model.mc_dropout = False
        with torch.inference_mode():
            model(x)
    finally:
        model.mc_dropout = mc
        for h in hooks:
            h.remove()
    return {n: {"units": int(seen[n].shape[1]), "ever_active": int((seen[n] > 0).any(dim=0).sum()),
                "active_for_over_90pc_of_spectra": int(((seen[n] > 0).float().mean(dim=0) > 0.9).sum()),
                "rows_seen": int(seen[n].shape[0])} for n in LAYERS}


def subset_inputs(sub):
    """Network inputs of the subset, Brackett cores masked at the true Teff, minus the subset's mean spectrum."""
    import numpy as np

    from stellarnn.labels.astronn.preprocessing import mask_brackett_normalised, network_input, normalise_apstar

    flux = np.stack([s.flux for s in sub["spectra"]])
    ivar = np.stack([s.ivar for s in sub["spectra"]])
    normed = mask_brackett_normalised(normalise_apstar(flux, ivar), sub["truth"]["teff"]).numpy()
    return network_input(normed, normed.mean(axis=0)).float()


def at_init(x, n_seeds: int) -> dict:
    """Ever-active units of new networks: the published initialisation against PyTorch's defaults."""
    from stellarnn.labels.astronn.network import build_astronn

    out = {"published": [], "pytorch_default": []}
    for seed in range(n_seeds):
        torch.manual_seed(seed)
        model, _ = build_astronn()
        out["published"].append(direct_active_units(model, x))
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
                module.reset_parameters()
        out["pytorch_default"].append(direct_active_units(model, x))
    for name, runs in out.items():
        print(f"at init, {name}:", [f"{r['dense1']['ever_active']}/{r['dense1']['units']}" for r in runs], flush=True)
    return out


def held_out_z_truth(sub):
    """The subset's AstroNN labels, z-scored with the statistics of the whole held-out grid."""
    import numpy as np

    from stellarnn.labels.astronn.preprocessing import label_statistics
    from stellarnn.labels.astronn.training import grid_labels_to_astronn
    from stellarnn.synthesis.grid_builder import load_grid

    grid = load_grid(sub["grid"])
    labels = grid_labels_to_astronn(np.asarray(grid["labels"]), grid["label_names"])
    mean, std = label_statistics(labels)
    rows = np.searchsorted(np.asarray(grid["index"]), sub["index"])
    return (labels[rows] - mean) / std


def label_scatter(model, x, z_truth, mc_passes: int) -> dict:
    """Robust scatter per label of (prediction - truth) in z units: deterministic and MC-dropout mean."""
    import numpy as np

    from stellarnn.labels.astronn.network import OUTPUT_LABELS
    from stellarnn.labels.astronn.training import robust_scatter, validation_values

    out = {}
    for name, passes in (("deterministic", 0), ("mc_mean", mc_passes)):
        with torch.inference_mode():
            value = validation_values(model, x, passes).numpy()
        scatter = robust_scatter(value - z_truth)
        out[name] = {**{n: round(float(v), 4) for n, v in zip(OUTPUT_LABELS, scatter)},
                     "geometric_mean": round(float(np.exp(np.mean(np.log(scatter)))), 4)}
    return out


def in_training(x, path, z_truth=None, mc_passes: int = 10) -> dict:
    """Ever-active units of a resume file's current and best weights."""
    from stellarnn.labels.astronn.network import build_astronn

    state = torch.load(path, map_location="cpu", weights_only=True)
    model, _ = build_astronn()
    out = {"resume_file": str(path), "epoch": int(state["epoch"]), "val_loss": list(state["history"]["val_loss"]),
           "best_epoch": int(state["history"]["best_epoch"])}
    for key in ("model", "best_state"):
        model.load_state_dict(state[key], strict=True)
        out[key] = direct_active_units(model, x)
        if z_truth is not None:
            out[key]["label_scatter"] = label_scatter(model, x, z_truth, mc_passes)
    print(path, "epoch", out["epoch"], {k: f"{out[k]['dense1']['ever_active']}/{out[k]['dense1']['units']}"
                                         for k in ("model", "best_state")}, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", default=[], help="NAME=PATH of each AstroNN checkpoint")
    ap.add_argument("--resume", nargs="+", default=[], help="NAME=PATH of a training's resume file")
    ap.add_argument("--at-init", type=int, default=0, metavar="N",
                    help="also count the units of N new networks (seeds 0..N-1), published and PyTorch initialisation")
    ap.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    ap.add_argument("--per-population", type=int, default=20)
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--mc-passes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "astronn_dead_units.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sub = guard_subset(args.test_grid, per_population=args.per_population, snr=args.snr, seed=3)
    results = {}
    x = subset_inputs(sub) if args.resume or args.at_init else None
    for item in args.weights:
        name, path = item.split("=", 1)
        pipe = get_pipeline("astronn", weights=path, ood_emulator=False, mc_passes=args.mc_passes)
        results[name] = {"weights": path, **active_units(pipe, sub["spectra"])}
        if x is not None:
            results[name]["direct_subset_mean"] = direct_active_units(pipe.model, x)
        print(name, {n: f"{results[name][n]['ever_active']} of {results[name][n]['units']}" for n in LAYERS},
              flush=True)
    z_truth = held_out_z_truth(sub) if args.resume else None
    resumed = {item.split("=", 1)[0]: in_training(x, item.split("=", 1)[1], z_truth, max(args.mc_passes, 10))
               for item in args.resume}
    init = at_init(x, args.at_init) if args.at_init else None
    Path(args.out).write_text(json.dumps({
        "benchmark": "astronn_dead_units", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "test_grid": args.test_grid,
        "n_spectra": len(sub["spectra"]), "snr": args.snr, "mc_passes": args.mc_passes, "checkpoints": results,
        **({"resume_files": resumed} if resumed else {}), **({"at_init": init} if init else {}),
        **({"note": "resume files and new networks: inputs minus the subset's own mean spectrum, one pass "
                    "without dropout"} if resumed or init else {})},
        indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
