import numpy as np
import pytest

from stellarnn.train import split_by_block, validation_split


def test_validation_split_is_a_deterministic_partition():
    tr, va = validation_split(101, 0.1, seed=7)
    assert len(va) == 10 and len(tr) == 91
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(101))
    tr2, va2 = validation_split(101, 0.1, seed=7)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    _, va3 = validation_split(101, 0.1, seed=8)
    assert not np.array_equal(va, va3)


def test_validation_split_matches_the_seeded_permutation():
    # the split the label trainings and `stellarnn emulator train` used before the helper existed:
    # validation = the first round(fraction * n) rows of default_rng(seed).permutation(n)
    order = np.random.default_rng(3).permutation(50)
    tr, va = validation_split(50, 0.2, seed=3)
    assert np.array_equal(va, order[:10]) and np.array_equal(tr, order[10:])


def test_validation_split_keeps_one_row_on_each_side():
    tr, va = validation_split(2, 0.0, seed=0)
    assert len(tr) == 1 and len(va) == 1
    tr, va = validation_split(3, 0.9, seed=0)
    assert len(tr) == 1 and len(va) == 2


@pytest.mark.parametrize("n, fraction", [(1, 0.1), (10, 1.0), (10, -0.1)])
def test_validation_split_refuses_bad_arguments(n, fraction):
    with pytest.raises(ValueError):
        validation_split(n, fraction, seed=0)


def test_split_by_block_renumbers_within_each_block():
    first, second = split_by_block(np.array([5, 0, 7, 2, 3]), n_first=3)
    assert first.tolist() == [0, 2] and second.tolist() == [2, 4, 0]
