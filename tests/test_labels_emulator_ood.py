import numpy as np
import pytest
import torch

from stellarnn.labels.emulator_ood import (FLAG_FAR_OUTSIDE_TRAINING, FLAG_OOD_CHI2, FLAG_OOD_CHI2_BAD,
                                           FLAG_OUTSIDE_TRAINING, LABEL_ERROR_ALLOWANCE, EmulatorOOD, label_distance,
                                           ood_flags)
from stellarnn.labels.spectrum_information import FLAG_FEATURELESS, assess_information
from stellarnn.spectra import apogee_wavelength


@pytest.fixture(scope="module")
def ood():
    return EmulatorOOD()


def _labels(ood, teff, logg, m_h, x_m=0.0):
    lab = np.zeros((1, len(ood.label_names)))
    for j, name in enumerate(ood.label_names):
        lab[0, j] = {"teff": teff, "logg": logg, "m_h": m_h, "v_micro": 1.2}.get(name, x_m)
    return lab


def _observed(ood, labels, snr=100.0, seed=0, extra=None):
    """apStar-like spectra: emulator flux x a sloped continuum (x1000) + noise at ``snr``."""
    with torch.inference_mode():
        norm = ood.model(torch.as_tensor(labels, dtype=torch.float32)).double().numpy()
    if extra is not None:
        norm = norm * extra
    cont = 1000.0 * np.linspace(0.8, 1.2, norm.shape[1])
    rng = np.random.default_rng(seed)
    flux = norm * cont + cont / snr * rng.standard_normal(norm.shape)
    return flux, np.broadcast_to((cont / snr) ** -2, flux.shape).copy()


def test_chi2_near_one_for_the_right_star_and_large_for_a_wrong_one(ood):
    truth = np.vstack([_labels(ood, 4800, 2.5, -0.2), _labels(ood, 6000, 4.2, -0.5)])
    flux, ivar = _observed(ood, truth)
    info = assess_information(flux, ivar)
    assert (info.flags == 0).all()
    right = ood.measure(truth, info)
    assert np.all((right["ood_chi2"] > 0.7) & (right["ood_chi2"] < 1.3)), right["ood_chi2"]
    assert (right["line_snr"] > 20).all()
    wrong = truth.copy()
    wrong[:, 0] += 1500.0  # 1500 K too hot
    wrong[:, 2] -= 1.0
    bad = ood.measure(wrong, info)
    # far above 1: the cool giant's many lines more than the warm dwarf's few
    assert bad["ood_chi2"][0] > 10 and bad["ood_chi2"][1] > 3, bad["ood_chi2"]
    # a star with lines the grid lacks (Brackett-like H I lines): large chi^2 even at its labels
    wl = apogee_wavelength()
    lines = np.ones_like(wl)
    for centre in (15265.0, 15345.0, 15443.0, 15560.0, 15705.0, 15885.0, 16113.0, 16411.0, 16811.0):
        lines *= 1 - 0.35 / (1 + ((wl - centre) / 10.0) ** 2)
    flux_h, ivar_h = _observed(ood, truth, extra=lines)
    hot = ood.measure(truth, assess_information(flux_h, ivar_h))
    assert (hot["ood_chi2"] > 25).all()


def test_noise_only_has_no_line_pattern(ood):
    rng = np.random.default_rng(3)
    flux = 1000 + 10 * rng.standard_normal((4, 8575))
    info = assess_information(flux, np.full(flux.shape, 1e-2))
    m = ood.measure(ood.grid_labels([4500, 5500, 7000, 3600], [2, 4, 4, 1], [0, -1, -2, 0.2]), info)
    assert (np.abs(m["line_snr"]) < 5).all()
    assert (ood_flags(m["ood_chi2"], m["line_snr"], np.zeros(4)) & FLAG_FEATURELESS).all()


def test_profiling_the_missing_labels_lowers_chi2(ood):
    truth = _labels(ood, 4300, 2.0, 0.0, x_m=0.3)  # enhanced abundances the predicted labels do not carry
    flux, ivar = _observed(ood, truth, seed=4)
    info = assess_information(flux, ivar)
    solar = ood.grid_labels([4300], [2.0], [0.0])
    plain = ood.measure(solar, info)["ood_chi2"][0]
    free = [n for n in ood.label_names if n not in ("teff", "logg", "m_h")]
    profiled = ood.measure(solar, info, profile=free)["ood_chi2"][0]
    assert profiled < 0.5 * plain and profiled < 3


def test_refining_steps_only_for_spectra_the_first_step_misses(ood, monkeypatch):
    import stellarnn.labels.emulator_ood as module

    # a cool giant whose abundances are far from the predicted solar ones, and one that matches them
    truth = np.vstack([_labels(ood, 3900, 1.2, 0.0, x_m=0.45), _labels(ood, 4800, 2.5, 0.0)])
    flux, ivar = _observed(ood, truth, seed=5)
    info = assess_information(flux, ivar)
    solar = ood.grid_labels([3900, 4800], [1.2, 2.5], [0.0, 0.0])
    free = [n for n in ood.label_names if n not in ("teff", "logg", "m_h")]
    assert module.PROFILE_ITERATIONS > 1
    refined = ood.measure(solar, info, profile=free)["ood_chi2"]
    monkeypatch.setattr(module, "PROFILE_ITERATIONS", 1)
    one = ood.measure(solar, info, profile=free)["ood_chi2"]
    assert one[0] > module.PROFILE_REFINE_CHI2  # the first step leaves the mismatch
    assert refined[0] < 0.8 * one[0]
    assert one[1] < module.PROFILE_REFINE_CHI2 and refined[1] == one[1]  # a good fit is not touched again


def test_profiling_stops_once_an_accepted_step_gains_little(ood, monkeypatch):
    import stellarnn.labels.emulator_ood as module

    # abundances far from the predicted solar ones, and lines the grid lacks: chi^2 stays above
    # PROFILE_REFINE_CHI2 whatever the steps do, so only the tolerance (or the iteration cap) ends them
    truth = _labels(ood, 3900, 1.2, 0.0, x_m=0.1)
    wl = apogee_wavelength()
    lines = np.ones_like(wl)
    for centre in (15345.0, 15705.0, 16113.0, 16811.0):
        lines *= 1 - 0.1 / (1 + ((wl - centre) / 8.0) ** 2)
    flux, ivar = _observed(ood, truth, seed=5, extra=lines)
    info = assess_information(flux, ivar)
    solar = ood.grid_labels([3900], [1.2], [0.0])
    free = [n for n in ood.label_names if n not in ("teff", "logg", "m_h")]
    calls = []
    model_kept = ood._model_kept
    monkeypatch.setattr(ood, "_model_kept", lambda scaled: calls.append(scaled.shape[0]) or model_kept(scaled))

    def run(tolerance):
        monkeypatch.setattr(module, "PROFILE_TOLERANCE", tolerance)
        calls.clear()
        chi2 = ood.measure(solar, info, profile=free)["ood_chi2"][0]
        return chi2, len(calls)

    default, n_default = run(module.PROFILE_TOLERANCE)
    exhaustive, n_exhaustive = run(0.0)  # never converged: every step the iteration cap allows
    first_only, n_first = run(1.0)  # any accepted step converges
    assert n_exhaustive == module.PROFILE_ITERATIONS > n_default >= n_first
    assert exhaustive <= default <= first_only
    # the steps the default tolerance skips gain < 1 % of chi^2 together
    assert default <= 1.01 * exhaustive


@pytest.mark.parametrize("activation", ["leaky_relu", "silu"])
def test_jacobian_chain_rule_matches_autograd(ood, activation):
    # the profiling's hand-written chain rule must hold for both emulator activations (the retrained emulator
    # is SiLU: without its rule every row of the pipelines' OOD measure failed)
    from stellarnn.synthesis.emulator import PayneEmulator

    torch.manual_seed(0)
    small = PayneEmulator(len(ood.label_names), ood.model.flux_net[-1].out_features, (8, 8),
                          n_continuum=ood.model.n_continuum, activation=activation)
    saved, ood.model = ood.model, small
    try:
        scaled = torch.rand(3, len(ood.label_names), dtype=torch.float64) - 0.5
        free = torch.tensor([0, 1, 5])
        got, flux = ood._jacobian(scaled, free)
        assert torch.allclose(flux, ood._model_kept(scaled), rtol=1e-5, atol=1e-6)  # the same pass's flux

        def kept(theta, row):
            full = scaled[row].to(torch.float32).clone()
            full[free] = theta
            return small.forward_scaled(full[None])[0, ood.kept]

        for row in range(3):
            want = torch.func.jacrev(lambda t: kept(t, row))(scaled[row, free].to(torch.float32))
            assert torch.allclose(got[row].float(), want, rtol=1e-4, atol=1e-6)
    finally:
        ood.model = saved


def test_grid_labels_clip_to_the_box_and_convert_abundances(ood):
    lab = ood.grid_labels([9000.0, np.nan], [4.0, 2.0], [0.1, -0.2], {"mg_h": np.array([0.4, np.nan])})
    j = {n: i for i, n in enumerate(ood.label_names)}
    assert lab[0, j["teff"]] == pytest.approx(ood.box_max[j["teff"]])
    assert lab[1, j["teff"]] == pytest.approx(0.5 * (ood.box_min[j["teff"]] + ood.box_max[j["teff"]]))
    assert lab[0, j["mg_m"]] == pytest.approx(0.3)  # [Mg/M] = [Mg/H] - [Fe/H]
    assert lab[1, j["mg_m"]] == pytest.approx(0.0, abs=1e-3) and lab[0, j["c_m"]] == 0.0  # NaN: box centre


def test_label_distance_and_bits():
    d = label_distance([5000, 9000, 3000, 3400, np.nan], [2, 4, 1, 1, 2], [0, 0, 0, 0, 0])
    assert d[0] == 0 and d[1] == pytest.approx(4.0) and d[2] == pytest.approx(2.0)
    assert d[3] == pytest.approx(0.4) and np.isinf(d[4])
    bits = ood_flags([1.0, 30.0, 200.0, 1.0, 1.0], [50, 50, 50, 50, 50], [0, 0, 0, 0.4, 2.0])
    assert bits.tolist() == [0, FLAG_OOD_CHI2, FLAG_OOD_CHI2 | FLAG_OOD_CHI2_BAD, FLAG_OUTSIDE_TRAINING,
                             FLAG_OUTSIDE_TRAINING | FLAG_FAR_OUTSIDE_TRAINING]


def test_label_distance_allows_for_the_label_uncertainty():
    d = label_distance([3460.0, 3200.0, 8100.0, 3426.0], [2.0, 2.0, 4.0, 1.4], [0.0, 0.0, 0.6, 0.0],
                       errors={"teff": [100.0, 100.0, np.nan, 92.0], "logg": None, "fe_h": [0.05, 0.05, 0.05, 0.05]})
    assert LABEL_ERROR_ALLOWANCE == 0.5
    assert d[0] == 0  # 40 K outside the box, 100 K uncertainty: within half of it
    assert d[1] == pytest.approx((300 - 50) / 250)
    assert d[2] == pytest.approx(np.hypot(100 / 250, 0.075 / 0.25))  # NaN error counts as none
    # AstroNN's prediction for a 2800-3200 K M giant (bench/labels.py bad set): 74 K below, more than half its 92 K
    assert d[3] == pytest.approx((74 - 46) / 250) and d[3] > 0


def test_brackett_mask_hides_a_fake_deep_brackett_line(ood):
    from stellarnn.spectra.brackett_mask import CORE_LINES, brackett_wavelength_vacuum

    masked = EmulatorOOD(ood.path, brackett_mask=True)
    assert ood.brackett_mask is False  # the default: the shipped networks' behaviour
    wl = apogee_wavelength()

    def lines(n_uppers, sigma, depth=0.5):
        out = np.ones_like(wl)
        for n in n_uppers:
            out *= 1 - depth * np.exp(-0.5 * ((wl - brackett_wavelength_vacuum(n)) / sigma) ** 2)
        return out

    hot, cool = _labels(ood, 7000, 4.2, 0.0), _labels(ood, 4800, 2.5, -0.2)
    # narrow cores (sigma 0.7 A) at Br 11-20 in a hot star: only the +-3 A cores are masked
    flux, ivar = _observed(ood, hot, seed=5, extra=lines(CORE_LINES, 0.7))
    info = assess_information(flux, ivar)
    plain, hidden = ood.measure(hot, info), masked.measure(hot, info)
    assert plain["ood_chi2"][0] > 3, plain["ood_chi2"]
    assert 0.7 < hidden["ood_chi2"][0] < 1.3, hidden["ood_chi2"]
    # broad Br 11-13 lines (sigma 4 A): hidden by the +-20 A windows of a cool star only
    flux, ivar = _observed(ood, np.vstack([cool, hot]), seed=6, extra=lines((11, 12, 13), 4.0))
    info = assess_information(flux, ivar)
    both = np.vstack([cool, hot])
    plain, hidden = ood.measure(both, info), masked.measure(both, info)
    assert plain["ood_chi2"][0] > 3 and plain["ood_chi2"][1] > 3, plain["ood_chi2"]
    assert 0.7 < hidden["ood_chi2"][0] < 1.3, hidden["ood_chi2"]  # cool: wide windows
    assert hidden["ood_chi2"][1] > 3, hidden["ood_chi2"]  # hot: the line wings stay in
    # the masked pixels count in neither measure: garbage there changes nothing when the mask is on
    from stellarnn.spectra import kept_pixel_index
    from stellarnn.spectra.brackett_mask import brackett_mask

    info = assess_information(*_observed(ood, cool, seed=7))
    before = masked.measure(cool, info)
    in_mask = torch.as_tensor(brackett_mask(wl[kept_pixel_index()], 4800.0))
    assert int(in_mask.sum()) == 691
    info.continuum.flux[:, in_mask] = 5.0
    after, unmasked = masked.measure(cool, info), ood.measure(cool, info)
    for key in ("ood_chi2", "line_snr"):
        np.testing.assert_allclose(after[key], before[key], rtol=1e-9)
    assert unmasked["ood_chi2"][0] > 100 * before["ood_chi2"][0]
