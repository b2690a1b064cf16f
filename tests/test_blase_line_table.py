"""Tests for stellarnn.blase.line_table: export and read back in every format."""
import numpy as np
import pytest

from stellarnn.blase.line_finder import LineGuesses
from stellarnn.blase.line_model import LineModel
from stellarnn.blase.line_table import COLUMNS, read_line_table, write_line_table


@pytest.mark.parametrize("suffix", [".fits", ".csv", ".npz"])
def test_round_trip(tmp_path, suffix):
    g = LineGuesses(np.array([8000.123456, 8003.5]), np.array([0.01, 0.2]), np.array([0.05, 0.08]),
                    np.array([0.01, 0.1]), np.zeros(2), np.zeros(2))
    model = LineModel.from_guesses(g, profile="voigt")
    path = write_line_table(model, tmp_path / f"lines{suffix}")
    back = read_line_table(path)
    ref = model.line_table()
    for k in COLUMNS:
        np.testing.assert_allclose(back[k], ref[k], rtol=1e-9)
    assert np.all(back["depth"] > 0) and np.all(back["depth"] < 1)


def test_bad_suffix(tmp_path):
    with pytest.raises(ValueError, match="fits"):
        write_line_table(LineModel(1), tmp_path / "x.txt")
