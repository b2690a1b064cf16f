"""Innterpol's device option: the batched torch path (forced on the CPU here) against the CPU engine."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.emulator import Innterpol, InnterpolMLP, resolve_device
from stellarnn.atmospheres.resample import QUANTITIES
from stellarnn.atmospheres.svd import SVDBasis


def _emulator(engine="auto", device="cpu", seed=3):
    """Random weights on a 3-D lattice with holes (so some queries fall back to the KD tree)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    axes = (np.arange(3500, 8001, 250.0), np.arange(0.0, 5.01, 0.5), np.array([-2.0, -1.0, -0.5, 0.0, 0.5]))
    nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    nodes = nodes[rng.uniform(size=len(nodes)) > 0.3]
    n_q, n_c, n_k = len(QUANTITIES), 4, 71
    model = InnterpolMLP(3, n_q * n_c, 16, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
    mean = rng.normal(size=(n_q, n_k)) + np.array([1.0, 3.7, 4.0, 12.0])[:, None]
    comps = rng.normal(size=(n_q, n_c, n_k)) * 0.05
    return Innterpol(model, SVDBasis(mean, comps), ("teff", "logg", "m_h"), nodes.min(0), nodes.max(0),
                     rng.uniform(0.5, 2.0, n_q), nodes, -6.875 + 0.125 * np.arange(n_k), device=device, engine=engine)


def _points(n, seed=0):
    rng = np.random.default_rng(seed)  # inside and beyond the grid on every axis
    return rng.uniform(3000, 8600, n), rng.uniform(-0.6, 5.6, n), rng.uniform(-2.6, 1.0, n)


def _logs(atm):
    return np.log10(np.stack([np.asarray(getattr(atm, q.removeprefix("log_"))) for q in QUANTITIES], 1))


@pytest.fixture(scope="module")
def pair():
    cpu, dev = _emulator(), _emulator(engine="torch")
    dev.device_chunk_size = 97  # several chunks, the last one short
    return cpu, dev


def test_default_is_the_cpu_engine_and_torch_engine_is_forced(pair):
    cpu, dev = pair
    assert (cpu.engine, str(cpu.device)) == ("cpu", "cpu")
    assert (dev.engine, str(dev.device)) == ("torch", "cpu")


@pytest.mark.parametrize("precision", ["float32", "float64", "bfloat16"])
def test_torch_path_matches_cpu_engine(pair, precision):
    cpu, dev = pair
    teff, logg, m_h = _points(1000)
    a = cpu.atmosphere(teff, logg, m_h, precision=precision)
    b = dev.atmosphere(teff, logg, m_h, precision=precision)
    la, lb = _logs(a), _logs(b)
    eps = np.finfo(np.float64 if precision == "float64" else np.float32).eps
    # float32 rounding of log10 values up to ~14 (n_e), a few ulp of blocking differences between batch sizes
    np.testing.assert_allclose(lb, la, rtol=0, atol=8 * eps * np.abs(la).max())
    assert np.array_equal(a.grid_distance, b.grid_distance)
    assert b.temperature.dtype == np.float64 and isinstance(b.grid_distance, np.ndarray)


def test_torch_engine_distance_equals_cpu_engine_distance(pair):
    """The emulator's distance on its torch path (DeviceLatticeDistance: test_atmospheres_grid_distance_device)."""
    cpu, dev = pair
    teff, logg, m_h = _points(3000, seed=5)
    np.testing.assert_array_equal(dev.atmosphere(teff, logg, m_h).grid_distance,
                                  cpu.atmosphere(teff, logg, m_h).grid_distance)


def test_tensor_inputs_stay_tensors_on_the_device(pair):
    cpu, dev = pair
    teff, logg, m_h = _points(300, seed=7)
    ref = cpu.atmosphere(teff, logg, m_h)
    atm = dev.atmosphere(torch.tensor(teff), torch.tensor(logg), torch.tensor(m_h))
    assert isinstance(atm.temperature, torch.Tensor) and atm.temperature.dtype == torch.float32
    assert isinstance(atm.grid_distance, torch.Tensor) and atm.log_tau_ross.shape == (300, 71)
    np.testing.assert_array_equal(atm.grid_distance.numpy(), ref.grid_distance)
    np.testing.assert_allclose(np.log10(atm.temperature.numpy()), np.log10(ref.temperature), rtol=0, atol=1e-5)
    fast = dev.atmosphere(torch.tensor(teff), torch.tensor(logg), torch.tensor(m_h), with_distance=False)
    assert fast.grid_distance is None


def test_scalar_and_float32_output_on_the_torch_path(pair):
    cpu, dev = pair
    one = dev.atmosphere(5000.0, 3.0, -0.5)
    assert one.temperature.shape == (71,) and np.ndim(one.grid_distance) == 0
    assert one.grid_distance == cpu.atmosphere(5000.0, 3.0, -0.5).grid_distance
    f32 = dev.atmosphere(*_points(10), dtype=np.float32, with_distance=False)
    assert f32.temperature.dtype == np.float32 and f32.grid_distance is None


def test_gradients_still_flow_with_the_torch_engine(pair):
    _, dev = pair
    teff = torch.tensor([5000.0, 6000.0], requires_grad=True)
    atm = dev.atmosphere(teff, torch.tensor([3.0, 4.0]), torch.tensor([0.0, -1.0]))
    atm.temperature.sum().backward()
    assert teff.grad is not None and torch.isfinite(teff.grad).all() and (teff.grad != 0).any()


def test_device_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    emu = _emulator(device="auto")
    assert (str(emu.device), emu.engine) == ("cpu", "cpu")
    with pytest.raises(ValueError, match="no CUDA device on this machine"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA device on this machine"):
        _emulator(device="cuda:0")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="engine must be one of"):
        _emulator(engine="fast")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="CPU only"):
        _emulator(device="cuda:1", engine="cpu")


def test_shipped_weights_torch_path_agrees():
    cpu = Innterpol.load()
    dev = Innterpol.load(device="cpu", engine="torch")
    teff, logg, m_h = np.array([3750.0, 5777.0, 8000.0, 20000.0]), np.array([1.0, 4.44, 4.0, 4.5]), np.zeros(4)
    a, b = cpu.atmosphere(teff, logg, m_h), dev.atmosphere(teff, logg, m_h)
    np.testing.assert_allclose(_logs(b), _logs(a), rtol=0, atol=8 * np.finfo(np.float32).eps * 16)
    np.testing.assert_array_equal(a.grid_distance, b.grid_distance)
    assert b.grid_distance[-1] > 1  # 20000 K is outside the grid
