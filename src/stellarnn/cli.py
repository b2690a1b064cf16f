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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(_with_default_action(argv))
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
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"stellarnn: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
