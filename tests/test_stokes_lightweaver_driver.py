import numpy as np
import pytest

from stellarnn.stokes.lightweaver_driver import (CONTROL_NODES, LOG_TAU_NODES, PERTURBATION_PRIOR,
                                                 LightweaverSynthesizer, Stratification, build_stratified_set,
                                                 load_stratified_set, stratification_targets)


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
