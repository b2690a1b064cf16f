"""The shipped-weights guard: per-population scatter on the committed held-out subset stays within limits."""
import numpy as np
import pytest

from stellarnn.data.fetch import sha256_of
from stellarnn.labels.accuracy_guard import (GUARD_PER_POPULATION, POPULATION_TARGETS, REGRESSION_FACTOR,
                                             TARGET_FACTOR, guard_limits, guard_record, guard_subset,
                                             first_per_population, guard_violations, population_scatter,
                                             read_guard)
from stellarnn.labels.pipeline import get_pipeline, resolve_shipped_weights
from stellarnn.synthesis.populations import POPULATIONS, population_of


@pytest.fixture(scope="module")
def subset():
    return guard_subset()


def test_guard_subset_is_balanced_and_reproducible(subset):
    assert len(subset["spectra"]) == GUARD_PER_POPULATION * len(POPULATIONS)
    _, counts = np.unique(subset["population"], return_counts=True)
    assert set(counts) == {GUARD_PER_POPULATION}
    t = subset["truth"]
    assert np.array_equal(population_of(t["teff"], t["logg"], t["fe_h"]), subset["population"])
    again = guard_subset()
    assert np.array_equal(again["spectra"][7].flux, subset["spectra"][7].flux)  # fixed noise seed
    assert not np.array_equal(guard_subset(seed=1)["spectra"][7].flux, subset["spectra"][7].flux)


def test_first_per_population_picks_sorted_rows_and_refuses_a_missing_population():
    # (teff, logg, m_h): two giants, a hot star, then one of each other population, then a third giant
    rows = [(4500, 2.5, 0.0), (4600, 2.4, -0.2), (7000, 4.0, 0.0), (4500, 2.0, -1.5), (5800, 3.0, 0.0),
            (5500, 4.4, 0.0), (3600, 4.8, 0.0), (4700, 2.6, 0.1)]
    grid = {"label_names": ["teff", "logg", "m_h"], "labels": np.array(rows, dtype=float)}
    chosen, pop = first_per_population(grid, 2)
    np.testing.assert_array_equal(chosen, [0, 1, 2, 3, 4, 5, 6])  # the third giant is left out
    assert list(pop) == ["giants", "giants", "hot", "metal_poor_giants", "warm_giants", "dwarfs", "m_dwarfs",
                         "giants"]
    with pytest.raises(ValueError, match="my grid: no star of population.s. hot"):
        first_per_population({**grid, "labels": np.delete(grid["labels"], 2, axis=0)}, 2, where="my grid")


def test_guard_limits_follow_target_or_shipped_figure():
    measured = {"giants": {"n": 10, "teff": 40.0, "logg": 0.5, "fe_h": 0.01}}
    lim = guard_limits(measured)["giants"]
    assert lim["teff"]["limit"] == pytest.approx(TARGET_FACTOR * POPULATION_TARGETS["giants"]["teff"])  # 40 <= 45
    assert lim["logg"]["limit"] == pytest.approx(REGRESSION_FACTOR * 0.5)  # 0.5 > 1.5 x 0.06
    assert lim["fe_h"]["limit"] == pytest.approx(TARGET_FACTOR * 0.02)
    record = {"limits": guard_limits(measured)}
    assert guard_violations(record, measured) == []
    worse = {"giants": {"n": 10, "teff": 46.0, "logg": 0.7, "fe_h": 0.01}}
    bad = guard_violations(record, worse)
    assert len(bad) == 2 and bad[0].startswith("giants teff") and "logg" in bad[1]
    assert guard_violations(record, {}) == ["giants: not measured"]


def test_no_guard_is_written_from_unlabelled_spectra(subset):
    # a pipeline that failed on the subset (every label NaN) measures an infinite scatter: no limits from that
    entry = {"n": 10, "teff": float("inf"), "logg": 0.1, "fe_h": 0.02, "n_finite_teff": 0, "n_finite_logg": 10,
             "n_finite_fe_h": 10}
    with pytest.raises(ValueError, match=r"giants teff \(0 of 10 labelled\)"):
        guard_record("astronn", resolve_shipped_weights("astronn"), {"giants": entry}, subset)


@pytest.mark.parametrize("name", ["astronn", "apogeenet"])
def test_shipped_weights_within_their_guard(name, subset):
    weights = resolve_shipped_weights(name)
    record = read_guard(weights)
    assert record["weights_sha256"] == sha256_of(weights), \
        f"{name} weights changed without a new guard: run `stellarnn train guard {name} --write`"
    measured = population_scatter(get_pipeline(name, weights=weights), subset)
    assert set(measured) == set(POPULATIONS)
    assert guard_violations(record, measured) == []
