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
