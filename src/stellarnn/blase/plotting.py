"""Plots of data, model and residual (a matplotlib figure; write it with :func:`stellarnn.figures.save_figure`)."""
from __future__ import annotations

import numpy as np

from ..figures import new_figure


def plot_fit(wavelength: np.ndarray, data: np.ndarray, model: np.ndarray,
             segment: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None,
             title: str = "", max_panels: int = 8, fig=None):
    """Data and model (top) and residual data − model (bottom) per segment.

    ``wavelength`` in Angstrom; ``extra`` holds further curves (e.g. the telluric component);
    ``fig``: an empty figure to draw into (``None``: a new one).  Returns the figure, not closed.
    """
    wavelength, data, model = (np.asarray(a, dtype=float) for a in (wavelength, data, model))
    if not (wavelength.shape == data.shape == model.shape) or wavelength.ndim != 1 or wavelength.size == 0:
        raise ValueError("wavelength, data and model must be non-empty 1-D arrays of equal length")
    segment = np.zeros(wavelength.size, int) if segment is None else np.asarray(segment)
    segs = np.unique(segment)[:max_panels]
    fig, axes = new_figure(fig, nrows=2 * len(segs), ncols=1, figsize=(12, 3.2 * len(segs)), squeeze=False,
                           gridspec_kw={"height_ratios": [3, 1] * len(segs)})
    for i, s in enumerate(segs):
        sel = segment == s
        top, bottom = axes[2 * i, 0], axes[2 * i + 1, 0]
        top.plot(wavelength[sel], data[sel], color="k", lw=0.6, label="data")
        top.plot(wavelength[sel], model[sel], color="tab:red", lw=0.6, label="model")
        for name, curve in (extra or {}).items():
            top.plot(wavelength[sel], np.asarray(curve)[sel], lw=0.5, label=name)
        resid = data[sel] - model[sel]
        bottom.plot(wavelength[sel], resid, color="tab:blue", lw=0.5)
        bottom.axhline(0, color="k", lw=0.5)
        bottom.set_ylabel(f"resid\nrms {np.sqrt(np.nanmean(resid ** 2)):.4f}")
        top.set_ylabel("flux")
        if i == 0:
            top.legend(loc="lower left", fontsize=8)
            top.set_title(title)
    axes[-1, 0].set_xlabel("wavelength [Å]")
    return fig
