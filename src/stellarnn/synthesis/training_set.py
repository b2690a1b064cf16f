"""Training spectra for the label networks: emulator spectra with realistic APOGEE noise.

For each star: labels drawn from the grid prior (:func:`grid_builder.sample_labels`), the
emulated normalised flux and continuum (relative continuum upsampled from every 10th pixel,
times the emulated median), an arbitrary flux level (log-uniform, apStar units), photon-like
noise sigma_i = (F_med / SNR) sqrt(F_i / F_med) with S/N drawn log-uniformly in [30, 300],
bad pixels with APOGEE_PIXMASK bits (clusters of 1-4 pixels flagged SIG_SKYLINE, CRPIX or
BADPIX; their error inflated x100 as in apStar files) and the chip gaps outside the three
detectors empty (flux NaN, error NaN, as in real apStar files).  ``n_visits`` > 1 gives
repeat observations of the same star with independent noise (for noise-model calibration).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..spectra.apogee_grid import APOGEE_N_PIXELS
from .grid_builder import BROADENING_LABELS, LABEL_NAMES, LabelPrior, sample_labels

#: apStar pixels that hold data in real DR17 files (the three detectors), [start, stop)
APSTAR_DATA_RANGES = ((246, 3274), (3585, 6080), (6344, 8335))
BAD_BITS = (0, 1, 12)  # BADPIX, CRPIX, SIG_SKYLINE


@dataclass
class TrainingSet:
    labels: np.ndarray  # (n, n_labels)
    flux: np.ndarray  # (n, 8575) apStar-like flux (NaN in gaps)
    error: np.ndarray  # (n, 8575)
    bitmask: np.ndarray  # (n, 8575) int64
    normalised_truth: np.ndarray  # (n, 8575) noise-free normalised flux
    snr: np.ndarray  # (n,)
    star: np.ndarray  # (n,) star id (repeat visits share it)
    visit: np.ndarray  # (n,)
    label_names: tuple = LABEL_NAMES

    def spectra(self):
        """As :class:`~stellarnn.spectra.Spectrum` objects (the reader's convention: gaps -> ivar 0)."""
        from ..spectra import Spectrum, apogee_wavelength

        wl = apogee_wavelength()
        out = []
        for i in range(len(self.snr)):
            ok = np.isfinite(self.flux[i]) & np.isfinite(self.error[i]) & (self.error[i] > 0)
            ivar = np.where(ok, 1 / np.where(ok, self.error[i], 1) ** 2, 0.0)
            meta = {"apogee_id": f"EMU-{self.star[i]:07d}", "kind": "synthetic", "visit": int(self.visit[i]),
                    "snr": float(self.snr[i]), **{k: float(v) for k, v in zip(self.label_names, self.labels[i])}}
            out.append(Spectrum(wl, np.where(ok, self.flux[i], 0.0), ivar, self.bitmask[i], meta))
        return out


def upsample_continuum(relative: np.ndarray, step: int, n_pixels: int = APOGEE_N_PIXELS) -> np.ndarray:
    """Linear interpolation of a continuum stored every ``step`` pixels back to all pixels."""
    x = np.arange(relative.shape[-1]) * step
    return np.stack([np.interp(np.arange(n_pixels), x, r) for r in np.atleast_2d(relative)])


@torch.inference_mode()
def generate_training_set(emulator, n_stars: int, seed: int = 0, snr_range=(30.0, 300.0), n_visits: int = 1,
                          prior: LabelPrior | None = None, labels: np.ndarray | None = None,
                          continuum_step: int = 10, bad_pixel_fraction: float = 0.01,
                          atmospheres=None) -> TrainingSet:
    """Emulated APOGEE-like spectra (see module docstring).

    Parameters
    ----------
    emulator : PayneEmulator
    n_stars : int
        Number of stars (``n_stars * n_visits`` spectra).
    labels : array (n_stars, n_labels), optional
        Use these labels instead of drawing them from the prior.
    atmospheres : optional
        Passed to :func:`sample_labels` to keep only labels the atmosphere grid covers.
    """
    rng = np.random.default_rng(seed)
    # the emulator's labels: the 21 of the first grids, then v_macro, v_sini for the apogee-like grids
    names = (LABEL_NAMES + BROADENING_LABELS)[:emulator.label_min.numel()]
    if labels is None:
        labels = np.array([[lab[k] for k in names] for lab in
                           (sample_labels(i, 10_000 + seed, prior, atmospheres).as_dict() for i in range(n_stars))])
    labels = np.asarray(labels, dtype=np.float64)
    lab_t = torch.as_tensor(labels, dtype=torch.float32)
    norm = emulator(lab_t).numpy().astype(np.float64)
    rel, logmed = emulator.continuum(lab_t)
    cont = upsample_continuum(rel.numpy(), continuum_step) * (10 ** logmed.numpy())[:, None]
    level = 10 ** rng.uniform(np.log10(50), np.log10(5000), n_stars)
    cont = cont / np.median(cont, axis=1, keepdims=True) * level[:, None]
    star = np.repeat(np.arange(n_stars), n_visits)
    visit = np.tile(np.arange(n_visits), n_stars)
    snr = 10 ** rng.uniform(np.log10(snr_range[0]), np.log10(snr_range[1]), star.size)
    clean = norm[star] * cont[star]
    med = np.median(clean, axis=1, keepdims=True)
    sigma = med / snr[:, None] * np.sqrt(np.clip(clean, 1e-3 * med, None) / med)
    flux = clean + sigma * rng.standard_normal(clean.shape)
    error = sigma.copy()
    bitmask = np.zeros(flux.shape, dtype=np.int64)
    n_bad = rng.poisson(bad_pixel_fraction * APOGEE_N_PIXELS / 2.5, star.size)
    for i in range(star.size):  # cheap: a few dozen clusters per spectrum
        starts = rng.integers(0, APOGEE_N_PIXELS - 4, n_bad[i])
        widths = rng.integers(1, 5, n_bad[i])
        bits = rng.choice(BAD_BITS, n_bad[i])
        for s, wdt, b in zip(starts, widths, bits):
            bitmask[i, s:s + wdt] |= 1 << int(b)
            error[i, s:s + wdt] *= 100.0
    gap = np.ones(APOGEE_N_PIXELS, dtype=bool)
    for a, b in APSTAR_DATA_RANGES:
        gap[a:b] = False
    flux[:, gap] = np.nan
    error[:, gap] = np.nan
    return TrainingSet(labels[star], flux, error, bitmask, norm[star], snr, star, visit, tuple(names))
