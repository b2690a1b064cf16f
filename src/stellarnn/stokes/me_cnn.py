"""ME-CNN: a 1D convolutional network from Hinode SP Stokes profiles to Milne-Eddington parameters.

The network maps (4, 112) Stokes I, Q, U, V (continuum units) to the ME parameters with a
per-parameter Gaussian uncertainty: it outputs a mean and a log-variance for each of the
10 targets (B, γ, sin 2χ, cos 2χ, v_LOS, Δλ_D, log10 η0, a, S0, S1, standardised) and is
trained with the Gaussian negative log-likelihood (heteroscedastic regression, Nix & Weigend 1994;
Kendall & Gal 2017). The azimuth is learnt as (sin 2χ, cos 2χ), invariant under χ → χ + 180°
(REFERENCE.md, "Azimuth targets must be 180°-invariant").

Training data are ME profiles from :class:`~stellarnn.stokes.milne_eddington.MilneEddington`
(Hinode SP sampling and PSF) with parameters drawn from :data:`PRIOR` and fresh white noise of
1e-3 I_c added to every training batch (a fixed noise draw for validation).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..train import TrainConfig, Trainer, load_checkpoint, register_model, save_checkpoint
from .milne_eddington import N_PARAMETERS, PARAMETER_NAMES, MilneEddington, add_noise, check_stokes_profiles

MODEL_KIND = "stokes_me_cnn"
TARGET_NAMES = ("B", "gamma", "sin2chi", "cos2chi", "v_los", "doppler_width", "log10_eta0", "damping", "S0", "S1")

#: Parameter prior for training and for the held-out benchmark set: (low, high) per ME parameter;
#: η0 is drawn log-uniformly, the others uniformly. Units as PARAMETER_UNITS.
PRIOR = {
    "B": (0.0, 3000.0), "gamma": (0.0, 180.0), "chi": (0.0, 180.0), "v_los": (-5.0, 5.0),
    "doppler_width": (15.0, 50.0), "eta0": (1.0, 50.0), "damping": (0.05, 0.6), "S0": (0.05, 0.5),
    "S1": (0.5, 1.0),
}
TRAINING_NOISE = 1e-3


def sample_parameters(n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """Draw ``n`` ME parameter vectors (n, 9) from :data:`PRIOR`."""
    u = torch.rand(n, N_PARAMETERS, generator=generator, dtype=dtype)
    out = torch.empty_like(u)
    for k, name in enumerate(PARAMETER_NAMES):
        lo, hi = PRIOR[name]
        if name == "eta0":
            out[:, k] = 10.0 ** (math.log10(lo) + (math.log10(hi) - math.log10(lo)) * u[:, k])
        else:
            out[:, k] = lo + (hi - lo) * u[:, k]
    return out


def parameters_to_targets(params: torch.Tensor) -> torch.Tensor:
    """(…, 9) ME parameters → (…, 10) raw targets (χ as sin 2χ, cos 2χ; η0 as log10)."""
    chi2 = 2.0 * torch.deg2rad(params[..., 2])
    return torch.stack([params[..., 0], params[..., 1], torch.sin(chi2), torch.cos(chi2), params[..., 3],
                        params[..., 4], torch.log10(params[..., 5]), params[..., 6], params[..., 7],
                        params[..., 8]], dim=-1)


def stokes_features(n_wavelengths: int, channels: int) -> tuple[nn.Sequential, int]:
    """The convolutional feature extractor shared by the Stokes CNNs: (B, 4, n_λ) -> (B, 2c, n_λ/8).

    Four Conv1d layers (kernels 7, 5, 5, 3; the last three with stride 2) with GELU; returns the
    module and the flattened feature length.
    """
    c = channels
    features = nn.Sequential(
        nn.Conv1d(4, c, 7, padding=3), nn.GELU(),
        nn.Conv1d(c, c, 5, stride=2, padding=2), nn.GELU(),
        nn.Conv1d(c, 2 * c, 5, stride=2, padding=2), nn.GELU(),
        nn.Conv1d(2 * c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
    )
    length = n_wavelengths
    for _ in range(3):
        length = (length - 1) // 2 + 1
    return features, 2 * c * length


@register_model(MODEL_KIND)
class MECNN(nn.Module):
    """Small 1D CNN: (B, 4, n_λ) standardised Stokes → (B, 2·n_targets) means and log-variances.

    Parameters
    ----------
    n_wavelengths : int
    channels : int
        Width of the first convolutions (doubled after the second stride).
    hidden : int
        Width of the dense layer.
    n_targets : int
    """

    def __init__(self, n_wavelengths: int = 112, channels: int = 32, hidden: int = 256, n_targets: int = 10):
        super().__init__()
        self.n_targets = n_targets
        self.features, n_flat = stokes_features(n_wavelengths, channels)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n_flat, hidden), nn.GELU(),
                                  nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2 * n_targets))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def gaussian_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood ½[(y − μ)² e^(−s) + s] (s = log σ², clamped to [−14, 6])."""
    n = target.shape[-1]
    mean, log_var = output[..., :n], output[..., n:].clamp(-14.0, 6.0)
    return 0.5 * ((target - mean) ** 2 * torch.exp(-log_var) + log_var).mean()


@dataclass
class TrainingSet:
    """Clean ME profiles and their parameters, built in resumable chunks (float32)."""

    params: torch.Tensor   # (n, 9) float64
    stokes: torch.Tensor   # (n, 4, 112) float32, noiseless


def build_training_set(directory: str | Path, n_profiles: int, seed: int = 0, chunk_size: int = 20000,
                       progress: bool = True) -> TrainingSet:
    """Synthesise ``n_profiles`` noiseless ME profiles in chunk files under ``directory`` (resumable).

    Chunk k uses the random seed ``seed * 100003 + k``; existing chunk files are reused.
    """
    from tqdm.auto import tqdm

    if n_profiles <= 0:
        raise ValueError("n_profiles must be positive")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    me = MilneEddington(faddeeva_terms=16)
    n_chunks = math.ceil(n_profiles / chunk_size)
    params, stokes = [], []
    for k in tqdm(range(n_chunks), desc="ME profiles", unit="chunk", disable=not progress):
        path = directory / f"me_seed{seed}_chunk{k:05d}_n{chunk_size}.pt"
        if path.is_file():
            try:
                payload = torch.load(path, weights_only=True)
                if not isinstance(payload, dict) or not {"params", "stokes"} <= payload.keys():
                    raise KeyError("no params/stokes tensors")
            except Exception as exc:
                from ..train.checkpoint import describe_load_error

                raise ValueError(f"cached ME profile chunk {path} is unreadable ({describe_load_error(exc)}); "
                                 "delete it to synthesise it again") from exc
        else:
            gen = torch.Generator().manual_seed(seed * 100003 + k)
            p = sample_parameters(chunk_size, gen)
            with torch.inference_mode():
                s = torch.cat([me(p[i:i + 2000].float()) for i in range(0, chunk_size, 2000)])
            payload = {"params": p, "stokes": s.float()}
            from ..atomic_files import atomic_write

            with atomic_write(path) as tmp:
                torch.save(payload, tmp)
        params.append(payload["params"])
        stokes.append(payload["stokes"])
    return TrainingSet(torch.cat(params)[:n_profiles], torch.cat(stokes)[:n_profiles])


class MEInverter:
    """Apply a trained ME-CNN checkpoint to Stokes profiles.

    Parameters
    ----------
    checkpoint : path to a ``stokes_me_cnn`` checkpoint
    device : torch device name
    """

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        self.model, payload = load_checkpoint(checkpoint, expected_kind=MODEL_KIND, device=device)
        norm = payload["normalisation"]
        self.device = torch.device(device)
        self.input_mean = torch.as_tensor(norm["input_mean"], dtype=torch.float32, device=self.device)
        self.input_std = torch.as_tensor(norm["input_std"], dtype=torch.float32, device=self.device)
        self.target_mean = torch.as_tensor(norm["target_mean"], dtype=torch.float32, device=self.device)
        self.target_std = torch.as_tensor(norm["target_std"], dtype=torch.float32, device=self.device)
        self.n_wavelengths = int(payload["hyperparameters"]["n_wavelengths"])
        self.metrics = payload.get("metrics", {})
        self.last_resampling: dict | None = None

    def standardise(self, stokes: torch.Tensor) -> torch.Tensor:
        return (stokes - self.input_mean[:, None]) / self.input_std[:, None]

    def predict_raw(self, stokes: torch.Tensor, batch_size: int = 8192, wavelengths=None,
                    resampling: str = "cubic") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw targets and their σ (both (n, 10), physical target units) for (n, 4, n_λ) Stokes.

        ``wavelengths`` (Å) is the profiles' observed grid: when it differs from the nominal SP grid
        the network was trained on, the profiles are resampled onto it first
        (:func:`stellarnn.stokes.wavelength_grid.to_network_grid`; report in ``last_resampling``).
        """
        from .wavelength_grid import to_network_grid

        if wavelengths is not None:
            if not bool(torch.isfinite(torch.as_tensor(stokes)).all()):
                raise ValueError("Stokes profiles contain NaN or infinity")
            stokes, self.last_resampling = to_network_grid(torch.as_tensor(stokes).numpy(), wavelengths,
                                                           self.n_wavelengths, resampling)
        else:
            self.last_resampling = None
        stokes = check_stokes_profiles(stokes, self.n_wavelengths, torch.float32)
        means, sigmas = [], []
        n_t = len(TARGET_NAMES)
        with torch.inference_mode():
            for start in range(0, stokes.shape[0], batch_size):
                out = self.model(self.standardise(stokes[start:start + batch_size].to(self.device)))
                means.append(out[:, :n_t] * self.target_std + self.target_mean)
                sigmas.append(torch.exp(0.5 * out[:, n_t:].clamp(-14.0, 6.0)) * self.target_std)
        return torch.cat(means).cpu(), torch.cat(sigmas).cpu()

    def invert(self, stokes: torch.Tensor, batch_size: int = 8192, wavelengths=None,
               resampling: str = "cubic") -> dict[str, np.ndarray]:
        """ME parameters with uncertainties: keys ``B``, ``e_B``, … (units of PARAMETER_UNITS; χ in [0, 180)).

        ``wavelengths``: the observed grid (Å), see :meth:`predict_raw`.
        """
        mean, sigma = self.predict_raw(stokes, batch_size, wavelengths, resampling)
        s, c = mean[:, 2], mean[:, 3]
        r2 = (s * s + c * c).clamp_min(1e-12)
        chi = torch.rad2deg(0.5 * torch.atan2(s, c)) % 180.0
        e_chi = torch.rad2deg(0.5 * torch.sqrt((c * sigma[:, 2]) ** 2 + (s * sigma[:, 3]) ** 2) / r2)
        eta0 = 10.0 ** mean[:, 6]
        out = {
            "B": mean[:, 0].clamp_min(0.0), "e_B": sigma[:, 0],
            "gamma": mean[:, 1].clamp(0.0, 180.0), "e_gamma": sigma[:, 1],
            "chi": chi, "e_chi": e_chi.clamp_max(90.0),
            "v_los": mean[:, 4], "e_v_los": sigma[:, 4],
            "doppler_width": mean[:, 5], "e_doppler_width": sigma[:, 5],
            "eta0": eta0, "e_eta0": eta0 * math.log(10.0) * sigma[:, 6],
            "damping": mean[:, 7], "e_damping": sigma[:, 7],
            "S0": mean[:, 8], "e_S0": sigma[:, 8], "S1": mean[:, 9], "e_S1": sigma[:, 9],
        }
        return {k: v.numpy().astype(np.float64) for k, v in out.items()}


def train_me_cnn(output: str | Path, data_dir: str | Path, n_train: int = 300000, n_val: int = 10000,
                 epochs: int = 40, batch_size: int = 256, lr: float = 1e-3, channels: int = 32, hidden: int = 256,
                 resume_path: str | Path | None = None, max_seconds: float | None = None, seed: int = 0,
                 progress: bool = True, chunk_size: int = 20000) -> dict:
    """Build (or reuse) the synthetic set, train the ME-CNN with the project Trainer, write a float16 checkpoint.

    Returns the metrics written into the checkpoint.
    """
    train_set = build_training_set(data_dir, n_train, seed=seed, chunk_size=chunk_size, progress=progress)
    val_set = build_training_set(data_dir, n_val, seed=seed + 1, chunk_size=chunk_size, progress=progress)
    x_mean = train_set.stokes.mean(dim=(0, 2))
    x_std = train_set.stokes.std(dim=(0, 2))
    y_train_raw = parameters_to_targets(train_set.params).float()
    y_mean, y_std = y_train_raw.mean(0), y_train_raw.std(0)
    y_train = (y_train_raw - y_mean) / y_std
    y_val = (parameters_to_targets(val_set.params).float() - y_mean) / y_std
    gen = torch.Generator().manual_seed(seed + 7)
    x_val = (add_noise(val_set.stokes, TRAINING_NOISE, gen) - x_mean[:, None]) / x_std[:, None]
    x_train = train_set.stokes  # noise is added per batch in the loss

    def loss_fn(model, batch):
        x, y = batch
        if model.training:
            x = (x + TRAINING_NOISE * torch.randn_like(x) - x_mean[:, None].to(x)) / x_std[:, None].to(x)
        return gaussian_nll(model(x), y)

    hyper = {"n_wavelengths": int(train_set.stokes.shape[-1]), "channels": channels, "hidden": hidden,
             "n_targets": len(TARGET_NAMES)}
    model = MECNN(**hyper)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, plateau_patience=3, plateau_factor=0.5,
                         max_seconds=max_seconds, seed=seed, progress=progress, grad_clip=5.0)
    trainer = Trainer(model, loss_fn, config, resume_path=resume_path)
    t0 = time.perf_counter()
    history = trainer.fit((x_train, y_train), (x_val, y_val))
    # validation metrics in physical units
    with torch.inference_mode():
        out = model(x_val)
    n_t = len(TARGET_NAMES)
    pred = out[:, :n_t] * y_std + y_mean
    truth = y_val * y_std + y_mean
    rmse = torch.sqrt(((pred - truth) ** 2).mean(0))
    metrics = {"val_nll": history.best_val, "best_epoch": history.best_epoch, "epochs_run": len(history.val_loss),
               "train_seconds": history.seconds, "noise": TRAINING_NOISE,
               "val_rmse": {name: float(v) for name, v in zip(TARGET_NAMES, rmse)},
               "history": {"train": history.train_loss, "val": history.val_loss}}
    normalisation = {"input_mean": x_mean.numpy(), "input_std": x_std.numpy(), "target_mean": y_mean.numpy(),
                     "target_std": y_std.numpy(), "target_names": list(TARGET_NAMES), "prior": json.dumps(PRIOR)}
    provenance = {"training_data": f"{n_train} synthetic ME profiles (Fe I 6301.5/6302.5, Hinode SP sampling, "
                                   f"30 mA PSF) from stellarnn.stokes.me_cnn.PRIOR, seed {seed}; noise "
                                   f"{TRAINING_NOISE} Ic per batch; validation {n_val} profiles seed {seed + 1}",
                  "wall_seconds": time.perf_counter() - t0}
    save_checkpoint(output, model, MODEL_KIND, hyper, normalisation=normalisation, metrics=metrics,
                    provenance=provenance, half=True)
    return metrics
