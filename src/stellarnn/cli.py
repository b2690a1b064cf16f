"""The ``stellarnn`` command line: one entry point, one sub-command group per job.

Each job keeps its commands in ``stellarnn/<job>/cli.py`` with a ``register(subparsers)``
function; this module only wires them together.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

# (module, required): optional modules are skipped if a job is not built yet
_COMMAND_MODULES = (
    "stellarnn.data.cli",
    "stellarnn.spectra.cli",
    "stellarnn.atmospheres.cli",
    "stellarnn.synthesis.cli",
    "stellarnn.labels.cli",
    "stellarnn.blase.cli",
    "stellarnn.stokes.cli",
    "stellarnn.runner.cli",
    "stellarnn.main_job",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stellarnn",
        description="Neural-network stellar and solar spectroscopy (iNNterpol, APOGEENet, AstroNN, "
                    "blase, Stokes inversion) and a survey runner.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"stellarnn {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of a one-line message "
                             "(accepted anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def _with_default_action(argv: list[str]) -> list[str]:
    """``stellarnn atmosphere TEFF LOGG MH ...`` is short for ``stellarnn atmosphere get TEFF LOGG MH ...``."""
    if len(argv) >= 2 and argv[0] == "atmosphere":
        try:
            float(argv[1])
        except ValueError:
            return argv
        return [argv[0], "get", *argv[1:]]
    return argv


def _take_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` from anywhere before a ``--`` separator; say whether it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    return [a for a in argv[:end] if a != "--debug"] + argv[end:], debug


def error_message(exc: BaseException) -> str:
    """One line describing ``exc``: the file it concerns where known, then what went wrong.

    OS errors name their file (``PermissionError``, file name too long, read-only folder...);
    errors that say little by themselves (``IndexError``, ``AssertionError`` from torch...) are
    prefixed with their type; multi-line messages (SQLAlchemy) are cut to their first line.
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        where = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes, os.PathLike)) else exc.filename
        text = f"{where}: {exc.strerror or exc}"
        if exc.filename2 is not None:
            text += f" ({exc.filename2})"
    elif isinstance(exc, ImportError) and exc.name:
        text = f"cannot import {exc.name!r}: {exc}"
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
        if not isinstance(exc, (ValueError, RuntimeError, FileNotFoundError)) or not text:
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _printable_file_names() -> None:
    """Print file names that are not valid UTF-8 (surrogate-escaped by Python) as escapes, never fail on them."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a text stream we may reconfigure
            pass


def main(argv: list[str] | None = None) -> int:
    _printable_file_names()
    # the command line only writes figures to files: matplotlib's file backend unless the user chose one
    # (the library's plot functions never select a backend, so a notebook keeps its own)
    os.environ.setdefault("MPLBACKEND", "Agg")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    argv, debug = _take_debug_flag(argv)
    try:
        args = parser.parse_args(_with_default_action(argv))
    except Exception as exc:  # an argument type that failed in an unforeseen way (argparse's own errors exit 2)
        if debug:
            raise
        print(f"stellarnn: error: {error_message(exc)}", file=sys.stderr)
        return 2
    args.debug = debug or getattr(args, "debug", False)
    #: the command as given (what checkpoints and manifests record as their regenerating command)
    args.command_line = "stellarnn " + shlex.join(argv)
    func = getattr(args, "func", None)
    if func is None:
        # a group without a sub-command: show that group's help
        (getattr(args, "group_parser", None) or parser).print_help()
        return 0 if args.command is None else 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `stellarnn data list | head`: the reader went away
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # every failure of a command: one line (the traceback with --debug)
        if args.debug:
            raise
        print(f"stellarnn: error: {error_message(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
