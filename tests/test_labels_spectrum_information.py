import numpy as np
import pytest

from stellarnn.labels.spectrum_information import (FLAG_FEATURELESS, FLAG_LOW_SNR, FLAG_MISSING_CHIP,
                                                   assess_information, error_array_snr)
from stellarnn.spectra import read_apstar


@pytest.fixture(scope="module")
def real(real_file):
    a = read_apstar(real_file("apstar-2M17335483"))
    b = read_apstar(real_file("apstar-2M19485057"))
    return [a.combined, *a.visits, b.combined]


def _assess(pairs):
    return assess_information(np.stack([f for f, _ in pairs]), np.stack([iv for _, iv in pairs]))


def test_real_apstar_spectra_pass(real):
    r = assess_information(np.stack([s.flux for s in real]), np.stack([s.ivar for s in real]),
                           np.stack([s.bitmask for s in real]))
    assert (r.flags == 0).all() and all(reason == "" for reason in r.reasons)
    assert (r.good_fraction > 0.9).all()
    assert (r.snr_robust > 20).all() and (r.line_contrast > 2).all()
    assert set(r.columns(0)) == {"good_fraction_blue", "good_fraction_green", "good_fraction_red", "snr_error",
                                 "snr_robust", "line_contrast"}
    assert np.allclose(r.snr_error, [np.median(s.flux * np.sqrt(s.ivar)) for s in real], rtol=0.1)
    np.testing.assert_array_equal(error_array_snr(np.stack([s.flux for s in real]), np.stack([s.ivar for s in real]),
                                                  np.stack([s.bitmask for s in real])), r.snr_error)
    assert r.continuum.flux.shape == (len(real), 7514)


def test_each_kind_of_spectrum_without_information_gets_its_bit(real):
    s = real[-1]
    rng = np.random.default_rng(0)
    one = np.ones(8575)
    blue = np.arange(8575) < 3300
    cases = {
        "zero": ((0 * one, one), FLAG_MISSING_CHIP | FLAG_LOW_SNR | FLAG_FEATURELESS),
        "constant": ((1000 * one, one * 1e-4), FLAG_FEATURELESS),
        "negative": ((-s.flux, s.ivar), FLAG_MISSING_CHIP | FLAG_LOW_SNR | FLAG_FEATURELESS),
        "zero_mean_noise": ((rng.normal(0, 1, 8575), one), FLAG_MISSING_CHIP | FLAG_LOW_SNR),
        "errors_1e30": ((s.flux, one * 1e-60), FLAG_MISSING_CHIP | FLAG_LOW_SNR | FLAG_FEATURELESS),
        "missing_blue_chip": ((np.where(blue, 0, s.flux), np.where(blue, 0, s.ivar)), FLAG_MISSING_CHIP),
        "blue_chip_zero_flux": ((np.where(blue, 0, s.flux), s.ivar), FLAG_MISSING_CHIP),
    }
    r = _assess([pair for pair, _ in cases.values()])
    for k, (name, (_, expected)) in enumerate(cases.items()):
        assert r.flags[k] & expected == expected, (name, r.flags[k], r.reasons[k])
        assert r.reasons[k].startswith("no stellar information"), name
    assert r.good_fraction[5, 0] == 0 and r.good_fraction[5, 1] > 0.9


def test_robust_snr_is_not_fooled_by_lying_errors():
    rng = np.random.default_rng(1)
    flux = 1000 + 20 * rng.standard_normal((3, 8575))  # S/N 50
    honest, lying, huge = np.full(8575, 1 / 20 ** 2), np.full(8575, 1.0), np.full(8575, 1e-60)
    r = _assess([(flux[0], honest), (flux[1], lying), (flux[2], huge)])
    assert r.snr_robust[0] == pytest.approx(50, rel=0.1)
    assert r.snr_error[1] == pytest.approx(1000, rel=0.05) and r.snr_robust[1] == pytest.approx(50, rel=0.1)
    assert r.snr_robust[2] < 1e-20 and r.flags[2] & FLAG_LOW_SNR
    # S/N 2 fails, S/N 50 noise passes the S/N test
    low = 1000 + 500 * rng.standard_normal(8575)
    r2 = _assess([(low, np.full(8575, 1 / 500 ** 2))])
    assert r2.snr_robust[0] == pytest.approx(2, rel=0.15) and r2.flags[0] & FLAG_LOW_SNR
    assert not r.flags[0] & FLAG_LOW_SNR


def test_line_contrast_separates_noise_from_lines(real):
    rng = np.random.default_rng(2)
    s = real[-1]
    noise = 1000 + 10 * rng.standard_normal(8575)
    r = _assess([(noise, np.full(8575, 1e-2)), (np.full(8575, 5.0), np.full(8575, 1.0)), (s.flux, s.ivar)])
    assert r.line_contrast[0] == pytest.approx(1.0, abs=0.05)  # noise only: rms = noise
    assert r.line_contrast[1] == 0.0 and r.flags[1] & FLAG_FEATURELESS  # constant
    assert r.line_contrast[2] > 3  # a real K dwarf's lines
    assert not r.flags[0] & FLAG_FEATURELESS  # pure noise is caught after the network (line_snr), not here


def test_wrong_shapes_raise():
    with pytest.raises(ValueError, match="8575"):
        assess_information(np.ones((1, 100)), np.ones((1, 100)))
    with pytest.raises(ValueError, match="differs"):
        assess_information(np.ones((1, 8575)), np.ones((2, 8575)))
