"""Figure of one model atmosphere: RHOX, T, P_gas and n_e against log tau_Ross."""
from __future__ import annotations

import numpy as np

from ..figures import new_figure

#: panels: Atmosphere field, axis label, log scale
PANELS = (("rhox", "RHOX [g cm$^{-2}$]", True), ("temperature", "T [K]", False),
          ("p_gas", "P$_{gas}$ [dyn cm$^{-2}$]", True), ("n_e", "n$_e$ [cm$^{-3}$]", True))


def plot_atmosphere(atm, title: str = "", fig=None):
    """Draw the four profiles of one atmosphere in 2x2 panels; returns the figure (not closed).

    Write it with :func:`stellarnn.figures.save_figure`.

    The layout is matplotlib's constrained layout, which places every axis label outside the tick labels
    (the T panel's labels such as "10000" are wider than the default spacing between panels).

    Parameters
    ----------
    atm : Atmosphere
        A single atmosphere (numpy or torch arrays).
    title : str
    fig : matplotlib.figure.Figure or None
        An empty figure to draw into; ``None`` makes a new one (9 x 6 in, constrained layout).

    Returns
    -------
    matplotlib.figure.Figure
    """
    atm = atm.numpy()
    if atm.batched:
        raise ValueError("plot_atmosphere draws one atmosphere; index the batch first (atm[i])")
    fig, axes = new_figure(fig, nrows=2, ncols=2, figsize=(9, 6), sharex=True, layout="constrained")
    for ax, (name, label, log) in zip(axes.flat, PANELS):
        ax.plot(atm.log_tau_ross, np.asarray(getattr(atm, name)))
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
    for ax in axes[1]:
        ax.set_xlabel(r"log $\tau_{Ross}$")
    if title:
        fig.suptitle(title)
    return fig
