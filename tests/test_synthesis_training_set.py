import numpy as np
import torch

from stellarnn.spectra import APOGEE_BAD_PIXEL_MASK, apogee_continuum
from stellarnn.synthesis.emulator import PayneEmulator
from stellarnn.synthesis.grid_builder import LABEL_NAMES, LabelPrior
from stellarnn.synthesis.training_set import APSTAR_DATA_RANGES, generate_training_set


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
