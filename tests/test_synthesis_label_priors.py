"""Tests of stellarnn.synthesis.label_priors: the APOGEE-like population (its bins: test_synthesis_populations)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from stellarnn.synthesis.grid_builder import sample_labels
from stellarnn.synthesis.label_priors import (ApogeeLikePrior, LabelPrior, macroturbulence_dwarfs, typical_broadening,
                                              microturbulence_dwarfs)
from stellarnn.synthesis.populations import POPULATIONS, population_masks, population_of


def _draw(prior, n, seed=5):
    rows = [sample_labels(i, seed, prior).as_dict() for i in range(n)]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def test_apogee_like_prior_looks_like_a_survey():
    lab = _draw(ApogeeLikePrior(), 1500)
    pops = collections.Counter(population_of(lab["teff"], lab["logg"], lab["m_h"]))
    assert pops["giants"] / 1500 > 0.35  # the survey's stars, not the box's ~16 %
    assert all(pops[p] > 0 for p in POPULATIONS)  # the broad part keeps every corner populated
    frac_disc = np.mean((lab["m_h"] > -1) & (lab["m_h"] < 0.4))
    assert frac_disc > 0.75 and lab["m_h"].min() < -2.0
    # alpha elements rise at low metallicity; giants show the first dredge-up in C and N
    lo, hi = lab["m_h"] < -0.8, lab["m_h"] > -0.2
    assert np.median(lab["mg_m"][lo]) > np.median(lab["mg_m"][hi]) + 0.1
    giants = population_masks(lab["teff"], lab["logg"], lab["m_h"])["giants"]
    assert np.median(lab["n_m"][giants]) - np.median(lab["c_m"][giants]) > 0.3
    # broadening labels: mostly slow rotators, a tail for hot stars
    assert np.median(lab["v_sini"]) < 3.0 and np.percentile(lab["v_sini"][lab["teff"] > 6500], 75) > 8.0
    assert np.all(lab["v_macro"] >= 0) and np.all(lab["v_micro"] >= 0.3)


def test_stratified_prior_fills_each_population_equally():
    lab = _draw(ApogeeLikePrior(stratify=True), 24, seed=9)
    pops = population_of(lab["teff"], lab["logg"], lab["m_h"])
    assert list(pops[:6]) == list(POPULATIONS)
    assert collections.Counter(pops) == {p: 4 for p in POPULATIONS}


def test_box_prior_is_unchanged_and_deterministic():
    a = sample_labels(7, 1, LabelPrior()).as_dict()
    assert a == sample_labels(7, 1, None).as_dict()
    assert a["v_macro"] == 0 and a["v_sini"] == 0
    assert 3500 <= a["teff"] <= 8000 and -0.5 <= a["c_m"] <= 0.5


def test_cited_broadening_relations():
    # Tsantaki et al. 2013 at the Sun: 6.932e-4 * 5777 - 0.348 * 4.44 - 1.437 = 1.0225 km/s
    assert microturbulence_dwarfs(5777, 4.44) == pytest.approx(1.0225, abs=1e-3)
    # Doyle et al. 2014 at the Sun: 3.21 km/s; below 5200 K it is held at its 5200 K value
    assert macroturbulence_dwarfs(5777, 4.44) == pytest.approx(3.21)
    assert macroturbulence_dwarfs(4000, 4.6) == pytest.approx(macroturbulence_dwarfs(5200, 4.6))


def test_typical_broadening_is_the_centre_of_the_drawn_broadening():
    rng = np.random.default_rng(3)
    cases = [(4500.0, 2.0), (5800.0, 4.4), (7000.0, 4.2)]
    for teff, logg in cases:
        draws = np.array([ApogeeLikePrior.broadening(rng, teff, logg) for _ in range(4000)])
        typ = typical_broadening(teff, logg)
        assert np.median(draws[:, 1]) == pytest.approx(typ["v_macro"], rel=0.05)
        if teff >= 6200.0:  # log-normal: the median is its centre
            assert np.median(draws[:, 2]) == pytest.approx(typ["v_sini"], rel=0.1)
        else:  # half-normal (and 2 % fast-rotating giants): the sigma is the rms of the slow rotators
            slow = draws[:, 2][draws[:, 2] < 5.0]
            assert np.sqrt(np.mean(slow ** 2)) == pytest.approx(typ["v_sini"], rel=0.1)
    assert typical_broadening(4500.0, 2.0) == {"v_macro": 4.0, "v_sini": 1.5}
    assert typical_broadening(5800.0, 4.4)["v_macro"] == pytest.approx(float(macroturbulence_dwarfs(5800.0, 4.4)))
