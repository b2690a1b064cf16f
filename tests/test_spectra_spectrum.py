import numpy as np
import pytest

from stellarnn.spectra import Spectrum


def test_spectrum_error_and_snr():
    s = Spectrum(np.arange(4.0), np.full(4, 10.0), np.array([1.0, 4.0, 0.0, 100.0]))
    np.testing.assert_allclose(s.error, [1.0, 0.5, np.inf, 0.1])
    assert s.snr == pytest.approx(20.0)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="flux"):
        Spectrum(np.arange(4.0), np.ones(3), np.ones(4))
