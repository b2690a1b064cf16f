import numpy as np
import pytest
import torch

from stellarnn.spectra import (APOGEE_CHIP_SLICES, apogee_continuum, kept_pixel_index, load_dr17_contmask,
                               read_apstar)


@pytest.fixture(scope="module")
def contmask():
    return load_dr17_contmask()


def test_contmask_has_532_pixels(contmask):
    assert contmask.shape == (7514,) and contmask.sum() == 532


def test_real_spectra_normalise_to_one(real_file, contmask):
    for name in ("apstar-2M17335483", "apstar-2M19485057"):
        a = read_apstar(real_file(name))
        s = a.combined
        r = apogee_continuum(s.flux, s.error, s.bitmask)
        assert r.flux.shape == (1, 7514)
        med = float(torch.median(r.flux[0, torch.as_tensor(contmask)]))
        assert abs(med - 1) < 0.01, med
        assert torch.isfinite(r.flux).all() and torch.isfinite(r.error).all()
        assert not r.chip_failed.any()


def test_recovers_known_continuum(contmask):
    x = np.arange(8575)
    cont = 1000 + 0.05 * x - 3e-6 * (x - 4000) ** 2
    lines = np.ones(8575)
    lines[~np.isin(np.arange(8575), kept_pixel_index()[contmask])] = 0.8  # absorption off the continuum pixels
    flux = cont * lines
    err = np.full(8575, 5.0)
    r = apogee_continuum(flux, err, contmask=contmask)
    idx = kept_pixel_index()
    # degree-2 Chebyshev per chip reproduces a quadratic continuum exactly
    np.testing.assert_allclose(r.continuum[0].numpy(), cont[idx], rtol=1e-9)
    np.testing.assert_allclose(r.error[0].numpy(), err[idx] / cont[idx], rtol=1e-9)
    np.testing.assert_allclose(r.flux[0].numpy()[contmask], 1.0, rtol=1e-9)


def test_batch_equals_single(real_file):
    a = read_apstar(real_file("apstar-2M17335483"))
    specs = [a.combined] + a.visits
    f = np.stack([s.flux for s in specs]); e = np.stack([s.error for s in specs]); b = np.stack([s.bitmask for s in specs])
    batch = apogee_continuum(f, e, b)
    for i in range(len(specs)):
        single = apogee_continuum(f[i], e[i], b[i])
        torch.testing.assert_close(batch.flux[i], single.flux[0])


def test_no_division_by_zero_and_flags(contmask):
    rng = np.random.default_rng(0)
    flux = 100 + rng.standard_normal((3, 8575))
    err = np.ones((3, 8575))
    flux[0, APOGEE_CHIP_SLICES[1]] = np.nan  # whole green chip unusable
    err[1, :] = 0.0  # zero error everywhere: nothing to fit, never divide
    flux[2, 300] = -50.0  # negative flux -> 0
    flux[2, 301] = np.inf  # inf -> 1
    mask = np.zeros((3, 8575), dtype=np.int64)
    mask[2, 400] = 1 << 1  # CRPIX -> 1
    mask[2, 401] = 1 << 13  # SIG_TELLURIC is not in the bad set: stays
    r = apogee_continuum(flux, err, mask, contmask=contmask)
    assert torch.isfinite(r.flux).all() and torch.isfinite(r.error).all()
    assert r.chip_failed[0].tolist() == [False, True, False]
    assert r.chip_failed[1].all() and r.not_normalised[1].all()
    assert torch.all(r.flux[1] == 1) and torch.all(r.error[1] == 1)
    n_blue = APOGEE_CHIP_SLICES[0].stop - APOGEE_CHIP_SLICES[0].start
    green = slice(n_blue, n_blue + APOGEE_CHIP_SLICES[1].stop - APOGEE_CHIP_SLICES[1].start)
    assert torch.all(r.flux[0, green] == 1)
    j = lambda p: p - 246  # blue chip kept pixels start at 246
    assert r.flux[2, j(300)] == 0.0
    assert r.flux[2, j(301)] == 1.0 and r.error[2, j(301)] == 1.0
    assert r.flux[2, j(400)] == 1.0 and r.error[2, j(400)] == 1.0
    assert r.flux[2, j(401)] != 1.0


def test_bad_shapes(contmask):
    with pytest.raises(ValueError, match="8575"):
        apogee_continuum(np.ones((2, 100)), np.ones((2, 100)), contmask=contmask)
    with pytest.raises(ValueError, match="error shape"):
        apogee_continuum(np.ones((2, 8575)), np.ones((3, 8575)), contmask=contmask)
