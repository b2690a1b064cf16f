"""Per-quantity SVD (PCA) basis of depth profiles.

Following iNNterpol (Westendorp Plaza et al. 2023), each quantity (log10 RHOX, T, P_gas, n_e
on the 71-point tau scale) gets its own basis: the profiles ``X_q`` (n_models, K) minus their
mean ``mu_q`` are decomposed, ``X_q - mu_q = U S V^T``, and the first ``n_components`` rows of
``V^T`` form the basis.  A profile is ``mu_q + c_q V_q`` with coefficients ``c_q = (x - mu_q) V_q^T``
(the basis is orthonormal, so an error on the coefficients is the same rms error in dex on the
profile, plus the truncation error).  The mean is removed first (a choice: it makes the first
component a shape rather than the mean level).
"""
from __future__ import annotations

import numpy as np


class SVDBasis:
    """Orthonormal per-quantity bases.

    Parameters
    ----------
    mean : (Q, K)
        Mean profile of each quantity.
    components : (Q, C, K)
        Orthonormal basis vectors (rows) of each quantity, most significant first.
    singular_values : (Q, min(n, K)), optional
        All singular values of the training set (for the explained-variance report).
    """

    def __init__(self, mean, components, singular_values=None):
        self.mean = np.asarray(mean, dtype=float)
        self.components = np.asarray(components, dtype=float)
        if self.mean.ndim != 2 or self.components.ndim != 3 or self.components.shape[0] != self.mean.shape[0] \
                or self.components.shape[2] != self.mean.shape[1]:
            raise ValueError(f"mean (Q, K) and components (Q, C, K) do not match: {self.mean.shape}, "
                             f"{self.components.shape}")
        self.singular_values = None if singular_values is None else np.asarray(singular_values, dtype=float)

    @property
    def n_quantities(self) -> int:
        return self.components.shape[0]

    @property
    def n_components(self) -> int:
        return self.components.shape[1]

    @property
    def n_depth(self) -> int:
        return self.components.shape[2]

    @classmethod
    def fit(cls, values, n_components: int = 12) -> "SVDBasis":
        """Fit one basis per quantity to ``values`` (n_models, Q, K)."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 3 or values.shape[0] < 2:
            raise ValueError(f"values must be (n_models >= 2, n_quantities, n_depth), got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("values contain NaN or infinity")
        n, q, k = values.shape
        if not 1 <= n_components <= min(n, k):
            raise ValueError(f"n_components must be in 1..{min(n, k)}, got {n_components}")
        mean = values.mean(axis=0)
        comps, svals = [], []
        for j in range(q):  # one SVD per quantity (4 of them), not a hot path
            _, s, vt = np.linalg.svd(values[:, j, :] - mean[j], full_matrices=False)
            comps.append(vt[:n_components])
            svals.append(s)
        return cls(mean, np.stack(comps), np.stack(svals))

    def truncated(self, n_components: int) -> "SVDBasis":
        if not 1 <= n_components <= self.n_components:
            raise ValueError(f"n_components must be in 1..{self.n_components}")
        return SVDBasis(self.mean, self.components[:, :n_components], self.singular_values)

    def encode(self, values):
        """Coefficients (n, Q, C) of profiles (n, Q, K)."""
        values = np.asarray(values, dtype=float)
        if values.shape[1:] != self.mean.shape:
            raise ValueError(f"profiles must be (n, {self.n_quantities}, {self.n_depth}), got {values.shape}")
        return np.einsum("nqk,qck->nqc", values - self.mean, self.components)

    def decode(self, coefficients):
        """Profiles (n, Q, K) from coefficients (n, Q, C); numpy arrays or torch tensors (differentiable)."""
        if type(coefficients).__module__.startswith("torch"):
            import torch

            comps = torch.as_tensor(self.components, dtype=coefficients.dtype, device=coefficients.device)
            mean = torch.as_tensor(self.mean, dtype=coefficients.dtype, device=coefficients.device)
            return torch.einsum("nqc,qck->nqk", coefficients, comps) + mean
        coefficients = np.asarray(coefficients, dtype=float)
        return np.einsum("nqc,qck->nqk", coefficients, self.components) + self.mean

    def as_dict(self) -> dict:
        out = {"mean": self.mean, "components": self.components}
        if self.singular_values is not None:
            out["singular_values"] = self.singular_values
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "SVDBasis":
        def arr(x):
            return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

        sv = d.get("singular_values")
        return cls(arr(d["mean"]), arr(d["components"]), None if sv is None else arr(sv))


def reconstruction_error(values, max_components: int = 16) -> dict:
    """Reconstruction error at the grid points against the number of components.

    Parameters
    ----------
    values : (n, Q, K)
        Profiles (log10 quantities).
    max_components : int

    Returns
    -------
    dict with ``n_components`` (list) and, for each, ``rms`` and ``max`` (lists of Q values, dex)
    of ``decode(encode(x)) - x`` over all models and depths.
    """
    values = np.asarray(values, dtype=float)
    full = SVDBasis.fit(values, min(max_components, values.shape[0], values.shape[2]))
    out = {"n_components": [], "rms": [], "max": []}
    for c in range(1, full.n_components + 1):
        basis = full.truncated(c)
        err = basis.decode(basis.encode(values)) - values
        out["n_components"].append(c)
        out["rms"].append(np.sqrt((err ** 2).mean(axis=(0, 2))).tolist())
        out["max"].append(np.abs(err).max(axis=(0, 2)).tolist())
    return out
