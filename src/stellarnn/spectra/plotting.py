"""Plots of APOGEE spectra: raw flux with the fitted continuum, and the normalised spectrum."""
from __future__ import annotations

import numpy as np

from ..figures import new_figure, save_figure  # noqa: F401  (save_figure: the writer, re-exported)
from .apogee_grid import APOGEE_BAD_PIXEL_MASK, kept_pixel_index
from .continuum import ContinuumResult
from .spectrum import Spectrum


def plot_apogee_spectrum(spectrum: Spectrum, normalised: ContinuumResult, index: int = 0,
                         title: str | None = None, fig=None):
    """Two panels: raw flux (+ continuum, masked pixels in red) and the normalised flux.

    Returns the figure (not closed); write it with :func:`save_figure`.

    Parameters
    ----------
    spectrum : Spectrum
        The raw apStar spectrum (8575 px).
    normalised : ContinuumResult
        Output of :func:`apogee_continuum` for a batch containing ``spectrum`` at ``index``.
    index : int
        Row of ``spectrum`` in that batch.
    title : str or None
        Title of the top panel (default: APOGEE id, kind, row and S/N from ``spectrum.meta``).
    fig : matplotlib.figure.Figure or None
        An empty figure to draw into; ``None`` makes a new one (12 x 6 in).

    Returns
    -------
    matplotlib.figure.Figure
    """
    idx = kept_pixel_index()
    wl = spectrum.wavelength
    flux = np.where(spectrum.ivar > 0, spectrum.flux, np.nan)
    masked = (spectrum.bitmask & APOGEE_BAD_PIXEL_MASK) != 0
    fig, axes = new_figure(fig, nrows=2, ncols=1, figsize=(12, 6), sharex=True)
    axes[0].plot(wl, flux, lw=0.4, color="k", label="flux")
    axes[0].plot(wl[idx], normalised.continuum[index].numpy(), color="C1", lw=1.2, label="continuum (Chebyshev, deg 2)")
    axes[0].plot(wl[masked], flux[masked], ".", ms=2, color="C3", label="masked (bits 0-7, 12)")
    axes[0].set_ylabel(spectrum.meta.get("bunit", "flux"))
    axes[0].legend(loc="upper right", fontsize=8)
    nf = normalised.flux[index].numpy()
    ne = normalised.error[index].numpy()
    nmask = masked[idx] | normalised.not_normalised[index].numpy()
    # break the line at chip gaps
    wk = wl[idx].copy()
    gaps = np.where(np.diff(idx) > 1)[0]
    wk_plot = np.insert(wk, gaps + 1, np.nan)
    nf_plot = np.insert(np.where(nmask, np.nan, nf), gaps + 1, np.nan)
    ne_plot = np.insert(np.where(nmask, np.nan, ne), gaps + 1, np.nan)
    axes[1].fill_between(wk_plot, nf_plot - ne_plot, nf_plot + ne_plot, color="C0", alpha=0.35, lw=0,
                         label="±1σ")
    axes[1].plot(wk_plot, nf_plot, lw=0.4, color="k")
    axes[1].plot(wk[nmask], nf[nmask], ".", ms=2, color="C3", label="masked / not normalised (set to 1)")
    axes[1].legend(loc="lower right", fontsize=8)
    axes[1].axhline(1.0, color="C0", lw=0.6, ls="--")
    axes[1].set_ylim(0.3, 1.3)
    axes[1].set_ylabel("normalised flux")
    axes[1].set_xlabel("vacuum wavelength [Å]")
    meta = spectrum.meta
    axes[0].set_title(title or f"{meta.get('apogee_id', '')} {meta.get('kind', '')} row {meta.get('row', '')}  "
                      f"S/N={meta.get('snr', float('nan')):.0f}")
    return fig
