"""Tests of stellarnn.synthesis.populations: the names and edges of issue "Training data that carries the information"."""
from __future__ import annotations

import numpy as np
import pytest

from stellarnn.synthesis.populations import POPULATIONS, population_masks, population_of


def test_population_edges():
    teff = [4500, 4500, 5500, 5000, 3700, 7000, 3600, 4500, 4999.9, 3800]
    logg = [2.5, 2.5, 2.5, 4.5, 4.8, 4.0, 1.0, 4.5, 3.49, 3.5]
    m_h = [0.0, -1.0, -2.0, -0.5, 0.0, -2.0, 0.0, -1.5, -0.999, 0.0]
    assert list(population_of(teff, logg, m_h)) == ["giants", "metal_poor_giants", "warm_giants", "dwarfs",
                                                    "m_dwarfs", "hot", "", "", "giants", "m_dwarfs"]
    masks = population_masks(teff, logg, m_h)
    assert sum(m.astype(int) for m in masks.values()).max() == 1  # disjoint
    assert list(population_of([np.nan], [2.0], [0.0])) == [""]


@pytest.mark.parametrize("teff, logg, m_h, name", [
    # each edge from its closed side: Teff 3800, 5200, 6500 and 4000 K, log g 3.5, [M/H] -1
    (3800.0, 2.0, 0.0, "giants"), (3799.9, 2.0, 0.0, ""),
    (5199.9, 2.0, 0.0, "giants"), (5200.0, 2.0, 0.0, "warm_giants"),
    (4500.0, 2.0, -1.0, "metal_poor_giants"), (4500.0, 2.0, -0.9999, "giants"),
    (6499.9, 2.0, -2.0, "warm_giants"), (6500.0, 2.0, -2.0, "hot"),
    (4000.0, 3.5, 0.0, "dwarfs"), (3999.9, 3.5, 0.0, "m_dwarfs"), (4000.0, 3.4999, 0.0, "giants"),
    (6499.9, 4.5, -1.0, ""), (6500.0, 4.5, -1.0, "hot"), (3000.0, 5.0, -2.0, "m_dwarfs"),
    (9000.0, 1.0, 0.5, "hot"),
])
def test_every_edge_belongs_to_the_side_the_issue_gives_it(teff, logg, m_h, name):
    assert population_of(teff, logg, m_h)[()] == name


def test_a_grid_over_the_box_is_partitioned_without_overlap():
    t, g, m = np.meshgrid(np.arange(3000, 9001, 50.0), np.arange(0, 5.01, 0.1), np.arange(-2.5, 0.51, 0.1))
    masks = population_masks(t, g, m)
    assert set(masks) == set(POPULATIONS)
    count = sum(mask.astype(int) for mask in masks.values())
    assert count.max() == 1
    names = population_of(t, g, m)
    assert names.shape == t.shape
    for name in POPULATIONS:
        np.testing.assert_array_equal(names == name, masks[name])
    # stars in no population: giants cooler than 3800 K and metal-poor dwarfs (4000 <= Teff < 6500 K)
    none = count == 0
    assert np.all((t[none] < 3800) & (g[none] < 3.5) | (g[none] >= 3.5) & (m[none] <= -1 + 1e-9)
                  & (t[none] >= 4000) & (t[none] < 6500))
