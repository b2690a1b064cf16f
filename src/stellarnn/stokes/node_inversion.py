"""Classical node-based LTE Stokes inversion with Lightweaver as the forward model (issue 21, item 8).

The method is that of SIR (Stokes Inversion based on Response functions; Ruiz Cobo & del Toro Iniesta
1992, ApJ 398, 375; del Toro Iniesta 2003, *Introduction to Spectropolarimetry*, CUP, ch. 11): the
atmosphere is a reference model (here FAL-C, Fontenla, Avrett & Loeser 1993) perturbed at a few
*nodes* in log τ500, the perturbation between nodes is interpolated, and the node values are fitted
to the observed Stokes I, Q, U, V by Levenberg–Marquardt least squares in *cycles* of increasing
node number (SIR's strategy: a coarse cycle first, its solution resampled onto the finer nodes as the
start of the next). Unlike SIR, the derivatives are not analytic response functions but one-sided
finite differences: one extra Lightweaver solution per atmospheric node and iteration.

Atmosphere (:class:`NodeLayout`): the relative temperature change of FAL-C, v_LOS [km/s, positive =
redshift], field strength B [G], inclination γ [deg] and microturbulence [km/s] at their nodes,
interpolated along FAL-C's log τ500 with PCHIP and held constant outside the outermost nodes —
exactly as :mod:`~stellarnn.stokes.lightweaver_driver` builds its random stratifications (one node:
constant, two: linear). The azimuth χ is constant with depth; rotating it by α rotates (Q, U) by 2α,
so its derivative is analytic (∂Q/∂χ = −2U, ∂U/∂χ = 2Q per radian; checked on Lightweaver to 1e-16 I_c).
Two observational parameters enter analytically too, as in SIR's stray-light fraction: the
unpolarised stray light fraction f (the stray-light profile is field-free FAL-C through the same PSF,
the driver's :attr:`~stellarnn.stokes.lightweaver_driver.LightweaverSynthesizer.quiet_sun_intensity`)
and a continuum-normalisation factor c, so the model is I = c[(1 − f) I_atm + f I_qs],
X = c (1 − f) X_atm for X = Q, U, V — as the driver's
:func:`~stellarnn.stokes.lightweaver_driver.apply_observation_effects`.

Forward model (:class:`LightweaverForward`): the driver's
:class:`~stellarnn.stokes.lightweaver_driver.LightweaverSynthesizer` (same atoms, Fe I 6301.5/6302.5 in
detailed static LTE, Hinode SP PSF and sampling, FAL-C continuum unit), in process or in a pool of
``workers`` processes: the finite-difference columns of one iteration are independent solutions, and
all rows (profiles) of a batch iterate in step, so one iteration is one parallel map over
n_profiles × (n_atmospheric_nodes + 1) atmospheres.

Least squares: χ² = Σ [(O − M) w_s / σ]² over the 4 × 112 pixels (σ the noise, w_s per-Stokes
weights, 1 by default) plus a mild Tikhonov penalty Σ [(p_{j+1} − p_j)/s_q]² on the differences of
neighbouring nodes of T, v_LOS and B (:data:`REGULARISATION_SCALES`: 10 % in T, 2 km/s, 1 kG; the
regularised node inversions of e.g. de la Cruz Rodríguez et al. 2019, A&A 623, A74). Without it the
deepest T node, which the lines barely constrain, ran to its bound in a first trial. The sum is
minimised with the package's projected, batched Levenberg–Marquardt step
(:func:`~stellarnn.numerics.levenberg_marquardt.levenberg_marquardt_step`, with its damping schedule
and bounds). A row stops when an accepted step lowers χ² by less than ``tolerance`` relatively
(converged), when λ reaches the schedule's maximum (no downhill step left: also converged, up to the
finite-difference accuracy) or at the iteration cap (not converged).

Initialisation (one start, stated): B, γ, χ and v_LOS from the Milne–Eddington LM inversion of the same
profile (:func:`~stellarnn.stokes.lm_inversion.invert_lm`, 4 starts; B and v_LOS the same at every
node), the temperature change from the continuum intensity by the Eddington–Barbier relation
I_c ≈ B_λ(T(τ_c = 1)) (e.g. Gray 2005, *The Observation and Analysis of Stellar Photospheres*, 3rd ed.,
ch. 7), i.e. Planck's law at 630.2 nm inverted relative to FAL-C's T at log τ500 = 0, applied at every
node; microturbulence 1 km/s, f = 0.02, c = 1.

Output: T, v_LOS, B_LOS, B_⊥, sin 2χ and cos 2χ at :data:`~stellarnn.stokes.lightweaver_driver.LOG_TAU_NODES`
of the fitted atmosphere's own τ500 scale (as the CNN targets), χ², iterations, a convergence flag, the
number of Lightweaver calls and their wall time.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..constants import BOLTZMANN_CGS, PLANCK_CGS, SPEED_OF_LIGHT_CGS
from ..numerics.levenberg_marquardt import DampingSchedule, clip_to_bounds, levenberg_marquardt_step
from .lightweaver_driver import MIN_TEMPERATURE_K, TARGET_NAMES, LightweaverSynthesizer, Stratification
from .milne_eddington import HINODE_SP_PSF_FWHM_MA, check_stokes_profiles

#: the depth-dependent quantities, in parameter order: relative T change of FAL-C, v_LOS [km/s],
#: B [G], γ [deg], microturbulence [km/s]
ATMOSPHERIC_QUANTITIES = ("temperature_rel", "v_los", "B", "gamma", "vturb")
#: the parameters with analytic derivatives, after the atmospheric nodes: χ [deg], stray-light fraction,
#: continuum factor
ANALYTIC_PARAMETERS = ("chi", "stray_light", "continuum_factor")
#: box constraints (low, high) per quantity; χ is wrapped into [0°, 180°) instead
BOUNDS = {"temperature_rel": (-0.5, 0.5), "v_los": (-10.0, 10.0), "B": (0.0, 5000.0), "gamma": (0.0, 180.0),
          "vturb": (0.0, 5.0), "chi": (-1e9, 1e9), "stray_light": (0.0, 0.6), "continuum_factor": (0.8, 1.2)}
#: one-sided finite-difference steps (absolute; for B the larger of 10 G and 2 % of B)
FD_STEPS = {"temperature_rel": 3e-3, "v_los": 0.05, "B": 10.0, "gamma": 1.0, "vturb": 0.05}
FD_RELATIVE_B = 0.02
#: Tikhonov scales of the first differences between neighbouring nodes (module docstring)
REGULARISATION_SCALES = {"temperature_rel": 0.1, "v_los": 2.0, "B": 1000.0}
#: wavelength [nm] of the Planck-law temperature estimate from the continuum (the Fe I 6301/6302 window)
CONTINUUM_WAVELENGTH_NM = 630.2
#: λ schedule of the node inversion (the ME inversion's factors; a lower ceiling: a row whose steps are
#: rejected up to λ = 1e4 is at a minimum within the finite-difference accuracy)
NODE_DAMPING = DampingSchedule(initial=1e-2, accepted=0.1, rejected=10.0, minimum=1e-6, maximum=1e4)


@dataclass(frozen=True)
class NodeLayout:
    """Node positions (log τ500 of FAL-C, increasing) of each atmospheric quantity; χ, f and c are single values.

    The default is the fine cycle of :data:`DEFAULT_CYCLES`: T at the driver's control nodes
    −3.5 … 1.5 (its −5 node lies above where the lines form), v_LOS and B at −2 and 0, one γ and one
    microturbulence: 11 Lightweaver columns plus the analytic χ, f and c.
    """

    temperature_rel: tuple[float, ...] = (-3.5, -2.0, -1.0, 0.0, 1.5)
    v_los: tuple[float, ...] = (-2.0, 0.0)
    B: tuple[float, ...] = (-2.0, 0.0)
    gamma: tuple[float, ...] = (-1.0,)
    vturb: tuple[float, ...] = (-1.0,)

    def __post_init__(self):
        for name in ATMOSPHERIC_QUANTITIES:
            nodes = np.asarray(getattr(self, name), dtype=float)
            if nodes.ndim != 1 or nodes.size == 0 or np.any(np.diff(nodes) <= 0):
                raise ValueError(f"nodes of {name} must be a non-empty increasing sequence, got {nodes}")

    def nodes(self, quantity: str) -> np.ndarray:
        """The node positions (log τ500) of ``quantity``."""
        return np.asarray(getattr(self, quantity), dtype=float)

    @property
    def n_atmospheric(self) -> int:
        """Number of parameters that need a Lightweaver solution per finite-difference column."""
        return sum(len(getattr(self, q)) for q in ATMOSPHERIC_QUANTITIES)

    @property
    def n_parameters(self) -> int:
        return self.n_atmospheric + len(ANALYTIC_PARAMETERS)

    def slices(self) -> dict[str, slice]:
        """Where each quantity's node values sit in the parameter vector."""
        out, start = {}, 0
        for q in ATMOSPHERIC_QUANTITIES:
            out[q] = slice(start, start + len(getattr(self, q)))
            start += len(getattr(self, q))
        for q in ANALYTIC_PARAMETERS:
            out[q] = slice(start, start + 1)
            start += 1
        return out

    @property
    def parameter_names(self) -> list[str]:
        """``quantity@logtau`` for the atmospheric nodes, then :data:`ANALYTIC_PARAMETERS`."""
        return ([f"{q}@{x:g}" for q in ATMOSPHERIC_QUANTITIES for x in self.nodes(q)] + list(ANALYTIC_PARAMETERS))

    def quantity_of_parameter(self) -> list[str]:
        return [q for q, s in self.slices().items() for _ in range(s.stop - s.start)]

    def regularisation_matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """D (R, P): D p are the node-to-node differences over :data:`REGULARISATION_SCALES` (Tikhonov residuals)."""
        rows = []
        for q, sl in self.slices().items():
            if q not in REGULARISATION_SCALES:
                continue
            for j in range(sl.start, sl.stop - 1):
                row = torch.zeros(self.n_parameters, dtype=dtype)
                row[j], row[j + 1] = -1.0 / REGULARISATION_SCALES[q], 1.0 / REGULARISATION_SCALES[q]
                rows.append(row)
        return torch.stack(rows) if rows else torch.zeros(0, self.n_parameters, dtype=dtype)

    def bounds(self, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) of every parameter (:data:`BOUNDS`)."""
        quantities = self.quantity_of_parameter()
        return (torch.tensor([BOUNDS[q][0] for q in quantities], dtype=dtype),
                torch.tensor([BOUNDS[q][1] for q in quantities], dtype=dtype))

    def pack(self, values: dict) -> np.ndarray:
        """Parameter vector from ``{quantity: node values}`` (atmospheric) and scalars (χ, f, c)."""
        parts = []
        for q in ATMOSPHERIC_QUANTITIES:
            v = np.broadcast_to(np.asarray(values[q], dtype=float), (len(getattr(self, q)),))
            parts.append(v)
        parts.append(np.array([float(values[q]) for q in ANALYTIC_PARAMETERS]))
        return np.concatenate(parts)

    def unpack(self, params) -> dict:
        """``{quantity: node values (array)}`` and the scalars χ, f, c of one parameter vector."""
        params = np.asarray(params, dtype=float)
        if params.shape != (self.n_parameters,):
            raise ValueError(f"expected {self.n_parameters} parameters ({self.parameter_names}), got {params.shape}")
        s = self.slices()
        out = {q: params[s[q]].copy() for q in ATMOSPHERIC_QUANTITIES}
        out.update({q: float(params[s[q]][0]) for q in ANALYTIC_PARAMETERS})
        return out

    def values_at(self, params, quantity: str, log_tau) -> np.ndarray:
        """The interpolated ``quantity`` at ``log_tau`` (FAL-C's log τ500): :func:`interpolate_nodes`."""
        return interpolate_nodes(self.nodes(quantity), self.unpack(params)[quantity], log_tau)

    def stratification(self, params, reference_temperature: np.ndarray, reference_log_tau: np.ndarray
                       ) -> Stratification:
        """The atmosphere of ``params`` on FAL-C's depth grid, built as the driver builds its stratifications.

        T = T_FAL-C (1 + ΔT/T) floored at :data:`~stellarnn.stokes.lightweaver_driver.MIN_TEMPERATURE_K`,
        B ≥ 0 (PCHIP keeps non-negative nodes non-negative), γ in [0°, 180°], χ constant in [0°, 180°).
        """
        values = self.unpack(params)
        along = {q: self.values_at(params, q, reference_log_tau) for q in ATMOSPHERIC_QUANTITIES}
        n = len(reference_log_tau)
        temperature = np.maximum(np.asarray(reference_temperature) * (1.0 + along["temperature_rel"]),
                                 MIN_TEMPERATURE_K)
        return Stratification(temperature=temperature, v_los=along["v_los"], vturb=np.clip(along["vturb"], 0, None),
                              B=np.clip(along["B"], 0, None), gamma=np.clip(along["gamma"], 0, 180),
                              chi=np.full(n, values["chi"] % 180.0),
                              nodes={q: np.atleast_1d(values[q]).tolist() for q in (*ATMOSPHERIC_QUANTITIES, "chi")})

    def transfer(self, params, to: "NodeLayout") -> np.ndarray:
        """The parameters of layout ``to`` that sample this layout's curves at ``to``'s nodes (χ, f, c kept)."""
        values = self.unpack(params)
        moved = {q: self.values_at(params, q, to.nodes(q)) for q in ATMOSPHERIC_QUANTITIES}
        moved.update({q: values[q] for q in ANALYTIC_PARAMETERS})
        return to.pack(moved)


#: SIR-style cycles: a coarse one (2 T nodes, constant v, B, γ, microturbulence: 6 Lightweaver columns),
#: then the default fine layout (11 columns)
DEFAULT_CYCLES = (NodeLayout(temperature_rel=(-2.5, 0.0), v_los=(-1.0,), B=(-1.0,)), NodeLayout())


def interpolate_nodes(node_log_tau, node_values, log_tau) -> np.ndarray:
    """Monotone (PCHIP; Fritsch & Carlson 1980, SIAM J. Numer. Anal. 17, 238) interpolation of node values.

    As in :mod:`~stellarnn.stokes.lightweaver_driver`: ``log_tau`` is clipped to the node range, so the
    curve is constant outside it; one node gives a constant, two a straight line.
    """
    from scipy.interpolate import PchipInterpolator

    node_log_tau = np.asarray(node_log_tau, dtype=float)
    node_values = np.asarray(node_values, dtype=float)
    x = np.clip(np.asarray(log_tau, dtype=float), node_log_tau[0], node_log_tau[-1])
    if node_log_tau.size == 1:
        return np.full(x.shape, node_values[0])
    return PchipInterpolator(node_log_tau, node_values)(x)


_POOL_SYNTHESIZER: LightweaverSynthesizer | None = None


def _init_pool_worker(psf_fwhm_ma: float) -> None:
    global _POOL_SYNTHESIZER
    torch.set_num_threads(1)
    _POOL_SYNTHESIZER = LightweaverSynthesizer(psf_fwhm_ma=psf_fwhm_ma)


def _pool_synthesize(strat: Stratification) -> tuple[np.ndarray, np.ndarray]:
    return _POOL_SYNTHESIZER.synthesize(strat)


class LightweaverForward:
    """Stokes (4, 112) [I_c] and targets (6, n_nodes) of many stratifications, with call counts and timing.

    Parameters
    ----------
    synthesizer : LightweaverSynthesizer, optional
        Used in process (``workers == 1``) and for the reference atmosphere (default: a new one).
    workers : int
        > 1: the solutions are computed by a pool of that many processes (spawned on first use, one
        single-threaded Lightweaver context each; close with :meth:`close` or use as a context manager).
    """

    def __init__(self, synthesizer: LightweaverSynthesizer | None = None, workers: int = 1,
                 psf_fwhm_ma: float = HINODE_SP_PSF_FWHM_MA):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.synthesizer = synthesizer or LightweaverSynthesizer(psf_fwhm_ma=psf_fwhm_ma)
        self.workers = int(workers)
        self.reference_temperature = np.asarray(self.synthesizer.reference.temperature, dtype=float)
        self.reference_log_tau = np.asarray(self.synthesizer.reference_log_tau, dtype=float)
        self.instrument = self.synthesizer.instrument
        self.calls = 0
        self.seconds = 0.0
        self._pool = None

    @property
    def quiet_sun_intensity(self) -> np.ndarray:
        """Stray-light profile: Stokes I of field-free FAL-C through the PSF [I_c]."""
        return np.asarray(self.synthesizer.quiet_sun_intensity, dtype=float)

    def __call__(self, strats: list[Stratification]) -> tuple[np.ndarray, np.ndarray]:
        """Stokes (m, 4, 112) and targets (m, 6, n_nodes) of ``m`` stratifications."""
        _ = self.synthesizer.continuum  # the field-free reference, outside the timed calls
        start = time.perf_counter()
        if self.workers > 1 and len(strats) > 1:
            if self._pool is None:
                import multiprocessing

                self._pool = multiprocessing.get_context("spawn").Pool(
                    self.workers, initializer=_init_pool_worker, initargs=(self.synthesizer.psf_fwhm_ma,))
            results = self._pool.map(_pool_synthesize, strats, chunksize=1)
        else:
            results = [self.synthesizer.synthesize(s) for s in strats]
        self.seconds += time.perf_counter() - start
        self.calls += len(strats)
        return (np.stack([r[0] for r in results]).astype(np.float64),
                np.stack([r[1] for r in results]).astype(np.float64))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def observed_model(atmosphere_stokes: torch.Tensor, stray_light: torch.Tensor, continuum_factor: torch.Tensor,
                   quiet_sun_intensity: torch.Tensor) -> torch.Tensor:
    """I = c[(1 − f) I_atm + f I_qs], X = c (1 − f) X_atm (rows (B, 4, n_λ), f and c (B,))."""
    f = stray_light[:, None, None]
    out = continuum_factor[:, None, None] * (1.0 - f) * atmosphere_stokes
    out[:, 0] = out[:, 0] + continuum_factor[:, None] * stray_light[:, None] * quiet_sun_intensity[None, :]
    return out


def analytic_columns(atmosphere_stokes: torch.Tensor, stray_light: torch.Tensor, continuum_factor: torch.Tensor,
                     quiet_sun_intensity: torch.Tensor) -> torch.Tensor:
    """∂M/∂(χ [deg], f, c) of :func:`observed_model` (B, 4, n_λ, 3); S synthesised at the row's χ.

    χ → χ + α rotates (Q, U) by 2α (module docstring), so ∂Q/∂χ = −2U, ∂U/∂χ = 2Q per radian.
    """
    c = continuum_factor[:, None, None]
    model = observed_model(atmosphere_stokes, stray_light, continuum_factor, quiet_sun_intensity)
    d_chi = torch.zeros_like(model)
    d_chi[:, 1] = -2.0 * model[:, 2] * (math.pi / 180.0)
    d_chi[:, 2] = 2.0 * model[:, 1] * (math.pi / 180.0)
    d_f = -c * atmosphere_stokes
    d_f[:, 0] = d_f[:, 0] + c[:, 0] * quiet_sun_intensity[None, :]
    d_c = model / c
    return torch.stack([d_chi, d_f, d_c], dim=-1)


def continuum_temperature_change(continuum_intensity, reference_temperature_k: float) -> np.ndarray:
    """ΔT/T at τ_c = 1 from I_c / I_c(FAL-C) by Eddington–Barbier and Planck's law at 630.2 nm.

    B_λ(T) / B_λ(T0) = r gives T = X / ln(1 + (e^{X/T0} − 1) / r) with X = hc/(λk).
    """
    x = PLANCK_CGS * SPEED_OF_LIGHT_CGS / (CONTINUUM_WAVELENGTH_NM * 1e-7 * BOLTZMANN_CGS)
    ratio = np.clip(np.asarray(continuum_intensity, dtype=float), 0.02, 50.0)
    temperature = x / np.log1p(np.expm1(x / reference_temperature_k) / ratio)
    return temperature / reference_temperature_k - 1.0


def initial_parameters(stokes: np.ndarray, layout: NodeLayout, forward, sigma: float = 1e-3) -> np.ndarray:
    """One start per profile (n, P): ME inversion for the field and v_LOS, the continuum for T (module docstring)."""
    from .lm_inversion import invert_lm

    stokes = np.asarray(stokes, dtype=float)
    me = invert_lm(stokes, model=forward.instrument, sigma=sigma, n_starts=4)
    continuum = np.percentile(stokes[:, 0], 98, axis=1)
    order = np.argsort(forward.reference_log_tau)
    t0 = float(np.interp(0.0, forward.reference_log_tau[order], forward.reference_temperature[order]))
    t_rel = continuum_temperature_change(continuum, t0)
    out = []
    for k in range(len(stokes)):
        values = {"temperature_rel": np.clip(t_rel[k], *BOUNDS["temperature_rel"]),
                  "v_los": float(np.clip(me["v_los"][k], -8.0, 8.0)), "B": float(np.clip(me["B"][k], 0.0, 4000.0)),
                  "gamma": float(np.clip(me["gamma"][k], 0.0, 180.0)), "vturb": 1.0,
                  "chi": float(me["chi"][k] % 180.0), "stray_light": 0.02, "continuum_factor": 1.0}
        out.append(layout.pack(values))
    return np.stack(out)


def _project(params: torch.Tensor, low: torch.Tensor, high: torch.Tensor, chi_index: int) -> torch.Tensor:
    params = params.clone()
    params[:, chi_index] = torch.remainder(params[:, chi_index], 180.0)
    return clip_to_bounds(params, low, high)


@dataclass
class _CycleState:
    params: torch.Tensor
    atmosphere: torch.Tensor       # (n, 4, n_λ) Stokes of the atmosphere at params (before f, c)
    targets: np.ndarray            # (n, 6, n_nodes)
    chi2: torch.Tensor
    iterations: torch.Tensor
    stop_reason: list = field(default_factory=list)


def _levenberg_marquardt_cycle(layout: NodeLayout, forward, observed: torch.Tensor, start: np.ndarray,
                               weights: torch.Tensor, max_iterations: int, tolerance: float) -> _CycleState:
    """Batched projected LM over the rows of ``observed`` (n, 4, n_λ) for one node layout."""
    n = observed.shape[0]
    dtype = torch.float64
    low, high = layout.bounds(dtype)
    s = layout.slices()
    chi_i, f_i, c_i = s["chi"].start, s["stray_light"].start, s["continuum_factor"].start
    n_atm = layout.n_atmospheric
    quantities = layout.quantity_of_parameter()
    qs = torch.as_tensor(forward.quiet_sun_intensity, dtype=dtype)
    project = lambda p: _project(p, low, high, chi_i)  # noqa: E731

    def synthesise(rows_params: torch.Tensor):
        strats = [layout.stratification(p.numpy(), forward.reference_temperature, forward.reference_log_tau)
                  for p in rows_params]
        stokes, targets = forward(strats)
        return torch.as_tensor(stokes, dtype=dtype), targets

    regularisation = layout.regularisation_matrix(dtype)

    def residual(atmosphere, p, rows):
        model = observed_model(atmosphere, p[:, f_i], p[:, c_i], qs)
        return torch.cat([((model - observed[rows]) * weights).reshape(len(rows), -1), p @ regularisation.T], 1)

    params = project(torch.as_tensor(start, dtype=dtype))
    atmosphere, targets = synthesise(params)
    all_rows = torch.arange(n)
    chi2 = (residual(atmosphere, params, all_rows) ** 2).sum(1)
    damping = NODE_DAMPING.start(n, dtype)
    n_pixels = observed[0].numel()
    jacobian = torch.zeros(n, n_pixels + regularisation.shape[0], layout.n_parameters, dtype=dtype)
    jacobian[:, n_pixels:] = regularisation
    stale = torch.ones(n, dtype=torch.bool)
    active = torch.ones(n, dtype=torch.bool)
    iterations = torch.zeros(n, dtype=torch.long)
    reason = ["max_iterations"] * n
    for _ in range(max_iterations):
        idx = torch.nonzero(active).squeeze(1)
        if idx.numel() == 0:
            break
        need = [int(r) for r in idx if stale[r]]
        if need:
            perturbed, steps = [], []
            for r in need:
                p = params[r]
                for k in range(n_atm):
                    q = quantities[k]
                    h = FD_STEPS[q] if q != "B" else max(FD_STEPS["B"], FD_RELATIVE_B * float(p[k]))
                    if float(p[k]) + h > float(high[k]):
                        h = -h
                    trial = p.clone()
                    trial[k] += h
                    perturbed.append(trial)
                    steps.append(h)
            stokes_pert, _ = synthesise(torch.stack(perturbed))
            stokes_pert = stokes_pert.reshape(len(need), n_atm, *observed.shape[1:])
            steps_t = torch.tensor(steps, dtype=dtype).reshape(len(need), n_atm)
            rows = torch.tensor(need)
            p = params[rows]
            scale = (p[:, c_i] * (1.0 - p[:, f_i]))[:, None, None, None]
            d_atm = scale * (stokes_pert - atmosphere[rows][:, None]) / steps_t[:, :, None, None]
            d_atm = d_atm * weights[None]
            jac = torch.empty(len(need), n_pixels + regularisation.shape[0], layout.n_parameters, dtype=dtype)
            jac[:, n_pixels:] = regularisation
            jac[:, :n_pixels, :n_atm] = d_atm.reshape(len(need), n_atm, -1).transpose(1, 2)
            ana = analytic_columns(atmosphere[rows], p[:, f_i], p[:, c_i], qs) * weights[None, :, :, None]
            jac[:, :n_pixels, n_atm:] = ana.reshape(len(need), n_pixels, len(ANALYTIC_PARAMETERS))
            jacobian[rows] = jac
            stale[rows] = False
        trial_cache = {}

        def chi2_of(trial: torch.Tensor) -> torch.Tensor:
            atm, tg = synthesise(trial)
            trial_cache["atmosphere"], trial_cache["targets"] = atm, tg
            return (residual(atm, trial, idx) ** 2).sum(1)

        step = levenberg_marquardt_step(params[idx], chi2[idx], damping[idx], jacobian[idx],
                                        residual(atmosphere[idx], params[idx], idx), chi2_of, project, NODE_DAMPING)
        relative_gain = step.gain / chi2[idx].clamp_min(1e-30)
        accepted = step.accepted
        acc_rows = idx[accepted]
        params[idx], chi2[idx], damping[idx] = step.params, step.chi2, step.damping
        atmosphere[acc_rows] = trial_cache["atmosphere"][accepted]
        targets[acc_rows.numpy()] = trial_cache["targets"][accepted.numpy()]
        stale[acc_rows] = True
        iterations[idx] += 1
        converged = accepted & (relative_gain < tolerance)
        stalled = ~accepted & (damping[idx] >= NODE_DAMPING.maximum)
        for r, c_, s_ in zip(idx.tolist(), converged.tolist(), stalled.tolist()):
            if c_:
                reason[r] = "converged"
            elif s_:
                reason[r] = "stalled"
        active[idx[converged | stalled]] = False
    return _CycleState(params=params, atmosphere=atmosphere, targets=targets, chi2=chi2, iterations=iterations,
                       stop_reason=reason)


def invert_nodes(stokes, forward: LightweaverForward | None = None, cycles=DEFAULT_CYCLES, sigma: float = 1e-3,
                 stokes_weights=(1.0, 1.0, 1.0, 1.0), max_iterations=(10, 15), tolerance: float = 1e-3,
                 start=None) -> dict:
    """Node-based LTE inversion of Stokes profiles (n, 4, 112) [I_c] at Hinode SP sampling (module docstring).

    Parameters
    ----------
    stokes : array (n, 4, 112)
    forward : LightweaverForward (default: a new one, in process) — or any object with the same
        interface (``reference_temperature``, ``reference_log_tau``, ``quiet_sun_intensity``,
        ``instrument``, ``calls``, ``seconds`` and ``__call__(stratifications)``).
    cycles : sequence of NodeLayout, fitted in turn, each started from the previous one's curves
    sigma : noise per pixel [I_c] defining χ²
    stokes_weights : weights of I, Q, U, V in χ² (SIR-style; 1 each by default)
    max_iterations : int or one per cycle; LM steps (accepted or rejected) per cycle
    tolerance : a row of a cycle stops when an accepted step lowers χ² by less than this, relatively
    start : optional (n, P) parameters of the first cycle's layout (default: :func:`initial_parameters`)

    Returns
    -------
    dict: ``targets`` (n, 6, n_nodes) and each of
    :data:`~stellarnn.stokes.lightweaver_driver.TARGET_NAMES` (n, n_nodes); ``params`` (n, P) of the last
    layout with ``parameter_names``; ``chi2``, ``chi2_reduced`` (χ² of the data / (4·112 − P)), ``penalty``
    (the regularisation term), ``iterations`` (all cycles), ``converged`` (last cycle), ``stop_reason``,
    ``fitted_stokes`` (n, 4, 112),
    ``lightweaver_calls``, ``lightweaver_seconds`` and ``seconds`` (wall time of the whole call).
    """
    wall = time.perf_counter()
    cycles = tuple(cycles)
    if not cycles:
        raise ValueError("at least one node layout (cycle) is needed")
    iters = (max_iterations,) * len(cycles) if isinstance(max_iterations, int) else tuple(max_iterations)
    if len(iters) != len(cycles) or min(iters) < 1:
        raise ValueError(f"max_iterations needs one positive value per cycle ({len(cycles)}), got {max_iterations}")
    if sigma <= 0:
        raise ValueError("sigma must be > 0")
    observed = check_stokes_profiles(stokes, 112, torch.float64)
    weights = (torch.as_tensor(stokes_weights, dtype=torch.float64) / sigma)[:, None]
    own_forward = forward is None
    forward = forward or LightweaverForward()
    calls0, seconds0 = forward.calls, forward.seconds
    try:
        params = (np.asarray(start, dtype=float) if start is not None
                  else initial_parameters(observed.numpy(), cycles[0], forward, sigma))
        if params.shape != (observed.shape[0], cycles[0].n_parameters):
            raise ValueError(f"start must have shape (n, {cycles[0].n_parameters}), got {params.shape}")
        total_iterations = torch.zeros(observed.shape[0], dtype=torch.long)
        state = None
        for k, (layout, n_iter) in enumerate(zip(cycles, iters)):
            if k > 0:
                params = np.stack([cycles[k - 1].transfer(p, layout) for p in state.params.numpy()])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = _levenberg_marquardt_cycle(layout, forward, observed, params, weights, n_iter, tolerance)
            total_iterations += state.iterations
    finally:
        if own_forward:
            forward.close()
    layout = cycles[-1]
    params = state.params
    qs = torch.as_tensor(forward.quiet_sun_intensity, dtype=torch.float64)
    s = layout.slices()
    fitted = observed_model(state.atmosphere, params[:, s["stray_light"].start], params[:, s["continuum_factor"].start],
                            qs)
    chi2 = (((fitted - observed) * weights) ** 2).sum((1, 2))
    dof = observed[0].numel() - layout.n_parameters
    out = {"targets": state.targets, **{name: state.targets[:, k] for k, name in enumerate(TARGET_NAMES)},
           "params": params.numpy(), "parameter_names": layout.parameter_names,
           "chi2": chi2.numpy(), "chi2_reduced": (chi2 / dof).numpy(), "penalty": (state.chi2 - chi2).numpy(),
           "iterations": total_iterations.numpy(),
           "converged": np.array([r != "max_iterations" for r in state.stop_reason]),
           "stop_reason": np.array(state.stop_reason), "fitted_stokes": fitted.numpy(),
           "lightweaver_calls": forward.calls - calls0, "lightweaver_seconds": forward.seconds - seconds0,
           "seconds": time.perf_counter() - wall}
    return out
