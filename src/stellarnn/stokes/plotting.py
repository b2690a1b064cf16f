"""Plots of Stokes profiles and of inverted parameter maps (matplotlib figures, not closed; write them with
:func:`stellarnn.figures.save_figure`)."""
from __future__ import annotations

import numpy as np

from ..figures import new_figure

_MAP_STYLE = {
    "B": ("magma", None), "gamma": ("RdBu_r", (0.0, 180.0)), "chi": ("twilight", (0.0, 180.0)),
    "v_los": ("RdBu_r", "symmetric"),
}


def plot_parameter_maps(maps: dict[str, np.ndarray], units: dict[str, str] | None = None,
                        names: tuple[str, ...] | None = None, title: str | None = None, fig=None):
    """Image grid of 2-D parameter maps (rows: slit positions x, columns: along the slit y).

    ``fig``: an empty figure to draw into (``None``: a new one).  Returns the figure, not closed.
    """
    names = tuple(n for n in (names or tuple(maps)) if n in maps)
    if not names:
        raise ValueError("no maps to plot")
    ncol = min(4, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = new_figure(fig, nrows=nrow, ncols=ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        data = np.asarray(maps[name], dtype=float).T
        cmap, limits = _MAP_STYLE.get(name, ("viridis", None))
        if limits == "symmetric":
            m = float(np.nanpercentile(np.abs(data), 99)) or 1.0
            limits = (-m, m)
        im = ax.imshow(data, origin="lower", cmap=cmap, vmin=None if limits is None else limits[0],
                       vmax=None if limits is None else limits[1], interpolation="nearest", aspect="equal")
        unit = (units or {}).get(name, "")
        ax.set_title(f"{name} [{unit}]" if unit else name, fontsize=10)
        ax.set_xlabel("slit position x [px]")
        ax.set_ylabel("along slit y [px]")
        fig.colorbar(im, ax=ax, shrink=0.85)
    if title:
        fig.suptitle(title)
    return fig


def plot_stokes_profiles(wavelengths: np.ndarray, observed: np.ndarray,
                         models: dict[str, np.ndarray] | None = None, title: str | None = None, fig=None):
    """Four panels I, Q, U, V (continuum units) against wavelength (Å); optional fitted models.

    ``fig``: an empty figure to draw into (``None``: a new one).  Returns the figure, not closed.
    """
    observed = np.asarray(observed)
    if observed.shape != (4, len(wavelengths)):
        raise ValueError(f"profile must have shape (4, {len(wavelengths)}); got {observed.shape}")
    fig, axes = new_figure(fig, nrows=2, ncols=2, figsize=(9, 6), sharex=True)
    for k, (ax, label) in enumerate(zip(axes.ravel(), "IQUV")):
        ax.plot(wavelengths, observed[k], ".", ms=3, color="k", label="observed")
        for name, model in (models or {}).items():
            ax.plot(wavelengths, np.asarray(model)[k], lw=1.2, label=name)
        ax.set_ylabel(f"{label}/Ic")
        if k >= 2:
            ax.set_xlabel("wavelength [Å]")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
