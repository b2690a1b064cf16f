import numpy as np
import pytest
import torch

from stellarnn.labels.apogeenet.preprocessing import (clean_flux_and_error, continuum_normalise_full_grid, log_scale,
                                                      preprocess, row_quantile)
from stellarnn.spectra import kept_pixel_index, read_apstar


def test_error_clipping_and_nan_handling():
    flux = np.array([[1.0, np.nan, 2.0, 3.0, 4.0]])
    ivar = np.array([[1.0, 1.0, 0.0, 1e-4, 4.0]])  # errors 1, 1, (none), 100, 0.5
    f, e = clean_flux_and_error(flux, ivar)
    assert f[0, 1] == 0.0
    median = 1.0  # median of the finite errors [1, 1, 100, 0.5]
    assert e[0].tolist() == pytest.approx([1.0, 1.0, 5 * median, 5 * median, 0.5])


def test_log_scale_clips_each_spectrum_at_its_own_percentile():
    rng = np.random.default_rng(0)
    a = rng.uniform(1, 2, 1000)
    a[0] = 1e6  # outlier
    b = 1000 * rng.uniform(1, 2, 1000)
    x = log_scale(torch.as_tensor(np.stack([a, b])))
    for row, raw in zip(x, (a, b)):
        ceiling = np.quantile(np.log(raw), 0.95) + 1
        assert row.max().item() == pytest.approx(min(np.log(raw).max(), ceiling))
    assert x[0, 0].item() == pytest.approx(np.quantile(np.log(a), 0.95) + 1)
    # flooring at 1e-6 before the log
    assert log_scale(torch.tensor([[-5.0, 1.0, 1.0]]))[0, 0].item() == pytest.approx(np.log(1e-6))


def test_bad_inputs():
    with pytest.raises(ValueError, match="no pixel"):
        clean_flux_and_error(np.ones((1, 5)), np.zeros((1, 5)))
    with pytest.raises(ValueError, match="shape"):
        clean_flux_and_error(np.ones((1, 5)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="input_flux"):
        preprocess(np.ones((1, 5)), np.ones((1, 5)), input_flux="other")


def test_real_apstar(real_file):
    star = read_apstar(real_file("apstar-2M17335483"))
    f, e = preprocess(star.combined.flux, star.combined.ivar)
    assert f.shape == e.shape == (1, 8575)
    assert torch.isfinite(f).all() and torch.isfinite(e).all() and (e > 0).all()
    x = log_scale(f)
    assert torch.isfinite(x).all()
    # chip gaps (NaN in the file) -> flux 0 -> log(1e-6); errors there are 5 x median
    gap = star.combined.ivar == 0
    assert gap.any()
    assert torch.allclose(e[0, torch.as_tensor(gap)], e[0, torch.as_tensor(gap)].max())
    nf, niv = continuum_normalise_full_grid(star.combined.flux, star.combined.ivar, star.combined.bitmask)
    kept = kept_pixel_index()
    assert abs(float(torch.median(nf[0, kept])) - 1.0) < 0.1
    assert (nf[0, :246] == 1).all() and (niv[0, :246] == 0).all()


def test_row_quantile_matches_numpy():
    x = torch.randn(5, 8575, dtype=torch.float64)
    assert np.allclose(row_quantile(x, 0.95).numpy()[:, 0], np.quantile(x.numpy(), 0.95, axis=1))
    assert np.allclose(row_quantile(x[:, :11], 0.5).numpy()[:, 0], np.median(x[:, :11].numpy(), axis=1))


def test_brackett_masked_pixels_carry_no_flux_information(real_file):
    from stellarnn.spectra import apogee_wavelength
    from stellarnn.spectra.brackett_mask import brackett_mask, brackett_wavelength_vacuum

    star = read_apstar(real_file("apstar-2M19485057")).combined
    wl = apogee_wavelength()
    line = 1 - 0.5 * (np.abs(wl - brackett_wavelength_vacuum(11)) < 2.5)  # a fake deep Br 11 core
    flux = np.stack([star.flux, star.flux * line])
    ivar = np.stack([star.ivar, star.ivar])
    core = brackett_mask(wl, 6000.0)
    for kind in ("raw", "continuum_normalised"):
        f0, e0 = preprocess(flux, ivar, None, kind)
        assert not torch.equal(f0[0], f0[1])  # without the mask the line is seen
        f, e = preprocess(flux, ivar, None, kind, masked=core)
        torch.testing.assert_close(f[0], f[1])  # with it both spectra are the same input
        torch.testing.assert_close(e[0], e[1])
        sel = torch.as_tensor(core & (ivar[0] > 0))
        # masked pixels get the no-information error of step 2 (5 x the median error)
        assert torch.allclose(e[0, sel], e[0, sel].max()) and e[0, sel].max() >= e0[0, sel].max()
        torch.testing.assert_close(f[:, ~torch.as_tensor(core)], f0[:, ~torch.as_tensor(core)])  # nothing else moves
    f, _ = preprocess(flux, ivar, None, "continuum_normalised", masked=core)
    assert torch.all(f[:, torch.as_tensor(core)] == 1.0)  # normalised input: the continuum is 1
    f, _ = preprocess(flux, ivar, None, "raw", masked=core)
    k = np.flatnonzero(core)[13]  # raw input: the DR17 continuum, near the neighbouring flux level
    assert 0.9 < float(f[0, k]) / np.median(star.flux[k - 60:k - 20]) < 1.1
