import numpy as np
import pytest
import torch

from stellarnn.spectra.apogee_grid import APOGEE_CHIP_SLICES
from stellarnn.synthesis.emulator import PayneEmulator
from stellarnn.synthesis.fitter import best_template_rv, cross_correlation_rv, doppler_shift, fit_spectra


@pytest.fixture(scope="module")
def emulator():
    torch.manual_seed(3)
    m = PayneEmulator(n_labels=4, n_pixels=1500, hidden=(32, 32), n_continuum=0)
    with torch.no_grad():
        m.flux_net[-1].weight.mul_(0.3)
        m.label_min.copy_(torch.tensor([4000.0, 0.0, -2.0, 0.5]))
        m.label_max.copy_(torch.tensor([6000.0, 5.0, 0.5, 2.5]))
    return m.eval()


def test_doppler_shift_moves_a_line():
    n = 400
    x = torch.arange(n, dtype=torch.float64)
    line = 1 - 0.5 * torch.exp(-0.5 * ((x - 200) / 3) ** 2)
    v = 30.0  # km/s -> log10(1 + v/c) / 6e-6 = 14.49 pixels redward
    shifted = doppler_shift(line[None], torch.tensor([v], dtype=torch.float64))[0]
    expected = np.log10(1 + v / 299792.458) / 6e-6
    assert abs(float(x[torch.argmin(shifted)]) - 200 - expected) < 0.6
    torch.testing.assert_close(doppler_shift(line[None], torch.zeros(1, dtype=torch.float64))[0], line)


def test_cross_correlation_rv_finds_the_shift():
    n = 3000
    x = torch.arange(n, dtype=torch.float64)
    centres = torch.tensor([300.0, 900.0, 1500.0, 2100.0, 2600.0], dtype=torch.float64)
    template = 1 - 0.4 * torch.exp(-0.5 * ((x[None, :] - centres[:, None]) / 2.5) ** 2).sum(0)
    rv = torch.tensor([-180.0, -12.3, 0.0, 47.9, 350.0], dtype=torch.float64)
    observed = doppler_shift(template.expand(5, -1), rv)
    est = cross_correlation_rv(template.expand(5, -1), observed, torch.ones_like(observed))
    # sub-pixel parabola: better than a third of a pixel (4.1 km/s per pixel)
    assert torch.all((est - rv).abs() < 1.4), est


def test_best_template_rv_picks_the_template_that_matches():
    # two unrelated "stars": lines of template B at other positions than A's.  Against A alone the cross-correlation
    # peaks wherever a B line happens to overlap an A line; the best of both finds the true shift.
    n = 3000
    x = torch.arange(n, dtype=torch.float64)
    a_lines = torch.tensor([400.0, 1000.0, 1800.0, 2500.0], dtype=torch.float64)
    b_lines = torch.linspace(150.0, 2850.0, 40, dtype=torch.float64) + 37.0
    a = 1 - 0.4 * torch.exp(-0.5 * ((x[None, :] - a_lines[:, None]) / 2.5) ** 2).sum(0)
    b = 1 - 0.3 * torch.exp(-0.5 * ((x[None, :] - b_lines[:, None]) / 2.0) ** 2).sum(0)
    rv = torch.tensor([-60.0, 25.0, 90.0], dtype=torch.float64)
    observed = torch.cat([doppler_shift(b.expand(3, -1), rv), doppler_shift(a.expand(3, -1), rv)])
    truth = torch.cat([rv, rv])
    est = best_template_rv(torch.stack([a, b]), observed, torch.ones_like(observed))
    assert torch.all((est - truth).abs() < 1.4), est
    only_a = cross_correlation_rv(a.expand(6, -1), observed, torch.ones_like(observed))
    assert torch.any((only_a[:3] - rv).abs() > 20), only_a  # the single wrong template fails where the pair succeeds


def test_recovers_labels_and_rv_within_errors(emulator):
    rng = np.random.default_rng(0)
    truth = np.column_stack([rng.uniform(4300, 5700, 6), rng.uniform(0.5, 4.5, 6), rng.uniform(-1.8, 0.3, 6),
                             rng.uniform(0.7, 2.3, 6)])
    rv = rng.uniform(-40, 40, 6)
    with torch.no_grad():
        clean = doppler_shift(emulator(torch.as_tensor(truth, dtype=torch.float32)),
                              torch.as_tensor(rv, dtype=torch.float32)).numpy()
    sigma = 0.01
    flux = clean + sigma * rng.standard_normal(clean.shape)
    ivar = np.full(flux.shape, sigma ** -2)
    ivar[:, :20] = 0  # pixels without information are ignored
    res = fit_spectra(emulator, flux, ivar)
    pull = (res.labels - truth) / res.label_errors
    assert np.all(np.abs(pull) < 5), pull
    assert np.all(np.abs(res.rv - rv) < 5 * res.rv_error + 0.05)
    red = res.chi2 / res.dof
    assert np.all((red > 0.85) & (red < 1.15)), red


def test_bad_input(emulator):
    with pytest.raises(ValueError, match="no usable pixel"):
        fit_spectra(emulator, np.ones((2, 1500)), np.zeros((2, 1500)))
    with pytest.raises(ValueError, match="must both be"):
        fit_spectra(emulator, np.ones((2, 1500)), np.ones((2, 1400)))


def test_fits_a_per_chip_continuum_with_the_labels():
    torch.manual_seed(5)
    m = PayneEmulator(n_labels=3, n_pixels=8575, hidden=(16, 16), n_continuum=0)
    with torch.no_grad():
        m.flux_net[-1].weight.mul_(0.3)
        m.label_min.copy_(torch.tensor([4000.0, 0.0, -2.0]))
        m.label_max.copy_(torch.tensor([6000.0, 5.0, 0.5]))
    m.eval()
    truth = np.array([[4800.0, 2.5, -0.4], [5400.0, 4.0, 0.1]])
    with torch.no_grad():
        clean = m(torch.as_tensor(truth, dtype=torch.float32)).numpy()
    x = np.linspace(-1, 1, 8575)
    tilt = 1.0 + np.array([[0.05], [-0.08]]) * x[None] + 0.03 * (2 * x[None] ** 2 - 1)
    sigma = 0.01
    flux = clean * tilt + sigma * np.random.default_rng(1).standard_normal(clean.shape)
    ivar = np.zeros(flux.shape)
    for sl in APOGEE_CHIP_SLICES:  # as for real spectra: no information outside the chips
        ivar[:, sl] = sigma ** -2
    plain = fit_spectra(m, flux, ivar, fit_rv=False)
    corrected = fit_spectra(m, flux, ivar, fit_rv=False, continuum_degree=2)
    red = corrected.chi2 / corrected.dof
    assert np.all((red > 0.9) & (red < 1.1)), red
    assert np.all(plain.chi2 > 1.5 * corrected.chi2)
    pull = (corrected.labels - truth) / corrected.label_errors
    assert np.all(np.abs(pull) < 5), pull


def test_model_error_and_abundance_starts(emulator):
    from stellarnn.synthesis.fitter import chi2_at_labels

    rng = np.random.default_rng(4)
    truth = np.column_stack([rng.uniform(4300, 5700, 5), rng.uniform(0.5, 4.5, 5), rng.uniform(-1.8, 0.3, 5),
                             rng.uniform(0.7, 2.3, 5)])
    with torch.no_grad():
        clean = emulator(torch.as_tensor(truth, dtype=torch.float32)).numpy()
    sigma = 0.01
    flux = clean + sigma * rng.standard_normal(clean.shape)
    ivar = np.full(flux.shape, sigma ** -2)
    # chi^2 at the truth is the noise's: about n_pixels; a noiseless spectrum gives 0
    assert np.all(np.abs(chi2_at_labels(emulator, flux, ivar, truth) / flux.shape[1] - 1) < 0.15)
    assert np.allclose(chi2_at_labels(emulator, clean, ivar, truth), 0, atol=1e-3)
    plain = fit_spectra(emulator, flux, ivar, fit_rv=False, n_abundance_starts=0)
    multi = fit_spectra(emulator, flux, ivar, fit_rv=False, n_abundance_starts=3)
    assert np.all(multi.chi2 <= plain.chi2 + 1e-3)  # more starts never end worse
    assert np.all(multi.chi2 <= chi2_at_labels(emulator, flux, ivar, truth) + 1e-2)  # the global minimum
    # a model error equal to the noise doubles each pixel's variance: formal errors grow by sqrt(2)
    wider = fit_spectra(emulator, flux, ivar, fit_rv=False, model_error=sigma)
    np.testing.assert_allclose(np.median(wider.label_errors / multi.label_errors, axis=0), np.sqrt(2), rtol=0.1)
    with pytest.raises(ValueError, match="model_error"):
        fit_spectra(emulator, flux, ivar, model_error=-1.0)
