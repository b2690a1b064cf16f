import numpy as np
import pytest
import torch

from stellarnn.labels.cannon import CannonModel, n_coefficients, quadratic_design
from stellarnn.train import load_checkpoint

NAMES = ["teff", "logg", "fe_h"]
LOW = np.array([4000.0, 1.0, -1.0])
HIGH = np.array([5000.0, 3.0, 0.0])
N_PIXELS = 300


def true_model(seed=0):
    """A known quadratic model: coefficients in labels scaled to [-1, 1] over [LOW, HIGH]."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 0.05, (N_PIXELS, n_coefficients(3)))
    theta[:, 0] = 0.9
    scatter = np.where(np.arange(N_PIXELS) % 3 == 0, 0.01, 0.0)  # intrinsic scatter on every third pixel

    def flux(labels):
        x = torch.as_tensor((labels - 0.5 * (LOW + HIGH)) / (0.5 * (HIGH - LOW)))
        return (quadratic_design(x) @ torch.as_tensor(theta).T).numpy()

    return flux, scatter


def draw(n, seed, sigma=0.01, low=LOW, high=HIGH):
    flux, scatter = true_model()
    rng = np.random.default_rng(seed)
    labels = rng.uniform(low, high, (n, 3))
    clean = flux(labels)
    noisy = clean + rng.normal(0, 1, clean.shape) * np.sqrt(sigma ** 2 + scatter ** 2)
    return labels, clean, noisy, np.full(clean.shape, sigma ** -2.0)


@pytest.fixture(scope="module")
def trained():
    labels, _, noisy, ivar = draw(600, seed=1)
    return CannonModel.fit(noisy, ivar, labels, NAMES)


def test_quadratic_design_terms():
    x = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    assert quadratic_design(x).tolist() == [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]
    assert n_coefficients(22) == 276


def test_training_recovers_the_scatter_and_the_noise_free_model(trained):
    _, scatter = true_model()
    s = np.sqrt(trained.scatter_variance.numpy())
    assert np.median(s[scatter > 0]) == pytest.approx(0.01, abs=0.0015)
    assert np.median(s[scatter == 0]) < 0.003
    labels, clean, _, _ = draw(50, seed=7)
    assert np.abs(trained.spectra(labels) - clean).max() < 0.01


def test_heteroscedastic_training_finds_the_scatter_by_maximum_likelihood():
    """Half the spectra 25x noisier than the scatter: only the weighted likelihood pins s down."""
    flux, scatter = true_model()
    rng = np.random.default_rng(4)
    labels = rng.uniform(LOW, HIGH, (400, 3))
    sigma = np.where(np.arange(400) % 2 == 0, 0.002, 0.05)[:, None] * np.ones(N_PIXELS)
    noisy = flux(labels) + rng.normal(0, 1, sigma.shape) * np.sqrt(sigma ** 2 + scatter ** 2)
    model = CannonModel.fit(noisy, sigma ** -2.0, labels, NAMES)
    assert not model.training_summary["equal_weights_closed_form"]
    s = np.sqrt(model.scatter_variance.numpy())
    assert np.median(np.abs(s[scatter > 0] - 0.01)) < 0.001
    assert np.median(s[scatter == 0]) < 0.002


def test_noise_free_training_is_exact():
    labels, clean, _, _ = draw(40, seed=2)
    model = CannonModel.fit(clean, None, labels, NAMES)
    assert model.training_summary["equal_weights_closed_form"]
    test_labels, test_clean, _, _ = draw(5, seed=3)
    np.testing.assert_allclose(model.spectra(test_labels), test_clean, atol=1e-5)
    assert float(model.scatter_variance.max()) < 1e-10


def test_test_step_recovers_labels_with_calibrated_errors(trained):
    truth, _, noisy, ivar = draw(200, seed=11, low=LOW + 0.1 * (HIGH - LOW), high=HIGH - 0.1 * (HIGH - LOW))
    res = trained.predict_labels(noisy, ivar)
    z = (res.labels - truth) / res.label_errors
    assert res.fitted.all()
    assert np.all(np.abs(np.median(z, axis=0)) < 0.3)
    assert np.all((np.std(z, axis=0) > 0.8) & (np.std(z, axis=0) < 1.25))
    assert np.median(res.reduced_chi2) == pytest.approx(1.0, abs=0.1)
    assert np.median(res.label_errors[:, 0]) < 30  # K: the labels are actually constrained


def test_labels_are_bounded_to_the_training_range(trained):
    low = np.array([5300.0, 3.3, 0.2])  # every label beyond the training maximum
    truth, _, noisy, ivar = draw(10, seed=5, low=low, high=low + 1e-3)
    res = trained.predict_labels(noisy, ivar)
    hi = trained.label_max.double().numpy()
    assert np.all(res.labels <= hi + 1e-6)
    assert res.at_bound[:, 0].all()


def test_unusable_pixels_are_ignored():
    labels, _, noisy, ivar = draw(300, seed=21)
    rng = np.random.default_rng(0)
    bad = rng.random(noisy.shape) < 0.05
    ivar_bad = np.where(bad, 0.0, ivar)
    corrupted = noisy.copy()
    corrupted[bad] = np.where(rng.random(bad.sum()) < 0.5, np.nan, 1e6)
    a = CannonModel.fit(noisy, ivar_bad, labels, NAMES)
    b = CannonModel.fit(corrupted, ivar_bad, labels, NAMES)
    torch.testing.assert_close(a.coefficients, b.coefficients)
    torch.testing.assert_close(a.scatter_variance, b.scatter_variance)
    assert not a.training_summary["equal_weights_closed_form"]
    # test step: NaN flux (any ivar) and ivar = 0 pixels change nothing
    _, _, test, test_ivar = draw(4, seed=22)
    bad = rng.random(test.shape) < 0.1
    clean_res = a.predict_labels(test, np.where(bad, 0.0, test_ivar))
    spoiled = test.copy()
    spoiled[bad] = np.nan
    res = a.predict_labels(spoiled, test_ivar)
    np.testing.assert_allclose(res.labels, clean_res.labels, rtol=1e-10)
    assert np.array_equal(res.dof, (~bad).sum(1) - 3)
    # a spectrum without any usable pixel is not fitted, the others are
    empty = a.predict_labels(np.vstack([test[:1], np.full((1, N_PIXELS), np.nan)]), test_ivar[:2])
    assert empty.fitted.tolist() == [True, False] and np.isnan(empty.labels[1]).all()


def test_batch_agrees_with_one_by_one(trained):
    _, _, noisy, ivar = draw(6, seed=31)
    batch = trained.predict_labels(noisy, ivar, chunk_size=4)
    for i in range(6):
        one = trained.predict_labels(noisy[i:i + 1], ivar[i:i + 1])
        assert np.all(np.abs(one.labels[0] - batch.labels[i]) < 0.01 * batch.label_errors[i])


def test_save_load_round_trip(trained, tmp_path):
    path = trained.save(tmp_path / "cannon.pt", metrics={"note": 1.0})
    loaded = CannonModel.load(path)
    assert loaded.label_names == NAMES and loaded.n_pixels == N_PIXELS
    for name, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert loaded.training_summary["n_train"] == 600
    module, payload = load_checkpoint(path, expected_kind="cannon")  # the project loader, weights_only
    assert payload["hyperparameters"] == {"label_names": NAMES, "n_pixels": N_PIXELS}
    _, _, noisy, ivar = draw(3, seed=41)
    np.testing.assert_array_equal(module.predict_labels(noisy, ivar).labels,
                                  trained.predict_labels(noisy, ivar).labels)
    wrong = CannonModel(["teff", "logg"], N_PIXELS)
    with pytest.raises(RuntimeError):
        wrong.load_state_dict(trained.state_dict(), strict=True)


def test_rejects_bad_inputs():
    labels, clean, _, _ = draw(12, seed=2)
    with pytest.raises(ValueError, match="coefficients"):
        CannonModel.fit(clean[:5], None, labels[:5], NAMES)  # 5 spectra for 10 coefficients
    with pytest.raises(ValueError, match="label names"):
        CannonModel.fit(clean, None, labels, NAMES[:2])
    with pytest.raises(ValueError, match="not trained"):
        CannonModel(NAMES, N_PIXELS).predict_labels(clean, np.ones_like(clean))


# ---------------------------------------------------------------------- routed Cannon (one model per population)
from stellarnn.labels.cannon import RoutedCannon, region_masks  # noqa: E402
from stellarnn.labels.cannon.routed import MIN_SPECTRA_PER_COEFFICIENT  # noqa: E402

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
