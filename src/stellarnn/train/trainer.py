"""The one trainer used by every stellarnn network.

It trains any ``nn.Module`` with a user-given loss on in-memory tensors or any
``torch.utils.data.Dataset``, keeps the best-validation weights, and can be stopped
and resumed: with ``resume_path`` set, the full state (model, optimiser, scheduler,
epoch, history, best weights, RNG) is written atomically after every epoch and
picked up by the next call.

The resume file holds only tensors, numbers, strings, lists, tuples and dicts (RNG states as
byte tensors), and it is read with ``torch.load(weights_only=True)``: a crafted file cannot run
code through ``--resume``.  A file that does not load that way (not a resume file, written by
something else, or corrupt) raises :class:`ResumeStateError` saying to delete it.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..atomic_files import atomic_write
from .checkpoint import CheckpointError, _to_storable, describe_load_error

#: tag of the trainer's resume files
RESUME_FORMAT = "stellarnn-trainer-state"
_RESUME_KEYS = ("epoch", "model", "optimizer", "scheduler", "history", "best_state", "generator")


class ResumeStateError(CheckpointError):
    """A ``--resume`` file that cannot be (safely) resumed from: delete it to start again."""


def read_resume_state(path: str | os.PathLike, map_location=None) -> dict:
    """Read a trainer resume file with ``torch.load(weights_only=True)`` and check its layout.

    Parameters
    ----------
    path : path-like
        The resume file.
    map_location : optional
        Passed to ``torch.load``.

    Returns
    -------
    dict
        The resume state (``epoch``, ``model``, ``optimizer``, ``scheduler``, ``history``,
        ``best_state``, ``generator``, optionally ``torch_rng`` / ``cuda_rng``).

    Raises
    ------
    ResumeStateError
        The file does not load without unpickling arbitrary objects, is corrupt, or is not a
        stellarnn resume file.  Never retried with full unpickling.
    """
    path = Path(path)
    advice = "delete it to start the training again"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # objects refused by weights_only, truncated, not a torch file, unreadable
        raise ResumeStateError(f"resume file {path} is not a readable stellarnn trainer state: "
                               f"{describe_load_error(exc)}; {advice}") from exc
    if not isinstance(state, dict) or state.get("format", RESUME_FORMAT) != RESUME_FORMAT:
        raise ResumeStateError(f"resume file {path} is not a stellarnn trainer state; {advice}")
    missing = [k for k in _RESUME_KEYS if k not in state]
    if missing:
        raise ResumeStateError(f"resume file {path} lacks {', '.join(missing)}; {advice}")
    if not isinstance(state["epoch"], int) or not isinstance(state["history"], dict):
        raise ResumeStateError(f"resume file {path} has a malformed epoch or history; {advice}")
    return state


@dataclass
class TrainConfig:
    """Optimisation settings (Adam and a learning-rate schedule, or full-batch L-BFGS).

    ``schedule``: ``"plateau"`` (default) halves the rate (``plateau_factor``) after
    ``plateau_patience`` epochs without a better validation loss, never below ``min_lr``; with
    ``plateau_patience=None`` the rate stays constant.  ``"cosine"`` anneals it from ``lr`` to
    ``min_lr`` over ``epochs`` (Loshchilov & Hutter 2017, SGDR, without restarts), so ``epochs``
    should be what the time budget allows.

    ``optimizer``: ``"adam"`` (default, minibatches of ``batch_size``) or ``"lbfgs"``: full-batch
    L-BFGS with a strong-Wolfe line search (Nocedal & Wright 2006, algorithms 7.5 and 3.5), for small
    in-memory regression problems, typically to polish weights found by Adam.  An L-BFGS "epoch"
    is one ``torch.optim.LBFGS.step`` of up to ``lbfgs_iterations`` iterations over the whole
    training set (``lr`` is the line search's initial step, 1 is customary); no schedule,
    ``batch_size`` only sets the evaluation batches.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.0
    plateau_patience: int | None = None  # ReduceLROnPlateau patience (epochs); None: constant lr
    plateau_factor: float = 0.5
    schedule: str = "plateau"
    min_lr: float = 0.0
    early_stop_patience: int | None = None
    grad_clip: float | None = None
    max_seconds: float | None = None  # stop (keeping the best weights) after this wall time
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    optimizer: str = "adam"
    lbfgs_iterations: int = 50
    lbfgs_history: int = 100


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val: float = math.inf
    seconds: float = 0.0
    #: why the last fit ended: "early_stop" (patience ran out: converged), "max_seconds" (the wall-time limit: a
    #: later run may continue from the weights) or "epochs" (all epochs run); "" before a fit ends
    stopped_by: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _as_dataset(data) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)):
        return TensorDataset(*[torch.as_tensor(x) for x in data])
    raise TypeError("training data must be a Dataset or a tuple of tensors")


class Trainer:
    """Train ``model`` to minimise ``loss_fn(model, batch) -> scalar tensor``.

    ``batch`` is whatever the data loader yields (a tuple of tensors already moved to the device).
    ``val_fn(model, batch)``, when given, is the validation criterion that selects the best weights
    and drives the learning-rate schedule instead of the loss (e.g. the error of the predicted
    values when the loss also scores predicted variances); it is averaged over batches, weighted by
    their size.  ``val_metric(model, batches)``, when given instead, scores the whole validation set
    at once (``batches`` yields every batch, on the device, in eval mode and without gradients), for
    criteria that are not means over spectra, such as a robust scatter.
    A training ``Dataset`` with a ``set_epoch(epoch)`` method has it called at the start of every
    epoch (e.g. :class:`stellarnn.synthesis.training_set.FreshNoiseDataset`, new noise each epoch).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Sequence[torch.Tensor]], torch.Tensor],
                 config: TrainConfig | None = None, resume_path: str | os.PathLike | None = None,
                 val_fn: Callable[[torch.nn.Module, Sequence[torch.Tensor]], torch.Tensor] | None = None,
                 val_metric: Callable[[torch.nn.Module, Iterable[Sequence[torch.Tensor]]], float] | None = None):
        if val_fn is not None and val_metric is not None:
            raise ValueError("give val_fn (a mean over batches) or val_metric (the whole validation set), not both")
        self.model = model
        self.loss_fn = loss_fn
        # what selects the best weights and drives the learning-rate schedule (default: the loss)
        self.val_fn = val_fn or loss_fn
        self.val_metric = val_metric
        self.config = config or TrainConfig()
        self.device = pick_device(self.config.device)
        self.resume_path = Path(resume_path) if resume_path else None

    def _loader(self, data, shuffle: bool, generator=None) -> DataLoader:
        return DataLoader(_as_dataset(data), batch_size=self.config.batch_size, shuffle=shuffle,
                          generator=generator, drop_last=False)

    def _move(self, batch):
        if isinstance(batch, torch.Tensor):
            return (batch.to(self.device),)
        return tuple(b.to(self.device) if isinstance(b, torch.Tensor) else b for b in batch)

    @torch.no_grad()
    def evaluate(self, data) -> float:
        self.model.eval()
        if self.val_metric is not None:
            return float(self.val_metric(self.model, (self._move(b) for b in self._loader(data, shuffle=False))))
        total, count = 0.0, 0
        for batch in self._loader(data, shuffle=False):
            batch = self._move(batch)
            n = batch[0].shape[0]
            total += float(self.val_fn(self.model, batch)) * n
            count += n
        return total / max(count, 1)

    def fit(self, train_data, val_data=None) -> History:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = self.model.to(self.device)
        if cfg.optimizer == "lbfgs":
            if cfg.weight_decay or cfg.grad_clip:
                raise ValueError("the L-BFGS optimizer takes no weight_decay or grad_clip")
            opt = torch.optim.LBFGS(model.parameters(), lr=cfg.lr, max_iter=cfg.lbfgs_iterations,
                                    history_size=cfg.lbfgs_history, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-12, tolerance_change=1e-15)
        elif cfg.optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam or lbfgs)")
        if cfg.optimizer == "lbfgs":
            sched = None
        elif cfg.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1), eta_min=cfg.min_lr)
        elif cfg.schedule == "plateau":
            sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.plateau_factor,
                                                                patience=cfg.plateau_patience, min_lr=cfg.min_lr)
                     if cfg.plateau_patience is not None else None)
        else:
            raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r} (plateau or cosine)")
        history, start_epoch, best_state = History(), 0, None
        if self.resume_path is not None and self.resume_path.is_file():
            state = read_resume_state(self.resume_path, map_location=self.device)
            try:
                model.load_state_dict(state["model"], strict=True)
                opt.load_state_dict(state["optimizer"])
                if sched is not None and state.get("scheduler"):
                    sched.load_state_dict(state["scheduler"])
                history = History(**state["history"])
                gen.set_state(state["generator"].cpu())
                if state.get("torch_rng") is not None:
                    torch.set_rng_state(state["torch_rng"].cpu())
                if state.get("cuda_rng") and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
            except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise ResumeStateError(f"resume file {self.resume_path} does not fit this training (another "
                                       f"network or optimiser?): {describe_load_error(exc)}; delete it to start "
                                       "again") from exc
            best_state = state["best_state"]
            start_epoch = state["epoch"] + 1
        loader = self._loader(train_data, shuffle=True, generator=gen)
        full_batch = None
        if cfg.optimizer == "lbfgs":  # the whole training set, once, in its stored order
            dataset = _as_dataset(train_data)
            full_batch = self._move(next(iter(DataLoader(dataset, batch_size=max(len(dataset), 1)))))
        t0 = time.perf_counter() - history.seconds
        since_best = 0
        from tqdm.auto import tqdm

        bar = tqdm(range(start_epoch, cfg.epochs), desc="training", unit="epoch", disable=not cfg.progress,
                   initial=start_epoch, total=cfg.epochs)
        set_epoch = getattr(loader.dataset, "set_epoch", None)  # datasets that change every epoch (fresh noise)
        for epoch in bar:
            if callable(set_epoch):
                set_epoch(epoch)
            model.train()
            total, count = 0.0, 0
            if full_batch is not None:
                total, count = self._lbfgs_epoch(model, opt, full_batch, epoch), 1
            for batch in (loader if full_batch is None else ()):
                batch = self._move(batch)
                opt.zero_grad(set_to_none=True)
                loss = self.loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch}")
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                n = batch[0].shape[0]
                total += float(loss.detach()) * n
                count += n
            train_loss = total / max(count, 1)
            val_loss = self.evaluate(val_data) if val_data is not None else train_loss
            history.train_loss.append(train_loss)
            history.val_loss.append(val_loss)
            history.lr.append(opt.param_groups[0]["lr"])
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(val_loss)
            elif sched is not None:
                sched.step()
            if val_loss < history.best_val:
                history.best_val, history.best_epoch = val_loss, epoch
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                since_best = 0
            else:
                since_best += 1
            history.seconds = time.perf_counter() - t0
            bar.set_postfix(train=f"{train_loss:.3g}", val=f"{val_loss:.3g}")
            if self.resume_path is not None:
                self._save_resume(epoch, opt, sched, history, best_state, gen)
            if cfg.early_stop_patience is not None and since_best >= cfg.early_stop_patience:
                history.stopped_by = "early_stop"
                break
            if cfg.max_seconds is not None and history.seconds > cfg.max_seconds:
                history.stopped_by = "max_seconds"
                break
        else:
            history.stopped_by = "epochs"
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state, strict=True)
        model.eval()
        return history

    def _lbfgs_epoch(self, model, opt, batch, epoch) -> float:
        """One L-BFGS step over the full batch; returns the loss at its start."""

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch}")
            loss.backward()
            return loss

        return float(opt.step(closure).detach())

    def _save_resume(self, epoch, opt, sched, history, best_state, gen) -> None:
        payload = {"format": RESUME_FORMAT, "epoch": epoch, "model": self.model.state_dict(),
                   "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else None,
                   "history": history.as_dict(), "best_state": best_state, "generator": gen.get_state(),
                   "torch_rng": torch.get_rng_state(),
                   "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        path = self.resume_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            torch.save(_to_storable(payload), tmp)
