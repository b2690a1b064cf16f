import math

import pytest
import torch

from stellarnn.labels.apogeenet.preprocessing import log_scale
from stellarnn.labels.apogeenet.uncertainty import noisy_network_inputs, predict_with_noise_draws


class MeanLogFlux(torch.nn.Module):
    """Outputs the mean of the (log-scaled) input in all three z-scored outputs."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return (x.mean(dim=1, keepdim=True) * self.w).expand(-1, 3)


def test_noisy_inputs_first_row_is_noiseless():
    flux = torch.full((2, 50), 2.0, dtype=torch.float64)
    err = torch.full_like(flux, 0.1)
    x = noisy_network_inputs(flux, err, 5, torch.Generator().manual_seed(0))
    assert x.shape == (2, 6, 50)
    assert torch.allclose(x[:, 0], log_scale(flux).float())
    assert not torch.allclose(x[:, 1], x[:, 0])


def test_spread_matches_analytic_and_teff_propagation():
    n = 4000
    flux = torch.full((3, n), 1.0, dtype=torch.float64)
    err = torch.full_like(flux, 0.01)
    out = predict_with_noise_draws(MeanLogFlux(), flux, err, (0.0, 3.7, 0.0), (1.0, 0.1, 1.0), n_draws=200,
                                   generator=torch.Generator().manual_seed(1))
    # mean of log(1 + 0.01 g) over n pixels has std ~ 0.01 / sqrt(n)
    expected = 0.01 / math.sqrt(n)
    assert out["raw_e_logg"].numpy() == pytest.approx(expected, rel=0.2)
    assert out["logg"].numpy() == pytest.approx(0.0, abs=1e-12)
    sigma_log_t = 0.1 * out["raw_e_logg"]
    assert torch.allclose(out["teff"], torch.full((3,), 10 ** 3.7, dtype=torch.float64))
    assert torch.allclose(out["raw_e_teff"], out["teff"] * sigma_log_t * math.log(10))


def test_fewer_than_two_draws_gives_nan():
    out = predict_with_noise_draws(MeanLogFlux(), torch.ones(1, 10, dtype=torch.float64),
                                   torch.ones(1, 10, dtype=torch.float64), (0, 3.7, 0), (1, 0.1, 1), n_draws=1)
    assert torch.isnan(out["raw_e_fe_h"]).all()


def test_bf16_refused_on_cpu_and_chunk_size_checked():
    flux = torch.full((2, 50), 2.0, dtype=torch.float64)
    err = torch.full_like(flux, 0.1)
    with pytest.raises(ValueError, match="CUDA"):
        predict_with_noise_draws(MeanLogFlux(), flux, err, [0.0] * 3, [1.0] * 3, 4, precision="bf16")
    with pytest.raises(ValueError, match="chunk_size"):
        predict_with_noise_draws(MeanLogFlux(), flux, err, [0.0] * 3, [1.0] * 3, 4, chunk_size=0)


def test_draws_follow_their_generators_and_chunking_does_not_change_the_result():
    """Per-spectrum generators give each spectrum its own draws whatever the batch; the rows per network call
    (``chunk_size``, the per-device size) change nothing."""
    torch.manual_seed(0)
    flux = 1.0 + 0.1 * torch.rand(3, 200, dtype=torch.float64)
    err = torch.full_like(flux, 0.05)

    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    a = predict_with_noise_draws(MeanLogFlux(), flux, err, [0.0] * 3, [1.0] * 3, 6, gens([1, 2, 3]), chunk_size=128)
    b = predict_with_noise_draws(MeanLogFlux(), flux, err, [0.0] * 3, [1.0] * 3, 6, gens([1, 2, 3]), chunk_size=5)
    c = predict_with_noise_draws(MeanLogFlux(), flux[1:2], err[1:2], [0.0] * 3, [1.0] * 3, 6, gens([2]))
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-12, atol=1e-12)
        assert torch.allclose(a[key][1:2], c[key], rtol=1e-12, atol=1e-12)
    assert (a["raw_e_logg"] > 0).all() and len(set(a["raw_e_logg"].tolist())) == 3
