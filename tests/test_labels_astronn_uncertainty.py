import pytest
import torch

from stellarnn.labels.astronn.uncertainty import predict_mc_dropout


class Known(torch.nn.Module):
    """forward_mc gives values 0, 1, 0, 1, ... (z space) and log-variance ln 4 in every pass."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.mc_dropout = False

    def forward_mc(self, x, n, **kwargs):
        assert self.mc_dropout
        v = (torch.arange(n) % 2).to(x.dtype)[None, :, None].expand(x.shape[0], n, 2)
        return v, torch.full_like(v, float(torch.log(torch.tensor(4.0))))


def test_combined_variance_and_units():
    out = predict_mc_dropout(Known(), torch.zeros(3, 5), [10.0, 0.0], [2.0, 0.5], n_passes=100)
    # mean 0.5, MC variance 0.25, predictive 4 -> sigma_z = sqrt(4.25)
    assert out["value"][:, 0].tolist() == pytest.approx([11.0] * 3)
    assert out["raw_error"][:, 0].tolist() == pytest.approx([2.0 * 4.25 ** 0.5] * 3)
    assert out["raw_error"][:, 1].tolist() == pytest.approx([0.5 * 4.25 ** 0.5] * 3)


def test_real_network_is_reproducible_and_restores_mode():
    from stellarnn.labels.astronn.network import ApogeeBCNNCensored

    torch.manual_seed(0)
    m = ApogeeBCNNCensored(branch_pixel_counts=[8] * 19).train()
    x = torch.randn(5, 7514)
    a = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 20, seed=3, max_rows=40)
    b = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 20, seed=3, max_rows=40)
    c = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 20, seed=4, max_rows=40)
    assert torch.equal(a["value"], b["value"]) and (a["raw_error"] > 0).all()
    assert not torch.equal(a["value"], c["value"])
    assert m.training and not m.mc_dropout
    with pytest.raises(ValueError):
        predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 1)
