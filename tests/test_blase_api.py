"""Tests of stellarnn.blase.clone / transfer: inputs astronomers hold -> results with QTables and plots."""
from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

import stellarnn
from stellarnn.blase.api import Clone, Transfer, UnsupportedSpectrumError
from stellarnn.spectra import Spectrum

#: three Gaussian lines in optical depth: centres [Å], central optical depths, σ = 0.06 Å
CENTRES = np.array([5002.0, 5005.0, 5008.0])
TAU0 = np.array([0.8, 0.4, 1.2])
C_KM_S = 299792.458


def synthetic(wavelength, rv_km_s=0.0):
    shifted = CENTRES * (1 + rv_km_s / C_KM_S)
    tau = sum(a * np.exp(-0.5 * ((wavelength - x) / 0.06) ** 2) for a, x in zip(TAU0, shifted))
    return np.exp(-tau)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def source():
    wavelength = np.arange(4999.0, 5011.0, 0.01)
    return wavelength, synthetic(wavelength)


@pytest.fixture(scope="module")
def cloned(source):
    return stellarnn.blase.clone(source, epochs=150, profile="voigt")


def test_clone_recovers_the_three_lines(cloned):
    assert isinstance(cloned, Clone) and cloned.n_lines == 3
    table = cloned.to_table()
    assert table["centre"].unit == u.AA and table["fwhm"].unit == u.AA and table["amplitude"].unit == u.AA
    assert table["centre"].to_value(u.AA) == pytest.approx(CENTRES, abs=2e-3)
    assert np.asarray(table["depth"]) == pytest.approx(1 - np.exp(-TAU0), abs=0.01)
    # a pure Gaussian of σ = 0.06 Å has FWHM 2 sqrt(2 ln 2) σ = 0.1413 Å (depth changes it a little in tau form)
    assert np.all(np.abs(table["fwhm"].to_value(u.AA) - 0.1413) < 0.03)
    assert cloned.rms_residual < 5e-3


def test_clone_accepts_a_spectrum_like_object_and_a_path(source, tmp_path):
    wavelength, flux = source
    from_object = stellarnn.blase.clone(Spectrum(wavelength, flux, np.ones_like(flux)), epochs=20)
    path = tmp_path / "synthetic.npz"
    np.savez(path, wavelength=wavelength, flux=flux)
    from_path = stellarnn.blase.clone(path, epochs=20, wavelength_max=5006.0)
    assert from_object.n_lines == 3 and from_path.n_lines == 2
    assert from_path.to_table()["centre"].to_value(u.AA) == pytest.approx(CENTRES[:2], abs=5e-3)


def test_transfer_finds_the_radial_velocity(cloned):
    rng = np.random.default_rng(0)
    wavelength = np.arange(4999.5, 5010.5, 0.02)
    flux = synthetic(wavelength, rv_km_s=15.0) + rng.normal(0, 0.005, wavelength.size)
    result = cloned.transfer((wavelength, flux, np.full(wavelength.size, 0.005)), epochs=30, baseline_epochs=30,
                             tellurics=False, rv_grid_km_s=np.arange(-50, 50.1, 1.0), vsini_grid_km_s=[2.0, 5.0])
    assert isinstance(result, Transfer)
    assert result.rv.unit == u.km / u.s and result.rv.to_value(u.km / u.s) == pytest.approx(15.0, abs=0.5)
    table = result.to_table()
    assert len(table) == 3 and table.meta["rv_km_s"] == pytest.approx(15.0, abs=0.5)
    assert result.result.transfer_rms < 0.01
    assert result.model_flux().shape == wavelength.shape


def test_plots_draw_into_the_given_axes(cloned, source):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert cloned.plot(ax=ax) is ax
    source_line, clone_line = ax.get_lines()
    assert np.array_equal(source_line.get_ydata(), source[1])
    assert np.max(np.abs(clone_line.get_ydata() - source[1])) < 0.02
    plt.close(fig)


@pytest.mark.parametrize("bad", [42, [1.0, 2.0], {"wavelength": [1, 2]}, (np.arange(3.0), "flux")])
def test_unknown_clone_sources_raise_type_error(bad):
    with pytest.raises(TypeError):
        stellarnn.blase.clone(bad)


def test_unknown_observed_inputs_raise_clear_errors(cloned):
    with pytest.raises(UnsupportedSpectrumError, match="cannot transfer to a int"):
        stellarnn.blase.transfer(cloned, 7)
    with pytest.raises(TypeError, match="Clone or a LineModel"):
        stellarnn.blase.transfer("clone.pt", (np.arange(3.0),) * 3)
    with pytest.raises(ValueError, match="wavelength, flux, error"):
        stellarnn.blase.transfer(cloned, (np.arange(3.0), np.ones(3)))
