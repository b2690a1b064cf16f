"""``stellarnn runner run|survey|status|fields|plot`` and ``stellarnn export``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_arguments import non_negative_int, output_folder, torch_device

DEFAULT_OUT = "outputs"
#: default of --db-retry (seconds); the same as stellarnn.runner.store.DEFAULT_RETRY_SECONDS
DEFAULT_RETRY_SECONDS = 120.0


def non_negative_seconds(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value


def default_db(args) -> str:
    from .store import default_db_url

    return args.db or default_db_url(getattr(args, "out", None) or DEFAULT_OUT)


def parse_options(pairs: list[str] | None) -> dict:
    """``KEY=VALUE`` pairs; values parsed as JSON when they are JSON (numbers, true, lists), else strings."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def import_modules(modules: list[str] | None) -> None:
    import importlib

    for m in modules or []:
        importlib.import_module(m)


def cmd_run(args) -> int:
    from .engine import run_pipeline

    import_modules(args.modules)
    report = run_pipeline(args.pipeline, args.inputs, default_db(args), out_dir=args.out, batch_size=args.batch_size,
                          workers=args.workers, scheduler=args.scheduler, dask=args.dask,
                          include_visits=args.visits, grid_snr=args.grid_snr,
                          pipeline_kwargs=parse_options(args.option), modules=args.modules or (), rerun=args.rerun,
                          progress=not args.quiet, db_retry_seconds=args.db_retry, device=args.device,
                          prefetch=args.prefetch)
    elsewhere = (f", {report.n_items_claimed_elsewhere} taken by a concurrent run"
                 if report.n_items_claimed_elsewhere else "")
    print(f"{report.pipeline} {report.version}: run {report.run_id} {report.status} on {report.executor} "
          f"({report.n_workers} workers) in {report.wall_seconds:.1f} s: {report.n_items_done} items done, "
          f"{report.n_items_skipped} already done{elsewhere}, {report.n_rows} rows ({report.n_unreadable} "
          f"unreadable, {report.n_pipeline_failures} pipeline failures, {report.n_flagged_bad} flagged bad "
          f"by the pipeline) -> {report.db_url}")
    for reason in report.reasons[:5]:
        print(f"  flagged: {reason}")
    failed = report.n_unreadable + report.n_pipeline_failures
    if failed:  # the rows are stored (flagged); the exit status says that not every input gave labels
        print(f"stellarnn: error: {failed} input spectra failed ({report.n_unreadable} unreadable, "
              f"{report.n_pipeline_failures} pipeline failures); their rows carry runner_flags and a reason",
              file=sys.stderr)
        return 1
    return 0


def cmd_survey(args) -> int:
    from .engine import run_survey

    import_modules(args.modules)
    summary = run_survey(args.pipelines, args.inputs, args.db, args.out, batch_size=args.batch_size,
                         workers=args.workers, scheduler=args.scheduler, include_visits=not args.no_visits,
                         export_formats=args.formats, rerun=args.rerun, progress=not args.quiet,
                         db_retry_seconds=args.db_retry, device=args.device, prefetch=args.prefetch)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_status(args) -> int:
    from .store import ResultsStore, hide_password

    with ResultsStore(default_db(args)) as store:
        runs = store.runs_summary()
        if not runs:
            print(f"no runs in {hide_password(store.url)}")
            return 0
        for r in runs:
            print(f"run {r['run_id']:>4d} {r['pipeline']:>12s} {r['version']:>14s} {r['status']:>11s} "
                  f"{r['executor']:>6s} x{r['n_workers']} items {r['n_items']} (skipped {r['n_items_skipped']})")
        for p in store.pipelines():
            try:
                print(f"{p}: {store.count(p)} result rows")
            except KeyError:
                pass
    return 0


def cmd_fields(args) -> int:
    from .fields import glossary, glossary_text

    if args.db:
        from .store import ResultsStore

        with ResultsStore(args.db) as store:
            fields = store.glossary(args.pipeline, args.version)
    else:
        from ..labels.pipeline import get_pipeline

        import_modules(args.modules)
        fields = glossary(get_pipeline(args.pipeline, **parse_options(args.option)).fields)
    print(glossary_text(fields))
    return 0


def cmd_plot(args) -> int:
    from .plotting import write_survey_plots

    written = write_survey_plots(default_db(args), args.pipeline, Path(args.out), args.version)
    print(f"kiel: {written['kiel'] or 'skipped (no teff/logg columns)'}")
    print(f"flags: {written['flags']}")
    return 0


def cmd_export(args) -> int:
    from ..cli_arguments import check_output_file
    from .export import export_results

    if args.output is not None:  # before reading the database: a folder or another extension fails at once
        args.output = str(check_output_file(args.output, {"fits": (".fits", ".fit", ".fits.gz"),
                                                          "parquet": (".parquet",), "csv": (".csv",)}[args.format]))
    path = export_results(default_db(args), args.pipeline, args.format, args.output, args.version)
    print(path)
    return 0


def fields_help() -> str:
    """The glossary shown by ``stellarnn export --help``: runner columns, then each built-in pipeline's
    fields when its class declares them (pipelines are not constructed: no weights are loaded)."""
    from ..labels.pipeline import _REGISTRY, available_pipelines
    from .fields import glossary_text, runner_help_text

    parts = [runner_help_text()]
    try:
        names = available_pipelines()
    except Exception as exc:  # a broken pipeline module must not break --help
        names = []
        parts.append(f"(pipelines unavailable: {exc})")
    for name in names:
        fields = getattr(_REGISTRY[name], "fields", None)
        if isinstance(fields, dict) and fields:
            parts.append(f"pipeline {name} columns:\n" + glossary_text(fields))
        else:
            parts.append(f"pipeline {name}: run 'stellarnn runner fields {name}' for its columns")
    return "\n\n".join(parts)


def with_glossary_help(parser: argparse.ArgumentParser) -> None:
    """Append the field glossary to ``parser``'s help, computed only when help is shown."""
    plain = parser.format_help

    def format_help() -> str:
        return plain() + "\n" + fields_help() + "\n"

    parser.format_help = format_help


def add_run_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("--db", help="results database: SQLAlchemy URL (sqlite:///f.sqlite, "
                                "postgresql://user@host/db) or SQLite path (default OUT/stellarnn_results.sqlite)")
    q.add_argument("--out", default=DEFAULT_OUT, type=output_folder, help=f"output folder (default {DEFAULT_OUT})")
    q.add_argument("--batch-size", type=int, default=32, help="input items (files / grid spectra) per task (32)")
    q.add_argument("--workers", type=int, default=None,
                   help="local worker processes (0: in this process; default: CPU count); with --dask the "
                        "LocalCluster size (default 2)")
    q.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler (tcp://host:8786)")
    q.add_argument("--dask", action="store_true", help="run on a Dask LocalCluster of --workers processes")
    q.add_argument("--rerun", action="store_true",
                   help="process items already done for this pipeline version again (rows are updated)")
    q.add_argument("--import", dest="modules", action="append", metavar="MODULE",
                   help="import MODULE first (registers your own pipelines); repeatable")
    q.add_argument("--db-retry", type=non_negative_seconds, default=DEFAULT_RETRY_SECONDS, metavar="SECONDS",
                   help="retry a database that fails with a connection error (server restart, lock) with "
                        f"back-off for this long before stopping with a one-line error "
                        f"(default {DEFAULT_RETRY_SECONDS:g}; 0: no retry); a rerun then resumes")
    q.add_argument("--device", type=torch_device, default=None, metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N, passed to each pipeline as device= (default: the pipeline's "
                        "own); with cuda or auto and several GPUs, worker i uses cuda:(i mod n_gpus); a CUDA "
                        "device this machine lacks is refused before any work")
    q.add_argument("--prefetch", type=non_negative_int, default=1, metavar="N",
                   help="with --workers 0: read the files of the next N batches in a background thread while "
                        "the current batch runs (default 1; 0: no read-ahead)")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runner", help="survey runner: pipelines over many spectra into a results database",
                       description="Run label pipelines over apStar, apVisit, aspcapStar or mwmStar files "
                                   "(globs, list files) and synthetic grids in batches, locally or on Dask, into "
                                   "SQLite/PostgreSQL; resumable.")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="runner_command", metavar="ACTION")

    q = s.add_parser("run", help="run one pipeline over inputs (skips items already done)",
                     description="Inputs: apStar, apVisit, aspcapStar or mwmStar files or globs "
                                 "('data/**/apStar-*.fits'), list files given as @FILE or named *.txt, *.lst, *.list (one apStar path, glob or "
                                 "grid folder per line; any other line rejects the list), or synthetic grid folders "
                                 "(with spec.json).  Runners started together on one database split the items.")
    q.add_argument("pipeline", metavar="PIPELINE", help="registered pipeline name (apogeenet, astronn, ...)")
    q.add_argument("inputs", nargs="+", metavar="INPUT")
    add_run_options(q)
    q.add_argument("--visits", action="store_true", help="also process the visits of multi-visit apStar files")
    q.add_argument("--grid-snr", type=float, default=100.0, help="S/N given to noiseless grid spectra (100)")
    q.add_argument("--option", action="append", metavar="KEY=VALUE", help="pipeline constructor argument")
    q.set_defaults(func=cmd_run)

    q = s.add_parser("survey", help="several pipelines over inputs, then FITS summaries and plots")
    q.add_argument("--pipelines", nargs="+", required=True, metavar="PIPELINE")
    q.add_argument("--inputs", nargs="+", required=True, metavar="INPUT")
    add_run_options(q)
    q.add_argument("--no-visits", action="store_true", help="combined spectra only")
    q.add_argument("--formats", nargs="+", default=["fits"], choices=("fits", "parquet", "csv"))
    q.set_defaults(func=cmd_survey)

    q = s.add_parser("status", help="runs and result counts of a database")
    q.add_argument("--db", help="database URL or SQLite path (default outputs/stellarnn_results.sqlite)")
    q.set_defaults(func=cmd_status)

    q = s.add_parser("fields", help="the glossary of a pipeline's result columns (units, descriptions)")
    q.add_argument("pipeline", metavar="PIPELINE")
    q.add_argument("--db", help="read it from this database instead of building the pipeline")
    q.add_argument("--version", help="model version (with --db; default: latest run)")
    q.add_argument("--option", action="append", metavar="KEY=VALUE", help="pipeline constructor argument")
    q.add_argument("--import", dest="modules", action="append", metavar="MODULE")
    q.set_defaults(func=cmd_fields)

    q = s.add_parser("plot", help="Kiel diagram (Teff-log g coloured by [Fe/H]) and flag summary PNGs")
    q.add_argument("--pipeline", required=True)
    q.add_argument("--db", help="database URL or SQLite path (default OUT/stellarnn_results.sqlite)")
    q.add_argument("--out", default=DEFAULT_OUT, type=output_folder, help=f"folder for the PNGs (default {DEFAULT_OUT})")
    q.add_argument("--version", help="model version (default: latest run; 'all' for every version)")
    q.set_defaults(func=cmd_plot)

    e = sub.add_parser("export", help="export a pipeline's results: FITS (units, TCOMMn), Parquet or CSV",
                       description="Write the survey summary table of one pipeline from the results database.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--pipeline", required=True)
    e.add_argument("--format", required=True, choices=("fits", "parquet", "csv"))
    e.add_argument("--db", help="database URL or SQLite path (default outputs/stellarnn_results.sqlite)")
    e.add_argument("--output", "-o", help="output file (default <pipeline>_summary.<format>)")
    e.add_argument("--version", help="model version (default: latest run; 'all' for every version)")
    e.set_defaults(func=cmd_export)
    with_glossary_help(e)
