"""Training the iNNterpol emulator with the project's Trainer, and the evaluation splits.

Evaluation protocol (issue 3): three held-out sets never trained on,

(a) ``random``: 10 % of the remaining models at random (seeded);
(b) ``teff_columns``: whole interior Teff columns, every other Teff node over a range
    (ATLAS9: 4250, 4750, ..., 7250 K), to test interpolation between nodes;
(c) ``edge``: the lowest log g plane (ATLAS9: log g = 0), to test extrapolation.

The rest is split 90 % train / 10 % validation (the Trainer keeps the best-validation weights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..train import TrainConfig, Trainer, read_checkpoint, save_checkpoint, warm_start
from .emulator import MODEL_KIND, THETA_TEFF_K, InnterpolMLP
from .resample import QUANTITIES, TauSampledGrid
from .svd import SVDBasis


@dataclass
class Splits:
    """Boolean masks over the models of a :class:`TauSampledGrid`."""

    train: np.ndarray
    validation: np.ndarray
    random: np.ndarray
    teff_columns: np.ndarray
    edge: np.ndarray
    description: dict = field(default_factory=dict)

    @property
    def held_out(self) -> np.ndarray:
        return self.random | self.teff_columns | self.edge


def make_splits(grid: TauSampledGrid, teff_range=(4250.0, 7250.0), edge_axis: str = "logg",
                edge_at: str = "min", random_fraction: float = 0.1, validation_fraction: float = 0.1,
                seed: int = 0) -> Splits:
    """The evaluation protocol's held-out sets and the train/validation split.

    Parameters
    ----------
    teff_range : (lo, hi) in K
        Interior range whose every other Teff node (starting at the second node >= lo) is held out
        as whole columns; ``None`` for no column set (grids without a ``teff`` axis).
    edge_axis, edge_at : str
        The edge set: all models on the first ("min") or last ("max") node of this axis.
    """
    params = grid.params
    n = len(grid)
    names = grid.axis_names
    cols = np.zeros(n, dtype=bool)
    held_teff = []
    if teff_range is not None and "teff" in names:
        t_axis = np.asarray(grid.axes["teff"])
        inside = t_axis[(t_axis >= teff_range[0]) & (t_axis <= teff_range[1])]
        start = 0 if len(inside) and inside[0] > t_axis[0] else 1
        held_teff = inside[start::2].tolist()
        cols = np.isin(params[:, names.index("teff")], held_teff)
    k = names.index(edge_axis)
    edge_value = float(np.min(grid.axes[edge_axis]) if edge_at == "min" else np.max(grid.axes[edge_axis]))
    edge = params[:, k] == edge_value
    cols &= ~edge
    rng = np.random.default_rng(seed)
    rest = np.flatnonzero(~(cols | edge))
    rng.shuffle(rest)
    n_random = int(round(random_fraction * len(rest)))
    random = np.zeros(n, dtype=bool)
    random[rest[:n_random]] = True
    remaining = rest[n_random:]
    n_val = int(round(validation_fraction * len(remaining)))
    validation = np.zeros(n, dtype=bool)
    validation[remaining[:n_val]] = True
    train = np.zeros(n, dtype=bool)
    train[remaining[n_val:]] = True
    desc = {"teff_columns_K": held_teff, "edge": f"{edge_axis} = {edge_value:g}", "seed": seed,
            "random_fraction": random_fraction, "validation_fraction": validation_fraction,
            "counts": {"train": int(train.sum()), "validation": int(validation.sum()), "random": int(random.sum()),
                       "teff_columns": int(cols.sum()), "edge": int(edge.sum())}}
    return Splits(train, validation, random, cols, edge, desc)


#: the family an emulator trained with the ATLAS9 [M/H] family as an input uses when a caller gives none: 0, the
#: slices of 72-layer decks, which sample [M/H] = -2.5 ... +0.5 (where most stars are) every 0.5 dex; family 1
#: has nothing between -3.0 and -0.3 (:func:`stellarnn.atmospheres.grid.atlas9_m_h_families`)
DEFAULT_FAMILY = 0.0


@dataclass
class InnterpolConfig:
    """Emulator hyper-parameters and optimisation settings (defaults: the iNNterpol paper, more epochs)."""

    n_components: int = 12
    hidden: int = 40
    n_hidden_layers: int = 12
    negative_slope: float = 0.2
    activation: str = "leaky_relu"
    epochs: int = 2000
    batch_size: int = 64
    lr: float = 3e-4
    plateau_patience: int | None = 100
    schedule: str = "plateau"
    min_lr: float = 0.0
    weight_decay: float = 0.0
    max_seconds: float | None = None
    seed: int = 0
    #: full-batch L-BFGS steps after Adam (0: none), each of up to ``polish_iterations`` iterations
    polish_epochs: int = 0
    polish_iterations: int = 50
    #: loss weight of each quantity (``QUANTITIES`` order); None weighs all four alike.  The targets are the
    #: coefficients of each quantity divided by their rms, so equal weights balance the quantities' errors
    #: relative to their spread; a larger weight on log T spends more of the network on T.
    quantity_weights: tuple | None = None
    #: depth-resolved loss weights: ``((quantity, log_tau_min, log_tau_max, weight), ...)`` with quantity one of
    #: "rhox", "T", "P", "n_e".  When given, the loss is taken on the decoded log profiles (each quantity's error in
    #: units of its coefficients' rms, as before: with all weights 1 it equals the coefficient loss, the SVD basis
    #: being orthonormal) and the layers in [log_tau_min, log_tau_max] of that quantity count ``weight`` times.
    #: Near tau = 1 the held-out n_e errors are the T errors amplified ~10x (ionisation), for the emulator as for
    #: linear interpolation; weighting n_e (and T) there moved the held-out n_e little (stop-30 closing note).
    depth_weights: tuple = ()
    #: [M/H] slices left out of training and validation (e.g. the grid audit's inconsistent slices); the
    #: held-out splits are made on the whole grid first, so the evaluation protocol does not change
    exclude_m_h: tuple = ()
    #: torch device of the training ("cpu", "cuda" or "auto")
    device: str = "cpu"
    #: the network sees theta = 5040 K / Teff instead of Teff (min-max scaled like every axis): the cool end, where
    #: models change fastest with Teff, gets more of the input range (checkpoint ``input_transform``)
    teff_as_theta: bool = False


#: names accepted for the quantities of :attr:`InnterpolConfig.depth_weights` (``QUANTITIES`` order)
DEPTH_WEIGHT_QUANTITIES = ("rhox", "T", "P", "n_e")


def depth_weight_profile(depth_weights, log_tau: np.ndarray) -> np.ndarray:
    """Per-layer loss weights (Q, K) from ``((quantity, log_tau_min, log_tau_max, weight), ...)`` (1 elsewhere;
    overlapping ranges multiply)."""
    w = np.ones((len(DEPTH_WEIGHT_QUANTITIES), len(log_tau)))
    for item in depth_weights:
        if len(item) != 4:
            raise ValueError(f"a depth weight is (quantity, log_tau_min, log_tau_max, weight), got {item!r}")
        name, lo, hi, weight = item
        if name not in DEPTH_WEIGHT_QUANTITIES:
            raise ValueError(f"depth-weight quantity must be one of {DEPTH_WEIGHT_QUANTITIES}, got {name!r}")
        lo, hi, weight = float(lo), float(hi), float(weight)
        if not (hi > lo and weight > 0 and np.isfinite(weight)):
            raise ValueError(f"need log_tau_max > log_tau_min and a positive weight, got {item!r}")
        sel = (log_tau >= lo) & (log_tau <= hi)
        if not sel.any():
            raise ValueError(f"no layer of the tau scale ({log_tau[0]:g} ... {log_tau[-1]:g}) lies in [{lo:g}, {hi:g}]")
        w[DEPTH_WEIGHT_QUANTITIES.index(name), sel] *= weight
    return w


def profile_weighted_mse(components: np.ndarray, layer_weights: np.ndarray, quantity_weights: np.ndarray):
    """Loss on the decoded profiles: the scaled-coefficient error of each quantity (n, Q*C) times its SVD components
    (Q, C, K) gives the profile error in the same units; squared, weighted per layer (Q, K) and per quantity (Q,),
    summed over layers and averaged over the Q*C outputs, so that unit weights give the plain coefficient MSE."""
    comps = torch.as_tensor(components, dtype=torch.float32)  # (Q, C, K)
    lw = torch.as_tensor(layer_weights * np.asarray(quantity_weights, dtype=float)[:, None], dtype=torch.float32)
    lw = lw / torch.as_tensor(np.asarray(quantity_weights, dtype=float).mean(), dtype=torch.float32)
    q, c, _ = comps.shape

    def loss(model, batch):
        x, y = batch
        d = (model(x) - y).reshape(-1, q, c)
        prof = torch.einsum("nqc,qck->nqk", d, comps.to(d))
        return torch.sum(prof ** 2 * lw.to(d)) / (d.shape[0] * q * c)

    return loss


def weighted_mse(column_weights: torch.Tensor):
    """Mean squared error with one weight per output column (weights normalised to mean 1; all equal: the plain MSE)."""
    w = column_weights / column_weights.mean()

    def loss(model, batch):
        x, y = batch
        return torch.mean((model(x) - y) ** 2 * w)

    return loss


def train_innterpol(grid: TauSampledGrid, splits: Splits, out_path, config: InnterpolConfig | None = None,
                    resume_path=None, provenance: dict | None = None, progress: bool = True, init_path=None):
    """Fit the SVD basis on the training models, train the MLP, write a float16 checkpoint.

    Parameters
    ----------
    grid : TauSampledGrid
    splits : Splits
        Only ``splits.train`` models shape the basis and the weights; ``splits.validation`` picks
        the best epoch.
    out_path : path of the checkpoint to write.
    resume_path : optional path of the Trainer's resumable state (resumes if it exists).
    init_path : optional checkpoint to start from (same widths, ``strict=True``); its SVD basis and
        scalings are reused, so its weights keep their meaning (``epochs=0`` with ``polish_epochs``
        polishes a trained emulator with L-BFGS only).

    Returns
    -------
    (checkpoint path, History)
    """
    cfg = config or InnterpolConfig()
    torch.manual_seed(cfg.seed)
    if cfg.teff_as_theta and "teff" not in grid.axis_names:
        raise ValueError(f"teff_as_theta needs a teff axis; this grid has {grid.axis_names}")
    if cfg.exclude_m_h:
        if "m_h" not in grid.axis_names:
            raise ValueError("exclude_m_h needs a grid with an m_h axis")
        excluded = np.isin(np.round(grid.params[:, grid.axis_names.index("m_h")], 6),
                           np.round(np.asarray(cfg.exclude_m_h, dtype=float), 6))
        splits = Splits(splits.train & ~excluded, splits.validation & ~excluded, splits.random, splits.teff_columns,
                        splits.edge, dict(splits.description, excluded_m_h=[float(v) for v in cfg.exclude_m_h],
                                          n_excluded_models=int(excluded.sum())))
    train_values = grid.values[splits.train]
    params = grid.params
    if init_path is not None:
        norm = read_checkpoint(init_path)["normalisation"]
        if list(norm["axis_names"]) != list(grid.axis_names):
            raise ValueError(f"{init_path}: trained on axes {norm['axis_names']}, this grid has {grid.axis_names}")
        basis = SVDBasis(_array(norm["svd_mean"]), _array(norm["svd_components"]))
        if basis.n_components != cfg.n_components:
            raise ValueError(f"{init_path}: {basis.n_components} SVD components, the configuration asks for "
                             f"{cfg.n_components}")
        scale = _array(norm["coefficient_scale"])
        axis_min, axis_max = _array(norm["axis_min"]), _array(norm["axis_max"])
        coeffs = basis.encode(grid.values)
        if (norm.get("input_transform") or {}) != ({"teff": "theta"} if cfg.teff_as_theta else {}):
            raise ValueError(f"{init_path}: input transform {norm.get('input_transform') or {}} differs from the "
                             f"configuration's (teff_as_theta={cfg.teff_as_theta})")
    else:
        basis = SVDBasis.fit(train_values, cfg.n_components)
        coeffs = basis.encode(grid.values)  # (n, Q, C)
        scale = np.sqrt((coeffs[splits.train] ** 2).mean(axis=(0, 2)))
        axes = [np.asarray(grid.axes[k], dtype=float) for k in grid.axis_names]
        if cfg.teff_as_theta:
            axes[grid.axis_names.index("teff")] = THETA_TEFF_K / axes[grid.axis_names.index("teff")]
        axis_min = np.array([np.min(a) for a in axes])
        axis_max = np.array([np.max(a) for a in axes])
    net_params = params.copy()
    if cfg.teff_as_theta:
        net_params[:, grid.axis_names.index("teff")] = THETA_TEFF_K / net_params[:, grid.axis_names.index("teff")]
    x = torch.as_tensor((net_params - axis_min) / (axis_max - axis_min), dtype=torch.float32)
    y = torch.as_tensor((coeffs / scale[None, :, None]).reshape(len(grid), -1), dtype=torch.float32)
    hyper = {"n_inputs": len(grid.axis_names), "n_outputs": int(y.shape[1]), "hidden": cfg.hidden,
             "n_hidden_layers": cfg.n_hidden_layers, "negative_slope": cfg.negative_slope,
             "activation": cfg.activation}
    model = InnterpolMLP(**hyper)
    qw = np.ones(len(QUANTITIES)) if cfg.quantity_weights is None else np.asarray(cfg.quantity_weights, dtype=float)
    if qw.shape != (len(QUANTITIES),) or not (np.isfinite(qw).all() and (qw > 0).all()):
        raise ValueError(f"quantity_weights must be {len(QUANTITIES)} positive numbers ({', '.join(QUANTITIES)}), "
                         f"got {cfg.quantity_weights!r}")
    if cfg.depth_weights:
        loss_fn = profile_weighted_mse(np.asarray(basis.components), depth_weight_profile(cfg.depth_weights,
                                                                                          grid.log_tau), qw)
    else:
        loss_fn = weighted_mse(torch.as_tensor(np.repeat(qw, basis.n_components), dtype=torch.float32))
    init_info = warm_start(model, init_path, MODEL_KIND) if init_path is not None else {}
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, plateau_patience=cfg.plateau_patience,
                       schedule=cfg.schedule, min_lr=cfg.min_lr, weight_decay=cfg.weight_decay,
                       max_seconds=cfg.max_seconds, seed=cfg.seed, device=cfg.device, progress=progress)
    tr, va = torch.as_tensor(splits.train), torch.as_tensor(splits.validation)
    val_data = (x[va], y[va]) if splits.validation.any() else None
    history = Trainer(model, loss_fn, tcfg, resume_path=resume_path).fit((x[tr], y[tr]), val_data)
    polish = None
    if cfg.polish_epochs > 0:
        # L-BFGS from the best Adam weights; kept only if it improves the validation loss
        adam_best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if not np.isfinite(history.best_val) and val_data is not None:  # no Adam epoch: the initial weights
            history.best_val = Trainer(model, loss_fn, tcfg).evaluate(val_data)
        pcfg = TrainConfig(epochs=cfg.polish_epochs, optimizer="lbfgs", lr=1.0, lbfgs_iterations=cfg.polish_iterations,
                           batch_size=max(cfg.batch_size, 4096), seed=cfg.seed, device=cfg.device, progress=progress)
        polish_resume = Path(str(resume_path) + ".lbfgs") if resume_path else None
        polish = Trainer(model, loss_fn, pcfg, resume_path=polish_resume).fit((x[tr], y[tr]), val_data)
        if not polish.best_val < history.best_val:
            model.load_state_dict(adam_best, strict=True)
    normalisation = {"axis_names": list(grid.axis_names), "axis_min": axis_min, "axis_max": axis_max,
                     "coefficient_scale": scale, "svd_mean": basis.mean, "svd_components": basis.components,
                     "grid_nodes": params[splits.train | splits.validation], "log_tau": grid.log_tau,
                     "quantities": list(QUANTITIES)}
    if "family" in grid.axis_names:  # the ATLAS9 [M/H] family as an input: callers may leave it out
        normalisation["default_family"] = DEFAULT_FAMILY
    if cfg.teff_as_theta:
        normalisation["input_transform"] = {"teff": "theta"}
    metrics = {"best_val_mse": history.best_val, "best_epoch": history.best_epoch,
               "epochs_run": len(history.train_loss), "train_seconds": history.seconds}
    if polish is not None:
        metrics.update({"adam_best_val_mse": history.best_val, "best_val_mse": min(history.best_val, polish.best_val),
                        "polish_best_val_mse": polish.best_val, "polish_best_epoch": polish.best_epoch,
                        "polish_epochs_run": len(polish.train_loss),
                        "train_seconds": history.seconds + polish.seconds})
        history.best_val = metrics["best_val_mse"]
    model = model.cpu()
    prov = {"config": asdict(cfg), "splits": splits.description, "grid_notes": list(grid.notes), **init_info,
            "excluded_m_h": [float(v) for v in cfg.exclude_m_h],
            **(provenance or {})}
    path = save_checkpoint(Path(out_path), model, MODEL_KIND, hyper, normalisation=normalisation,
                           metrics=metrics, provenance=prov, half=True)
    return path, history


def _array(x) -> np.ndarray:
    return x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def update_manifest(manifest_path, checkpoint_path, name: str, command: str, metrics: dict | None = None,
                    training_data: str = "ATLAS9 grid (astro-species 4.1.0 species/data/ATLAS9_grid.nc, "
                                          "stellarnn data entry 'atlas9-grid'), resampled onto 71 tau_Ross points") -> dict:
    """Add or replace the entry ``name`` of a weights manifest (:func:`stellarnn.train.update_manifest`),
    with the ATLAS9 grid as the default training data."""
    from ..train import update_manifest as update

    return update(manifest_path, checkpoint_path, name, command, training_data=training_data, metrics=metrics)
