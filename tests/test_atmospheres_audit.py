"""Grid audit: deck VTURB per slice and smoothness against neighbouring slices."""
import numpy as np
import pytest

from stellarnn.atmospheres.audit import (audit_grid, best_bracketing_pair, format_audit, inconsistent_slices,
                                         m_h_families, neighbour_deviation)
from stellarnn.atmospheres.grid import COLUMNS, AtmosphereGrid


def _smooth_grid(bump_slice=None, bump=0.0, vturb_slice=None):
    """A grid whose log columns are linear in the axes (a perfectly smooth family), optionally with one odd slice."""
    axes = {"teff": np.array([4000.0, 4500.0, 5000.0, 5500.0]), "logg": np.array([1.0, 2.0, 3.0]),
            "m_h": np.array([-0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4])}
    t, g, m = np.meshgrid(*axes.values(), indexing="ij")
    layers = np.linspace(0.0, 1.0, 72)
    models = np.empty(t.shape + (72, len(COLUMNS)))
    base = 1e-4 * t + 0.1 * g + 0.3 * m
    for j in range(len(COLUMNS)):
        models[..., j] = 10.0 ** (base[..., None] + layers + j)
    models[..., COLUMNS.index("vturb")] = 2.0e5
    if bump_slice is not None:
        k = int(np.argmin(np.abs(axes["m_h"] - bump_slice)))
        models[:, :, k, :, :4] *= 10.0 ** bump
    if vturb_slice is not None:
        models[:, :, int(np.argmin(np.abs(axes["m_h"] - vturb_slice))), :, COLUMNS.index("vturb")] = 0.0
    return AtmosphereGrid(axes, models, np.ones(t.shape, dtype=int), -6.875 + 0.125 * np.arange(72), source="test")


def test_smooth_grid_has_no_deviation_and_no_break():
    grid = _smooth_grid()
    dev = neighbour_deviation(grid, 2)
    inner = dev["T"][:, :, 1:-1]
    assert np.isfinite(inner).all() and np.abs(inner).max() < 1e-8
    assert np.isnan(dev["T"][:, :, 0]).all()  # no lower neighbour
    audit = audit_grid(grid)
    assert audit["breaks"] == []


def test_odd_slice_with_other_vturb_is_flagged_alone():
    grid = _smooth_grid(bump_slice=0.0, bump=0.005, vturb_slice=0.0)  # +1.16 % in T, P, n_e, kappa
    audit = audit_grid(grid)
    assert inconsistent_slices(audit) == [0.0]
    row = next(r for r in audit["axes"]["m_h"]["slices"] if r["value"] == 0.0)
    assert row["vturb_kms"] == [0.0]
    assert row["rms_percent"]["T"]["median"] == pytest.approx(100 * (10 ** 0.005 - 1), rel=1e-6)
    # its neighbours deviate by half as much (it is their neighbour) and are not flagged
    nb = next(r for r in audit["axes"]["m_h"]["slices"] if r["value"] == 0.1)
    assert nb["rms_percent"]["T"]["median"] == pytest.approx(0.5 * row["rms_percent"]["T"]["median"], rel=2e-2)
    # the slice follows no bracketing pair; -0.1 follows (-0.2, 0.1) exactly once the odd slice is skipped
    assert best_bracketing_pair(grid, 2, 5)["T"] > 1.0
    assert best_bracketing_pair(grid, 2, 4)["T"] < 1e-8
    assert "BREAK" in format_audit(audit)


def test_smoothness_break_without_vturb_change_is_flagged():
    audit = audit_grid(_smooth_grid(bump_slice=-0.1, bump=0.004))
    assert inconsistent_slices(audit) == [-0.1]
    assert "T deviates" in audit["breaks"][0]["reasons"][0]


def test_atlas9_audit_finds_the_solar_slice():
    audit = audit_grid()
    assert inconsistent_slices(audit, "m_h") == [0.0]
    rows = {r["value"]: r for r in audit["axes"]["m_h"]["slices"]}
    assert rows[0.0]["vturb_kms"] == [0.0] and all(rows[v]["vturb_kms"] == [2.0] for v in (-0.1, 0.1, -2.0))
    assert rows[0.0]["rms_percent"]["T"]["median"] > 1.0        # issue 23: 1.4-1.7 % rms in T
    assert rows[0.0]["rms_percent"]["n_e"]["median"] > 10.0     # and 14-19 % in n_e
    assert rows[-0.2]["rms_percent"]["T"]["median"] < 0.05      # -0.2 is the mean of -0.3 and -0.1
    assert rows[-0.1]["best_bracketing_pair"]["pair"] == [-0.2, 0.1]
    fam = audit["m_h_families"]
    assert fam["families"]["0"]["m_h"] == [-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.2, 0.5]
    assert -0.1 in fam["families"]["1"]["m_h"] and 0.1 in fam["families"]["1"]["m_h"]
    # adjacent slices of different families differ several times more than slices within a family
    assert fam["interleaved"] and [b["axis"] for b in audit["axis_breaks"]] == ["m_h"]
    cross = {r["value"]: r for r in fam["cross_family"]}
    within = {r["value"]: r for r in fam["within_family"]}
    assert cross[0.2]["pair"] == [0.1, 0.3] and cross[0.2]["T"] > 0.8        # 0.2 between two family-1 slices
    assert within[0.1]["pair"] == [-0.1, 0.3] and within[0.1]["T"] < 0.1    # 0.1 from its own family, 0.4 dex apart
    assert not [b for b in audit["breaks"] if b["axis"] != "m_h"]  # Teff and log g slices mix both VTURB values


def test_families_of_a_one_family_grid_are_not_interleaved():
    grid = _smooth_grid()
    n = len(grid.axes["m_h"])
    fam = m_h_families(grid, family=np.arange(n) % 2)
    assert not fam["interleaved"]
    assert fam["within_family"] and fam["cross_family"]
    # the same grid with every other slice offset by 0.92 % (a second computation): interleaved
    grid.models[:, :, 1::2, :, :4] *= 10.0 ** 0.004
    fam = m_h_families(grid, family=np.arange(n) % 2)
    assert fam["interleaved"]
    assert fam["median_percent"]["within_family"]["T"] < 1e-8
    assert fam["median_percent"]["cross_family"]["T"] == pytest.approx(100 * (10 ** 0.004 - 1), rel=1e-2)


def test_m_h_family_of_atlas9_nodes():
    from stellarnn.atmospheres.grid import m_h_family

    assert m_h_family([0.0, 0.1, -2.0, 1.0]).tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="not .*nodes"):
        m_h_family(0.05)
