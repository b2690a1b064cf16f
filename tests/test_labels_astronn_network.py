import pytest
import torch

from stellarnn.labels.astronn.network import OUTPUT_LABELS, ApogeeBCNNCensored, MaxNormLinear, build_astronn
from stellarnn.spectra import APOGEE_N_KEPT


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


def test_branch_dropout_rate():
    """branch_dropout sets the 19 branches' rate apart from the trunk's; by default the two are one (as published)
    and the Monte-Carlo masks are those of a network without the option."""
    default = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19)
    assert default.branch_dropout == default.dropout == 0.3
    same = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19, branch_dropout=0.3)
    a, b = (m.pass_masks(50, torch.Generator().manual_seed(4)) for m in (default, same))
    assert all(torch.equal(a[k], b[k]) for k in ("conv", "flat", "dense1"))
    assert all(torch.equal(x, y) for k in ("branch_in", "branch_hidden") for x, y in zip(a[k], b[k]))
    low = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19, branch_dropout=0.1)
    masks = low.pass_masks(400, torch.Generator().manual_seed(4))
    branch = torch.cat([m.flatten() for k in ("branch_in", "branch_hidden") for m in masks[k]])
    assert (branch == 0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert torch.allclose(branch[branch != 0], torch.full_like(branch[branch != 0], 1 / 0.9))
    assert (masks["flat"] == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)  # the trunk keeps 0.3
    low.mc_dropout = True
    x = torch.ones(200_000)
    assert (low._drop(x, low.branch_dropout) == 0).float().mean().item() == pytest.approx(0.1, abs=0.003)
    none = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19, branch_dropout=0.0)
    assert all(torch.equal(m, torch.ones_like(m)) for m in none.pass_masks(3)["branch_hidden"])
    # the training path (own masks per row): a trunk without dropout gives the same Teff, log g, [Fe/H] on every
    # pass while the branches, at their own rate, vary
    branchy = ApogeeBCNNCensored(branch_pixel_counts=[5] * 19, dropout=0.0, branch_dropout=0.5).train()
    xb = torch.randn(2, APOGEE_N_KEPT) * 0.04
    with torch.no_grad():
        (v1, _), (v2, _) = branchy(xb), branchy(xb)
    trunk = [OUTPUT_LABELS.index(n) for n in ("teff", "logg", "fe_h")]
    abundances = [i for i in range(len(OUTPUT_LABELS)) if i not in trunk]
    assert torch.equal(v1[:, trunk], v2[:, trunk]) and not torch.equal(v1[:, abundances], v2[:, abundances])
    with pytest.raises(ValueError, match="branch_dropout"):
        ApogeeBCNNCensored(branch_pixel_counts=[5] * 19, branch_dropout=1.0)
    model, hp = build_astronn(branch_dropout=0.1)
    assert hp["branch_dropout"] == 0.1 and model.branch_dropout == 0.1 and model.dropout == 0.3


def reference_forward(m, x, drop=None):
    """The network written layer by layer with plain ops (channel-first conv1d, max_pool1d after ReLU,
    transpose + flatten): what the optimised forward must equal.  ``drop`` applies dropout in the order
    and shapes of the original implementation (per-row boolean masks)."""
    import torch.nn.functional as F

    drop = drop or (lambda t: t)
    k = m.conv1.kernel_size[0]
    h = F.relu(F.conv1d(F.pad(x[:, None], ((k - 1) // 2, k // 2)), m.conv1.weight, m.conv1.bias))
    branches = [F.relu(m.branch_in[j](x.index_select(1, getattr(m, f"window_{j}")))) for j in range(19)]
    h = F.conv1d(F.pad(drop(h), ((k - 1) // 2, k // 2)), m.conv2.weight, m.conv2.bias)
    h = F.max_pool1d(F.relu(h), m.pool_length).transpose(1, 2).flatten(1)
    h = F.relu(m.dense1(drop(h)))
    h = F.relu(m.dense2(drop(h)))
    tv, tl = m.trunk_value(h), m.trunk_log_var(h)
    context = torch.cat([m.aux(h), tv], dim=1).detach()
    values, log_vars = [tv], [tl]
    for j, b in enumerate(branches):
        b = torch.cat([drop(F.relu(m.branch_hidden[j](drop(b)))), context], dim=1)
        values.append(m.branch_value[j](b))
        log_vars.append(m.branch_log_var[j](b))
    order = m.output_order
    return torch.cat(values, 1).index_select(1, order), torch.cat(log_vars, 1).index_select(1, order)


def test_state_dict_keys_are_unchanged(model):
    # trained checkpoints must keep loading with strict=True
    m, _ = model
    expected = {f"{n}.{p}" for n in ("conv1", "conv2", "dense1", "dense2", "trunk_value", "trunk_log_var", "aux")
                for p in ("weight", "bias")}
    expected |= {f"{n}.{j}.{p}" for n in ("branch_in", "branch_hidden", "branch_value", "branch_log_var")
                 for j in range(19) for p in ("weight", "bias")}
    expected |= {f"window_{j}" for j in range(19)}
    sd = m.state_dict()
    assert set(sd) == expected
    assert sd["conv1.weight"].shape == (2, 1, 8) and sd["conv2.weight"].shape == (4, 2, 8)
    assert sd["dense1.weight"].shape == (192, 7512)


@pytest.mark.parametrize("pool_length", [4, 3])
def test_optimised_forward_equals_reference(pool_length):
    torch.manual_seed(1)
    m = ApogeeBCNNCensored(branch_pixel_counts=[6] * 19, pool_length=pool_length, dense_units=(16, 8))
    m.set_windows([torch.arange(j, 7514, 1300)[:6] for j in range(19)])
    x = torch.randn(3, 7514)
    m.eval()
    with torch.no_grad():
        for a, b in zip(m(x), reference_forward(m, x)):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    # training mode: the same dropout masks for the same RNG state, the same outputs and gradients
    m.train()
    keep = 1 - m.dropout

    def drop(t):
        return t * torch.empty(t.shape, dtype=torch.bool).bernoulli_(keep) * (1 / keep)

    torch.manual_seed(7)
    v, s = m(x)
    (v.square().sum() + s.sum()).backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    torch.manual_seed(7)
    rv, rs = reference_forward(m, x, drop)
    assert torch.allclose(v, rv, atol=1e-5, rtol=1e-4) and torch.allclose(s, rs, atol=1e-5, rtol=1e-4)
    (rv.square().sum() + rs.sum()).backward()
    for n, p in m.named_parameters():
        if p.grad is not None:
            assert torch.allclose(grads[n], p.grad, atol=1e-5, rtol=1e-3), n


def test_shared_masks_keep_each_spectrum_distribution():
    torch.manual_seed(2)
    m = ApogeeBCNNCensored(branch_pixel_counts=[8] * 19, dense_units=(32, 16)).eval()
    m.mc_dropout = True
    x = torch.randn(3, 7514)
    n = 600
    with torch.inference_mode():
        torch.manual_seed(11)
        shared, _ = m.forward_mc(x, n)
        torch.manual_seed(12)
        indep, _ = m.forward_mc(x, n, shared_masks=False)
        # chunking does not change the result for a given seed
        torch.manual_seed(11)
        rechunked, _ = m.forward_mc(x, n, chunk_rows=7)
        # two copies of a spectrum in one call see the same masks (shared) or not (independent)
        torch.manual_seed(3)
        twin, _ = m.forward_mc(x[[0, 0]], 5)
        torch.manual_seed(3)
        twin_ind, _ = m.forward_mc(x[[0, 0]], 5, shared_masks=False)
    assert torch.allclose(shared, rechunked, atol=1e-5)
    assert torch.allclose(twin[0], twin[1]) and not torch.allclose(twin_ind[0], twin_ind[1])
    # per spectrum and label: mean over passes within MC noise, spread within 15 %
    sd = indep.std(dim=1)
    assert (sd > 0).all()
    assert ((shared.mean(1) - indep.mean(1)).abs() < 5 * sd * (2 / n) ** 0.5 + 1e-6).all()
    assert ((shared.std(1) / sd - 1).abs() < 0.15).all()


def test_published_initialisation_keeps_the_trunk_alive():
    """Zero biases and N(0, 0.05^2) kernels (astroNN's Keras network); the dense trunk sees star-to-star variation."""
    torch.manual_seed(0)
    net, _ = build_astronn()
    hidden = [net.conv1, net.conv2, net.dense1, net.dense2, net.aux, *net.branch_in, *net.branch_hidden]
    heads = [net.trunk_value, net.trunk_log_var, *net.branch_value, *net.branch_log_var]
    for layer in hidden + heads:
        assert float(layer.bias.abs().max()) == 0.0
    assert float(net.dense1.weight.std()) == pytest.approx(0.05, rel=0.01)
    for layer in heads:  # Glorot-uniform: |w| <= sqrt(6 / (fan_in + fan_out))
        fan_out, fan_in = layer.weight.shape
        assert float(layer.weight.abs().max()) <= (6 / (fan_in + fan_out)) ** 0.5
    # inputs like the network's: flux minus the training mean, a few per cent
    x = 0.04 * torch.randn(64, APOGEE_N_KEPT)
    seen = {}
    hook = net.dense1.register_forward_hook(lambda m, i, o: seen.setdefault("pre", o))
    net.eval()
    with torch.no_grad():
        net(x)
    hook.remove()
    ever_active = (seen["pre"] > 0).any(dim=0)
    assert int(ever_active.sum()) >= 0.85 * net.dense1.out_features
    # PyTorch's default biases would leave ~40 % of the units off for every spectrum
    torch.manual_seed(0)
    for layer in hidden:
        layer.reset_parameters()
    seen.clear()
    hook = net.dense1.register_forward_hook(lambda m, i, o: seen.setdefault("pre", o))
    with torch.no_grad():
        net(x)
    hook.remove()
    assert int((seen["pre"] > 0).any(dim=0).sum()) < 0.75 * net.dense1.out_features
