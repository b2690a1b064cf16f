"""Depth-stratified Stokes profiles from polarised radiative transfer with Lightweaver.

Lightweaver (Osborne & Milić 2021, ApJ 917, 14; PyPI ``lightweaver``) solves the polarised
transfer equation for the Fe I 6301.5/6302.5 Å lines of its RH ``Fe23_atom`` (Zeeman splitting
from the level quantum numbers), with Fe treated as *detailed static* (LTE populations, full
line profiles) and the other atoms as background.

Atmospheres are FAL-C (Fontenla, Avrett & Loeser 1993, via ``lightweaver.fal.Falc82``) with smooth
random perturbations along depth of the temperature, line-of-sight velocity, microturbulence,
field strength, inclination and azimuth: values at control nodes in log τ500 (of FAL-C) are drawn
from :data:`PERTURBATION_PRIOR` and interpolated monotonically (PCHIP). The atmosphere is built on
FAL-C's column-mass scale, so hydrostatic equilibrium (P_gas = g m) holds exactly for the perturbed
temperature; n_e and n_H come from Lightweaver's equation of state at that pressure (solar log g).

Profiles are computed on the fine air-wavelength grid of
:class:`~stellarnn.stokes.milne_eddington.MilneEddington` (converted to vacuum for Lightweaver),
then convolved with the Hinode SP PSF and sampled at the 112 SP pixels; they are normalised to the
disc-centre continuum of unperturbed, field-free FAL-C. Targets are T [K], v_LOS [km/s, Lightweaver's
positive = redshift], B_LOS = B cos γ [G], B_⊥ = B sin γ [G], sin 2χ and
cos 2χ at the log τ500 nodes :data:`LOG_TAU_NODES` of each perturbed atmosphere's own τ500 scale.

Sign of v_LOS: positive is a redshift (away from the observer), as in the ME model; Lightweaver's
``vlos`` has the opposite sign (checked: vlos = +2 km/s moves the 6301.5 Å line centroid 39 mÅ to
the blue), so −v_LOS is passed to it.

Solar regimes and observation effects (issue 21, item 6), both options of
:func:`build_stratified_set` recorded in every chunk's ``metadata`` (JSON) and, per profile, in
``regime``, ``stray_light_fraction`` and ``continuum_factor``:

* **Regimes** (:data:`REGIME_PRIORS`, drawn by :func:`draw_regime_stratification`): ``quiet``,
  ``network``, ``plage``, ``penumbra``, ``umbra``. Each draws a depth-mean value of B, γ, the relative
  temperature change of FAL-C and v_LOS from its range, plus smooth node-to-node variations of a
  given amplitude (B relative, T relative, v in km/s). The quiet-Sun range B = 0–200 G is the issue's;
  umbral fields of 2–3.5 kG and cool umbrae (T(τ=1) ≈ 4000 K, i.e. ≈ −35 % of FAL-C's 6400 K) follow
  Solanki (2003, A&ARv 11, 153); inclined penumbral fields of 1–2.5 kG with γ ≈ 40–140° and a cooler
  penumbra follow Borrero & Ichimoto (2011, Living Rev. Sol. Phys. 8, 4); the network and plage ranges
  (near-vertical 0.2–1.5 kG and 0.5–2 kG fields, slightly hotter upper layers) and all velocity,
  microturbulence and node-variation amplitudes are our choice. Near-vertical regimes take either
  polarity with probability 1/2. Without ``regimes`` the single broad prior :data:`PERTURBATION_PRIOR`
  (regime name ``broad``) is used exactly as before (same random numbers, same profiles).
* **Observation effects** (:class:`ObservationEffects`, :func:`apply_observation_effects`): the Hinode
  SP spectral PSF as a Gaussian of FWHM ``psf_fwhm_ma`` (an approximation of the SP spectral
  resolution; instrument: Lites et al. 2013, Sol. Phys. 283, 579; default 30 mÅ as in
  :data:`~stellarnn.stokes.milne_eddington.HINODE_SP_PSF_FWHM_MA`), stray light
  I = (1 − f) I_atm + f I_qs with f ~ U(0, ``stray_light_max``) and I_qs the unpolarised field-free
  FAL-C profile through the same PSF (our stand-in for a quiet-Sun mean profile), a
  continuum-normalisation error (all four Stokes parameters times c ~ N(1, ``continuum_error_sigma``))
  and white Gaussian noise of ``noise_sigma`` I_c. Training adds its own 1e-3 noise on the fly
  (:func:`~stellarnn.stokes.stratified_cnn.train_stratified_cnn`), so training sets are best built with
  ``noise_sigma = 0``; the benchmark also adds 1e-3 noise to held-out profiles.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .milne_eddington import HINODE_SP_PSF_FWHM_MA, MilneEddington

LOG_TAU_NODES = np.round(np.arange(-4.0, 1.0001, 0.5), 3)
TARGET_NAMES = ("temperature", "v_los", "B_los", "B_perp", "sin2chi", "cos2chi")
TARGET_UNITS = ("K", "km/s", "G", "G", "", "")
#: control nodes (log τ500 of FAL-C) of the random perturbations
CONTROL_NODES = np.array([-5.0, -3.5, -2.0, -1.0, 0.0, 1.5])
#: per-node uniform ranges; temperature is a relative change, B in G, angles in degrees, speeds in km/s
PERTURBATION_PRIOR = {
    "temperature_rel": (-0.10, 0.10), "v_los": (-3.0, 3.0), "vturb": (0.0, 2.0),
    "B": (0.0, 2500.0), "gamma": (0.0, 180.0), "chi": (0.0, 180.0),
}
#: regime name of profiles drawn from :data:`PERTURBATION_PRIOR` (sets built without ``regimes``)
BROAD_REGIME = "broad"


@dataclass(frozen=True)
class RegimePrior:
    """Ranges of one solar regime (see the module docstring for references and our choices).

    ``B``, ``gamma``, ``temperature_rel`` and ``v_los`` are (low, high) ranges of the depth-mean value
    (G, deg, relative change of FAL-C's T, km/s, positive = redshift); ``*_node`` are the amplitudes of
    the uniform node-to-node variations around it (B and T relative, v in km/s); ``vturb`` the
    per-node microturbulence range [km/s]; ``flip_polarity`` maps γ → 180° − γ with probability 1/2.
    """

    B: tuple[float, float]
    gamma: tuple[float, float]
    temperature_rel: tuple[float, float]
    v_los: tuple[float, float]
    B_node: float = 0.2
    temperature_node: float = 0.03
    v_los_node: float = 0.5
    vturb: tuple[float, float] = (0.0, 1.5)
    flip_polarity: bool = True


#: the regimes of issue 21, item 6 (module docstring: references and which ranges are our choice)
REGIME_PRIORS = {
    "quiet": RegimePrior(B=(0.0, 200.0), gamma=(0.0, 180.0), temperature_rel=(-0.04, 0.04), v_los=(-1.5, 1.5),
                         B_node=0.3, temperature_node=0.03, v_los_node=1.0, vturb=(0.0, 2.0), flip_polarity=False),
    "network": RegimePrior(B=(200.0, 1500.0), gamma=(0.0, 40.0), temperature_rel=(-0.02, 0.06), v_los=(-1.0, 1.0)),
    "plage": RegimePrior(B=(500.0, 2000.0), gamma=(0.0, 30.0), temperature_rel=(-0.02, 0.08), v_los=(-0.5, 1.5)),
    "penumbra": RegimePrior(B=(1000.0, 2500.0), gamma=(40.0, 140.0), temperature_rel=(-0.15, -0.05),
                            v_los=(-2.0, 2.0), v_los_node=1.0, flip_polarity=False),
    "umbra": RegimePrior(B=(2000.0, 3500.0), gamma=(0.0, 20.0), temperature_rel=(-0.40, -0.28), v_los=(-0.5, 0.5),
                         B_node=0.1, temperature_node=0.03, v_los_node=0.3, vturb=(0.0, 1.0)),
}
GAUSS_PER_TESLA = 1e4
MIN_TEMPERATURE_K = 2500.0


def _lightweaver():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lightweaver as lw
        from lightweaver import rh_atoms
        from lightweaver.fal import Falc82
    return lw, rh_atoms, Falc82


@dataclass
class Stratification:
    """Perturbed atmosphere on the FAL-C column-mass grid (top first): T [K], speeds [km/s], B [G], angles [deg]."""

    temperature: np.ndarray
    v_los: np.ndarray
    vturb: np.ndarray
    B: np.ndarray
    gamma: np.ndarray
    chi: np.ndarray
    nodes: dict


def draw_regime_stratification(reference_temperature: np.ndarray, reference_log_tau: np.ndarray, regime: str,
                               rng: np.random.Generator) -> Stratification:
    """A smooth random atmosphere of ``regime`` (:data:`REGIME_PRIORS`) on FAL-C's depth grid.

    Depth-mean values are drawn from the regime's ranges, node values add uniform variations of the
    regime's amplitudes (B clipped to the regime's range), and the nodes (:data:`CONTROL_NODES`) are interpolated with PCHIP along
    FAL-C's log τ500 (``reference_log_tau``); B is clipped at 0, γ to [0°, 180°], T at
    :data:`MIN_TEMPERATURE_K`. ``nodes`` has the keys of :data:`PERTURBATION_PRIOR`.
    """
    from scipy.interpolate import PchipInterpolator

    if regime not in REGIME_PRIORS:
        raise ValueError(f"unknown regime {regime!r}; known: {', '.join(REGIME_PRIORS)}")
    prior = REGIME_PRIORS[regime]
    n = CONTROL_NODES.size

    def around(rng_range, amplitude, relative=False):
        mean = rng.uniform(*rng_range)
        jitter = rng.uniform(-amplitude, amplitude, n)
        return mean * (1.0 + jitter) if relative else mean + jitter

    b = np.clip(around(prior.B, prior.B_node, relative=True), *prior.B)  # B stays in the regime's range
    gamma = np.clip(np.full(n, rng.uniform(*prior.gamma)) + rng.uniform(-5.0, 5.0, n), 0.0, 180.0)
    if prior.flip_polarity and rng.random() < 0.5:
        gamma = 180.0 - gamma
    nodes = {"temperature_rel": around(prior.temperature_rel, prior.temperature_node),
             "v_los": around(prior.v_los, prior.v_los_node), "vturb": rng.uniform(*prior.vturb, n), "B": b,
             "gamma": gamma, "chi": (rng.uniform(0.0, 180.0) + rng.uniform(-10.0, 10.0, n)) % 180.0}
    x = np.clip(reference_log_tau, CONTROL_NODES[0], CONTROL_NODES[-1])
    along = {name: PchipInterpolator(CONTROL_NODES, values)(x) for name, values in nodes.items()}
    temperature = np.maximum(reference_temperature * (1.0 + along["temperature_rel"]), MIN_TEMPERATURE_K)
    # χ: interpolate the unwrapped node angles (the drawn nodes lie within ±10° of one azimuth)
    chi_nodes = np.rad2deg(np.unwrap(np.deg2rad(2.0 * nodes["chi"]))) / 2.0
    chi = PchipInterpolator(CONTROL_NODES, chi_nodes)(x) % 180.0
    return Stratification(temperature, along["v_los"], np.clip(along["vturb"], 0, None), np.clip(along["B"], 0, None),
                          np.clip(along["gamma"], 0, 180), chi, {k: np.asarray(v).tolist() for k, v in nodes.items()})


@dataclass(frozen=True)
class ObservationEffects:
    """What the Sun looks like through Hinode SP, beyond the PSF (see the module docstring).

    Parameters
    ----------
    psf_fwhm_ma : FWHM [mÅ] of the Gaussian spectral PSF (an approximation of the SP resolution)
    noise_sigma : white Gaussian noise [I_c] added to every Stokes pixel (0: none)
    stray_light_max : stray-light fraction f ~ U(0, stray_light_max) (0: none)
    continuum_error_sigma : continuum-normalisation factor c ~ N(1, continuum_error_sigma) (0: c = 1)
    """

    psf_fwhm_ma: float = HINODE_SP_PSF_FWHM_MA
    noise_sigma: float = 0.0
    stray_light_max: float = 0.0
    continuum_error_sigma: float = 0.0

    def __post_init__(self):
        if not self.psf_fwhm_ma > 0:
            raise ValueError(f"psf_fwhm_ma must be > 0 mÅ, got {self.psf_fwhm_ma}")
        if self.noise_sigma < 0 or self.continuum_error_sigma < 0:
            raise ValueError("noise_sigma and continuum_error_sigma must be >= 0")
        if not 0.0 <= self.stray_light_max < 1.0:
            raise ValueError(f"stray_light_max must be in [0, 1), got {self.stray_light_max}")

    def to_dict(self) -> dict:
        return {"psf_fwhm_ma": float(self.psf_fwhm_ma), "noise_sigma": float(self.noise_sigma),
                "stray_light_max": float(self.stray_light_max),
                "continuum_error_sigma": float(self.continuum_error_sigma)}


def apply_observation_effects(stokes: np.ndarray, quiet_sun_intensity: np.ndarray, effects: ObservationEffects,
                              rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Stray light, continuum-normalisation error and noise on PSF-sampled Stokes (4, n_λ) [I_c].

    I = c [(1 − f) I_atm + f I_qs] + n for Stokes I and c (1 − f) X + n for X = Q, U, V (the quiet-Sun
    stray light is unpolarised), with f ~ U(0, ``stray_light_max``), c ~ N(1, ``continuum_error_sigma``)
    and n ~ N(0, ``noise_sigma``²) per pixel. Random numbers are drawn only for the effects that are
    switched on. Returns ``(stokes, f, c)``.
    """
    out = np.array(stokes, dtype=np.float64, copy=True)
    f = float(rng.uniform(0.0, effects.stray_light_max)) if effects.stray_light_max > 0 else 0.0
    c = float(rng.normal(1.0, effects.continuum_error_sigma)) if effects.continuum_error_sigma > 0 else 1.0
    if f > 0:
        out *= 1.0 - f
        out[0] += f * np.asarray(quiet_sun_intensity, dtype=np.float64)
    out *= c
    if effects.noise_sigma > 0:
        out += rng.normal(0.0, effects.noise_sigma, out.shape)
    return out, f, c


class LightweaverSynthesizer:
    """Synthesise Hinode SP Stokes profiles of perturbed FAL-C atmospheres with Lightweaver.

    Parameters
    ----------
    mu : float, heliocentric angle cosine
    psf_fwhm_ma : float, FWHM [mÅ] of the Gaussian spectral PSF (default: the SP value of the ME model)
    background_tolerance : float
        Stop the background (continuum-scattering) J iteration when max ΔJ/J falls below this.
    max_background_iterations : int
        Cap on those iterations. Measured on FAL-C (B = 1 kG): the Stokes profiles in the SP window
        after 1 iteration differ from those after 40 by < 5e-7 I_c (after 0: 6e-4; the slowly converging
        ΔJ lies elsewhere in the spectrum), so 2 iterations suffice.
    """

    def __init__(self, mu: float = 1.0, background_tolerance: float = 1e-2, max_background_iterations: int = 2,
                 psf_fwhm_ma: float = HINODE_SP_PSF_FWHM_MA):
        from scipy.interpolate import PchipInterpolator  # noqa: F401  (checked early)

        self.lw, self.rh_atoms, falc = _lightweaver()
        self.mu = float(mu)
        self.tolerance = float(background_tolerance)
        self.max_iterations = int(max_background_iterations)
        self.psf_fwhm_ma = float(psf_fwhm_ma)
        self.instrument = MilneEddington(psf_fwhm_ma=self.psf_fwhm_ma)
        self.wavelengths_vacuum_nm = self.lw.air_to_vac(self.instrument.model_wavelengths / 10.0)
        self.reference = falc()
        self.reference_log_tau = np.log10(self.reference.tauRef)
        atoms = self.rh_atoms
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.atomic_set = self.lw.RadiativeSet([
                atoms.H_6_atom(), atoms.C_atom(), atoms.O_atom(), atoms.Si_atom(), atoms.Al_atom(),
                atoms.CaII_atom(), atoms.Fe23_atom(), atoms.He_9_atom(), atoms.MgII_atom(), atoms.N_atom(),
                atoms.Na_atom(), atoms.S_atom()])
            self.atomic_set.set_detailed_static("Fe")
            self.spectrum = self.atomic_set.compute_wavelength_grid()
        self._continuum: float | None = None
        self._quiet_sun_intensity: np.ndarray | None = None

    def _field_free_reference(self) -> None:
        zeros = np.zeros(self.reference.Nspace)
        quiet = self._solve(self.reference.temperature, zeros, self.reference.vturb / 1e3, zeros, zeros, zeros)[0]
        self._continuum = float(np.max(quiet[0]))
        self._quiet_sun_intensity = self.instrument.apply_instrument(
            torch.from_numpy(quiet[0] / self._continuum)).numpy()

    @property
    def continuum(self) -> float:
        """Disc-centre continuum intensity of field-free FAL-C (SI units of Lightweaver), computed once."""
        if self._continuum is None:
            self._field_free_reference()
        return self._continuum

    @property
    def quiet_sun_intensity(self) -> np.ndarray:
        """Stokes I (n_pixels,) [I_c] of field-free FAL-C through the PSF: the stray-light profile, computed once."""
        if self._quiet_sun_intensity is None:
            self._field_free_reference()
        return self._quiet_sun_intensity

    def random_stratification(self, rng: np.random.Generator, regime: str = BROAD_REGIME) -> Stratification:
        """Draw smooth random perturbations of FAL-C (see module docstring), of ``regime`` (:data:`REGIME_PRIORS`)."""
        from scipy.interpolate import PchipInterpolator

        if regime != BROAD_REGIME:
            return draw_regime_stratification(self.reference.temperature, self.reference_log_tau, regime, rng)

        x = np.clip(self.reference_log_tau, CONTROL_NODES[0], CONTROL_NODES[-1])
        nodes = {name: rng.uniform(lo, hi, CONTROL_NODES.size) for name, (lo, hi) in PERTURBATION_PRIOR.items()}
        along = {name: PchipInterpolator(CONTROL_NODES, values)(x) for name, values in nodes.items()}
        temperature = np.maximum(self.reference.temperature * (1.0 + along["temperature_rel"]), MIN_TEMPERATURE_K)
        return Stratification(temperature, along["v_los"], along["vturb"], np.clip(along["B"], 0, None),
                              np.clip(along["gamma"], 0, 180), along["chi"] % 180.0,
                              {k: v.tolist() for k, v in nodes.items()})

    def _solve(self, temperature, v_los_kms, vturb_kms, b_gauss, gamma_deg, chi_deg):
        lw = self.lw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atmos = lw.Atmosphere.make_1d(
                scale=lw.ScaleType.ColumnMass, depthScale=self.reference.cmass, temperature=temperature,
                vlos=-v_los_kms * 1e3, vturb=vturb_kms * 1e3, B=b_gauss / GAUSS_PER_TESLA,
                gammaB=np.deg2rad(gamma_deg), chiB=np.deg2rad(chi_deg))
            atmos.quadrature(5)
            pops = self.atomic_set.compute_eq_pops(atmos)
            ctx = lw.Context(atmos, self.spectrum, pops, Nthreads=1)
            for _ in range(self.max_iterations):
                update = ctx.formal_sol_gamma_matrices()
                if update.dJMax < self.tolerance:
                    break
            stokes = np.asarray(ctx.compute_rays(self.wavelengths_vacuum_nm, [self.mu], stokes=True))
        return stokes, np.log10(atmos.tauRef)

    def synthesize(self, strat: Stratification) -> tuple[np.ndarray, np.ndarray]:
        """Stokes (4, 112) at Hinode SP sampling (continuum units) and targets (6, n_nodes)."""
        fine, log_tau = self._solve(strat.temperature, strat.v_los, strat.vturb, strat.B, strat.gamma, strat.chi)
        stokes = self.instrument.apply_instrument(torch.from_numpy(fine / self.continuum)).numpy()
        return stokes, stratification_targets(strat, log_tau)


def stratification_targets(strat: Stratification, log_tau: np.ndarray) -> np.ndarray:
    """T, v_LOS, B_LOS, B_⊥, sin 2χ, cos 2χ interpolated at :data:`LOG_TAU_NODES` (shape (6, n_nodes))."""
    order = np.argsort(log_tau)
    g = np.deg2rad(strat.gamma)
    c2 = 2.0 * np.deg2rad(strat.chi)
    rows = [strat.temperature, strat.v_los, strat.B * np.cos(g), strat.B * np.sin(g), np.sin(c2), np.cos(c2)]
    return np.stack([np.interp(LOG_TAU_NODES, log_tau[order], r[order]) for r in rows])


def _chunk_path(directory: Path, seed: int, k: int, chunk_size: int) -> Path:
    return directory / f"lw_seed{seed}_chunk{k:05d}_n{chunk_size}.npz"


def set_metadata(regimes: tuple[str, ...] | None, effects: ObservationEffects) -> dict:
    """The options a chunk was built with (stored as JSON in every chunk file, checked on resume)."""
    return {"regimes": list(regimes) if regimes else [BROAD_REGIME], "observation_effects": effects.to_dict()}


def _check_regimes(regimes) -> tuple[str, ...] | None:
    if regimes is None:
        return None
    regimes = tuple(regimes)
    unknown = [r for r in regimes if r not in REGIME_PRIORS]
    if not regimes or unknown:
        raise ValueError(f"unknown or no regimes {unknown or list(regimes)}; known: {', '.join(REGIME_PRIORS)}")
    return regimes


def _write_chunk(path: Path, synthesizer: "LightweaverSynthesizer", seed: int, k: int, chunk_size: int,
                 on_profile=None, regimes: tuple[str, ...] | None = None,
                 effects: ObservationEffects | None = None) -> None:
    """Synthesise chunk ``k`` (rng ``default_rng(seed * 100003 + k)``) and write it atomically.

    Per profile: the regime (uniform over ``regimes``; :data:`BROAD_REGIME` without), the atmosphere,
    then the observation ``effects`` (:func:`apply_observation_effects`), all from that one generator.
    """
    effects = effects or ObservationEffects(psf_fwhm_ma=synthesizer.psf_fwhm_ma)
    if not math.isclose(effects.psf_fwhm_ma, synthesizer.psf_fwhm_ma):
        raise ValueError(f"the synthesizer's PSF ({synthesizer.psf_fwhm_ma} mÅ) differs from the requested "
                         f"{effects.psf_fwhm_ma} mÅ")
    rng = np.random.default_rng(seed * 100003 + k)
    stokes, targets, nodes, regime_of, stray, factor = [], [], [], [], [], []
    for _ in range(chunk_size):
        regime = regimes[int(rng.integers(len(regimes)))] if regimes else BROAD_REGIME
        strat = synthesizer.random_stratification(rng, regime)
        s, t = synthesizer.synthesize(strat)
        if effects.noise_sigma > 0 or effects.stray_light_max > 0 or effects.continuum_error_sigma > 0:
            s, f, c = apply_observation_effects(s, synthesizer.quiet_sun_intensity, effects, rng)
        else:
            f, c = 0.0, 1.0
        stokes.append(s)
        targets.append(t)
        nodes.append(np.concatenate([np.asarray(v) for v in strat.nodes.values()]))
        regime_of.append(regime)
        stray.append(f)
        factor.append(c)
        if on_profile is not None:
            on_profile()
    # a per-process temporary name: two builders on one directory never write the same file
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part.npz")
    np.savez(tmp, stokes=np.stack(stokes).astype(np.float32), targets=np.stack(targets).astype(np.float32),
             nodes=np.stack(nodes), log_tau_nodes=LOG_TAU_NODES, control_nodes=CONTROL_NODES,
             node_names=np.array(list(PERTURBATION_PRIOR)), regime=np.array(regime_of),
             stray_light_fraction=np.array(stray), continuum_factor=np.array(factor),
             metadata=np.array(json.dumps(set_metadata(regimes, effects))))
    tmp.replace(path)


def _chunk_metadata(path: Path) -> dict:
    """The build options of a chunk file (legacy chunks without ``metadata``: the broad prior, 30 mÅ PSF, no effects)."""
    with np.load(path) as f:
        if "metadata" in f.files:
            return json.loads(str(f["metadata"]))
    return set_metadata(None, ObservationEffects())


_WORKER_SYNTHESIZER: "LightweaverSynthesizer | None" = None


def _worker_chunk(job: tuple) -> int:
    """Pool worker: one Lightweaver context per process, reused across chunks."""
    global _WORKER_SYNTHESIZER
    directory, seed, k, chunk_size, regimes, effects = job
    effects = ObservationEffects(**effects)
    if _WORKER_SYNTHESIZER is None or not math.isclose(_WORKER_SYNTHESIZER.psf_fwhm_ma, effects.psf_fwhm_ma):
        _WORKER_SYNTHESIZER = LightweaverSynthesizer(psf_fwhm_ma=effects.psf_fwhm_ma)
    _write_chunk(_chunk_path(Path(directory), seed, k, chunk_size), _WORKER_SYNTHESIZER, seed, k, chunk_size,
                 regimes=regimes, effects=effects)
    return k


def build_stratified_set(directory: str | Path, n_profiles: int, seed: int = 0, chunk_size: int = 50,
                         progress: bool = True, synthesizer: LightweaverSynthesizer | None = None,
                         workers: int = 1, regimes=None, effects: ObservationEffects | None = None) -> dict:
    """Build ``n_profiles`` Lightweaver profiles in resumable chunk files (``.npz``) under ``directory``.

    Chunk k uses ``numpy.random.default_rng(seed * 100003 + k)``; finished chunks are kept and
    skipped, so the builder can be killed and restarted at any time (at most one chunk per worker is
    lost). ``workers > 1`` synthesises missing chunks in that many processes (one single-threaded
    Lightweaver context each); the result does not depend on ``workers``.
    ``regimes``: names of :data:`REGIME_PRIORS` drawn uniformly per profile (None: the broad
    :data:`PERTURBATION_PRIOR`, as before); ``effects``: :class:`ObservationEffects` (None: the SP PSF
    of ``synthesizer`` or 30 mÅ, nothing else). Both are stored in every chunk (``metadata``); finished
    chunks of this seed and chunk size built with other options raise ``ValueError``.
    Returns the concatenated arrays of the first ``n_profiles`` profiles:
    ``stokes`` (n, 4, 112), ``targets`` (n, 6, n_nodes), ``regime`` (n,), ``log_tau_nodes``, ``metadata``.
    """
    import multiprocessing

    from tqdm.auto import tqdm

    if n_profiles <= 0 or chunk_size <= 0 or workers <= 0:
        raise ValueError("n_profiles, chunk_size and workers must be positive")
    regimes = _check_regimes(regimes)
    if effects is None:
        effects = ObservationEffects(psf_fwhm_ma=synthesizer.psf_fwhm_ma if synthesizer else HINODE_SP_PSF_FWHM_MA)
    if synthesizer is not None and not math.isclose(synthesizer.psf_fwhm_ma, effects.psf_fwhm_ma):
        raise ValueError(f"the synthesizer's PSF ({synthesizer.psf_fwhm_ma} mÅ) differs from effects.psf_fwhm_ma "
                         f"({effects.psf_fwhm_ma} mÅ)")
    metadata = set_metadata(regimes, effects)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_chunks = math.ceil(n_profiles / chunk_size)
    paths = [_chunk_path(directory, seed, k, chunk_size) for k in range(n_chunks)]
    for path in paths:
        if path.is_file() and _chunk_metadata(path) != metadata:
            raise ValueError(f"{path} was built with other options ({_chunk_metadata(path)}) than requested "
                             f"({metadata}); use another directory or seed")
    missing = [k for k in range(n_chunks) if not paths[k].is_file()]
    bar = tqdm(total=n_chunks * chunk_size, initial=(n_chunks - len(missing)) * chunk_size,
               desc="Lightweaver profiles", unit="profile", disable=not progress)
    if workers > 1 and len(missing) > 1:
        jobs = [(str(directory), seed, k, chunk_size, regimes, effects.to_dict()) for k in missing]
        with multiprocessing.get_context("spawn").Pool(min(workers, len(missing))) as pool:
            for _ in pool.imap_unordered(_worker_chunk, jobs):
                bar.update(chunk_size)
    else:
        for k in missing:
            synthesizer = synthesizer or LightweaverSynthesizer(psf_fwhm_ma=effects.psf_fwhm_ma)
            _write_chunk(paths[k], synthesizer, seed, k, chunk_size, on_profile=lambda: bar.update(1),
                         regimes=regimes, effects=effects)
    bar.close()
    stokes_all, targets_all, regime_all = [], [], []
    for path in paths:
        with np.load(path) as f:
            stokes_all.append(f["stokes"])
            targets_all.append(f["targets"])
            regime_all.append(f["regime"] if "regime" in f.files else np.full(len(f["stokes"]), BROAD_REGIME))
    return {"stokes": np.concatenate(stokes_all)[:n_profiles], "targets": np.concatenate(targets_all)[:n_profiles],
            "regime": np.concatenate(regime_all)[:n_profiles].astype(str), "log_tau_nodes": LOG_TAU_NODES,
            "metadata": metadata}


def load_stratified_set(directory: str | Path) -> dict:
    """Every finished chunk file (``lw_seed*_chunk*_n*.npz``) under ``directory``, concatenated in name order.

    Returns ``stokes`` (n, 4, 112) float32, ``targets`` (n, 6, n_nodes) float32, ``regime`` (n,) str
    (:data:`BROAD_REGIME` for chunks built before regimes existed), ``effects_applied`` (n,) bool (the
    chunk was built with stray light or a continuum error, :class:`ObservationEffects`), ``log_tau_nodes``,
    ``files`` (the chunk files read) and ``metadata`` (the build options of each file, in ``files``
    order). Raises ``FileNotFoundError`` when there is none.
    """
    files = sorted(Path(directory).glob("lw_seed*_chunk*_n*.npz"))
    files = [f for f in files if not f.name.endswith(".part.npz")]
    if not files:
        raise FileNotFoundError(f"no Lightweaver chunk files (lw_seed*_chunk*_n*.npz) in {directory}; build them with "
                                "`stellarnn stokes build-set`")
    stokes, targets, regime, metadata, applied = [], [], [], [], []
    for f in files:
        with np.load(f) as d:
            if not np.array_equal(d["log_tau_nodes"], LOG_TAU_NODES):
                raise ValueError(f"{f}: log tau nodes differ from LOG_TAU_NODES")
            stokes.append(d["stokes"].astype(np.float32))
            targets.append(d["targets"].astype(np.float32))
            regime.append(d["regime"].astype(str) if "regime" in d.files else np.full(len(d["stokes"]), BROAD_REGIME))
        metadata.append(_chunk_metadata(f))
        fx = metadata[-1].get("observation_effects", {})
        applied.append(np.full(len(stokes[-1]), fx.get("stray_light_max", 0.0) > 0
                               or fx.get("continuum_error_sigma", 0.0) > 0))
    return {"stokes": np.concatenate(stokes), "targets": np.concatenate(targets), "regime": np.concatenate(regime),
            "effects_applied": np.concatenate(applied), "log_tau_nodes": LOG_TAU_NODES,
            "files": [str(f) for f in files], "metadata": metadata}
