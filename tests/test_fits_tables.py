"""Tests of stellarnn.fits_tables: the one FITS table writer (units, descriptions, missing values)."""
import numpy as np
import pytest
from astropy.io import fits

from stellarnn.fits_tables import write_fits_table


def test_units_descriptions_header_and_missing_values(tmp_path):
    columns = {"teff": np.array([4800.0, np.nan]), "m_h": [0.1, -0.3],
               "n_visits": np.ma.MaskedArray([3, 0], mask=[False, True]), "note": np.array(["", ""], dtype=str)}
    path = write_fits_table(columns, tmp_path / "t.fits", units={"teff": "K", "m_h": "dex", "note": ""},
                            descriptions={"teff": "effective temperature", "m_h": "metallicity"},
                            name="astronn", header={"PVERSION": ("v1", "model version")})
    assert path == tmp_path / "t.fits"
    with fits.open(path) as hdul:
        h, data = hdul[1].header, hdul[1].data
        assert hdul[1].name == "ASTRONN" and h["PVERSION"] == "v1" and h.comments["PVERSION"] == "model version"
        assert (h["TUNIT1"], h["TCOMM1"]) == ("K", "effective temperature")
        assert (h["TUNIT2"], h["TCOMM2"]) == ("dex", "metallicity")  # written as given, not FITS-standard
        assert "TUNIT4" not in h and "TCOMM3" not in h
        assert np.isnan(data["teff"][1]) and data["m_h"].tolist() == [0.1, -0.3]
        assert data["n_visits"][1] == h["TNULL3"]  # the masked integer is the column's null
        assert data["note"].tolist() == ["", ""]


def test_unknown_column_in_units_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"does not have: \['tef'\]"):
        write_fits_table({"teff": [5000.0]}, tmp_path / "t.fits", units={"tef": "K"})
    assert not (tmp_path / "t.fits").exists()
