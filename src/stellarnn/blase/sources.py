"""Inputs for blasé: clone sources (synthetic spectra) and observed echelle spectra.

* Clone sources: a data-layer entry (``"phoenix-10kK"``: muler's PHOENIX 10 000 K template, columns
  ``wave_ang,flux``, vacuum Angstrom), a CSV with a wavelength and a flux column, or an ``.npz``
  with arrays ``wavelength`` (Angstrom) and ``flux``.
* Observed spectra: a data-layer entry (``"chiron-hip108294"``) or a FITS file in the TelFit echelle
  layout: one binary-table HDU per order with columns ``wavelength`` (nm), ``flux``, ``error``,
  ``continuum`` (the reduction's continuum estimate); or an ``.npz`` with ``wavelength``
  (Angstrom), ``flux``, ``error`` and optional ``segment`` arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NM_TO_ANGSTROM = 10.0


@dataclass
class ObservedSpectrum:
    """Pixels of an observed (echelle) spectrum, concatenated over segments (orders).

    ``wavelength`` in Angstrom; ``flux`` and ``error`` divided by the reduction's continuum when one
    is given (dimensionless); ``segment`` the 0-based segment index of each pixel; ``order`` the
    1-based HDU/order number of each segment.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    segment: np.ndarray
    order: np.ndarray
    name: str = ""

    def good_pixels(self) -> np.ndarray:
        """Usable pixels: finite flux and error, error > 0."""
        return np.isfinite(self.flux) & np.isfinite(self.error) & (self.error > 0)


def _resolve(source: str | Path) -> Path:
    path = Path(source)
    if path.exists():
        return path
    from ..data import fetch
    from ..data.registry import get_entry

    try:
        get_entry(str(source))
    except Exception as exc:
        raise FileNotFoundError(f"{source!r} is neither a file nor a data entry") from exc
    return Path(fetch(str(source)))


def load_clone_source(source: str | Path, wavelength_min: float | None = None,
                      wavelength_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Wavelength (Angstrom) and flux of a synthetic spectrum, optionally cut to a range."""
    path = _resolve(source)
    if path.suffix == ".npz":
        with np.load(path) as data:
            wavelength, flux = np.asarray(data["wavelength"], float), np.asarray(data["flux"], float)
    elif path.suffix in (".csv", ".txt"):
        with open(path) as fh:
            header = fh.readline().strip().split(",")
        table = np.loadtxt(path, delimiter=",", skiprows=1)
        if table.ndim != 2 or table.shape[1] < 2:
            raise ValueError(f"{path}: expected at least two comma-separated columns")
        lower = [h.lower() for h in header]
        iw = next((i for i, h in enumerate(lower) if h.startswith("wave") or h.startswith("lam")), 0)
        iflux = next((i for i, h in enumerate(lower) if h.startswith("flux")), 1)
        wavelength, flux = table[:, iw], table[:, iflux]
    else:
        raise ValueError(f"{path}: clone source must be .npz or .csv")
    keep = np.ones(wavelength.size, dtype=bool)
    if wavelength_min is not None:
        keep &= wavelength >= wavelength_min
    if wavelength_max is not None:
        keep &= wavelength <= wavelength_max
    if keep.sum() < 3:
        raise ValueError(f"{path}: fewer than 3 pixels in the requested range")
    return wavelength[keep], flux[keep]


def read_echelle_fits(path: str | Path, normalise: bool = True) -> ObservedSpectrum:
    """Read a TelFit-layout echelle FITS file (one table HDU per order, wavelength in nm)."""
    from astropy.io import fits

    waves, fluxes, errors, segs, orders = [], [], [], [], []
    with fits.open(path) as hdul:
        tables = [(i, h) for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU)]
        if not tables:
            raise ValueError(f"{path}: no binary-table orders found")
        for seg, (number, hdu) in enumerate(tables):
            data = hdu.data
            names = [n.lower() for n in data.columns.names]
            for col in ("wavelength", "flux", "error"):
                if col not in names:
                    raise ValueError(f"{path}: HDU {number} has no {col!r} column")
            wave = np.asarray(data["wavelength"], dtype=np.float64) * NM_TO_ANGSTROM
            flux = np.asarray(data["flux"], dtype=np.float64)
            err = np.asarray(data["error"], dtype=np.float64)
            if normalise and "continuum" in names:
                cont = np.asarray(data["continuum"], dtype=np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    flux, err = flux / cont, err / cont
            order = np.argsort(wave)
            waves.append(wave[order]); fluxes.append(flux[order]); errors.append(err[order])
            segs.append(np.full(wave.size, seg)); orders.append(number)
    return ObservedSpectrum(np.concatenate(waves), np.concatenate(fluxes), np.concatenate(errors),
                            np.concatenate(segs), np.asarray(orders), name=Path(path).name)


def load_observed(source: str | Path, wavelength_min: float | None = None,
                  wavelength_max: float | None = None, min_pixels_per_segment: int = 100) -> ObservedSpectrum:
    """Observed spectrum from a data entry, TelFit-layout FITS or ``.npz``, cut to a wavelength range.

    Segments left with fewer than ``min_pixels_per_segment`` pixels are dropped; segment indices are
    renumbered from 0.
    """
    path = _resolve(source)
    if path.suffix == ".npz":
        with np.load(path) as data:
            wave = np.asarray(data["wavelength"], float)
            seg = np.asarray(data["segment"], int) if "segment" in data else np.zeros(wave.size, int)
            spec = ObservedSpectrum(wave, np.asarray(data["flux"], float), np.asarray(data["error"], float),
                                    seg, np.arange(seg.max() + 1) + 1, name=path.name)
    elif path.suffix in (".fits", ".fit", ".fz"):
        spec = read_echelle_fits(path)
    else:
        raise ValueError(f"{path}: observed spectrum must be .fits or .npz")
    keep = np.ones(spec.wavelength.size, dtype=bool)
    if wavelength_min is not None:
        keep &= spec.wavelength >= wavelength_min
    if wavelength_max is not None:
        keep &= spec.wavelength <= wavelength_max
    counts = np.bincount(spec.segment[keep], minlength=spec.order.size)
    keep &= counts[spec.segment] >= min_pixels_per_segment
    if not keep.any():
        raise ValueError(f"{path}: no segment has {min_pixels_per_segment} pixels in the requested range")
    used = np.unique(spec.segment[keep])
    renumber = np.full(spec.order.size, -1)
    renumber[used] = np.arange(used.size)
    return ObservedSpectrum(spec.wavelength[keep], spec.flux[keep], spec.error[keep],
                            renumber[spec.segment[keep]], spec.order[used], name=spec.name)


def vacuum_to_air(wavelength_vacuum) -> np.ndarray:
    """Air wavelengths (Angstrom) from vacuum ones, IAU standard (Morton 2000, ApJS 130, 403, eq. 8):
    ``n − 1 = 8.34254e-5 + 2.406147e-2/(130 − s²) + 1.5998e-4/(38.9 − s²)``, ``s = 10⁴/λ_vac``."""
    lam = np.asarray(wavelength_vacuum, dtype=np.float64)
    s2 = (1e4 / lam) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return lam / n
