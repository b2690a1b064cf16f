"""Tests of stellarnn.labels.cannon.routed: one Cannon per population, routed by labels or likelihood."""
import numpy as np
import pytest
import torch

from stellarnn.labels.cannon import CannonModel, RoutedCannon, n_coefficients, quadratic_design, region_masks
from stellarnn.labels.cannon.routed import MIN_SPECTRA_PER_COEFFICIENT

NAMES = ["teff", "logg", "fe_h"]
N_PIXELS = 300

#: two label regions inside the populations "giants" and "dwarfs" (Teff, log g, [Fe/H] = [M/H])
GIANT_BOX = (np.array([4100.0, 1.0, -0.8]), np.array([5000.0, 3.0, 0.3]))
DWARF_BOX = (np.array([4600.0, 3.9, -0.8]), np.array([6000.0, 4.8, 0.3]))


def two_region_spectra(n_per_region, seed, sigma=0.005):
    """Spectra from a shared quadratic plus a region-specific quadratic of its own (different in each box).

    Returns labels, noisy flux, ivar and the true region names."""
    rng = np.random.default_rng(seed)
    mid, half = np.array([5000.0, 3.0, -0.25]), np.array([1000.0, 2.0, 0.55])
    shared = np.random.default_rng(100).normal(0.0, 0.05, (N_PIXELS, n_coefficients(3)))
    shared[:, 0] = 0.9
    out_labels, out_flux, out_region = [], [], []
    for k, (name, (lo, hi)) in enumerate((("giants", GIANT_BOX), ("dwarfs", DWARF_BOX))):
        own = np.random.default_rng(200 + k).normal(0.0, 0.03, (N_PIXELS, n_coefficients(3)))
        labels = rng.uniform(lo, hi, (n_per_region, 3))
        x_all = torch.as_tensor((labels - mid) / half)
        x_own = torch.as_tensor((labels - 0.5 * (lo + hi)) / (0.5 * (hi - lo)))
        flux = (quadratic_design(x_all) @ torch.as_tensor(shared).T + quadratic_design(x_own) @ torch.as_tensor(own).T)
        out_labels.append(labels)
        out_flux.append(flux.numpy())
        out_region += [name] * n_per_region
    flux = np.vstack(out_flux)
    noisy = flux + rng.normal(0.0, sigma, flux.shape)
    return np.vstack(out_labels), noisy, np.full(flux.shape, sigma ** -2.0), np.array(out_region)


@pytest.fixture(scope="module")
def routed():
    labels, flux, ivar, _ = two_region_spectra(150, seed=1)
    return RoutedCannon.fit(flux, ivar, labels, NAMES, regions=("giants", "dwarfs", "m_dwarfs"),
                            population_label_names=("teff", "logg", "fe_h"))


def test_region_masks_expand_the_population_boxes_by_the_margin():
    teff = np.array([5400.0, 5500.0, 4500.0, 4500.0, 4500.0])
    logg = np.array([2.0, 2.0, 3.7, 3.9, 2.0])
    m_h = np.array([0.0, 0.0, 0.0, 0.0, -1.2])
    masks = region_masks(teff, logg, m_h)  # ±250 K, ±0.3 dex, ±0.3 dex
    assert masks["giants"].tolist() == [True, False, True, False, True]  # 5400 K: within 250 K of 5200 K
    assert masks["dwarfs"].tolist() == [False, False, True, True, False]
    assert masks["metal_poor_giants"].tolist() == [False, False, False, False, True]
    core = region_masks(teff, logg, m_h, margin=(0.0, 0.0, 0.0))
    assert core["giants"].tolist() == [False, False, False, False, False]


def test_routed_training_widens_a_region_without_enough_spectra(routed):
    regions = routed.training_summary["regions"]
    need = int(np.ceil(MIN_SPECTRA_PER_COEFFICIENT * n_coefficients(3)))
    assert regions["giants"]["margin_factor"] == 1.0 and regions["giants"]["n_train"] == 150
    assert regions["m_dwarfs"]["n_train"] >= need  # no spectrum near the M-dwarf box: widened
    assert regions["m_dwarfs"]["whole_training_set"] or regions["m_dwarfs"]["margin_factor"] > 1.0


@pytest.mark.parametrize("routing", ["labels", "likelihood"])
def test_routing_picks_the_region_whose_model_made_the_spectrum(routed, routing):
    truth, flux, ivar, region = two_region_spectra(40, seed=9)
    res = routed.predict_labels(flux, ivar, routing=routing)
    assert res.fitted.all()
    assert np.mean(res.region == region) >= 0.97
    routed_err = np.median(np.abs(res.labels - truth), axis=0)
    global_err = np.median(np.abs(res.global_labels.labels - truth), axis=0)
    assert routed_err[0] < 5 and routed_err[1] < 0.01  # K, dex: the right model recovers the labels
    assert np.all(routed_err < 0.5 * global_err)  # the single quadratic cannot describe both regions
    if routing == "labels":
        assert res.n_candidates.mean() < 3  # not every region is tried


def test_routed_save_load_round_trip(routed, tmp_path):
    path = routed.save(tmp_path / "routed.pt")
    loaded = RoutedCannon.load(path)
    assert loaded.hyperparameters == routed.hyperparameters
    for name, value in routed.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert loaded.training_summary["regions"]["giants"]["n_train"] == 150
    _, flux, ivar, _ = two_region_spectra(3, seed=41)
    np.testing.assert_array_equal(loaded.predict_labels(flux, ivar).labels, routed.predict_labels(flux, ivar).labels)
    with pytest.raises(Exception, match="cannon_routed"):
        CannonModel.load(path)
