"""Matplotlib figures for every plotting module: where a drawing goes, and how a figure is written.

The library's plot functions draw into an ``ax`` (or a ``fig``) the caller passes, or into a new
figure made with :func:`new_figure`, and return the figure without closing it (a notebook shows it
inline).  They never select a matplotlib backend: the command line does that once at its entry
(``MPLBACKEND=Agg`` in :func:`stellarnn.cli.main`).  Writing a file is a separate step,
:func:`save_figure`.
"""
from __future__ import annotations

from pathlib import Path


def new_figure(fig=None, **subplot_kw):
    """Axes for a drawing: ``fig.subplots(**subplot_kw)`` on the given figure, else a new pyplot figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure or None
        An empty figure to draw into (e.g. a sub-figure of the caller's layout); ``None`` makes a new
        figure with ``figsize`` and ``layout`` taken from ``subplot_kw`` (``layout`` defaults to
        ``"tight"``).
    **subplot_kw
        Arguments of :meth:`matplotlib.figure.Figure.subplots` (``nrows``, ``ncols``, ``sharex``...).

    Returns
    -------
    (Figure, Axes or array of Axes)
    """
    figsize = subplot_kw.pop("figsize", None)
    layout = subplot_kw.pop("layout", "tight")
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, layout=layout)
    elif fig.axes:
        raise ValueError("fig already holds axes: pass an empty figure (or none)")
    return fig, fig.subplots(**subplot_kw)


def axes_for(ax=None, figsize=None):
    """The figure and axes of one drawing: ``ax`` (and its figure) when given, else a new figure."""
    if ax is not None:
        return ax.figure, ax
    return new_figure(figsize=figsize)


def save_figure(fig, path: str | Path, dpi: int = 110, close: bool = True) -> Path:
    """Write a matplotlib figure (creating the folder); returns the path written.

    A figure without a layout engine is laid out with ``tight_layout`` first.  ``close`` (default)
    releases it from pyplot afterwards, as the command line wants; a notebook may keep it.
    """
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path
