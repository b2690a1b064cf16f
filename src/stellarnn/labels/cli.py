"""``stellarnn train apogeenet|astronn`` and ``stellarnn run apogeenet|astronn FILES...``."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..cli_arguments import float_in_range, non_negative_int, output_file, positive_float, positive_int, torch_device

PIPELINES = ("apogeenet", "astronn")

#: table formats ``run -o`` writes (by extension)
RUN_TABLE_SUFFIXES = (".fits", ".fit", ".csv")


def _train_config(args):
    from ..train import TrainConfig

    lr = args.lr if args.lr is not None else (5e-4 if args.pipeline == "astronn" else 1e-3)
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, plateau_patience=args.plateau_patience,
                       max_seconds=args.max_seconds, seed=args.seed, progress=not args.quiet,
                       early_stop_patience=getattr(args, "early_stop", None),
                       grad_clip=getattr(args, "grad_clip", None))


def _training_arrays(args) -> dict:
    """Spectra + labels from either --spectra/--labels or --grid."""
    from .astronn.label_table import load_apstar_training_set
    from .astronn.network import OUTPUT_LABELS
    from .astronn.training import grid_labels_to_astronn, synthetic_observations

    if getattr(args, "fresh_noise", False) and not args.grid:
        raise ValueError("--fresh-noise needs --grid DIR (noise-free synthetic spectra)")
    if args.grid and getattr(args, "fresh_noise", False):
        from ..synthesis.training_set import FRESH_SNR_RANGE
        from .astronn.training import noise_free_observations

        obs = noise_free_observations(args.grid)
        lo, hi = args.snr_range or FRESH_SNR_RANGE
        empty = np.empty((0, obs["flux"].shape[1]), dtype=np.float32)
        data = {"flux": empty, "ivar": empty, "bitmask": None, "labels": np.empty((0, len(OUTPUT_LABELS))),
                "errors": None, "input_flux": "continuum_normalised",
                "fresh": {"flux": obs["flux"], "continuum": obs["continuum"],
                          "labels": grid_labels_to_astronn(obs["labels"], obs["label_names"])},
                "provenance": {"training_data": f"synthetic grid {' + '.join(args.grid)}, fresh noise every epoch "
                                                f"(S/N log-uniform {lo:g}-{hi:g} per spectrum and epoch), seed {args.seed}"}}
        if args.emulated:
            data = _add_emulated(data, args)
        return data
    if args.grid:
        obs = synthetic_observations(args.grid, args.snr, args.seed, args.copies)
        labels = grid_labels_to_astronn(obs["labels"], obs["label_names"])
        data = {"flux": obs["flux"], "ivar": obs["ivar"], "bitmask": None, "labels": labels, "errors": None,
                "provenance": {"training_data": f"synthetic grid {' + '.join(args.grid)}, S/N {args.snr}, {args.copies} noise "
                                                f"copies, seed {args.seed}"}, "input_flux": "continuum_normalised"}
        if args.emulated:
            data = _add_emulated(data, args)
        return data
    if not (args.spectra and args.labels):
        raise ValueError("give either --grid DIR or both --spectra 'apStar*.fits' and --labels TABLE")
    data = load_apstar_training_set(args.spectra, args.labels, args.use, OUTPUT_LABELS)
    print(f"{len(data['labels'])} spectra matched, {len(data['skipped'])} files skipped", file=sys.stderr)
    data["provenance"] = {"training_data": f"apStar files {args.spectra} with labels {args.labels} ({args.use})"}
    data["input_flux"] = "raw"
    return data


def _add_emulated(data: dict, args) -> dict:
    """Append emulator spectra to grid observations.

    ``args.emulated`` label sets are drawn from the first grid's prior (with ``--emulated-balance`` alpha > 0 picked
    from a pool of prior draws so that the populations' shares flatten,
    :func:`~stellarnn.synthesis.training_set.balance_populations`); with ``--gate-grid`` only the
    stars of the populations where the emulator's held-out error is <= ``--gate-sigma`` (S/N-100 sigma)
    are kept (:func:`~stellarnn.synthesis.training_set.emulator_population_gate`).  With ``--fresh-noise`` they
    join the grid's noise-free pool and get new noise every epoch too
    (:func:`~stellarnn.synthesis.training_set.noise_free_emulated`), so that no fixed noise realisation can be
    learnt by heart.  Without ``--fresh-noise`` they are observed once (bad-pixel clusters, chip gaps, S/N in
    ``--snr-range``).
    """
    import numpy as np

    from ..synthesis.emulator import load_emulator
    from ..synthesis.grid_builder import BROADENING_LABELS, LABEL_NAMES, grid_prior
    from ..synthesis.training_set import (BALANCE_POOL_FACTOR, balance_populations, emulator_population_gate,
                                          generate_training_set, in_populations, prior_labels)
    from ..train import file_sha256
    from .astronn.training import grid_labels_to_astronn

    emulator, payload = load_emulator(args.emulator)
    names = (LABEL_NAMES + BROADENING_LABELS)[:emulator.label_min.numel()]
    prior = grid_prior(args.grid[0])
    balance = float(getattr(args, "emulated_balance", 0.0) or 0.0)
    if balance > 0:  # the first args.emulated draws are those of balance 0: the pool extends them
        pool = prior_labels(args.emulated * BALANCE_POOL_FACTOR, args.seed + 1000, prior, names)
        drawn = pool[balance_populations(pool, names, args.emulated, balance)]
    else:
        drawn = prior_labels(args.emulated, args.seed + 1000, prior, names)
    gate = None
    if args.gate_grid:
        from ..synthesis.grid_builder import load_grid

        gate = emulator_population_gate(emulator, load_grid(args.gate_grid), args.gate_sigma)
        keep = in_populations(drawn, names, gate["allowed"])
        gate.update(grid=str(args.gate_grid), n_drawn=int(len(drawn)), n_kept=int(keep.sum()))
        drawn = drawn[keep]
        print(f"emulator gate ({args.gate_grid}, <= {args.gate_sigma:g} sigma): populations used "
              f"{', '.join(gate['allowed']) or 'none'}; skipped {', '.join(gate['skipped']) or 'none'}; "
              f"{len(drawn)} of {args.emulated} emulator spectra kept", file=sys.stderr)

    def provenance(what: str, how: str) -> dict:
        return {"training_data": data["provenance"]["training_data"]
                + f" + {what} ({args.emulator}, labels from the prior of {args.grid[0]}"
                  f"{f' with population shares flattened (balance {balance:g})' if balance > 0 else ''}"
                  f"{', populations ' + '/'.join(gate['allowed']) if gate else ''}{how}; seed {args.seed + 1000})",
                "emulator_sha256": file_sha256(args.emulator), "emulator_gate": gate}

    if data.get("fresh") is not None:  # fresh-noise training: noise-free emulator spectra join the grid's pool
        from ..synthesis.training_set import noise_free_emulated

        emulated = noise_free_emulated(emulator, drawn)
        fresh = data["fresh"]
        out = dict(data)
        out["fresh"] = {"flux": np.concatenate([fresh["flux"], emulated["flux"]]),
                        "continuum": np.concatenate([fresh["continuum"], emulated["continuum"]]),
                        "labels": np.concatenate([fresh["labels"], grid_labels_to_astronn(drawn, names)])}
        out["provenance"] = provenance(f"{len(drawn)} noise-free emulator spectra with fresh noise every epoch as well",
                                       "")
        return out
    snr_range = tuple(args.snr_range) if args.snr_range else (30.0, 300.0)
    fluxes, ivars, bitmasks, labels = [], [], [], []
    chunk = 2000  # generated in chunks and kept as float32: 20,000 spectra stay ~2 GB
    for start in range(0, len(drawn), chunk):
        ts = generate_training_set(emulator, len(drawn[start:start + chunk]), seed=args.seed + 1000 + start,
                                   snr_range=snr_range, labels=drawn[start:start + chunk])
        ok = np.isfinite(ts.flux) & np.isfinite(ts.error) & (ts.error > 0)
        # the grid rows are at continuum level ~1; scale emulated rows to the same level (normalisation
        # removes it anyway, this keeps the raw inputs comparable)
        level = np.nanmedian(np.where(ok, ts.flux, np.nan), axis=1, keepdims=True)
        fluxes.append((np.where(ok, ts.flux, 0.0) / level).astype(np.float32))
        ivars.append((np.where(ok, 1.0 / np.where(ok, ts.error, 1.0) ** 2, 0.0) * level ** 2).astype(np.float32))
        bitmasks.append(ts.bitmask.astype(np.int32))
        labels.append(grid_labels_to_astronn(ts.labels, list(ts.label_names)))
        del ts
    if not fluxes:
        return dict(data, provenance=dict(data["provenance"], emulator_gate=gate))
    flux, ivar = np.concatenate(fluxes), np.concatenate(ivars)
    n_grid = len(data["flux"])
    bitmask = np.concatenate([np.zeros((n_grid, flux.shape[1]), dtype=np.int32)] + bitmasks)
    out = dict(data)
    out["flux"] = np.concatenate([data["flux"].astype(np.float32), flux])
    out["ivar"] = np.concatenate([data["ivar"].astype(np.float32), ivar])
    out["bitmask"] = bitmask
    out["labels"] = np.concatenate([data["labels"]] + labels)
    out["provenance"] = provenance(f"{len(flux)} emulator spectra", f", S/N {snr_range[0]:g}-{snr_range[1]:g} "
                                                                   "log-uniform, bad-pixel clusters, chip gaps")
    return out


def write_manifest(checkpoint, pipeline: str) -> Path:
    """Write the ``pipeline`` entry of ``manifest.json`` next to a checkpoint (:func:`stellarnn.train.update_manifest`).

    The pipelines load ``weights/<pipeline>/manifest.json`` by default, so writing it next to a
    checkpoint under ``weights/<pipeline>/`` ships that checkpoint.
    """
    from ..train import read_checkpoint, update_manifest

    checkpoint = Path(checkpoint)
    payload = read_checkpoint(checkpoint)
    prov = payload.get("provenance", {})
    path = checkpoint.parent / "manifest.json"
    training_data = prov.get("training_data", "")
    if prov.get("init_from"):
        training_data += f"; fine-tuned from {prov['init_from']} (sha256 {prov.get('init_sha256', '?')})"
    update_manifest(path, checkpoint, pipeline, prov.get("command", ""), training_data=training_data,
                    created=prov.get("created", ""), noise_model=payload.get("normalisation", {}).get("noise_model"))
    return path


def cmd_train(args) -> int:
    import torch

    from .astronn.network import OUTPUT_LABELS

    if args.threads:
        torch.set_num_threads(args.threads)
    data = _training_arrays(args)
    config = _train_config(args)
    provenance = dict(data["provenance"], command=args.command_line)
    from ..spectra.brackett_mask import BRACKETT_MASK_DEFAULT

    brackett_mask = BRACKETT_MASK_DEFAULT if getattr(args, "brackett_mask", None) is None else args.brackett_mask
    if args.pipeline == "astronn":
        from .astronn.training import train_astronn

        _, metrics = train_astronn(data["flux"], data["labels"], args.out, ivar=data["ivar"], bitmask=data["bitmask"],
                                   label_errors=data["errors"], val_fraction=args.val_fraction, config=config,
                                   resume_path=args.resume, provenance=provenance, seed=args.seed,
                                   loss_beta=args.loss_beta, select=args.select,
                                   init_from=args.init, brackett_mask=brackett_mask, fresh=data.get("fresh"),
                                   snr_range=args.snr_range, hyperparameters=_astronn_hyperparameters(args),
                                   freeze_trunk=args.freeze_trunk)
    else:
        from .apogeenet.network import APOGEENET_SIZES
        from .apogeenet.training import train_apogeenet

        cols = [OUTPUT_LABELS.index(n) for n in ("teff", "logg", "fe_h")]
        hp = APOGEENET_SIZES[args.size]
        fresh = data.get("fresh")
        if fresh is not None:
            fresh = dict(fresh, labels=fresh["labels"][:, cols])
        _, metrics = train_apogeenet(data["flux"], data["ivar"], data["labels"][:, cols], args.out,
                                     bitmask=data["bitmask"], input_flux=data["input_flux"],
                                     val_fraction=args.val_fraction, config=config, hyperparameters=hp,
                                     resume_path=args.resume, provenance=provenance, seed=args.seed,
                                     init_from=args.init, brackett_mask=brackett_mask, fresh=fresh,
                                     snr_range=args.snr_range)
    print(json.dumps(metrics, indent=1, default=float))
    print(f"wrote {args.out}", file=sys.stderr)
    if args.manifest:
        print(f"wrote {write_manifest(args.out, args.pipeline)}", file=sys.stderr)
    return 0


def cmd_calibrate(args) -> int:
    """Calibrate a checkpoint's noise model on repeat observations and store it in the checkpoint."""
    import torch

    from ..spectra import Spectrum, apogee_wavelength
    from .astronn.network import OUTPUT_LABELS
    from .astronn.training import synthetic_observations
    from .noise_model import (accuracy_arrays, attach_noise_model, calibrate_accuracy_by_population,
                              calibrate_accuracy_offset, calibrate_pipeline_on_repeats, precision_part)
    from .pipeline import get_pipeline

    if args.accuracy_emulated and not args.accuracy_grid:
        raise ValueError("--accuracy-emulated adds stars to the accuracy step of --accuracy-grid: give that grid too")
    snr_term = len(set(args.accuracy_snr)) >= 2 if args.snr_term is None else args.snr_term
    snr_power = snr_term if args.snr_power is None else args.snr_power
    if snr_power and not snr_term:  # before any spectrum is run
        raise ValueError("--snr-power needs the S/N fit: two or more --accuracy-snr values, not --no-snr-term")
    if args.threads:
        torch.set_num_threads(args.threads)
    # the network itself on its own synthetic stars: no information / OOD gate (it is for unknown inputs)
    pipeline = get_pipeline(args.pipeline, weights=args.weights, quality_checks=False)
    labels = list(OUTPUT_LABELS) if args.pipeline == "astronn" else ["teff", "logg", "fe_h"]
    first = second = None
    if args.emulated:  # repeat visits of emulated stars: S/N 30-300, bad pixels, chip gaps
        from ..synthesis.emulator import load_emulator
        from ..synthesis.training_set import generate_training_set

        emulator, _ = load_emulator(args.emulator)
        visits = generate_training_set(emulator, args.emulated, seed=args.seed, n_visits=2).spectra()
        first, second = visits[0::2], visits[1::2]  # star-major order: (star 0 visit 0, star 0 visit 1, ...)
        source = f"{args.emulated} emulated stars x 2 visits ({args.emulator})"
    elif args.grid:
        obs = synthetic_observations(args.grid, args.snr, args.seed, copies=2)
        n = len(obs["flux"]) // 2
        wl = apogee_wavelength()
        first = [Spectrum(wl, obs["flux"][i], obs["ivar"][i]) for i in range(n)]
        second = [Spectrum(wl, obs["flux"][n + i], obs["ivar"][n + i]) for i in range(n)]
        source = f"grid {args.grid} x 2 noise realisations at S/N {args.snr}"
    elif args.accuracy_grid:
        model = precision_part(pipeline.noise_model)
        print("keeping the stored precision model (scale, offset from repeat pairs)", file=sys.stderr)
    else:
        raise ValueError("give --emulated N (repeat visits of emulated stars) or --grid DIR, and/or --accuracy-grid DIR")
    if first is not None:
        if args.max_pairs:
            first, second = first[:args.max_pairs], second[:args.max_pairs]
        print(f"calibrating on {len(first)} repeat pairs: {source}", file=sys.stderr)
        model = calibrate_pipeline_on_repeats(pipeline, first, second, labels)
    if args.accuracy_grid:
        from ..synthesis.grid_builder import load_grid

        sets, wl = [], apogee_wavelength()
        grid = load_grid(args.accuracy_grid)  # several folders: concatenated in the order given (same physics)
        for snr in args.accuracy_snr:
            obs = synthetic_observations(grid, snr, args.seed + int(snr))
            sets.append(accuracy_arrays(pipeline, [Spectrum(wl, f, iv) for f, iv in zip(obs["flux"], obs["ivar"])],
                                        obs["labels"], obs["label_names"], labels))
        source = (f"labelled grid{'s' if len(args.accuracy_grid) > 1 else ''} {' + '.join(args.accuracy_grid)} "
                  f"({len(obs['flux'])} spectra) at S/N " + ", ".join(f"{v:g}" for v in args.accuracy_snr))
        if args.accuracy_emulated:
            from ..synthesis.emulator import load_emulator
            from ..synthesis.grid_builder import grid_prior
            from ..synthesis.training_set import generate_training_set

            lo, hi = min(args.accuracy_snr), max(args.accuracy_snr)
            emulated = generate_training_set(load_emulator(args.emulator)[0], args.accuracy_emulated,
                                             seed=args.seed + 1, snr_range=(lo, hi),
                                             prior=grid_prior(args.accuracy_grid[0]))
            sets.append(accuracy_arrays(pipeline, emulated.spectra(), emulated.labels, emulated.label_names, labels))
            source += (f" + {args.accuracy_emulated} emulated stars from its prior ({args.emulator}, S/N {lo:g}-{hi:g} "
                       f"log-uniform, seed {args.seed + 1})")
        print(f"accuracy floor from {source}", file=sys.stderr)
        values, truth, raw, snr_error = (np.concatenate([a[k] for a in sets]) for k in range(4))
        accuracy = dict(source=source, raise_scale=args.raise_scale, clip_sigma=args.clip_sigma,
                        snr=snr_error if snr_term else None, snr_power=snr_power)
        if snr_term:
            print("fitting a 1/(S/N) term per label (the spectra's error-array S/N)"
                  + (" and a (100/(S/N))^p factor" if snr_power else ""), file=sys.stderr)
        arrays = (values, truth, raw)
        if args.population_min:
            model = calibrate_accuracy_by_population(model, *arrays, min_spectra=args.population_min, **accuracy)
            for name, entry in model.diagnostics["accuracy_by_population"]["populations"].items():
                print(f"  {name}: {entry['n']} spectra, {entry['model']} model", file=sys.stderr)
        else:
            model = calibrate_accuracy_offset(model, *arrays, **accuracy)
    command = args.command_line
    if first is not None:
        model.diagnostics["command"] = command
    if args.accuracy_grid:
        model.diagnostics["accuracy"]["command"] = command
    if not args.dry_run:
        attach_noise_model(args.weights, model)
        if (Path(args.weights).parent / "manifest.json").is_file():
            write_manifest(args.weights, args.pipeline)  # the checksum changed
    print(json.dumps(model.to_dict(), indent=1))
    print(("would store" if args.dry_run else "stored") + f" the noise model in {args.weights}", file=sys.stderr)
    return 0


def _spectra_from_files(files, which: str):
    """(spectrum or None, source, reason) for each requested spectrum; unreadable files give None.

    Any failure of the reader on one file (not only :class:`SpectrumFileError`) becomes that
    file's reason, naming it, so that one bad file never drops the others.
    """
    from ..spectra import SpectrumFileError, read_apogee_file

    items = []
    for path in files:
        try:
            star = read_apogee_file(path)
        except SpectrumFileError as exc:
            items.append((None, str(path), str(exc)))
            continue
        except Exception as exc:  # a reader failure we did not foresee: still this file's, not the batch's
            items.append((None, str(path), f"{path}: {type(exc).__name__}: {exc}"))
            continue
        chosen = {"combined": [star.combined], "visits": star.visits, "all": [star.combined] + star.visits}[which]
        for s in chosen:
            tag = "combined" if s.meta.get("kind") == "combined" else f"visit {s.meta.get('visit')}"
            items.append((s, f"{path} [{tag}]", ""))
    return items


def _shipped_emulator_dir() -> Path:
    from ..data.shipped_weights import weights_dir

    return weights_dir("emulator")


def _train_astronn_defaults() -> dict:
    """The defaults of ``train_astronn`` that the CLI exposes, read from the function (one source)."""
    import inspect

    from .astronn.training import train_astronn

    sig = inspect.signature(train_astronn)
    return {k: sig.parameters[k].default for k in ("loss_beta", "select")}


def _write_table(rows, fields, path: Path) -> None:
    from astropy.table import Table

    from ..cli_arguments import encodable_text
    from ..fits_tables import write_fits_table

    names = ["source"] + list(fields) + ["reason"]
    encoding = "utf-8" if path.suffix.lower() == ".csv" else "ascii"  # FITS strings are ASCII
    cols = {}
    for name in names:
        values = [r.get(name) for r in rows]
        if name in fields and fields[name].dtype.startswith("float"):
            values = [np.nan if v is None else v for v in values]
        if name not in fields or fields[name].dtype == "str":
            values = [encodable_text("" if v is None else v, encoding) for v in values]
        cols[name] = np.asarray(values, dtype=fields[name].dtype if name in fields else str)
    if path.suffix.lower() != ".csv":  # the package's one FITS table writer (TUNITn, TCOMMn)
        write_fits_table(cols, path, units={n: f.unit for n, f in fields.items() if f.unit},
                         descriptions={n: f.description for n, f in fields.items()}, name="LABELS")
        return
    table = Table(cols)
    for name in fields:
        if fields[name].unit:
            table[name].unit = fields[name].unit
        table[name].description = fields[name].description
    table.write(path, overwrite=True, format="ascii.csv")


def cmd_guard(args) -> int:
    import torch

    from ..atomic_files import atomic_write
    from .accuracy_guard import GUARD_FILE, guard_record, guard_subset, guard_violations, population_scatter, read_guard
    from .pipeline import get_pipeline, resolve_shipped_weights

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = resolve_shipped_weights(args.pipeline, args.weights)
    subset = guard_subset()
    measured = population_scatter(get_pipeline(args.pipeline, weights=weights), subset)
    try:
        record = guard_record(args.pipeline, weights, measured, subset)
    except ValueError as exc:
        print(f"stellarnn: {exc}", file=sys.stderr)
        return 1
    print(f"{args.pipeline} ({weights}), robust scatter at S/N {subset['snr']:g} on the guard subset:")
    for pop, entry in measured.items():
        print(f"  {pop:18s} n={entry['n']:2d}  " + "  ".join(
            f"{lab} {entry[lab]:.4g} (limit {record['limits'][pop][lab]['limit']:.4g})"
            for lab in ("teff", "logg", "fe_h")))
    if args.write:
        path = Path(weights).parent / GUARD_FILE
        with atomic_write(path) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {path}")
        return 0
    try:
        stored = read_guard(weights)
    except FileNotFoundError as exc:
        print(f"stellarnn: {exc}", file=sys.stderr)
        return 1
    bad = guard_violations(stored, measured)
    for line in bad:
        print(f"  over the stored limit: {line}", file=sys.stderr)
    return 1 if bad else 0


def cmd_run(args) -> int:
    import torch

    from .pipeline import get_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {"weights": args.weights, "device": args.device, "seed": args.seed}
    if args.output is not None:  # checked at parse time too; again here for callers that build args themselves
        from ..cli_arguments import check_output_file

        check_output_file(args.output, RUN_TABLE_SUFFIXES)
    if getattr(args, "brackett_mask", None) is not None:
        kwargs["brackett_mask"] = args.brackett_mask
    if args.pipeline == "astronn" and args.mc_passes:
        kwargs["mc_passes"] = args.mc_passes
    if args.pipeline == "apogeenet" and args.draws:
        kwargs["n_draws"] = args.draws
    pipeline = get_pipeline(args.pipeline, **kwargs)
    items = _spectra_from_files(args.files, args.spectra)
    ok = [s for s, _, _ in items if s is not None]
    results = iter(pipeline.process(ok)) if ok else iter(())
    rows = []
    flag = "flag_runtime_exception" if args.pipeline == "apogeenet" else "flag_no_result"
    for spectrum, source, reason in items:
        if spectrum is None:
            row = {k: (np.nan if v.dtype.startswith("float") else None) for k, v in pipeline.fields.items()}
            bit = 1 if args.pipeline == "apogeenet" else 1 << 11
            row.update(result_flags=bit, flag_warn=args.pipeline == "astronn", flag_bad=args.pipeline == "apogeenet",
                       reason=f"{flag}: {reason}")
        else:
            row = next(results)
        row["source"] = source
        rows.append(row)
    shown = ["teff", "e_teff", "logg", "e_logg", "fe_h", "e_fe_h", "result_flags"]
    print(f"# {pipeline.name} {pipeline.version}")
    print("  ".join(f"{c:>10s}" for c in shown) + "  source / reason")
    for r in rows:
        vals = []
        for c in shown:
            v = r.get(c)
            vals.append(f"{v:10d}" if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                        else ("       nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:10.3f}"))
        print("  ".join(vals) + f"  {r['source']}" + (f"  ({r['reason']})" if r.get("reason") else ""))
    if args.output:
        _write_table(rows, pipeline.fields, Path(args.output))
        print(f"wrote {len(rows)} rows to {args.output}", file=sys.stderr)
    failed = [(source, reason) for spectrum, source, reason in items if spectrum is None]
    if failed:
        print(f"stellarnn: error: {len(failed)} of {len(args.files)} input file(s) could not be read "
              f"(flagged rows above):", file=sys.stderr)
        for source, reason in failed:
            print(f"  {reason}", file=sys.stderr)
        return 1
    return 0


def _astronn_hyperparameters(args) -> dict | None:
    """AstroNN's hyper-parameters with ``--branch-dropout``: the --init checkpoint's (else the published ones) with
    that rate; None without the option (train_astronn then takes the checkpoint's or the published ones)."""
    if args.branch_dropout is None:
        return None
    hp = {}
    if args.init:
        from ..train import read_checkpoint

        hp = dict(read_checkpoint(args.init)["hyperparameters"])
    return dict(hp, branch_dropout=args.branch_dropout)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a label pipeline (apogeenet, astronn)",
                       description="Train APOGEENet or AstroNN with the project trainer, on a synthetic grid or "
                                   "on apStar files with an ASPCAP-style label table (-9999/NaN = missing).")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="train_command", metavar="PIPELINE")
    for name in PIPELINES:
        q = s.add_parser(name, help=f"train {name}")
        q.set_defaults(func=cmd_train, pipeline=name)
        q.add_argument("--spectra", help="glob of apStar files, e.g. 'apStar*.fits' (quote it)")
        q.add_argument("--labels", help="label table (FITS) with APOGEE_ID or FILE and TEFF, LOGG, FE_H, X_H/X_FE")
        q.add_argument("--use", choices=("combined", "visits", "all"), default="combined",
                       help="which spectra of each apStar file to train on")
        q.add_argument("--grid", nargs="+",
                       help="train on synthetic grid folder(s) instead (grids/apogee/train [grids/apogee/train2])")
        q.add_argument("--snr", type=positive_float, default=100.0, help="S/N of the noise added to grid spectra")
        q.add_argument("--copies", type=positive_int, default=1, help="noise realisations per grid spectrum")
        q.add_argument("--fresh-noise", action="store_true",
                       help="with --grid: new noise for every grid spectrum every epoch, S/N log-uniform in "
                            "--snr-range per spectrum and epoch (replaces --snr/--copies)")
        q.add_argument("--snr-range", type=positive_float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                       help="S/N range of --fresh-noise (default 30 500) and of the --emulated spectra (default 30 300)")
        q.add_argument("--emulated", type=non_negative_int, default=0,
                       help="with --grid: draw this many label sets from the grid's prior and add their emulator "
                            "spectra (bad pixels, gaps; only the gated populations with --gate-grid)")
        q.add_argument("--emulated-balance", type=float_in_range(0.0, 1.0), default=0.0, metavar="ALPHA",
                       help="with --emulated: flatten the populations' shares among the emulated stars, each "
                            "proportional to its prior share ** (1 - ALPHA) (0: the prior's, 1: equal; default 0)")
        q.add_argument("--gate-grid", help="held-out grid (e.g. grids/apogee_like_f0/test) on which the emulator's "
                                           "per-population error decides which populations --emulated may use")
        q.add_argument("--gate-sigma", type=positive_float, default=0.3,
                       help="largest emulator error (median rms over the S/N-100 sigma) of a used population")
        q.add_argument("--emulator", default=str(_shipped_emulator_dir()
                                                 / "payne_apogee.pt"), help="emulator checkpoint for --emulated")
        q.add_argument("-o", "--out", required=True, type=output_file(".pt"), help="checkpoint to write (.pt)")
        q.add_argument("--init", help="checkpoint of the same network to start from (fine-tuning), e.g. the shipped weights")
        q.add_argument("--epochs", type=int, default=60)
        q.add_argument("--batch-size", type=positive_int, default=64)
        q.add_argument("--lr", type=float, default=None, help="Adam learning rate (5e-4 AstroNN, 1e-3 APOGEENet)")
        q.add_argument("--plateau-patience", type=int, default=4)
        q.add_argument("--early-stop", type=positive_int, default=None, metavar="N",
                       help="stop after N epochs without a better validation score (best weights kept)")
        q.add_argument("--max-seconds", type=float, default=None, help="stop after this wall time (best kept)")
        q.add_argument("--grad-clip", type=float, default=None, metavar="NORM",
                       help="clip the gradient norm to NORM (AstroNN's first dense layer dies without it under "
                            "beta-NLL: bench/astronn_dead_units.py)")
        q.add_argument("--val-fraction", type=float, default=0.1)
        q.add_argument("--resume", help="resume file: written every epoch, picked up if present")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--threads", type=positive_int, default=None,
                       help="torch threads (default: torch's choice, one per core)")
        q.add_argument("-q", "--quiet", action="store_true")
        q.add_argument("--brackett-mask", action=argparse.BooleanOptionalAction, default=None,
                       help="mask the H I Brackett cores (+-3 A around Br 11-20; +-20 A around Br 11-13 below "
                            "5500 K) in the training spectra, recorded in the checkpoint (stellarnn.spectra."
                            "brackett_mask; default off, as the shipped weights)")
        q.add_argument("--manifest", action="store_true",
                       help="write manifest.json next to the checkpoint (under weights/%s/ this ships it)" % name)
        if name == "apogeenet":
            q.add_argument("--size", choices=("small", "medium", "full"), default="small",
                           help="network widths: the shipped small configuration (108 k parameters), medium (the "
                                "published pooled length on small's convolutions with a 4 x 512 head, 5.0 M; "
                                "bench/apogeenet_sizes.py) or the published ~72.6 M parameters")
        else:
            q.add_argument("--branch-dropout", type=float_in_range(0.0, 0.95), default=None, metavar="P",
                           help="dropout rate of the 19 abundance branches (default: the trunk's 0.3, as published; "
                                "with --init the checkpoint's); a lower rate lets the branches' heads follow their "
                                "window pixels instead of shrinking towards [Fe/H] (bench/label_shrinkage.py)")
            q.add_argument("--freeze-trunk", action="store_true",
                           help="with --init: train the abundance branches only (Teff, log g, [Fe/H] and the "
                                "trunk keep the --init weights)")
            q.add_argument("--loss-beta", type=float, default=_train_astronn_defaults()["loss_beta"],
                           help="beta-NLL exponent (Seitzer et al. 2022); 0 is the published AstroNN loss, "
                                "which can stall Teff/log g by inflating their predicted variance (default 0.5)")
            q.add_argument("--select", choices=("values", "robust", "loss"), default=_train_astronn_defaults()["select"],
                           help="best epoch (and learning-rate schedule) by the validation MSE of the values "
                                "(default), by the geometric mean of each label's robust scatter (robust) or by "
                                "the loss")

    q = s.add_parser("calibrate-noise", help="calibrate and store a checkpoint's noise model on repeat pairs "
                                             "(and a labelled grid)",
                     description="Two observations of each star (emulated visits, or two noise realisations of each "
                                 "synthetic grid spectrum) act as repeat visits; scale and offset per label make "
                                 "(x1 - x2)/sqrt(e1^2 + e2^2) follow N(0, 1).  With --accuracy-grid the offsets are "
                                 "then raised so that (x - truth)/e has unit variance on a labelled grid never "
                                 "used in training (the systematic floor the repeats cannot see), per population "
                                 "where it has enough spectra (--population-min).")
    q.set_defaults(func=cmd_calibrate)
    q.add_argument("pipeline", choices=PIPELINES)
    q.add_argument("--weights", required=True, help="checkpoint to calibrate (updated in place)")
    q.add_argument("--emulated", type=non_negative_int, default=0,
                   help="calibrate on this many emulated stars observed twice (S/N 30-300, bad pixels)")
    q.add_argument("--emulator", default=str(_shipped_emulator_dir()
                                             / "payne_apogee.pt"), help="emulator checkpoint for --emulated")
    q.add_argument("--grid", help="or: a synthetic grid directory, observed twice at --snr")
    q.add_argument("--snr", type=positive_float, default=100.0)
    q.add_argument("--max-pairs", type=non_negative_int, default=0, help="use at most this many pairs (0: all)")
    q.add_argument("--accuracy-grid", nargs="+", metavar="DIR",
                   help="labelled PySME grid(s) never trained on (e.g. grids/apogee_like_f0/calib) for the accuracy "
                        "floor, several concatenated (built with the same physics; a grid still being built gives "
                        "its finished spectra); alone, it keeps the stored precision model")
    q.add_argument("--raise-scale", action="store_true",
                   help="with --accuracy-grid: fit the scale too (never below the repeat-pair scale), not the "
                        "offset alone; for raw errors that overstate precision but grow with the accuracy errors")
    q.add_argument("--clip-sigma", type=float, default=5.0,
                   help="with --accuracy-grid: spectra beyond this many e from the truth are left out of the fit "
                        "(iterated; default 5); a large value fits the plain variance, outliers included")
    q.add_argument("--accuracy-snr", type=positive_float, nargs="+", default=[50.0, 100.0, 200.0],
                   help="S/N of the noisy observations of the accuracy grid")
    q.add_argument("--accuracy-emulated", type=non_negative_int, default=0,
                   help="with --accuracy-grid: add this many emulated stars (--emulator) drawn from the grid's prior "
                        "(not the training draws), S/N log-uniform over the --accuracy-snr range, to the accuracy "
                        "step: more stars per population than a PySME grid can afford")
    q.add_argument("--snr-term", action=argparse.BooleanOptionalAction, default=None,
                   help="with --accuracy-grid: fit an error term per label that scales as 1/(S/N), added in "
                        "quadrature (default: on when --accuracy-snr has two or more values)")
    q.add_argument("--snr-power", action=argparse.BooleanOptionalAction, default=None,
                   help="with the S/N term: also fit a factor (100/(S/N))^p per label, 0 <= p <= 1, held above the "
                        "highest calibrated S/N, for errors that widen as a whole with the noise (default: on with "
                        "the S/N term)")
    q.add_argument("--population-min", type=non_negative_int, default=30,
                   help="with --accuracy-grid: each population (giants, dwarfs, ...; from the predicted labels) "
                        "with at least this many labelled spectra gets an accuracy model of its own, the others the "
                        "global one (default 30; 0: one global model)")
    q.add_argument("--seed", type=int, default=12345)
    q.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: torch's choice, one per core)")
    q.add_argument("--dry-run", action="store_true", help="print the model, do not store it")

    q = s.add_parser("guard", help="measure a checkpoint's per-population scatter on the guard subset of the "
                                   "held-out grid (and write guard.json next to it)",
                     description="The shipped-weights guard (stellarnn.labels.accuracy_guard): the first 10 stars "
                                 "of each population of grids/apogee_like_f0/test at S/N 100, robust scatter of Teff, "
                                 "log g, [Fe/H] per population; limits 1.5x the issue's targets where met, else "
                                 "1.25x the shipped figure.  tests/test_labels_accuracy_guard.py asserts them.")
    q.set_defaults(func=cmd_guard)
    q.add_argument("pipeline", choices=PIPELINES)
    q.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    q.add_argument("--write", action="store_true", help="write guard.json next to the checkpoint")
    q.add_argument("--threads", type=positive_int, default=None, help="torch threads")

    p = sub.add_parser("run", help="run a label pipeline on apStar, apVisit, aspcapStar or mwmStar files",
                       description="Run APOGEENet or AstroNN on apStar files (combined spectra and/or visits) or "
                                   "apVisit files (the visit shifted to the star's rest frame by its VRAD and "
                                   "resampled onto the apStar grid); prints the main fields and optionally writes "
                                   "all of them.")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="run_command", metavar="PIPELINE")
    for name in PIPELINES:
        q = s.add_parser(name, help=f"run {name}")
        q.set_defaults(func=cmd_run, pipeline=name)
        q.add_argument("files", nargs="+", metavar="FILE", help="apStar, apVisit, aspcapStar or mwmStar files")
        q.add_argument("--weights", help="checkpoint (default: the shipped weights)")
        q.add_argument("--spectra", choices=("combined", "visits", "all"), default="combined")
        q.add_argument("-o", "--output", type=output_file(*RUN_TABLE_SUFFIXES),
                       help="write every field to this table (.fits or .csv)")
        q.add_argument("--device", type=torch_device, default="auto", help="auto (default), cpu, cuda, cuda:N")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--threads", type=positive_int, default=None,
                       help="torch threads (default: torch's choice, one per core)")
        q.add_argument("--brackett-mask", action=argparse.BooleanOptionalAction, default=None,
                       help="mask the H I Brackett cores before the network and in the OOD chi^2 (default: "
                            "what the weights were trained with; off for the shipped weights)")
        if name == "astronn":
            q.add_argument("--mc-passes", type=positive_int, default=None, help="MC-dropout passes (default 100)")
        else:
            q.add_argument("--draws", type=positive_int, default=None, help="noise draws (default 20)")
