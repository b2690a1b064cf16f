"""Tests for stellarnn.blase.plotting."""
import numpy as np
import pytest

from stellarnn.blase.plotting import plot_fit


def test_writes_png(tmp_path):
    wl = np.linspace(8000, 8010, 500)
    seg = (wl > 8005).astype(int)
    out = plot_fit(tmp_path / "f.png", wl, np.ones(500), np.ones(500) * 0.99, segment=seg,
                   extra={"telluric": np.ones(500)})
    assert out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="equal length"):
        plot_fit(tmp_path / "f.png", np.arange(3.0), np.ones(3), np.ones(4))
