"""Inputs for blasé: clone sources (synthetic spectra) and observed echelle spectra.

* Clone sources: a data-layer entry (``"phoenix-10kK"``: muler's PHOENIX 10 000 K template, columns
  ``wave_ang,flux``, vacuum Angstrom), a text table of wavelength and flux (CSV, ECSV or whitespace-separated,
  read as :func:`stellarnn.spectra.read_spectrum_csv` reads it, so also what ``write_spectrum_csv`` writes), or an
  ``.npz`` with arrays ``wavelength`` (Angstrom) and ``flux``.
* Observed spectra: a data-layer entry (``"chiron-hip108294"``) or anything
  :func:`stellarnn.spectra.echelle_io.read_echelle_fits` reads (FITS tables and images, units from
  TUNIT/CUNIT1, air or vacuum from the header), an ``.npz`` or a Spectrum1D-like object
  (:func:`stellarnn.spectra.echelle_io.from_spectrum1d`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..spectra.air_vacuum import vacuum_to_air  # noqa: F401  (blasé's clone_to_air; importable from here)
from ..spectra.echelle_io import ObservedSpectrum, from_spectrum1d, read_echelle_fits
from ..spectra.generic_io import TEXT_SUFFIXES, read_spectrum_csv

#: the reader's former name here (it reads échelle and single-order files alike)
read_spectrum_fits = read_echelle_fits


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
                      wavelength_max: float | None = None, wavelength_unit: str | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Wavelength (vacuum Angstrom) and flux of a synthetic spectrum, optionally cut to a range.

    ``.npz``: arrays ``wavelength`` (Angstrom) and ``flux``.  ``.csv``/``.ecsv``/``.txt``/``.dat``: read by
    :func:`stellarnn.spectra.read_spectrum_csv` (columns named by a header, else by position; units from an ECSV
    header or the column's name, ``wave_ang``;
    else ``wavelength_unit``, else inferred from the values; air wavelengths converted to vacuum).  A synthetic
    spectrum has no bad pixels: a NaN or infinite flux is refused, naming the file.
    """
    path = _resolve(source)
    if path.suffix == ".npz":
        with np.load(path) as data:
            wavelength, flux = np.asarray(data["wavelength"], float), np.asarray(data["flux"], float)
        if not (np.isfinite(wavelength).all() and np.isfinite(flux).all()):
            raise ValueError(f"{path}: a clone source must hold finite wavelengths and fluxes")
    elif path.suffix.lower() in TEXT_SUFFIXES:
        spectrum = read_spectrum_csv(path, wavelength_unit, on_bad_pixels="raise")
        wavelength, flux = spectrum.wavelength, spectrum.flux
    else:
        raise ValueError(f"{path}: clone source must be .npz or a text table ({', '.join(TEXT_SUFFIXES)})")
    return cut_wavelength_range(wavelength, flux, wavelength_min, wavelength_max, str(path))


def cut_wavelength_range(wavelength, flux, wavelength_min=None, wavelength_max=None, what: str = "the source"):
    """The pixels of a spectrum within [``wavelength_min``, ``wavelength_max``] (either may be None).

    Raises
    ------
    ValueError
        Fewer than 3 pixels remain (``what`` names the spectrum in the message).
    """
    keep = np.ones(wavelength.size, dtype=bool)
    if wavelength_min is not None:
        keep &= wavelength >= wavelength_min
    if wavelength_max is not None:
        keep &= wavelength <= wavelength_max
    if keep.sum() < 3:
        raise ValueError(f"{what}: fewer than 3 pixels in the requested range")
    return wavelength[keep], flux[keep]


def load_observed(source, wavelength_min: float | None = None, wavelength_max: float | None = None,
                  min_pixels_per_segment: int = 100, wavelength_unit: str | None = None,
                  medium: str = "vacuum") -> ObservedSpectrum:
    """Observed spectrum from a data entry, a FITS file, an ``.npz`` or a Spectrum1D-like object, cut
    to a wavelength range.

    Segments left with fewer than ``min_pixels_per_segment`` pixels are dropped; segment indices are
    renumbered from 0. ``wavelength_unit`` and ``medium`` are passed to :func:`read_echelle_fits`
    (FITS) or name the medium of a Spectrum1D. The reader's ``metadata`` is kept.
    """
    if hasattr(source, "spectral_axis"):
        spec = from_spectrum1d(source, medium=None if medium == "vacuum" else medium)
        path = Path(spec.name)
    else:
        path = _resolve(source)
        if path.suffix == ".npz":
            with np.load(path) as data:
                wave = np.asarray(data["wavelength"], float)
                seg = np.asarray(data["segment"], int) if "segment" in data else np.zeros(wave.size, int)
                spec = ObservedSpectrum(wave, np.asarray(data["flux"], float), np.asarray(data["error"], float),
                                        seg, np.arange(seg.max() + 1) + 1, name=path.name,
                                        metadata={"format": "npz", "wavelength_unit": "Angstrom"})
        elif path.suffix.lower() in (".fits", ".fit", ".fz", ".fts") or path.name.lower().endswith(".fits.gz"):
            spec = read_echelle_fits(path, wavelength_unit=wavelength_unit, medium=medium)
        else:
            raise ValueError(f"{path}: observed spectrum must be .fits or .npz (or a Spectrum1D object)")
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
                            renumber[spec.segment[keep]], spec.order[used], name=spec.name,
                            metadata=dict(spec.metadata))
