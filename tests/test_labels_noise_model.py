import numpy as np
import pytest

from stellarnn.labels.noise_model import (NoiseModel, attach_noise_model, calibrate_accuracy_by_population,
                                          calibrate_accuracy_offset, calibrate_noise_model, population_of_predictions,
                                          precision_part, standardised_differences)


def simulated_pairs(n, scale, offset, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1, (n, 2))
    r1, r2 = rng.uniform(0.02, 0.2, (n, 2)), rng.uniform(0.02, 0.2, (n, 2))
    e1, e2 = scale * r1 + offset, scale * r2 + offset
    v1, v2 = truth + e1 * rng.standard_normal((n, 2)), truth + e2 * rng.standard_normal((n, 2))
    return v1, v2, r1, r2


def test_calibration_recovers_scale_and_offset():
    scale, offset = np.array([1.6, 0.8]), np.array([0.03, 0.0])
    v1, v2, r1, r2 = simulated_pairs(6000, scale, offset)
    nm = calibrate_noise_model(["a", "b"], v1, v2, r1, r2)
    assert nm.scale == pytest.approx(scale, rel=0.08)
    assert nm.offset[0] == pytest.approx(0.03, abs=0.01)
    assert nm.offset[1] < 0.01
    z = standardised_differences(v1, v2, nm.apply(r1), nm.apply(r2))
    assert np.std(z, axis=0) == pytest.approx([1, 1], abs=0.03)
    assert nm.diagnostics["labels"]["a"]["std_z_raw"] > 1.3  # raw errors were too small


def test_outliers_are_clipped():
    v1, v2, r1, r2 = simulated_pairs(3000, np.array([1.0, 1.0]), np.array([0.0, 0.0]), seed=1)
    v1[:30, 0] += 50.0  # failed visits
    nm = calibrate_noise_model(["a", "b"], v1, v2, r1, r2)
    assert nm.scale[0] == pytest.approx(1.0, rel=0.08)
    assert nm.diagnostics["labels"]["a"]["n_used"] <= 3000 - 30


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        calibrate_noise_model(["a"], np.zeros((5, 1)), np.zeros((4, 1)), np.ones((5, 1)), np.ones((5, 1)))
    nan = np.full((20, 1), np.nan)
    with pytest.raises(ValueError, match="usable repeat pairs"):
        calibrate_noise_model(["a"], nan, nan, np.ones((20, 1)), np.ones((20, 1)))
    with pytest.raises(ValueError, match="scale > 0"):
        NoiseModel(["a"], [-1.0], [0.0])
    with pytest.raises(ValueError, match="one per label"):
        NoiseModel(["a", "b"], [1.0], [0.0])


def test_apply_roundtrip_and_attach(tmp_path):
    import torch

    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.train import read_checkpoint, save_checkpoint

    nm = NoiseModel(["teff", "logg", "fe_h"], [1.25, 1.25, 1.0], [10.0, 0.01, 0.01])
    assert nm.apply(np.array([[4.0, 0.1, 0.05]])) == pytest.approx(np.array([[15.0, 0.135, 0.06]]))
    assert NoiseModel.from_dict(nm.to_dict()).to_dict() == nm.to_dict()
    path = save_checkpoint(tmp_path / "m.pt", APOGEENetResNet(4, (4,), 3, 4, 8, 1), "apogeenet",
                           dict(stem_channels=4, block_channels=(4,), kernel_size=3, pool_length=4, head_width=8,
                                n_head_layers=1))
    attach_noise_model(path, nm)
    stored = read_checkpoint(path)["normalisation"]["noise_model"]
    assert stored["scale"] == [1.25, 1.25, 1.0]
    assert torch.is_tensor(read_checkpoint(path)["state_dict"]["stem.0.weight"])


def test_calibrate_pipeline_on_repeats(real_file, tmp_path):
    import torch

    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.labels.noise_model import calibrate_pipeline_on_repeats
    from stellarnn.labels.pipeline import get_pipeline
    from stellarnn.spectra import Spectrum, read_apstar
    from stellarnn.train import save_checkpoint

    torch.manual_seed(0)
    tiny = dict(stem_channels=2, block_channels=[2], kernel_size=5, pool_length=8, head_width=8, n_head_layers=1)
    path = save_checkpoint(tmp_path / "t.pt", APOGEENetResNet(**tiny), "apogeenet", tiny)
    s = read_apstar(real_file("apstar-2M19485057")).combined
    # fill the chip gaps (their noise draws would otherwise dominate the spread, see APOGEENet preprocessing)
    gap = s.ivar == 0
    flux = np.where(gap, np.median(s.flux[~gap]), s.flux)
    ivar = np.where(gap, np.median(s.ivar[~gap]), s.ivar)
    rng = np.random.default_rng(0)
    pairs = [[Spectrum(s.wavelength, flux + 3 / np.sqrt(ivar) * rng.standard_normal(flux.size), ivar)
              for _ in range(12)] for _ in range(2)]
    nm = calibrate_pipeline_on_repeats(get_pipeline("apogeenet", weights=path, n_draws=8), pairs[0], pairs[1],
                                       ["teff", "logg", "fe_h"])
    assert nm.labels == ["teff", "logg", "fe_h"] and nm.diagnostics["labels"]["logg"]["n_pairs"] == 12
    # the visits carry 3x the noise their ivar claims, so the errors must be scaled up (the factor
    # depends on how linear this random network is), and the calibrated z must be near unit width
    assert nm.scale[1] > 1.5 and nm.scale[2] > 1.5
    assert 0.6 < nm.diagnostics["labels"]["logg"]["std_z_calibrated"] < 1.4
    with pytest.raises(ValueError, match="same length"):
        calibrate_pipeline_on_repeats(None, [1], [], ["teff"])


def test_accuracy_offset_recovers_a_systematic_floor():
    rng = np.random.default_rng(3)
    n = 4000
    raw = rng.uniform(0.5, 1.5, (n, 2))
    truth = rng.normal(0, 10, (n, 2))
    floor = np.array([2.0, 0.0])
    values = truth + (1.3 * raw + floor) * rng.standard_normal((n, 2))
    precision = NoiseModel(["a", "b"], [1.3, 1.3], [0.0, 0.5], {"calibrated": True})
    model = calibrate_accuracy_offset(precision, values, truth, raw, source="test")
    assert model.scale == pytest.approx(precision.scale)
    assert model.offset[0] == pytest.approx(2.0, abs=0.15)
    assert model.offset[1] == pytest.approx(0.5)  # never below the precision offset
    z = (values - truth) / model.apply(raw)
    assert np.std(z[:, 0]) == pytest.approx(1.0, abs=0.05) and np.std(z[:, 1]) < 1.0
    acc = model.diagnostics["accuracy"]
    assert acc["source"] == "test" and acc["labels"]["a"]["std_z_precision_model"] > 1.5
    back = precision_part(model)
    assert back.offset == pytest.approx(precision.offset) and "accuracy" not in back.diagnostics
    assert precision_part(precision) is precision
    with pytest.raises(ValueError, match="labelled"):
        calibrate_accuracy_offset(precision, values[:5], truth[:5], raw[:5])
    with pytest.raises(ValueError, match="shape"):
        calibrate_accuracy_offset(precision, values[:, :1], truth, raw)


def test_accuracy_step_can_raise_the_scale_when_accuracy_errors_grow_with_raw_errors():
    # repeats saw a small scale (0.25: the raw errors overstate precision), but the accuracy errors
    # are 1.0 raw_e + 3: a constant floor alone leaves the spectra with large raw_e underestimated
    rng = np.random.default_rng(5)
    n = 6000
    raw = np.exp(rng.uniform(np.log(0.5), np.log(20.0), (n, 1)))
    truth = rng.normal(0, 10, (n, 1))
    values = truth + (1.0 * raw + 3.0) * rng.standard_normal((n, 1))
    precision = NoiseModel(["a"], [0.25], [0.5], {"calibrated": True})
    fixed = calibrate_accuracy_offset(precision, values, truth, raw)
    free = calibrate_accuracy_offset(precision, values, truth, raw, raise_scale=True)
    assert fixed.scale == pytest.approx([0.25])
    assert free.scale[0] == pytest.approx(1.0, abs=0.06) and free.offset[0] == pytest.approx(3.0, abs=0.3)
    noisy = raw[:, 0] > 10
    z_fixed = ((values - truth) / fixed.apply(raw))[noisy, 0]
    z_free = ((values - truth) / free.apply(raw))[noisy, 0]
    assert np.std(z_fixed) > 1.3 and np.std(z_free) == pytest.approx(1.0, abs=0.06)
    lab = free.diagnostics["accuracy"]["labels"]["a"]
    assert lab["scale_precision"] == 0.25 and lab["scale_accuracy"] == pytest.approx(free.scale[0])
    back = precision_part(free)  # both parts return to their repeat-pair values
    assert back.scale == pytest.approx([0.25]) and back.offset == pytest.approx([0.5])
    # a scale above the maximum-likelihood one stays: never lowered
    high = NoiseModel(["a"], [2.0], [0.5], {"calibrated": True})
    assert calibrate_accuracy_offset(high, values, truth, raw, raise_scale=True).scale[0] == pytest.approx(2.0)


def test_accuracy_clip_sigma_decides_whether_outliers_count():
    # 2 % of the spectra miss by 20 e: clipped at 5 sigma, the fit sees the Gaussian core; unclipped,
    # it raises the floor until the plain variance, outliers included, is one
    rng = np.random.default_rng(11)
    n = 5000
    raw = np.ones((n, 1))
    truth = np.zeros((n, 1))
    values = rng.standard_normal((n, 1))
    values[: n // 50] = 20.0
    precision = NoiseModel(["a"], [1.0], [0.0], {"calibrated": True})
    clipped = calibrate_accuracy_offset(precision, values, truth, raw)
    plain = calibrate_accuracy_offset(precision, values, truth, raw, clip_sigma=1e6)
    assert clipped.offset[0] < 0.1 and clipped.diagnostics["accuracy"]["clip_sigma"] == 5.0
    assert np.std(values / plain.apply(raw)) == pytest.approx(1.0, abs=0.03)
    assert plain.diagnostics["accuracy"]["clip_sigma"] == 1e6


def test_accuracy_clip_sigma_must_be_positive():
    precision = NoiseModel(["a"], [1.0], [0.0], {"calibrated": True})
    ones = np.ones((50, 1))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clip_sigma"):
            calibrate_accuracy_offset(precision, ones, ones, ones, clip_sigma=bad)


def test_accuracy_per_population_recovers_each_populations_floor():
    """Giants (predicted Teff 4500, log g 2.5, [Fe/H] 0) with a 5 K floor, hot stars (7500 K) with a 150 K floor and
    a few stars in no population: one global floor would be too large for the giants and too small for the hot
    stars; each population gets its own and the rest the global one."""
    rng = np.random.default_rng(7)
    labels = ["teff", "logg", "fe_h"]
    centre = {"giants": (4500.0, 2.5, 0.0), "hot": (7500.0, 4.0, -0.3), "": (3000.0, 1.0, 0.0)}
    floors = {"giants": np.array([5.0, 0.02, 0.01]), "hot": np.array([150.0, 0.2, 0.08]),
              "": np.array([60.0, 0.1, 0.05])}
    counts = {"giants": 600, "hot": 600, "": 12}
    values, truth, raw = [], [], []
    for name, n in counts.items():
        t = np.array(centre[name]) + rng.normal(0, [30.0, 0.05, 0.02], (n, 3))
        r = rng.uniform(0.5, 1.5, (n, 3)) * np.array([10.0, 0.02, 0.01])
        values.append(t + (r + floors[name]) * rng.standard_normal((n, 3)))
        truth.append(t)
        raw.append(r)
    values, truth, raw = (np.concatenate(a) for a in (values, truth, raw))
    # a global repeat-pair model that overstates every population's errors 3x: the populations' own fits are free
    precision = NoiseModel(labels, [3.0] * 3, [0.0] * 3, {"calibrated": True})
    model = calibrate_accuracy_by_population(precision, values, truth, raw, min_spectra=30, source="test")
    assert np.all(model.scale >= 3.0)  # the global fit stays bounded by the precision model
    assert sorted(model.by_population) == ["giants", "hot"]
    population = population_of_predictions(labels, values)
    for name in ("giants", "hot"):  # the errors the population's model gives are the true ones (raw + floor)
        rows = population == name
        np.testing.assert_allclose(np.median(model.apply(raw[rows], population[rows]), axis=0),
                                   np.median(raw[rows] + floors[name], axis=0), rtol=0.1)
    report = model.diagnostics["accuracy_by_population"]["populations"]
    assert report["dwarfs"]["model"].startswith("global") and report["giants"]["n"] == 600
    z = (values - truth) / model.apply(raw, population)
    for name in ("giants", "hot"):
        rows = population == name
        np.testing.assert_allclose(np.std(z[rows], axis=0), 1.0, atol=0.08)
    # with the global model alone the giants' errors are overestimated
    rows = population == "giants"
    assert np.all(np.std((values[rows] - truth[rows]) / model.apply(raw[rows]), axis=0) < 0.8)
    # stored and read back; the precision part has no population models
    back = NoiseModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(back.apply(raw, population), model.apply(raw, population))
    assert not precision_part(model).by_population and "accuracy_by_population" not in precision_part(model).diagnostics
    with pytest.raises(ValueError, match="unknown population"):
        NoiseModel(labels, [1.0] * 3, [0.0] * 3, by_population={"subgiants": ([1.0] * 3, [0.0] * 3)})
    with pytest.raises(ValueError, match="population has shape"):
        model.apply(raw, population[:5])
    with pytest.raises(ValueError, match="fe_h"):
        population_of_predictions(["teff", "logg"], values[:, :2])
    with pytest.raises(ValueError, match="min_spectra"):
        calibrate_accuracy_by_population(precision, values, truth, raw, min_spectra=3)


def simulated_snr_errors(n, raw_scale, offset, snr_term, seed=3):
    """Labelled spectra at S/N 50, 100, 200 whose raw errors barely follow the S/N (as an MC-dropout spread) while
    their true errors have a part that scales as 1/(S/N)."""
    rng = np.random.default_rng(seed)
    snr = rng.choice([50.0, 100.0, 200.0], n)
    raw = rng.uniform(0.5, 1.5, (n, 2)) * np.array([10.0, 0.02]) * (100.0 / snr[:, None]) ** 0.1
    true_e = np.sqrt((raw_scale * raw + offset) ** 2 + (snr_term * 100.0 / snr[:, None]) ** 2)
    truth = np.column_stack([rng.uniform(4000, 5000, n), rng.uniform(1, 3, n)])
    return truth + true_e * rng.standard_normal((n, 2)), truth, raw, snr, true_e


def test_accuracy_snr_term_recovers_the_one_over_snr_part():
    snr_term, offset = np.array([40.0, 0.05]), np.array([5.0, 0.01])
    values, truth, raw, snr, true_e = simulated_snr_errors(6000, 1.0, offset, snr_term)
    precision = NoiseModel(["teff", "logg"], [1.0, 1.0], [0.0, 0.0], {"calibrated": True})
    # the term alone (the factor of test_snr_power_* is fitted by default and trades off with it on such data)
    model = calibrate_accuracy_offset(precision, values, truth, raw, raise_scale=True, snr=snr, snr_power=False)
    assert model.needs_snr and np.all(model.snr_power == 0) and model.snr_ceiling == np.inf
    np.testing.assert_allclose(model.snr_term, snr_term, rtol=0.1)
    np.testing.assert_allclose(model.apply(raw, snr=snr), true_e, rtol=0.15)
    linear = calibrate_accuracy_offset(precision, values, truth, raw, raise_scale=True)
    assert not linear.needs_snr
    for s in (50.0, 200.0):  # std z = 1 at every S/N with the term; the linear model is wrong at both ends
        rows = snr == s
        z_snr = (values[rows] - truth[rows]) / model.apply(raw[rows], snr=snr[rows])
        z_lin = (values[rows] - truth[rows]) / linear.apply(raw[rows])
        np.testing.assert_allclose(np.std(z_snr, axis=0), 1.0, atol=0.07)
        assert np.all(np.abs(np.std(z_lin, axis=0) - 1.0) > 0.15)
    report = model.diagnostics["accuracy"]["labels"]["teff"]
    assert report["snr_term_precision"] == 0.0 and report["snr_term_accuracy"] == pytest.approx(model.snr_term[0])
    assert not precision_part(model).needs_snr  # the repeat-pair model has no S/N term
    with pytest.raises(ValueError, match="S/N term"):
        model.apply(raw)
    with pytest.raises(ValueError, match="snr has shape"):
        model.apply(raw, snr=snr[:3])
    with pytest.raises(ValueError, match="one value per spectrum"):
        calibrate_accuracy_offset(precision, values, truth, raw, snr=snr[:3])
    e = model.apply(raw[:3], snr=np.array([np.nan, 0.0, 100.0]))
    assert np.all(np.isnan(e[:2])) and np.all(np.isfinite(e[2]))  # no S/N: no error rather than a wrong one


def test_snr_term_per_population_and_storage():
    rng = np.random.default_rng(11)
    labels = ["teff", "logg", "fe_h"]
    centre = {"giants": (4500.0, 2.5, 0.0), "hot": (7500.0, 4.0, -0.3)}
    terms = {"giants": np.array([10.0, 0.02, 0.01]), "hot": np.array([100.0, 0.15, 0.06])}
    values, truth, raw, snr = [], [], [], []
    for name in centre:
        s = rng.choice([50.0, 100.0, 200.0], 900)
        t = np.array(centre[name]) + rng.normal(0, [30.0, 0.05, 0.02], (900, 3))
        r = rng.uniform(0.5, 1.5, (900, 3)) * np.array([5.0, 0.01, 0.005])
        e = np.sqrt(r ** 2 + (terms[name] * 100.0 / s[:, None]) ** 2)
        values.append(t + e * rng.standard_normal((900, 3)))
        truth.append(t), raw.append(r), snr.append(s)
    values, truth, raw, snr = (np.concatenate(a) for a in (values, truth, raw, snr))
    precision = NoiseModel(labels, [1.0] * 3, [0.0] * 3, {"calibrated": True})
    model = calibrate_accuracy_by_population(precision, values, truth, raw, min_spectra=30, snr=snr,
                                             snr_power=False)
    for name in centre:
        np.testing.assert_allclose(model.by_population[name][2], terms[name], rtol=0.15)
    population = population_of_predictions(labels, values)
    back = NoiseModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(back.apply(raw, population, snr), model.apply(raw, population, snr))
    # the S/N is needed only for rows whose model has the term: here the global model has none
    only_populations = NoiseModel(labels, [1.0] * 3, [0.0] * 3, by_population=model.by_population)
    outside = np.full(3, "dwarfs")
    np.testing.assert_array_equal(only_populations.apply(raw[:3], outside), raw[:3])
    with pytest.raises(ValueError, match="S/N term"):
        only_populations.apply(raw[:3], population[:3])
    # a model of 0.5.27 (no snr_term in the dictionary, populations as (scale, offset)) reads as before
    old = {"labels": labels, "scale": [1.0] * 3, "offset": [1.0] * 3,
           "by_population": {"hot": {"scale": [2.0] * 3, "offset": [0.0] * 3}}}
    read = NoiseModel.from_dict(old)
    assert not read.needs_snr and "snr_term" not in read.to_dict()
    np.testing.assert_array_equal(read.apply(np.ones((1, 3)), np.array(["hot"])), 2.0)
    with pytest.raises(ValueError, match="S/N 50"):
        NoiseModel.from_dict(dict(model.to_dict(), snr_reference=50.0))
    with pytest.raises(ValueError, match="snr_term >= 0"):
        NoiseModel(labels, [1.0] * 3, [0.0] * 3, snr_term=[-1.0, 0.0, 0.0])


def simulated_widening_errors(n, offset, power, seed=5):
    """Labelled spectra at S/N 50, 100, 200 whose whole error (raw part and floor) grows as (100 / S/N)^power while
    their raw errors barely follow the S/N."""
    rng = np.random.default_rng(seed)
    snr = rng.choice([50.0, 100.0, 200.0], n)
    raw = rng.uniform(0.5, 1.5, (n, 2)) * np.array([10.0, 0.02]) * (100.0 / snr[:, None]) ** 0.1
    true_e = (raw + offset) * (100.0 / snr[:, None]) ** power
    truth = np.column_stack([rng.uniform(4000, 5000, n), rng.uniform(1, 3, n)])
    return truth + true_e * rng.standard_normal((n, 2)), truth, raw, snr, true_e


def test_snr_power_recovers_an_error_that_widens_with_the_noise():
    power, offset = np.array([0.6, 0.3]), np.array([5.0, 0.01])
    values, truth, raw, snr, true_e = simulated_widening_errors(6000, offset, power)
    precision = NoiseModel(["teff", "logg"], [1.0, 1.0], [0.0, 0.0], {"calibrated": True})
    model = calibrate_accuracy_offset(precision, values, truth, raw, raise_scale=True, snr=snr)
    np.testing.assert_allclose(model.snr_power, power, atol=0.08)
    assert model.snr_ceiling == 200.0  # the 99th percentile of the calibration S/N
    np.testing.assert_allclose(model.apply(raw, snr=snr), true_e, rtol=0.15)
    term_only = calibrate_accuracy_offset(precision, values, truth, raw, raise_scale=True, snr=snr, snr_power=False)
    worst = {"power": 0.0, "term": 0.0}
    for s in (50.0, 100.0, 200.0):
        rows = snr == s
        for name, m in (("power", model), ("term", term_only)):
            z = (values[rows] - truth[rows]) / m.apply(raw[rows], snr=snr[rows])
            worst[name] = max(worst[name], float(np.max(np.abs(np.std(z, axis=0) - 1.0))))
    assert worst["power"] < 0.04 and worst["term"] > 0.08  # the term alone is wrong at one end of the S/N range
    report = model.diagnostics["accuracy"]
    assert report["snr_ceiling"] == 200.0 and report["labels"]["teff"]["snr_power_precision"] == 0.0
    assert report["labels"]["logg"]["snr_power_accuracy"] == pytest.approx(model.snr_power[1])
    assert not precision_part(model).needs_snr
    # beyond the ceiling the factor is held: a S/N 1000 spectrum gets the errors of S/N 200 (bar the 1/(S/N) term)
    factor_only = NoiseModel(["teff", "logg"], model.scale, model.offset, snr_power=model.snr_power,
                             snr_ceiling=model.snr_ceiling)
    np.testing.assert_array_equal(factor_only.apply(raw[:2], snr=np.full(2, 1000.0)),
                                  factor_only.apply(raw[:2], snr=np.full(2, 200.0)))
    assert np.all(factor_only.apply(raw[:2], snr=np.full(2, 50.0)) > factor_only.apply(raw[:2], snr=np.full(2, 100.0)))
    with pytest.raises(ValueError, match="S/N term or factor"):
        factor_only.apply(raw[:2])
    with pytest.raises(ValueError, match="S/N factor"):
        calibrate_accuracy_offset(factor_only, values, truth, raw)
    with pytest.raises(ValueError, match="snr_power >= 0"):
        NoiseModel(["teff"], [1.0], [0.0], snr_power=[-0.5])
    with pytest.raises(ValueError, match="snr_ceiling"):
        NoiseModel(["teff"], [1.0], [0.0], snr_ceiling=0.0)


def test_snr_power_per_population_and_storage():
    rng = np.random.default_rng(13)
    labels = ["teff", "logg", "fe_h"]
    centre = {"giants": (4500.0, 2.5, 0.0), "hot": (7500.0, 4.0, -0.3)}
    powers = {"giants": np.array([0.2, 0.4, 0.3]), "hot": np.array([0.8, 0.6, 0.7])}
    values, truth, raw, snr = [], [], [], []
    for name in centre:
        s = rng.choice([50.0, 100.0, 200.0], 1500)
        t = np.array(centre[name]) + rng.normal(0, [30.0, 0.05, 0.02], (1500, 3))
        r = rng.uniform(0.5, 1.5, (1500, 3)) * np.array([20.0, 0.04, 0.02])
        values.append(t + r * (100.0 / s[:, None]) ** powers[name] * rng.standard_normal((1500, 3)))
        truth.append(t), raw.append(r), snr.append(s)
    values, truth, raw, snr = (np.concatenate(a) for a in (values, truth, raw, snr))
    precision = NoiseModel(labels, [1.0] * 3, [0.0] * 3, {"calibrated": True})
    model = calibrate_accuracy_by_population(precision, values, truth, raw, min_spectra=30, snr=snr)
    for name in centre:
        assert len(model.by_population[name]) == 4
        np.testing.assert_allclose(model.by_population[name][3], powers[name], atol=0.1)
    assert model.snr_ceiling == 200.0
    population = population_of_predictions(labels, values)
    stored = model.to_dict()
    assert stored["snr_ceiling"] == 200.0 and len(stored["by_population"]["hot"]["snr_power"]) == 3
    back = NoiseModel.from_dict(stored)
    np.testing.assert_array_equal(back.apply(raw, population, snr), model.apply(raw, population, snr))
    # a model of 0.5.28 (an S/N term, no factor) reads and writes as before
    old = {"labels": labels, "scale": [1.0] * 3, "offset": [0.0] * 3, "snr_term": [1.0] * 3, "snr_reference": 100.0,
           "by_population": {"hot": {"scale": [2.0] * 3, "offset": [0.0] * 3, "snr_term": [0.0] * 3}}}
    read = NoiseModel.from_dict(old)
    assert read.needs_snr and np.all(read.by_population["hot"][3] == 0) and read.snr_ceiling == np.inf
    assert "snr_power" not in read.to_dict() and "snr_ceiling" not in read.to_dict()
    np.testing.assert_array_equal(read.apply(np.ones((1, 3)), np.array(["hot"]), np.array([100.0])), 2.0)
