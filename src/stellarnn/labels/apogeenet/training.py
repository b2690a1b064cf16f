"""Training APOGEENet with the project Trainer, on synthetic grids or on a user's own spectra.

Inputs are apStar-grid spectra (N, 8575) with inverse variance.  The network sees them raw (like
real apStar files) or divided by the DR17 continuum (``input_flux="continuum_normalised"``, for
synthetic grids; recorded so that the pipeline normalises real spectra the same way).
The training inputs go through exactly the inference preprocessing (:mod:`~stellarnn.labels.apogeenet.preprocessing`).
Targets are [log g, log10 Teff, [Fe/H]] z-scored with the published statistics; the loss is the
mean squared error over the labels present (NaN / -9999 ignored).  ``brackett_mask=True`` sets the
H I Brackett cores (:mod:`stellarnn.spectra.brackett_mask`, at each star's true Teff) to the continuum
with ivar 0 in the preprocessing, and records it in the checkpoint so that the pipeline does the same.
"""
from __future__ import annotations

import numpy as np
import torch

from ...spectra import apogee_wavelength
from ...spectra.brackett_mask import BRACKETT_MASK_DEFAULT, brackett_mask as brackett_pixels
from ...train import TrainConfig, Trainer, save_checkpoint
from ..astronn.loss import missing_label_mask
from ..astronn.training import robust_scatter
from .network import APOGEENET_OUTPUT_MEAN, APOGEENET_OUTPUT_STD, APOGEENET_SMALL, APOGEENetResNet
from .preprocessing import log_scale, preprocess
from .uncertainty import predict_with_noise_draws

LABELS = ("teff", "logg", "fe_h")


def physical_to_targets(labels) -> np.ndarray:
    """(N, 3) [Teff (K), log g, [Fe/H]] -> z-scored [log g, log10 Teff, [Fe/H]], NaN where missing."""
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != 3:
        raise ValueError(f"labels must be (N, 3) [teff, logg, fe_h], got {y.shape}")
    y = np.where(missing_label_mask(torch.as_tensor(y)).numpy(), np.nan, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        phys = np.stack([y[:, 1], np.log10(np.where(y[:, 0] > 0, y[:, 0], np.nan)), y[:, 2]], axis=1)
    return (phys - np.asarray(APOGEENET_OUTPUT_MEAN)) / np.asarray(APOGEENET_OUTPUT_STD)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over finite targets (0 if there are none)."""
    valid = torch.isfinite(target)
    diff = torch.where(valid, prediction - torch.where(valid, target, 0.0), 0.0)
    return (diff ** 2).sum() / valid.sum().clamp_min(1)


def evaluate_apogeenet(model, flux, error, labels, n_draws: int = 20, seed: int = 0) -> dict:
    """Per-label bias, robust scatter and std of (prediction - truth) / raw_error."""
    gen = torch.Generator().manual_seed(seed)
    out = predict_with_noise_draws(model, torch.as_tensor(flux), torch.as_tensor(error), APOGEENET_OUTPUT_MEAN,
                                   APOGEENET_OUTPUT_STD, n_draws, gen)
    truth = np.where(missing_label_mask(torch.as_tensor(labels)).numpy(), np.nan, labels)
    metrics = {}
    for j, name in enumerate(LABELS):
        res = out[name].numpy() - truth[:, j]
        if np.isfinite(res).any():
            metrics[name] = {"bias": float(np.nanmedian(res)), "robust_scatter": float(robust_scatter(res[:, None])[0]),
                             "std_z": float(np.nanstd(res / out[f"raw_e_{name}"].numpy())),
                             "n": int(np.isfinite(res).sum())}
    return metrics


def train_apogeenet(flux, ivar, labels, out_path, bitmask=None, input_flux: str = "raw", val_fraction: float = 0.1,
                    config: TrainConfig | None = None, hyperparameters: dict | None = None, resume_path=None,
                    provenance: dict | None = None, seed: int = 0, eval_draws: int = 20, init_from=None,
                    brackett_mask: bool = BRACKETT_MASK_DEFAULT):
    """Train the APOGEENet ResNet and save a float16 checkpoint.

    Parameters
    ----------
    flux, ivar : array (N, 8575)
        Spectra on the apStar grid and their inverse variance.
    labels : array (N, 3)
        Teff (K), log g (dex), [Fe/H] (dex); NaN or -9999 where missing.
    out_path : path
        Checkpoint to write.
    input_flux : {"raw", "continuum_normalised"}
        Network input: the raw flux as given, or that flux divided by the DR17 continuum (for
        synthetic spectra, which lack the instrument response of real apStar flux).  Recorded in
        the checkpoint so that inference preprocesses real spectra the same way.
    hyperparameters : dict
        Network widths (default :data:`~.network.APOGEENET_SMALL`; ``APOGEENET_FULL`` for the published size).
    init_from : path, optional
        An APOGEENet checkpoint of the same widths to start from (fine-tuning).
    brackett_mask : bool
        Mask the Brackett cores (:func:`~stellarnn.spectra.brackett_mask.brackett_mask` at the true Teff;
        the wide windows where Teff is missing) in every training spectrum; recorded in the checkpoint
        (``normalisation["brackett_mask"]``) for the pipeline.  Off by default (the shipped weights were
        trained without it); on for networks trained on the PySME grids with H lines.

    Returns
    -------
    (model, metrics dict)
    """
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    targets = physical_to_targets(labels)
    if flux.ndim != 2 or targets.shape[0] != flux.shape[0]:
        raise ValueError(f"flux (N, 8575) and labels (N, 3) must have the same N; got {flux.shape}, {targets.shape}")
    if flux.shape[0] < 2:
        raise ValueError("need at least 2 labelled spectra (one for validation)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(flux.shape[0])
    n_val = max(1, int(round(val_fraction * flux.shape[0])))
    val, tr = order[:n_val], order[n_val:]
    # preprocessing exactly as at inference, in chunks (float64 inside) to bound memory; the
    # network input is kept as float32, the cleaned flux/error only for the validation rows
    teff = np.asarray(labels, dtype=np.float64)[:, 0]

    def masked(rows):  # the Brackett pixels of these rows (None: no mask)
        return brackett_pixels(apogee_wavelength(flux.shape[1]), teff[rows]) if brackett_mask else None

    x = torch.empty(flux.shape, dtype=torch.float32)
    for a in range(0, flux.shape[0], 2000):
        b = a + 2000
        fa, _ = preprocess(np.asarray(flux[a:b], dtype=np.float64), np.asarray(ivar[a:b], dtype=np.float64),
                           None if bitmask is None else bitmask[a:b], input_flux, masked=masked(slice(a, b)))
        x[a:b] = log_scale(fa).to(torch.float32)
    f, e = preprocess(np.asarray(flux[val], dtype=np.float64), np.asarray(ivar[val], dtype=np.float64),
                      None if bitmask is None else np.asarray(bitmask)[val], input_flux, masked=masked(val))
    y = torch.as_tensor(targets, dtype=torch.float32)
    hp = dict(APOGEENET_SMALL if hyperparameters is None else hyperparameters)
    model = APOGEENetResNet(**hp)
    if init_from is not None:
        from ...train import warm_start

        provenance = {**(provenance or {}), **warm_start(model, init_from, "apogeenet")}
    cfg = config or TrainConfig(epochs=60, batch_size=32, lr=1e-3, plateau_patience=4, seed=seed)

    def loss_fn(m, batch):
        xb, yb = batch
        return masked_mse(m(xb), yb)

    history = Trainer(model, loss_fn, cfg, resume_path=resume_path).fit((x[tr], y[tr]), (x[val], y[val]))
    metrics = {"n_train": int(len(tr)), "n_val": int(len(val)), "best_epoch": history.best_epoch,
               "best_val_loss": history.best_val, "epochs_run": len(history.val_loss),
               "train_seconds": history.seconds,
               "validation": evaluate_apogeenet(model, f, e, np.asarray(labels, dtype=np.float64)[val],
                                                eval_draws, seed)}
    save_checkpoint(out_path, model, "apogeenet", {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()},
                    normalisation={"output_mean": list(APOGEENET_OUTPUT_MEAN), "output_std": list(APOGEENET_OUTPUT_STD),
                                   "input_flux": input_flux, "label_names": list(LABELS),
                                   "brackett_mask": bool(brackett_mask)},
                    metrics=metrics, provenance=dict(provenance or {}), half=True)
    return model, metrics
