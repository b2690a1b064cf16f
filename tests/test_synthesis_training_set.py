import numpy as np
import pytest
import torch

from stellarnn.spectra import APOGEE_BAD_PIXEL_MASK, apogee_continuum
from stellarnn.synthesis.emulator import PayneEmulator
from stellarnn.synthesis.grid_builder import LABEL_NAMES, LabelPrior
from stellarnn.synthesis.training_set import APSTAR_DATA_RANGES, generate_training_set, noise_free_emulated


def _emulator():
    torch.manual_seed(0)
    m = PayneEmulator(n_labels=len(LABEL_NAMES), n_pixels=8575, hidden=(16,), n_continuum=858)
    with torch.no_grad():
        m.flux_net[-1].weight.mul_(0.05)
        m.flux_net[-1].bias.zero_()
        m.continuum_net[-1].weight.mul_(0.01)
        m.continuum_net[-1].bias.zero_()
        m.continuum_net[-1].bias[-1] = 5.0
        m.label_min.copy_(torch.tensor([3500, 0, -2.5, 0.3] + [-0.5] * 17, dtype=torch.float32))
        m.label_max.copy_(torch.tensor([8000, 5, 0.5, 4.0] + [0.5] * 17, dtype=torch.float32))
    return m.eval()


def test_noise_masks_gaps_and_visits():
    ts = generate_training_set(_emulator(), n_stars=6, seed=1, n_visits=3)
    assert ts.flux.shape == (18, 8575) and ts.labels.shape == (18, len(LABEL_NAMES))
    assert np.all(ts.labels[0] == ts.labels[2]) and not np.all(ts.labels[0] == ts.labels[3])
    assert np.all((ts.snr >= 30) & (ts.snr <= 300))
    data = np.zeros(8575, bool)
    for a, b in APSTAR_DATA_RANGES:
        data[a:b] = True
    assert np.all(np.isnan(ts.flux[:, ~data])) and np.all(np.isfinite(ts.flux[:, data]))
    assert np.all((ts.bitmask & ~APOGEE_BAD_PIXEL_MASK) == 0) and (ts.bitmask != 0).mean() > 0.003
    # noise is what the error says, on unmasked pixels: (flux - truth*continuum) / error ~ N(0, 1)
    cont = ts.flux / np.where(np.isfinite(ts.flux), ts.normalised_truth, 1)  # noisy ratio only to find scale
    good = data[None] & (ts.bitmask == 0)
    level = np.nanmedian(np.where(good, cont, np.nan), axis=1, keepdims=True)
    assert np.all(level > 40)
    # repeat visits of one star differ only by noise
    d = (ts.flux[0] - ts.flux[1])[good[0] & good[1]]
    e = np.hypot(ts.error[0], ts.error[1])[good[0] & good[1]]
    assert 0.9 < np.std(d / e) < 1.1


def test_spectra_normalise_like_real_files():
    ts = generate_training_set(_emulator(), n_stars=2, seed=2)
    spectra = ts.spectra()
    s = spectra[0]
    assert s.ivar[0] == 0 and s.flux[0] == 0 and s.meta["apogee_id"].startswith("EMU-")
    r = apogee_continuum(s.flux, s.error, s.bitmask)
    assert torch.isfinite(r.flux).all() and abs(float(r.flux.median()) - 1) < 0.05


# ---------------------------------------------------------------- fresh noise and the emulator gate
from stellarnn.synthesis.populations import POPULATIONS, population_of  # noqa: E402
from stellarnn.synthesis.training_set import (FreshNoiseDataset, emulator_population_gate,  # noqa: E402
                                              in_populations)


def _fresh_dataset(seed, n=12, snr_range=(30.0, 500.0)):
    rng = np.random.default_rng(3)
    cont = np.tile(np.linspace(0.8, 1.2, 500), (n, 1)) * rng.uniform(0.5, 2.0, (n, 1))
    clean = cont * (1 - 0.3 * rng.random((n, 500)))
    identity = lambda flux, ivar, rows: flux.to(torch.float32)  # noqa: E731 (inputs = the noisy flux itself)
    return clean, cont, FreshNoiseDataset(clean, cont, identity, (torch.arange(n),), snr_range=snr_range, seed=seed)


def test_fresh_noise_changes_every_epoch_and_is_reproducible_from_the_seed():
    clean, _, a = _fresh_dataset(seed=5)
    _, _, b = _fresh_dataset(seed=5)
    _, _, other = _fresh_dataset(seed=6)
    epoch0 = a.inputs.clone()
    assert not np.allclose(epoch0.numpy(), clean, atol=1e-6)  # noise was added
    a.set_epoch(1)
    assert (a.inputs - epoch0).abs().mean() > 1e-3  # new noise in epoch 1
    b.set_epoch(1)
    assert torch.equal(a.inputs, b.inputs)  # same seed, same epoch: same noise
    other.set_epoch(1)
    assert not torch.equal(a.inputs, other.inputs)
    b.set_epoch(0)  # an epoch's noise depends only on (seed, epoch): what a resumed training sees
    assert torch.equal(b.inputs, epoch0)
    x, y = a[3]
    assert x.shape == (500,) and int(y) == 3


def test_fresh_noise_snr_stays_in_the_range():
    n = 400
    clean, cont, ds = _fresh_dataset(seed=0, n=n)
    measured, drawn = [], []
    for epoch in range(3):
        ds.set_epoch(epoch)
        resid = ds.inputs.numpy().astype(np.float64) - clean
        measured.append(np.median(cont, axis=1) / np.std(resid / cont * np.median(cont, axis=1, keepdims=True), axis=1))
        drawn.append(ds.snr.numpy())
    measured, drawn = np.concatenate(measured), np.concatenate(drawn)
    assert drawn.min() >= 30 and drawn.max() <= 500
    np.testing.assert_allclose(measured, drawn, rtol=0.2)  # 500 pixels: ~3 % scatter on the measured S/N
    assert measured.min() > 30 / 1.2 and measured.max() < 500 * 1.2
    # log-uniform: about a third of the draws below sqrt(30 * 500) * ... check the median of log S/N
    assert np.median(np.log(drawn)) == pytest.approx(0.5 * (np.log(30) + np.log(500)), abs=0.15)
    with pytest.raises(ValueError, match="S/N range"):
        _fresh_dataset(seed=0, snr_range=(500.0, 30.0))


def _population_labels():
    """One star in each population (23 labels: the 21, then v_macro, v_sini)."""
    kiel = {"giants": (4600, 2.5, 0.0), "metal_poor_giants": (4600, 2.0, -1.5), "warm_giants": (5800, 3.0, -0.3),
            "dwarfs": (5600, 4.4, 0.0), "m_dwarfs": (3700, 4.8, 0.0), "hot": (7200, 4.0, 0.0)}
    lab = np.zeros((len(POPULATIONS), len(LABEL_NAMES) + 2))
    for i, p in enumerate(POPULATIONS):
        lab[i, :3] = kiel[p]
        lab[i, 3] = 1.2
        lab[i, -2:] = (4.0, 3.0)
    assert list(population_of(lab[:, 0], lab[:, 1], lab[:, 2])) == list(POPULATIONS)
    return lab


def test_emulator_gate_drops_populations_above_threshold():
    torch.manual_seed(0)
    m = PayneEmulator(n_labels=len(LABEL_NAMES) + 2, n_pixels=8575, hidden=(8,), n_continuum=858).eval()
    with torch.no_grad():
        m.label_min.copy_(torch.tensor([3000, 0, -2.5, 0] + [-0.5] * 17 + [0, 0], dtype=torch.float32))
        m.label_max.copy_(torch.tensor([8000, 5, 0.5, 4] + [0.5] * 17 + [20, 50], dtype=torch.float32))
    lab = np.repeat(_population_labels(), 3, axis=0)
    with torch.no_grad():
        flux = m(torch.as_tensor(lab, dtype=torch.float32)).numpy().astype(np.float32)
    # held-out "PySME" flux = emulator + an offset: rms error 0.1 sigma (S/N 100) except giants 0.5, hot 0.31
    offset = {p: 0.1 for p in POPULATIONS} | {"giants": 0.5, "hot": 0.31}
    pops = population_of(lab[:, 0], lab[:, 1], lab[:, 2])
    flux += np.array([offset[p] / 100 for p in pops], dtype=np.float32)[:, None]
    gate = emulator_population_gate(m, {"labels": lab, "flux": flux})
    assert gate["skipped"] == ["giants", "hot"]
    assert gate["allowed"] == ["metal_poor_giants", "warm_giants", "dwarfs", "m_dwarfs"]
    assert gate["error"]["giants"] == pytest.approx(0.5, rel=0.02)
    names = list(LABEL_NAMES) + ["v_macro", "v_sini"]
    keep = in_populations(lab, names, gate["allowed"])
    assert keep.tolist() == [p in gate["allowed"] for p in pops]
    off_population = lab[:1].copy()
    off_population[0, :3] = (3500, 1.0, 0.0)  # a giant colder than every population: never emulated
    assert not in_populations(off_population, names, POPULATIONS).any()
    with pytest.raises(ValueError, match="labels"):
        emulator_population_gate(m, {"labels": lab[:, :21], "flux": flux})


def test_noise_free_emulated_spectra_for_fresh_noise():
    """The emulator's normalised flux times its relative continuum (median 1), in chunks, as the grids' pool."""
    emu = _emulator()
    rng = np.random.default_rng(3)
    labels = np.column_stack([rng.uniform(4000, 6000, 5), rng.uniform(1, 4, 5), rng.uniform(-1, 0, 5),
                              np.full(5, 1.2), np.zeros((5, len(LABEL_NAMES) - 4))])
    out = noise_free_emulated(emu, labels, chunk=2)
    assert out["flux"].shape == out["continuum"].shape == (5, 8575) and out["flux"].dtype == np.float32
    np.testing.assert_allclose(np.median(out["continuum"], axis=1), 1.0, rtol=1e-6)
    with torch.inference_mode():
        norm = emu(torch.as_tensor(labels, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out["flux"] / out["continuum"], norm, rtol=1e-5)
    assert noise_free_emulated(emu, labels[:0])["flux"].shape == (0, 8575)


def test_balance_populations_flattens_the_shares_and_keeps_draw_order():
    from stellarnn.synthesis.populations import population_of
    from stellarnn.synthesis.training_set import balance_populations

    # 600 giants, 300 dwarfs, 50 hot stars, 50 in no population (log g 3, Teff 3000 K)
    rows = ([[4500.0, 2.5, 0.0]] * 600 + [[5500.0, 4.4, 0.0]] * 300 + [[7000.0, 4.0, 0.0]] * 50
            + [[3000.0, 3.0, 0.0]] * 50)
    labels = np.array(rows)[np.random.default_rng(0).permutation(1000)]
    names = ["teff", "logg", "m_h"]
    group = population_of(*labels.T)

    def shares(idx):
        return {g: int((group[idx] == g).sum()) for g in ("giants", "dwarfs", "hot", "")}

    picked = balance_populations(labels, names, 200, 0.0)
    assert np.all(np.diff(picked) > 0)  # sorted row indices, each once
    assert shares(picked) == {"giants": 120, "dwarfs": 60, "hot": 10, "": 10}
    assert shares(balance_populations(labels, names, 200, 1.0)) == {"giants": 50, "dwarfs": 50, "hot": 50, "": 50}
    half = shares(balance_populations(labels, names, 200, 0.5))
    assert half["giants"] < 120 and half["hot"] > 10 and sum(half.values()) == 200
    # a group with fewer stars than its target gives all it has; the others fill the remainder
    assert shares(balance_populations(labels, names, 600, 1.0)) == {"giants": 250, "dwarfs": 250, "hot": 50, "": 50}
    # each group's first rows in draw order: the same stars as a plain draw would give it
    first_giants = np.flatnonzero(group == "giants")[:50]
    assert set(first_giants) <= set(balance_populations(labels, names, 200, 1.0))
    with pytest.raises(ValueError, match="alpha"):
        balance_populations(labels, names, 10, 1.5)
    with pytest.raises(ValueError, match="from 1000 draws"):
        balance_populations(labels, names, 2000, 0.5)

