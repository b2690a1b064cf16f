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
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .milne_eddington import MilneEddington

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


class LightweaverSynthesizer:
    """Synthesise Hinode SP Stokes profiles of perturbed FAL-C atmospheres with Lightweaver.

    Parameters
    ----------
    mu : float, heliocentric angle cosine
    background_tolerance : float
        Stop the background (continuum-scattering) J iteration when max ΔJ/J falls below this.
    max_background_iterations : int
        Cap on those iterations. Measured on FAL-C (B = 1 kG): the Stokes profiles in the SP window
        after 1 iteration differ from those after 40 by < 5e-7 I_c (after 0: 6e-4; the slowly converging
        ΔJ lies elsewhere in the spectrum), so 2 iterations suffice.
    """

    def __init__(self, mu: float = 1.0, background_tolerance: float = 1e-2, max_background_iterations: int = 2):
        from scipy.interpolate import PchipInterpolator  # noqa: F401  (checked early)

        self.lw, self.rh_atoms, falc = _lightweaver()
        self.mu = float(mu)
        self.tolerance = float(background_tolerance)
        self.max_iterations = int(max_background_iterations)
        self.instrument = MilneEddington()
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

    @property
    def continuum(self) -> float:
        """Disc-centre continuum intensity of field-free FAL-C (SI units of Lightweaver), computed once."""
        if self._continuum is None:
            zeros = np.zeros(self.reference.Nspace)
            quiet = self._solve(self.reference.temperature, zeros, self.reference.vturb / 1e3, zeros, zeros, zeros)[0]
            self._continuum = float(np.max(quiet[0]))
        return self._continuum

    def random_stratification(self, rng: np.random.Generator) -> Stratification:
        """Draw smooth random perturbations of FAL-C (see module docstring)."""
        from scipy.interpolate import PchipInterpolator

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


def _write_chunk(path: Path, synthesizer: "LightweaverSynthesizer", seed: int, k: int, chunk_size: int,
                 on_profile=None) -> None:
    """Synthesise chunk ``k`` (rng ``default_rng(seed * 100003 + k)``) and write it atomically."""
    rng = np.random.default_rng(seed * 100003 + k)
    stokes, targets, nodes = [], [], []
    for _ in range(chunk_size):
        strat = synthesizer.random_stratification(rng)
        s, t = synthesizer.synthesize(strat)
        stokes.append(s)
        targets.append(t)
        nodes.append(np.concatenate([np.asarray(v) for v in strat.nodes.values()]))
        if on_profile is not None:
            on_profile()
    # a per-process temporary name: two builders on one directory never write the same file
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part.npz")
    np.savez(tmp, stokes=np.stack(stokes).astype(np.float32), targets=np.stack(targets).astype(np.float32),
             nodes=np.stack(nodes), log_tau_nodes=LOG_TAU_NODES, control_nodes=CONTROL_NODES,
             node_names=np.array(list(PERTURBATION_PRIOR)))
    tmp.replace(path)


_WORKER_SYNTHESIZER: "LightweaverSynthesizer | None" = None


def _worker_chunk(job: tuple[str, int, int, int]) -> int:
    """Pool worker: one Lightweaver context per process, reused across chunks."""
    global _WORKER_SYNTHESIZER
    directory, seed, k, chunk_size = job
    if _WORKER_SYNTHESIZER is None:
        _WORKER_SYNTHESIZER = LightweaverSynthesizer()
    _write_chunk(_chunk_path(Path(directory), seed, k, chunk_size), _WORKER_SYNTHESIZER, seed, k, chunk_size)
    return k


def build_stratified_set(directory: str | Path, n_profiles: int, seed: int = 0, chunk_size: int = 50,
                         progress: bool = True, synthesizer: LightweaverSynthesizer | None = None,
                         workers: int = 1) -> dict:
    """Build ``n_profiles`` Lightweaver profiles in resumable chunk files (``.npz``) under ``directory``.

    Chunk k uses ``numpy.random.default_rng(seed * 100003 + k)``; finished chunks are kept and
    skipped, so the builder can be killed and restarted at any time (at most one chunk per worker is
    lost). ``workers > 1`` synthesises missing chunks in that many processes (one single-threaded
    Lightweaver context each); the result does not depend on ``workers``.
    Returns the concatenated arrays of the first ``n_profiles`` profiles:
    ``stokes`` (n, 4, 112), ``targets`` (n, 6, n_nodes), ``log_tau_nodes``.
    """
    import multiprocessing

    from tqdm.auto import tqdm

    if n_profiles <= 0 or chunk_size <= 0 or workers <= 0:
        raise ValueError("n_profiles, chunk_size and workers must be positive")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_chunks = math.ceil(n_profiles / chunk_size)
    missing = [k for k in range(n_chunks) if not _chunk_path(directory, seed, k, chunk_size).is_file()]
    bar = tqdm(total=n_chunks * chunk_size, initial=(n_chunks - len(missing)) * chunk_size,
               desc="Lightweaver profiles", unit="profile", disable=not progress)
    if workers > 1 and len(missing) > 1:
        jobs = [(str(directory), seed, k, chunk_size) for k in missing]
        with multiprocessing.get_context("spawn").Pool(min(workers, len(missing))) as pool:
            for _ in pool.imap_unordered(_worker_chunk, jobs):
                bar.update(chunk_size)
    else:
        for k in missing:
            synthesizer = synthesizer or LightweaverSynthesizer()
            _write_chunk(_chunk_path(directory, seed, k, chunk_size), synthesizer, seed, k, chunk_size,
                         on_profile=lambda: bar.update(1))
    bar.close()
    stokes_all, targets_all = [], []
    for k in range(n_chunks):
        with np.load(_chunk_path(directory, seed, k, chunk_size)) as f:
            stokes_all.append(f["stokes"])
            targets_all.append(f["targets"])
    return {"stokes": np.concatenate(stokes_all)[:n_profiles], "targets": np.concatenate(targets_all)[:n_profiles],
            "log_tau_nodes": LOG_TAU_NODES}


def load_stratified_set(directory: str | Path) -> dict:
    """Every finished chunk file (``lw_seed*_chunk*_n*.npz``) under ``directory``, concatenated in name order.

    Returns ``stokes`` (n, 4, 112) float32, ``targets`` (n, 6, n_nodes) float32, ``log_tau_nodes`` and
    ``files`` (the chunk files read). Raises ``FileNotFoundError`` when there is none.
    """
    files = sorted(Path(directory).glob("lw_seed*_chunk*_n*.npz"))
    files = [f for f in files if not f.name.endswith(".part.npz")]
    if not files:
        raise FileNotFoundError(f"no Lightweaver chunk files (lw_seed*_chunk*_n*.npz) in {directory}; build them with "
                                "`stellarnn stokes build-set`")
    stokes, targets = [], []
    for f in files:
        with np.load(f) as d:
            if not np.array_equal(d["log_tau_nodes"], LOG_TAU_NODES):
                raise ValueError(f"{f}: log tau nodes differ from LOG_TAU_NODES")
            stokes.append(d["stokes"].astype(np.float32))
            targets.append(d["targets"].astype(np.float32))
    return {"stokes": np.concatenate(stokes), "targets": np.concatenate(targets), "log_tau_nodes": LOG_TAU_NODES,
            "files": [str(f) for f in files]}
