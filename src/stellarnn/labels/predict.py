"""One way from data to labels: :func:`predict_labels`.

Accepts what astronomers hold — APOGEE file paths (apStar, aspcapStar, SDSS-V mwmStar, apVisit:
:func:`~stellarnn.spectra.read_apogee_file`), :class:`~stellarnn.spectra.Spectrum` objects, specutils
``Spectrum1D`` objects (or anything with ``spectral_axis``, ``flux`` and an optional ``uncertainty``), or
``(wavelength, flux, ivar)`` arrays — and returns an :class:`astropy.table.QTable` with units (``teff`` in K,
``logg`` in dex, ...), the uncertainty columns and the flag columns of the pipeline.

Spectra must be APOGEE spectra: on the apStar log-lambda grid (8575 pixels, vacuum Angstrom) or, when given
with their own wavelengths, resampled onto it by linear interpolation (pixels the input does not cover get
``ivar = 0``).  Air wavelengths are not converted here: pass vacuum wavelengths (as APOGEE files have).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..spectra import Spectrum, apogee_wavelength, read_apogee_file
from .pipeline import get_pipeline


class UnsupportedInputError(TypeError):
    """An input :func:`predict_labels` cannot turn into an APOGEE spectrum."""


def _on_apogee_grid(wavelength: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flux and ivar on the apStar pixels: as given when already there, else linearly interpolated."""
    grid = apogee_wavelength()
    if wavelength.shape == grid.shape and np.allclose(wavelength, grid, rtol=1e-9, atol=0):
        return flux, ivar
    order = np.argsort(wavelength)
    w, f, iv = wavelength[order], flux[order], ivar[order]
    good = np.isfinite(f) & np.isfinite(iv) & (iv > 0)
    if good.sum() < 2:
        raise ValueError("the spectrum has fewer than 2 usable pixels")
    inside = (grid >= w[good][0]) & (grid <= w[good][-1])
    f_out = np.interp(grid, w[good], f[good])
    # a linear interpolant's variance at a point between two pixels: (1-t)^2 s0^2 + t^2 s1^2 (its error
    # propagation); pixels between which the input had a gap keep ivar 0
    pos = np.clip(np.searchsorted(w, grid) - 1, 0, w.size - 2)
    t = np.clip((grid - w[pos]) / np.where(w[pos + 1] > w[pos], w[pos + 1] - w[pos], 1.0), 0, 1)
    var0 = np.where(good[pos], 1 / np.where(good[pos], iv[pos], 1.0), np.inf)
    var1 = np.where(good[pos + 1], 1 / np.where(good[pos + 1], iv[pos + 1], 1.0), np.inf)
    var = (1 - t) ** 2 * var0 + t ** 2 * var1
    iv_out = np.where(inside & np.isfinite(var) & (var > 0), 1 / np.where(var > 0, var, 1.0), 0.0)
    return np.where(inside, f_out, 0.0), iv_out


def _from_spectrum1d(obj, index: int) -> Spectrum:
    import astropy.units as u

    try:
        wavelength = obj.spectral_axis.to_value(u.AA, equivalencies=u.spectral())
        flux = np.asarray(getattr(obj.flux, "value", obj.flux), dtype=np.float64)
    except Exception as exc:  # a unit that is not a spectral axis, ...
        raise UnsupportedInputError(f"input {index}: cannot read its spectral axis and flux ({exc})") from None
    if flux.ndim != 1:
        raise UnsupportedInputError(f"input {index}: a Spectrum1D with flux of shape {flux.shape}; pass one "
                                    "spectrum per object (or a list)")
    unc = getattr(obj, "uncertainty", None)
    if unc is None:
        raise UnsupportedInputError(f"input {index}: a Spectrum1D without uncertainty; the pipelines need errors")
    kind = type(unc).__name__
    arr = np.asarray(unc.array, dtype=np.float64)
    if kind == "InverseVariance":
        ivar = arr
    elif kind == "StdDevUncertainty":
        ivar = np.where(arr > 0, 1 / np.where(arr > 0, arr, 1.0) ** 2, 0.0)
    elif kind == "VarianceUncertainty":
        ivar = np.where(arr > 0, 1 / np.where(arr > 0, arr, 1.0), 0.0)
    else:
        raise UnsupportedInputError(f"input {index}: uncertainty of type {kind} (use StdDev, Variance or "
                                    "InverseVariance)")
    mask = getattr(obj, "mask", None)
    if mask is not None:
        ivar = np.where(np.asarray(mask, dtype=bool), 0.0, ivar)
    meta = dict(getattr(obj, "meta", {}) or {})
    f, iv = _on_apogee_grid(np.asarray(wavelength, dtype=np.float64), flux, ivar)
    return Spectrum(apogee_wavelength(), f, iv, None, {"source": f"input {index} (Spectrum1D)", **meta})


def _from_arrays(wavelength, flux, ivar, index: int) -> list[Spectrum]:
    wavelength = np.asarray(wavelength, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    if wavelength.ndim != 1 or flux.shape != ivar.shape or flux.shape[1] != wavelength.size:
        raise UnsupportedInputError(f"input {index}: (wavelength, flux, ivar) must be (n,), (n,) or (m, n), and "
                                    f"the same shape as flux; got {wavelength.shape}, {flux.shape}, {ivar.shape}")
    out = []
    for k in range(flux.shape[0]):
        f, iv = _on_apogee_grid(wavelength, flux[k], ivar[k])
        out.append(Spectrum(apogee_wavelength(), f, iv, None, {"source": f"input {index} (arrays) row {k}"}))
    return out


def as_spectra(data: Any, visits: bool = False) -> list[Spectrum]:
    """Turn any supported input (module notes) into APOGEE :class:`Spectrum` objects.

    Raises
    ------
    UnsupportedInputError
        An input of another type (e.g. a bare numpy array without wavelengths) or a malformed one.
    """
    if isinstance(data, tuple) and len(data) == 3 and not isinstance(data[0], (str, os.PathLike, Spectrum)):
        return _from_arrays(*data, index=0)
    items = data if isinstance(data, (list, tuple)) else [data]
    out: list[Spectrum] = []
    for i, item in enumerate(items):
        if isinstance(item, Spectrum):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            star = read_apogee_file(Path(item))  # apStar, aspcapStar, mwmStar, or apVisit on the apStar grid
            out.append(star.combined)
            if visits:
                out.extend(star.visits)
        elif hasattr(item, "spectral_axis") and hasattr(item, "flux"):
            out.append(_from_spectrum1d(item, i))
        elif isinstance(item, tuple) and len(item) == 3:
            out.extend(_from_arrays(*item, index=i))
        else:
            raise UnsupportedInputError(
                f"input {i}: cannot read a {type(item).__name__} as a spectrum; pass an APOGEE file path, a "
                "stellarnn Spectrum, a specutils Spectrum1D, or (wavelength [A], flux, ivar) arrays")
    if not out:
        raise UnsupportedInputError("no spectra given")
    return out


def rows_to_table(rows: Sequence[dict], fields: dict, spectra: Sequence[Spectrum]):
    """An astropy ``QTable`` of pipeline rows, each column with the unit its ``FieldInfo`` declares."""
    import astropy.units as u
    from astropy.table import QTable

    table = QTable()
    table["source"] = [str(s.meta.get("source", "")) for s in spectra]
    table["object_id"] = [str(s.meta.get("apogee_id", s.meta.get("object_id", ""))) for s in spectra]
    for name, info in fields.items():
        values = [r.get(name) for r in rows]
        if info.dtype.startswith("float"):
            col = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            table[name] = col * u.Unit(info.unit) if info.unit else col
        elif info.dtype.startswith(("int", "bool")):
            table[name] = np.array([0 if v is None else v for v in values], dtype=info.dtype)
        else:
            table[name] = ["" if v is None else str(v) for v in values]
        table[name].description = info.description
    for extra in ("result_flags", "flag_warn", "flag_bad", "reason"):
        if extra not in table.colnames:
            table[extra] = [r.get(extra) for r in rows]
    return table


def predict_labels(data: Any, pipeline: str = "astronn", *, visits: bool = False, **pipeline_kwargs):
    """Labels with uncertainties and flags for APOGEE spectra, as an astropy ``QTable`` with units.

    Parameters
    ----------
    data
        An apStar path, a :class:`~stellarnn.spectra.Spectrum`, a specutils ``Spectrum1D``, a
        ``(wavelength, flux, ivar)`` tuple of arrays (flux and ivar (n,) or (m, n)), or a list of these.
    pipeline : {"astronn", "apogeenet"}
        The label network.
    visits : bool
        For apStar paths, also the individual visits (rows after the combined spectrum).
    **pipeline_kwargs
        Passed to the pipeline (e.g. ``weights=``, ``device=``, ``mc_passes=``).

    Returns
    -------
    astropy.table.QTable
        One row per spectrum: ``source``, ``object_id``, then the pipeline's fields with units
        (``teff`` [K], ``logg`` [dex], ...) and its flags; a spectrum that cannot be used gets NaN labels,
        its flag bits and a ``reason``.

    Examples
    --------
    >>> from stellarnn import predict_labels
    >>> from stellarnn.data import fetch
    >>> table = predict_labels(fetch("apstar-2M19485057"), pipeline="astronn")
    >>> table["teff"].unit
    Unit("K")
    >>> len(table), bool(table["flag_bad"][0])
    (1, False)
    """
    spectra = as_spectra(data, visits=visits)
    pipe = get_pipeline(pipeline, **pipeline_kwargs)
    rows = pipe.process(spectra)
    return rows_to_table(rows, pipe.fields, spectra)
