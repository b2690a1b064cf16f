"""Stratified 1D CNN: Stokes I, Q, U, V → T, v_LOS, B_LOS, B_⊥, sin 2χ, cos 2χ on log τ500 nodes.

Trained on the Lightweaver set of :mod:`stellarnn.stokes.lightweaver_driver` (targets on
:data:`~stellarnn.stokes.lightweaver_driver.LOG_TAU_NODES`). The loss is the mean squared error of
the standardised targets plus an optional physics term, the weak-field consistency of Stokes V:
in the weak-field regime V(λ) = −C ḡ B_LOS dI/dλ with C = 4.6686e-13 λ0² (Landi Degl'Innocenti &
Landolfi 2004, eq. 9.79). For every profile the least-squares weak-field B_LOS of the observed
(I, V) pair is computed (:func:`weak_field_blos`). The weak-field estimate is proportional to the
mean B_LOS over the nodes log τ500 = −2.5 … −0.5 (where the Fe I lines form) only up to a factor
(the sampled dI/dλ and the depth weighting of the response; measured on the Lightweaver set: 0.8–0.9
below 800 G, saturating above), so that factor κ is fitted on the training profiles with
``|B_wf|`` < ``weak_field_limit_gauss``, and on those profiles the network's formation-depth mean
B_LOS times κ is pulled towards B_wf with a Huber penalty (scale ``physics_scale_gauss``), weighted
by ``physics_weight`` — a weak-field "physics loss" in the spirit of the seed's. The term needs no
labels, so it also applies to observed maps. Training with ``physics_weight = 0`` gives the
comparison without it.

Training augments every batch with two symmetries of polarised transfer along the line of sight
(:func:`augment_symmetries`): a rotation of the reference direction of linear polarisation by α
(χ → χ + α rotates (Q, U) by 2α) and the mirror (γ, χ) → (π − γ, π − χ), which leaves I and Q
unchanged and reverses U and V (the magneto-optical terms η_V ρ_U − η_U ρ_V of the Unno-Rachkovsky
solution, Landi Degl'Innocenti & Landolfi 2004, keep their sign only with χ mirrored too).
Checked on Lightweaver profiles of a perturbed atmosphere (tests/test_stokes_lightweaver_driver.py):
the mirror holds to < 1e-10 I_c, the rotation only to < 5e-4 I_c, below the 1e-3 training noise.

Out-of-distribution measure (issue 21, item 7): training ends by fitting the mean and a shrunk
covariance of the network's penultimate-layer features (:meth:`StratifiedCNN.penultimate`) on the
training profiles with the training noise (:func:`fit_feature_distribution`); the checkpoint stores
them with the 99th percentile of the Mahalanobis distances of the validation profiles (not used in the
fit) as the threshold. :meth:`StratifiedInverter.out_of_distribution` gives every inverted profile its
distance and a flag above that threshold. Checkpoints written before this have no such statistics:
then nothing is computed and ``available`` is False.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..train import TrainConfig, Trainer, load_checkpoint, register_model, save_checkpoint, warm_start
from .lightweaver_driver import LOG_TAU_NODES, TARGET_NAMES, TARGET_UNITS
from .me_cnn import stokes_features
from .milne_eddington import check_stokes_profiles, hinode_sp_wavelengths
from .zeeman import HINODE_LINES, LARMOR_WAVELENGTH_CONSTANT

MODEL_KIND = "stokes_stratified_cnn"
FORMATION_NODES = (LOG_TAU_NODES >= -2.5) & (LOG_TAU_NODES <= -0.5)


def weak_field_blos(stokes: torch.Tensor, wavelengths: np.ndarray | None = None) -> torch.Tensor:
    """Least-squares weak-field B_LOS [G] of (n, 4, n_λ) profiles over both Fe I lines.

    B = −Σ V x / Σ x² with x = C ḡ dI/dλ per pixel (ḡ of the nearest line). dI/dλ is a central
    finite difference at the SP sampling; on noiseless weak-field ME profiles this over-estimates
    ``|B_LOS|`` by about 10 % (the sampled derivative is too shallow), which the physics term inherits.
    """
    wl = torch.as_tensor(hinode_sp_wavelengths() if wavelengths is None else wavelengths, dtype=stokes.dtype)
    didl = torch.gradient(stokes[:, 0], spacing=(wl,), dim=1)[0]
    centres = torch.tensor([ln.wavelength for ln in HINODE_LINES], dtype=stokes.dtype)
    nearest = torch.argmin(torch.abs(wl[:, None] - centres[None, :]), dim=1)
    coeff = torch.tensor([LARMOR_WAVELENGTH_CONSTANT * ln.wavelength ** 2 * ln.effective_lande
                          for ln in HINODE_LINES], dtype=stokes.dtype)[nearest]
    x = coeff * didl
    return -(stokes[:, 3] * x).sum(1) / (x * x).sum(1).clamp_min(1e-30)


#: bounds of the constrained outputs (issue 21, item 7): T in K (the "physical" range of the
#: benchmark), ``|v_LOS|`` in km/s, ``|B_LOS|`` in G; B_⊥ ≥ 0 with the softplus scale in G
TEMPERATURE_BOUNDS_K = (3000.0, 12000.0)
V_LOS_MAX_KM_S = 12.0
B_LOS_MAX_GAUSS = 5000.0
B_PERP_SOFTPLUS_SCALE_GAUSS = 300.0
#: B0 of the optional field loss (:func:`train_stratified_cnn`): errors count in units of B0 below it, relative above
FIELD_LOSS_SCALE_GAUSS = 50.0


def asinh_field_loss(pred_gauss: torch.Tensor, true_gauss: torch.Tensor, scale_gauss: float = FIELD_LOSS_SCALE_GAUSS):
    """Mean of ``(asinh(B / B0) - asinh(B_true / B0))^2``: an error in units of B0 for fields below B0, relative above.

    The optional field loss of :func:`train_stratified_cnn` (B0 = ``scale_gauss``).
    """
    return ((torch.asinh(pred_gauss / scale_gauss) - torch.asinh(true_gauss / scale_gauss)) ** 2).mean()


def physical_outputs(raw: torch.Tensor) -> torch.Tensor:
    """Map unbounded head outputs (B, 6, n_nodes) onto physically admissible values, by construction.

    T = T_lo + (T_hi − T_lo)·sigmoid(r); v_LOS = v_max·tanh(r); B_LOS = B_max·tanh(r);
    B_⊥ = s·softplus(r) ≥ 0; sin 2χ, cos 2χ = tanh(r) ∈ (−1, 1) (bounds: :data:`TEMPERATURE_BOUNDS_K`,
    :data:`V_LOS_MAX_KM_S`, :data:`B_LOS_MAX_GAUSS`, :data:`B_PERP_SOFTPLUS_SCALE_GAUSS`).
    """
    if raw.shape[1] != len(TARGET_NAMES):
        raise ValueError(f"constrained outputs need the {len(TARGET_NAMES)} quantities {TARGET_NAMES}")
    t_lo, t_hi = TEMPERATURE_BOUNDS_K
    rows = [t_lo + (t_hi - t_lo) * torch.sigmoid(raw[:, 0]), V_LOS_MAX_KM_S * torch.tanh(raw[:, 1]),
            B_LOS_MAX_GAUSS * torch.tanh(raw[:, 2]),
            B_PERP_SOFTPLUS_SCALE_GAUSS * nn.functional.softplus(raw[:, 3]),
            torch.tanh(raw[:, 4]), torch.tanh(raw[:, 5])]
    return torch.stack(rows, 1)


@register_model(MODEL_KIND)
class StratifiedCNN(nn.Module):
    """(B, 4, n_λ) standardised Stokes → (B, n_quantities · n_nodes) standardised stratifications.

    With ``constrained=True`` the head's outputs go through :func:`physical_outputs` (T and v_LOS
    bounded, B_⊥ ≥ 0, …) and are then standardised with the buffers ``target_mean``/``target_std``
    (set by :meth:`set_target_scaling` before training), so the training loss and the inverter's
    de-standardisation are unchanged and every de-standardised output is admissible.
    """

    def __init__(self, n_wavelengths: int = 112, n_quantities: int = 6, n_nodes: int = 11, channels: int = 32,
                 hidden: int = 256, constrained: bool = False):
        super().__init__()
        self.features, n_flat = stokes_features(n_wavelengths, channels)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n_flat, hidden), nn.GELU(),
                                  nn.Linear(hidden, n_quantities * n_nodes))
        self.constrained = bool(constrained)
        self.n_quantities, self.n_nodes = n_quantities, n_nodes
        if self.constrained:
            if n_quantities != len(TARGET_NAMES):
                raise ValueError(f"constrained outputs need the {len(TARGET_NAMES)} quantities {TARGET_NAMES}")
            self.register_buffer("target_mean", torch.zeros(n_quantities * n_nodes))
            self.register_buffer("target_std", torch.ones(n_quantities * n_nodes))

    @torch.no_grad()
    def set_target_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The standardisation (physical − mean)/std of the constrained outputs."""
        self.target_mean.copy_(torch.as_tensor(mean).reshape(-1))
        self.target_std.copy_(torch.as_tensor(std).reshape(-1))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, hidden) activations of the last hidden layer (input of the output layer)."""
        return self.head[:-1](self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(x))
        if not self.constrained:
            return out
        phys = physical_outputs(out.reshape(-1, self.n_quantities, self.n_nodes)).reshape(out.shape)
        return (phys - self.target_mean) / self.target_std


def apply_symmetry(stokes: torch.Tensor, targets: torch.Tensor, alpha_deg, mirror, b_wf: torch.Tensor | None = None):
    """Stokes and physical targets of the same atmosphere rotated in azimuth by α and, where ``mirror``, mirrored.

    Rotation χ → χ + α: Q' = Q cos 2α − U sin 2α, U' = Q sin 2α + U cos 2α, (sin 2χ, cos 2χ) rotated by
    2α. Mirror (γ, χ) → (π − γ, π − χ): U, V, B_LOS and sin 2χ change sign, and ``b_wf`` (the
    weak-field B_LOS of V) with V (see the module docstring). ``alpha_deg`` and ``mirror`` are
    scalars or (n,) per profile; (n, 4, n_λ) Stokes, (n, 6, n_nodes) targets. Returns
    ``(stokes, targets, b_wf)``.
    """
    n = stokes.shape[0]
    two_alpha = 2.0 * torch.deg2rad(torch.as_tensor(alpha_deg, dtype=stokes.dtype).expand(n))[:, None]
    c, s = torch.cos(two_alpha), torch.sin(two_alpha)
    sign = torch.where(torch.as_tensor(mirror).expand(n), -1.0, 1.0).to(stokes.dtype)[:, None]
    q, u = stokes[:, 1], stokes[:, 2]
    stokes = torch.stack([stokes[:, 0], q * c - u * s, sign * (q * s + u * c), sign * stokes[:, 3]], 1)
    i_s, i_c = TARGET_NAMES.index("sin2chi"), TARGET_NAMES.index("cos2chi")
    t_s, t_c = targets[:, i_s], targets[:, i_c]
    rows = list(targets.unbind(1))
    rows[i_s], rows[i_c] = sign * (t_s * c + t_c * s), t_c * c - t_s * s
    rows[TARGET_NAMES.index("B_los")] = sign * rows[TARGET_NAMES.index("B_los")]
    return stokes, torch.stack(rows, 1), None if b_wf is None else sign[:, 0] * b_wf


def augment_symmetries(stokes: torch.Tensor, targets: torch.Tensor, b_wf: torch.Tensor | None = None,
                       generator: torch.Generator | None = None):
    """:func:`apply_symmetry` with α ~ U(0°, 180°) and a mirror with probability 1/2, drawn per profile."""
    n = stokes.shape[0]
    alpha = 180.0 * torch.rand(n, generator=generator, dtype=torch.float64)
    mirror = torch.rand(n, generator=generator) < 0.5
    return apply_symmetry(stokes, targets, alpha, mirror, b_wf)


#: percentile of the validation distances above which a profile is flagged out of distribution
OOD_PERCENTILE = 99.0


def mahalanobis_distance(features: torch.Tensor, mean: torch.Tensor, precision_cholesky: torch.Tensor) -> torch.Tensor:
    """sqrt((f − μ)ᵀ Σ⁻¹ (f − μ)) per row of (n, d) ``features``, with Σ⁻¹ = L Lᵀ (``precision_cholesky`` = L)."""
    return torch.linalg.vector_norm((features.double() - mean.double()) @ precision_cholesky.double(), dim=1)


def fit_feature_distribution(train_features: torch.Tensor, val_features: torch.Tensor,
                             percentile: float = OOD_PERCENTILE) -> dict:
    """Mean, precision Cholesky factor and flag threshold of penultimate-layer features.

    The covariance is shrunk towards its mean variance, Σ = (1 − α) S + α (tr S / d) I with
    α = d / (n + d) (our choice: a stable inverse also when n ≲ d). The threshold is the
    ``percentile`` of the Mahalanobis distances of ``val_features`` (profiles not used for the fit).
    Returns float64 numpy arrays ``ood_feature_mean`` (d,), ``ood_precision_cholesky`` (d, d) and
    scalars ``ood_threshold``, ``ood_percentile``.
    """
    f = train_features.double()
    n, d = f.shape
    if n < 2 or val_features.shape[0] < 1:
        raise ValueError("the feature distribution needs at least 2 training and 1 validation profiles")
    mean = f.mean(0)
    centred = f - mean
    sample = centred.T @ centred / (n - 1)
    alpha = d / (n + d)
    cov = (1 - alpha) * sample + alpha * (torch.trace(sample) / d).clamp_min(1e-12) * torch.eye(d, dtype=f.dtype)
    precision = torch.linalg.inv(cov)
    precision = 0.5 * (precision + precision.T)
    chol = torch.linalg.cholesky(precision)
    distances = mahalanobis_distance(val_features, mean, chol)
    return {"ood_feature_mean": mean.numpy(), "ood_precision_cholesky": chol.numpy(),
            "ood_threshold": float(np.percentile(distances.numpy(), percentile)), "ood_percentile": float(percentile)}


def pearson_and_rmse(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and RMSE along axis 0 (per quantity and node)."""
    p = pred - pred.mean(0)
    t = truth - truth.mean(0)
    r = (p * t).sum(0) / np.sqrt((p * p).sum(0) * (t * t).sum(0)).clip(1e-30)
    return r, np.sqrt(((pred - truth) ** 2).mean(0))


def observation_effects_batch(stokes: torch.Tensor, quiet_sun_intensity: torch.Tensor, stray_light: torch.Tensor,
                              continuum_factor: torch.Tensor) -> torch.Tensor:
    """Stray light and a continuum-normalisation factor on a batch of Stokes profiles (B, 4, n_λ) [I_c].

    ``c ((1 - f) S + f (I_qs, 0, 0, 0))`` per profile, with ``stray_light`` f (B,) and ``continuum_factor``
    c (B,): the batched form of :func:`stellarnn.stokes.lightweaver_driver.apply_observation_effects`
    (stray light is unpolarised; f = 0 and c = 1 leave a profile unchanged).
    """
    f = stray_light.to(stokes.dtype)[:, None, None]
    out = (1.0 - f) * stokes
    out[:, 0] = out[:, 0] + f[:, :, 0] * quiet_sun_intensity.to(stokes.dtype)[None, :]
    return out * continuum_factor.to(stokes.dtype)[:, None, None]


def target_weights_for(quantity_weights: dict, log_tau_range: tuple[float, float] | None = None,
                       log_tau_nodes: np.ndarray = LOG_TAU_NODES) -> np.ndarray:
    """Loss weights (n_quantities, n_nodes) for :func:`train_stratified_cnn`: 1 everywhere, except the quantities
    named in ``quantity_weights`` ({name in :data:`TARGET_NAMES`: weight}) at the nodes within ``log_tau_range``
    (inclusive; None: every node).

    Example: ``target_weights_for({"B_los": 5.0}, (-2.0, 0.0))`` weighs B_LOS five times at log tau -2 ... 0.
    """
    unknown = set(quantity_weights) - set(TARGET_NAMES)
    if unknown:
        raise ValueError(f"unknown quantities {sorted(unknown)}; choose from {TARGET_NAMES}")
    nodes = np.asarray(log_tau_nodes, dtype=float)
    sel = np.ones(nodes.size, bool) if log_tau_range is None else \
        (nodes >= min(log_tau_range) - 1e-9) & (nodes <= max(log_tau_range) + 1e-9)
    if not sel.any():
        raise ValueError(f"no node of {nodes.tolist()} within log tau {log_tau_range}")
    w = np.ones((len(TARGET_NAMES), nodes.size))
    for name, value in quantity_weights.items():
        w[TARGET_NAMES.index(name), sel] = float(value)
    return w


def train_stratified_cnn(stokes: np.ndarray, targets: np.ndarray, output: str | Path, physics_weight: float = 0.0,
                         physics_scale_gauss: float = 200.0, weak_field_limit_gauss: float = 800.0,
                         val_fraction: float = 0.1, epochs: int = 50,
                         batch_size: int = 128, lr: float = 1e-3, channels: int = 32, hidden: int = 256,
                         noise: float = 1e-3, augment: bool = True, weight_decay: float = 0.0,
                         resume_path: str | Path | None = None, seed: int = 0, progress: bool = True,
                         constrained: bool = False, stray_light_max: float = 0.0, continuum_error_sigma: float = 0.0,
                         quiet_sun_intensity: np.ndarray | None = None, effects_applied: np.ndarray | None = None,
                         max_seconds: float | None = None, field_loss_weight: float = 0.0,
                         field_loss_scale_gauss: float = FIELD_LOSS_SCALE_GAUSS, init_path: str | Path | None = None,
                         target_weights: np.ndarray | None = None) -> dict:
    """Train on (n, 4, 112) Stokes and (n, 6, n_nodes) targets; write a float16 checkpoint; return metrics.

    ``augment`` applies :func:`augment_symmetries` to every training batch (needs the six
    :data:`TARGET_NAMES` quantities). ``constrained`` builds the network with physically bounded
    outputs (:class:`StratifiedCNN`, :func:`physical_outputs`). Metrics: Pearson r and RMSE per node
    (validation split, not augmented) for every target quantity.

    Hinode-like observation effects on the fly (issue 21, item 6; the same model as
    :func:`stellarnn.stokes.lightweaver_driver.apply_observation_effects`): with ``stray_light_max`` > 0
    each training profile becomes ``(1 - f) S + f (I_qs, 0, 0, 0)``, f ~ U(0, ``stray_light_max``), with
    ``quiet_sun_intensity`` I_qs (n_λ,) the unpolarised quiet-Sun profile through the same PSF; with
    ``continuum_error_sigma`` > 0 it is then multiplied by c ~ N(1, ``continuum_error_sigma``). Fresh draws
    every batch, only for profiles whose ``effects_applied`` is False (sets built without the effects;
    profiles built with them keep their own draw). ``max_seconds`` stops training (best weights kept)
    after that wall time.

    Field loss (``field_loss_weight`` > 0): the standardised MSE weighs a B_LOS error by the spread of B_LOS over
    the whole set (hundreds of G when umbrae are in it), so quiet-Sun fields of tens of G hardly count.  The extra
    term ``field_loss_weight * mean((asinh(B / B0) - asinh(B_true / B0))^2)`` over B_LOS and B_⊥ at every node, with
    B0 = ``field_loss_scale_gauss``, counts an error in units of B0 for weak fields and as a relative error for
    strong ones (asinh(x) ~ x for small x, ~ ln 2x for large x).  ``init_path``: start from the weights of a
    checkpoint of the same architecture (fine-tuning; the target scaling is this set's).

    ``target_weights`` (n_quantities, n_nodes), optional: the weight of each standardised output in the MSE
    (normalised to mean 1, so the loss keeps its scale; :func:`target_weights_for`).  Every output counts alike by
    default, so B_LOS at the depths where the lines form is 5 of 66 outputs; weighting it spends more of the
    network on it (a specialist, e.g. for active-region maps).
    """
    stokes = torch.as_tensor(np.asarray(stokes), dtype=torch.float32)
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    if stokes.ndim != 3 or stokes.shape[1] != 4 or targets.ndim != 3 or targets.shape[0] != stokes.shape[0]:
        raise ValueError("need stokes (n, 4, n_λ) and targets (n, n_quantities, n_nodes) with the same n")
    n = stokes.shape[0]
    n_val = max(1, int(round(val_fraction * n)))
    if n - n_val < 2:
        raise ValueError(f"too few profiles ({n}) to train")
    if not (torch.isfinite(stokes).all() and torch.isfinite(targets).all()):
        raise ValueError("training data contain NaN or infinity")
    if stray_light_max < 0 or stray_light_max >= 1 or continuum_error_sigma < 0:
        raise ValueError("need 0 <= stray_light_max < 1 and continuum_error_sigma >= 0")
    if stray_light_max > 0 and (quiet_sun_intensity is None or np.shape(quiet_sun_intensity) != (stokes.shape[2],)):
        raise ValueError(f"stray light needs quiet_sun_intensity of shape ({stokes.shape[2]},)")
    qs = torch.as_tensor(np.asarray(quiet_sun_intensity if quiet_sun_intensity is not None else np.zeros(stokes.shape[2])),
                         dtype=torch.float32)
    todo = torch.ones(n, dtype=torch.float32) if effects_applied is None else \
        torch.as_tensor(~np.asarray(effects_applied, dtype=bool), dtype=torch.float32)
    if todo.shape != (n,):
        raise ValueError(f"effects_applied must have shape ({n},)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tr, va = perm[n_val:], perm[:n_val]
    x_mean, x_std = stokes[tr].mean(dim=(0, 2)), stokes[tr].std(dim=(0, 2)).clamp_min(1e-8)
    flat = targets.reshape(n, -1)
    y_mean, y_std = flat[tr].mean(0), flat[tr].std(0).clamp_min(1e-6)
    y = (flat - y_mean) / y_std
    b_wf = weak_field_blos(stokes.double()).float()
    n_q, n_nodes = targets.shape[1], targets.shape[2]
    if target_weights is None:
        out_weights = torch.ones(n_q * n_nodes)
    else:
        tw = np.asarray(target_weights, dtype=float)
        if tw.shape != (n_q, n_nodes) or not (np.isfinite(tw).all() and (tw >= 0).all() and tw.sum() > 0):
            raise ValueError(f"target_weights must be ({n_q}, {n_nodes}) non-negative numbers, not all 0")
        out_weights = torch.as_tensor(tw / tw.mean(), dtype=torch.float32).reshape(-1)
    blos_index = TARGET_NAMES.index("B_los") if n_q == len(TARGET_NAMES) else None
    formation = torch.as_tensor(FORMATION_NODES if n_nodes == LOG_TAU_NODES.size else np.ones(n_nodes, bool))
    weak = (b_wf.abs() < weak_field_limit_gauss).float()
    kappa = 1.0
    if blos_index is not None:
        mean_blos = targets[tr][:, blos_index][:, formation].mean(1)
        w = weak[tr]
        kappa = float((w * b_wf[tr] * mean_blos).sum() / (w * mean_blos * mean_blos).sum().clamp_min(1e-12))

    augment = augment and blos_index is not None
    if field_loss_weight < 0 or field_loss_scale_gauss <= 0:
        raise ValueError("need field_loss_weight >= 0 and field_loss_scale_gauss > 0")
    field_rows = [TARGET_NAMES.index("B_los"), TARGET_NAMES.index("B_perp")] if blos_index is not None else []
    if augment:  # input statistics invariant under the symmetries: zero-mean Q, U, V; one scale for Q and U
        second = (stokes[tr, 1:] ** 2).mean(dim=(0, 2))
        x_mean[1:] = 0.0
        x_std[1:3] = torch.sqrt(0.5 * (second[0] + second[1])).clamp_min(1e-8)
        x_std[3] = torch.sqrt(second[2]).clamp_min(1e-8)

    def loss_fn(model, batch):
        x, yt, bwf, wk, fx = batch
        if model.training and augment:
            x, phys_t, bwf = augment_symmetries(x, (yt * y_std + y_mean).reshape(-1, n_q, n_nodes), bwf)
            yt = (phys_t.reshape(yt.shape[0], -1) - y_mean) / y_std
        if model.training and (stray_light_max > 0 or continuum_error_sigma > 0):
            f = stray_light_max * torch.rand(x.shape[0]) * fx
            c = 1.0 + continuum_error_sigma * torch.randn(x.shape[0]) * fx
            x = observation_effects_batch(x, qs, f, c)
        if model.training and noise > 0:
            x = x + noise * torch.randn_like(x)
        out = model((x - x_mean[:, None]) / x_std[:, None])
        loss = ((out - yt) ** 2 * out_weights).mean()
        if field_loss_weight > 0 and blos_index is not None:
            pred_b = (out * y_std + y_mean).reshape(-1, n_q, n_nodes)[:, field_rows]
            true_b = (yt * y_std + y_mean).reshape(-1, n_q, n_nodes)[:, field_rows]
            loss = loss + field_loss_weight * asinh_field_loss(pred_b, true_b, field_loss_scale_gauss)
        if physics_weight > 0 and blos_index is not None:
            phys = (out * y_std + y_mean).reshape(-1, n_q, n_nodes)[:, blos_index][:, formation].mean(1)
            per = nn.functional.huber_loss(kappa * phys / physics_scale_gauss, bwf / physics_scale_gauss,
                                           reduction="none")
            loss = loss + physics_weight * (per * wk).sum() / wk.sum().clamp_min(1.0)
        return loss

    hyper = {"n_wavelengths": int(stokes.shape[2]), "n_quantities": int(n_q), "n_nodes": int(n_nodes),
             "channels": channels, "hidden": hidden, "constrained": bool(constrained)}
    model = StratifiedCNN(**hyper)
    init_info = warm_start(model, init_path, MODEL_KIND) if init_path is not None else {}
    if constrained:
        model.set_target_scaling(y_mean, y_std)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, plateau_patience=4, seed=seed,
                         weight_decay=weight_decay, max_seconds=max_seconds,
                         progress=progress, grad_clip=5.0)
    t0 = time.perf_counter()
    history = Trainer(model, loss_fn, config, resume_path=resume_path).fit(
        (stokes[tr], y[tr], b_wf[tr], weak[tr], todo[tr]), (stokes[va], y[va], b_wf[va], weak[va], todo[va]))
    model.eval()
    with torch.inference_mode():
        pred = (model((stokes[va] - x_mean[:, None]) / x_std[:, None]) * y_std + y_mean).reshape(-1, n_q, n_nodes)
        # out-of-distribution statistics of the penultimate features, on noisy profiles as observed
        noisy = torch.Generator().manual_seed(seed + 1)

        def features(x):
            x = x + noise * torch.randn(x.shape, generator=noisy) if noise > 0 else x
            return torch.cat([model.penultimate((x[i:i + 4096] - x_mean[:, None]) / x_std[:, None])
                              for i in range(0, x.shape[0], 4096)])

        ood = fit_feature_distribution(features(stokes[tr]), features(stokes[va]))
    r, rmse = pearson_and_rmse(pred.numpy(), targets[va].numpy())
    names = TARGET_NAMES if n_q == len(TARGET_NAMES) else tuple(f"q{k}" for k in range(n_q))
    metrics = {"physics_weight": physics_weight, "augment_symmetries": augment, "weak_field_factor_kappa": kappa,
               "weak_field_limit_gauss": weak_field_limit_gauss, "best_val_loss": history.best_val, "epochs_run": len(history.val_loss),
               "n_train": int(tr.numel()), "n_val": int(n_val), "log_tau_nodes": LOG_TAU_NODES.tolist()[:n_nodes],
               "pearson_r": {nm: r[k].tolist() for k, nm in enumerate(names)},
               "rmse": {nm: rmse[k].tolist() for k, nm in enumerate(names)}, "seconds": time.perf_counter() - t0,
               "ood_threshold": ood["ood_threshold"], "ood_percentile": ood["ood_percentile"],
               "observation_effects_on_the_fly": {"stray_light_max": stray_light_max,
                                                  "continuum_error_sigma": continuum_error_sigma,
                                                  "profiles_without_built_in_effects": int(todo.sum())},
               "field_loss": {"weight": field_loss_weight, "scale_gauss": field_loss_scale_gauss},
               "target_weights": None if target_weights is None else np.asarray(target_weights, float).tolist(),
               **init_info}
    save_checkpoint(output, model, MODEL_KIND, hyper,
                    normalisation={"input_mean": x_mean.numpy(), "input_std": x_std.numpy(),
                                   "target_mean": y_mean.numpy(), "target_std": y_std.numpy(), **ood},
                    metrics=metrics, provenance={"training_data": f"{n} Lightweaver profiles"}, half=True)
    return metrics


class StratifiedInverter:
    """Apply a trained ``stokes_stratified_cnn`` checkpoint to Stokes profiles.

    Parameters
    ----------
    checkpoint : path to the checkpoint written by :func:`train_stratified_cnn`
    device : torch device name
    """

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        self.model, payload = load_checkpoint(checkpoint, expected_kind=MODEL_KIND, device=device)
        self.model.float().eval()
        norm = payload["normalisation"]
        self.device = torch.device(device)

        def tensor(key):
            return torch.as_tensor(np.asarray(norm[key], dtype=np.float32), device=self.device)

        self.input_mean, self.input_std = tensor("input_mean"), tensor("input_std")
        self.target_mean, self.target_std = tensor("target_mean"), tensor("target_std")
        self.constrained = bool(getattr(self.model, "constrained", False))
        if self.constrained:  # undo exactly the standardisation the network applied (its own buffers)
            self.target_mean, self.target_std = self.model.target_mean.float(), self.model.target_std.float()
        hyper = payload["hyperparameters"]
        self.n_wavelengths, self.n_quantities, self.n_nodes = (int(hyper[k]) for k in
                                                               ("n_wavelengths", "n_quantities", "n_nodes"))
        self.log_tau_nodes = LOG_TAU_NODES[:self.n_nodes]
        self.metrics = payload.get("metrics", {})
        self.last_resampling: dict | None = None
        self.ood_available = "ood_precision_cholesky" in norm
        if self.ood_available:
            self.ood_mean = torch.as_tensor(np.asarray(norm["ood_feature_mean"], dtype=np.float64))
            self.ood_precision_cholesky = torch.as_tensor(np.asarray(norm["ood_precision_cholesky"], dtype=np.float64))
            self.ood_threshold = float(norm["ood_threshold"])
            self.ood_percentile = float(norm.get("ood_percentile", OOD_PERCENTILE))

    def out_of_distribution(self, stokes, batch_size: int = 8192, wavelengths=None, resampling: str = "cubic") -> dict:
        """Per profile: Mahalanobis distance of the penultimate features from the training set's, and a flag.

        Returns ``available`` (False for checkpoints trained before the statistics were stored: then
        nothing is computed and ``distance``/``flag`` are None), ``distance`` (n,), ``flag`` (n,) bool
        (distance above ``threshold``, the training run's validation ``percentile``), ``threshold``,
        ``percentile``. ``wavelengths``: the observed grid, as in :meth:`predict`.
        """
        from .wavelength_grid import to_network_grid

        if not self.ood_available:
            return {"available": False, "distance": None, "flag": None, "threshold": None, "percentile": None,
                    "note": "checkpoint has no training feature statistics (retrain to record them)"}
        if wavelengths is not None:
            if not bool(torch.isfinite(torch.as_tensor(stokes)).all()):
                raise ValueError("Stokes profiles contain NaN or infinity")
            stokes, _ = to_network_grid(torch.as_tensor(stokes).numpy(), wavelengths, self.n_wavelengths, resampling)
        stokes = check_stokes_profiles(stokes, self.n_wavelengths, torch.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, stokes.shape[0], batch_size):
                x = (stokes[start:start + batch_size].to(self.device) - self.input_mean[:, None]) / self.input_std[:, None]
                out.append(mahalanobis_distance(self.model.penultimate(x).cpu(), self.ood_mean,
                                                self.ood_precision_cholesky))
        distance = torch.cat(out).numpy()
        return {"available": True, "distance": distance, "flag": distance > self.ood_threshold,
                "threshold": self.ood_threshold, "percentile": self.ood_percentile}

    def predict(self, stokes, batch_size: int = 8192, wavelengths=None, resampling: str = "cubic") -> torch.Tensor:
        """(n, n_quantities, n_nodes) stratifications in physical units for (n, 4, n_λ) Stokes [I_c].

        ``wavelengths`` (Å): the profiles' observed grid; resampled onto the nominal SP training grid
        when it differs (:func:`stellarnn.stokes.wavelength_grid.to_network_grid`; report in
        ``last_resampling``).
        """
        from .wavelength_grid import to_network_grid

        self.last_resampling = None
        if wavelengths is not None:
            if not bool(torch.isfinite(torch.as_tensor(stokes)).all()):
                raise ValueError("Stokes profiles contain NaN or infinity")
            stokes, self.last_resampling = to_network_grid(torch.as_tensor(stokes).numpy(), wavelengths,
                                                           self.n_wavelengths, resampling)
        stokes = check_stokes_profiles(stokes, self.n_wavelengths, torch.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, stokes.shape[0], batch_size):
                x = (stokes[start:start + batch_size].to(self.device) - self.input_mean[:, None]) / self.input_std[:, None]
                out.append((self.model(x) * self.target_std + self.target_mean).cpu())
        return torch.cat(out).reshape(-1, self.n_quantities, self.n_nodes)

    def invert(self, stokes, batch_size: int = 8192, wavelengths=None,
               resampling: str = "cubic") -> dict[str, np.ndarray]:
        """Named (n, n_nodes) arrays: the six targets plus the azimuth ``chi`` [deg, 0–180) and ``B`` [G].

        ``wavelengths``: the observed grid (Å), see :meth:`predict`.
        """
        pred = self.predict(stokes, batch_size, wavelengths, resampling).numpy().astype(np.float64)
        return named_outputs(pred, self.constrained)


def named_outputs(pred: np.ndarray, constrained: bool) -> dict[str, np.ndarray]:
    """Named (n, n_nodes) arrays of (n, n_quantities, n_nodes) physical predictions (:meth:`StratifiedInverter.invert`)."""
    n_quantities = pred.shape[1]
    out = {name: pred[:, k] for k, name in enumerate(TARGET_NAMES[:n_quantities])}
    if constrained:  # float32 rounding of the de-standardisation only
        out["temperature"] = np.clip(out["temperature"], *TEMPERATURE_BOUNDS_K)
        out["B_perp"] = np.clip(out["B_perp"], 0.0, None)
    if n_quantities == len(TARGET_NAMES):
        out["chi"] = np.rad2deg(0.5 * np.arctan2(out["sin2chi"], out["cos2chi"])) % 180.0
        out["B"] = np.hypot(out["B_los"], out["B_perp"])
        t_lo, t_hi = TEMPERATURE_BOUNDS_K
        # flag (1.0) per node where an unconstrained network answered outside the admissible range
        out["unphysical"] = ((out["temperature"] < t_lo) | (out["temperature"] > t_hi)
                             | (out["B_perp"] < 0)).astype(np.float64)
    return out


#: field strength B = hypot(B_LOS, B_perp) [G] at log tau500 = -1 above which :class:`RoutedStratifiedInverter` hands a profile to its
#: strong-field network: above the quiet-Sun prior's 0-200 G (:data:`stellarnn.stokes.lightweaver_driver.REGIME_PRIORS`)
ROUTE_THRESHOLD_GAUSS = 250.0


class RoutedStratifiedInverter:
    """Two stratified CNNs, each for the fields it was trained for: a profile goes to ``strong`` where ``weak`` finds
    a strong field.

    Every profile is first inverted by ``weak`` (e.g. ``stratified_cnn_field.pt``, trained with the asinh field loss
    that makes quiet-Sun fields count); where its field strength ``|B| = hypot(B_LOS, B_perp)`` at log tau500
    ``route_log_tau`` exceeds ``threshold_gauss`` the profile is inverted again by ``strong`` (a specialist trained on
    network, plage, penumbra and umbra profiles only, ``stellarnn stokes train --train-regimes``) and that answer is
    kept.  Same interface as :class:`StratifiedInverter`; ``last_route`` (n,) bool says which profiles the strong
    network answered.

    Parameters
    ----------
    weak, strong : checkpoint paths or :class:`StratifiedInverter`
    threshold_gauss : float
        Routing threshold (default :data:`ROUTE_THRESHOLD_GAUSS`).
    route_log_tau : float
        Node of the routing field strength (default -1).
    """

    def __init__(self, weak, strong, threshold_gauss: float = ROUTE_THRESHOLD_GAUSS, route_log_tau: float = -1.0,
                 device: str = "cpu"):
        self.weak = weak if isinstance(weak, StratifiedInverter) else StratifiedInverter(weak, device)
        self.strong = strong if isinstance(strong, StratifiedInverter) else StratifiedInverter(strong, device)
        shapes = [(m.n_wavelengths, m.n_quantities, m.n_nodes) for m in (self.weak, self.strong)]
        if shapes[0] != shapes[1] or shapes[0][1] != len(TARGET_NAMES):
            raise ValueError(f"the two checkpoints must both give the {len(TARGET_NAMES)} quantities on the same "
                             f"grid and nodes; got (n_wavelengths, n_quantities, n_nodes) {shapes}")
        self.n_wavelengths, self.n_quantities, self.n_nodes = shapes[0]
        self.log_tau_nodes = self.weak.log_tau_nodes
        node = np.flatnonzero(np.isclose(self.log_tau_nodes, route_log_tau))
        if node.size != 1:
            raise ValueError(f"route_log_tau {route_log_tau} is not one of the nodes {self.log_tau_nodes.tolist()}")
        self.route_node = int(node[0])
        self.threshold_gauss = float(threshold_gauss)
        self.constrained = self.weak.constrained and self.strong.constrained
        self.ood_available = self.weak.ood_available and self.strong.ood_available
        self.last_route: np.ndarray | None = None
        self.last_resampling: dict | None = None

    def route(self, weak_pred: torch.Tensor) -> np.ndarray:
        """(n,) bool: the profiles whose ``weak`` prediction has ``|B|`` above the threshold at the routing node."""
        b = torch.hypot(weak_pred[:, TARGET_NAMES.index("B_los"), self.route_node],
                        weak_pred[:, TARGET_NAMES.index("B_perp"), self.route_node])
        return (b > self.threshold_gauss).numpy()

    def predict(self, stokes, batch_size: int = 8192, wavelengths=None, resampling: str = "cubic") -> torch.Tensor:
        """(n, 6, n_nodes) stratifications, each profile from the network its field strength routes it to."""
        pred = self.weak.predict(stokes, batch_size, wavelengths, resampling)
        self.last_resampling = self.weak.last_resampling
        strong = self.route(pred)
        if strong.any():
            sel = torch.as_tensor(np.flatnonzero(strong))
            pred[sel] = self.strong.predict(torch.as_tensor(stokes)[sel], batch_size, wavelengths, resampling)
        self.last_route = strong
        return pred

    def invert(self, stokes, batch_size: int = 8192, wavelengths=None,
               resampling: str = "cubic") -> dict[str, np.ndarray]:
        """As :meth:`StratifiedInverter.invert`, plus ``route`` (n,): 1.0 where the strong network answered."""
        pred = self.predict(stokes, batch_size, wavelengths, resampling).numpy().astype(np.float64)
        out = named_outputs(pred, self.constrained)
        out["route"] = self.last_route.astype(np.float64)
        return out

    def out_of_distribution(self, stokes, batch_size: int = 8192, wavelengths=None, resampling: str = "cubic") -> dict:
        """Per profile, the Mahalanobis distance and flag of the network that answers it (:meth:`predict`'s routing;
        ``threshold`` is then per profile)."""
        if not self.ood_available:
            return {"available": False, "distance": None, "flag": None, "threshold": None, "percentile": None,
                    "note": "a checkpoint has no training feature statistics"}
        strong = self.route(self.weak.predict(stokes, batch_size, wavelengths, resampling))
        out = self.weak.out_of_distribution(stokes, batch_size, wavelengths, resampling)
        distance, flag = out["distance"].copy(), out["flag"].copy()
        threshold = np.full(distance.shape, out["threshold"])
        if strong.any():  # the strong network's measure for the profiles it answers
            sel = np.flatnonzero(strong)
            part = self.strong.out_of_distribution(torch.as_tensor(stokes)[torch.as_tensor(sel)], batch_size,
                                                   wavelengths, resampling)
            distance[sel], flag[sel], threshold[sel] = part["distance"], part["flag"], part["threshold"]
        return {"available": True, "distance": distance, "flag": flag, "threshold": threshold,
                "percentile": out["percentile"], "route": strong}


#: units of the named outputs of :meth:`StratifiedInverter.invert`
STRATIFIED_UNITS = {**dict(zip(TARGET_NAMES, TARGET_UNITS)), "chi": "deg", "B": "G", "unphysical": ""}
