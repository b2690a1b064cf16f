"""Benchmark blasé: clone speed and residual, residual vs prominence, sparse vs dense, CHIRON transfer.

Writes bench/results/blase.json. The clone source is a parameter: a data entry (default
``phoenix-10kK``), a ``.csv`` (wavelength, flux) or ``.npz`` (``wavelength``, ``flux``) file, e.g. a
PySME spectrum from the synthesis layer::

    python bench/blase.py --clone-source my_pysme.npz --no-normalise

With ``--section NAME`` only the clone, sparse-vs-dense and residual-vs-prominence steps run on that
source, and their results are merged into the existing JSON under ``NAME`` (other sections are kept),
e.g. the PySME clone source of issue 8 item 6::

    stellarnn synth 4700 4.5 0.0 --range 8100 12800 --step 0.01 -o ~/.cache/stellarnn-blase/pysme.npz
    python bench/blase.py --clone-source ~/.cache/stellarnn-blase/pysme.npz --no-normalise \
        --section pysme_clone --max-seconds 900

``--max-seconds`` stops the 1000-epoch clone early under load; the JSON then gives the epochs run and
the time per 1000 epochs projected linearly (every epoch is one full-batch step of equal cost).

All figures are medians over repeats where repeats are made; timings are wall-clock on this machine
(the load average at start and end is recorded, since other jobs share the CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from timing import median_seconds
from stellarnn.blase.continuum import normalise_continuum
from stellarnn.blase.fitting import clone_spectrum, clone_to_air, transfer_spectrum
from stellarnn.blase.line_finder import LineGuesses, find_lines
from stellarnn.blase.line_model import LineModel
from stellarnn.blase.sources import load_clone_source, load_observed




def sparse_vs_dense(model: LineModel, wavelength: np.ndarray, n_pixels: int, repeats: int) -> dict:
    """Forward + backward time of the sparse and the dense evaluation on a slice of the spectrum."""
    mid = wavelength.size // 2
    sl = slice(max(mid - n_pixels // 2, 0), max(mid - n_pixels // 2, 0) + n_pixels)
    wl = torch.from_numpy(wavelength[sl])
    keep = ((model.centres() > wl[0] - 5) & (model.centres() < wl[-1] + 5)).detach().numpy()
    table = model.line_table()
    sub = LineModel.from_guesses(LineGuesses(table["centre_angstrom"][keep], table["amplitude_angstrom"][keep],
                                             table["sigma_angstrom"][keep], table["gamma_angstrom"][keep],
                                             np.zeros(keep.sum()), np.zeros(keep.sum())),
                                 **{k: v for k, v in model.hyperparameters.items() if k != "n_lines"})

    def step(dense: bool):
        sub.zero_grad()
        out = sub.forward_dense(wl) if dense else sub(wl)
        out.sum().backward()

    step(False), step(True)
    t_sparse, t_dense = median_seconds(lambda: step(False), repeats), median_seconds(lambda: step(True), repeats)
    with torch.no_grad():
        diff = float((sub(wl) - sub.forward_dense(wl)).abs().max())
    return {"n_pixels": int(wl.numel()), "n_lines": int(keep.sum()), "profile": sub.profile,
            "sparse_forward_backward_s": t_sparse, "dense_forward_backward_s": t_dense,
            "dense_over_sparse_time_ratio": t_dense / t_sparse, "max_abs_difference": diff}


def synthetic_many_lines(n_lines: int, n_pixels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noise-free spectrum of ``n_lines`` random Voigt lines (known truth) on ``n_pixels`` of 0.01 A."""
    rng = np.random.default_rng(seed)
    wl = 8100.0 + 0.01 * np.arange(n_pixels)
    centres = np.sort(rng.uniform(wl[0] + 1, wl[-1] - 1, n_lines))
    amps = np.exp(rng.uniform(np.log(3e-4), np.log(0.05), n_lines))
    sig = np.exp(rng.uniform(np.log(0.02), np.log(0.08), n_lines))
    gam = np.exp(rng.uniform(np.log(0.002), np.log(0.03), n_lines))
    truth = LineModel.from_guesses(LineGuesses(centres, amps, sig, gam, np.zeros(n_lines), np.zeros(n_lines)),
                                   profile="voigt")
    with torch.no_grad():
        return wl, truth(torch.from_numpy(wl)).double().numpy()


def _source_meta(source) -> dict:
    """The ``meta`` JSON stored in a PySME ``.npz`` (stellarnn synth --range), if any."""
    path = Path(str(source)).expanduser()
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as data:
            if "meta" in data:
                return json.loads(str(data["meta"]))
    return {}


def section_notes(sec: dict) -> list[str]:
    """What the numbers of a ``--section`` run mean and where they differ from the published setup."""
    notes = [f"clone timing at {sec['machine'].get('torch_threads')} torch thread(s) while other jobs shared the "
             f"2 cores (load average {sec['machine']['load_average_start'][0]:.1f} at start)",
             f"residual-vs-prominence rows use {sec['settings']['prominence_epochs']} epochs each (the main clone "
             f"{sec['clone']['epochs_run']}); the published table's epochs are not stated in REFERENCE.md",
             "the source differs from the published one (PHOENIX): rms residuals and line counts compare in kind, "
             "not one to one"]
    probe = sec.get("thread_probe")
    if probe:
        notes.append(f"thread probe ({probe['epochs']} epochs each): {probe['1_threads_seconds_per_epoch']:.3f} s/epoch "
                     f"at 1 thread, {probe['2_threads_seconds_per_epoch']:.3f} at 2; under this load 2 threads "
                     + ("were slower, so the clone ran at 1" if probe['2_threads_seconds_per_epoch']
                        > probe['1_threads_seconds_per_epoch'] else "were faster"))
    meta = sec.get("source_meta") or {}
    if meta.get("n_hydrogen_lines_dropped_in_range"):
        notes.append(f"PySME source: {meta['n_hydrogen_lines_dropped_in_range']} H I (Paschen) lines dropped (SME "
                     f"needs their level numbers); v_micro {meta['labels']['v_micro']:.2f} km/s (APOGEE relation "
                     "in log g, the driver's default)")
    return notes


def run_section(args) -> int:
    """Clone + sparse-vs-dense + residual-vs-prominence on one source, merged into ``args.out[args.section]``."""
    merged = json.loads(args.out.read_text()) if args.out.is_file() else {}
    sec: dict = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                             "torch": torch.__version__, "load_average_start": os.getloadavg()},
                 "settings": {k: v for k, v in vars(args).items()
                              if k in ("clone_source", "wave_min", "wave_max", "normalise", "prominence", "profile",
                                       "epochs", "prominences", "prominence_epochs", "dense_pixels", "repeats",
                                       "threads", "max_seconds", "thread_probe_epochs", "thread_choice")},
                 "source_meta": _source_meta(args.clone_source)}
    sec["settings"]["clone_source"] = Path(str(args.clone_source)).name

    def dump():
        merged[args.section] = sec
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(merged, indent=2, default=float))

    wl, flux = load_clone_source(Path(str(args.clone_source)).expanduser(), args.wave_min, args.wave_max)
    if args.normalise:
        flux = normalise_continuum(wl, flux, knot_spacing_angstrom=args.knot_spacing)
    if args.thread_probe_epochs > 0:
        probe = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            r = clone_spectrum(wl, flux, prominence=args.prominence, profile=args.profile,
                               epochs=args.thread_probe_epochs, progress=False, device="cpu")
            probe[f"{n}_threads_seconds_per_epoch"] = r.seconds / args.thread_probe_epochs
        probe["epochs"] = args.thread_probe_epochs
        probe["load_average"] = os.getloadavg()
        sec["thread_probe"] = probe
        dump()
    threads = args.threads
    if "thread_probe" in sec and args.thread_choice == "faster":
        threads = min((1, 2), key=lambda n: sec["thread_probe"][f"{n}_threads_seconds_per_epoch"])
    torch.set_num_threads(threads)
    sec["machine"]["torch_threads"] = torch.get_num_threads()
    res = clone_spectrum(wl, flux, prominence=args.prominence, profile=args.profile, epochs=args.epochs,
                         progress=False, device="cpu", max_seconds=args.max_seconds)
    done = len(res.history.train_loss)
    sec["clone"] = {"n_pixels": int(wl.size), "wavelength_range": [float(wl[0]), float(wl[-1])],
                    "n_lines": len(res.guesses), "prominence": args.prominence, "profile": args.profile,
                    "epochs_requested": args.epochs, "epochs_run": done, "seconds_total": res.seconds,
                    "seconds_per_epoch": res.seconds / done,
                    "seconds_per_1000_epochs": 1000 * res.seconds / done,
                    "seconds_per_1000_epochs_is_projection": done < 1000,
                    "initial_rms_residual": res.initial_rms_residual, "rms_residual": res.rms_residual,
                    "rms_residual_percent": 100 * res.rms_residual,
                    "target": "<= 1.3 % rms and 1000 epochs <= 300 s on this 2-core CPU (issue 8)",
                    "meets_rms_target": res.rms_residual <= 0.013,
                    "meets_time_target": 1000 * res.seconds / done <= 300.0,
                    "published": "PHOENIX 4700 K / 4.5: 335,849 px, 9,028 lines, 1.2 % rms; 1000 epochs 85 min on a "
                                 "laptop CPU, 56 s on an RTX 2070 (Gully-Santiago & Morley 2022)"}
    dump()
    sec["sparse_vs_dense"] = sparse_vs_dense(res.model, wl, args.dense_pixels, args.repeats)
    dump()
    published = {0.2: (970, 0.031), 0.03: (5181, 0.0155), 0.01: (8714, 0.0131), 0.001: (13881, 0.0118)}
    rows = []
    for prom in args.prominences:
        r = clone_spectrum(wl, flux, prominence=prom, profile=args.profile, epochs=args.prominence_epochs,
                           progress=False, device="cpu")
        row = {"prominence": prom, "n_lines": len(r.guesses), "rms_residual": r.rms_residual,
               "epochs": args.prominence_epochs, "seconds": r.seconds}
        if prom in published:
            row["published_n_lines"], row["published_rms_residual"] = published[prom]
        rows.append(row)
        sec["residual_vs_prominence"] = rows
        dump()
    sec["machine"]["load_average_end"] = os.getloadavg()
    sec["notes"] = section_notes(sec)
    dump()
    print(json.dumps(sec, indent=2, default=float))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clone-source", default="phoenix-10kK")
    ap.add_argument("--wave-min", type=float)
    ap.add_argument("--wave-max", type=float)
    ap.add_argument("--no-normalise", dest="normalise", action="store_false")
    ap.add_argument("--knot-spacing", type=float, default=100.0)
    ap.add_argument("--prominence", type=float, default=0.005)
    ap.add_argument("--profile", default="pseudo_voigt", choices=("pseudo_voigt", "voigt"))
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--prominences", type=float, nargs="*", default=[0.2, 0.03, 0.01, 0.001])
    ap.add_argument("--prominence-epochs", type=int, default=200)
    ap.add_argument("--synthetic-lines", type=int, default=9000)
    ap.add_argument("--synthetic-pixels", type=int, default=300_000)
    ap.add_argument("--synthetic-epochs", type=int, default=100)
    ap.add_argument("--dense-pixels", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--observed", default="chiron-hip108294")
    ap.add_argument("--transfer-range", type=float, nargs=2, default=[8060.0, 8640.0])
    ap.add_argument("--transfer-epochs", type=int, default=400)
    ap.add_argument("--baseline-epochs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/results/blase.json"))
    ap.add_argument("--section", default=None,
                    help="run clone, sparse-vs-dense and prominence steps only; merge them into --out under this key")
    ap.add_argument("--max-seconds", type=float, default=None, help="cap on the main clone's time (--section)")
    ap.add_argument("--thread-probe-epochs", type=int, default=0,
                    help="(--section) time this many clone epochs at 1 and at 2 threads first")
    ap.add_argument("--thread-choice", choices=("given", "faster"), default="given",
                    help="(--section, with the probe) run the rest at --threads or at the faster of 1 and 2")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.section:
        return run_section(args)
    result: dict = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                                "load_average_start": os.getloadavg()},
                    "settings": vars(args) | {"out": str(args.out)}}

    def dump():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=float))

    # ---- 1. clone of the source spectrum, full epochs
    wl, flux = load_clone_source(args.clone_source, args.wave_min, args.wave_max)
    if args.normalise:
        flux = normalise_continuum(wl, flux, knot_spacing_angstrom=args.knot_spacing)
    res = clone_spectrum(wl, flux, prominence=args.prominence, profile=args.profile, epochs=args.epochs,
                         progress=False, device="cpu")
    result["clone"] = {"source": str(args.clone_source), "n_pixels": int(wl.size), "n_lines": len(res.guesses),
                       "prominence": args.prominence, "profile": args.profile, "epochs": args.epochs,
                       "seconds_total": res.seconds, "seconds_per_epoch": res.seconds / args.epochs,
                       "initial_rms_residual": res.initial_rms_residual, "rms_residual": res.rms_residual,
                       "target": "<= 1.3 % rms and 1000 epochs <= 300 s (issue 8)"}
    dump()
    clone = res.model

    # ---- 2. sparse vs dense
    result["sparse_vs_dense"] = sparse_vs_dense(clone, wl, args.dense_pixels, args.repeats)
    dump()

    # ---- 3. residual vs prominence
    rows = []
    for prom in args.prominences:
        r = clone_spectrum(wl, flux, prominence=prom, profile=args.profile, epochs=args.prominence_epochs,
                           progress=False, device="cpu")
        rows.append({"prominence": prom, "n_lines": len(r.guesses), "rms_residual": r.rms_residual,
                     "epochs": args.prominence_epochs, "seconds": r.seconds})
        result["residual_vs_prominence"] = rows
        dump()

    # ---- 4. scale test: a ~9000-line, 3e5-pixel synthetic spectrum with known lines
    if args.synthetic_lines > 0:
        swl, sflux = synthetic_many_lines(args.synthetic_lines, args.synthetic_pixels)
        r = clone_spectrum(swl, sflux, prominence=0.001, profile=args.profile, epochs=args.synthetic_epochs,
                           progress=False, device="cpu")
        result["synthetic_scale"] = {"n_true_lines": args.synthetic_lines, "n_pixels": int(swl.size),
                                     "n_lines_found": len(r.guesses), "epochs": args.synthetic_epochs,
                                     "seconds_per_epoch": r.seconds / args.synthetic_epochs,
                                     "projected_seconds_per_1000_epochs": 1000 * r.seconds / args.synthetic_epochs,
                                     "initial_rms_residual": r.initial_rms_residual, "rms_residual": r.rms_residual}
        dump()

    # ---- 5. transfer to the real CHIRON spectrum (clone in vacuum -> air)
    clone_to_air(clone)
    spec = load_observed(args.observed, *args.transfer_range)
    t0 = time.perf_counter()
    tr = transfer_spectrum(clone, spec, epochs=args.transfer_epochs, baseline_epochs=args.baseline_epochs,
                           progress=False)
    result["transfer"] = {"observed": str(args.observed), "orders": [int(o) for o in spec.order],
                          "n_pixels": int(spec.wavelength.size), "range_angstrom": args.transfer_range,
                          "baseline_rms": tr.baseline_rms, "transfer_rms": tr.transfer_rms,
                          "baseline_over_transfer_rms_ratio": tr.baseline_rms / tr.transfer_rms,
                          "median_error": float(np.median(spec.error[spec.good_pixels()])),
                          "initial_guess": tr.initial_guess, "baseline_parameters": tr.baseline_parameters,
                          "rv_km_s": tr.rv_km_s, "vsini_km_s": tr.vsini_km_s, "resolution": tr.resolution,
                          "n_stellar_lines": tr.model.stellar.n_lines, "n_telluric_lines": tr.n_telluric_lines,
                          "seconds": time.perf_counter() - t0,
                          "target": "transfer rms >= 2x lower than the clone with only RV/vsini/R fitted"}
    result["machine"]["load_average_end"] = os.getloadavg()
    dump()
    print(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
