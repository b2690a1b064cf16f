"""Tests of stellarnn.synthesis.information: Cramér-Rao bounds from a model's Jacobian."""
from __future__ import annotations

import numpy as np
import torch

from stellarnn.spectra.apogee_grid import kept_pixel_index
from stellarnn.synthesis.emulator import PayneEmulator
from stellarnn.synthesis.information import continuum_basis, emulator_bounds, fisher_bounds, model_jacobian


def _emulator(n_labels=4, seed=0):
    torch.manual_seed(seed)
    emu = PayneEmulator(n_labels, 8575, hidden=(16,), n_continuum=0)
    emu.label_min.copy_(torch.tensor([3500.0, 0.0, -2.5, 0.5][:n_labels]))
    emu.label_max.copy_(torch.tensor([8000.0, 5.0, 0.5, 2.5][:n_labels]))
    return emu.eval()


def test_two_parameter_bounds_match_the_closed_form():
    rng = np.random.default_rng(1)
    jac = rng.normal(size=(1, 500, 2))
    jac[0, :, 1] += 0.6 * jac[0, :, 0]  # correlated parameters: the marginal bound exceeds 1/sqrt(F_kk)
    sigma = 0.01
    b = fisher_bounds(jac, sigma, ["a", "b"])
    f = jac[0].T @ jac[0] / sigma ** 2
    det = f[0, 0] * f[1, 1] - f[0, 1] ** 2
    np.testing.assert_allclose(b.sigma[0], [np.sqrt(f[1, 1] / det), np.sqrt(f[0, 0] / det)], rtol=1e-10)
    assert b.sigma[0, 0] > 1 / np.sqrt(f[0, 0]) * 1.05
    # halving the noise halves the bound
    np.testing.assert_allclose(fisher_bounds(jac, sigma / 2, ["a", "b"]).sigma, b.sigma / 2, rtol=1e-10)


def test_a_parameter_the_data_cannot_see_has_an_infinite_bound():
    rng = np.random.default_rng(2)
    jac = np.concatenate([rng.normal(size=(1, 300, 2)), np.zeros((1, 300, 1))], axis=2)
    b = fisher_bounds(jac, 0.01, ["a", "b", "blind"])
    assert np.isinf(b.column("blind")[0])
    assert np.all(np.isfinite(b.sigma[0, :2]))


def test_jacobian_matches_finite_differences_including_rv():
    emu = _emulator()
    labels = np.array([[4800.0, 2.5, -0.3, 1.4], [6000.0, 4.2, 0.1, 1.1]])
    pix = kept_pixel_index()[::50]
    flux, jac = model_jacobian(emu, labels, pix)
    assert jac.shape == (2, pix.size, 5)
    steps = [1.0, 1e-3, 1e-3, 1e-3]
    with torch.no_grad():
        for k, h in enumerate(steps):
            up, down = labels.copy(), labels.copy()
            up[:, k] += h
            down[:, k] -= h
            fd = (emu(torch.as_tensor(up, dtype=torch.float32)).double()
                  - emu(torch.as_tensor(down, dtype=torch.float32)).double()).numpy()[:, pix] / (2 * h)
            np.testing.assert_allclose(jac[:, :, k], fd, atol=2e-3 * np.abs(fd).max() + 1e-6)
        np.testing.assert_allclose(flux, emu(torch.as_tensor(labels, dtype=torch.float32)).numpy()[:, pix], rtol=1e-6)
    assert np.abs(jac[:, :, 4]).max() > 0  # the spectrum moves with RV


def test_free_continuum_and_model_error_only_loosen_the_bounds():
    emu = _emulator(seed=3)
    labels = np.array([[4700.0, 2.4, -0.2, 1.5]])
    names = ["teff", "logg", "m_h", "v_micro"]
    plain = emulator_bounds(emu, labels, names, 100.0)
    cont = emulator_bounds(emu, labels, names, 100.0, continuum_degree=2)
    noisy = emulator_bounds(emu, labels, names, 100.0, model_error=0.01)
    assert cont.sigma.shape[1] == plain.sigma.shape[1] + 9
    assert np.all(cont.sigma[:, :5] >= plain.sigma * (1 - 1e-9))
    # σ² doubles everywhere with a model error equal to the noise: every bound grows by sqrt(2)
    np.testing.assert_allclose(noisy.sigma, plain.sigma * np.sqrt(2), rtol=1e-6)
    # S/N 200 halves the bounds
    np.testing.assert_allclose(emulator_bounds(emu, labels, names, 200.0).sigma, plain.sigma / 2, rtol=1e-6)


def test_continuum_basis_is_per_chip():
    pix = kept_pixel_index()
    basis = continuum_basis(pix, 2)
    assert basis.shape == (pix.size, 9)
    blue = pix < 3274
    np.testing.assert_array_equal(basis[blue, 0], 1.0)
    np.testing.assert_array_equal(basis[~blue, 0], 0.0)
    assert np.abs(basis[blue, 1]).max() == 1.0


def test_brackett_masked_bounds_are_the_bounds_without_those_pixels():
    """The bound of a network that never sees the Brackett cores: the masked pixels carry no information, so
    the bound equals the one on the remaining pixels, the wide windows count for a cool star only, and it is
    never below the bound with every pixel."""
    from stellarnn.spectra.apogee_grid import apogee_wavelength
    from stellarnn.spectra.brackett_mask import brackett_mask

    emu = _emulator()
    labels = np.array([[4500.0, 2.0, 0.0, 1.5], [6500.0, 4.2, -0.3, 1.2]])
    names = ["teff", "logg", "m_h", "v_micro"]
    pix = kept_pixel_index()
    masked = emulator_bounds(emu, labels, names, 100.0, brackett_masked=True)
    full = emulator_bounds(emu, labels, names, 100.0)
    for k, teff in enumerate(labels[:, 0]):
        keep = pix[~brackett_mask(apogee_wavelength()[pix], teff)]
        own = emulator_bounds(emu, labels[k:k + 1], names, 100.0, pixels=keep)
        np.testing.assert_allclose(masked.sigma[k], own.sigma[0], rtol=1e-5)  # float32 Jacobians
    assert np.all(masked.sigma >= full.sigma * (1 - 1e-12))
    cool, hot = (brackett_mask(apogee_wavelength()[pix], t).sum() for t in labels[:, 0])
    assert cool > hot > 0  # the wide windows below 5500 K
