"""Argument types and output-path checks shared by every ``stellarnn`` command.

Numbers are checked when the command line is parsed (argparse ``type=`` functions), so a
nonsense value such as ``--threads 0`` or ``--v-micro -3`` is refused with one line before
anything is loaded.  Output paths are checked the same way (:func:`output_file`,
:func:`output_folder`) or, where the allowed kind depends on other options, by the command
itself with :func:`check_output_file` / :func:`check_output_folder` before any computation:
an unknown extension, an existing folder where a file is expected, a name longer than the
file system allows or a folder without write permission fails at once instead of after the
work is done.

This module imports nothing from stellarnn, so every job's ``cli.py`` can use it.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

#: file name length limit of common Linux/macOS file systems (bytes), used when pathconf cannot tell
NAME_MAX_FALLBACK = 255

#: extensions matplotlib writes that the plotting commands accept
PLOT_SUFFIXES = (".png", ".pdf", ".svg")

#: parse-time ranges of stellar labels given on the command line (``atmosphere get``, ``synth``):
#: physical limits, wider than any grid (beyond a grid the emulator or the synthesis says so itself)
TEFF_RANGE_K = (1000.0, 100_000.0)
LOGG_RANGE = (-1.0, 10.0)
M_H_RANGE_DEX = (-6.0, 2.0)
#: microturbulence [km/s]: 0 up to about the sound speed of cool photospheres (more is not turbulence)
V_MICRO_RANGE_KMS = (0.0, 20.0)


class OutputPathError(ValueError):
    """An output path that cannot be written: names the path and the reason."""


def _number(text, kind, what: str):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{what} expected, got {text!r}") from None


def positive_int(text) -> int:
    """argparse type: an integer >= 1 (counts of passes, draws, threads, epochs...)."""
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text) -> int:
    """argparse type: an integer >= 0 (indices)."""
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text, float, "a number")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def float_in_range(low: float, high: float, unit: str = ""):
    """argparse type factory: a number within [low, high] (``unit`` is shown in the message)."""
    suffix = f" {unit}" if unit else ""

    def parse(text) -> float:
        value = _number(text, float, "a number")
        if not (low <= value <= high):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be within {low:g} to {high:g}{suffix}, got {text}")
        return value

    parse.__name__ = f"number in [{low:g}, {high:g}]"
    return parse


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX_FALLBACK


def _existing_ancestor(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable_folder(path: Path, folder: Path) -> None:
    if not folder.is_dir():
        raise OutputPathError(f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: folder {folder} is not writable")


def _check_name_lengths(path: Path) -> None:
    limit = _name_max(_existing_ancestor(path))
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputPathError(f"{path}: file name longer than {limit} bytes")


def check_output_file(path, suffixes=None, default_suffix: str | None = None) -> Path:
    """Check that ``path`` can be written as an output file, before any computation.

    Parameters
    ----------
    path : path-like
        The output file.  Missing parent folders are allowed (the writers create them) when
        the nearest existing one is writable.
    suffixes : sequence of str, optional
        Accepted extensions (lower case, with the dot); None accepts any.
    default_suffix : str, optional
        Appended when ``path`` has no extension (as matplotlib does for plots), so that the
        path returned is the one that will be written.

    Returns
    -------
    Path
        The path that will be written.

    Raises
    ------
    OutputPathError
        Unknown extension, an existing folder, a name too long, or no write permission.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise OutputPathError("empty output path")
    _check_name_lengths(path)  # first: stat() of a name too long raises OSError
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder, expected a file name")
    if default_suffix and not path.suffix:
        path = path.with_name(path.name + default_suffix)
        if path.is_dir():
            raise OutputPathError(f"{path}: is a folder, expected a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes and "".join(path.suffixes).lower() not in suffixes:
        raise OutputPathError(f"{path}: unknown output extension {path.suffix or '(none)'!r} "
                              f"(expected {', '.join(suffixes)})")
    _check_name_lengths(path)  # again: the appended suffix counts
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{path}: file exists and is not writable")
    _check_writable_folder(path, _existing_ancestor(path))
    return path


def check_output_folder(path) -> Path:
    """Check that ``path`` is (or can be created as) a writable output folder, before any computation.

    Raises
    ------
    OutputPathError
        An existing file, a name too long, or no write permission.
    """
    path = Path(path)
    _check_name_lengths(path)  # first: stat() of a name too long raises OSError
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: exists and is not a folder")
    if path.is_dir():
        _check_writable_folder(path, path)
    else:
        _check_writable_folder(path, _existing_ancestor(path))
    return path


def output_file(*suffixes: str, default_suffix: str | None = None):
    """argparse type factory: an output file checked by :func:`check_output_file` at parse time."""

    def parse(text) -> Path:
        try:
            return check_output_file(text, suffixes or None, default_suffix)
        except OutputPathError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        except OSError as exc:  # e.g. a parent folder without search permission
            raise argparse.ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None

    parse.__name__ = "output file"
    return parse


def output_folder(text) -> Path:
    """argparse type: an output folder checked by :func:`check_output_folder` at parse time."""
    try:
        return check_output_folder(text)
    except OutputPathError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except OSError as exc:  # e.g. a parent folder without search permission
        raise argparse.ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None


#: argparse type of plot outputs: .png (appended when no extension is given), .pdf or .svg
plot_file = output_file(*PLOT_SUFFIXES, default_suffix=".png")


def torch_device(text) -> str:
    """argparse type: ``auto`` or a torch device name whose hardware is present (``cpu``, ``cuda``, ``cuda:1``).

    ``--device cuda`` on a machine without a GPU is refused at parse time instead of failing
    inside torch after the weights are loaded.
    """
    if text == "auto":
        return text
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA device on this machine (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r}: no MPS device on this machine (use auto or cpu)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: unsupported device type (auto, cpu, cuda, cuda:N, mps)")
    return text


def encodable_text(text, encoding: str = "ascii") -> str:
    """``text`` with every character ``encoding`` cannot hold written as a backslash escape.

    FITS string columns hold ASCII only; file names that are not valid UTF-8 reach Python as
    lone surrogates, which no codec encodes.  Table writers pass their string cells through
    this so that one odd file name cannot lose a whole table after the computation.
    """
    return str(text).encode(encoding, "backslashreplace").decode(encoding)
