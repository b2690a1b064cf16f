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
from ...train import TrainConfig, Trainer, save_checkpoint, split_by_block, validation_split
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


def evaluate_apogeenet(model, flux, error, labels, n_draws: int = 20, seed: int = 0, chunk_rows: int = 256) -> dict:
    """Per-label bias, robust scatter and std of (prediction - truth) / raw_error.

    The spectra go through the noise draws ``chunk_rows`` at a time: all ~6,900 validation spectra of the retrain at
    once (20 draws, float64) took the process past 24 GB and it was killed before it wrote its checkpoint.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    gen = torch.Generator().manual_seed(seed)
    flux, error = torch.as_tensor(flux), torch.as_tensor(error)
    parts = [predict_with_noise_draws(model, flux[a:a + chunk_rows], error[a:a + chunk_rows], APOGEENET_OUTPUT_MEAN,
                                      APOGEENET_OUTPUT_STD, n_draws, gen)
             for a in range(0, max(len(flux), 1), chunk_rows)]
    out = {k: torch.cat([part[k] for part in parts]) for k in parts[0]}
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
                    brackett_mask: bool = BRACKETT_MASK_DEFAULT, fresh: dict | None = None, snr_range=None):
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

    fresh : dict, optional
        Noise-free spectra that get new noise every epoch (:class:`~stellarnn.synthesis.training_set.FreshNoiseDataset`):
        ``flux``, ``continuum`` (M, 8575) and ``labels`` (M, 3); trained on with the fixed rows ``flux``/``ivar``
        (which may be empty); their validation rows get one fixed noise realisation.
    snr_range : (low, high), optional
        S/N range of the fresh noise (default 30-500, log-uniform per spectrum and epoch).

    Returns
    -------
    (model, metrics dict)
    """
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 3) if np.size(labels) == 0 else labels
    targets = physical_to_targets(labels)
    if flux.ndim != 2 or targets.shape[0] != flux.shape[0]:
        raise ValueError(f"flux (N, 8575) and labels (N, 3) must have the same N; got {flux.shape}, {targets.shape}")
    n_fresh = 0 if fresh is None else len(fresh["flux"])
    fresh_labels = np.empty((0, 3)) if fresh is None else np.asarray(fresh["labels"], dtype=np.float64)
    if fresh_labels.shape != (n_fresh, 3):
        raise ValueError(f"fresh-noise labels must be ({n_fresh}, 3), got {fresh_labels.shape}")
    all_labels = np.concatenate([fresh_labels, np.asarray(labels, dtype=np.float64)])  # noise-free rows first
    targets = np.concatenate([physical_to_targets(fresh_labels), targets])
    tr, val = validation_split(len(all_labels), val_fraction, seed)  # refuses < 2 rows (one each side)
    (tr_f, tr_x), (val_f, val_x) = split_by_block(tr, n_fresh), split_by_block(val, n_fresh)
    # preprocessing exactly as at inference, in chunks (float64 inside) to bound memory; the
    # network input is kept as float32, the cleaned flux/error only for the validation rows
    teff = all_labels[:, 0]
    bm = None if bitmask is None else np.asarray(bitmask)

    def masked(rows):  # the Brackett pixels of these rows (global row numbers; None: no mask)
        return brackett_pixels(apogee_wavelength(flux.shape[1]), teff[rows]) if brackett_mask else None

    x = torch.empty(flux.shape, dtype=torch.float32)
    for a in range(0, flux.shape[0], 2000):
        b = a + 2000
        fa, _ = preprocess(np.asarray(flux[a:b], dtype=np.float64), np.asarray(ivar[a:b], dtype=np.float64),
                           None if bm is None else bm[a:b], input_flux, masked=masked(np.arange(a, min(b, len(flux))) + n_fresh))
        x[a:b] = log_scale(fa).to(torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    f, e = (preprocess(np.asarray(flux[val_x], dtype=np.float64), np.asarray(ivar[val_x], dtype=np.float64),
                       None if bm is None else bm[val_x], input_flux, masked=masked(val_x + n_fresh))
            if len(val_x) else (torch.empty((0, flux.shape[1]), dtype=torch.float64),) * 2)
    if n_fresh:
        from ...synthesis.training_set import (FRESH_SNR_RANGE, FreshNoiseDataset, add_fresh_noise, epoch_generator,
                                               log_uniform_snr)

        snr_range = tuple(snr_range or FRESH_SNR_RANGE)
        clean, cont = fresh["flux"], fresh["continuum"]

        def make_input(noisy, noisy_ivar, rows, fresh_rows=tr_f):
            fa, _ = preprocess(noisy, noisy_ivar, None, input_flux, masked=masked(fresh_rows[rows]))
            return log_scale(fa).to(torch.float32)

        train_data = FreshNoiseDataset(clean[tr_f], cont[tr_f], make_input, (y[np.concatenate([tr_f, tr_x + n_fresh])],),
                                       fixed_inputs=x[tr_x], snr_range=snr_range, seed=seed)
        gen = epoch_generator(seed, 2 ** 31)  # validation: one fixed noise realisation
        vf, vi = add_fresh_noise(clean[val_f], cont[val_f], log_uniform_snr(len(val_f), snr_range, gen), gen)
        fv, ev = preprocess(vf, vi, None, input_flux, masked=masked(val_f))
        x_val = torch.cat([log_scale(fv).to(torch.float32), x[val_x]])
        f, e = torch.cat([fv, torch.as_tensor(f)]), torch.cat([ev, torch.as_tensor(e)])
    else:
        train_data = (x[tr_x], y[tr_x + n_fresh])
        x_val = x[val_x]
    val_data = (x_val, y[np.concatenate([val_f, val_x + n_fresh])])
    val_labels = all_labels[np.concatenate([val_f, val_x + n_fresh])]
    hp = dict(APOGEENET_SMALL if hyperparameters is None else hyperparameters)
    model = APOGEENetResNet(**hp)
    if init_from is not None:
        from ...train import warm_start

        provenance = {**(provenance or {}), **warm_start(model, init_from, "apogeenet")}
    cfg = config or TrainConfig(epochs=60, batch_size=32, lr=1e-3, plateau_patience=4, seed=seed)

    def loss_fn(m, batch):
        xb, yb = batch
        return masked_mse(m(xb), yb)

    history = Trainer(model, loss_fn, cfg, resume_path=resume_path).fit(train_data, val_data)
    metrics = {"n_train": int(len(tr)), "n_val": int(len(val)), "best_epoch": history.best_epoch,
               "best_val_loss": history.best_val, "epochs_run": len(history.val_loss),
               "train_seconds": history.seconds, "stopped_by": history.stopped_by,
               "early_stop_patience": cfg.early_stop_patience,
               "fresh_noise": ({"n_spectra": n_fresh, "snr_range": list(snr_range), "seed": seed,
                                "law": "S/N log-uniform per spectrum and epoch, sigma = continuum / S/N"}
                               if n_fresh else None),
               "validation": evaluate_apogeenet(model, f, e, val_labels, eval_draws, seed)}
    save_checkpoint(out_path, model, "apogeenet", {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()},
                    normalisation={"output_mean": list(APOGEENET_OUTPUT_MEAN), "output_std": list(APOGEENET_OUTPUT_STD),
                                   "input_flux": input_flux, "label_names": list(LABELS),
                                   "brackett_mask": bool(brackett_mask)},
                    metrics=metrics, provenance=dict(provenance or {}), half=True)
    return model, metrics
