"""Evaluation helpers: linear baseline with holes, error tables, monotonicity, checkpoint evaluation."""
import numpy as np
import pytest

from stellarnn.atmospheres.evaluation import (LinearBaseline, error_table, evaluate_checkpoint, format_table,
                                              log_kappa_ross, monotone_fraction, percent_table, time_call)
from stellarnn.atmospheres.resample import QUANTITIES, TauSampledGrid


def _linear_grid():
    axes = {"teff": np.array([4000.0, 4500.0, 5000.0, 5500.0, 6000.0]), "logg": np.array([1.0, 2.0, 3.0]),
            "m_h": np.array([-1.0, 0.0])}
    idx = np.stack(np.meshgrid(*[np.arange(len(a)) for a in axes.values()], indexing="ij"), -1).reshape(-1, 3)
    p = np.stack([axes[k][idx[:, i]] for i, k in enumerate(axes)], 1)
    f = (p @ np.array([1e-4, 0.1, 0.3]))[:, None, None] + np.linspace(0, 1, 71)[None, None, :]
    return TauSampledGrid(axes, idx, np.repeat(f, 4, axis=1), np.linspace(-6.875, 1.875, 71))


def test_linear_baseline_is_exact_on_holes_columns_and_edges_for_linear_data():
    grid = _linear_grid()
    p = grid.params
    hole = (p[:, 0] == 4500.0) & (p[:, 1] == 2.0) & (p[:, 2] == 0.0)
    column = p[:, 0] == 5000.0
    edge = p[:, 1] == 3.0
    known = ~(hole | column | edge)
    base = LinearBaseline(grid, known, grid.values)
    for mask in (hole, column & ~edge, edge):
        np.testing.assert_allclose(base(p[mask]), grid.values[mask], atol=1e-10)


def test_error_table_and_monotone_fraction():
    truth = np.zeros((3, 4, 5))
    pred = truth.copy()
    pred[0, 1, 2] = np.log10(1.02)  # +2 % in T at one point
    tab = error_table(pred, truth)
    assert set(tab) == set(QUANTITIES) | {"temperature_percent"}
    assert tab["log_temperature"]["max_dex"] == pytest.approx(np.log10(1.02))
    assert tab["temperature_percent"]["max"] == pytest.approx(2.0)
    assert tab["log_rhox"]["rms_dex"] == 0.0
    lt = np.linspace(-6, 2, 5)
    assert monotone_fraction(np.array([[1, 2, 3, 4, 5], [1, 2, 3, 2.5, 5.0]]), lt) == 0.5


def test_kappa_ross_from_the_depth_scale_and_percent_table():
    log_tau = np.linspace(-6.875, 1.875, 71)
    truth = np.zeros((2, 4, 71))
    truth[:, 0] = log_tau - np.log10(0.3)  # RHOX = tau / 0.3: kappa = 0.3 cm^2/g everywhere
    np.testing.assert_allclose(log_kappa_ross(truth, log_tau), np.log10(0.3), atol=1e-12)
    pred = truth.copy()
    pred[:, 2] += np.log10(1.05)   # P +5 %
    pred[:, 0] -= np.log10(1.1)    # RHOX / 1.1 at every depth: kappa x 1.1
    tab = percent_table(pred, truth, log_tau)
    assert tab["P"]["rms"] == pytest.approx(5.0) and tab["T"]["rms"] == 0.0
    assert tab["P"]["median_model_rms"] == pytest.approx(5.0)
    assert tab["kappa_Ross"]["rms"] == pytest.approx(10.0) and tab["kappa_Ross"]["n_nonpositive"] == 0
    pred[0, 0, 40] = pred[0, 0, 38]  # RHOX stops increasing: no positive opacity there
    assert percent_table(pred, truth, log_tau)["kappa_Ross"]["n_nonpositive"] >= 1


def test_time_call_returns_positive_median():
    assert 0 < time_call(lambda: sum(range(100)), repeats=3, min_seconds=0.01) < 0.01


def test_evaluate_a_small_checkpoint(tmp_path, one_torch_thread):
    from stellarnn.atmospheres.resample import atlas9_tau_grid
    from stellarnn.atmospheres.training import InnterpolConfig, make_splits, train_innterpol

    grid = atlas9_tau_grid()
    path, _ = train_innterpol(grid, make_splits(grid), tmp_path / "e.pt",
                              InnterpolConfig(n_components=4, hidden=8, n_hidden_layers=1, epochs=1), progress=False)
    res = evaluate_checkpoint(path, grid, plot_dir=tmp_path)
    assert set(res["sets"]) == {"random", "teff_columns", "edge", "solar_columns"}
    assert res["sets"]["edge"]["n_models"] == 196
    solar = res["sets"]["solar_columns"]
    assert solar["m_h_values"] == [-0.1, 0.0, 0.1] and 0 < solar["n_models"] < res["sets"]["teff_columns"]["n_models"]
    assert set(solar["ratio_to_linear"]) == {"T", "P", "n_e", "kappa_Ross"}
    assert solar["ratio_to_linear"]["T"] == pytest.approx(
        solar["percent"]["emulator"]["T"]["rms"] / solar["percent"]["linear_raw"]["T"]["rms"])
    consistent = evaluate_checkpoint(path, grid, exclude_m_h=[0.0])
    n_solar = int(np.isclose(grid.params[:, 2], 0.0).sum())
    assert consistent["n_excluded_models"] == n_solar and consistent["excluded_m_h"] == [0.0]
    assert consistent["sets"]["solar_columns"]["m_h_values"] == [-0.1, 0.1]
    assert consistent["sets"]["random"]["n_models"] < res["sets"]["random"]["n_models"]
    assert "excluded [M/H] slices [0.0]" in format_table(consistent)
    lin = res["sets"]["teff_columns"]["linear_raw"]["temperature_percent"]
    assert 0.1 < lin["rms"] < 5  # linear interpolation across 500 K: ~1.5 % rms in T
    assert res["sets"]["random"]["svd_reconstruction"]["log_rhox"]["rms_dex"] < 0.1
    assert all((tmp_path / f).is_file() for f in ("innterpol_edge_T.png", "innterpol_T_error_vs_depth.png",
                                                  "innterpol_teff_line.png"))
    assert "teff_columns" in format_table(res)
    cols = res["sets"]["teff_columns"]["by_teff_column"]
    assert set(cols) == {"4250", "4750", "5250", "5750", "6250", "6750", "7250", "without_4250", "all"}
    assert sum(cols[k]["n_models"] for k in cols if k[0].isdigit()) == res["sets"]["teff_columns"]["n_models"]
    assert cols["all"]["n_models"] == res["sets"]["teff_columns"]["n_models"]
    best = cols["all"]["T"]["best_of_all"]  # the per-model oracle is never worse than any of its methods
    assert best <= min(cols["all"]["T"][m] for m in ("emulator", "linear_raw", "teff_spline", "teff_pchip")) + 1e-9
    assert cols["without_4250"]["n_models"] == res["sets"]["teff_columns"]["n_models"] - cols["4250"]["n_models"]
    t = cols["5250"]["T"]
    assert t["ratio_to_linear"] == pytest.approx(t["emulator"] / t["linear_raw"])
    away = res["sets"]["teff_columns"]["away_from_holes"]
    assert 0 < away["n_models"] < res["sets"]["teff_columns"]["n_models"]  # some held-out models border holes
    assert away["T_max_percent"] <= res["sets"]["teff_columns"]["percent"]["emulator"]["T"]["max"] + 1e-9
    # linear interpolation stays within each ATLAS9 family; across them is kept for reference
    assert "linear_across_families" in res["sets"]["solar_columns"]["percent"]


def test_evaluation_figures_draw_into_a_given_figure(monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    from stellarnn.atmospheres.evaluation import plot_edge_temperatures, plot_temperature_error_vs_depth

    def refuse(*args, **kwargs):
        raise AssertionError("a library plot function selected a matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    log_tau = np.linspace(-5, 2, 20)
    truth = np.zeros((3, 5, 20))
    truth[:, 1] = np.log10(5000.0)
    emulator, linear = truth.copy(), truth.copy()
    linear[:, 1] += np.log10(1.02)  # linear interpolation 2 % hot everywhere
    params = np.array([[5000.0, 4.0, 0.0], [6000.0, 4.5, -1.0], [7000.0, 3.0, 0.5]])
    predictions = {name: (params, truth, emulator, linear) for name in ("random", "teff_columns", "edge")}
    edge_fig, error_fig = plt.figure(), plt.figure()
    try:
        assert plot_edge_temperatures(predictions, log_tau, fig=edge_fig) is edge_fig
        assert len(edge_fig.axes) == 6 and len(edge_fig.axes[0].lines) == 3
        assert plot_temperature_error_vs_depth(predictions, log_tau, fig=error_fig) is error_fig
        linear_rms = error_fig.axes[0].lines[2].get_ydata()
        np.testing.assert_allclose(linear_rms, 2.0, rtol=1e-9)
        assert plt.fignum_exists(edge_fig.number) and plt.fignum_exists(error_fig.number)
    finally:
        plt.close(edge_fig)
        plt.close(error_fig)


def test_family_baseline_only_for_the_atlas9_axis():
    """A grid of its own whose [M/H] values are ATLAS9 nodes does not get the ATLAS9 families."""
    from stellarnn.atmospheres.evaluation import _atlas9_m_h_nodes
    from stellarnn.atmospheres.resample import TauSampledGrid, atlas9_tau_grid

    own = TauSampledGrid({"teff": np.array([4000.0, 5000.0]), "logg": np.array([1.0]), "m_h": np.array([0.0, 0.1])},
                         np.array([[0, 0, 0], [1, 0, 1]]), np.zeros((2, 4, 71)))
    assert not _atlas9_m_h_nodes(own)
    assert _atlas9_m_h_nodes(atlas9_tau_grid())


def test_trimmed_ratio_and_worst_models_find_the_few_models_that_carry_the_rms():
    from stellarnn.atmospheres.evaluation import _trimmed_ratio, _worst_models

    rng = np.random.default_rng(0)
    n, layers = 200, 71
    truth = rng.normal(0.0, 1.0, (n, 4, layers))
    emu = truth + 0.001  # 0.23 % everywhere ...
    emu[7, 2] += 0.3  # ... but one model off by a factor 2 in P
    lin = truth + 0.004  # linear: 0.93 % everywhere
    trimmed = _trimmed_ratio(emu, lin, truth, trim=1.0)
    # without each method's worst 1 % (2 models) the outlier is gone and the ratio is the typical one
    assert trimmed["emulator"]["P"] == pytest.approx(100 * (10 ** 0.001 - 1), rel=1e-6)
    assert trimmed["ratio_to_linear"]["P"] == pytest.approx((10 ** 0.001 - 1) / (10 ** 0.004 - 1), rel=1e-6)
    worst = _worst_models(np.arange(3 * n, dtype=float).reshape(n, 3), ("teff", "logg", "m_h"), emu, lin, truth, n=3)
    assert len(worst) == 3
    assert worst[0]["params"] == {"teff": 21.0, "logg": 22.0, "m_h": 23.0}
    assert worst[0]["emulator_rms_percent"]["P"] == pytest.approx(100 * (10 ** 0.301 - 1), rel=1e-6)
    assert worst[0]["linear_raw_rms_percent"]["P"] == pytest.approx(100 * (10 ** 0.004 - 1), rel=1e-6)


def test_teff_line_interpolation_spline_exact_for_cubics_pchip_no_overshoot_short_lines_nan():
    from stellarnn.atmospheres.evaluation import teff_line_interpolation

    axes = {"teff": np.arange(4000.0, 6001.0, 250.0), "logg": np.array([1.0, 2.0]), "m_h": np.array([-1.0, 0.0])}
    idx = np.stack(np.meshgrid(*[np.arange(len(a)) for a in axes.values()], indexing="ij"), -1).reshape(-1, 3)
    p = np.stack([axes[k][idx[:, i]] for i, k in enumerate(axes)], 1)
    x = (p[:, 0] - 5000.0) / 1000.0
    # a cubic in Teff whose coefficients depend on log g and [M/H]: a not-a-knot spline reproduces it exactly
    f = (x ** 3 * (1 + p[:, 1]) - 0.5 * x * p[:, 2] + p[:, 1])[:, None, None] + np.linspace(0, 1, 71)[None, None, :]
    grid = TauSampledGrid(axes, idx, np.repeat(f, 4, axis=1), np.linspace(-6.875, 1.875, 71))
    column = np.isin(p[:, 0], (4750.0, 5250.0))
    short = (p[:, 1] == 2.0) & (p[:, 2] == 0.0)  # this line keeps only 2 models: nothing to fit a cubic to
    known = ~column & ~(short & (p[:, 0] > 4250.0))
    spline = teff_line_interpolation(grid, known, p[column], "spline")
    ok = ~short[column]
    np.testing.assert_allclose(spline[ok], grid.values[column][ok], atol=1e-9)
    assert np.isnan(spline[~ok]).all()
    # PCHIP stays within the bracketing nodes where a line has a sharp peak (linear data elsewhere)
    g = np.where(p[:, 0] == 5000.0, 3.0, 0.0)[:, None, None] + np.zeros((1, 4, 71))
    peaked = TauSampledGrid(axes, idx, g, np.linspace(-6.875, 1.875, 71))
    known = ~np.isin(p[:, 0], (4750.0,))
    at = p[p[:, 0] == 4750.0]
    pchip = teff_line_interpolation(peaked, known, at, "pchip")
    cubic = teff_line_interpolation(peaked, known, at, "spline")
    # between a flat node (4500 K) and the peak (5000 K) PCHIP's end slopes are 0: the midpoint is halfway; the
    # spline, smooth through the peak, overshoots the straight line towards it
    np.testing.assert_allclose(pchip, 1.5, atol=1e-12)
    assert (cubic > 2.0).all() and (cubic < 3.0).all()
    with pytest.raises(ValueError, match="spline"):
        teff_line_interpolation(grid, known, at, "akima")
    # a layer missing from one node of a line is NaN for that line only; the other layers are still interpolated
    holed = TauSampledGrid(axes, idx, grid.values.copy(), grid.log_tau)
    holed.values[(p[:, 0] == 4500.0) & (p[:, 1] == 1.0) & (p[:, 2] == -1.0), 1, 5] = np.nan
    out = teff_line_interpolation(holed, ~column, p[column], "pchip")
    on_line = (p[column][:, 1] == 1.0) & (p[column][:, 2] == -1.0)
    assert np.isnan(out[on_line][:, 1, 5]).all() and np.isfinite(out[~on_line]).all()
    assert np.isfinite(np.delete(out[on_line].reshape(int(on_line.sum()), -1), 71 + 5, axis=1)).all()


def test_plot_teff_line_refuses_a_line_without_models():
    from stellarnn.atmospheres.evaluation import plot_teff_line

    grid = _linear_grid()
    with pytest.raises(ValueError, match="no model"):
        plot_teff_line(grid, np.ones(len(grid), dtype=bool), None, logg=9.0, m_h=0.0)
