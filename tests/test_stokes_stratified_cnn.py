import numpy as np
import pytest
import torch

from stellarnn.stokes.milne_eddington import MilneEddington
from stellarnn.stokes.stratified_cnn import (StratifiedCNN, augment_symmetries, pearson_and_rmse, train_stratified_cnn,
                                            weak_field_blos)
from stellarnn.stokes.lightweaver_driver import TARGET_NAMES
from stellarnn.train import load_checkpoint


def test_weak_field_blos_recovers_weak_me_field():
    me = MilneEddington()
    p = torch.tensor([[50.0, 30.0, 0.0, 0.0, 30.0, 5.0, 0.2, 0.2, 0.8],
                      [80.0, 150.0, 0.0, 0.5, 35.0, 8.0, 0.1, 0.3, 0.7]], dtype=torch.float64)
    b = weak_field_blos(me(p))
    expected = p[:, 0] * torch.cos(torch.deg2rad(p[:, 1]))
    # the finite-difference dI/dλ at 21.5 mÅ sampling of PSF-smoothed lines over-estimates B by ~10 %
    assert torch.allclose(b, expected, rtol=0.15)
    assert torch.all(torch.sign(b) == torch.sign(expected))


def test_pearson_and_rmse():
    t = np.random.default_rng(0).normal(size=(100, 2, 3))
    r, rmse = pearson_and_rmse(2 * t + 1, t)
    assert np.allclose(r, 1.0) and rmse.shape == (2, 3)
    assert np.allclose(pearson_and_rmse(t, t)[1], 0.0)


def test_training_with_and_without_physics_term(tmp_path):
    # a learnable toy relation: targets are smooth functions of ME parameters of the profiles
    me = MilneEddington()
    g = torch.Generator().manual_seed(0)
    n = 160
    p = torch.stack([torch.rand(n, generator=g) * 500, torch.rand(n, generator=g) * 180, torch.rand(n, generator=g) * 180,
                     torch.rand(n, generator=g) * 4 - 2, torch.full((n,), 30.0), torch.full((n,), 8.0),
                     torch.full((n,), 0.2), torch.full((n,), 0.2), torch.full((n,), 0.8)], 1).double()
    stokes = me(p).float().numpy()
    blos = (p[:, 0] * torch.cos(torch.deg2rad(p[:, 1]))).numpy()
    targets = np.zeros((n, 6, 11), np.float32)
    targets[:, 0] = 5000.0
    targets[:, 0] += np.linspace(0, 1, 11)[None] * 100
    targets[:, 1] = p[:, 3].numpy()[:, None]
    targets[:, 2] = blos[:, None]
    targets[:, 3] = (p[:, 0] * torch.sin(torch.deg2rad(p[:, 1]))).numpy()[:, None]
    targets[:, 4] = np.sin(np.deg2rad(2 * p[:, 2].numpy()))[:, None]
    targets[:, 5] = np.cos(np.deg2rad(2 * p[:, 2].numpy()))[:, None]
    for w in (0.0, 0.5):
        m = train_stratified_cnn(stokes, targets, tmp_path / f"s{w}.pt", physics_weight=w, epochs=2, batch_size=32,
                                 channels=8, hidden=32, progress=False)
        assert m["physics_weight"] == w and len(m["pearson_r"]["B_los"]) == 11
        # weak-field factor on ME profiles with depth-independent B: ~1.1 (the sampled dI/dλ, see weak_field_blos)
        assert 0.95 < m["weak_field_factor_kappa"] < 1.25
        model, _ = load_checkpoint(tmp_path / f"s{w}.pt", expected_kind="stokes_stratified_cnn")
        assert isinstance(model, StratifiedCNN)
    with pytest.raises(ValueError):
        train_stratified_cnn(stokes[:2], targets[:2], tmp_path / "x.pt")
    bad = stokes.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_stratified_cnn(bad, targets, tmp_path / "y.pt")


def test_augment_symmetries_match_transformed_me_profiles():
    # rotating χ and mirroring (γ, χ) → (180 − γ, 180 − χ) in the forward model must give what
    # augment_symmetries makes of the original profiles and targets
    me = MilneEddington()
    p = torch.tensor([[800.0, 35.0, 20.0, 0.5, 30.0, 8.0, 0.2, 0.2, 0.8],
                      [1500.0, 120.0, 140.0, -1.0, 35.0, 6.0, 0.1, 0.3, 0.7],
                      [300.0, 80.0, 75.0, 0.0, 28.0, 10.0, 0.2, 0.25, 0.75],
                      [2000.0, 10.0, 170.0, 1.5, 32.0, 12.0, 0.3, 0.2, 0.8]], dtype=torch.float64)
    p = p.repeat(4, 1)
    stokes = me(p)

    def targets_of(q):
        g, c2 = torch.deg2rad(q[:, 1]), 2 * torch.deg2rad(q[:, 2])
        rows = [torch.full_like(g, 5000.0), q[:, 3], q[:, 0] * torch.cos(g), q[:, 0] * torch.sin(g),
                torch.sin(c2), torch.cos(c2)]
        return torch.stack(rows, 1)[:, :, None].repeat(1, 1, 3)

    b_wf = weak_field_blos(stokes)
    aug, t_aug, b_aug = augment_symmetries(stokes, targets_of(p), b_wf, generator=torch.Generator().manual_seed(3))
    sign = torch.sign(t_aug[:, 2, 0] / targets_of(p)[:, 2, 0])
    assert (sign < 0).any() and (sign > 0).any()
    chi_new = torch.rad2deg(0.5 * torch.atan2(t_aug[:, 4, 0], t_aug[:, 5, 0])) % 180.0
    q = p.clone()
    q[:, 1] = torch.where(sign < 0, 180.0 - p[:, 1], p[:, 1])
    q[:, 2] = chi_new
    expected = me(q)
    assert torch.allclose(aug, expected, atol=1e-10)
    assert torch.allclose(t_aug, targets_of(q), atol=1e-8)
    assert torch.allclose(b_aug, weak_field_blos(expected), atol=1e-6)
    assert not torch.allclose(aug[:, 1:3], stokes[:, 1:3], atol=1e-4)  # something was transformed


def test_shipped_stratified_cnn_on_held_out_lightweaver_profiles():
    # the shipped default (trained on seed 0) on 300 profiles of the held-out set (seed 1), 1e-3 noise
    from pathlib import Path

    from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES, TARGET_NAMES, load_stratified_set
    from stellarnn.stokes.stratified_cnn import StratifiedInverter

    root = Path(__file__).resolve().parents[1] / "weights" / "stokes"
    data = load_stratified_set(root / "stratified_heldout")
    stokes = data["stokes"][:300] + np.random.default_rng(0).normal(0, 1e-3, data["stokes"][:300].shape)
    inverter = StratifiedInverter(root / "stratified_cnn.pt")
    out = inverter.invert(stokes.astype(np.float32))
    node = int(np.argmin(np.abs(LOG_TAU_NODES + 1.0)))  # log tau = -1, where the lines form
    for name in ("temperature", "v_los", "B_los"):
        r, _ = pearson_and_rmse(out[name][:, node:node + 1], data["targets"][:300, TARGET_NAMES.index(name), node:node + 1])
        assert r[0] > 0.9, (name, r)
    assert np.all((out["chi"] >= 0) & (out["chi"] < 180)) and np.all(out["B"] >= np.abs(out["B_los"]) - 1e-6)
    with pytest.raises(ValueError, match="shape"):
        inverter.predict(np.zeros((2, 4, 100), np.float32))
    bad = stokes[:2].astype(np.float32)
    bad[0, 0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        inverter.predict(bad)


def test_constrained_outputs_are_physical_by_construction(tmp_path):
    """Issue 21, item 7: T and v_LOS bounded, B_perp >= 0 for any input, also after a float16 round trip."""
    from stellarnn.stokes.stratified_cnn import (B_PERP_SOFTPLUS_SCALE_GAUSS, TEMPERATURE_BOUNDS_K, V_LOS_MAX_KM_S,
                                                 StratifiedInverter, physical_outputs)

    raw = 50.0 * torch.randn(64, 6, 11, generator=torch.Generator().manual_seed(1))  # wildly unbounded
    phys = physical_outputs(raw)
    assert float(phys[:, 0].min()) >= TEMPERATURE_BOUNDS_K[0] and float(phys[:, 0].max()) <= TEMPERATURE_BOUNDS_K[1]
    assert float(phys[:, 1].abs().max()) <= V_LOS_MAX_KM_S and float(phys[:, 3].min()) >= 0.0
    assert float(phys[:, 4:].abs().max()) <= 1.0
    zero = physical_outputs(torch.zeros(1, 6, 11))
    assert float(zero[0, 0, 0]) == pytest.approx(7500.0) and float(zero[0, 1, 0]) == 0.0
    assert float(zero[0, 3, 0]) == pytest.approx(B_PERP_SOFTPLUS_SCALE_GAUSS * np.log(2.0))
    with pytest.raises(ValueError, match="quantities"):
        StratifiedCNN(n_quantities=3, constrained=True)
    # a tiny constrained network trained on targets where B_perp is often near 0 and T spans 4000-9000 K
    rng = np.random.default_rng(0)
    n = 120
    stokes = rng.normal(0, 0.05, (n, 4, 112)).astype(np.float32)
    stokes[:, 0] += 1.0
    targets = np.zeros((n, 6, 11), np.float32)
    targets[:, 0] = np.linspace(4000, 9000, 11)[None] + rng.normal(0, 300, (n, 1))
    targets[:, 1] = rng.normal(0, 2, (n, 1))
    targets[:, 2] = rng.normal(0, 200, (n, 1))
    targets[:, 3] = np.abs(rng.normal(0, 30, (n, 1)))
    chi = rng.uniform(0, np.pi, (n, 1))
    targets[:, 4], targets[:, 5] = np.sin(2 * chi), np.cos(2 * chi)
    metrics = train_stratified_cnn(stokes, targets, tmp_path / "c.pt", epochs=2, batch_size=32, channels=8,
                                   hidden=32, progress=False, constrained=True)
    assert metrics["epochs_run"] == 2
    inverter = StratifiedInverter(tmp_path / "c.pt")
    assert inverter.constrained
    extreme = torch.from_numpy(rng.normal(0, 5.0, (50, 4, 112)).astype(np.float32))  # far outside training
    out = inverter.invert(extreme)
    assert out["temperature"].min() >= 3000.0 and out["temperature"].max() <= 12000.0
    assert out["B_perp"].min() >= 0.0 and np.abs(out["v_los"]).max() <= V_LOS_MAX_KM_S
    assert out["unphysical"].sum() == 0 and out["B"].min() >= 0.0
    # the unconstrained network of the same data gives no such guarantee; its violations are flagged
    train_stratified_cnn(stokes, targets, tmp_path / "u.pt", epochs=2, batch_size=32, channels=8, hidden=32,
                         progress=False)
    free = StratifiedInverter(tmp_path / "u.pt").invert(extreme)
    flagged = (free["B_perp"] < 0) | (free["temperature"] < 3000) | (free["temperature"] > 12000)
    np.testing.assert_array_equal(free["unphysical"] > 0, flagged)


def test_out_of_distribution_flag_from_training_feature_statistics(tmp_path):
    """Issue 21, item 7: a retrain stores the penultimate-feature statistics; in-distribution profiles
    are (nearly) never flagged, absurd ones (V = I, pure noise, a flat line) always are."""
    from stellarnn.stokes.stratified_cnn import (OOD_PERCENTILE, StratifiedInverter, fit_feature_distribution,
                                                 mahalanobis_distance)

    me = MilneEddington()
    g = torch.Generator().manual_seed(2)

    def profiles(n):
        p = torch.stack([torch.rand(n, generator=g) * 1000, torch.rand(n, generator=g) * 180,
                         torch.rand(n, generator=g) * 180, torch.rand(n, generator=g) * 4 - 2,
                         28 + 6 * torch.rand(n, generator=g), 5 + 5 * torch.rand(n, generator=g),
                         torch.full((n,), 0.2), torch.full((n,), 0.2), torch.full((n,), 0.8)], 1).double()
        return p, me(p).float().numpy()

    p, stokes = profiles(240)
    targets = np.zeros((240, 6, 11), np.float32)
    targets[:, 0] = 5000.0 + 300 * p[:, 4:5].numpy() / 34
    targets[:, 1] = p[:, 3:4].numpy()
    targets[:, 2] = (p[:, 0] * torch.cos(torch.deg2rad(p[:, 1]))).numpy()[:, None]
    targets[:, 3] = (p[:, 0] * torch.sin(torch.deg2rad(p[:, 1]))).numpy()[:, None]
    targets[:, 4] = np.sin(np.deg2rad(2 * p[:, 2].numpy()))[:, None]
    targets[:, 5] = np.cos(np.deg2rad(2 * p[:, 2].numpy()))[:, None]
    metrics = train_stratified_cnn(stokes, targets, tmp_path / "ood.pt", epochs=3, batch_size=32, channels=8,
                                   hidden=32, progress=False, val_fraction=0.25)
    assert metrics["ood_percentile"] == OOD_PERCENTILE and metrics["ood_threshold"] > 0
    inverter = StratifiedInverter(tmp_path / "ood.pt")
    assert inverter.ood_available
    _, fresh = profiles(40)  # new draws from the training distribution
    rng = np.random.default_rng(5)
    fresh = fresh + rng.normal(0, 1e-3, fresh.shape).astype(np.float32)
    inside = inverter.out_of_distribution(fresh)
    assert inside["available"] and inside["distance"].shape == (40,)
    assert inside["flag"].mean() <= 0.1, inside["distance"]
    absurd = np.repeat(fresh[:3], 3, axis=0)
    absurd[0:3, 3] = absurd[0:3, 0]                       # Stokes V = I
    absurd[3:6] = rng.normal(0, 0.3, absurd[3:6].shape)   # noise
    absurd[6:9] = 1.0                                     # a flat I = 1, Q = U = V = 1
    outside = inverter.out_of_distribution(absurd)
    assert outside["flag"].all(), (outside["distance"], outside["threshold"])
    assert outside["distance"].min() > inside["distance"].max()
    # a checkpoint written before the statistics existed: nothing is computed, and it says so
    payload = torch.load(tmp_path / "ood.pt", weights_only=True)
    for key in ("ood_feature_mean", "ood_precision_cholesky", "ood_threshold", "ood_percentile"):
        del payload["normalisation"][key]
    torch.save(payload, tmp_path / "old.pt")
    old = StratifiedInverter(tmp_path / "old.pt").out_of_distribution(fresh)
    assert old["available"] is False and old["distance"] is None and "retrain" in old["note"]
    # the distance itself: identity precision gives the Euclidean norm; too few profiles is an error
    f = torch.tensor([[3.0, 4.0]])
    assert float(mahalanobis_distance(f, torch.zeros(2), torch.eye(2))[0]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="at least"):
        fit_feature_distribution(torch.zeros(1, 4), torch.zeros(1, 4))


def test_observation_effects_batch_matches_the_set_builder():
    """The on-the-fly training effects are the builder's stray light and continuum factor, per profile."""
    from stellarnn.stokes.lightweaver_driver import ObservationEffects, apply_observation_effects
    from stellarnn.stokes.stratified_cnn import observation_effects_batch

    rng = np.random.default_rng(3)
    stokes = rng.normal(0.0, 0.05, (3, 4, 112)) + np.array([1.0, 0.0, 0.0, 0.0])[None, :, None]
    qs = 1.0 - 0.4 * np.exp(-0.5 * ((np.arange(112) - 40) / 3.0) ** 2)
    fx = ObservationEffects(stray_light_max=0.3, continuum_error_sigma=0.02)
    expected, fs, cs = [], [], []
    for k in range(3):
        out, f, c = apply_observation_effects(stokes[k], qs, fx, np.random.default_rng(k))
        expected.append(out), fs.append(f), cs.append(c)
    fs[2], cs[2], expected[2] = 0.0, 1.0, stokes[2]  # a profile that keeps its own (built-in) effects
    got = observation_effects_batch(torch.as_tensor(stokes), torch.as_tensor(qs), torch.tensor(fs, dtype=torch.float64),
                                     torch.tensor(cs, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), np.stack(expected), rtol=0, atol=1e-12)
    assert 0 < fs[0] < 0.3 and not np.allclose(got[0, 0].numpy(), stokes[0, 0])
    np.testing.assert_allclose(got[:, 1:].numpy() / np.stack(expected)[:, 1:], 1.0)  # Q, U, V only scaled


def test_training_with_observation_effects_on_the_fly(tmp_path):
    rng = np.random.default_rng(0)
    n = 64
    stokes = rng.normal(0.0, 0.01, (n, 4, 112)).astype(np.float32)
    stokes[:, 0] += 1.0
    targets = rng.normal(0.0, 1.0, (n, 6, 11)).astype(np.float32)
    qs = np.ones(112)
    with pytest.raises(ValueError, match="quiet_sun_intensity"):
        train_stratified_cnn(stokes, targets, tmp_path / "e.pt", stray_light_max=0.2, epochs=1, progress=False)
    with pytest.raises(ValueError, match="effects_applied"):
        train_stratified_cnn(stokes, targets, tmp_path / "e.pt", stray_light_max=0.2, quiet_sun_intensity=qs,
                             effects_applied=np.zeros(3, bool), epochs=1, progress=False)
    applied = np.arange(n) % 2 == 0
    m = train_stratified_cnn(stokes, targets, tmp_path / "e.pt", stray_light_max=0.2, continuum_error_sigma=0.01,
                             quiet_sun_intensity=qs, effects_applied=applied, epochs=1, batch_size=32, channels=8,
                             hidden=32, progress=False)
    assert m["observation_effects_on_the_fly"]["profiles_without_built_in_effects"] == n // 2
    assert m["observation_effects_on_the_fly"]["stray_light_max"] == 0.2


def test_field_loss_weighs_weak_fields_and_init_warm_starts(tmp_path, one_torch_thread):
    """The asinh field loss counts a weak-field error as much as a relative strong-field one; --init starts from a
    checkpoint's weights."""
    from stellarnn.stokes.stratified_cnn import StratifiedInverter, asinh_field_loss

    t = torch.tensor
    quiet = float(asinh_field_loss(t([40.0]), t([10.0]), 50.0))        # 30 G off a 10 G field
    umbra = float(asinh_field_loss(t([2100.0]), t([2000.0]), 50.0))     # 100 G off 2000 G (5 %)
    assert quiet > 5 * umbra  # in a standardised MSE (one scale for both) the umbra error would weigh 11x more
    assert float(asinh_field_loss(t([-300.0, 5.0]), t([-300.0, 5.0]))) == 0.0
    assert float(asinh_field_loss(t([-100.0]), t([100.0]), 50.0)) == pytest.approx((2 * np.arcsinh(2.0)) ** 2, rel=1e-6)
    rng = np.random.default_rng(3)
    n = 64
    stokes = rng.normal(0, 0.05, (n, 4, 112)).astype(np.float32)
    stokes[:, 0] += 1.0
    targets = np.zeros((n, 6, 11), np.float32)
    targets[:, 0] = 6000.0 + rng.normal(0, 100, (n, 1))
    targets[:, 1] = rng.normal(0, 1, (n, 1))
    targets[:, 2] = rng.normal(0, 300, (n, 1))
    targets[:, 3] = 10.0 + 30 * rng.random((n, 1))
    chi = rng.uniform(0, np.pi, (n, 1))
    targets[:, 4], targets[:, 5] = np.sin(2 * chi), np.cos(2 * chi)
    kw = dict(batch_size=32, channels=8, hidden=32, progress=False, constrained=True, seed=0)
    first = train_stratified_cnn(stokes, targets, tmp_path / "a.pt", epochs=2, field_loss_weight=1.0, **kw)
    assert first["field_loss"] == {"weight": 1.0, "scale_gauss": 50.0}
    # warm start: zero learning rate keeps the initial weights
    metrics = train_stratified_cnn(stokes, targets, tmp_path / "i.pt", epochs=1, lr=0.0, init_path=tmp_path / "a.pt", **kw)
    assert metrics["init_from"] == str(tmp_path / "a.pt")
    a = StratifiedInverter(tmp_path / "a.pt").invert(torch.from_numpy(stokes[:8]))
    c = StratifiedInverter(tmp_path / "i.pt").invert(torch.from_numpy(stokes[:8]))
    np.testing.assert_allclose(a["B_los"], c["B_los"], rtol=1e-2, atol=0.5)
    with pytest.raises(ValueError, match="field_loss"):
        train_stratified_cnn(stokes, targets, tmp_path / "x.pt", epochs=1, progress=False, field_loss_scale_gauss=0.0)


def test_target_weights_spend_the_loss_on_the_weighted_outputs(tmp_path, one_torch_thread):
    """target_weights_for weighs one quantity over a depth range; training with it records the weights and a weight
    of 0 elsewhere makes the loss ignore those outputs."""
    from stellarnn.stokes.lightweaver_driver import LOG_TAU_NODES
    from stellarnn.stokes.stratified_cnn import target_weights_for

    w = target_weights_for({"B_los": 5.0}, (-2.0, 0.0))
    row = list(TARGET_NAMES).index("B_los")
    inside = (LOG_TAU_NODES >= -2.0) & (LOG_TAU_NODES <= 0.0)
    assert w.shape == (6, LOG_TAU_NODES.size) and inside.sum() == 5
    assert (w[row, inside] == 5.0).all() and (w[row, ~inside] == 1.0).all()
    assert (np.delete(w, row, axis=0) == 1.0).all()
    with pytest.raises(ValueError, match="unknown quantities"):
        target_weights_for({"B": 2.0})
    with pytest.raises(ValueError, match="no node"):
        target_weights_for({"B_los": 2.0}, (2.0, 3.0))
    rng = np.random.default_rng(5)
    n = 48
    stokes = (rng.normal(0, 0.05, (n, 4, 112)) + np.array([1.0, 0, 0, 0])[None, :, None]).astype(np.float32)
    targets = rng.normal(0, 1, (n, 6, 11)).astype(np.float32)
    kw = dict(epochs=1, batch_size=16, channels=8, hidden=16, progress=False, augment=False, seed=0)
    only_b = np.zeros((6, 11))
    only_b[row] = 1.0
    torch.manual_seed(0)  # the network's initial weights come from torch's global generator
    m = train_stratified_cnn(stokes, targets, tmp_path / "w.pt", target_weights=only_b, **kw)
    assert m["target_weights"] == only_b.tolist()
    # the validation loss counts only B_los: targets of the other quantities do not change it
    shuffled = targets.copy()
    shuffled[:, [0, 1, 3, 4, 5]] = rng.normal(0, 1, (n, 5, 11))
    torch.manual_seed(0)
    m2 = train_stratified_cnn(stokes, shuffled, tmp_path / "w2.pt", target_weights=only_b, **kw)
    assert m2["best_val_loss"] == pytest.approx(m["best_val_loss"], rel=1e-5)
    with pytest.raises(ValueError, match="target_weights"):
        train_stratified_cnn(stokes, targets, tmp_path / "x.pt", target_weights=np.ones((6, 3)), **kw)


def test_routed_inverter_answers_each_profile_with_the_network_its_field_routes_it_to(tmp_path, one_torch_thread):
    from stellarnn.stokes.stratified_cnn import RoutedStratifiedInverter, StratifiedInverter

    rng = np.random.default_rng(7)
    n = 40
    stokes = (rng.normal(0, 0.05, (n, 4, 112)) + np.array([1.0, 0, 0, 0])[None, :, None]).astype(np.float32)
    targets = np.zeros((n, 6, 11), np.float32)
    targets[:, 0] = 6000.0
    targets[:, 2] = rng.uniform(-2000, 2000, (n, 1))
    targets[:, 3] = rng.uniform(0, 1000, (n, 1))
    chi = rng.uniform(0, np.pi, (n, 1))
    targets[:, 4], targets[:, 5] = np.sin(2 * chi), np.cos(2 * chi)
    kw = dict(epochs=1, batch_size=16, channels=8, hidden=16, progress=False, constrained=True)
    train_stratified_cnn(stokes, targets, tmp_path / "weak.pt", seed=0, **kw)
    train_stratified_cnn(stokes, targets, tmp_path / "strong.pt", seed=1, **kw)
    weak, strong = StratifiedInverter(tmp_path / "weak.pt"), StratifiedInverter(tmp_path / "strong.pt")
    x = torch.from_numpy(stokes)
    w, s = weak.invert(x), strong.invert(x)
    node = 6  # log tau -1
    b = np.hypot(w["B_los"][:, node], w["B_perp"][:, node])
    threshold = float(np.median(b))
    routed = RoutedStratifiedInverter(weak, strong, threshold_gauss=threshold)
    assert routed.route_node == node and routed.log_tau_nodes[node] == -1.0
    r = routed.invert(x)
    go = b > threshold
    assert 0 < go.sum() < n and np.array_equal(r["route"] > 0, go)
    np.testing.assert_allclose(r["B_los"][go], s["B_los"][go], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(r["temperature"][~go], w["temperature"][~go], rtol=1e-6)
    ood = routed.out_of_distribution(x)
    np.testing.assert_allclose(ood["distance"][go], strong.out_of_distribution(x)["distance"][go], rtol=1e-6)
    np.testing.assert_allclose(ood["distance"][~go], weak.out_of_distribution(x)["distance"][~go], rtol=1e-6)
    assert (RoutedStratifiedInverter(weak, strong, threshold_gauss=1e9).invert(x)["route"] == 0).all()
    with pytest.raises(ValueError, match="route_log_tau"):
        RoutedStratifiedInverter(weak, strong, route_log_tau=-1.25)
