"""Tests of stellarnn.labels.cannon.model: the quadratic Cannon (the routed one: test_labels_cannon_routed)."""
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
