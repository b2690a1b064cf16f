"""Tests of stellarnn.spectra.errors: what a refused spectrum file says."""
from __future__ import annotations

import pytest

from stellarnn.spectra import SpectrumFileError


def test_the_message_names_the_file_and_the_hdu():
    e = SpectrumFileError("/data/s.fits", "keyword CRVAL1 is not a number", hdu=1)
    assert str(e) == "/data/s.fits [HDU 1]: keyword CRVAL1 is not a number"
    assert e.path == "/data/s.fits" and e.hdu == 1
    assert str(SpectrumFileError("s.csv", "no rows")) == "s.csv: no rows"
    assert str(SpectrumFileError("s.fits", "x", hdu="FLUX")) == "s.fits [HDU FLUX]: x"


def test_it_is_a_value_error_so_callers_that_catch_bad_values_catch_it():
    with pytest.raises(ValueError, match=r"s.fits \[HDU 0\]"):
        raise SpectrumFileError("s.fits", "bad", hdu=0)
