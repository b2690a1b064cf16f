"""The one glossary of result columns: the runner's own columns plus a pipeline's fields.

The same :class:`~stellarnn.labels.pipeline.FieldInfo` entries describe the database columns
(column comments and the ``runner_fields`` table), the exported FITS summary (TUNITn, TCOMMn),
Parquet field metadata, and the ``--help`` text of ``stellarnn export`` / ``stellarnn runner fields``.
"""
from __future__ import annotations

import enum
import textwrap

from ..labels.pipeline import FieldInfo


class RunnerFlag(enum.IntFlag):
    """Bits of the ``runner_flags`` column (set by the runner, not by the pipeline)."""

    #: the input file could not be read (missing, not FITS, truncated, wrong layout, no usable pixel)
    INPUT_UNREADABLE = 1
    #: the pipeline raised on this spectrum (its contract says it must not); no labels
    PIPELINE_EXCEPTION = 2
    #: the pipeline returned no row (or a malformed one) for this spectrum
    PIPELINE_NO_ROW = 4


#: descriptions of each RunnerFlag bit (used in glossary text and the flag summary plot)
RUNNER_FLAG_DESCRIPTIONS = {
    RunnerFlag.INPUT_UNREADABLE: "input file unreadable (missing, not FITS, truncated, bad layout)",
    RunnerFlag.PIPELINE_EXCEPTION: "pipeline raised on this spectrum (no labels)",
    RunnerFlag.PIPELINE_NO_ROW: "pipeline returned no or a malformed row",
}

#: columns the runner adds to every pipeline's results, in order (identity first)
RUNNER_FIELDS: dict[str, FieldInfo] = {
    "spectrum_id": FieldInfo("", "spectrum identity: input item and row (file path:row or grid:folder#index:row)",
                             "str"),
    "item": FieldInfo("", "input item the spectrum came from (absolute file path or grid:folder#index)", "str"),
    "source": FieldInfo("", "absolute path of the input file or grid folder", "str"),
    "kind": FieldInfo("", "combined, visit, synthetic, or unreadable (no spectrum could be read)", "str"),
    "row": FieldInfo("", "row in the apStar HDUs (0 combined, 2.. visits) or grid index; -1 if unreadable",
                     "int64"),
    "object_id": FieldInfo("", "object identifier (APOGEE_ID / OBJID header, or grid-name-index)", "str"),
    "pipeline": FieldInfo("", "pipeline name", "str"),
    "version": FieldInfo("", "pipeline model version (e.g. weights sha256 prefix)", "str"),
    "runner_flags": FieldInfo("", "runner bitmask: 1 input unreadable, 2 pipeline exception, 4 no row from pipeline",
                              "int64"),
    "reason": FieldInfo("", "why a spectrum is flagged (pipeline or runner message); empty if none", "str"),
    "run_id": FieldInfo("", "id of the run (runner_runs table) that wrote this row last", "int64"),
    "updated_at": FieldInfo("s", "Unix time (UTC seconds) this row was last written", "float64"),
}

#: columns of RUNNER_FIELDS filled per spectrum (the rest come from the store at write time)
IDENTITY_COLUMNS = ("spectrum_id", "item", "source", "kind", "row", "object_id")


def glossary(pipeline_fields: dict[str, FieldInfo]) -> dict[str, FieldInfo]:
    """All result columns of one pipeline: runner columns then the pipeline's fields.

    Raises
    ------
    ValueError
        If a pipeline field reuses a runner column name (other than ``reason``, which is merged).
    """
    clash = sorted(set(pipeline_fields) & (set(RUNNER_FIELDS) - {"reason"}))
    if clash:
        raise ValueError(f"pipeline fields {clash} clash with the runner's own columns")
    out = dict(RUNNER_FIELDS)
    out.update({k: v for k, v in pipeline_fields.items() if k != "reason"})
    return out


def describe(info: FieldInfo) -> str:
    """One-line description with its unit, e.g. ``'effective temperature [K]'``."""
    return f"{info.description} [{info.unit}]" if info.unit else info.description


def glossary_text(fields: dict[str, FieldInfo], width: int = 100) -> str:
    """Glossary as aligned text (one column per line) for ``--help`` and ``runner fields``."""
    if not fields:
        return ""
    name_w = max(len(n) for n in fields) + 2
    lines = []
    for name, info in fields.items():
        wrapped = textwrap.wrap(describe(info), width=max(30, width - name_w - 2)) or [""]
        lines.append(f"  {name:<{name_w}}{wrapped[0]}")
        lines.extend(" " * (name_w + 2) + w for w in wrapped[1:])
    return "\n".join(lines)


def runner_help_text() -> str:
    """The runner's columns and flag bits, for CLI epilogs."""
    bits = "\n".join(f"  {int(b):>3d}  {RUNNER_FLAG_DESCRIPTIONS[b]}" for b in RunnerFlag)
    return "runner columns (every pipeline's table):\n" + glossary_text(RUNNER_FIELDS) + \
        "\nrunner_flags bits:\n" + bits
