"""``stellarnn blase clone|transfer|plot``: clone a synthetic spectrum, transfer it to data, plot fits."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..cli_arguments import output_file, plot_file, positive_float, positive_int
from ..figures import save_figure

KIND_LINES = "blase-lines"
KIND_TRANSFER = "blase-transfer"
#: line-table formats (``blase.line_table.write_line_table``)
LINE_TABLE_SUFFIXES = (".fits", ".fit", ".csv", ".npz")


def _clone_source(args_or_prov) -> tuple[np.ndarray, np.ndarray]:
    from .continuum import normalise_continuum
    from .sources import load_clone_source

    get = (lambda k: args_or_prov.get(k)) if isinstance(args_or_prov, dict) else (lambda k: getattr(args_or_prov, k))
    wl, flux = load_clone_source(get("source"), get("wave_min"), get("wave_max"))
    if get("normalise"):
        flux = normalise_continuum(wl, flux, knot_spacing_angstrom=get("knot_spacing"))
    return wl, flux


def cmd_clone(args) -> int:
    from ..train import save_checkpoint
    from .fitting import clone_spectrum
    from .line_table import write_line_table
    from .plotting import plot_fit

    wl, flux = _clone_source(args)
    res = clone_spectrum(wl, flux, prominence=args.prominence, min_separation_pixels=args.min_separation,
                         profile=args.profile, form=args.form, epochs=args.epochs, lr=args.lr,
                         progress=not args.quiet, resume_path=args.resume, max_seconds=args.max_seconds,
                         line_options=dict(max_half_window_angstrom=args.max_window))
    prov = {k: getattr(args, k) for k in ("source", "wave_min", "wave_max", "normalise", "knot_spacing")}
    prov["source"] = str(prov["source"])
    metrics = {"rms_residual": res.rms_residual, "initial_rms_residual": res.initial_rms_residual,
               "n_lines": len(res.guesses), "epochs": len(res.history.train_loss), "seconds": res.seconds}
    save_checkpoint(args.out, res.model, KIND_LINES, res.model.hyperparameters, metrics=metrics,
                    provenance=prov, half=False)
    print(json.dumps({"checkpoint": str(args.out), **metrics}))
    if args.table:
        write_line_table(res.model, args.table)
    if args.plot:
        with torch.inference_mode():
            model_flux = res.model(torch.from_numpy(wl)).numpy()
        save_figure(plot_fit(wl, flux, model_flux, title=f"clone of {args.source}: {len(res.guesses)} lines"),
                    args.plot, dpi=90)
    return 0


def cmd_transfer(args) -> int:
    from ..train import load_checkpoint, save_checkpoint
    from .fitting import clone_to_air, transfer_spectrum
    from .line_table import write_line_table
    from .sources import load_observed

    clone, payload = load_checkpoint(args.clone, expected_kind=KIND_LINES)
    if args.vacuum_to_air:
        clone_to_air(clone)
    centres = clone.centres().detach().numpy()
    lo = args.wave_min if args.wave_min is not None else float(centres.min())
    hi = args.wave_max if args.wave_max is not None else float(centres.max())
    # a file that states its medium is read in the clone's medium (air after --vacuum-to-air)
    spec = load_observed(args.data, lo, hi, medium="air" if args.vacuum_to_air else "vacuum")
    res = transfer_spectrum(clone, spec, epochs=args.epochs, baseline_epochs=args.baseline_epochs, lr=args.lr,
                            tellurics=not args.no_tellurics, telluric_prominence=args.telluric_prominence,
                            resolution_guess=args.resolution_guess, progress=not args.quiet)
    metrics = {"baseline_rms": res.baseline_rms, "transfer_rms": res.transfer_rms, "rv_km_s": res.rv_km_s,
               "vsini_km_s": res.vsini_km_s, "resolution": res.resolution,
               "n_telluric_lines": res.n_telluric_lines, "baseline": res.baseline_parameters,
               "telluric_mode": res.telluric_mode, "telluric_scales": res.telluric_scales,
               "n_residual_lines_outside_bands": res.n_residual_lines_outside_bands,
               "reader": {k: spec.metadata.get(k) for k in ("format", "wavelength_unit", "wavelength_unit_source",
                                                            "medium", "barycentric_correction")}}
    prov = {"clone": str(args.clone), "data": str(args.data), "wave_min": lo, "wave_max": hi,
            "vacuum_to_air": bool(args.vacuum_to_air)}
    save_checkpoint(args.out, res.model, KIND_TRANSFER, res.model.hyperparameters, metrics=metrics,
                    provenance=prov, half=False)
    print(json.dumps({"checkpoint": str(args.out), **metrics}))
    if args.table:
        write_line_table(res.model.stellar, args.table)
    if args.telluric_table and res.model.telluric.n_lines:  # free per-line tellurics only
        write_line_table(res.model.telluric, args.telluric_table)
    if args.plot:
        _plot_transfer(res.model, spec, args.plot)
    if getattr(args, "report", None) or getattr(args, "report_plot", None):
        from .fit_report import plot_fit_report, transfer_report, write_fit_report

        report = transfer_report(res, spec)
        if args.report:
            print(f"wrote {write_fit_report(report, args.report)}")
        if args.report_plot:
            print(f"wrote {save_figure(plot_fit_report(report, spec, res), args.report_plot, dpi=90)}")
    return 0


def _plot_transfer(model, spec, path) -> None:
    from .extrinsic import scale_to_segments
    from .plotting import plot_fit

    x = torch.from_numpy(scale_to_segments(spec.wavelength, spec.segment)).float()
    with torch.inference_mode():
        parts = model(torch.from_numpy(spec.wavelength), x, torch.from_numpy(spec.segment), components=True)
    cont = parts["continuum"].numpy()
    save_figure(plot_fit(spec.wavelength, spec.flux / cont, parts["total"].numpy() / cont, segment=spec.segment,
                         extra={"telluric": parts["telluric"].numpy()}, title=f"transfer to {spec.name}"),
                path, dpi=90)


def cmd_plot(args) -> int:
    from ..train import load_checkpoint, read_checkpoint
    from .plotting import plot_fit
    from .sources import load_observed

    payload = read_checkpoint(args.checkpoint)
    model, payload = load_checkpoint(args.checkpoint)
    prov = dict(payload.get("provenance", {}))
    if payload["kind"] == KIND_LINES:
        if args.data:
            prov["source"] = args.data
        for key in ("wave_min", "wave_max"):
            if getattr(args, key) is not None:
                prov[key] = getattr(args, key)
        wl, flux = _clone_source(prov)
        with torch.inference_mode():
            model_flux = model(torch.from_numpy(wl)).numpy()
        save_figure(plot_fit(wl, flux, model_flux, title=f"clone of {prov['source']}"), args.out, dpi=90)
    elif payload["kind"] == KIND_TRANSFER:
        spec = load_observed(args.data or prov["data"],
                             args.wave_min if args.wave_min is not None else prov.get("wave_min"),
                             args.wave_max if args.wave_max is not None else prov.get("wave_max"))
        _plot_transfer(model, spec, args.out)
    else:
        raise ValueError(f"{args.checkpoint} holds a {payload['kind']!r} model, not a blase one")
    print(args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blase", help="sparse line-by-line models: clone a synthetic spectrum, transfer to data",
                       description="blasé (Gully-Santiago & Morley 2022): clone a synthetic spectrum into a "
                                   "sparse Voigt line model, transfer it to an observed spectrum.")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="blase_command", metavar="ACTION")

    q = s.add_parser("clone", help="fit a line model to a synthetic spectrum (data entry, .csv or .npz)")
    q.add_argument("source", help="data entry (e.g. phoenix-10kK) or file (.csv wave,flux / .npz wavelength,flux)")
    q.add_argument("--out", required=True, type=output_file(".pt"), help="checkpoint to write (.pt)")
    q.add_argument("--wave-min", type=float, help="Angstrom")
    q.add_argument("--wave-max", type=float, help="Angstrom")
    q.add_argument("--no-normalise", dest="normalise", action="store_false",
                   help="source is already continuum-normalised")
    q.add_argument("--knot-spacing", type=positive_float, default=100.0,
                   help="continuum spline knot spacing (Angstrom)")
    q.add_argument("--prominence", type=float, default=0.01)
    q.add_argument("--min-separation", type=positive_int, default=4, help="pixels")
    q.add_argument("--profile", choices=("pseudo_voigt", "voigt"), default="pseudo_voigt")
    q.add_argument("--form", choices=("tau", "multiplicative"), default="tau")
    q.add_argument("--epochs", type=int, default=1000)
    q.add_argument("--lr", type=positive_float, default=0.05)
    q.add_argument("--max-window", type=float, default=60.0, help="largest line half window (Angstrom)")
    q.add_argument("--max-seconds", type=float, help="stop after this wall time (best weights kept)")
    q.add_argument("--resume", type=Path, help="trainer state file: resume an interrupted clone")
    q.add_argument("--table", type=output_file(*LINE_TABLE_SUFFIXES), help="line table (.fits, .csv or .npz)")
    q.add_argument("--plot", type=plot_file, help="PNG of data, model and residual")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_clone)

    q = s.add_parser("transfer", help="fit a clone to an observed spectrum (RV, vsini, R, lines, tellurics)")
    q.add_argument("clone", type=Path, help="clone checkpoint from `stellarnn blase clone`")
    q.add_argument("data", help="data entry (e.g. chiron-hip108294), a FITS spectrum (tables with wavelength/wave/"
                   "lambda, flux, error/uncertainty/sigma/ivar columns, one per order or one row per order; or a 1-D "
                   "WCS image) or .npz")
    q.add_argument("--out", required=True, type=output_file(".pt"), help="checkpoint to write (.pt)")
    q.add_argument("--wave-min", type=float, help="Angstrom (default: the clone's range)")
    q.add_argument("--wave-max", type=float)
    q.add_argument("--vacuum-to-air", action="store_true", help="clone in vacuum, data in air wavelengths")
    q.add_argument("--no-tellurics", action="store_true", help="no second (observer-frame) line set")
    q.add_argument("--telluric-prominence", type=float, help="default: 4 x median relative error")
    q.add_argument("--resolution-guess", type=positive_float, default=80000.0)
    q.add_argument("--epochs", type=int, default=300)
    q.add_argument("--baseline-epochs", type=int, default=200)
    q.add_argument("--lr", type=positive_float, default=0.02)
    q.add_argument("--table", type=output_file(*LINE_TABLE_SUFFIXES), help="stellar line table after transfer")
    q.add_argument("--telluric-table", type=output_file(*LINE_TABLE_SUFFIXES))
    q.add_argument("--plot", type=plot_file)
    q.add_argument("--report", type=output_file(".json", ".csv"), help="fit report: what the transfer changed "
                   "(.json: lines, tellurics per band, RV/vsini/R with uncertainties; .csv: the line table)")
    q.add_argument("--report-plot", type=plot_file, help="PNG of the fit report")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=cmd_transfer)

    q = s.add_parser("plot", help="plot data, model and residual of a clone or transfer checkpoint")
    q.add_argument("checkpoint", type=Path)
    q.add_argument("--data", help="override the source/observed spectrum recorded in the checkpoint")
    q.add_argument("--wave-min", type=float)
    q.add_argument("--wave-max", type=float)
    q.add_argument("--out", required=True, type=plot_file, help="PNG (.png is appended when there is no extension)")
    q.set_defaults(func=cmd_plot)
