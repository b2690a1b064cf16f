"""A Payne-style neural spectrum emulator of the synthetic APOGEE grid.

The Payne (Ting, Conroy, Rix & Cargile 2019, ApJ 879, 69): labels min-max scaled to
[-0.5, 0.5] -> Linear(n_labels, 300) -> LeakyReLU(0.01) -> Linear(300, 300) -> LeakyReLU
-> Linear(300, n_pixels), trained with an L1 loss; ~1e-3 flux accuracy from O(1000)
training spectra.  Hidden widths are configurable here.

A second, small head emulates the smooth continuum (the grid's continuum stored every
``continuum_step`` pixels relative to its median, and log10 of that median), so the
training-set generator can build realistic un-normalised spectra.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..train import TrainConfig, Trainer, load_checkpoint, register_model, save_checkpoint

EMULATOR_KIND = "payne-emulator"


@register_model(EMULATOR_KIND)
class PayneEmulator(nn.Module):
    """Labels (physical units) -> normalised flux, with label scaling as buffers.

    Parameters
    ----------
    n_labels, n_pixels : int
    hidden : sequence of int
        Hidden-layer widths (The Payne: (300, 300)).
    negative_slope : float
        LeakyReLU slope (The Payne: 0.01).
    n_continuum : int
        Length of the relative continuum vector (0 disables the continuum head).
    activation : {"leaky_relu", "silu"}
        Hidden activation of the flux network: The Payne's LeakyReLU (default), or SiLU (smooth, so the
        emulated spectrum and its Jacobian vary smoothly with the labels; Elfwing et al. 2018).
    """

    ACTIVATIONS = ("leaky_relu", "silu")

    def __init__(self, n_labels: int = 21, n_pixels: int = 8575, hidden=(300, 300), negative_slope: float = 0.01,
                 n_continuum: int = 858, activation: str = "leaky_relu"):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {self.ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        layers, width = [], n_labels
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(negative_slope) if activation == "leaky_relu" else nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, n_pixels))
        self.flux_net = nn.Sequential(*layers)
        self.n_continuum = n_continuum
        if n_continuum:
            self.continuum_net = nn.Sequential(nn.Linear(n_labels, 64), nn.LeakyReLU(negative_slope),
                                               nn.Linear(64, 64), nn.LeakyReLU(negative_slope),
                                               nn.Linear(64, n_continuum + 1))
        self.register_buffer("label_min", torch.zeros(n_labels))
        self.register_buffer("label_max", torch.ones(n_labels))
        self.register_buffer("flux_mean", torch.ones(n_pixels))

    def scale(self, labels: torch.Tensor) -> torch.Tensor:
        """Physical labels -> [-0.5, 0.5] (The Payne's scaling)."""
        return (labels - self.label_min) / (self.label_max - self.label_min) - 0.5

    def unscale(self, scaled: torch.Tensor) -> torch.Tensor:
        return (scaled + 0.5) * (self.label_max - self.label_min) + self.label_min

    def forward_scaled(self, scaled: torch.Tensor) -> torch.Tensor:
        return self.flux_mean + self.flux_net(scaled)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Normalised flux (n, n_pixels) from physical labels (n, n_labels)."""
        return self.forward_scaled(self.scale(labels))

    def continuum(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(relative continuum (n, n_continuum), log10 continuum median (n,))."""
        out = self.continuum_net(self.scale(labels))
        return 1.0 + out[:, :-1], out[:, -1]


@dataclass
class EmulatorTrainingResult:
    model: PayneEmulator
    history: dict
    metrics: dict


def _l1_flux_loss(model, batch):
    labels, flux = batch[0], batch[1]
    return torch.mean(torch.abs(model(labels) - flux))


def train_emulator(train: dict, valid: dict, hidden=(300, 300), config: TrainConfig | None = None,
                   resume_path: str | Path | None = None, continuum_epochs: int = 300,
                   activation: str = "leaky_relu", init: "PayneEmulator | None" = None) -> EmulatorTrainingResult:
    """Train the flux emulator (L1) and its continuum head (MSE) on grid dictionaries from ``load_grid``.

    Label min/max come from the training labels; the mean training flux is subtracted so the
    network learns departures from it (keeps the last layer's bias small).  ``init`` (an emulator of the same
    shape, e.g. the previous session's checkpoint of a training continued in slices) gives the starting weights
    and scalings instead.
    """
    labels = torch.as_tensor(train["labels"], dtype=torch.float32)
    flux = torch.as_tensor(np.nan_to_num(train["flux"], nan=1.0), dtype=torch.float32)
    v_labels = torch.as_tensor(valid["labels"], dtype=torch.float32)
    v_flux = torch.as_tensor(np.nan_to_num(valid["flux"], nan=1.0), dtype=torch.float32)
    n_cont = train["continuum"].shape[1]
    model = PayneEmulator(labels.shape[1], flux.shape[1], tuple(hidden), n_continuum=n_cont, activation=activation)
    model.label_min.copy_(labels.min(0).values)
    model.label_max.copy_(torch.where(labels.max(0).values > labels.min(0).values, labels.max(0).values,
                                      labels.min(0).values + 1))
    model.flux_mean.copy_(flux.mean(0))
    if init is not None:
        if init.activation != activation:
            raise ValueError(f"init emulator has activation {init.activation!r}, not {activation!r}")
        try:
            model.load_state_dict(init.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ValueError(f"init emulator does not match hidden={tuple(hidden)}, activation={activation!r} and "
                             f"{labels.shape[1]} labels x {flux.shape[1]} pixels: {exc}") from exc
    cfg = config or TrainConfig(epochs=2000, batch_size=128, lr=1e-3, plateau_patience=50, early_stop_patience=200)
    hist = Trainer(model, _l1_flux_loss, cfg, resume_path=resume_path).fit((labels, flux), (v_labels, v_flux))

    # continuum head (flux network frozen)
    cont = torch.as_tensor(np.nan_to_num(train["continuum"].astype(np.float32), nan=1.0))
    logmed = torch.as_tensor(np.log10(train["continuum_median"]).astype(np.float32))
    v_cont = torch.as_tensor(np.nan_to_num(valid["continuum"].astype(np.float32), nan=1.0))
    v_logmed = torch.as_tensor(np.log10(valid["continuum_median"]).astype(np.float32))
    for p in model.flux_net.parameters():
        p.requires_grad_(False)

    def cont_loss(m, batch):
        c, lm = m.continuum(batch[0])
        return torch.mean((c - batch[1]) ** 2) + torch.mean((lm - batch[2]) ** 2)

    ccfg = TrainConfig(epochs=continuum_epochs, batch_size=128, lr=1e-3, plateau_patience=30,
                       early_stop_patience=80, progress=cfg.progress, seed=cfg.seed)
    Trainer(model, cont_loss, ccfg).fit((labels, cont, logmed), (v_labels, v_cont, v_logmed))
    for p in model.flux_net.parameters():
        p.requires_grad_(True)
    metrics = evaluate_emulator(model, valid)
    return EmulatorTrainingResult(model, hist.as_dict(), metrics)


@torch.inference_mode()
def evaluate_emulator(model: PayneEmulator, data: dict) -> dict:
    """``|Δflux|`` statistics on a grid dictionary (pixels with finite truth only)."""
    model.eval()
    pred = model(torch.as_tensor(data["labels"], dtype=torch.float32)).numpy()
    truth = data["flux"].astype(np.float32)
    good = np.isfinite(truth)
    err = np.abs(pred - truth)[good]
    per_spec = np.nanmedian(np.where(good, np.abs(pred - truth), np.nan), axis=1)
    return {"n_spectra": int(truth.shape[0]), "median_abs_dflux": float(np.median(err)),
            "p99_abs_dflux": float(np.percentile(err, 99)), "mean_abs_dflux": float(np.mean(err)),
            "max_abs_dflux": float(err.max()), "worst_spectrum_median_abs_dflux": float(per_spec.max())}


@torch.inference_mode()
def emulator_error_by_population(model: PayneEmulator, data: dict, snr: float = 100.0) -> dict:
    """Per population (:mod:`~stellarnn.synthesis.populations`), the emulator's per-spectrum rms error
    (emulated minus PySME normalised flux over the pipelines' 7514 pixels, finite truth only) in units of
    the noise sigma = 1/``snr``: median, 90th percentile and max over the population's spectra, and the count."""
    from ..spectra.apogee_grid import kept_pixel_index
    from .populations import POPULATIONS, population_masks

    model.eval()
    pix = kept_pixel_index()
    pred = model(torch.as_tensor(data["labels"], dtype=torch.float32)).numpy()[:, pix]
    truth = data["flux"][:, pix].astype(np.float32)
    good = np.isfinite(truth)
    rms = np.sqrt(np.sum(np.where(good, (pred - truth) ** 2, 0.0), axis=1) / np.maximum(good.sum(1), 1))
    lab = data["labels"]
    masks = population_masks(lab[:, 0], lab[:, 1], lab[:, 2])
    out = {}
    for name in POPULATIONS:
        r = rms[masks[name]] * snr
        out[name] = ({"n": int(r.size), "rms_over_sigma_snr100" if snr == 100 else f"rms_over_sigma_snr{snr:g}":
                      float(np.median(r)), "p90_rms_over_sigma": float(np.percentile(r, 90)),
                      "max_rms_over_sigma": float(r.max()), "median_rms": float(np.median(r) / snr)}
                     if r.size else {"n": 0})
    return out


def save_emulator(path, result: EmulatorTrainingResult, provenance: dict) -> Path:
    m = result.model
    hp = {"n_labels": int(m.label_min.numel()), "n_pixels": int(m.flux_mean.numel()),
          "hidden": [l.out_features for l in m.flux_net if isinstance(l, nn.Linear)][:-1],
          "n_continuum": int(m.n_continuum), "activation": m.activation}
    return save_checkpoint(path, m, EMULATOR_KIND, hp, metrics=result.metrics, provenance=provenance, half=True)


def load_emulator(path) -> tuple[PayneEmulator, dict]:
    model, payload = load_checkpoint(path, expected_kind=EMULATOR_KIND)
    return model, payload
