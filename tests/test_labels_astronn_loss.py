import math

import pytest
import torch

from stellarnn.labels.astronn.loss import missing_label_mask, robust_heteroscedastic_loss


def test_value_matches_formula():
    v = torch.tensor([[1.0, 2.0]])
    s = torch.tensor([[0.0, math.log(4.0)]])
    y = torch.tensor([[3.0, 2.0]])
    sy = torch.tensor([[0.0, 0.0]])
    expected = (0.5 * (4.0 / 1.0 + 0.0) + 0.5 * (0.0 + math.log(4.0))) / 2
    assert robust_heteroscedastic_loss(v, s, y, sy).item() == pytest.approx(expected)
    # label uncertainty adds to the variance
    with_err = robust_heteroscedastic_loss(v[:, :1], s[:, :1], y[:, :1], torch.tensor([[1.0]])).item()
    assert with_err == pytest.approx(0.5 * (4.0 / 2.0 + math.log(2.0)))


def test_missing_labels_are_ignored_and_rescaled():
    torch.manual_seed(0)
    v = torch.randn(8, 3, requires_grad=True)
    s = torch.zeros(8, 3)
    y = torch.randn(8, 3)
    full = robust_heteroscedastic_loss(v[:4], s[:4], y[:4])
    y_missing = torch.cat([y[:4], torch.full((4, 3), -9999.0)])
    y_missing[1, 0] = float("nan")
    part = robust_heteroscedastic_loss(v, s, y_missing)
    ref = robust_heteroscedastic_loss(v[[0, 2, 3], :1], s[[0, 2, 3], :1], y[[0, 2, 3], :1]) / 3 \
        + 2 / 3 * robust_heteroscedastic_loss(v[:4, 1:], s[:4, 1:], y[:4, 1:])
    assert part.item() == pytest.approx(ref.item(), rel=1e-6)
    part.backward()
    assert torch.isfinite(v.grad).all() and (v.grad[4:] == 0).all()
    assert full.item() != part.item()


def test_all_missing_and_bad_shapes():
    v = torch.zeros(2, 2, requires_grad=True)
    loss = robust_heteroscedastic_loss(v, torch.zeros(2, 2), torch.full((2, 2), float("nan")))
    assert loss.item() == 0.0
    loss.backward()
    assert missing_label_mask(torch.tensor([1.0, -9999.0, float("inf")])).tolist() == [False, True, True]
    with pytest.raises(ValueError):
        robust_heteroscedastic_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 3))


def test_beta_nll_rescales_each_term_by_the_detached_variance():
    import torch

    from stellarnn.labels.astronn.loss import robust_heteroscedastic_loss

    value = torch.tensor([[0.3, -1.0]], requires_grad=True)
    log_var = torch.tensor([[1.2, -0.5]], requires_grad=True)
    target = torch.tensor([[0.0, 0.5]])
    loss = robust_heteroscedastic_loss(value, log_var, target, beta=0.5)
    var = torch.exp(log_var.detach())
    per = 0.5 * ((target - value.detach()) ** 2 / var + log_var.detach()) * var ** 0.5
    assert torch.isclose(loss, per.mean())
    loss.backward()
    # d/dvalue of the beta-NLL: (value - y) / var * var^beta / n_labels
    expected = (value.detach() - target) / var * var ** 0.5 / 2
    assert torch.allclose(value.grad, expected)
    # beta = 0 is the published loss
    plain = robust_heteroscedastic_loss(value, log_var, target)
    assert torch.isclose(plain, (0.5 * ((target - value.detach()) ** 2 / var + log_var.detach())).mean())
