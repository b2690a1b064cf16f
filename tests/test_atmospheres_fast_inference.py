"""The chunked inference engine of Innterpol.atmosphere against a straightforward reference."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.emulator import Innterpol, InnterpolMLP
from stellarnn.atmospheres.resample import QUANTITIES
from stellarnn.atmospheres.svd import SVDBasis


def _toy_emulator(seed=0, n_components=5, hidden=24, layers=3, activation="leaky_relu"):
    """An Innterpol with random weights on an ATLAS9-like 3-D grid with holes (no training needed)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    teff = np.r_[np.arange(3500, 10001, 250), np.arange(10500, 13001, 500)]
    logg = np.arange(0.0, 5.01, 0.5)
    m_h = np.array([-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.2, 0.5])
    nodes = np.stack(np.meshgrid(teff, logg, m_h, indexing="ij"), -1).reshape(-1, 3)
    nodes = nodes[rng.uniform(size=len(nodes)) > 0.3]  # holes
    nodes = nodes[~((nodes[:, 0] < 5000) & (nodes[:, 1] > 4.0))]  # a missing corner
    n_q, n_k = len(QUANTITIES), 71
    model = InnterpolMLP(3, n_q * n_components, hidden, layers, activation=activation)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
    mean = rng.normal(size=(n_q, n_k)) + np.array([1.0, 3.7, 4.0, 12.0])[:, None]
    comps = rng.normal(size=(n_q, n_components, n_k)) * 0.05
    emu = Innterpol(model, SVDBasis(mean, comps), ("teff", "logg", "m_h"), nodes.min(0), nodes.max(0),
                    rng.uniform(0.5, 2.0, n_q), nodes, -6.875 + 0.125 * np.arange(n_k))
    return emu


def _reference(emu, teff, logg, m_h):
    """Plain float64 implementation: MLP layer by layer, per-quantity SVD decoding, brute-force distance."""
    p32 = np.stack(np.broadcast_arrays(*[np.atleast_1d(np.asarray(v, float)) for v in (teff, logg, m_h)]), 1)
    p32 = p32.astype(np.float32)  # the emulator's input precision
    p = p32.astype(float)
    x = (p - emu.axis_min.double().numpy()) / (emu.axis_max - emu.axis_min).double().numpy()
    linears = [m for m in emu.model.net if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        x = x @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        if i < len(linears) - 1:
            x = np.where(x > 0, x, 0.2 * x)
    q, c = emu.basis.n_quantities, emu.basis.n_components
    coeff = x.reshape(-1, q, c) * emu.coefficient_scale.double().numpy()[None, :, None]
    logs = np.empty((len(p), q, emu.basis.mean.shape[-1]))
    for k in range(q):
        logs[:, k] = emu.basis.mean[k] + coeff[:, k] @ emu.basis.components[k]
    diff = p[:, None, :] / emu.steps - emu.grid_nodes[None] / emu.steps
    dist = np.sqrt((diff ** 2).sum(-1)).min(1)
    return 10.0 ** logs, dist, p


def _random_inputs(n, seed):
    rng = np.random.default_rng(seed)
    inside = np.stack([rng.uniform(3500, 13000, n), rng.uniform(0, 5, n), rng.uniform(-2.5, 0.5, n)], 1)
    outside = np.stack([rng.uniform(1000, 40000, n), rng.uniform(-2, 7, n), rng.uniform(-6, 2, n)], 1)
    pts = np.concatenate([inside, outside])
    return pts[rng.permutation(len(pts))]


@pytest.fixture(scope="module")
def toy():
    return _toy_emulator()


@pytest.mark.parametrize("n,chunk,threads", [(1, 1024, None), (37, 8, 2), (1500, 256, 2), (1500, 4096, 1),
                                             (3001, 1000, 3)])
def test_engine_matches_reference(toy, n, chunk, threads):
    pts = _random_inputs((n + 1) // 2, seed=n)[:n]
    toy.chunk_size, toy.threads = chunk, threads
    try:
        atm = toy.atmosphere(pts[:, 0], pts[:, 1], pts[:, 2])
    finally:
        toy.chunk_size, toy.threads = 1024, None
    ref, dist, p = _reference(toy, pts[:, 0], pts[:, 1], pts[:, 2])
    for i, name in enumerate(("rhox", "temperature", "p_gas", "n_e")):
        got = getattr(atm, name)
        assert got.dtype == np.float64 and got.shape == (n, 71)
        # float32 arithmetic against float64: ~1e-6 dex
        np.testing.assert_allclose(np.log10(got), np.log10(ref[:, i]), rtol=0, atol=2e-5)
    np.testing.assert_allclose(atm.grid_distance, dist, rtol=1e-12, atol=1e-12)  # exact nearest model
    if n > 10:
        assert (atm.grid_distance > 1).any() and (atm.grid_distance < 1).any()  # inside and outside the grid
    np.testing.assert_array_equal(atm.teff, p[:, 0])
    np.testing.assert_array_equal(atm.log_tau_ross[-1], toy.log_tau)


def test_float64_precision_matches_reference_closely(toy):
    pts = _random_inputs(200, seed=5)
    atm = toy.atmosphere(pts[:, 0], pts[:, 1], pts[:, 2], precision="float64")
    ref, _, _ = _reference(toy, pts[:, 0], pts[:, 1], pts[:, 2])
    np.testing.assert_allclose(atm.temperature, ref[:, 1], rtol=1e-10)
    np.testing.assert_allclose(atm.n_e, ref[:, 3], rtol=1e-10)


def test_chunking_threads_and_fast_path_do_not_change_results(toy):
    pts = _random_inputs(2500, seed=11)
    args = (pts[:, 0], pts[:, 1], pts[:, 2])
    toy.threads = 1
    toy.chunk_size = 10 ** 6
    whole = toy.atmosphere(*args)
    toy.chunk_size, toy.threads = 512, 2
    try:
        chunked = toy.atmosphere(*args)
        fast = toy.atmosphere(*args, with_distance=False, dtype=np.float32)
    finally:
        toy.chunk_size, toy.threads = 1024, None
    np.testing.assert_array_equal(chunked.temperature, whole.temperature)
    np.testing.assert_array_equal(chunked.grid_distance, whole.grid_distance)
    assert fast.grid_distance is None and fast.temperature.dtype == np.float32
    np.testing.assert_array_equal(fast.n_e, whole.n_e.astype(np.float32))
    assert torch.get_num_threads() >= 1


def test_engine_matches_module_path(toy):
    """Same float32 operations as the differentiable path (profiles()) at a batch of 1000."""
    pts = _random_inputs(500, seed=3)
    atm = toy.atmosphere(pts[:, 0], pts[:, 1], pts[:, 2])
    with torch.inference_mode():
        lin = toy.profiles(torch.as_tensor(pts, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(atm.p_gas, lin[:, 2], rtol=1e-5)


def test_tensor_inputs_without_and_with_grad(toy):
    t = torch.tensor([5000.0, 9000.0, 20000.0])
    g = torch.tensor([3.0, 4.0, 2.0])
    m = torch.tensor([0.0, -1.0, 0.0])
    fast = toy.atmosphere(t, g, m)
    assert isinstance(fast.temperature, torch.Tensor) and fast.temperature.dtype == torch.float32
    tg = t.clone().requires_grad_(True)
    slow = toy.atmosphere(tg, g, m)
    assert slow.temperature.requires_grad
    slow.temperature[:, 30].sum().backward()
    assert tg.grad is not None and torch.isfinite(tg.grad).all()
    torch.testing.assert_close(fast.temperature, slow.temperature.detach(), rtol=1e-5, atol=0)
    np.testing.assert_array_equal(fast.grid_distance, slow.grid_distance)
    ref, dist, _ = _reference(toy, t.numpy(), g.numpy(), m.numpy())
    np.testing.assert_allclose(fast.grid_distance, dist, rtol=1e-12)


def test_thread_setting_is_restored(toy):
    before = torch.get_num_threads()
    pts = _random_inputs(3000, seed=2)
    toy.threads = 2
    try:
        toy.atmosphere(pts[:, 0], pts[:, 1], pts[:, 2])
    finally:
        toy.threads = None
    assert torch.get_num_threads() == before


def test_bad_precision(toy):
    with pytest.raises(ValueError, match="precision"):
        toy.atmosphere(5000.0, 3.0, 0.0, precision="float16")


def test_scalar_fast_path(toy):
    one = toy.atmosphere(5000.0, 3.0, 0.0, with_distance=False)
    assert not one.batched and one.grid_distance is None and one.n_layers == 71
    ref, _, _ = _reference(toy, 5000.0, 3.0, 0.0)
    np.testing.assert_allclose(np.log10(one.rhox), np.log10(ref[0, 0]), atol=2e-5)


@pytest.mark.parametrize("mode", ["fused", "split"])
@pytest.mark.parametrize("precision,atol", [("float32", 2e-5), ("float64", 1e-10)])
def test_both_output_paths_match_reference(mode, precision, atol):
    emu = _toy_emulator(seed=3, n_components=7, hidden=32, layers=2)
    emu.output_mode, emu.chunk_size = mode, 100
    assert emu.output_path() == mode
    pts = _random_inputs(250, seed=21)
    atm = emu.atmosphere(pts[:, 0], pts[:, 1], pts[:, 2], precision=precision)
    ref, _, _ = _reference(emu, pts[:, 0], pts[:, 1], pts[:, 2])
    for i, name in enumerate(("rhox", "temperature", "p_gas", "n_e")):
        np.testing.assert_allclose(np.log10(getattr(atm, name)), np.log10(ref[:, i]), rtol=0, atol=atol)


def test_output_path_picks_the_cheaper_product():
    wide = _toy_emulator(n_components=24, hidden=128, layers=1)  # the shipped ATLAS9 shape: split
    narrow = _toy_emulator(n_components=12, hidden=40, layers=1)  # the paper's shape: fused
    assert wide.output_path() == "split" and narrow.output_path() == "fused"
    wide.output_mode = "fused"
    assert wide.output_path() == "fused"


def test_bfloat16_engine_rounds_only_the_hidden_layers():
    emu = _toy_emulator(seed=4, n_components=6, hidden=32, layers=3)
    pts = _random_inputs(300, seed=8)
    args = (pts[:, 0], pts[:, 1], pts[:, 2])
    f32 = emu.atmosphere(*args, dtype=np.float32)
    b16 = emu.atmosphere(*args, precision="bfloat16", dtype=np.float32)
    layers, _, _, _, fused = emu._engine_weights("bfloat16")
    # input Linear float32, the hidden x hidden layers bfloat16
    assert [w.dtype for (w, _), _ in layers] == [torch.float32] + [torch.bfloat16] * 3
    from stellarnn.atmospheres.emulator import _fused_bfloat16_linear_available

    # where oneDNN has it, each bfloat16 layer is one fused primitive with (out, in) weights
    assert sorted(fused) == ([1, 2, 3] if _fused_bfloat16_linear_available() else [])
    for i, w in fused.items():
        assert torch.equal(w, layers[i][0][0].T)
    assert b16.temperature.dtype == np.float32 and b16.grid_distance is not None
    d = np.abs(np.log10(b16.temperature) - np.log10(f32.temperature))
    assert 0 < np.median(d) < 5e-3 and d.max() < 0.1  # bfloat16 rounding (8-bit mantissa), not float32's ~1e-7
    # keeping every layer float32 gives the float32 engine exactly
    emu.bfloat16_float32_layers = (10, 0)
    same = emu.atmosphere(*args, precision="bfloat16", dtype=np.float32)
    np.testing.assert_array_equal(same.n_e, f32.n_e)
    emu.bfloat16_float32_layers = (-1, 0)
    with pytest.raises(ValueError, match="bfloat16_float32_layers"):
        emu.atmosphere(*args, precision="bfloat16")
    emu.bfloat16_float32_layers = (1, 0)
    t = emu.atmosphere(torch.as_tensor(pts[:5, 0]), torch.as_tensor(pts[:5, 1]), torch.as_tensor(pts[:5, 2]),
                       precision="bfloat16")
    assert t.temperature.dtype == torch.float32


def test_bfloat16_engine_with_silu_layers():
    """A SiLU emulator's bfloat16 engine (fused oneDNN swish where available) stays within bfloat16 rounding."""
    from stellarnn.atmospheres.emulator import _fused_bfloat16_linear_available

    emu = _toy_emulator(seed=6, n_components=6, hidden=32, layers=3, activation="silu")
    pts = _random_inputs(300, seed=9)
    args = (pts[:, 0], pts[:, 1], pts[:, 2])
    f32 = emu.atmosphere(*args, dtype=np.float32)
    b16 = emu.atmosphere(*args, precision="bfloat16", dtype=np.float32)
    layers, _, _, _, fused = emu._engine_weights("bfloat16")
    assert [s for _, s in layers] == ["silu"] * 4
    assert sorted(fused) == ([1, 2, 3] if _fused_bfloat16_linear_available() else [])
    d = np.abs(np.log10(b16.temperature) - np.log10(f32.temperature))
    assert 0 < np.median(d) < 5e-3 and d.max() < 0.1
