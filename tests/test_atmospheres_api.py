"""Tests of stellarnn.atmosphere: parameters -> ModelAtmosphere with to_krz, to_kurucz, to_table, plot."""
from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

import stellarnn
from stellarnn.atmospheres import Atmosphere, read_krz, read_kurucz
from stellarnn.atmospheres.api import ModelAtmosphere
from stellarnn.atmospheres.linear import OutOfGridError


@pytest.fixture(scope="module")
def sun():
    return stellarnn.atmosphere(5750.0, 4.5, 0.0)


def test_single_model_is_an_atmosphere_with_physical_structure(sun):
    assert isinstance(sun, ModelAtmosphere) and isinstance(sun, Atmosphere)
    assert not sun.batched and sun.n_layers == 71
    assert np.all(np.diff(sun.rhox) > 0) and np.all(np.diff(sun.temperature) > 0)
    # T at tau_Ross = 1 of a solar-like model: close to Teff (Eddington: T(tau=2/3) = Teff)
    t_tau1 = np.interp(0.0, sun.log_tau_ross, sun.temperature)
    assert 5800 < t_tau1 < 7000
    assert sun.vturb is not None and np.allclose(sun.vturb, sun.vturb[0]) and sun.vturb[0] >= 0
    # inside the grid: the 5750 K column is held out and the [M/H] = 0 slice left out of training, so the nearest
    # training models are one Teff step (250 K) and 0.1 dex (0.2 of the median [M/H] step) away: sqrt(1 + 0.04)
    assert sun.grid_distance is not None and 0 <= sun.grid_distance <= np.sqrt(1.04) + 1e-9


def test_to_table_has_units_and_the_model_values(sun):
    table = sun.to_table()
    assert len(table) == sun.n_layers
    assert table["T"].unit == u.K
    assert table["RHOX"].unit == u.g / u.cm ** 2
    assert table["P_gas"].unit.is_equivalent(u.dyn / u.cm ** 2)
    assert table["P_gas"].to_value(u.dyn / u.cm ** 2) == pytest.approx(sun.p_gas, rel=1e-12)
    assert table["n_e"].unit == u.cm ** -3
    assert table["vturb"].to_value(u.cm / u.s) == pytest.approx(sun.vturb)
    assert np.array_equal(table["log_tau_ross"], sun.log_tau_ross)
    assert table.meta["teff"] == 5750.0 and table.meta["m_h"] == 0.0


def test_krz_round_trip_through_the_reader(sun, tmp_path):
    path = sun.to_krz(tmp_path / "sun.krz")
    back = read_krz(path)
    assert back["teff"] == pytest.approx(5750.0) and back["logg"] == pytest.approx(4.5)
    assert back["rhox"] == pytest.approx(sun.rhox, rel=1e-7)
    assert back["temperature"] == pytest.approx(sun.temperature, abs=0.006)
    assert back["n_e"] == pytest.approx(sun.n_e, rel=1e-6)
    assert back["vturb_kms"] == pytest.approx(sun.vturb[0] / 1e5, abs=0.05)


def test_kurucz_round_trip_through_the_reader(sun, tmp_path):
    back = read_kurucz(sun.to_kurucz(tmp_path / "sun.mod"))
    assert back.n_layers == sun.n_layers
    assert np.asarray(back.temperature) == pytest.approx(sun.temperature, rel=1e-4)
    assert np.asarray(back.p_gas) == pytest.approx(sun.p_gas, rel=1e-3)


def test_arrays_give_one_model_per_row_matching_scalar_calls(sun):
    models = stellarnn.atmosphere([5750.0, 4500.0], 4.5, [0.0, -1.0])
    assert isinstance(models, list) and len(models) == 2
    assert models[0].temperature == pytest.approx(sun.temperature, rel=1e-5)  # float32 network
    assert models[1].teff == 4500.0 and models[1].m_h == -1.0
    assert models[1].temperature[-1] < models[0].temperature[-1]


def test_linear_method_agrees_with_the_emulator_near_a_grid_node(sun):
    lin = stellarnn.atmosphere(5750.0, 4.5, 0.0, method="linear")
    assert isinstance(lin, ModelAtmosphere) and lin.n_layers == 72
    t_emu = np.interp(0.0, sun.log_tau_ross, sun.temperature)
    t_lin = np.interp(0.0, lin.log_tau_ross, lin.temperature)
    assert abs(t_emu - t_lin) / t_lin < 0.01
    with pytest.raises(OutOfGridError):
        stellarnn.atmosphere(60000.0, 4.5, 0.0, method="linear")


def test_plot_draws_into_the_given_axes(sun):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert sun.plot(ax=ax, quantity="p_gas") is ax
    (line,) = ax.get_lines()
    assert np.array_equal(line.get_ydata(), sun.p_gas) and ax.get_yscale() == "log"
    overview = sun.plot_overview()
    assert len(overview.axes) == 4
    plt.close(fig)
    plt.close(overview)
    with pytest.raises(ValueError, match="quantity"):
        sun.plot(quantity="density")


@pytest.mark.parametrize("bad", ["5777", None, {"teff": 5777}, object()])
def test_unknown_input_types_raise_type_error(bad):
    with pytest.raises(TypeError, match="teff must be a number"):
        stellarnn.atmosphere(bad, 4.44, 0.0)


def test_bad_values_and_method_raise_value_error():
    with pytest.raises(ValueError, match="method"):
        stellarnn.atmosphere(5777, 4.44, 0.0, method="cubic")
    with pytest.raises(ValueError, match="NaN"):
        stellarnn.atmosphere(np.nan, 4.44, 0.0)
    with pytest.raises(ValueError, match="broadcast"):
        stellarnn.atmosphere([5000, 6000, 7000], [4.0, 4.5], 0.0)
