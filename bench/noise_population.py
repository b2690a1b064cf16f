"""Per-population noise models against one global model; writes bench/results/noise_population.json.

Issue 19 asks that (prediction - truth) / e have a standard deviation within 0.8-1.2 in every population
(:mod:`stellarnn.synthesis.populations`) at S/N 50, 100 and 200.  One accuracy floor per label
(:func:`stellarnn.labels.noise_model.calibrate_accuracy_offset`) is fitted to all populations at once, whose
accuracies differ by an order of magnitude.  This bench measures, for each pipeline, in one run:

* the accuracy step fitted on the calibration grid (``--calib-grid``, default ``grids/apogee_like_f0/calib``,
  observed at S/N 50, 100, 200 with the seeds ``stellarnn train calibrate-noise`` uses) once globally, once per
  population (:func:`~stellarnn.labels.noise_model.calibrate_accuracy_by_population`, populations from the
  predicted labels), once per population with the 1/(S/N) term (``by_population_snr``: the spectra's
  error-array S/N, ``snr_error``) and once with the term and the (100/(S/N))^p factor (``by_population_snr_power``,
  what ``calibrate-noise`` fits by default since 0.5.29), all from the checkpoint's stored precision (repeat-pair)
  model, with ``--raise-scale`` for AstroNN as the retrain chain uses it; with ``--calib-emulated N`` also
  ``by_population_snr_emulated``: the term and factor fitted with N emulated stars (``--emulator``) drawn from the
  calibration grid's prior added to the calibration spectra, as ``calibrate-noise --accuracy-emulated N`` does;
* on the held-out grid (``--test-grid``, default ``grids/apogee_like_f0/test``, noise seeds as ``bench/labels.py``),
  the std and the rms of z = (prediction - truth) / e per true population and S/N for Teff, log g, [Fe/H] (AstroNN
  also the median over its 19 abundances) with each model, the bias, and how many (population, S/N, label) cells
  fall within 0.8-1.2, and per cell the robust scatter (1.4826 MAD) of prediction - truth and the median raw
  error (how each follows the S/N).  The std is the issue's measure; it removes the bias, which the calibration
  (a zero-mean likelihood) counts as error, so for a biased network the rms is the one the calibration can bring
  to 1.

The pipelines run once per spectrum; every model is applied to the same raw errors (and S/N).  Nothing is written to
the checkpoints.  Usage: ``python bench/noise_population.py [--astronn-weights W] [--apogeenet-weights W]
[--pipelines astronn|apogeenet ...]``; it draws std z against S/N per model, label and population next to the JSON
(``<out>.<pipeline>.png``; ``--replot JSON`` draws them from an earlier run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SNRS = (50, 100, 200)
MAIN_LABELS = ("teff", "logg", "fe_h")
CALIBRATION_SEED = 12345  # stellarnn train calibrate-noise --seed default: S/N s uses seed 12345 + s


def observe(pipeline, grid, grid_name: str, snr: float, seed: int, cache: Path | None = None):
    """(values, raw errors, truth, grid labels, grid label names) of the pipeline's labels on the grid at one S/N.

    With ``cache`` the pipeline's values and raw errors are kept in (and read back from) an ``.npz`` named by the
    pipeline, its weights' version, the grid and the noise seed, so that a re-analysis does not rerun it.
    """
    from stellarnn.labels.astronn.network import OUTPUT_LABELS
    from stellarnn.labels.astronn.training import grid_labels_to_astronn, synthetic_observations
    from stellarnn.labels.noise_model import accuracy_arrays
    from stellarnn.labels.spectrum_information import error_array_snr
    from stellarnn.spectra import Spectrum, apogee_wavelength

    obs = synthetic_observations(grid, snr, seed)
    labels = list(pipeline.noise_model.labels)
    truth = grid_labels_to_astronn(obs["labels"], obs["label_names"])[:, [OUTPUT_LABELS.index(n) for n in labels]]
    grid_name = "+".join("_".join(Path(g).resolve().parts[-2:]) for g in grid_name.split("+"))
    key = f"{pipeline.name}-{pipeline.version}-{grid_name}-{len(truth)}-snr{snr:g}-seed{seed}.npz"
    if cache is not None and (cache / key).is_file():
        with np.load(cache / key) as stored:
            values, raw = stored["values"], stored["raw"]
    else:
        wl = apogee_wavelength()
        values, _, raw, _ = accuracy_arrays(pipeline, [Spectrum(wl, f, iv) for f, iv in zip(obs["flux"], obs["ivar"])],
                                            obs["labels"], obs["label_names"], labels)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(cache / key, values=values, raw=raw)
    snr_error = error_array_snr(obs["flux"], obs["ivar"])  # the pipelines' snr_error column
    return values, raw, truth, np.asarray(obs["labels"], dtype=np.float64), list(obs["label_names"]), snr_error


def observe_emulated(pipeline, emulator_path, n_stars: int, seed: int, prior_grid, snr_range, cache: Path | None):
    """(values, raw errors, truth, snr_error) of the pipeline's labels on ``n_stars`` emulated stars drawn from the
    prior of the grid folder ``prior_grid``, as ``stellarnn train calibrate-noise --accuracy-emulated`` makes them
    (cached like :func:`observe`)."""
    from stellarnn.labels.noise_model import accuracy_arrays
    from stellarnn.synthesis.emulator import load_emulator
    from stellarnn.synthesis.grid_builder import grid_prior
    from stellarnn.synthesis.training_set import generate_training_set
    from stellarnn.train import file_sha256

    labels = list(pipeline.noise_model.labels)
    key = (f"{pipeline.name}-{pipeline.version}-emulated-{file_sha256(emulator_path)[:12]}-{n_stars}-seed{seed}"
           f"-snr{snr_range[0]:g}-{snr_range[1]:g}.npz")
    if cache is not None and (cache / key).is_file():
        with np.load(cache / key) as stored:
            return tuple(stored[k] for k in ("values", "raw", "truth", "snr"))
    emulated = generate_training_set(load_emulator(emulator_path)[0], n_stars, seed=seed, snr_range=snr_range,
                                     prior=grid_prior(prior_grid))
    values, truth, raw, snr = accuracy_arrays(pipeline, emulated.spectra(), emulated.labels, emulated.label_names,
                                              labels)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cache / key, values=values, raw=raw, truth=truth, snr=snr)
    return values, raw, truth, snr


def z_stats(values, truth, error) -> dict:
    """std (the issue's measure: the bias removed) and rms (what the calibration sets to 1: the bias counted as
    error) of z = (value - truth) / e, and the median of (value - truth) (the bias)."""
    z = (values - truth) / error
    ok = np.isfinite(z)
    if ok.sum() < 5:
        return {"std": float("nan"), "rms": float("nan"), "bias": float("nan")}
    return {"std": float(np.std(z[ok])), "rms": float(np.sqrt(np.mean(z[ok] ** 2))),
            "bias": float(np.median((values - truth)[ok]))}


def bench_pipeline(name: str, weights, grids: dict, min_spectra: int, cache: Path | None, calib_emulated: int = 0,
                   emulator=None) -> dict:
    """``grids``: {"calib": (path, grid), "test": (path, grid)}."""
    (calib_path, calib_grid), (test_path, test_grid) = grids["calib"], grids["test"]
    from stellarnn.labels.noise_model import (calibrate_accuracy_by_population, calibrate_accuracy_offset,
                                              population_of_predictions, precision_part)
    from stellarnn.labels.astronn.training import robust_scatter
    from stellarnn.labels.pipeline import get_pipeline
    from stellarnn.synthesis.populations import POPULATIONS, population_masks

    pipeline = get_pipeline(name, weights=weights, quality_checks=False)  # as calibrate-noise runs it
    precision = precision_part(pipeline.noise_model)
    labels = list(precision.labels)
    raise_scale = name == "astronn"  # scripts/retrain_labels_v4.sh: --raise-scale for AstroNN only
    t0 = time.perf_counter()
    calib = [observe(pipeline, calib_grid, calib_path, snr, CALIBRATION_SEED + snr, cache) for snr in SNRS]
    values, raw, truth, snr_error = (np.concatenate([c[k] for c in calib]) for k in (0, 1, 2, 5))
    source = f"{calib_path} at S/N {', '.join(map(str, SNRS))}"
    global_model = calibrate_accuracy_offset(precision, values, truth, raw, source=source, raise_scale=raise_scale)
    by_population = calibrate_accuracy_by_population(precision, values, truth, raw, min_spectra=min_spectra,
                                                     source=source, raise_scale=raise_scale)
    with_snr = calibrate_accuracy_by_population(precision, values, truth, raw, min_spectra=min_spectra,
                                                source=source, raise_scale=raise_scale, snr=snr_error, snr_power=False)
    with_power = calibrate_accuracy_by_population(precision, values, truth, raw, min_spectra=min_spectra,
                                                  source=source, raise_scale=raise_scale, snr=snr_error)
    fitted = {"by_population": by_population, "by_population_snr": with_snr, "by_population_snr_power": with_power}
    if calib_emulated:
        # calibrate-noise --accuracy-emulated: seed 12345 + 1, S/N over the --accuracy-snr range
        emulated = observe_emulated(pipeline, emulator, calib_emulated, CALIBRATION_SEED + 1, calib_path.split("+")[0],
                                    (min(SNRS), max(SNRS)), cache)
        more = [np.concatenate([a, b]) for a, b in zip((values, raw, truth, snr_error), emulated)]
        fitted["by_population_snr_emulated"] = calibrate_accuracy_by_population(
            precision, more[0], more[2], more[1], min_spectra=min_spectra, raise_scale=raise_scale, snr=more[3],
            source=f"{source} + {calib_emulated} emulated stars ({emulator})")
    calibration_seconds = time.perf_counter() - t0
    result = {"weights": str(weights or "shipped"), "labels_reported": list(MAIN_LABELS)
              + (["abundances_median"] if len(labels) > 3 else []), "raise_scale": raise_scale,
              "calibration": {"grid": str(calib_path), "snrs": list(SNRS), "n_spectra": int(len(values)),
                              "seconds": calibration_seconds,
                              "populations": by_population.diagnostics["accuracy_by_population"]["populations"]},
              "models": {"global": {"scale": dict(zip(labels, global_model.scale.tolist())),
                                    "offset": dict(zip(labels, global_model.offset.tolist()))},
                         **{m: {"snr_ceiling": model.snr_ceiling if np.isfinite(model.snr_ceiling) else None,
                                **{p: {"scale": dict(zip(labels, s.tolist())), "offset": dict(zip(labels, o.tolist())),
                                       "snr_term": dict(zip(labels, t.tolist())),
                                       "snr_power": dict(zip(labels, a.tolist()))}
                                   for p, (s, o, t, a) in model.by_population.items()}}
                            for m, model in fitted.items()}},
              "calibration_emulated": {"n_stars": int(calib_emulated), "emulator": str(emulator) if calib_emulated
                                       else None},
              "held_out": {}}
    within = {f"{m}_{k}": [0, 0] for m in ("global", *fitted) for k in ("std", "rms")}
    abundances = [n for n in labels if n not in MAIN_LABELS]
    for snr in SNRS:
        values, raw, truth, grid_labels, names, snr_error = observe(pipeline, test_grid, test_path, snr, snr, cache)
        masks = population_masks(grid_labels[:, names.index("teff")], grid_labels[:, names.index("logg")],
                                 grid_labels[:, names.index("m_h")])
        predicted = population_of_predictions(labels, values)
        errors = {"global": global_model.apply(raw),
                  **{m: model.apply(raw, predicted, snr_error) for m, model in fitted.items()}}
        for pop in POPULATIONS:
            rows = masks[pop]
            cell = result["held_out"].setdefault(pop, {"n": int(rows.sum())}).setdefault(f"snr_{snr}", {})
            for model, e in errors.items():
                stats = {lab: z_stats(values[rows, labels.index(lab)], truth[rows, labels.index(lab)],
                                      e[rows, labels.index(lab)]) for lab in MAIN_LABELS}
                for kind in ("std", "rms"):
                    entry = {lab: stats[lab][kind] for lab in MAIN_LABELS}
                    if abundances:
                        entry["abundances_median"] = float(np.nanmedian(
                            [z_stats(values[rows, labels.index(a)], truth[rows, labels.index(a)],
                                     e[rows, labels.index(a)])[kind] for a in abundances]))
                    cell[f"{kind}_z_{model}"] = entry
                    for v in entry.values():
                        within[f"{model}_{kind}"][0] += bool(0.8 <= v <= 1.2)
                        within[f"{model}_{kind}"][1] += bool(np.isfinite(v))
            cell["bias"] = {lab: stats[lab]["bias"] for lab in MAIN_LABELS}
            # how the actual error and the network's raw error follow the S/N (the noise model scales raw_e only)
            cell["robust_scatter"] = {lab: float(robust_scatter(values[rows, labels.index(lab)]
                                                                - truth[rows, labels.index(lab)]))
                                      for lab in MAIN_LABELS}
            cell["median_raw_error"] = {lab: float(np.nanmedian(raw[rows, labels.index(lab)])) for lab in MAIN_LABELS}
    result["cells_within_0.8_1.2"] = {m: {"within": w, "of": n} for m, (w, n) in within.items()}
    return result


def plot_std_z(pipeline_result: dict, path, title: str = "") -> Path:
    """std z against S/N: one row per noise model, one column per label (Teff, log g, [Fe/H]), a line per
    population, the issue's 0.8-1.2 band shaded."""
    import matplotlib

    matplotlib.use("Agg")
    from stellarnn.figures import new_figure, save_figure
    from stellarnn.synthesis.populations import POPULATIONS

    held_out = pipeline_result["held_out"]
    first = held_out[next(iter(held_out))]["snr_100"]
    models = [k[len("std_z_"):] for k in first if k.startswith("std_z_")]
    fig, axes = new_figure(nrows=len(models), ncols=len(MAIN_LABELS), figsize=(10, 2.6 * len(models)),
                           sharex=True, sharey=True, squeeze=False)
    for r, model in enumerate(models):
        for c, label in enumerate(MAIN_LABELS):
            ax = axes[r, c]
            ax.axhspan(0.8, 1.2, color="0.9", zorder=0)
            for pop in POPULATIONS:
                if pop not in held_out:
                    continue
                ax.plot(SNRS, [held_out[pop][f"snr_{s}"][f"std_z_{model}"][label] for s in SNRS], "o-", ms=3,
                        label=pop)
            ax.set_xscale("log")
            ax.set_xticks(SNRS, [str(s) for s in SNRS])
            ax.minorticks_off()
            if r == 0:
                ax.set_title({"teff": "Teff", "logg": "log g", "fe_h": "[Fe/H]"}[label])
            if c == 0:
                ax.set_ylabel(f"{model}\nstd of (pred - truth) / e")
            if r == len(models) - 1:
                ax.set_xlabel("S/N")
    axes[0, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--astronn-weights", default=None, help="default: the shipped weights")
    parser.add_argument("--apogeenet-weights", default=None, help="default: the shipped weights")
    parser.add_argument("--calib-grid", nargs="+", default=[str(REPO / "grids" / "apogee_like_f0" / "calib")],
                        help="calibration grid folder(s), several concatenated as calibrate-noise --accuracy-grid "
                             "does (same noise draws)")
    parser.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    parser.add_argument("--pipelines", nargs="+", choices=("astronn", "apogeenet"), default=["astronn", "apogeenet"],
                        help="which pipelines to bench (default both), e.g. one network of a retrain")
    parser.add_argument("--population-min", type=int, default=30)
    parser.add_argument("--calib-emulated", type=int, default=0,
                        help="also fit per population + S/N term with this many emulated stars added (--emulator)")
    parser.add_argument("--emulator", default=None, help="emulator for --calib-emulated (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None, help="folder for the pipelines' predictions (reused when present)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "noise_population.json"))
    parser.add_argument("--replot", metavar="JSON", help="only draw the figures of an earlier run's JSON")
    args = parser.parse_args()
    if args.replot:
        for name, result in json.loads(Path(args.replot).read_text())["pipelines"].items():
            print("wrote", plot_std_z(result, Path(args.replot).with_suffix(f".{name}.png"), f"{name}: {args.replot}"))
        return
    import torch

    from stellarnn import __version__
    from stellarnn.synthesis.grid_builder import load_grid

    torch.set_num_threads(args.threads)
    emulator = None
    if args.calib_emulated:
        from stellarnn.data.shipped_weights import weights_dir

        emulator = args.emulator or str(weights_dir("emulator") / "payne_apogee.pt")
    grids = {"calib": ("+".join(args.calib_grid), load_grid(args.calib_grid)),
             "test": (args.test_grid, load_grid(args.test_grid))}
    out = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stellarnn": __version__,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                       "load_average_start": list(os.getloadavg())},
           "test_grid": args.test_grid,
           "z": "z = (prediction - truth) / e over the held-out spectra of a true population (Teff, log g, [M/H]) at "
                "one S/N: std_z (the issue's measure, target 0.8-1.2, bias removed) and rms_z (bias counted; what "
                "the maximum-likelihood calibration sets to 1 on the calibration grid); bias = median(prediction - "
                "truth)",
           "population_min": args.population_min, "predictions_cache": args.cache, "pipelines": {}}
    for name, weights in (("astronn", args.astronn_weights), ("apogeenet", args.apogeenet_weights)):
        if name not in args.pipelines:
            continue
        out["pipelines"][name] = bench_pipeline(name, weights, grids, args.population_min,
                                                Path(args.cache) if args.cache else None, args.calib_emulated,
                                                emulator)
        r = out["pipelines"][name]
        print(f"{name}: (population, S/N, label) cells within 0.8-1.2: {r['cells_within_0.8_1.2']}")
        for pop, cells in r["held_out"].items():
            for s in SNRS:
                c = cells[f"snr_{s}"]
                print(f"  {pop:18s} S/N {s:3d} std z (teff, logg, fe_h): global "
                      + " ".join(f"{c['std_z_global'][k]:.2f}" for k in MAIN_LABELS) + " | per population "
                      + " ".join(f"{c['std_z_by_population'][k]:.2f}" for k in MAIN_LABELS) + " | + S/N term "
                      + " ".join(f"{c['std_z_by_population_snr'][k]:.2f}" for k in MAIN_LABELS) + " | + factor "
                      + " ".join(f"{c['std_z_by_population_snr_power'][k]:.2f}" for k in MAIN_LABELS)
                      + ("" if not args.calib_emulated else " | + emulated "
                         + " ".join(f"{c['std_z_by_population_snr_emulated'][k]:.2f}" for k in MAIN_LABELS)))
    out["machine"]["load_average_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    for name, result in out["pipelines"].items():
        print("wrote", plot_std_z(result, Path(args.out).with_suffix(f".{name}.png"), f"{name}: {Path(args.out).name}"))


if __name__ == "__main__":
    main()
