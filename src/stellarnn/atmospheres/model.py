"""The ``Atmosphere`` data model: depth-dependent structure of a 1D plane-parallel model.

Units are cgs, as in ATLAS9: mass column ``rhox`` [g cm^-2], ``temperature`` [K],
``p_gas`` [dyn cm^-2], ``n_e`` [cm^-3], Rosseland mass opacity ``abross`` [cm^2 g^-1],
micro-turbulence ``vturb`` [cm s^-1].  Arrays are ``(n_layers,)`` for one atmosphere or
``(n, n_layers)`` for a batch; they may be numpy arrays or torch tensors (the emulator
returns tensors so that everything stays differentiable).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..constants import ATOMIC_MASS_UNIT_CGS, BOLTZMANN_CGS
from .abundances import mean_mass_per_nucleus

#: Boltzmann constant [erg K^-1] and atomic mass unit [g] (CODATA 2018: :mod:`stellarnn.constants`)
K_BOLTZMANN = BOLTZMANN_CGS
ATOMIC_MASS_UNIT = ATOMIC_MASS_UNIT_CGS

_DEPTH_FIELDS = ("rhox", "temperature", "p_gas", "n_e", "abross", "accrad", "vturb", "log_tau_ross")
_STELLAR_FIELDS = ("teff", "logg", "m_h")


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch")


@dataclass
class Atmosphere:
    """One model atmosphere or a batch of them, on a common set of layers.

    Parameters
    ----------
    rhox : array (n_layers,) or (n, n_layers)
        Mass column density [g cm^-2], increasing inwards.
    temperature : array
        Temperature [K].
    p_gas : array
        Gas pressure [dyn cm^-2].
    n_e : array
        Electron number density [cm^-3].
    teff, logg, m_h : float or array (n,)
        Effective temperature [K], log10 surface gravity [cgs], [M/H] [dex].
    abross : array, optional
        Rosseland mean mass opacity [cm^2 g^-1] (ATLAS9 ABROSS).
    accrad : array, optional
        Radiative acceleration [cm s^-2] (ATLAS9 ACCRAD).
    vturb : array, optional
        Micro-turbulent velocity [cm s^-1] per layer (ATLAS9 VTURB).
    log_tau_ross : array, optional
        log10 Rosseland optical depth; computed from ``abross`` and ``rhox`` when absent
        (see :func:`stellarnn.atmospheres.tau.rosseland_optical_depth`).
    grid_distance : float or array (n,), optional
        Out-of-grid indicator: distance to the nearest grid model in scaled axis units
        (one unit = one typical grid step); 0 on a grid node.
    source : str
        Where the model came from (file, grid and method).
    """

    rhox: Any
    temperature: Any
    p_gas: Any
    n_e: Any
    teff: Any
    logg: Any
    m_h: Any
    abross: Any = None
    accrad: Any = None
    vturb: Any = None
    log_tau_ross: Any = None
    grid_distance: Any = None
    source: str = ""
    notes: list = field(default_factory=list)

    def __post_init__(self):
        if self.log_tau_ross is None and self.abross is not None:
            from .tau import rosseland_optical_depth

            tau = rosseland_optical_depth(self.rhox, self.abross)
            self.log_tau_ross = tau.log10() if _is_tensor(tau) else np.log10(tau)
        shape = tuple(self.rhox.shape)
        if len(shape) not in (1, 2) or shape[-1] == 0:
            raise ValueError(f"depth arrays must be (n_layers,) or (n, n_layers) with n_layers > 0, got {shape}")
        for name in _DEPTH_FIELDS:
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"Atmosphere.{name} has shape {tuple(value.shape)}, rhox has {shape}")

    # ------------------------------------------------------------------ shape
    @property
    def batched(self) -> bool:
        """True when the depth arrays are (n, n_layers)."""
        return len(self.rhox.shape) == 2

    @property
    def n_layers(self) -> int:
        return int(self.rhox.shape[-1])

    def __len__(self) -> int:
        if not self.batched:
            raise TypeError("a single Atmosphere has no length; use n_layers")
        return int(self.rhox.shape[0])

    def __getitem__(self, index: int) -> "Atmosphere":
        """One atmosphere of a batch, with layers that are not finite (NaN padding) removed."""
        if not self.batched:
            raise TypeError("indexing needs a batched Atmosphere")
        kw = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _DEPTH_FIELDS and value is not None:
                kw[f.name] = value[index]
            elif f.name in _STELLAR_FIELDS + ("grid_distance",) and value is not None and np.ndim(value) > 0:
                kw[f.name] = value[index].item() if hasattr(value[index], "item") else value[index]
            else:
                kw[f.name] = value
        one = Atmosphere(**kw)
        return one.finite_layers()

    def finite_layers(self) -> "Atmosphere":
        """A single atmosphere restricted to its layers where rhox, T, P_gas and n_e are finite.

        Raises
        ------
        ValueError
            When non-finite layers sit between finite ones (only leading/trailing padding is allowed)
            or no layer is finite.
        """
        if self.batched:
            raise TypeError("finite_layers works on a single atmosphere")
        stack = np.stack([np.asarray(_to_numpy(getattr(self, n))) for n in ("rhox", "temperature", "p_gas", "n_e")])
        good = np.isfinite(stack).all(axis=0)
        if good.all():
            return self
        if not good.any():
            raise ValueError("atmosphere has no finite layer")
        first, last = np.argmax(good), len(good) - np.argmax(good[::-1])
        if not good[first:last].all():
            raise ValueError("atmosphere has non-finite layers between finite ones")
        kw = {n: (getattr(self, n)[first:last] if getattr(self, n) is not None else None) for n in _DEPTH_FIELDS}
        return replace(self, **kw)

    # ------------------------------------------------------------------ derived quantities
    @property
    def mean_mass_per_nucleus(self):
        """Mean mass per nucleus [u] of the scaled-solar GS98 mixture at this [M/H]."""
        m_h = self.m_h
        if self.batched and not _is_tensor(m_h):
            m_h = np.asarray(m_h, dtype=float)[:, None]
        elif self.batched:
            m_h = m_h[:, None]
        return mean_mass_per_nucleus(m_h)

    @property
    def n_atoms(self):
        """Number density of heavy particles (nuclei: atoms and ions of all elements) [cm^-3].

        ``n_atoms = P_gas / (k T) - n_e``: the ideal-gas particle density minus the free
        electrons.  Approximation: molecules are neglected, i.e. every nucleus is counted as a
        free particle.  Where molecules matter (H2, CO in models below ~4000 K) the true
        number of nuclei is larger than this (at most by a factor ~2 if all H were in H2).
        """
        return self.p_gas / (K_BOLTZMANN * self.temperature) - self.n_e

    @property
    def density(self):
        """Mass density [g cm^-3]: ``rho = n_atoms * mu * m_u``.

        ``mu`` is the mean mass per nucleus of the scaled-solar mixture
        (:func:`stellarnn.atmospheres.abundances.mean_mass_per_nucleus`), ``m_u`` the atomic
        mass unit; electrons' mass is neglected (5e-4 u each).  Inherits the molecule-free
        approximation of :attr:`n_atoms`.
        """
        return self.n_atoms * self.mean_mass_per_nucleus * ATOMIC_MASS_UNIT

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> "Atmosphere":
        """A copy with every array as a float64 numpy array (tensors detached)."""
        kw = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _DEPTH_FIELDS + _STELLAR_FIELDS + ("grid_distance",) and value is not None:
                arr = np.asarray(_to_numpy(value), dtype=float)
                value = float(arr) if arr.ndim == 0 else arr
            kw[f.name] = value
        return Atmosphere(**kw)

    def write_krz(self, path, **kwargs):
        """Write a KRZ file PySME reads; see :func:`stellarnn.atmospheres.krz.write_krz`."""
        from .krz import write_krz

        return write_krz(self, path, **kwargs)

    def write_kurucz(self, path, **kwargs):
        """Write an ATLAS9 ``.mod`` deck; see :func:`stellarnn.atmospheres.kurucz.write_kurucz`."""
        from .kurucz import write_kurucz

        return write_kurucz(self, path, **kwargs)


def _to_numpy(x):
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return x
