"""The Spectrum data model: one spectrum on a pixel grid."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Spectrum:
    """One spectrum on a pixel grid.

    Parameters
    ----------
    wavelength : ndarray, shape (n,)
        Vacuum wavelength in Angstrom.
    flux : ndarray, shape (n,)
        Flux (instrument units, or continuum-normalised).
    ivar : ndarray, shape (n,)
        Inverse variance of ``flux``; 0 marks pixels with no information.
    bitmask : ndarray of int64, shape (n,)
        Pixel bitmask (APOGEE_PIXMASK for APOGEE files; 0 elsewhere).
    meta : dict
        Identity and header values (``source``, ``row``, ``apogee_id``, ``snr``, ...).
    """

    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    bitmask: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.wavelength = np.asarray(self.wavelength, dtype=np.float64)
        self.flux = np.asarray(self.flux, dtype=np.float64)
        self.ivar = np.asarray(self.ivar, dtype=np.float64)
        n = self.wavelength.shape[-1]
        if self.bitmask is None:
            self.bitmask = np.zeros(n, dtype=np.int64)
        self.bitmask = np.asarray(self.bitmask, dtype=np.int64)
        for name in ("flux", "ivar", "bitmask"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"Spectrum.{name} has shape {getattr(self, name).shape}, expected ({n},)")

    def __len__(self) -> int:
        return self.wavelength.shape[0]

    @property
    def error(self) -> np.ndarray:
        """1-sigma flux error; ``inf`` where ``ivar`` is 0."""
        with np.errstate(divide="ignore"):
            return np.where(self.ivar > 0, 1.0 / np.sqrt(np.where(self.ivar > 0, self.ivar, 1.0)), np.inf)

    @property
    def snr(self) -> float:
        """Median per-pixel S/N over pixels with information."""
        good = (self.ivar > 0) & np.isfinite(self.flux)
        return float(np.median(self.flux[good] * np.sqrt(self.ivar[good]))) if good.any() else 0.0
