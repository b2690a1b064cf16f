"""Training AstroNN with the project Trainer, on synthetic grids or on a user's own spectra.

Inputs are either continuum-normalised spectra (N, 7514) or apStar spectra (N, 8575) with their
inverse variance (normalised here with the DR17 continuum, exactly as at inference).  Labels are
physical (K, dex) in :data:`~.network.OUTPUT_LABELS` order, NaN or -9999 where missing.
Optimisation follows Leung & Bovy 2019 / REFERENCE.md: Adam (5e-4), ReduceLROnPlateau, robust
heteroscedastic loss, 10 % validation.  ``brackett_mask=True`` sets the H I Brackett cores
(:mod:`stellarnn.spectra.brackett_mask`, at each star's true Teff) to 1 before the training mean is
taken, and records the setting in the checkpoint so that the pipeline masks real spectra the same way.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...spectra import APOGEE_N_KEPT, APOGEE_N_PIXELS
from ...spectra.brackett_mask import BRACKETT_MASK_DEFAULT
from ...train import TrainConfig, Trainer, save_checkpoint
from .loss import missing_label_mask, robust_heteroscedastic_loss
from .network import OUTPUT_LABELS, build_astronn
from .preprocessing import (label_statistics, mask_brackett_normalised, network_input, normalise_apstar,
                            normalise_labels)
from .uncertainty import predict_mc_dropout

#: grid label name of each AstroNN output ([X/H] = [X/M] + [M/H]; C I and Ti II share C and Ti;
#: [Fe/H] = [M/H] since the synthetic grids scale Fe with M)
GRID_TO_ASTRONN = {"teff": "teff", "logg": "logg", "fe_h": "m_h", "c_h": "c_m", "c_1_h": "c_m", "n_h": "n_m",
                   "o_h": "o_m", "na_h": "na_m", "mg_h": "mg_m", "al_h": "al_m", "si_h": "si_m", "p_h": "p_m",
                   "s_h": "s_m", "k_h": "k_m", "ca_h": "ca_m", "ti_h": "ti_m", "ti_2_h": "ti_m", "v_h": "v_m",
                   "cr_h": "cr_m", "mn_h": "mn_m", "co_h": "co_m", "ni_h": "ni_m"}


def grid_labels_to_astronn(labels: np.ndarray, label_names) -> np.ndarray:
    """Convert grid labels (teff, logg, m_h, v_micro, x_m ...) to AstroNN outputs (N, 22): [X/H]."""
    labels = np.asarray(labels, dtype=np.float64)
    col = {n: i for i, n in enumerate(label_names)}
    out = np.full((labels.shape[0], len(OUTPUT_LABELS)), np.nan)
    for j, name in enumerate(OUTPUT_LABELS):
        src = GRID_TO_ASTRONN[name]
        if src not in col:
            continue
        v = labels[:, col[src]]
        out[:, j] = v + labels[:, col["m_h"]] if src.endswith("_m") and src != "m_h" else v
    return out


def synthetic_observations(grid, snr: float, seed: int = 0, copies: int = 1) -> dict:
    """apStar-like observations of a synthetic grid: flux x continuum + Gaussian noise.

    Parameters
    ----------
    grid : dict or path
        Output of :func:`stellarnn.synthesis.grid_builder.load_grid` (or its directory).
    snr : float
        S/N per pixel at the continuum (noise sigma = continuum / snr).
    copies : int
        Independent noise realisations of each spectrum (2 gives repeat-visit pairs).

    Returns
    -------
    dict with ``flux``, ``ivar`` (copies * n, 8575), ``labels`` (grid labels), ``label_names``,
    ``star`` (index of the grid spectrum of each row).
    """
    if not isinstance(grid, dict):
        from ...synthesis.grid_builder import load_grid

        grid = load_grid(grid)
    if snr <= 0 or not math.isfinite(snr):
        raise ValueError("snr must be positive and finite")
    norm = np.asarray(grid["flux"], dtype=np.float64)
    n, npx = norm.shape
    if npx != APOGEE_N_PIXELS:
        raise ValueError(f"grid flux has {npx} pixels, expected {APOGEE_N_PIXELS}")
    cont_sparse = np.asarray(grid["continuum"], dtype=np.float64)
    step = int(math.ceil(npx / cont_sparse.shape[1]))
    xs = np.arange(cont_sparse.shape[1]) * step
    cont = np.stack([np.interp(np.arange(npx), xs, c) for c in cont_sparse])  # (n, 8575), relative
    rng = np.random.default_rng(seed)
    flux = np.tile(norm * cont, (copies, 1))
    sigma = np.tile(cont, (copies, 1)) / snr
    flux = flux + sigma * rng.standard_normal(flux.shape)
    return {"flux": flux, "ivar": sigma ** -2, "labels": np.tile(grid["labels"], (copies, 1)),
            "label_names": list(grid["label_names"]), "star": np.tile(np.arange(n), copies)}


def _normalised(flux, ivar=None, bitmask=None) -> np.ndarray:
    flux = np.asarray(flux)
    if flux.ndim != 2:
        raise ValueError(f"flux must be (N, pixels), got {flux.shape}")
    if flux.shape[1] == APOGEE_N_KEPT:
        return flux
    if flux.shape[1] == APOGEE_N_PIXELS:
        if ivar is None:
            raise ValueError("apStar-grid flux (8575 px) needs its ivar for the continuum normalisation")
        out = np.empty((flux.shape[0], APOGEE_N_KEPT))
        for a in range(0, flux.shape[0], 2000):  # in chunks: apogee_continuum works in float64
            b = a + 2000
            out[a:b] = normalise_apstar(flux[a:b], ivar[a:b], None if bitmask is None else bitmask[a:b]).numpy()
        return out
    raise ValueError(f"flux must have {APOGEE_N_KEPT} (normalised) or {APOGEE_N_PIXELS} (apStar) pixels, "
                     f"got {flux.shape[1]}")


def robust_scatter(residual: np.ndarray) -> np.ndarray:
    """Robust standard deviation (1.4826 x median absolute deviation, astropy's ``mad_std``) per column,
    ignoring NaN."""
    from astropy.stats import mad_std

    return np.asarray(mad_std(residual, axis=0, ignore_nan=True), dtype=np.float64)


def evaluate_astronn(model, normalised_flux, labels, spectrum_mean, label_mean, label_std, n_passes: int = 100,
                     seed: int = 0) -> dict:
    """Per-label bias, robust scatter and std of (prediction - truth) / raw_error on labelled spectra."""
    pred = predict_mc_dropout(model, network_input(normalised_flux, spectrum_mean), label_mean, label_std,
                              n_passes, seed)
    value, err = pred["value"].numpy(), pred["raw_error"].numpy()
    truth = np.where(missing_label_mask(torch.as_tensor(labels)).numpy(), np.nan, labels)
    res = value - truth
    z = res / err
    return {name: {"bias": float(np.nanmedian(res[:, j])), "robust_scatter": float(robust_scatter(res[:, [j]])[0]),
                   "std_z": float(np.nanstd(z[:, j])), "n": int(np.isfinite(res[:, j]).sum())}
            for j, name in enumerate(OUTPUT_LABELS) if np.isfinite(res[:, j]).any()}


def train_astronn(flux, labels, out_path, ivar=None, bitmask=None, label_errors=None, val_fraction: float = 0.1,
                  config: TrainConfig | None = None, hyperparameters: dict | None = None, resume_path=None,
                  provenance: dict | None = None, eval_passes: int = 30, seed: int = 0, loss_beta: float = 0.5,
                  select_on_values: bool = True, init_from=None, brackett_mask: bool = BRACKETT_MASK_DEFAULT):
    """Train ApogeeBCNNCensored and save a float16 checkpoint with its normalisation and metrics.

    Parameters
    ----------
    flux : array (N, 7514) normalised, or (N, 8575) apStar flux (then ``ivar`` is required)
    labels : array (N, 22)
        Physical labels in OUTPUT_LABELS order; NaN or -9999 where missing.
    out_path : path
        Checkpoint to write.
    label_errors : array (N, 22), optional
        Label uncertainties (sigma_y of the loss).
    val_fraction : float
        Fraction held out for validation (best-weights selection and the reported metrics).
    config : TrainConfig
        Defaults: Adam 5e-4, ReduceLROnPlateau (patience 4), 60 epochs, batch 64.
    hyperparameters : dict
        Overrides of :data:`~.network.ASTRONN_FULL` (widths).
    loss_beta : float
        beta-NLL exponent of the loss (0: the published loss; see :mod:`.loss`).
    select_on_values : bool
        Select the best epoch (and schedule the learning rate) on the validation mean squared
        error of the predicted values (z-scored labels) instead of the validation loss.
    init_from : path, optional
        An AstroNN checkpoint to start from (fine-tuning; its hyper-parameters are used unless
        ``hyperparameters`` is given, and must then match).  The normalisation (training-mean
        spectrum, label statistics) is recomputed on the new training set.
    brackett_mask : bool
        Set the Brackett cores (:func:`~stellarnn.spectra.brackett_mask.brackett_mask` at the true Teff;
        the wide windows where Teff is missing) to 1 in every training spectrum; recorded in the
        checkpoint (``normalisation["brackett_mask"]``) for the pipeline.  Off by default (the shipped
        weights were trained without it); on for networks trained on the PySME grids with H lines.

    Returns
    -------
    (model, metrics dict)
    """
    normed = _normalised(flux, ivar, bitmask)
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape != (normed.shape[0], len(OUTPUT_LABELS)):
        raise ValueError(f"labels must be (N, {len(OUTPUT_LABELS)}) = ({normed.shape[0]}, {len(OUTPUT_LABELS)}), "
                         f"got {labels.shape}")
    if not np.isfinite(normed).all():
        raise ValueError("normalised flux contains NaN/inf")
    if brackett_mask:
        normed = mask_brackett_normalised(normed, labels[:, OUTPUT_LABELS.index("teff")])
    n = normed.shape[0]
    if n < 2:
        raise ValueError("need at least 2 labelled spectra (one for validation)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    val, tr = order[:n_val], order[n_val:]
    spectrum_mean = normed[tr].mean(axis=0)
    label_mean, label_std = label_statistics(labels[tr])
    errors = None if label_errors is None else np.asarray(label_errors, dtype=np.float64)
    z, ez = normalise_labels(labels, label_mean, label_std, errors)
    ez = np.full_like(z, np.nan) if ez is None else ez
    x = network_input(normed, spectrum_mean)

    def tensors(idx):
        return (x[idx], torch.as_tensor(z[idx], dtype=torch.float32), torch.as_tensor(ez[idx], dtype=torch.float32))

    if init_from is not None and hyperparameters is None:
        from ...train import read_checkpoint

        hyperparameters = read_checkpoint(init_from)["hyperparameters"]
    model, hp = build_astronn(**(hyperparameters or {}))
    if init_from is not None:
        from ...train import warm_start

        provenance = {**(provenance or {}), **warm_start(model, init_from, "astronn")}
    cfg = config or TrainConfig(epochs=60, batch_size=64, lr=5e-4, plateau_patience=4, seed=seed)

    def loss_fn(m, batch):
        xb, yb, eb = batch
        value, log_var = m(xb)
        return robust_heteroscedastic_loss(value, log_var, yb, eb, beta=loss_beta)

    def value_mse(m, batch):  # selection on accuracy: the NLL also rewards the variance head
        xb, yb, _ = batch
        value, _ = m(xb)
        valid = ~missing_label_mask(yb)
        return (torch.where(valid, value - torch.where(valid, yb, 0.0), 0.0) ** 2).sum() / valid.sum().clamp_min(1)

    history = Trainer(model, loss_fn, cfg, resume_path=resume_path,
                      val_fn=value_mse if select_on_values else None).fit(tensors(tr), tensors(val))
    metrics = {"n_train": int(len(tr)), "n_val": int(len(val)), "best_epoch": history.best_epoch,
               "best_val_loss": history.best_val, "epochs_run": len(history.val_loss),
               "train_seconds": history.seconds, "loss_beta": loss_beta,
               "selection": "value_mse" if select_on_values else "loss",
               "validation": evaluate_astronn(model, normed[val], labels[val], spectrum_mean, label_mean, label_std,
                                              eval_passes, seed)}
    save_checkpoint(out_path, model, "astronn", hp,
                    normalisation={"spectrum_mean": spectrum_mean, "label_mean": label_mean, "label_std": label_std,
                                   "label_names": list(OUTPUT_LABELS), "brackett_mask": bool(brackett_mask)},
                    metrics=metrics, provenance=dict(provenance or {}), half=True)
    return model, metrics
