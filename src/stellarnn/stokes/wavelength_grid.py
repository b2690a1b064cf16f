"""Observed wavelength grids → the networks' training grid.

The Stokes CNNs (:mod:`~stellarnn.stokes.me_cnn`, :mod:`~stellarnn.stokes.stratified_cnn`) were
trained on the nominal Hinode SP grid (:func:`~stellarnn.stokes.milne_eddington.hinode_sp_wavelengths`,
6300.89 Å + 21.549 mÅ × pixel, 112 pixels). A file sampled otherwise (e.g. 21.431 mÅ from
6300.8826 Å) must be resampled before inference, or every line shift is read as a velocity:
a 0.01 Å offset is 0.48 km/s at 6302 Å.

Resampling is interpolation of the pixel values in wavelength, per Stokes parameter:

* ``"cubic"`` (default) — a not-a-knot cubic spline (:class:`scipy.interpolate.CubicSpline`);
* ``"linear"`` — :func:`numpy.interp`.

Measured with the shipped ME-CNN on 200 noiseless ME profiles (prior of
:data:`~stellarnn.stokes.me_cnn.PRIOR`) synthesised on a grid shifted by +0.01 Å, stretched by
0.5 % and on the 21.431 mÅ / 6300.8826 Å grid: mean v_LOS change against the same profiles on the
nominal grid −0.476 / −0.209 / +0.586 km/s without resampling, ≤ 0.004 km/s with linear and
≤ 0.001 km/s with cubic interpolation (tests/test_stokes_wavelength_grid.py checks ≤ 0.05 km/s).

Neither conserves flux exactly; on a grid whose pixels are narrower than the PSF (as here) the
sampled values are point samples of a smooth profile, so interpolation rather than flux
rebinning is the appropriate operation. Target pixels up to ``max_extrapolation_pixels`` outside
the observed range (the nominal SP grid reaches 6303.28 Å, one pixel beyond the 21.431 mÅ grid)
take the nearest observed value; both edges of the SP window are continuum, so this is benign,
and the number of such pixels is reported. Farther out is an error.
"""
from __future__ import annotations

import numpy as np

from .milne_eddington import hinode_sp_wavelengths

RESAMPLING_METHODS = ("cubic", "linear")


def needs_resampling(wavelengths, target=None, tolerance_angstrom: float = 1e-4) -> bool:
    """True unless ``wavelengths`` equal the ``target`` grid (default: nominal SP) within the tolerance."""
    target = hinode_sp_wavelengths() if target is None else np.asarray(target, dtype=np.float64)
    wl = np.asarray(wavelengths, dtype=np.float64)
    return wl.shape != target.shape or bool(np.max(np.abs(wl - target)) > tolerance_angstrom)


def resample_profiles(stokes, wavelengths, target=None, method: str = "cubic",
                      max_extrapolation_pixels: float = 2.0) -> tuple[np.ndarray, dict]:
    """Resample Stokes profiles from their observed grid onto ``target`` (default: the nominal SP grid).

    Parameters
    ----------
    stokes : array (..., 4, n_obs)
        Profiles in continuum units on ``wavelengths``.
    wavelengths : array (n_obs,), Å, strictly increasing
    target : array (n_target,), Å, optional
    method : ``"cubic"`` or ``"linear"`` (module docstring)
    max_extrapolation_pixels : float
        How far (in target pixels) the target grid may reach beyond the observed one.

    Returns
    -------
    (array (..., 4, n_target) float64, report dict: method, n_extrapolated, shift and step of the grids)
    """
    target = hinode_sp_wavelengths() if target is None else np.asarray(target, dtype=np.float64)
    wl = np.asarray(wavelengths, dtype=np.float64)
    data = np.asarray(stokes, dtype=np.float64)
    if method not in RESAMPLING_METHODS:
        raise ValueError(f"resampling method must be one of {RESAMPLING_METHODS}, got {method!r}")
    if wl.ndim != 1 or wl.size < 4 or not np.all(np.isfinite(wl)) or np.any(np.diff(wl) <= 0):
        raise ValueError("observed wavelengths must be a finite, strictly increasing 1-D array of >= 4 values (Å)")
    if data.shape[-1] != wl.size:
        raise ValueError(f"profiles have {data.shape[-1]} wavelengths, the grid {wl.size}")
    step = float(np.median(np.diff(target)))
    reach = max_extrapolation_pixels * step
    if target[0] < wl[0] - reach or target[-1] > wl[-1] + reach:
        raise ValueError(f"observed grid {wl[0]:.4f}–{wl[-1]:.4f} Å does not cover the network's grid "
                         f"{target[0]:.4f}–{target[-1]:.4f} Å (within {max_extrapolation_pixels} pixels)")
    inside = np.clip(target, wl[0], wl[-1])
    if method == "linear":
        flat = data.reshape(-1, wl.size)
        out = np.stack([np.interp(inside, wl, row) for row in flat]).reshape(*data.shape[:-1], target.size)
    else:
        from scipy.interpolate import CubicSpline

        out = CubicSpline(wl, data, axis=-1, bc_type="not-a-knot")(inside)
    report = {"method": method, "n_extrapolated": int(np.sum((target < wl[0]) | (target > wl[-1]))),
              "observed_start_angstrom": float(wl[0]), "observed_step_mangstrom": float(np.median(np.diff(wl)) * 1e3),
              "target_start_angstrom": float(target[0]), "target_step_mangstrom": step * 1e3}
    return out, report


def to_network_grid(stokes, wavelengths, n_wavelengths: int, method: str = "cubic") -> tuple[np.ndarray, dict | None]:
    """Profiles on the nominal SP grid for a network trained there: resampled when ``wavelengths``
    differ from it (report dict), passed through otherwise (report None).

    Raises ValueError when the network was not trained on the nominal SP grid's length.
    """
    if wavelengths is None:
        return np.asarray(stokes), None
    target = hinode_sp_wavelengths()
    if n_wavelengths != target.size:
        raise ValueError(f"the network has {n_wavelengths} wavelengths, not the nominal SP grid's {target.size}: "
                         "its training grid is unknown, cannot resample")
    if not needs_resampling(wavelengths, target):
        return np.asarray(stokes), None
    return resample_profiles(stokes, wavelengths, target, method=method)
