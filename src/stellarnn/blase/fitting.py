"""Clone a synthetic spectrum into a line model, then transfer it to an observed spectrum.

Clone (blasé §3): find lines, then fit every line's centre, ln amplitude, ln σ and ln γ to the
noise-free synthetic spectrum by full-batch Adam on the mean squared residual.

Transfer (blasé §4): the observed spectrum is modelled as

    D(λ) ≈ C(λ) · [G_R ⊗ ( T(λ) · (K_vsini ⊗ S_clone(λ; v)) )](λ)

with ``S_clone`` the cloned stellar lines Doppler shifted by ``v``, ``K_vsini`` Gray's rotation kernel,
``T`` the telluric transmission in the observer's frame (not rotated or shifted),
``G_R`` the instrumental Gaussian of resolving power ``R`` and ``C`` a per-order Chebyshev
continuum. The loss is ``[½ Σ m_p ((D_p − M_p)/σ_p)² + Σ_i |Δ ln a_i|/b_a + |Δ ln σ_i|/b_w
+ |Δ ln γ_i|/b_w] / N`` (a Laplace, i.e. L1, prior pulling the stellar lines toward the clone;
``m_p`` the good-pixel mask). All fits use :class:`stellarnn.train.Trainer` with a batch of one
whole spectrum (full batch).

Telluric model (default ``tellurics="bands"``): lines found in data/baseline are kept only inside
the Earth-atmosphere absorption bands of :mod:`stellarnn.blase.telluric_bands`; their centres,
widths and relative strengths are frozen into one template per species ``ln T_k(λ)`` and only a
species scaling ``s_k`` is fitted (one H2O column factor, one O2 airmass factor, …):
``T(λ) = exp(Σ_k s_k ln T_k(λ))`` — exact for the optical-depth form, where the optical depth of
every line of a species scales with its column. Outside the bands ``T ≡ 1`` by construction.
``tellurics="free"`` restores the unconstrained per-line telluric set (for comparison only: it
absorbs stellar-model residuals anywhere).

Units: wavelength Angstrom, velocities km/s, fluxes dimensionless.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..constants import FWHM_PER_SIGMA, SPEED_OF_LIGHT_KM_S
from ..train import History, TrainConfig, Trainer, register_model
from .extrinsic import (chebyshev_continuum, convolve_same, doppler_factor,
                        gaussian_kernel, log_uniform_grid, resample_linear, rotation_kernel,
                        scale_to_segments)
from .line_finder import LineGuesses, check_spectrum, find_lines
from .line_model import LineModel
from .sources import ObservedSpectrum
from .telluric_bands import TELLURIC_BANDS, assign_bands

#: bound on the telluric species scalings s_k (column / airmass relative to the found template)
TELLURIC_SCALE_MAX = 20.0


# ---------------------------------------------------------------------------------------- clone
@dataclass
class CloneResult:
    """A fitted clone and how well it reproduces its source."""

    model: LineModel
    guesses: LineGuesses
    history: History
    rms_residual: float  # rms of (source − model) over unmasked pixels (dimensionless)
    initial_rms_residual: float
    seconds: float


def _clone_loss(model: LineModel, batch) -> torch.Tensor:
    wavelength, flux, weight = (b[0] for b in batch)
    resid = model(wavelength) - flux
    return (weight * resid * resid).sum() / weight.sum()


def _mask_weights(flux: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
    good = np.isfinite(flux)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != flux.shape:
            raise ValueError(f"mask shape {mask.shape} differs from flux {flux.shape}")
        good &= mask
    if not good.any():
        raise ValueError("no good pixels left after masking")
    return np.where(good, flux, 1.0), good.astype(np.float32)


def rms_residual(model_flux: np.ndarray, flux: np.ndarray, weight: np.ndarray) -> float:
    """Root-mean-square of ``flux − model_flux`` over pixels with nonzero weight."""
    good = weight > 0
    return float(np.sqrt(np.mean((flux[good] - model_flux[good]) ** 2)))


def clone_spectrum(wavelength, flux, mask=None, prominence: float = 0.01, min_separation_pixels: int = 4,
                   profile: str = "pseudo_voigt", form: str = "tau", epochs: int = 1000, lr: float = 0.05,
                   fit_centres: bool = True, lorentz_fraction: float = 0.2, progress: bool = True,
                   resume_path=None, max_seconds: float | None = None, device: str = "auto",
                   line_options: dict | None = None) -> CloneResult:
    """Clone a continuum-normalised synthetic spectrum into a :class:`LineModel`.

    Parameters
    ----------
    wavelength, flux : array (P,)
        Source spectrum (Angstrom, continuum = 1). NaN flux pixels are masked (not fitted).
    mask : bool array (P,), optional
        True where a pixel may be used.
    prominence, min_separation_pixels, lorentz_fraction :
        Line finder settings (:func:`stellarnn.blase.line_finder.find_lines`).
    profile, form : str
        Line profile and spectrum form.
    epochs, lr : int, float
        Full-batch Adam steps and learning rate.
    fit_centres : bool
        Also fit the line centres (otherwise they stay at the finder's pixels).
    resume_path : path, optional
        Trainer state file: an interrupted clone picks up where it stopped.
    line_options : dict, optional
        Extra :class:`LineModel` hyperparameters (window settings).
    """
    wavelength = np.asarray(wavelength, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    filled, weight = _mask_weights(flux, mask)
    check_spectrum(wavelength, filled, "clone source")
    guesses = find_lines(wavelength, filled, prominence=prominence, min_separation_pixels=min_separation_pixels,
                         lorentz_fraction=lorentz_fraction, profile=profile, form=form)
    if len(guesses) == 0:
        raise ValueError(f"no lines found at prominence {prominence}")
    model = LineModel.from_guesses(guesses, profile=profile, form=form, **(line_options or {}))
    model.centre_shift.requires_grad_(fit_centres)
    wl_t = torch.from_numpy(wavelength)
    with torch.no_grad():
        initial = rms_residual(model(wl_t).numpy(), filled, weight)
    data = (wl_t[None], torch.from_numpy(filled).float()[None], torch.from_numpy(weight)[None])
    config = TrainConfig(epochs=epochs, batch_size=1, lr=lr, progress=progress, max_seconds=max_seconds,
                         device=device)
    history = Trainer(model, _clone_loss, config, resume_path=resume_path).fit(data)
    model.cpu()
    with torch.inference_mode():
        final = rms_residual(model(wl_t).numpy(), filled, weight)
    return CloneResult(model, guesses, history, final, initial, history.seconds)


# ---------------------------------------------------------------------------------------- transfer
@register_model("blase-transfer")
class TransferModel(nn.Module):
    """Cloned stellar lines + optional telluric lines + RV, vsini, resolution and continuum.

    Parameters
    ----------
    n_stellar_lines, n_telluric_lines : int
        Sizes of the two line sets (``n_telluric_lines`` may be 0).
    n_segments, continuum_degree : int
        Echelle orders (or other segments) and the Chebyshev degree of each one's continuum.
    grid_min_angstrom, grid_max_angstrom, velocity_step_km_s : float
        Internal log-uniform model grid (must extend beyond the data by the kernels' widths).
    vsini_max_km_s, resolution_min : float
        Bounds that size the convolution kernels.
    limb_darkening : float
        Linear limb darkening ε of the rotation kernel.
    line_hyperparameters : dict
        :class:`LineModel` settings shared by both line sets (profile, form, windows).
    prior_amplitude_scale, prior_width_scale : float
        Laplace scales ``b_a``, ``b_w`` (in ln units) of the L1 prior toward the clone.
    telluric_species : tuple of str
        Species of the band-constrained telluric model, one frozen template ``ln T_k`` on the model
        grid and one fitted scaling ``s_k`` each (see the module docstring); empty: none.
    """

    def __init__(self, n_stellar_lines: int, n_telluric_lines: int = 0, n_segments: int = 1,
                 continuum_degree: int = 2, grid_min_angstrom: float = 8000.0, grid_max_angstrom: float = 8700.0,
                 velocity_step_km_s: float = 0.5, vsini_max_km_s: float = 300.0, resolution_min: float = 10000.0,
                 limb_darkening: float = 0.6, line_hyperparameters: dict | None = None,
                 prior_amplitude_scale: float = 0.2, prior_width_scale: float = 0.2,
                 rv_scale_km_s: float = 1.0, continuum_scale: float = 0.01, telluric_species=()):
        super().__init__()
        line_hp = dict(line_hyperparameters or {})
        line_hp.pop("n_lines", None)
        self.hyperparameters = dict(
            n_stellar_lines=n_stellar_lines, n_telluric_lines=n_telluric_lines, n_segments=n_segments,
            continuum_degree=continuum_degree, grid_min_angstrom=grid_min_angstrom,
            grid_max_angstrom=grid_max_angstrom, velocity_step_km_s=velocity_step_km_s,
            vsini_max_km_s=vsini_max_km_s, resolution_min=resolution_min, limb_darkening=limb_darkening,
            line_hyperparameters=line_hp, prior_amplitude_scale=prior_amplitude_scale,
            prior_width_scale=prior_width_scale, rv_scale_km_s=rv_scale_km_s, continuum_scale=continuum_scale,
            telluric_species=list(telluric_species))
        if n_segments < 1 or continuum_degree < 0:
            raise ValueError("need n_segments >= 1 and continuum_degree >= 0")
        self.stellar = LineModel(n_stellar_lines, **line_hp)
        self.telluric = LineModel(n_telluric_lines, **line_hp)
        self.register_buffer("grid", torch.from_numpy(
            log_uniform_grid(grid_min_angstrom, grid_max_angstrom, velocity_step_km_s)), persistent=False)
        self.velocity_step = float(velocity_step_km_s)
        self.vsini_max = float(vsini_max_km_s)
        self.resolution_min = float(resolution_min)
        self.limb_darkening = float(limb_darkening)
        self.rot_half = int(math.ceil(vsini_max_km_s / velocity_step_km_s)) + 1
        sigma_max = SPEED_OF_LIGHT_KM_S / (resolution_min * FWHM_PER_SIGMA)
        self.inst_half = int(math.ceil(5.0 * sigma_max / velocity_step_km_s)) + 1
        self.rv_scale = float(rv_scale_km_s)
        self.continuum_scale = float(continuum_scale)
        self.prior_amplitude_scale = float(prior_amplitude_scale)
        self.prior_width_scale = float(prior_width_scale)
        for name in ("clone_ln_amplitude", "clone_ln_sigma", "clone_ln_gamma"):
            self.register_buffer(name, torch.zeros(n_stellar_lines))
        self.rv_param = nn.Parameter(torch.zeros(()))
        self.ln_vsini = nn.Parameter(torch.tensor(math.log(10.0)))
        self.ln_resolution = nn.Parameter(torch.tensor(math.log(max(50000.0, resolution_min))))
        self.telluric_species = tuple(telluric_species)
        self.register_buffer("telluric_log_templates", torch.zeros(len(self.telluric_species), self.grid.numel()))
        self.telluric_ln_scale = nn.Parameter(torch.zeros(len(self.telluric_species)))
        self.register_buffer("continuum_init", torch.zeros(n_segments, continuum_degree + 1))
        self.continuum_offset = nn.Parameter(torch.zeros(n_segments, continuum_degree + 1))
        with torch.no_grad():
            self.continuum_init[:, 0] = 1.0

    # -------------------------------------------------------------- set-up
    @torch.no_grad()
    def load_clone(self, clone: LineModel) -> None:
        """Copy the clone's lines into the stellar set and remember them for the prior."""
        if clone.n_lines != self.stellar.n_lines:
            raise ValueError(f"clone has {clone.n_lines} lines, model expects {self.stellar.n_lines}")
        self.stellar.load_state_dict(clone.state_dict(), strict=True)
        self.clone_ln_amplitude.copy_(clone.ln_amplitude)
        self.clone_ln_sigma.copy_(clone.ln_sigma)
        self.clone_ln_gamma.copy_(clone.ln_gamma)

    @torch.no_grad()
    def set_extrinsic(self, rv_km_s: float | None = None, vsini_km_s: float | None = None,
                      resolution: float | None = None) -> None:
        if rv_km_s is not None:
            self.rv_param.fill_(rv_km_s / self.rv_scale)
        if vsini_km_s is not None:
            self.ln_vsini.fill_(math.log(vsini_km_s))
        if resolution is not None:
            self.ln_resolution.fill_(math.log(resolution))

    # -------------------------------------------------------------- physical parameters
    @property
    def rv_km_s(self) -> torch.Tensor:
        return self.rv_param * self.rv_scale

    @property
    def vsini_km_s(self) -> torch.Tensor:
        return torch.clamp(torch.exp(self.ln_vsini), max=self.vsini_max)

    @property
    def resolution(self) -> torch.Tensor:
        return torch.clamp(torch.exp(self.ln_resolution), min=self.resolution_min)

    def telluric_scales(self) -> torch.Tensor:
        """Species scalings ``s_k = exp(ln s_k)`` (≤ :data:`TELLURIC_SCALE_MAX`)."""
        return torch.clamp(torch.exp(self.telluric_ln_scale), max=TELLURIC_SCALE_MAX)

    @torch.no_grad()
    def set_telluric_templates(self, species_lines: dict) -> None:
        """Freeze one template ``ln T_k`` per species from its lines' :class:`LineModel` (on the grid)."""
        if set(species_lines) != set(self.telluric_species):
            raise ValueError(f"templates for {sorted(species_lines)}, model species {self.telluric_species}")
        for k, name in enumerate(self.telluric_species):
            trans = species_lines[name](self.grid)
            self.telluric_log_templates[k] = torch.log(trans.clamp_min(1e-30)).to(self.telluric_log_templates)

    def continuum_coefficients(self) -> torch.Tensor:
        return self.continuum_init + self.continuum_scale * self.continuum_offset

    # -------------------------------------------------------------- evaluation
    def grid_components(self) -> dict[str, torch.Tensor]:
        """Stellar (shifted, rotated), telluric and total instrument-convolved flux on the model grid."""
        stellar = self.stellar(self.grid, doppler_factor(self.rv_km_s))
        stellar = convolve_same(stellar, rotation_kernel(self.vsini_km_s, self.velocity_step, self.rot_half,
                                                         self.limb_darkening))
        telluric = self.telluric(self.grid)
        if self.telluric_species:
            log_t = (self.telluric_scales()[:, None] * self.telluric_log_templates).sum(0)
            telluric = telluric * torch.exp(log_t).to(telluric.dtype)
        instrument = gaussian_kernel(self.resolution, self.velocity_step, self.inst_half)
        total = convolve_same(stellar * telluric, instrument)
        return {"stellar": convolve_same(stellar, instrument), "telluric": convolve_same(telluric, instrument),
                "total": total}

    def forward(self, wavelength: torch.Tensor, x_scaled: torch.Tensor, segment: torch.Tensor,
                components: bool = False):
        """Model flux at the data pixels (wavelength Angstrom, x_scaled in [−1, 1] per segment)."""
        parts = self.grid_components()
        continuum = chebyshev_continuum(self.continuum_coefficients(), x_scaled, segment)
        total = resample_linear(self.grid, parts["total"], wavelength) * continuum
        if not components:
            return total
        return {"total": total, "continuum": continuum,
                "stellar": resample_linear(self.grid, parts["stellar"], wavelength),
                "telluric": resample_linear(self.grid, parts["telluric"], wavelength)}

    def prior_penalty(self) -> torch.Tensor:
        """``Σ |ln a − ln a_clone|/b_a + (|ln σ − ln σ_clone| + |ln γ − ln γ_clone|)/b_w`` (stellar lines)."""
        s = self.stellar
        return ((s.ln_amplitude - self.clone_ln_amplitude).abs().sum() / self.prior_amplitude_scale
                + ((s.ln_sigma - self.clone_ln_sigma).abs().sum()
                   + (s.ln_gamma - self.clone_ln_gamma).abs().sum()) / self.prior_width_scale)


def _transfer_loss(model: TransferModel, batch) -> torch.Tensor:
    wavelength, x_scaled, segment, flux, inv_err, weight = (b[0] for b in batch)
    resid = (model(wavelength, x_scaled, segment) - flux) * inv_err
    chi2 = 0.5 * (weight * resid * resid).sum()
    return (chi2 + model.prior_penalty()) / weight.sum()


@dataclass
class TransferResult:
    """Outcome of :func:`transfer_spectrum` (rms residuals are of data/continuum − model/continuum)."""

    model: TransferModel
    baseline_rms: float  # clone with only RV, vsini, resolution (and continuum) fitted
    transfer_rms: float  # lines' amplitudes/widths free (+ telluric lines)
    rv_km_s: float
    vsini_km_s: float
    resolution: float
    n_telluric_lines: int
    baseline_history: History
    transfer_history: History
    initial_guess: dict = field(default_factory=dict)
    baseline_parameters: dict = field(default_factory=dict)
    telluric_mode: str = "bands"
    telluric_scales: dict = field(default_factory=dict)  # species -> fitted s_k
    telluric_lines_per_species: dict = field(default_factory=dict)
    n_residual_lines_outside_bands: int = 0  # residual dips not taken as telluric (outside every band)


def _batch(spec: ObservedSpectrum, weight: np.ndarray):
    x_scaled = scale_to_segments(spec.wavelength, spec.segment)
    flux = np.where(weight > 0, spec.flux, 1.0)
    inv_err = np.where(weight > 0, 1.0 / np.where(weight > 0, spec.error, 1.0), 0.0)
    tensors = (torch.from_numpy(spec.wavelength), torch.from_numpy(x_scaled).float(),
               torch.from_numpy(spec.segment.astype(np.int64)), torch.from_numpy(flux).float(),
               torch.from_numpy(inv_err).float(), torch.from_numpy(weight.astype(np.float32)))
    return tuple(t[None] for t in tensors)


def _normalised_rms(model: TransferModel, batch) -> float:
    wavelength, x_scaled, segment, flux, _inv, weight = (b[0] for b in batch)
    with torch.inference_mode():
        parts = model(wavelength, x_scaled, segment, components=True)
    good = weight > 0
    resid = (flux - parts["total"]) / parts["continuum"]
    return float(torch.sqrt(torch.mean(resid[good] ** 2)))


@torch.no_grad()
def initial_rv_vsini(model: TransferModel, spec: ObservedSpectrum, weight: np.ndarray,
                     rv_grid_km_s: np.ndarray, vsini_grid_km_s: np.ndarray) -> tuple[float, float]:
    """Brute-force χ² search over (RV, vsini) at the current resolution, continuum fixed at 1.

    The stellar clone is evaluated once at rest; each vsini is one convolution; every RV is a
    batched resampling at ``λ_data / (1 + v/c)``.
    """
    rest = model.stellar(model.grid)
    instrument = gaussian_kernel(model.resolution, model.velocity_step, model.inst_half)
    wl = torch.from_numpy(spec.wavelength)
    flux = torch.from_numpy(np.where(weight > 0, spec.flux, 1.0))
    w = torch.from_numpy(weight / np.where(weight > 0, spec.error, 1.0) ** 2)
    factors = torch.from_numpy(1.0 + np.asarray(rv_grid_km_s, dtype=np.float64) / SPEED_OF_LIGHT_KM_S)
    best = (math.inf, 0.0, float(vsini_grid_km_s[0]))
    for vsini in vsini_grid_km_s:  # a handful of trial values, each one vectorised over all RVs
        kern = rotation_kernel(torch.tensor(float(vsini)), model.velocity_step, model.rot_half, model.limb_darkening)
        broadened = convolve_same(convolve_same(rest, kern), instrument).double()
        shifted = resample_linear(model.grid, broadened, wl[None, :] / factors[:, None])  # (n_rv, P)
        chi2 = ((shifted - flux) ** 2 * w).sum(1)
        i = int(torch.argmin(chi2))
        if float(chi2[i]) < best[0]:
            best = (float(chi2[i]), float(rv_grid_km_s[i]), float(vsini))
    return best[1], best[2]


def _initial_continuum(model: TransferModel, spec: ObservedSpectrum, weight: np.ndarray, batch) -> None:
    """Per-segment least-squares Chebyshev fit of data / (line model without continuum)."""
    wavelength, x_scaled, segment = batch[0][0], batch[1][0], batch[2][0]
    with torch.no_grad():
        model.continuum_offset.zero_()
        model.continuum_init.zero_()
        model.continuum_init[:, 0] = 1.0
        lines = model(wavelength, x_scaled, segment).double().numpy()
    ratio = np.where(weight > 0, spec.flux / np.maximum(lines, 1e-3), np.nan)
    degree = model.continuum_init.shape[1] - 1
    coeffs = np.zeros(tuple(model.continuum_init.shape))
    xs = x_scaled.double().numpy()
    for s in range(coeffs.shape[0]):  # one small fit per echelle order
        sel = (spec.segment == s) & np.isfinite(ratio)
        if sel.sum() > degree + 1:
            coeffs[s] = np.polynomial.chebyshev.chebfit(xs[sel], ratio[sel], degree,
                                                        w=weight[sel] / spec.error[sel])
        else:
            coeffs[s, 0] = 1.0
    with torch.no_grad():
        model.continuum_init.copy_(torch.from_numpy(coeffs))


def find_residual_lines(spec: ObservedSpectrum, model_flux: np.ndarray, weight: np.ndarray,
                        resolution: float, prominence: float, min_separation_pixels: int = 3,
                        form: str = "tau", profile: str = "pseudo_voigt") -> LineGuesses:
    """Lines in ``data / model`` (e.g. telluric lines missing from a stellar clone), per segment.

    Widths are deconvolved from the instrumental Gaussian (``σ² = σ_obs² − σ_inst²``, at least
    0.3 σ_inst) and amplitudes set to the observed equivalent width ``−ln(1 − d) σ_obs √(2π)``
    (tau form) or ``d σ_obs √(2π)`` (multiplicative). Duplicates from overlapping orders (closer
    than one instrumental FWHM) are merged.
    """
    ratio = np.where(weight > 0, spec.flux / model_flux, 1.0)
    found = []
    for s in np.unique(spec.segment):  # per echelle order (wavelengths overlap between orders)
        sel = spec.segment == s
        wl, r = spec.wavelength[sel], ratio[sel]
        if wl.size < 10:
            continue
        g = find_lines(wl, r, prominence=prominence, min_separation_pixels=min_separation_pixels,
                       lorentz_fraction=0.05, profile=profile, form=form)
        found.append(g)
    if not found:
        empty = np.zeros(0)
        return LineGuesses(empty, empty, empty, empty, empty, empty)
    cat = LineGuesses(*(np.concatenate([getattr(g, f) for g in found]) for f in
                        ("centres", "amplitudes", "sigmas", "gammas", "depths", "prominences")))
    order = np.argsort(cat.centres)
    cat = cat.select(order)
    fwhm_inst = cat.centres / resolution
    keep = np.ones(len(cat), dtype=bool)
    if len(cat) > 1:
        close = np.diff(cat.centres) < fwhm_inst[1:]
        for i in np.where(close)[0]:  # drop the weaker of each close pair (set-up, not a hot path)
            weaker = i if cat.depths[i] < cat.depths[i + 1] else i + 1
            keep[weaker] = False
    cat = cat.select(keep)
    sigma_inst = cat.centres / resolution / FWHM_PER_SIGMA
    sigma_obs = np.sqrt(cat.sigmas ** 2 + (2 * cat.gammas / FWHM_PER_SIGMA) ** 2)
    sigma = np.sqrt(np.maximum(sigma_obs ** 2 - sigma_inst ** 2, (0.3 * sigma_inst) ** 2))
    d = np.clip(cat.depths, 1e-4, 0.99)
    ew = (-np.log1p(-d) if form == "tau" else d) * sigma_obs * math.sqrt(2 * math.pi)
    gamma = 0.05 * sigma
    return LineGuesses(cat.centres, ew, sigma, gamma, cat.depths, cat.prominences)


def transfer_spectrum(clone: LineModel, spec: ObservedSpectrum, epochs: int = 300, baseline_epochs: int = 200,
                      lr: float = 0.02, tellurics: bool | str = True, telluric_prominence: float | None = None,
                      resolution_guess: float = 80000.0, rv_grid_km_s=None, vsini_grid_km_s=None,
                      continuum_degree: int = 2, velocity_step_km_s: float = 0.5, vsini_max_km_s: float = 300.0,
                      prior_amplitude_scale: float = 0.2, prior_width_scale: float = 0.2,
                      progress: bool = True, device: str = "cpu", margin_angstrom: float = 15.0,
                      telluric_bands=TELLURIC_BANDS) -> TransferResult:
    """Fit a cloned line model to an observed spectrum (see module docstring).

    Stages: (1) brute-force RV/vsini guess; (2) baseline: clone frozen, RV, vsini, R and continuum
    fitted (``baseline_epochs``); (3) telluric lines found in data/baseline (prominence
    ``telluric_prominence``, by default 4 × the median relative error); (4) transfer: stellar
    amplitudes and widths free under the L1 prior, extrinsic parameters and continuum free
    (``epochs``). Returns both rms residuals.

    ``tellurics``: ``True``/``"bands"`` — lines only inside ``telluric_bands`` (default
    :data:`~stellarnn.blase.telluric_bands.TELLURIC_BANDS`, air; converted to vacuum when the
    spectrum's ``metadata["medium"]`` says vacuum), frozen per species and scaled by one fitted
    factor per species; ``"free"`` — every residual line, each with free depth and width (the old
    behaviour, unphysical); ``False``/``"none"`` — no telluric model.
    """
    mode = {True: "bands", False: "none"}.get(tellurics, tellurics)
    if mode not in ("bands", "free", "none"):
        raise ValueError(f"tellurics must be True/'bands', 'free' or False/'none', got {tellurics!r}")
    weight = spec.good_pixels().astype(np.float64)
    if weight.sum() < 10:
        raise ValueError("fewer than 10 usable pixels in the observed spectrum")
    n_seg = int(spec.segment.max()) + 1
    model = TransferModel(
        clone.n_lines, 0, n_segments=n_seg, continuum_degree=continuum_degree,
        grid_min_angstrom=float(spec.wavelength.min()) - margin_angstrom,
        grid_max_angstrom=float(spec.wavelength.max()) + margin_angstrom,
        velocity_step_km_s=velocity_step_km_s, vsini_max_km_s=vsini_max_km_s,
        line_hyperparameters=clone.hyperparameters, prior_amplitude_scale=prior_amplitude_scale,
        prior_width_scale=prior_width_scale)
    model.load_clone(clone)
    model.set_extrinsic(resolution=resolution_guess)
    rv_grid = np.arange(-300.0, 300.01, 1.0) if rv_grid_km_s is None else np.asarray(rv_grid_km_s, float)
    vsini_grid = (np.array([2.0, 5, 10, 20, 40, 70, 100, 150, 200, 250])
                  if vsini_grid_km_s is None else np.asarray(vsini_grid_km_s, float))
    rv0, vsini0 = initial_rv_vsini(model, spec, weight, rv_grid, vsini_grid)
    model.set_extrinsic(rv_km_s=rv0, vsini_km_s=max(vsini0, 1.0))
    batch = _batch(spec, weight)
    _initial_continuum(model, spec, weight, batch)

    # (2) baseline: only extrinsic + continuum
    for p in model.stellar.parameters():
        p.requires_grad_(False)
    cfg = TrainConfig(epochs=baseline_epochs, batch_size=1, lr=lr, progress=progress, device=device)
    baseline_history = Trainer(model, _transfer_loss, cfg).fit(batch)
    model.cpu()
    baseline_rms = _normalised_rms(model, batch)
    baseline_params = dict(rv_km_s=float(model.rv_km_s.detach()), vsini_km_s=float(model.vsini_km_s.detach()),
                           resolution=float(model.resolution.detach()))

    # (3) telluric (observer-frame) lines from the residual
    n_tell, n_outside, per_species = 0, 0, {}
    if mode != "none":
        wl_t, xs, seg = batch[0][0], batch[1][0], batch[2][0]
        with torch.inference_mode():
            base_flux = model(wl_t, xs, seg).double().numpy()
        if telluric_prominence is None:
            telluric_prominence = 4.0 * float(np.median(spec.error[weight > 0]))
        found = find_residual_lines(spec, base_flux, weight, baseline_params["resolution"],
                                    prominence=telluric_prominence, form=clone.form, profile=clone.profile)
        species = None
        if mode == "bands" and len(found):
            medium = "vacuum" if str(spec.metadata.get("medium", "")).startswith("vacuum") else "air"
            index, species = assign_bands(found.centres, telluric_bands, medium)
            n_outside = int((index < 0).sum())
            found = found.select(index >= 0)
            species = species[index >= 0]
        n_tell = len(found)
        if n_tell:
            state = {k: v for k, v in model.state_dict().items()
                     if not k.startswith("telluric") and not k.startswith("telluric_")}
            line_hp = dict(model.hyperparameters["line_hyperparameters"])
            if mode == "bands":
                names = tuple(sorted(set(species)))
                new = TransferModel(**dict(model.hyperparameters, telluric_species=names))
                lines = {}
                for name in names:
                    sel = species == name
                    lines[name] = LineModel(int(sel.sum()), **line_hp)
                    lines[name].set_lines(found.centres[sel], found.amplitudes[sel], found.sigmas[sel],
                                          found.gammas[sel])
                    per_species[name] = int(sel.sum())
                new.set_telluric_templates(lines)
            else:
                new = TransferModel(**dict(model.hyperparameters, n_telluric_lines=n_tell))
                new.telluric.set_lines(found.centres, found.amplitudes, found.sigmas, found.gammas)
            missing = new.load_state_dict(state, strict=False)
            if missing.unexpected_keys or any(not k.startswith("telluric") for k in missing.missing_keys):
                raise RuntimeError(f"transfer model rebuild mismatch: {missing}")
            model = new

    # (4) transfer: amplitudes and widths free (centres of the clone fixed)
    for name, p in model.stellar.named_parameters():
        p.requires_grad_(name != "centre_shift")
    for p in model.telluric.parameters():
        p.requires_grad_(mode == "free")
    model.telluric_ln_scale.requires_grad_(mode == "bands")
    cfg = TrainConfig(epochs=epochs, batch_size=1, lr=lr, progress=progress, device=device)
    transfer_history = Trainer(model, _transfer_loss, cfg).fit(batch)
    model.cpu()
    transfer_rms = _normalised_rms(model, batch)
    scales = dict(zip(model.telluric_species, (float(v) for v in model.telluric_scales().detach())))
    return TransferResult(model=model, baseline_rms=baseline_rms, transfer_rms=transfer_rms,
                          rv_km_s=float(model.rv_km_s.detach()), vsini_km_s=float(model.vsini_km_s.detach()),
                          resolution=float(model.resolution.detach()), n_telluric_lines=n_tell,
                          baseline_history=baseline_history, transfer_history=transfer_history,
                          initial_guess=dict(rv_km_s=rv0, vsini_km_s=vsini0),
                          baseline_parameters=baseline_params, telluric_mode=mode, telluric_scales=scales,
                          telluric_lines_per_species=per_species, n_residual_lines_outside_bands=n_outside)


@torch.no_grad()
def clone_to_air(clone: LineModel) -> LineModel:
    """Convert a clone's line centres from vacuum to air wavelengths in place (the package's one
    convention, :func:`stellarnn.spectra.air_vacuum.vacuum_to_air`, as the readers use to bring air
    spectra to vacuum), e.g. for a vacuum synthetic template and an air-calibrated echelle spectrum."""
    from ..spectra.air_vacuum import vacuum_to_air

    centres = clone.centres().detach().cpu().numpy()
    amp, sig, gam = (torch.exp(p).double().numpy() for p in (clone.ln_amplitude, clone.ln_sigma, clone.ln_gamma))
    clone.set_lines(vacuum_to_air(centres), amp, sig, gam)
    return clone
