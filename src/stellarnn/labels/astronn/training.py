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
import warnings

import numpy as np
import torch

from ...spectra import APOGEE_N_KEPT, APOGEE_N_PIXELS
from ...spectra.brackett_mask import BRACKETT_MASK_DEFAULT
from ...train import TrainConfig, Trainer, save_checkpoint, split_by_block, validation_split
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


def _grid_continuum(grid: dict, n_pixels: int) -> np.ndarray:
    """The grid's relative continuum (stored every ``continuum_step`` pixels) back on every pixel."""
    from ...synthesis.training_set import upsample_continuum

    sparse = np.asarray(grid["continuum"], dtype=np.float64)
    return upsample_continuum(sparse, int(math.ceil(n_pixels / sparse.shape[1])), n_pixels)


def grid_labels_to_astronn(labels: np.ndarray, label_names) -> np.ndarray:
    """Convert grid labels (teff, logg, m_h, v_micro, x_m ...) to AstroNN outputs (N, 22): [X/H].

    Columns are picked by name, so any order and extra labels are accepted: the broadening labels
    (v_micro, and v_macro, v_sini of the 23-label grids) are not AstroNN outputs and are ignored;
    an output whose grid label is absent is NaN (missing).
    """
    labels = np.asarray(labels, dtype=np.float64)
    label_names = list(label_names)
    if labels.ndim != 2 or labels.shape[1] != len(label_names):
        raise ValueError(f"labels {labels.shape} do not match the {len(label_names)} label names")
    col = {n: i for i, n in enumerate(label_names)}
    if "m_h" not in col:
        raise ValueError("grid labels need m_h ([X/H] = [X/M] + [M/H])")
    out = np.full((labels.shape[0], len(OUTPUT_LABELS)), np.nan)
    for j, name in enumerate(OUTPUT_LABELS):
        src = GRID_TO_ASTRONN[name]
        if src not in col:
            continue
        v = labels[:, col[src]]
        out[:, j] = v + labels[:, col["m_h"]] if src.endswith("_m") and src != "m_h" else v
    return out


def noise_free_observations(grid) -> dict:
    """Noise-free apStar-like observations of a synthetic grid: normalised flux x relative continuum.

    Parameters
    ----------
    grid : dict or path (or list of paths)
        Output of :func:`stellarnn.synthesis.grid_builder.load_grid` (or its directories).

    Returns
    -------
    dict with ``flux`` and ``continuum`` (n, 8575) float32, ``labels`` (grid labels), ``label_names``.
    """
    if not isinstance(grid, dict):
        from ...synthesis.grid_builder import load_grid

        grid = load_grid(grid)
    norm = np.asarray(grid["flux"], dtype=np.float32)
    n, npx = norm.shape
    if npx != APOGEE_N_PIXELS:
        raise ValueError(f"grid flux has {npx} pixels, expected {APOGEE_N_PIXELS}")
    cont = _grid_continuum(grid, npx).astype(np.float32)
    return {"flux": norm * cont, "continuum": cont, "labels": np.asarray(grid["labels"]),
            "label_names": list(grid["label_names"])}


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
    cont = _grid_continuum(grid, npx)  # (n, 8575), relative
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


#: ``select`` of :func:`train_astronn` -> the name recorded in the checkpoint's metrics ("selection")
SELECTION_CRITERIA = {"values": "value_mse", "robust": "robust_scatter_geomean", "loss": "loss"}


#: Monte-Carlo dropout passes of the validation criteria (:func:`validation_values`)
VALIDATION_MC_PASSES = 10
#: seed of the validation passes' dropout masks: the same masks every epoch, and the training's random stream
#: untouched
VALIDATION_MC_SEED = 20190101


def validation_values(model, x: torch.Tensor, mc_passes: int = VALIDATION_MC_PASSES) -> torch.Tensor:
    """Predicted values (z-scored) on which the validation criteria score an epoch: MC-dropout means.

    The pipeline predicts with Monte-Carlo dropout (the mean of its passes), and a network trained
    with dropout before every dense layer is not the same function with dropout off: its
    deterministic (eval-mode) prediction drifts away from the MC mean as training goes on (in the
    retrain of 2026-12-07 the geometric mean of the labels' robust scatters rose by 42 % over five
    epochs for the deterministic values and by 1.4 % for the MC means;
    ``bench/results/astronn_dead_units_init.json``, ``retrain/v4/attempts/README.md``).  So the criteria score the
    mean of ``mc_passes`` passes, with masks drawn from a fixed seed in a forked random stream (the
    same masks every epoch; the training's random state is left as it was).  ``mc_passes=0``: the
    deterministic prediction.

    Returns
    -------
    tensor (B, n_labels)
    """
    if mc_passes <= 0:
        return model(x)[0]
    was = model.mc_dropout
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(VALIDATION_MC_SEED)
        model.mc_dropout = True
        try:
            value, _ = model.forward_mc(x, mc_passes)
        finally:
            model.mc_dropout = was
    return value.mean(dim=1)


def robust_value_scatter(model, batches, mc_passes: int = VALIDATION_MC_PASSES) -> float:
    """Validation criterion: the geometric mean over labels of each label's robust scatter.

    For each output label, the robust standard deviation (:func:`robust_scatter`) of the predicted
    value minus the truth in z-scored units over the validation rows where that label is known;
    then the geometric mean over labels, so that each label's relative improvement counts the
    same whatever its scale (a label known to 0.05 sigma and one known to 0.5 sigma both move the
    criterion by the same amount when their scatter falls by 10 %).

    Parameters
    ----------
    model : ApogeeBCNNCensored (eval mode)
    batches : iterable of (input, z-scored labels, z-scored label errors) batches
    mc_passes : int
        Monte-Carlo dropout passes of each prediction (:func:`validation_values`).

    Returns
    -------
    float
    """
    residuals = []
    for xb, yb, _ in batches:
        value = validation_values(model, xb, mc_passes)
        residuals.append(torch.where(missing_label_mask(yb), torch.nan, value - yb).double().cpu())
    with warnings.catch_warnings():  # a label unknown on every validation row is left out, not warned about
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        scatter = robust_scatter(torch.cat(residuals).numpy())
    scatter = scatter[np.isfinite(scatter)]
    if not len(scatter):
        raise ValueError("no label is known on any validation row")
    return float(np.exp(np.mean(np.log(np.maximum(scatter, 1e-12)))))


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


def init_normalisation(init_from, computed: tuple) -> tuple:
    """(spectrum_mean, label_mean, label_std) of the checkpoint ``init_from``, as float64 arrays of the shapes of
    ``computed`` (the same three computed on the new training set, returned when the checkpoint lacks them)."""
    from ...train import read_checkpoint

    norm = read_checkpoint(init_from).get("normalisation") or {}
    keys = ("spectrum_mean", "label_mean", "label_std")
    if not all(k in norm for k in keys):
        return computed
    out = tuple(torch.as_tensor(norm[k], dtype=torch.float64).numpy() for k in keys)
    for k, a, b in zip(keys, out, computed):
        if a.shape != np.shape(b):
            raise ValueError(f"{init_from}: normalisation {k} has shape {a.shape}, this training {np.shape(b)}")
    return out


def train_astronn(flux, labels, out_path, ivar=None, bitmask=None, label_errors=None, val_fraction: float = 0.1,
                  config: TrainConfig | None = None, hyperparameters: dict | None = None, resume_path=None,
                  provenance: dict | None = None, eval_passes: int = 30, seed: int = 0, loss_beta: float = 0.5,
                  select: str = "values", init_from=None, brackett_mask: bool = BRACKETT_MASK_DEFAULT,
                  fresh: dict | None = None, snr_range=None, freeze_trunk: bool = False):
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
    select : {"values", "robust", "loss"}
        What selects the best epoch and schedules the learning rate on the validation split:
        ``"values"`` the mean squared error of the predicted values (z-scored labels, all labels
        pooled; the values are Monte-Carlo dropout means, as the pipeline predicts them:
        :func:`validation_values`), ``"robust"`` the geometric mean over labels of each label's robust scatter
        (:func:`robust_value_scatter`: a few outliers or the least informative abundances do not
        decide it), ``"loss"`` the training loss itself.
    init_from : path, optional
        An AstroNN checkpoint to start from (fine-tuning; its hyper-parameters are used unless
        ``hyperparameters`` is given, and must then match).  Its normalisation (training-mean
        spectrum, label statistics) is kept: the warm-started weights were trained for it, and a
        fine-tuning on another population mix (``--emulated-balance``) would otherwise start from
        shifted inputs and outputs.  (Before 0.5.30 it was recomputed on the new training set.)
    brackett_mask : bool
        Set the Brackett cores (:func:`~stellarnn.spectra.brackett_mask.brackett_mask` at the true Teff;
        the wide windows where Teff is missing) to 1 in every training spectrum; recorded in the
        checkpoint (``normalisation["brackett_mask"]``) for the pipeline.  Off by default (the shipped
        weights were trained without it); on for networks trained on the PySME grids with H lines.

    fresh : dict, optional
        Noise-free spectra that get new noise every epoch (:class:`~stellarnn.synthesis.training_set.FreshNoiseDataset`):
        ``flux`` and ``continuum`` (M, 8575) (:func:`noise_free_observations`), ``labels`` (M, 22).  They are
        trained on together with the fixed rows ``flux`` (which may then be empty, (0, 8575)); their
        validation rows get one fixed noise realisation.
    snr_range : (low, high), optional
        S/N range of the fresh noise (default 30-500, log-uniform per spectrum and epoch).
    freeze_trunk : bool
        With ``init_from``: train the 19 abundance branches only; the convolutions, the dense trunk, the
        Teff / log g / [Fe/H] heads and the auxiliary output keep the checkpoint's weights (so do those labels'
        predictions).  For a fine-tune of the branches (e.g. at another ``branch_dropout``) that cannot move the
        main labels.

    Returns
    -------
    (model, metrics dict)
    """
    normed = _normalised(flux, ivar, bitmask)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, len(OUTPUT_LABELS)) if np.size(labels) == 0 \
        else np.asarray(labels, dtype=np.float64)
    if labels.shape != (normed.shape[0], len(OUTPUT_LABELS)):
        raise ValueError(f"labels must be (N, {len(OUTPUT_LABELS)}) = ({normed.shape[0]}, {len(OUTPUT_LABELS)}), "
                         f"got {labels.shape}")
    if not np.isfinite(normed).all():
        raise ValueError("normalised flux contains NaN/inf")
    it = OUTPUT_LABELS.index("teff")
    if brackett_mask and len(normed):
        normed = np.asarray(mask_brackett_normalised(normed, labels[:, it]))
    n_fresh = 0 if fresh is None else len(fresh["flux"])
    fresh_labels = (np.empty((0, len(OUTPUT_LABELS))) if fresh is None
                    else np.asarray(fresh["labels"], dtype=np.float64))
    if fresh_labels.shape != (n_fresh, len(OUTPUT_LABELS)):
        raise ValueError(f"fresh-noise labels must be ({n_fresh}, {len(OUTPUT_LABELS)}), got {fresh_labels.shape}")
    all_labels = np.concatenate([fresh_labels, labels])  # rows: noise-free spectra first, then fixed ones
    tr, val = validation_split(len(all_labels), val_fraction, seed)  # refuses < 2 rows (one each side)
    (tr_f, tr_x), (val_f, val_x) = split_by_block(tr, n_fresh), split_by_block(val, n_fresh)

    def mask_fresh(normalised, rows):  # rows: indices into the noise-free spectra
        return (mask_brackett_normalised(normalised, fresh_labels[rows, it]) if brackett_mask
                else torch.as_tensor(normalised))

    if n_fresh:  # the training mean spectrum: noise-free spectra (noise averages out) and fixed rows
        clean, cont = fresh["flux"], fresh["continuum"]
        sums = normed[tr_x].sum(axis=0)
        for a in range(0, len(tr_f), 2000):
            rows = tr_f[a:a + 2000]
            sums = sums + mask_fresh(normalise_apstar(clean[rows], (np.asarray(cont[rows], dtype=np.float64) / 100) ** -2),
                                     rows).numpy().sum(axis=0)
        spectrum_mean = sums / len(tr)
    else:
        spectrum_mean = normed[tr_x].mean(axis=0)
    label_mean, label_std = label_statistics(all_labels[tr])
    if init_from is not None:  # a fine-tuning keeps the normalisation its weights were trained for
        spectrum_mean, label_mean, label_std = init_normalisation(init_from, (spectrum_mean, label_mean, label_std))
    errors = None if label_errors is None else np.asarray(label_errors, dtype=np.float64)
    if errors is not None:
        errors = np.concatenate([np.full((n_fresh, len(OUTPUT_LABELS)), np.nan), errors])
    z, ez = normalise_labels(all_labels, label_mean, label_std, errors)
    ez = np.full_like(z, np.nan) if ez is None else ez
    x_fixed = network_input(normed, spectrum_mean) if len(normed) else torch.empty((0, APOGEE_N_KEPT))

    def targets(idx):
        return torch.as_tensor(z[idx], dtype=torch.float32), torch.as_tensor(ez[idx], dtype=torch.float32)

    if n_fresh:
        from ...synthesis.training_set import (FRESH_SNR_RANGE, FreshNoiseDataset, add_fresh_noise, epoch_generator,
                                               log_uniform_snr)

        snr_range = tuple(snr_range or FRESH_SNR_RANGE)

        def make_input(noisy, noisy_ivar, rows, fresh_rows=tr_f):
            return network_input(mask_fresh(normalise_apstar(noisy, noisy_ivar), fresh_rows[rows]), spectrum_mean)

        train_data = FreshNoiseDataset(clean[tr_f], cont[tr_f], make_input, targets(np.concatenate([tr_f, tr_x + n_fresh])),
                                       fixed_inputs=x_fixed[tr_x], snr_range=snr_range, seed=seed)
        # validation: one fixed noise realisation (same S/N law), so that epochs are compared on the same data
        gen = epoch_generator(seed, 2 ** 31)
        val_flux, val_ivar = add_fresh_noise(clean[val_f], cont[val_f], log_uniform_snr(len(val_f), snr_range, gen), gen)
        val_normed = np.concatenate([mask_fresh(normalise_apstar(val_flux, val_ivar), val_f).numpy(), normed[val_x]])
    else:
        train_data = (x_fixed[tr_x],) + targets(tr)
        val_normed = normed[val_x]
    val_data = (network_input(val_normed, spectrum_mean),) + targets(np.concatenate([val_f, val_x + n_fresh]))
    labels = all_labels
    val_labels = np.concatenate([fresh_labels[val_f], labels[n_fresh:][val_x]])

    if select not in SELECTION_CRITERIA:
        raise ValueError(f"select must be one of {', '.join(SELECTION_CRITERIA)}, not {select!r}")
    if init_from is not None and hyperparameters is None:
        from ...train import read_checkpoint

        hyperparameters = read_checkpoint(init_from)["hyperparameters"]
    model, hp = build_astronn(**(hyperparameters or {}))
    if init_from is not None:
        from ...train import warm_start

        provenance = {**(provenance or {}), **warm_start(model, init_from, "astronn")}
    if freeze_trunk:
        if init_from is None:
            raise ValueError("freeze_trunk needs init_from: a new network's trunk would stay at its initialisation")
        for name, param in model.named_parameters():
            if not name.startswith("branch_"):
                param.requires_grad_(False)
        provenance = {**(provenance or {}), "trained": "abundance branches only (trunk, main-label heads and "
                                                        "auxiliary output frozen at init_from)"}
    cfg = config or TrainConfig(epochs=60, batch_size=64, lr=5e-4, plateau_patience=4, seed=seed)

    def loss_fn(m, batch):
        xb, yb, eb = batch
        value, log_var = m(xb)
        return robust_heteroscedastic_loss(value, log_var, yb, eb, beta=loss_beta)

    def value_mse(m, batch):  # selection on accuracy: the NLL also rewards the variance head
        xb, yb, _ = batch
        value = validation_values(m, xb)
        valid = ~missing_label_mask(yb)
        return (torch.where(valid, value - torch.where(valid, yb, 0.0), 0.0) ** 2).sum() / valid.sum().clamp_min(1)

    history = Trainer(model, loss_fn, cfg, resume_path=resume_path, val_fn=value_mse if select == "values" else None,
                      val_metric=robust_value_scatter if select == "robust" else None).fit(train_data, val_data)
    metrics = {"n_train": int(len(tr)), "n_val": int(len(val)), "best_epoch": history.best_epoch,
               "best_val_loss": history.best_val, "epochs_run": len(history.val_loss),
               "train_seconds": history.seconds, "stopped_by": history.stopped_by, "loss_beta": loss_beta,
               "selection": SELECTION_CRITERIA[select],
               "early_stop_patience": cfg.early_stop_patience,
               "fresh_noise": ({"n_spectra": n_fresh, "snr_range": list(snr_range), "seed": seed,
                                "law": "S/N log-uniform per spectrum and epoch, sigma = continuum / S/N"}
                               if n_fresh else None),
               "validation": evaluate_astronn(model, val_normed, val_labels, spectrum_mean, label_mean, label_std,
                                              eval_passes, seed)}
    save_checkpoint(out_path, model, "astronn", hp,
                    normalisation={"spectrum_mean": spectrum_mean, "label_mean": label_mean, "label_std": label_std,
                                   "label_names": list(OUTPUT_LABELS), "brackett_mask": bool(brackett_mask)},
                    metrics=metrics, provenance=dict(provenance or {}), half=True)
    return model, metrics
