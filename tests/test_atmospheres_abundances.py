"""Tests of stellarnn.atmospheres.abundances: the GS98 mixture of the ATLAS9 grid, its mean mass per nucleus and
the 99 abundance cards written into model files."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.abundances import (SOLAR_HEAVY_GS98, SOLAR_MIXTURE_GS98, kurucz_abundances,
                                              mean_mass_per_nucleus)
from stellarnn.atmospheres.kurucz import read_kurucz_abundances

SR, BA = 37, 55  # 0-based indices of Sr, Ba


def test_mean_mass_of_the_solar_mixture():
    # GS98 mass fractions (X, Y, Z) ~ (0.735, 0.248, 0.017), metals ~15 u per nucleus on average:
    # mu per nucleus = 1 / (X/1.008 + Y/4.0026 + Z/15) = 1.262
    assert mean_mass_per_nucleus(0.0) == pytest.approx(1.262, abs=3e-3)
    assert mean_mass_per_nucleus(-5.0) == pytest.approx((1.008 + 0.0851 * 4.002602) / 1.0851, rel=1e-4)
    assert mean_mass_per_nucleus(1.0) > mean_mass_per_nucleus(0.0) > mean_mass_per_nucleus(-1.0)


def test_kurucz_abundance_cards_match_the_solar_deck():
    ab = kurucz_abundances(0.0)
    assert ab[0] == pytest.approx(0.9204, abs=5e-4) and ab[1] == pytest.approx(0.0783, abs=5e-4)
    assert ab[5] == pytest.approx(-3.52, abs=0.01) and ab[25] == pytest.approx(-4.54, abs=0.01)  # C, Fe


def test_full_abundance_table_matches_the_atlas9_solar_deck(real_file):
    deck = read_kurucz_abundances(real_file("kurucz-sun"))
    ours = kurucz_abundances(0.0)
    np.testing.assert_allclose(ours[2:], deck[2:], atol=0.006)  # every element, Li to Es (deck rounds to 0.01)
    assert ours[SR] > -10 and ours[BA] > -11 and ours[42] == -20.0  # Sr, Ba present; Tc absent


def test_scaling_changes_only_the_number_fractions_of_h_and_he():
    solar, poor = kurucz_abundances(0.0), kurucz_abundances(-2.0)
    np.testing.assert_array_equal(poor[2:], solar[2:])  # cards before ABUNDANCE SCALE: the scale carries [M/H]
    assert poor[0] > solar[0] and poor[1] > solar[1]      # fewer metals: H and He are a larger fraction
    assert poor[0] / poor[1] == pytest.approx(solar[0] / solar[1])
    metals = solar[2:][solar[2:] > -20]
    assert solar[0] + solar[1] + np.sum(10 ** metals) == pytest.approx(1.0, abs=1e-6)  # number fractions at [M/H] = 0


def test_tables_are_ordered_and_disjoint():
    z_light = [z for _, z, *_ in SOLAR_MIXTURE_GS98]
    z_heavy = [z for _, z, _ in SOLAR_HEAVY_GS98]
    assert z_light == list(range(1, 29)) and z_heavy == sorted(z_heavy) and min(z_heavy) == 29


def test_mean_mass_is_differentiable_in_metallicity():
    m_h = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    mean_mass_per_nucleus(m_h).sum().backward()
    assert torch.all(m_h.grad > 0)
