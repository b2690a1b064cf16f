"""The iNNterpol emulator: grid axes -> per-quantity SVD coefficients -> depth profiles.

Network (Westendorp Plaza et al. 2023, A&A; PCA12 version): an MLP from the d grid axes to
Q x C SVD coefficients, ``Linear(d, 40)``, 12 hidden ``Linear(40, 40)``, ``Linear(40, Q*C)``,
LeakyReLU(0.2) after every layer but the last (width, depth and slope configurable).
Axis-agnostic: d is whatever the grid has (3 for ATLAS9, 5 for ATLAS9-APOGEE with [C/M], [O/M]).

Scalings stored in the checkpoint's ``normalisation``:

* inputs: ``(x - axis_min) / (axis_max - axis_min)`` per axis (the paper divides by fixed
  constants; min-max is the axis-agnostic equivalent);
* outputs: the coefficients of quantity q divided by ``coefficient_scale[q]``, the rms of that
  quantity's coefficients over the training set (keeps the relative size of the components,
  so the loss is the profile rms error in dex, up to a per-quantity weight).

The out-of-grid indicator returned with every atmosphere is the distance (in typical grid
steps, per-axis median node spacing) to the nearest model the network was trained on.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..train import load_checkpoint, register_model
from .model import Atmosphere
from .resample import QUANTITIES
from .svd import SVDBasis

MODEL_KIND = "innterpol-mlp"
#: where shipped weights live (repository checkout); override with $STELLARNN_INNTERPOL_WEIGHTS
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "atmospheres" / "innterpol_atlas9.pt"


@register_model(MODEL_KIND)
class InnterpolMLP(nn.Module):
    """Deep MLP from scaled grid axes to scaled SVD coefficients.

    Parameters
    ----------
    n_inputs : int
        Number of grid axes.
    n_outputs : int
        Number of outputs (n_quantities x n_components).
    hidden : int
        Width of the hidden layers (40).
    n_hidden_layers : int
        Number of hidden Linear(hidden, hidden) layers (12).
    negative_slope : float
        LeakyReLU slope (0.2).
    """

    def __init__(self, n_inputs: int = 3, n_outputs: int = 48, hidden: int = 40, n_hidden_layers: int = 12,
                 negative_slope: float = 0.2):
        super().__init__()
        if min(n_inputs, n_outputs, hidden) < 1 or n_hidden_layers < 0:
            raise ValueError("n_inputs, n_outputs, hidden must be >= 1 and n_hidden_layers >= 0")
        layers: list[nn.Module] = [nn.Linear(n_inputs, hidden), nn.LeakyReLU(negative_slope)]
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(hidden, hidden), nn.LeakyReLU(negative_slope)]
        layers.append(nn.Linear(hidden, n_outputs))
        self.net = nn.Sequential(*layers)
        self.n_inputs, self.n_outputs = n_inputs, n_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Innterpol:
    """A trained emulator with its SVD basis and scalings (inference, batched, differentiable).

    Build it with :meth:`load` (a checkpoint written by
    :func:`stellarnn.atmospheres.training.train_innterpol`).
    """

    def __init__(self, model: InnterpolMLP, basis: SVDBasis, axis_names, axis_min, axis_max,
                 coefficient_scale, grid_nodes, log_tau, checkpoint: dict | None = None):
        self.model = model.eval()
        self.basis = basis
        self.axis_names = tuple(axis_names)
        self.axis_min = torch.as_tensor(np.asarray(axis_min), dtype=torch.float32)
        self.axis_max = torch.as_tensor(np.asarray(axis_max), dtype=torch.float32)
        self.coefficient_scale = torch.as_tensor(np.asarray(coefficient_scale), dtype=torch.float32)
        self.grid_nodes = np.asarray(grid_nodes, dtype=float)
        self.log_tau = np.asarray(log_tau, dtype=float)
        self.checkpoint = checkpoint or {}
        self._components = torch.as_tensor(basis.components, dtype=torch.float32)
        self._mean = torch.as_tensor(basis.mean, dtype=torch.float32)
        self._fuse_output()
        from scipy.spatial import cKDTree

        self.steps = np.array([_median_step(self.grid_nodes[:, k]) for k in range(self.grid_nodes.shape[1])])
        self._tree = cKDTree(self.grid_nodes / self.steps)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Innterpol":
        """Load a checkpoint (default: the shipped ATLAS9 weights, ``weights/atmospheres/innterpol_atlas9.pt``).

        Raises
        ------
        FileNotFoundError
            No checkpoint at the path (train one with ``stellarnn atmosphere train``).
        """
        path = Path(path or os.environ.get("STELLARNN_INNTERPOL_WEIGHTS") or DEFAULT_WEIGHTS)
        if not path.is_file():
            raise FileNotFoundError(f"no iNNterpol checkpoint at {path}; train one with `stellarnn atmosphere train`")
        model, payload = load_checkpoint(path, expected_kind=MODEL_KIND)
        norm = payload["normalisation"]

        def arr(x):
            return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

        basis = SVDBasis(arr(norm["svd_mean"]), arr(norm["svd_components"]))
        return cls(model, basis, norm["axis_names"], arr(norm["axis_min"]), arr(norm["axis_max"]),
                   arr(norm["coefficient_scale"]), arr(norm["grid_nodes"]), arr(norm["log_tau"]), payload)

    # ------------------------------------------------------------------ prediction
    def scale_inputs(self, params: torch.Tensor) -> torch.Tensor:
        return (params - self.axis_min.to(params)) / (self.axis_max - self.axis_min).to(params)

    def coefficients(self, params: torch.Tensor) -> torch.Tensor:
        """SVD coefficients (n, Q, C) for axis values ``params`` (n, d) (differentiable)."""
        out = self.model(self.scale_inputs(params))
        q, c = self.basis.n_quantities, self.basis.n_components
        return out.reshape(-1, q, c) * self.coefficient_scale.to(out)[None, :, None]

    def _fuse_output(self) -> None:
        """Fold the last Linear layer, the coefficient scaling and the SVD decoding into one matrix.

        All three are linear: profiles = (h W^T + b) * s @ V + mean, so
        ``W_fused = W^T diag(s) V_blockdiag`` (hidden, Q*K) and ``b_fused = (b * s) V_blockdiag + mean``.
        Same result as :meth:`coefficients` followed by decoding, with fewer operations per atmosphere.
        """
        last = self.model.net[-1]
        q, c, k = self._components.shape
        scale = self.coefficient_scale.repeat_interleave(c)  # (Q*C,)
        block = torch.block_diag(*self._components)  # (Q*C, Q*K)
        with torch.no_grad():
            self._fused_weight = (last.weight.T * scale[None, :]) @ block
            self._fused_bias = (last.bias * scale) @ block + self._mean.reshape(-1)
        self._trunk = self.model.net[:-1]

    def log_profiles(self, params: torch.Tensor) -> torch.Tensor:
        """log10 profiles (n, 4, K) of :data:`QUANTITIES` for ``params`` (n, d) (differentiable in ``params``)."""
        h = self._trunk(self.scale_inputs(params))
        out = torch.addmm(self._fused_bias.to(h), h, self._fused_weight.to(h))
        return out.reshape(-1, *self._mean.shape)

    def profiles(self, params: torch.Tensor) -> torch.Tensor:
        """cgs profiles (n, 4, K): RHOX [g cm^-2], T [K], P_gas [dyn cm^-2], n_e [cm^-3].

        ``10**x`` is computed as ``exp(x ln 10)`` in place when no gradient is needed.
        """
        logs = self.log_profiles(params)
        if logs.requires_grad:
            return torch.exp(logs * np.log(10.0))
        return logs.mul_(np.log(10.0)).exp_()

    def grid_distance(self, params) -> np.ndarray:
        """Out-of-grid indicator: distance (typical grid steps) to the nearest training model."""
        p = params.detach().cpu().numpy() if isinstance(params, torch.Tensor) else np.asarray(params, dtype=float)
        return self._tree.query(np.atleast_2d(p) / self.steps)[0]

    def _params(self, coords: dict) -> tuple[torch.Tensor, bool, bool]:
        if set(coords) != set(self.axis_names):
            raise ValueError(f"this emulator's axes are {self.axis_names}; got {tuple(coords)}")
        values = [coords[k] for k in self.axis_names]
        as_tensor = any(isinstance(v, torch.Tensor) for v in values)
        scalar = all(np.ndim(v) == 0 for v in values)
        tens = [v.to(torch.float32) if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=float),
                                                                                        dtype=torch.float32)
                for v in values]
        try:
            tens = torch.broadcast_tensors(*[t.reshape(-1) if t.ndim == 0 else t for t in tens])
        except RuntimeError as exc:
            raise ValueError(f"axis values must broadcast to one shape: {exc}") from exc
        if any(t.ndim != 1 for t in tens):
            raise ValueError("axis values must be scalars or 1D")
        params = torch.stack(tens, dim=1)
        if params.shape[0] == 0:
            raise ValueError("no atmosphere requested (empty input)")
        if not torch.isfinite(params).all():
            raise ValueError("axis values contain NaN or infinity")
        return params, as_tensor, scalar

    def atmosphere(self, teff, logg, m_h, **other_axes) -> Atmosphere:
        """Emulated atmosphere(s) on the 71-point log tau_Ross scale.

        Parameters
        ----------
        teff, logg, m_h : float, array (n,) or tensor (n,)
            Effective temperature [K], log g [cgs], [M/H] [dex]; further axes by name for grids
            that have them.  Tensors give tensors out (differentiable, e.g. w.r.t. teff);
            floats/arrays give numpy arrays (computed under ``torch.inference_mode``).

        Returns
        -------
        Atmosphere
            rhox [g cm^-2], temperature [K], p_gas [dyn cm^-2], n_e [cm^-3], log_tau_ross, and
            ``grid_distance`` (the out-of-grid indicator, typical grid steps to the nearest
            training model; > 1 means extrapolation).  Single for scalar input, else batched.
        """
        params, as_tensor, scalar = self._params({"teff": teff, "logg": logg, "m_h": m_h, **other_axes})
        if as_tensor:
            lin = self.profiles(params)
        else:
            with torch.inference_mode():
                lin = self.profiles(params).double().numpy()
        dist = self.grid_distance(params)
        kw = {name.removeprefix("log_"): lin[:, i] for i, name in enumerate(QUANTITIES)}
        lt = (torch.as_tensor(self.log_tau, dtype=lin.dtype).expand(lin.shape[0], -1) if as_tensor
              else np.broadcast_to(self.log_tau, kw["rhox"].shape).copy())
        stellar = {k: params[:, i] if as_tensor else params[:, i].double().numpy()
                   for i, k in enumerate(("teff", "logg", "m_h"))}
        atm = Atmosphere(rhox=kw["rhox"], temperature=kw["temperature"], p_gas=kw["p_gas"], n_e=kw["n_e"],
                         log_tau_ross=lt, grid_distance=dist, source="iNNterpol emulator", **stellar)
        if scalar:
            return atm[0]
        return atm


def _median_step(values: np.ndarray) -> float:
    u = np.unique(values)
    return float(np.median(np.diff(u))) if len(u) > 1 else 1.0
