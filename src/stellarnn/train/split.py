"""Deterministic train/validation splits shared by every training function.

The same seed gives the same split on every machine with the same numpy (the lock file pins it; NEP 19 lets
``Generator`` methods change their streams between numpy versions), so a training resumed in a later session,
or rerun to check it, validates on the same rows.
"""
from __future__ import annotations

import numpy as np


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` rows into training and validation indices.

    Parameters
    ----------
    n : int
        Number of rows (at least 2).
    fraction : float
        Fraction of the rows kept for validation, rounded to the nearest row; at least one.
    seed : int
        Seed of :func:`numpy.random.default_rng`; its first draw is one permutation of the rows.

    Returns
    -------
    train, validation : ndarray of int
        Disjoint row indices in permuted order (the validation rows are the permutation's first).
    """
    if n < 2:
        raise ValueError(f"need at least 2 rows to split into training and validation, got {n}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    return order[n_val:], order[:n_val]


def split_by_block(indices: np.ndarray, n_first: int) -> tuple[np.ndarray, np.ndarray]:
    """Separate row indices of two stacked blocks (rows ``< n_first``, then the rest).

    Returns the indices into the first block and those into the second, each renumbered from 0
    within its block and kept in the given order.
    """
    indices = np.asarray(indices)
    return indices[indices < n_first], indices[indices >= n_first] - n_first
