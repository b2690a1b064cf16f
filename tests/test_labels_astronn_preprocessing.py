import numpy as np
import pytest
import torch

from stellarnn.labels.astronn.preprocessing import label_statistics, network_input, normalise_apstar, normalise_labels
from stellarnn.spectra import read_apstar


def test_real_apstar_normalisation(real_file):
    star = read_apstar(real_file("apstar-2M17335483"))
    flux = np.stack([star.combined.flux] + [v.flux for v in star.visits])
    ivar = np.stack([star.combined.ivar] + [v.ivar for v in star.visits])
    bm = np.stack([star.combined.bitmask] + [v.bitmask for v in star.visits])
    x = normalise_apstar(flux, ivar, bm)
    assert x.shape == (4, 7514) and torch.isfinite(x).all() and (x >= 0).all()
    assert abs(float(x.median()) - 1.0) < 0.1
    one = normalise_apstar(star.combined.flux, star.combined.ivar, star.combined.bitmask)
    assert torch.allclose(one[0], x[0])
    inp = network_input(x, x.mean(dim=0))
    assert inp.dtype == torch.float32 and abs(float(inp.mean())) < 1e-6


def test_label_statistics_ignore_missing():
    y = np.array([[1.0, -9999.0], [3.0, 2.0], [np.nan, 4.0], [5.0, -9999.0]])
    mean, std = label_statistics(y)
    assert mean == pytest.approx([3.0, 3.0]) and std == pytest.approx([2.0, np.sqrt(2.0)])
    z, e = normalise_labels(y, mean, std, np.full_like(y, 0.2))
    assert np.isnan(z[0, 1]) and np.isnan(e[0, 1]) and z[1, 0] == pytest.approx(0.0)
    assert e[1, 1] == pytest.approx(0.2 / np.sqrt(2))
    mean, std = label_statistics(np.full((3, 1), -9999.0))
    assert mean[0] == 0.0 and std[0] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError):
        network_input(np.ones((2, 100)), np.ones(7514))
    with pytest.raises(ValueError, match="NaN"):
        network_input(np.full((1, 7514), np.nan), np.ones(7514))
    with pytest.raises(ValueError):
        normalise_apstar(np.ones((1, 8575)), np.ones((1, 8574)))
    with pytest.raises(ValueError):
        label_statistics(np.ones(3))


def test_brackett_cores_are_set_to_one():
    from stellarnn.labels.astronn.preprocessing import mask_brackett_normalised

    x = np.full((3, 7514), 0.9)
    out = mask_brackett_normalised(x, np.array([4000.0, 6000.0, np.nan]))
    assert isinstance(out, np.ndarray) and (x == 0.9).all()  # a new array
    assert ((out == 1.0).sum(axis=1) == [691, 277, 691]).all()  # kept pixels of the cool / hot masks
    t = mask_brackett_normalised(torch.full((2, 7514), 0.5), None)
    assert isinstance(t, torch.Tensor) and ((t == 1.0).sum(dim=1) == 691).all()
    with pytest.raises(ValueError, match="7514"):
        mask_brackett_normalised(np.ones((1, 8575)), 5000.0)
    with pytest.raises(ValueError, match="2 values for 3 spectra"):
        mask_brackett_normalised(x, [5000.0, 6000.0])
