import pytest
import torch

from stellarnn.labels.astronn.network import OUTPUT_LABELS, ApogeeBCNNCensored, MaxNormLinear, build_astronn


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_astronn()


def test_shapes_and_output_order(model):
    m, hp = model
    m.eval()
    x = torch.randn(4, 7514)
    with torch.inference_mode():
        v, s = m(x)
    assert v.shape == s.shape == (4, 22) and len(OUTPUT_LABELS) == 22
    assert OUTPUT_LABELS.index("fe_h") == 19
    assert m.dense1.in_features == 7512  # 4 channels x 1878 pooled pixels
    assert m.branch_in[0].out_features == 256 and m.branch_in[2].out_features == 256
    assert m.branch_in[1].out_features == 32 and m.branch_hidden[0].out_features == 64
    assert hp["branch_pixel_counts"][0] == 3806


def test_branches_only_see_their_window(model):
    m, _ = model
    m.eval()
    x = torch.zeros(1, 7514)
    na = m.window_4  # Na: 13 pixels
    outside = torch.ones(7514, dtype=torch.bool)
    outside[na] = False
    y = x.clone()
    y[0, outside] = torch.randn(int(outside.sum()))
    na_idx = OUTPUT_LABELS.index("na_h")
    with torch.inference_mode():
        # pixels outside the Na window change the trunk, so the Na output changes through its context only
        assert not torch.allclose(m(x)[0][0, na_idx], m(y)[0][0, na_idx])
    # with the context weights of the Na head zeroed, the Na output ignores every pixel outside its window
    with torch.no_grad():
        m.branch_value[4].weight[:, -5:] = 0
    with torch.inference_mode():
        assert torch.allclose(m(x)[0][0, na_idx], m(y)[0][0, na_idx])


def test_mc_dropout_and_forward_mc(model):
    m, _ = model
    m.eval()
    x = torch.randn(2, 7514)
    with torch.inference_mode():
        a, _ = m(x)
        b, _ = m(x)
        assert torch.equal(a, b)  # no dropout in eval mode
        v, s = m.forward_mc(x, 3)
        assert v.shape == (2, 3, 22) and torch.allclose(v[:, 0], a, atol=1e-5)
        m.mc_dropout = True
        v, _ = m.forward_mc(x, 5)
        m.mc_dropout = False
    assert v.std(dim=1).min() > 0


def test_max_norm_and_gradient_stop():
    lin = MaxNormLinear(10, 2, 0.5)
    with torch.no_grad():
        lin.weight.fill_(3.0)
        lin.bias.zero_()
    x = torch.ones(1, 10)
    assert lin(x).abs().max().item() == pytest.approx(0.5 * 10 / 10 ** 0.5, rel=1e-5)
    m = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19)
    v, _ = m(torch.randn(3, 7514))
    v[:, OUTPUT_LABELS.index("ni_h")].sum().backward()
    assert m.trunk_value.weight.grad is None or m.trunk_value.weight.grad.abs().sum() == 0
    assert m.branch_in[-1].weight.grad.abs().sum() > 0


def test_bad_input():
    m = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19)
    with pytest.raises(ValueError):
        m(torch.zeros(2, 100))
    with pytest.raises(ValueError):
        ApogeeBCNNCensored(branch_pixel_counts=[5] * 3)
    with pytest.raises(ValueError, match="pixels"):
        m.set_windows([list(range(4))] * 19)


def test_dropout_rate_and_scaling():
    m = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19)
    x = torch.ones(400_000)
    assert torch.equal(m.eval()._drop(x), x)
    m.mc_dropout = True
    y = m._drop(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.3, abs=0.003)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.7))
