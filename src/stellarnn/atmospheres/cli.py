"""``stellarnn atmosphere get|train|evaluate``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..cli_arguments import (LOGG_RANGE, M_H_RANGE_DEX, TEFF_RANGE_K, float_in_range, non_negative_int, output_file,
                             output_folder, plot_file, positive_float, positive_int)

#: model formats ``atmosphere get -o`` writes: KRZ (SME/PySME) or an ATLAS9 deck
MODEL_SUFFIXES = (".krz", ".mod", ".dat", ".atlas")


def cmd_get(args) -> int:
    from .emulator import Innterpol
    from .grid import AtmosphereGrid

    if args.linear:
        atm = AtmosphereGrid.load_atlas9().interpolate_linear(args.teff, args.logg, args.m_h,
                                                              fallback="nearest_cell" if args.extrapolate else None)
    else:
        from .grid import deck_vturb

        emulator = Innterpol.load(args.weights)
        if args.family is not None and "family" not in emulator.axis_names:
            raise ValueError(f"--family: {args.weights or 'the shipped emulator'} has no ATLAS9 family input")
        atm = emulator.atmosphere(args.teff, args.logg, args.m_h,
                                  **({"family": float(args.family)} if args.family is not None else {}))
        # the VTURB of the decks the emulator learnt from at this [M/H] (the emulator does not predict it)
        atm.vturb = np.full(atm.n_layers, deck_vturb(args.m_h, exclude_m_h=emulator.excluded_m_h))
    dist = float(atm.grid_distance) if atm.grid_distance is not None else float("nan")
    print(f"# Teff = {args.teff:g} K, log g = {args.logg:g}, [M/H] = {args.m_h:+g}  "
          f"({'multilinear ATLAS9' if args.linear else 'iNNterpol'}); "
          f"distance to the nearest grid model: {dist:.2f} grid steps"
          + ("  [far from every grid model: likely extrapolation]" if dist > 2 else ""))
    if args.output:
        path = Path(args.output)
        if path.suffix.lower() in (".mod", ".dat", ".atlas"):
            atm.write_kurucz(path)
        else:
            atm.write_krz(path)
        print(f"# written {path}")
    else:
        print(f"{'log_tau':>8s} {'rhox[g/cm2]':>12s} {'T[K]':>9s} {'P_gas[cgs]':>12s} {'n_e[cm-3]':>12s}")
        for row in zip(atm.log_tau_ross, atm.rhox, atm.temperature, atm.p_gas, atm.n_e):
            print(f"{row[0]:8.3f} {row[1]:12.5e} {row[2]:9.1f} {row[3]:12.5e} {row[4]:12.5e}")
    if args.plot:
        from ..figures import save_figure
        from .plotting import plot_atmosphere

        out = Path(args.plot_file or (Path(args.output).with_suffix(".png") if args.output else "atmosphere.png"))
        save_figure(plot_atmosphere(atm, f"Teff {args.teff:g} K, log g {args.logg:g}, [M/H] {args.m_h:+g}"), out)
        print(f"# plot {out}")
    return 0


def cmd_train(args) -> int:
    import torch

    from .resample import atlas9_tau_grid
    from ..train import read_checkpoint
    from .training import InnterpolConfig, make_splits, train_innterpol

    torch.set_num_threads(args.threads)
    grid = atlas9_tau_grid(families=args.families)
    splits = make_splits(grid, seed=args.seed)
    cfg = InnterpolConfig(n_components=args.components, hidden=args.hidden, n_hidden_layers=args.layers,
                          epochs=args.epochs, lr=args.lr, max_seconds=args.max_seconds, seed=args.seed,
                          schedule=args.schedule, min_lr=args.min_lr, batch_size=args.batch_size,
                          weight_decay=args.weight_decay, activation=args.activation,
                          polish_epochs=args.polish_epochs, polish_iterations=args.polish_iterations,
                          quantity_weights=tuple(args.quantity_weights) if args.quantity_weights else None,
                          depth_weights=tuple((q, float(lo), float(hi), float(w))
                                              for q, lo, hi, w in (args.depth_weight or ())),
                          exclude_m_h=tuple(args.exclude_m_h or ()), device=args.device,
                          teff_as_theta=args.teff_as_theta)
    command = ("stellarnn atmosphere train " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in
        dict(components=args.components, hidden=args.hidden, layers=args.layers, epochs=args.epochs, lr=args.lr,
             schedule=args.schedule, min_lr=args.min_lr, batch_size=args.batch_size,
             weight_decay=args.weight_decay or None, activation=args.activation,
             polish_epochs=args.polish_epochs or None,
             polish_iterations=args.polish_iterations if args.polish_epochs else None,
             seed=args.seed, max_seconds=args.max_seconds,
             exclude_m_h=" ".join(f"{v:g}" for v in args.exclude_m_h) if args.exclude_m_h else None,
             quantity_weights=" ".join(f"{w:g}" for w in args.quantity_weights) if args.quantity_weights else None).items()
        if v is not None) + (" --families" if args.families else "")
        + (" --teff-as-theta" if args.teff_as_theta else "")
        + "".join(f" --depth-weight {' '.join(item)}" for item in (args.depth_weight or ())) + f" -o {args.output}")
    if args.init:
        command += f" --init {args.init}"
    path, _ = train_innterpol(grid, splits, args.output, cfg, resume_path=args.resume, init_path=args.init,
                                    provenance={"training_data": "ATLAS9 grid (astro-species 4.1.0 "
                                                                 "ATLAS9_grid.nc), 71-point tau_Ross resampling",
                                                "command": command}, progress=not args.quiet)
    m = read_checkpoint(path)["metrics"]
    polished = f", L-BFGS polish best at step {m['polish_best_epoch']}" if "polish_best_epoch" in m else ""
    print(f"wrote {path}: best validation MSE {m['best_val_mse']:.3g} (Adam: epoch {m['best_epoch']} of "
          f"{m['epochs_run']}{polished}; {m['train_seconds']:.0f} s)")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate_checkpoint, format_table

    exclude = ()
    if args.consistent:
        from .audit import audit_grid, inconsistent_slices

        exclude = inconsistent_slices(audit_grid(), "m_h")
    result = evaluate_checkpoint(args.weights, plot_dir=args.plot_dir, exclude_m_h=exclude)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"# written {args.json}")
    return 0


def cmd_audit(args) -> int:
    from .audit import audit_grid, format_audit

    audit = audit_grid(break_factor=args.break_factor)
    print(format_audit(audit))
    if args.json:
        Path(args.json).write_text(json.dumps(audit, indent=1))
        print(f"# written {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("atmosphere", help="model atmospheres: iNNterpol emulator and ATLAS9 grid",
                              description="Model atmospheres from the iNNterpol emulator of the ATLAS9 grid "
                                          "(or multilinear interpolation of the grid); train and evaluate it.")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="atmosphere_command", metavar="ACTION")
    q = s.add_parser("get", help="one atmosphere: print it, write KRZ/ATLAS9 (-o), plot it")
    q.add_argument("teff", type=float_in_range(*TEFF_RANGE_K, "K"), metavar="TEFF", help="effective temperature [K]")
    q.add_argument("logg", type=float_in_range(*LOGG_RANGE), metavar="LOGG", help="log10 surface gravity [cgs]")
    q.add_argument("m_h", type=float_in_range(*M_H_RANGE_DEX, "dex"), metavar="MH", help="[M/H] [dex]")
    q.add_argument("-o", "--output", type=output_file(*MODEL_SUFFIXES),
                   help="write the model: .krz (SME/PySME) or .mod/.dat/.atlas (ATLAS9 deck)")
    q.add_argument("--plot", action="store_true", help="write a PNG of the four profiles")
    q.add_argument("--plot-file", type=plot_file, help="PNG path (default: next to -o, or atmosphere.png)")
    q.add_argument("--linear", action="store_true", help="multilinear ATLAS9 interpolation instead of the emulator")
    q.add_argument("--extrapolate", action="store_true", help="with --linear: allow nearest-cell extrapolation")
    q.add_argument("--weights", help="emulator checkpoint (default: shipped weights)")
    q.add_argument("--family", type=int, choices=(0, 1), default=None,
                   help="ATLAS9 [M/H] family of the emulated model (0: slices of 72-layer decks, the default; 1: the "
                        "short-deck slices; `stellarnn atmosphere audit`)")
    q.set_defaults(func=cmd_get)
    q = s.add_parser("train", help="train the emulator on the ATLAS9 grid (resumable)")
    q.add_argument("-o", "--output", default="weights/atmospheres/innterpol_atlas9.pt", type=output_file(".pt"))
    q.add_argument("--components", type=positive_int, default=12, help="SVD components per quantity (12)")
    q.add_argument("--hidden", type=positive_int, default=40)
    q.add_argument("--layers", type=positive_int, default=12, help="hidden layers (12)")
    q.add_argument("--epochs", type=non_negative_int, default=2000, help="Adam epochs (0: only the polish)")
    q.add_argument("--lr", type=positive_float, default=3e-4)
    q.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                   help="learning rate: halve on a validation plateau (100 epochs), or cosine to --min-lr over --epochs")
    q.add_argument("--min-lr", type=float, default=0.0, help="floor of the learning rate (0)")
    q.add_argument("--batch-size", type=positive_int, default=64)
    q.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty of Adam (0)")
    q.add_argument("--activation", choices=("leaky_relu", "silu"), default="leaky_relu",
                   help="hidden-layer non-linearity (leaky_relu, slope 0.2: the paper's)")
    q.add_argument("--polish-epochs", type=non_negative_int, default=0,
                   help="full-batch L-BFGS steps after Adam, kept if they improve validation (0: none)")
    q.add_argument("--polish-iterations", type=positive_int, default=50, help="L-BFGS iterations per polish step (50)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--quantity-weights", type=float, nargs=4, metavar=("RHOX", "T", "PGAS", "NE"),
                   help="loss weight of each quantity (default: 1 1 1 1)")
    q.add_argument("--depth-weight", nargs=4, action="append", metavar=("Q", "LOGTAU_MIN", "LOGTAU_MAX", "W"),
                   help="weight W on the layers of quantity Q (rhox, T, P, n_e) with log tau in [MIN, MAX]: the loss is "
                        "then taken on the decoded profiles (repeatable)")
    q.add_argument("--max-seconds", type=float, default=None, help="stop after this wall time (best weights kept)")
    q.add_argument("--resume", help="resumable trainer state file (resumes when it exists)")
    q.add_argument("--init", help="start from this checkpoint (same widths and components; its SVD basis is kept)")
    q.add_argument("--threads", type=positive_int, default=1, help="torch threads (1)")
    q.add_argument("--teff-as-theta", action="store_true",
                   help="the network sees theta = 5040 K / Teff instead of Teff (more of its input range for cool models)")
    q.add_argument("--families", action="store_true",
                   help="the ATLAS9 [M/H] family (0: slices of 72-layer decks, 1: short-deck slices; "
                        "`stellarnn atmosphere audit`) as a fourth input")
    q.add_argument("--exclude-m-h", type=float, nargs="+", metavar="MH",
                   help="[M/H] slices left out of training and validation (see `stellarnn atmosphere audit`)")
    q.add_argument("--device", default="cpu", help="torch device of the training (cpu, cuda, auto)")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=cmd_train)
    q = s.add_parser("evaluate", help="error table on the held-out sets vs linear interpolation; plots")
    q.add_argument("--weights", help="emulator checkpoint (default: shipped weights)")
    q.add_argument("--plot-dir", default=".", type=output_folder, help="where to write the PNGs")
    q.add_argument("--json", type=output_file(".json"), help="also write the table as JSON")
    q.add_argument("--consistent", action="store_true",
                   help="leave the [M/H] slices the grid audit flags out of every set and of linear interpolation")
    q.set_defaults(func=cmd_evaluate)
    q = s.add_parser("audit", help="per slice of each grid axis: deck VTURB, layers, smoothness against neighbours")
    q.add_argument("--json", help="also write the audit as JSON")
    q.add_argument("--break-factor", type=float, default=5.0,
                   help="flag a slice whose median T deviation exceeds this times its axis' median (5)")
    q.set_defaults(func=cmd_audit)
