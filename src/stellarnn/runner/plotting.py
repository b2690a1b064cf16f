"""Survey plots from the results database: a Kiel diagram and a flag summary.

Each function draws into a given ``ax`` (or a new figure) and returns the figure; write it with
:func:`stellarnn.figures.save_figure`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..figures import axes_for, save_figure
from .export import choose_version
from .fields import RUNNER_FLAG_DESCRIPTIONS, RunnerFlag
from .store import ResultsStore
from .task import field_kind

#: candidate column names for the Kiel diagram's axes and colour, first found wins
TEFF_COLUMNS = ("teff",)
LOGG_COLUMNS = ("logg",)
METALLICITY_COLUMNS = ("fe_h", "m_h")


def first_present(names, candidates):
    return next((c for c in candidates if c in names), None)


def load_columns(store: ResultsStore, pipeline: str, version: str | None, columns: list[str]) -> dict:
    values = {c: [] for c in columns}
    for rows in store.iter_results(pipeline, version, columns=columns):
        for c in columns:
            values[c].extend(rows_value(r[c]) for r in rows)
    return {c: np.array(v, dtype=float) for c, v in values.items()}


def rows_value(v):
    return np.nan if v is None else float(v)


def plot_kiel(db_url: str, pipeline: str, version: str | None = None, ax=None):
    """Teff (K, increasing to the left) against log g (increasing downwards), coloured by [Fe/H].

    Spectra flagged by the runner or with ``flag_bad`` set are left out.

    Parameters
    ----------
    db_url : str
        The results database.
    pipeline : str
    version : str or None
        Pipeline version (default: as :func:`choose_version` picks).
    ax : matplotlib.axes.Axes or None
        Where to draw (the colour bar takes room from it); ``None`` makes a new figure.

    Returns
    -------
    matplotlib.figure.Figure or None
        The figure drawn into (not closed); ``None``, with nothing drawn, when the pipeline has no
        ``teff`` and ``logg`` columns.
    """
    with ResultsStore(db_url) as store:
        query_version, gloss_version = choose_version(store, pipeline, version)
        glossary = store.glossary(pipeline, gloss_version)
        teff, logg = first_present(glossary, TEFF_COLUMNS), first_present(glossary, LOGG_COLUMNS)
        if teff is None or logg is None:
            return None
        feh = first_present(glossary, METALLICITY_COLUMNS)
        cols = [teff, logg, "runner_flags"] + ([feh] if feh else []) + (["flag_bad"] if "flag_bad" in glossary else [])
        data = load_columns(store, pipeline, query_version, cols)
    good = np.isfinite(data[teff]) & np.isfinite(data[logg]) & (np.nan_to_num(data["runner_flags"]) == 0)
    if "flag_bad" in data:
        good &= np.nan_to_num(data["flag_bad"]) == 0
    fig, ax = axes_for(ax, figsize=(6.4, 5.2))
    if feh:
        sc = ax.scatter(data[teff][good], data[logg][good], c=data[feh][good], s=8, cmap="viridis",
                        vmin=np.nanpercentile(data[feh][good], 2) if good.any() else None,
                        vmax=np.nanpercentile(data[feh][good], 98) if good.any() else None)
        info = glossary[feh]
        fig.colorbar(sc, ax=ax, label=f"{feh} [{info.unit}]" if info.unit else feh)
    else:
        ax.scatter(data[teff][good], data[logg][good], s=8, color="k")
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_xlabel(f"{teff} [{glossary[teff].unit}]" if glossary[teff].unit else teff)
    ax.set_ylabel(f"{logg} [{glossary[logg].unit}]" if glossary[logg].unit else logg)
    ax.set_title(f"{pipeline} {query_version or 'all versions'}: Kiel diagram ({int(good.sum())} of "
                 f"{len(good)} spectra, unflagged)", fontsize=9)
    return fig


def flag_counts(store: ResultsStore, pipeline: str, version: str | None, glossary: dict) -> dict[str, int]:
    """Counts of spectra per flag: each runner bit, flag columns (names containing ``flag``) as
    non-zero counts, and bitmask columns (integer, names ending in ``flags``) per set bit."""
    flag_cols = [c for c, info in glossary.items() if "flag" in c and field_kind(info) in "iub"]
    data = load_columns(store, pipeline, version, flag_cols)
    counts: dict[str, int] = {}
    n = len(next(iter(data.values()))) if data else 0
    counts["spectra"] = n
    runner = np.nan_to_num(data.pop("runner_flags", np.zeros(n))).astype(np.int64)
    for bit in RunnerFlag:
        counts[f"runner: {bit.name.lower()}"] = int(np.sum(runner & int(bit) != 0))
    for c, v in data.items():
        v = np.nan_to_num(v).astype(np.int64)
        if field_kind(glossary[c]) == "b" or not c.endswith("flags"):
            counts[c] = int(np.sum(v != 0))
        else:
            for bit in range(int(v.max(initial=0)).bit_length()):
                k = int(np.sum(v & (1 << bit) != 0))
                if k:
                    counts[f"{c} bit {bit}"] = k
    return counts


def plot_flag_summary(db_url: str, pipeline: str, version: str | None = None, ax=None):
    """Horizontal bar chart: how many spectra carry each flag (runner bits and the pipeline's flags).

    Parameters
    ----------
    db_url, pipeline, version
        As for :func:`plot_kiel`.
    ax : matplotlib.axes.Axes or None
        Where to draw; ``None`` makes a new figure, sized to the number of flags, with a footnote
        naming the runner bits.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into (not closed).
    """
    with ResultsStore(db_url) as store:
        query_version, gloss_version = choose_version(store, pipeline, version)
        glossary = store.glossary(pipeline, gloss_version)
        counts = flag_counts(store, pipeline, query_version, glossary)
    n = counts.pop("spectra")
    names, values = list(counts), [counts[k] for k in counts]
    own_figure = ax is None
    fig, ax = axes_for(ax, figsize=(7.0, 0.35 * len(names) + 1.4))
    bars = ax.barh(range(len(names)), values, color=["#b04040" if "runner" in k else "#4060b0" for k in names])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    for b, v in zip(bars, values):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v} ({100 * v / max(n, 1):.1f}%)",
                va="center", fontsize=7)
    ax.set_xlabel("spectra")
    ax.set_xlim(0, max(values + [1]) * 1.25)
    ax.set_title(f"{pipeline} {query_version or 'all versions'}: flags over {n} spectra", fontsize=9)
    if own_figure:
        legend = "; ".join(f"{int(b)}={RUNNER_FLAG_DESCRIPTIONS[b].split(' (')[0]}" for b in RunnerFlag)
        fig.text(0.01, 0.005, "runner bits: " + legend, fontsize=6)
        fig.get_layout_engine().set(rect=(0, 0.03, 1, 1))
    return fig


def write_survey_plots(db_url: str, pipeline: str, out_dir: str | os.PathLike,
                       version: str | None = None) -> dict[str, Path | None]:
    """Write ``<pipeline>_kiel.png`` and ``<pipeline>_flags.png`` into ``out_dir`` (what the runner's
    command line and :func:`stellarnn.runner.run_survey` produce).

    Returns
    -------
    dict
        ``{"kiel": path or None (no teff/logg columns: nothing written), "flags": path}``
    """
    out = Path(out_dir)
    kiel = plot_kiel(db_url, pipeline, version)
    flags = plot_flag_summary(db_url, pipeline, version)
    return {"kiel": None if kiel is None else save_figure(kiel, out / f"{pipeline}_kiel.png", dpi=120),
            "flags": save_figure(flags, out / f"{pipeline}_flags.png", dpi=120)}
