import numpy as np
import pytest

from stellarnn.labels.astronn.element_windows import BRANCH_PIXEL_COUNTS, element_window_indices


def test_windows_from_the_aspcap_mask_have_the_reference_sizes():
    windows = element_window_indices()
    assert tuple(len(w) for w in windows) == BRANCH_PIXEL_COUNTS
    assert all(w.min() >= 0 and w.max() < 7514 for w in windows)


def test_bad_masks():
    with pytest.raises(ValueError, match="shape"):
        element_window_indices(np.zeros(100, dtype=np.int32))
    with pytest.raises(ValueError, match="differ"):
        element_window_indices(np.zeros(7514, dtype=np.int32))
