import numpy as np
import pytest
import torch

from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES, MIN_TEMPERATURE_K, TARGET_NAMES, stratification_targets
from stellarnn.stokes.milne_eddington import MilneEddington
from stellarnn.stokes.node_inversion import (ANALYTIC_PARAMETERS, REGULARISATION_SCALES, LightweaverForward,
                                             NodeLayout, analytic_columns, continuum_temperature_change,
                                             initial_parameters, interpolate_nodes, invert_nodes, observed_model)

FALC_LIKE_LOG_TAU = np.linspace(-6.0, 2.0, 81)
FALC_LIKE_T = 6400.0 + 1500.0 * np.tanh(FALC_LIKE_LOG_TAU) + 300.0 * FALC_LIKE_LOG_TAU


class MockForward:
    """A cheap stand-in for Lightweaver: the stratification read at a few depths drives a Milne-Eddington profile.

    S0 and S1 follow T at log τ −2.5 and 0, the line strength η0 falls with T at log τ −1 (which breaks the
    degeneracy of T with the continuum factor c), the field and v_LOS are read at log τ −1, the Doppler
    width grows with microturbulence: every parameter of :data:`SMALL` is identifiable, each call costs ms.
    """

    def __init__(self):
        self.reference_temperature = FALC_LIKE_T
        self.reference_log_tau = FALC_LIKE_LOG_TAU
        self.instrument = MilneEddington()
        self.quiet_sun_intensity = self.instrument(torch.tensor(
            [[0.0, 0.0, 0.0, 0.0, 30.0, 8.0, 0.2, 0.3, 0.7]], dtype=torch.float64))[0, 0].numpy()
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, strats):
        params, targets = [], []
        for s in strats:
            at = lambda arr, x: float(np.interp(x, self.reference_log_tau, arr))  # noqa: E731
            rel = lambda x: at(s.temperature, x) / at(self.reference_temperature, x) - 1.0  # noqa: E731
            params.append([at(s.B, -1.0), at(s.gamma, -1.0), at(s.chi, -1.0), at(s.v_los, -1.0),
                           25.0 + 8.0 * at(s.vturb, -1.0), 8.0 * (1 - 5 * rel(-1.0)), 0.2, 0.3 * (1 + 3 * rel(-2.5)),
                           0.7 * (1 + 4 * rel(0.0))])
            targets.append(stratification_targets(s, self.reference_log_tau))
        self.calls += len(strats)
        stokes = self.instrument(torch.tensor(params, dtype=torch.float64)).numpy()
        return stokes, np.stack(targets)


SMALL = NodeLayout(temperature_rel=(-2.5, 0.0), v_los=(-1.0,), B=(-1.0,), gamma=(-1.0,), vturb=(-1.0,))


def small_truth():
    return SMALL.pack({"temperature_rel": [0.03, -0.05], "v_los": 0.8, "B": 900.0, "gamma": 60.0, "vturb": 1.2,
                       "chi": 35.0, "stray_light": 0.1, "continuum_factor": 1.01})


def test_layout_pack_unpack_and_nodes_round_trip():
    layout = NodeLayout()
    rng = np.random.default_rng(0)
    params = rng.uniform(0.1, 1.0, layout.n_parameters)
    values = layout.unpack(params)
    assert np.array_equal(layout.pack(values), params)
    assert len(layout.parameter_names) == layout.n_parameters == layout.n_atmospheric + len(ANALYTIC_PARAMETERS)
    for q in ("temperature_rel", "v_los", "B"):
        assert layout.values_at(params, q, layout.nodes(q)) == pytest.approx(values[q], abs=1e-12)
    # the stratification on the reference grid follows the interpolant; constant outside the nodes
    strat = layout.stratification(params, FALC_LIKE_T, FALC_LIKE_LOG_TAU)
    t_rel = layout.values_at(params, "temperature_rel", FALC_LIKE_LOG_TAU)
    assert strat.temperature == pytest.approx(np.maximum(FALC_LIKE_T * (1 + t_rel), MIN_TEMPERATURE_K))
    assert strat.B[FALC_LIKE_LOG_TAU < -2.0] == pytest.approx(values["B"][0])
    assert np.all(strat.chi == pytest.approx(values["chi"] % 180.0))
    # a layout transferred onto itself is unchanged; coarse -> fine -> coarse too when the coarse nodes are fine ones
    assert layout.transfer(params, layout) == pytest.approx(params)
    coarse = NodeLayout(temperature_rel=(-2.0, 0.0), v_los=(-1.0,), B=(-1.0,))
    p_coarse = coarse.pack({**SMALL.unpack(small_truth()), "temperature_rel": [0.03, -0.05]})
    assert layout.transfer(coarse.transfer(p_coarse, layout), coarse) == pytest.approx(p_coarse, abs=1e-12)
    assert coarse.transfer(p_coarse, layout)[layout.slices()["temperature_rel"]] == pytest.approx(
        [0.03, 0.03, -0.01, -0.05, -0.05], abs=1e-12)
    with pytest.raises(ValueError):
        NodeLayout(temperature_rel=(0.0, -1.0))
    with pytest.raises(ValueError):
        layout.unpack(params[:-1])


def test_interpolation_is_monotone_and_clipped():
    x = np.linspace(-6, 3, 200)
    y = interpolate_nodes([-3.0, -1.0, 0.0], [0.0, 1000.0, 1000.0], x)
    assert y.min() >= 0.0 and y.max() <= 1000.0 + 1e-9  # PCHIP keeps B in the node range
    assert y[x < -3].max() == 0.0 and np.all(y[x > 0] == 1000.0)
    assert interpolate_nodes([-1.0], [7.0], x) == pytest.approx(np.full(x.size, 7.0))
    assert interpolate_nodes([-2.0, 0.0], [0.0, 2.0], [-1.0]) == pytest.approx([1.0])


def test_regularisation_penalises_node_differences():
    layout = NodeLayout()
    d = layout.regularisation_matrix()
    flat = layout.pack({"temperature_rel": 0.1, "v_los": 1.0, "B": 500.0, "gamma": 30.0, "vturb": 1.0,
                        "chi": 10.0, "stray_light": 0.0, "continuum_factor": 1.0})
    assert torch.allclose(d @ torch.tensor(flat), torch.zeros(d.shape[0], dtype=torch.float64))
    stepped = flat.copy()
    stepped[layout.slices()["temperature_rel"].start] += 0.1  # one scale unit
    assert float(((d @ torch.tensor(stepped)) ** 2).sum()) == pytest.approx(1.0)
    assert d.shape[0] == sum(len(layout.nodes(q)) - 1 for q in REGULARISATION_SCALES)


def test_analytic_columns_match_finite_differences():
    me = MilneEddington()
    s0 = me(torch.tensor([[1200.0, 50.0, 20.0, 0.5, 30.0, 8.0, 0.2, 0.3, 0.7]], dtype=torch.float64))
    qs = me(torch.tensor([[0.0, 0.0, 0.0, 0.0, 30.0, 8.0, 0.2, 0.3, 0.7]], dtype=torch.float64))[0, 0]
    f, c = torch.tensor([0.15], dtype=torch.float64), torch.tensor([1.02], dtype=torch.float64)
    cols = analytic_columns(s0, f, c, qs)
    h = 1e-6
    num_f = (observed_model(s0, f + h, c, qs) - observed_model(s0, f - h, c, qs)) / (2 * h)
    num_c = (observed_model(s0, f, c + h, qs) - observed_model(s0, f, c - h, qs)) / (2 * h)
    assert torch.allclose(cols[..., 1], num_f, atol=1e-8) and torch.allclose(cols[..., 2], num_c, atol=1e-8)
    # χ: rotating the azimuth of the ME model by a small angle
    hd = 1e-4
    plus = me(torch.tensor([[1200.0, 50.0, 20.0 + hd, 0.5, 30.0, 8.0, 0.2, 0.3, 0.7]], dtype=torch.float64))
    minus = me(torch.tensor([[1200.0, 50.0, 20.0 - hd, 0.5, 30.0, 8.0, 0.2, 0.3, 0.7]], dtype=torch.float64))
    num_chi = (observed_model(plus, f, c, qs) - observed_model(minus, f, c, qs)) / (2 * hd)
    assert float(cols[..., 0].abs().max()) > 1e-4
    assert torch.allclose(cols[..., 0], num_chi, atol=1e-7)


def test_continuum_temperature_change_inverts_planck():
    assert continuum_temperature_change(1.0, 6400.0) == pytest.approx(0.0, abs=1e-12)
    x = 6.62607015e-27 * 2.99792458e10 / (630.2e-7 * 1.380649e-16)
    planck = lambda t: 1.0 / np.expm1(x / t)  # noqa: E731
    for t in (4000.0, 5800.0, 7000.0):
        ratio = planck(t) / planck(6400.0)
        assert continuum_temperature_change(ratio, 6400.0) == pytest.approx(t / 6400.0 - 1.0, rel=1e-9)


def test_mock_profile_is_recovered_from_a_perturbed_start():
    fw = MockForward()
    truth = small_truth()
    clean, true_targets = fw([SMALL.stratification(truth, fw.reference_temperature, fw.reference_log_tau)])
    qs = torch.as_tensor(fw.quiet_sun_intensity)
    obs = observed_model(torch.as_tensor(clean), torch.tensor([0.1], dtype=torch.float64),
                         torch.tensor([1.01], dtype=torch.float64), qs).numpy()
    obs = obs + np.random.default_rng(3).normal(0.0, 1e-3, obs.shape)
    start = truth + np.array([0.04, 0.03, -0.5, -250.0, 20.0, 0.5, 20.0, -0.08, -0.01])
    res = invert_nodes(obs, fw, cycles=(SMALL,), max_iterations=40, start=start[None])
    assert res["converged"][0] and res["stop_reason"][0] in ("converged", "stalled")
    assert 0.7 < res["chi2_reduced"][0] < 1.4  # the noise level
    p = res["params"][0]
    assert p[:2] == pytest.approx(truth[:2], abs=0.01)
    assert p[2] == pytest.approx(0.8, abs=0.05) and p[3] == pytest.approx(900.0, rel=0.05)
    assert p[4] == pytest.approx(60.0, abs=3.0) and p[6] == pytest.approx(35.0, abs=3.0)
    assert p[7] == pytest.approx(0.1, abs=0.02)
    assert res["targets"].shape == (1, len(TARGET_NAMES), LOG_TAU_NODES.size)
    assert res["temperature"][0] == pytest.approx(true_targets[0, 0], rel=0.01)
    assert res["lightweaver_calls"] > 0 and res["iterations"][0] <= 40


def test_mock_initialisation_from_the_me_inversion():
    fw = MockForward()
    truth = small_truth()
    clean, _ = fw([SMALL.stratification(truth, fw.reference_temperature, fw.reference_log_tau)])
    start = initial_parameters(clean, SMALL, fw)[0]
    values = SMALL.unpack(start)
    assert values["B"][0] == pytest.approx(900.0, rel=0.25)
    assert values["v_los"][0] == pytest.approx(0.8, abs=0.2)
    assert values["gamma"][0] == pytest.approx(60.0, abs=15.0)
    assert (values["chi"] - 35.0 + 90.0) % 180.0 - 90.0 == pytest.approx(0.0, abs=10.0)


@pytest.fixture(scope="module")
def lightweaver_forward():
    return LightweaverForward()


@pytest.mark.slow
def test_lightweaver_node_atmosphere_is_recovered(lightweaver_forward):
    """A short real inversion: 5 Lightweaver columns, 3 LM steps from a start off in every parameter."""
    fw = lightweaver_forward
    layout = NodeLayout(temperature_rel=(-1.0,), v_los=(-1.0,), B=(-1.0,), gamma=(-1.0,), vturb=(-1.0,))
    truth = layout.pack({"temperature_rel": 0.02, "v_los": 0.6, "B": 1000.0, "gamma": 40.0, "vturb": 1.0,
                         "chi": 30.0, "stray_light": 0.05, "continuum_factor": 1.0})
    clean, true_targets = fw([layout.stratification(truth, fw.reference_temperature, fw.reference_log_tau)])
    obs = observed_model(torch.as_tensor(clean), torch.tensor([0.05], dtype=torch.float64),
                         torch.tensor([1.0], dtype=torch.float64), torch.as_tensor(fw.quiet_sun_intensity)).numpy()
    start = truth + np.array([-0.015, -0.3, 200.0, 10.0, 0.3, 12.0, 0.03, 0.005])
    off, _ = fw([layout.stratification(start, fw.reference_temperature, fw.reference_log_tau)])
    model_start = observed_model(torch.as_tensor(off), torch.tensor([start[6]]), torch.tensor([start[7]]),
                                 torch.as_tensor(fw.quiet_sun_intensity)).numpy()
    chi2_start = float((((model_start - obs) / 1e-3) ** 2).sum())
    res = invert_nodes(obs, fw, cycles=(layout,), max_iterations=3, start=start[None])
    assert res["chi2"][0] < 1e-3 * chi2_start
    error = np.abs(res["params"][0] - truth)
    assert np.all(error[:6] < 0.3 * np.abs(start - truth)[:6])
    k = int(np.argmin(np.abs(LOG_TAU_NODES + 1.0)))
    assert res["temperature"][0, k] == pytest.approx(true_targets[0, 0, k], abs=20.0)
    assert res["B_los"][0, k] == pytest.approx(true_targets[0, 2, k], abs=30.0)
    assert res["lightweaver_seconds"] / res["lightweaver_calls"] < 5.0
