import numpy as np
import pytest
import torch

from stellarnn.spectra import Spectrum, SpectrumBatch


def test_spectrum_error_and_snr():
    s = Spectrum(np.arange(4.0), np.full(4, 10.0), np.array([1.0, 4.0, 0.0, 100.0]))
    np.testing.assert_allclose(s.error, [1.0, 0.5, np.inf, 0.1])
    assert s.snr == pytest.approx(20.0)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="flux"):
        Spectrum(np.arange(4.0), np.ones(3), np.ones(4))


def test_batch_round_trip_and_grid_check():
    a = Spectrum(np.arange(5.0), np.ones(5), np.ones(5), meta={"id": "a"})
    b = Spectrum(np.arange(5.0), 2 * np.ones(5), np.ones(5), meta={"id": "b"})
    batch = SpectrumBatch.from_spectra([a, b])
    assert batch.flux.shape == (2, 5) and batch.flux.dtype == torch.float64
    assert batch[1].meta["id"] == "b" and np.all(batch[1].flux == 2)
    with pytest.raises(ValueError, match="share one wavelength grid"):
        SpectrumBatch.from_spectra([a, Spectrum(np.arange(5.0) + 1, np.ones(5), np.ones(5))])
    with pytest.raises(ValueError, match="no spectra"):
        SpectrumBatch.from_spectra([])
