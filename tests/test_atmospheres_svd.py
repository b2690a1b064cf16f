"""Per-quantity SVD basis."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.svd import SVDBasis, reconstruction_error


def _profiles(n=60, q=4, k=71, rank=3, seed=0):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(q, rank, k))
    coeff = rng.normal(size=(n, q, rank))
    return np.einsum("nqr,qrk->nqk", coeff, basis) + rng.normal(size=(q, k))


def test_exact_for_low_rank_data_and_orthonormal():
    x = _profiles()
    basis = SVDBasis.fit(x, n_components=3)
    np.testing.assert_allclose(basis.decode(basis.encode(x)), x, atol=1e-10)
    for q in range(4):
        np.testing.assert_allclose(basis.components[q] @ basis.components[q].T, np.eye(3), atol=1e-12)


def test_error_decreases_with_components_and_vanishes_at_rank():
    x = _profiles(rank=5)
    table = reconstruction_error(x, max_components=6)
    rms = np.array(table["rms"])
    assert table["n_components"] == [1, 2, 3, 4, 5, 6]
    assert np.all(np.diff(rms, axis=0) <= 1e-12)
    assert rms[4].max() < 1e-10 and rms[0].min() > 0.1


def test_torch_decode_and_round_trip_dict():
    x = _profiles()
    basis = SVDBasis.fit(x, 3)
    c = torch.tensor(basis.encode(x), requires_grad=True)
    out = basis.decode(c)
    np.testing.assert_allclose(out.detach().numpy(), x, atol=1e-10)
    out.sum().backward()
    assert c.grad is not None
    again = SVDBasis.from_dict(basis.as_dict())
    np.testing.assert_array_equal(again.components, basis.components)


def test_atlas9_reconstruction_at_12_components():
    from stellarnn.atmospheres.resample import atlas9_tau_grid

    values = atlas9_tau_grid().values
    basis = SVDBasis.fit(values, 12)
    err = basis.decode(basis.encode(values)) - values
    rms_t = np.sqrt(np.mean(err[:, 1] ** 2))
    assert 5e-4 < rms_t < 2e-3  # 0.00105 dex = 0.24 % in T with 12 components


def test_bad_input():
    with pytest.raises(ValueError):
        SVDBasis.fit(np.ones((1, 4, 71)))
    with pytest.raises(ValueError):
        SVDBasis.fit(_profiles(), n_components=0)
    x = _profiles()
    x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SVDBasis.fit(x)
    with pytest.raises(ValueError):
        SVDBasis.fit(_profiles(), 3).encode(np.ones((2, 4, 70)))
