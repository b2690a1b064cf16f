"""The Spectrum data model and its batched form on tensors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


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


@dataclass
class SpectrumBatch:
    """Many spectra on one shared wavelength grid, as tensors (B, n)."""

    wavelength: torch.Tensor
    flux: torch.Tensor
    ivar: torch.Tensor
    bitmask: torch.Tensor
    meta: list[dict] = field(default_factory=list)

    def __post_init__(self):
        b, n = self.flux.shape
        if self.wavelength.shape != (n,):
            raise ValueError(f"wavelength shape {tuple(self.wavelength.shape)} does not match flux {(b, n)}")
        if self.ivar.shape != (b, n) or self.bitmask.shape != (b, n):
            raise ValueError("flux, ivar and bitmask must share shape (B, n)")
        if not self.meta:
            self.meta = [{} for _ in range(b)]

    def __len__(self) -> int:
        return self.flux.shape[0]

    @classmethod
    def from_spectra(cls, spectra: Sequence[Spectrum], dtype: torch.dtype = torch.float64) -> "SpectrumBatch":
        """Stack spectra that share a wavelength grid."""
        if not spectra:
            raise ValueError("cannot build a SpectrumBatch from no spectra")
        wl = spectra[0].wavelength
        for s in spectra[1:]:
            if s.wavelength.shape != wl.shape or not np.allclose(s.wavelength, wl, rtol=0, atol=1e-6):
                raise ValueError("all spectra in a batch must share one wavelength grid (resample first)")
        return cls(wavelength=torch.as_tensor(wl, dtype=torch.float64),
                   flux=torch.as_tensor(np.stack([s.flux for s in spectra]), dtype=dtype),
                   ivar=torch.as_tensor(np.stack([s.ivar for s in spectra]), dtype=dtype),
                   bitmask=torch.as_tensor(np.stack([s.bitmask for s in spectra]), dtype=torch.int64),
                   meta=[dict(s.meta) for s in spectra])

    def __getitem__(self, i: int) -> Spectrum:
        return Spectrum(self.wavelength.numpy(), self.flux[i].double().numpy(), self.ivar[i].double().numpy(),
                        self.bitmask[i].numpy(), dict(self.meta[i]))

    @property
    def error(self) -> torch.Tensor:
        return torch.where(self.ivar > 0, self.ivar.clamp_min(1e-300).rsqrt(), torch.full_like(self.ivar, np.inf))
