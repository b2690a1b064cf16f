"""Training spectra for the label networks: emulator spectra with realistic APOGEE noise.

For each star: labels drawn from the grid prior (:func:`grid_builder.sample_labels`), the
emulated normalised flux and continuum (relative continuum upsampled from every 10th pixel,
times the emulated median), an arbitrary flux level (log-uniform, apStar units), photon-like
noise sigma_i = (F_med / SNR) sqrt(F_i / F_med) with S/N drawn log-uniformly in [30, 300],
bad pixels with APOGEE_PIXMASK bits (clusters of 1-4 pixels flagged SIG_SKYLINE, CRPIX or
BADPIX; their error inflated x100 as in apStar files) and the chip gaps outside the three
detectors empty (flux NaN, error NaN, as in real apStar files).  ``n_visits`` > 1 gives
repeat observations of the same star with independent noise (for noise-model calibration).

For the label networks: :class:`FreshNoiseDataset` gives noise-free grid spectra new noise every epoch
(S/N log-uniform in 30-500 per spectrum and epoch, reproducible from (seed, epoch)), and
:func:`emulator_population_gate` / :func:`in_populations` keep emulator spectra only in the populations
where the emulator's held-out error is <= 0.3 sigma at S/N 100.
"""
from __future__ import annotations

import math
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
def noise_free_emulated(emulator, labels: np.ndarray, continuum_step: int = 10, chunk: int = 2000) -> dict:
    """Noise-free emulated spectra in the layout of :func:`stellarnn.labels.astronn.training.noise_free_observations`:
    ``flux`` = normalised flux x relative continuum and ``continuum`` (median 1), (n, 8575) float32, for training
    with fresh noise every epoch (:class:`FreshNoiseDataset`) like the grid's own spectra.

    The relative continuum is the emulator's (its ``continuum`` head, stored every ``continuum_step`` pixels as
    the grids store theirs).
    """
    labels = np.asarray(labels, dtype=np.float64)
    fluxes, continua = [], []
    for start in range(0, len(labels), chunk):
        lab = torch.as_tensor(labels[start:start + chunk], dtype=torch.float32)
        norm = emulator(lab).numpy().astype(np.float32)
        rel, _ = emulator.continuum(lab)
        cont = upsample_continuum(rel.numpy(), continuum_step).astype(np.float32)
        cont /= np.median(cont, axis=1, keepdims=True)
        fluxes.append(norm * cont)
        continua.append(cont)
    if not fluxes:
        empty = np.empty((0, APOGEE_N_PIXELS), dtype=np.float32)
        return {"flux": empty, "continuum": empty.copy()}
    return {"flux": np.concatenate(fluxes), "continuum": np.concatenate(continua)}


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
        labels = prior_labels(n_stars, seed, prior, names, atmospheres)
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


# ------------------------------------------------------------------ fresh noise every epoch
#: S/N range of the fresh noise (log-uniform per spectrum and epoch): APOGEE's useful range
FRESH_SNR_RANGE = (30.0, 500.0)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The torch generator of one epoch's noise: a pure function of ``(seed, epoch)``.

    Deriving each epoch's stream from (seed, epoch) with numpy's ``SeedSequence`` makes the noise
    reproducible from the seed and makes a resumed training draw exactly the noise an uninterrupted
    one would have drawn (the epoch is in the trainer's resume file; nothing else needs saving).
    """
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint32)[0]
    return torch.Generator().manual_seed(int(state))


def log_uniform_snr(n: int, snr_range, generator: torch.Generator) -> torch.Tensor:
    """(n,) float64 S/N values drawn log-uniformly in ``[snr_range[0], snr_range[1]]``."""
    lo, hi = (float(v) for v in snr_range)
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"S/N range must satisfy 0 < low <= high < inf, got {lo:g} {hi:g}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def add_fresh_noise(clean_flux, continuum, snr, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy apStar-like flux and its ivar, vectorised over the batch.

    sigma_i = continuum_i / S/N (the S/N of each spectrum at its continuum, as in
    :func:`stellarnn.labels.astronn.training.synthetic_observations`); flux = clean + sigma * N(0, 1).

    Parameters
    ----------
    clean_flux, continuum : (B, n_pixels) array or tensor
        Noise-free flux (normalised flux x continuum) and its continuum.
    snr : (B,) tensor
    generator : torch.Generator

    Returns
    -------
    (flux, ivar) : float64 tensors (B, n_pixels)
    """
    clean = torch.as_tensor(clean_flux).to(torch.float64)
    cont = torch.as_tensor(continuum).to(torch.float64)
    sigma = cont / torch.as_tensor(snr, dtype=torch.float64)[:, None]
    flux = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return flux, sigma ** -2


class FreshNoiseDataset(torch.utils.data.Dataset):
    """Network inputs with new noise every epoch for the noise-free rows, fixed inputs for the others.

    Rows ``0 .. n_fresh-1`` are rebuilt by :meth:`set_epoch` (called by
    :class:`stellarnn.train.Trainer` at the start of every epoch): each spectrum gets an S/N drawn
    log-uniformly in ``snr_range`` and Gaussian noise (:func:`add_fresh_noise`), from
    :func:`epoch_generator` ``(seed, epoch)``, and goes through ``make_input(flux, ivar, rows)`` (the
    network's own preprocessing, on a chunk of rows at once: no per-spectrum Python loop).  Rows after
    them (``fixed_inputs``, e.g. emulator spectra with their own noise) never change.

    Parameters
    ----------
    clean_flux, continuum : (n_fresh, n_pixels) arrays
    make_input : callable (flux (B, n_pixels) float64 tensor, ivar, rows (B,) int array) -> (B, ...) tensor
    targets : tuple of tensors (n_fresh + n_fixed, ...)
        What the loss compares with, in row order.
    fixed_inputs : tensor (n_fixed, ...), optional
    snr_range : (low, high)
    seed : int
    chunk : int
        Rows preprocessed at once (bounds the float64 memory).
    """

    def __init__(self, clean_flux, continuum, make_input, targets, fixed_inputs=None,
                 snr_range=FRESH_SNR_RANGE, seed: int = 0, chunk: int = 2000):
        self.clean_flux = torch.as_tensor(np.asarray(clean_flux, dtype=np.float32))
        self.continuum = torch.as_tensor(np.asarray(continuum, dtype=np.float32))
        if self.clean_flux.shape != self.continuum.shape or self.clean_flux.ndim != 2:
            raise ValueError(f"clean flux {tuple(self.clean_flux.shape)} and continuum "
                             f"{tuple(self.continuum.shape)} must be the same (n, pixels)")
        self.make_input, self.snr_range, self.seed, self.chunk = make_input, tuple(snr_range), int(seed), int(chunk)
        log_uniform_snr(0, self.snr_range, torch.Generator())  # validates the range now
        self.n_fresh = self.clean_flux.shape[0]
        first = make_input(*add_fresh_noise(self.clean_flux[:1], self.continuum[:1], torch.ones(1) * 100,
                                            torch.Generator().manual_seed(0)), np.arange(1))
        n_fixed = 0 if fixed_inputs is None else len(fixed_inputs)
        self.inputs = torch.empty((self.n_fresh + n_fixed,) + tuple(first.shape[1:]), dtype=first.dtype)
        if n_fixed:
            self.inputs[self.n_fresh:] = torch.as_tensor(fixed_inputs, dtype=first.dtype)
        self.targets = tuple(torch.as_tensor(t) for t in targets)
        if any(len(t) != len(self.inputs) for t in self.targets):
            raise ValueError(f"targets must have {len(self.inputs)} rows (fresh + fixed)")
        self.snr = torch.empty(self.n_fresh, dtype=torch.float64)
        self.epoch = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's S/N and noise for every noise-free row and rebuild their inputs."""
        if epoch == self.epoch:
            return
        gen = epoch_generator(self.seed, epoch)
        self.snr = log_uniform_snr(self.n_fresh, self.snr_range, gen)
        for a in range(0, self.n_fresh, self.chunk):
            b = min(a + self.chunk, self.n_fresh)
            flux, ivar = add_fresh_noise(self.clean_flux[a:b], self.continuum[a:b], self.snr[a:b], gen)
            self.inputs[a:b] = self.make_input(flux, ivar, np.arange(a, b))
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i):
        return (self.inputs[i],) + tuple(t[i] for t in self.targets)


# ------------------------------------------------------------------ emulator spectra where the emulator is accurate
#: largest held-out emulator error (median per-spectrum rms over the S/N-100 sigma) of a population whose
#: emulator spectra may be trained on (issue "APOGEENet and AstroNN at the information bound", item 1)
EMULATOR_GATE_SIGMA = 0.3


def emulator_population_gate(emulator, heldout: dict, threshold: float = EMULATOR_GATE_SIGMA) -> dict:
    """Which populations the emulator is accurate enough for, from its error on a held-out grid.

    Parameters
    ----------
    emulator : PayneEmulator
    heldout : dict
        A held-out grid (:func:`~stellarnn.synthesis.grid_builder.load_grid`) with the emulator's labels.
    threshold : float
        Largest accepted median rms error in units of the S/N-100 sigma
        (:func:`~stellarnn.synthesis.emulator.emulator_error_by_population`).

    Returns
    -------
    dict
        ``threshold``, ``error`` ({population: median rms / sigma, None without held-out stars}),
        ``allowed`` and ``skipped`` (population names; a population without held-out stars is skipped:
        its error is unknown).
    """
    from .emulator import emulator_error_by_population
    from .populations import POPULATIONS

    n_labels = emulator.label_min.numel()
    if np.asarray(heldout["labels"]).shape[1] != n_labels:
        raise ValueError(f"held-out grid has {np.asarray(heldout['labels']).shape[1]} labels, the emulator "
                         f"{n_labels}: gate it on a grid of its own physics")
    err = emulator_error_by_population(emulator, heldout, snr=100.0)
    error = {p: (err[p]["rms_over_sigma_snr100"] if err[p].get("n") else None) for p in POPULATIONS}
    allowed = [p for p in POPULATIONS if error[p] is not None and error[p] <= threshold]
    return {"threshold": float(threshold), "error": error, "allowed": allowed,
            "skipped": [p for p in POPULATIONS if p not in allowed]}


def in_populations(labels, label_names, allowed) -> np.ndarray:
    """(n,) bool: each star's population (:func:`~stellarnn.synthesis.populations.population_of`) is in
    ``allowed`` (a star in none of the populations never is)."""
    from .populations import population_of

    labels = np.asarray(labels, dtype=np.float64)
    col = {n: i for i, n in enumerate(label_names)}
    pops = population_of(labels[:, col["teff"]], labels[:, col["logg"]], labels[:, col["m_h"]])
    return np.isin(pops, list(allowed)) & (pops != "")


#: pool of prior draws per requested star for :func:`balance_populations` (enough for alpha <= 1 while the rarest
#: population holds >= 1/(7 x 4) of the prior; a rarer one contributes what the pool holds)
BALANCE_POOL_FACTOR = 4


def balance_populations(labels, label_names, n: int, alpha: float) -> np.ndarray:
    """Rows of ``labels`` (prior draws, in draw order) that flatten the populations' shares, ``n`` of them.

    Each group -- the populations of :mod:`~stellarnn.synthesis.populations` and the stars in none of them --
    gets a target share proportional to ``share ** (1 - alpha)`` of its share in ``labels``: ``alpha`` = 0 keeps
    the prior's shares, 1 gives every group the same number of stars, 0.5 shares proportional to the square root.
    A group takes its first ``round(target x n)`` rows in draw order (all it has, if fewer); the remainder goes to
    the groups in proportion to their targets.  Deterministic; returns sorted row indices.
    """
    from .populations import population_of

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0-1, got {alpha}")
    labels = np.asarray(labels, dtype=np.float64)
    col = {name: i for i, name in enumerate(label_names)}
    group = population_of(labels[:, col["teff"]], labels[:, col["logg"]], labels[:, col["m_h"]])
    names, counts = np.unique(group, return_counts=True)
    if n > len(labels):
        raise ValueError(f"asked for {n} stars from {len(labels)} draws")
    weight = (counts / counts.sum()) ** (1.0 - alpha)
    target = weight / weight.sum() * n
    take = np.minimum(np.floor(target).astype(int), counts)
    while take.sum() < n:  # the remainder, one star at a time, to the group with room furthest below its target
        room = take < counts
        k = np.flatnonzero(room)[np.argmax(((target - take) / target)[room])]
        take[k] += 1
    rows = [np.flatnonzero(group == name)[:k] for name, k in zip(names, take)]
    return np.sort(np.concatenate(rows))


def prior_labels(n_stars: int, seed: int, prior, label_names, atmospheres=None) -> np.ndarray:
    """(n_stars, len(label_names)) labels drawn from ``prior`` exactly as :func:`generate_training_set` draws them."""
    return np.array([[lab[k] for k in label_names] for lab in
                     (sample_labels(i, 10_000 + seed, prior, atmospheres).as_dict() for i in range(n_stars))],
                    dtype=np.float64).reshape(n_stars, len(label_names))
