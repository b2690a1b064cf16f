import numpy as np
import pytest

from stellarnn.stokes.lightweaver_driver import (BROAD_REGIME, CONTROL_NODES, LOG_TAU_NODES, PERTURBATION_PRIOR,
                                                 REGIME_PRIORS, LightweaverSynthesizer, ObservationEffects,
                                                 Stratification, apply_observation_effects, build_stratified_set,
                                                 draw_regime_stratification, load_stratified_set,
                                                 stratification_targets)


@pytest.fixture(scope="module")
def synthesizer():
    return LightweaverSynthesizer()


def test_targets_interpolate_on_log_tau_nodes():
    log_tau = np.linspace(-6, 2, 50)
    n = log_tau.size
    strat = Stratification(temperature=5000 + 1000 * log_tau, v_los=np.full(n, 1.5), vturb=np.zeros(n),
                           B=np.full(n, 1000.0), gamma=np.full(n, 60.0), chi=np.full(n, 30.0), nodes={})
    t = stratification_targets(strat, log_tau)
    assert t.shape == (6, LOG_TAU_NODES.size)
    assert t[0] == pytest.approx(5000 + 1000 * LOG_TAU_NODES)
    assert t[2] == pytest.approx(np.full(LOG_TAU_NODES.size, 500.0))
    assert t[3] == pytest.approx(np.full(LOG_TAU_NODES.size, 1000 * np.sin(np.deg2rad(60))))
    assert t[4] == pytest.approx(np.full(LOG_TAU_NODES.size, np.sin(np.deg2rad(60))))


@pytest.mark.slow
def test_random_stratification_in_prior(synthesizer):
    strat = synthesizer.random_stratification(np.random.default_rng(0))
    ref = synthesizer.reference.temperature
    assert np.all(np.abs(strat.temperature / ref - 1) <= 0.1 + 1e-9)
    assert strat.B.min() >= 0 and strat.gamma.max() <= 180 and strat.chi.max() < 180
    assert set(strat.nodes) == set(PERTURBATION_PRIOR) and len(strat.nodes["B"]) == CONTROL_NODES.size


@pytest.mark.slow
def test_field_free_synthesis_and_velocity_sign(synthesizer):
    n = synthesizer.reference.Nspace
    z = np.zeros(n)
    vt = synthesizer.reference.vturb / 1e3
    base = dict(temperature=synthesizer.reference.temperature, vturb=vt, B=z, gamma=z, chi=z, nodes={})
    s0, t0 = synthesizer.synthesize(Stratification(v_los=z, **base))
    s2, _ = synthesizer.synthesize(Stratification(v_los=z + 2.0, **base))
    assert s0.shape == (4, 112) and t0.shape == (6, LOG_TAU_NODES.size)
    assert np.abs(s0[1:]).max() < 1e-12  # B = 0: no polarisation
    assert s0[0].max() == pytest.approx(1.0, abs=5e-3)  # normalised to the FAL-C continuum
    wl = synthesizer.instrument.wavelengths
    window = (wl > 6301.2) & (wl < 6301.8)

    def centroid(s):
        d = (s[0].max() - s[0])[window]
        return (d * wl[window]).sum() / d.sum()

    # v_LOS = +2 km/s is a redshift of λ v / c ≈ 42 mÅ (PSF-sampled centroid, 5 mÅ tolerance)
    assert centroid(s2) - centroid(s0) == pytest.approx(6301.5 * 2.0 / 299792.458, abs=5e-3)


@pytest.mark.slow
def test_builder_is_chunked_and_resumable(tmp_path, synthesizer):
    first = build_stratified_set(tmp_path, 2, seed=5, chunk_size=1, progress=False, synthesizer=synthesizer)
    files = sorted(tmp_path.glob("lw_seed5_chunk*_n1.npz"))
    assert len(files) == 2 and first["stokes"].shape == (2, 4, 112) and first["targets"].shape == (2, 6, 11)
    stamps = [f.stat().st_mtime_ns for f in files]
    again = build_stratified_set(tmp_path, 2, seed=5, chunk_size=1, progress=False, synthesizer=synthesizer)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # nothing recomputed
    assert np.array_equal(again["stokes"], first["stokes"])
    assert not np.allclose(first["stokes"][0], first["stokes"][1])


@pytest.mark.slow
def test_parallel_builder_matches_serial(tmp_path, synthesizer):
    serial = build_stratified_set(tmp_path / "serial", 2, seed=7, chunk_size=1, progress=False, synthesizer=synthesizer)
    parallel = build_stratified_set(tmp_path / "parallel", 2, seed=7, chunk_size=1, progress=False, workers=2)
    assert np.allclose(parallel["stokes"], serial["stokes"], atol=1e-6)
    assert np.array_equal(parallel["targets"], serial["targets"])
    assert not list((tmp_path / "parallel").glob("*.part.npz"))


def test_builder_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError):
        build_stratified_set(tmp_path, 0)
    with pytest.raises(ValueError):
        build_stratified_set(tmp_path, 10, workers=0)


def _fake_chunk(path, n, value):
    np.savez(path, stokes=np.full((n, 4, 112), value, np.float32), targets=np.full((n, 6, LOG_TAU_NODES.size), value,
             np.float32), log_tau_nodes=LOG_TAU_NODES)


def test_load_stratified_set_reads_every_finished_chunk(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-set"):
        load_stratified_set(tmp_path)
    _fake_chunk(tmp_path / "lw_seed0_chunk00000_n3.npz", 3, 1.0)
    _fake_chunk(tmp_path / "lw_seed1_chunk00000_n2.npz", 2, 2.0)
    _fake_chunk(tmp_path / "lw_seed0_chunk00001_n3.npz.123.part.npz", 3, 9.0)  # in flight: ignored
    data = load_stratified_set(tmp_path)
    assert data["stokes"].shape == (5, 4, 112) and data["targets"].shape == (5, 6, LOG_TAU_NODES.size)
    assert sorted(np.unique(data["stokes"])) == [1.0, 2.0] and len(data["files"]) == 2
    np.savez(tmp_path / "lw_seed2_chunk00000_n1.npz", stokes=np.zeros((1, 4, 112)), targets=np.zeros((1, 6, 3)),
             log_tau_nodes=np.arange(3.0))
    with pytest.raises(ValueError, match="nodes"):
        load_stratified_set(tmp_path)


@pytest.mark.slow
def test_lightweaver_profiles_obey_the_training_symmetries(synthesizer):
    """The augmentation of the stratified CNN (apply_symmetry) is what Lightweaver computes for the
    rotated (χ + 30°) and mirrored ((γ, χ) → (180° − γ, 180° − χ)) atmospheres."""
    import dataclasses

    import torch

    from stellarnn.stokes.stratified_cnn import apply_symmetry

    strat = synthesizer.random_stratification(np.random.default_rng(7))
    stokes, targets = synthesizer.synthesize(strat)
    rotated = synthesizer.synthesize(dataclasses.replace(strat, chi=(strat.chi + 30.0) % 180.0))
    mirrored = synthesizer.synthesize(dataclasses.replace(strat, gamma=180.0 - strat.gamma, chi=(180.0 - strat.chi) % 180.0))
    s0, t0 = torch.from_numpy(stokes[None]), torch.from_numpy(targets[None])
    for (s_true, t_true), alpha, mirror, tol in ((rotated, 30.0, False, 5e-4), (mirrored, 0.0, True, 1e-10)):
        s_aug, t_aug, _ = apply_symmetry(s0, t0, alpha, mirror)
        assert np.abs(s_aug[0].numpy() - s_true).max() < tol
        assert np.allclose(t_aug[0].numpy(), t_true, atol=1e-9)
    assert np.abs(stokes[1:3]).max() > 1e-2 and np.abs(stokes[3]).max() > 1e-2  # a polarised profile


@pytest.fixture(scope="module")
def falc():
    import warnings

    from lightweaver.fal import Falc82

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Falc82()
    return ref.temperature, np.log10(ref.tauRef)


def test_regime_stratifications_stay_in_their_ranges(falc):
    """Issue 21, item 6: each regime's B, γ, T and v at log τ500 = 0 lie in its documented ranges."""
    temperature, log_tau = falc
    surface = int(np.argmin(np.abs(log_tau)))
    rng = np.random.default_rng(0)
    drawn = {r: [draw_regime_stratification(temperature, log_tau, r, rng) for _ in range(60)] for r in REGIME_PRIORS}
    for regime, strats in drawn.items():
        prior = REGIME_PRIORS[regime]
        b = np.array([s.B for s in strats])
        assert b.min() >= prior.B[0] - 1e-9 and b.max() <= prior.B[1] + 1e-9, regime
        rel = np.array([s.temperature[surface] for s in strats]) / temperature[surface] - 1
        assert rel.min() >= prior.temperature_rel[0] - prior.temperature_node - 1e-9
        assert rel.max() <= prior.temperature_rel[1] + prior.temperature_node + 1e-9
        v = np.array([s.v_los[surface] for s in strats])
        assert np.abs(v).max() <= max(map(abs, prior.v_los)) + prior.v_los_node + 1e-9
        assert set(strats[0].nodes) == set(PERTURBATION_PRIOR) and len(strats[0].nodes["B"]) == CONTROL_NODES.size
        chi = np.array([s.chi for s in strats])
        assert chi.min() >= 0 and chi.max() < 180
    t_umbra = np.mean([s.temperature[surface] for s in drawn["umbra"]])
    t_quiet = np.mean([s.temperature[surface] for s in drawn["quiet"]])
    assert 3700 < t_umbra < 4900 and t_quiet - t_umbra > 1500  # cool umbrae (Solanki 2003)
    assert np.max([s.B.max() for s in drawn["quiet"]]) <= 200.0  # quiet Sun: B 0-200 G
    # near-vertical regimes take both polarities; the penumbra is inclined
    umbra_gamma = np.array([s.gamma[surface] for s in drawn["umbra"]])
    assert (umbra_gamma < 30).any() and (umbra_gamma > 150).any() and not ((umbra_gamma > 30) & (umbra_gamma < 150)).any()
    pen_gamma = np.array([s.gamma[surface] for s in drawn["penumbra"]])
    assert pen_gamma.min() >= 30 and pen_gamma.max() <= 150
    with pytest.raises(ValueError, match="unknown regime"):
        draw_regime_stratification(temperature, log_tau, "sunspot", rng)


def test_observation_effects_mix_stray_light_scale_and_add_noise():
    rng = np.random.default_rng(1)
    stokes = np.zeros((4, 112))
    stokes[0] = 0.5
    stokes[3] = 0.1
    quiet = np.full(112, 0.9)
    same, f, c = apply_observation_effects(stokes, quiet, ObservationEffects(), rng)
    assert np.array_equal(same, stokes) and (f, c) == (0.0, 1.0)
    effects = ObservationEffects(stray_light_max=0.2, continuum_error_sigma=0.01)
    fs, cs = [], []
    for _ in range(200):
        out, f, c = apply_observation_effects(stokes, quiet, effects, rng)
        assert out[0] == pytest.approx(np.full(112, c * ((1 - f) * 0.5 + f * 0.9)))
        assert out[3] == pytest.approx(np.full(112, c * (1 - f) * 0.1)) and np.all(out[1:3] == 0)  # unpolarised
        fs.append(f)
        cs.append(c)
    assert 0 <= min(fs) and max(fs) <= 0.2 and 0.08 < np.mean(fs) < 0.12
    assert np.std(cs) == pytest.approx(0.01, rel=0.2) and np.mean(cs) == pytest.approx(1.0, abs=3e-3)
    noisy, _, _ = apply_observation_effects(stokes, quiet, ObservationEffects(noise_sigma=1e-3), rng)
    assert np.std(noisy - stokes) == pytest.approx(1e-3, rel=0.1)
    for bad in (dict(psf_fwhm_ma=0.0), dict(noise_sigma=-1e-3), dict(stray_light_max=1.0)):
        with pytest.raises(ValueError):
            ObservationEffects(**bad)


def test_builder_rejects_unknown_regimes(tmp_path):
    with pytest.raises(ValueError, match="regimes"):
        build_stratified_set(tmp_path, 2, regimes=["quiet", "sunspot"])


@pytest.mark.slow
def test_builder_records_regimes_and_effects(tmp_path, synthesizer):
    """Two Hinode-like profiles: regime and effects recorded per profile and in the metadata; a
    resume with other options is refused; the umbral profile is the darker one at the continuum."""
    import json

    effects = ObservationEffects(noise_sigma=1e-3, stray_light_max=0.2, continuum_error_sigma=0.01)
    data = build_stratified_set(tmp_path, 4, seed=3, chunk_size=4, progress=False, synthesizer=synthesizer,
                                regimes=["quiet", "umbra"], effects=effects)
    assert data["stokes"].shape == (4, 4, 112) and set(data["regime"]) <= {"quiet", "umbra"}
    assert data["metadata"] == {"regimes": ["quiet", "umbra"], "observation_effects": effects.to_dict()}
    loaded = load_stratified_set(tmp_path)
    assert list(loaded["regime"]) == list(data["regime"]) and loaded["metadata"][0] == data["metadata"]
    with np.load(next(tmp_path.glob("lw_seed3_*.npz"))) as f:
        assert np.all((f["stray_light_fraction"] >= 0) & (f["stray_light_fraction"] <= 0.2))
        assert np.all(np.abs(f["continuum_factor"] - 1) < 0.06)
        assert json.loads(str(f["metadata"]))["observation_effects"]["noise_sigma"] == 1e-3
    continuum = data["stokes"][:, 0, :5].mean(1)
    assert set(data["regime"]) == {"quiet", "umbra"}  # both drawn with this seed
    assert continuum[data["regime"] == "umbra"].max() < 0.7 * continuum[data["regime"] == "quiet"].min()
    with pytest.raises(ValueError, match="other options"):
        build_stratified_set(tmp_path, 4, seed=3, chunk_size=4, progress=False, synthesizer=synthesizer)


def test_legacy_chunks_read_as_the_broad_regime(tmp_path):
    _fake_chunk(tmp_path / "lw_seed0_chunk00000_n3.npz", 3, 1.0)
    data = load_stratified_set(tmp_path)
    assert list(data["regime"]) == [BROAD_REGIME] * 3
    assert data["metadata"][0]["regimes"] == [BROAD_REGIME]
    assert data["metadata"][0]["observation_effects"]["stray_light_max"] == 0.0
