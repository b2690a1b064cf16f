"""Milne-Eddington (ME) Stokes synthesis in torch: batched, differentiable.

The ME atmosphere has a source function linear in continuum optical depth,
S = S0 + S1 τ_c, and a depth-independent propagation matrix. The emergent Stokes vector is the
Unno-Rachkovsky solution (Landi Degl'Innocenti & Landolfi 2004, "Polarization in Spectral
Lines", §9.8, eqs. 9.110; del Toro Iniesta 2003, "Introduction to Spectropolarimetry", §8.2)::

    I = S0 + μS1 (1+η_I)[(1+η_I)² + ρ_Q² + ρ_U² + ρ_V²] / Δ
    Q = −μS1 [(1+η_I)² η_Q + (1+η_I)(η_V ρ_U − η_U ρ_V) + ρ_Q Π] / Δ
    U = −μS1 [(1+η_I)² η_U + (1+η_I)(η_Q ρ_V − η_V ρ_Q) + ρ_U Π] / Δ
    V = −μS1 [(1+η_I)² η_V + ρ_V Π] / Δ
    Δ = (1+η_I)²[(1+η_I)² − η_Q² − η_U² − η_V² + ρ_Q² + ρ_U² + ρ_V²] − Π²,
    Π = η_Q ρ_Q + η_U ρ_U + η_V ρ_V,

which equals I = S0 e0 + μ S1 K⁻¹ e0 with e0 = (1, 0, 0, 0) and the propagation matrix
(LL04 eq. 9.11, continuum included)::

    K = [[1+η_I, η_Q,  η_U,  η_V ],
         [η_Q,  1+η_I, ρ_V, −ρ_U ],
         [η_U, −ρ_V,  1+η_I, ρ_Q ],
         [η_V,  ρ_U, −ρ_Q,  1+η_I]].

Absorption and dispersion elements (LL04 eq. 9.32 / REFERENCE.md), with φ_p, φ_b, φ_r the
strength-weighted sums of Voigt profiles of the π, σ_b and σ_r components, ψ_* the same with the
Faraday-Voigt profile, γ the inclination and χ the azimuth of the field::

    η_I = η0/2 [φ_p sin²γ + ½(φ_b + φ_r)(1 + cos²γ)]
    η_Q = η0/2 [φ_p − ½(φ_b + φ_r)] sin²γ cos 2χ,   η_U = (…) sin²γ sin 2χ
    η_V = η0/2 (φ_r − φ_b) cos γ                    (ρ_*: φ → ψ)

Both Fe I lines share every parameter; the 6302.5 Å line opacity is η0 times the fixed ratio
(gf λ)_2/(gf λ)_1 · exp(−Δχ_exc / k T_ref) with T_ref = 5000 K (Boltzmann factor of the lower
levels; the log gf values are those recorded in :mod:`stellarnn.stokes.zeeman`).

Parameters (last axis of the parameter tensor, in this order, see :data:`PARAMETER_NAMES`):
B [G], γ [deg], χ [deg], v_LOS [km/s, > 0 redshift], Δλ_D [mÅ], η0, a (damping, Doppler units),
S0, S1 [continuum intensity units]. An optional magnetic filling factor α mixes in a
non-magnetic (stray-light) profile: I_obs = α I_mag + (1 − α) I_stray.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..constants import BOLTZMANN_EV, FWHM_PER_SIGMA, SPEED_OF_LIGHT_KM_S
from ..numerics.faddeeva import voigt_faraday
from .zeeman import HINODE_LINES, LARMOR_WAVELENGTH_CONSTANT, SpectralLine

REFERENCE_TEMPERATURE_K = 5000.0

PARAMETER_NAMES = ("B", "gamma", "chi", "v_los", "doppler_width", "eta0", "damping", "S0", "S1")
PARAMETER_UNITS = ("G", "deg", "deg", "km/s", "mA", "", "", "Ic", "Ic")
N_PARAMETERS = len(PARAMETER_NAMES)

#: Hinode SOT/SP: 112 pixels of 21.549 mÅ from 6300.89 Å (REFERENCE.md)
HINODE_SP_START_A = 6300.89
HINODE_SP_STEP_MA = 21.549
HINODE_SP_PIXELS = 112
#: Hinode SP spectral resolution ~30 mÅ FWHM (REFERENCE.md), modelled as a Gaussian
HINODE_SP_PSF_FWHM_MA = 30.0


def check_stokes_profiles(stokes, n_wavelengths: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Stokes profiles as a tensor (n, 4, ``n_wavelengths``) of ``dtype`` (default: as given), checked.

    Raises
    ------
    ValueError
        Another shape, no profile, or a NaN or infinite value (after the conversion to ``dtype``).
    """
    stokes = torch.as_tensor(stokes, dtype=dtype)
    if stokes.ndim != 3 or tuple(stokes.shape[1:]) != (4, n_wavelengths):
        raise ValueError(f"Stokes profiles must have shape (n, 4, {n_wavelengths}); got {tuple(stokes.shape)}")
    if stokes.shape[0] == 0:
        raise ValueError("no Stokes profiles given")
    if not bool(torch.isfinite(stokes).all()):
        raise ValueError("Stokes profiles contain NaN or infinity")
    return stokes


def hinode_sp_wavelengths() -> np.ndarray:
    """Pixel-centre air wavelengths of Hinode SP (Å), 6300.89 … 6303.28."""
    return HINODE_SP_START_A + HINODE_SP_STEP_MA * 1e-3 * np.arange(HINODE_SP_PIXELS)


def check_parameters(params: torch.Tensor) -> torch.Tensor:
    """Validate a (..., 9) ME parameter tensor; raise ValueError on bad shape, NaN or bad ranges."""
    if not isinstance(params, torch.Tensor):
        params = torch.as_tensor(params, dtype=torch.float64)
    if params.ndim == 0 or params.shape[-1] != N_PARAMETERS:
        raise ValueError(f"ME parameters must have shape (..., {N_PARAMETERS}) ordered {PARAMETER_NAMES}; "
                         f"got {tuple(params.shape)}")
    if params.numel() == 0:
        raise ValueError("ME parameters are empty")
    if not bool(torch.isfinite(params).all()):
        raise ValueError("ME parameters contain NaN or infinity")
    if bool((params[..., 4] <= 0).any()):
        raise ValueError("Doppler width must be > 0 mÅ")
    if bool((params[..., 6] < 0).any()):
        raise ValueError("damping must be >= 0")
    return params


@dataclass(frozen=True)
class PropagationElements:
    """η_I, η_Q, η_U, η_V, ρ_Q, ρ_U, ρ_V, each (..., n_wavelengths)."""

    eta_i: torch.Tensor
    eta_q: torch.Tensor
    eta_u: torch.Tensor
    eta_v: torch.Tensor
    rho_q: torch.Tensor
    rho_u: torch.Tensor
    rho_v: torch.Tensor

    def matrix(self) -> torch.Tensor:
        """The 4×4 propagation matrix K (continuum included), shape (..., n_wavelengths, 4, 4)."""
        one = 1.0 + self.eta_i
        rows = [
            [one, self.eta_q, self.eta_u, self.eta_v],
            [self.eta_q, one, self.rho_v, -self.rho_u],
            [self.eta_u, -self.rho_v, one, self.rho_q],
            [self.eta_v, self.rho_u, -self.rho_q, one],
        ]
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def unno_rachkovsky(elements: PropagationElements, source_constant: torch.Tensor,
                    source_gradient: torch.Tensor, mu: float = 1.0) -> torch.Tensor:
    """Analytic ME solution (module docstring); S0, S1 broadcast as (..., 1). Returns (..., 4, n_λ)."""
    e = elements
    one = 1.0 + e.eta_i
    one2 = one * one
    pi_ = e.eta_q * e.rho_q + e.eta_u * e.rho_u + e.eta_v * e.rho_v
    rho2 = e.rho_q ** 2 + e.rho_u ** 2 + e.rho_v ** 2
    delta = one2 * (one2 - e.eta_q ** 2 - e.eta_u ** 2 - e.eta_v ** 2 + rho2) - pi_ * pi_
    scale = mu * source_gradient / delta
    stokes_i = source_constant + scale * one * (one2 + rho2)
    stokes_q = -scale * (one2 * e.eta_q + one * (e.eta_v * e.rho_u - e.eta_u * e.rho_v) + e.rho_q * pi_)
    stokes_u = -scale * (one2 * e.eta_u + one * (e.eta_q * e.rho_v - e.eta_v * e.rho_q) + e.rho_u * pi_)
    stokes_v = -scale * (one2 * e.eta_v + e.rho_v * pi_)
    return torch.stack([stokes_i, stokes_q, stokes_u, stokes_v], dim=-2)


class MilneEddington:
    """Batched ME synthesis of a set of lines on a wavelength grid, with optional instrument.

    Parameters
    ----------
    wavelengths : array (n,), Å (air)
        Output pixel centres (default: Hinode SP, 112 pixels).
    lines : sequence of SpectralLine
        Lines sharing the ME parameters; opacity of line k relative to the first as in the module doc.
    psf_fwhm_ma : float or None
        FWHM of the Gaussian spectral PSF in mÅ (default 30 mÅ, Hinode SP); None or 0: no PSF, the
        model is evaluated at the pixel centres.
    oversample : int (odd)
        Fine-grid points per pixel for the PSF convolution and the pixel top-hat.
    mu : float
        Heliocentric angle cosine μ.
    faddeeva_terms : int
        Terms of the Faddeeva expansion (24: ~1e-9 relative; 16: ~4e-7, enough in float32).
    """

    def __init__(self, wavelengths=None, lines: tuple[SpectralLine, ...] = HINODE_LINES,
                 psf_fwhm_ma: float | None = HINODE_SP_PSF_FWHM_MA, oversample: int = 3, mu: float = 1.0,
                 faddeeva_terms: int = 24):
        wl = np.asarray(hinode_sp_wavelengths() if wavelengths is None else wavelengths, dtype=np.float64)
        if wl.ndim != 1 or wl.size < 2 or not np.all(np.isfinite(wl)) or np.any(np.diff(wl) <= 0):
            raise ValueError("wavelengths must be a finite, increasing 1-D array of at least 2 values (Å)")
        if not lines:
            raise ValueError("at least one spectral line is needed")
        if not 0 < mu <= 1:
            raise ValueError("mu must be in (0, 1]")
        self.wavelengths = wl
        self.lines = tuple(lines)
        self.mu = float(mu)
        self.faddeeva_terms = int(faddeeva_terms)
        self.psf_fwhm_ma = float(psf_fwhm_ma or 0.0)
        if self.psf_fwhm_ma > 0:
            if oversample < 1 or oversample % 2 == 0:
                raise ValueError("oversample must be a positive odd integer")
            step = float(np.median(np.diff(wl)))
            if np.max(np.abs(np.diff(wl) - step)) > 1e-6 * step + 1e-9:
                raise ValueError("a spectral PSF needs an evenly spaced wavelength grid")
            fine_step = step / oversample
            sigma = self.psf_fwhm_ma * 1e-3 / FWHM_PER_SIGMA
            half = int(math.ceil(4.0 * sigma / fine_step)) + oversample // 2
            offsets = np.arange(-half, half + 1) * fine_step
            gauss = np.exp(-0.5 * (offsets / sigma) ** 2)
            kernel = np.convolve(gauss, np.ones(oversample))  # PSF ⊗ pixel top-hat
            kernel /= kernel.sum()
            pad = (kernel.size - 1) // 2
            n_fine = (wl.size - 1) * oversample + 1 + 2 * pad
            self.model_wavelengths = wl[0] - pad * fine_step + fine_step * np.arange(n_fine)
            self._kernel = kernel
            self._stride = oversample
        else:
            self.model_wavelengths = wl
            self._kernel = None
            self._stride = 1
        # per-component tables (float64): wavelength offsets from each component's line centre
        offs, shifts, weights, groups, centres = [], [], [], [], []
        ref = self.lines[0]
        for line in self.lines:
            ratio = (10.0 ** (line.log_gf - ref.log_gf) * line.wavelength / ref.wavelength
                     * math.exp(-(line.excitation_ev - ref.excitation_ev) / (BOLTZMANN_EV * REFERENCE_TEMPERATURE_K)))
            pat = line.pattern
            for shift, strength, dm in zip(pat.shift, pat.strength, pat.delta_m):
                offs.append(self.model_wavelengths - line.wavelength)
                shifts.append(shift * LARMOR_WAVELENGTH_CONSTANT * line.wavelength ** 2)  # Å per G
                weights.append(strength * ratio)
                groups.append({0: 0, 1: 1, -1: 2}[int(dm)])
                centres.append(line.wavelength)
        self._offsets = np.stack(offs)               # (n_c, n_fine) Å
        self._shift_per_gauss = np.array(shifts)     # (n_c,) Å/G, multiply by B; wavelength shift is minus this
        self._centres = np.array(centres)            # (n_c,) Å
        group_matrix = np.zeros((len(groups), 3))
        group_matrix[np.arange(len(groups)), groups] = weights
        self._group_matrix = group_matrix            # (n_c, 3): columns π, σ_b, σ_r
        self._cache: dict = {}

    @property
    def n_wavelengths(self) -> int:
        return self.wavelengths.size

    def _tables(self, dtype, device):
        key = (dtype, device)
        if key not in self._cache:
            t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
            kernel = None if self._kernel is None else t(self._kernel).view(1, 1, -1)
            self._cache[key] = (t(self._offsets), t(self._shift_per_gauss), t(self._centres),
                                t(self._group_matrix), kernel)
        return self._cache[key]

    def propagation_elements(self, params: torch.Tensor) -> PropagationElements:
        """η and ρ on the model (fine) wavelength grid for parameters (..., 9)."""
        params = check_parameters(params)
        offsets, shift_pg, centres, gmat, _ = self._tables(params.dtype, params.device)
        b, gamma, chi, vlos, dwidth, eta0, damp = (params[..., k:k + 1] for k in range(7))
        # reduced wavelength of each component: (λ − λ0(1 + v/c) + shift·B) / Δλ_D  -> (..., n_c, n_λ)
        centre_shift = centres * vlos / SPEED_OF_LIGHT_KM_S - shift_pg * b          # (..., n_c)
        v = (offsets - centre_shift.unsqueeze(-1)) / (dwidth.unsqueeze(-1) * 1e-3)
        phi, psi = voigt_faraday(damp.unsqueeze(-1), v, self.faddeeva_terms)
        phi_g = torch.einsum("...cl,cg->...gl", phi, gmat)   # (..., 3, n_λ): π, σ_b, σ_r
        psi_g = torch.einsum("...cl,cg->...gl", psi, gmat)
        g = torch.deg2rad(gamma)
        c2 = 2.0 * torch.deg2rad(chi)
        sin2g, cosg = torch.sin(g) ** 2, torch.cos(g)
        half = 0.5 * eta0

        def elements(prof):
            p, sb, sr = prof[..., 0, :], prof[..., 1, :], prof[..., 2, :]
            sig = 0.5 * (sb + sr)
            lin = half * (p - sig) * sin2g
            return (half * (p * sin2g + sig * (1.0 + cosg * cosg)), lin * torch.cos(c2), lin * torch.sin(c2),
                    half * (sr - sb) * cosg)

        eta_i, eta_q, eta_u, eta_v = elements(phi_g)
        _, rho_q, rho_u, rho_v = elements(psi_g)
        return PropagationElements(eta_i, eta_q, eta_u, eta_v, rho_q, rho_u, rho_v)

    def apply_instrument(self, stokes: torch.Tensor) -> torch.Tensor:
        """Convolve fine-grid profiles (..., n_model_wavelengths) with the PSF ⊗ pixel and sample the pixels.

        Also used for profiles from other codes computed on :attr:`model_wavelengths` (air, Å).
        """
        stokes = torch.as_tensor(stokes)
        if stokes.shape[-1] != self.model_wavelengths.size:
            raise ValueError(f"profiles must be on the {self.model_wavelengths.size}-point model grid; "
                             f"got {stokes.shape[-1]} points")
        return self._instrument(stokes)

    def _instrument(self, stokes: torch.Tensor) -> torch.Tensor:
        _, _, _, _, kernel = self._tables(stokes.dtype, stokes.device)
        if kernel is None:
            return stokes
        lead = stokes.shape[:-1]
        out = torch.nn.functional.conv1d(stokes.reshape(-1, 1, stokes.shape[-1]), kernel, stride=self._stride)
        return out.reshape(*lead, out.shape[-1])

    def synthesize(self, params: torch.Tensor, filling_factor: torch.Tensor | float | None = None,
                   stray_light: torch.Tensor | None = None, instrument: bool = True) -> torch.Tensor:
        """Emergent Stokes profiles (..., 4, n_wavelengths) in continuum-intensity units.

        Parameters
        ----------
        params : tensor (..., 9), see :data:`PARAMETER_NAMES` (units G, deg, deg, km/s, mÅ, -, -, Ic, Ic)
        filling_factor : tensor (...,) or float in [0, 1], optional
            Magnetic filling factor α. The rest is ``stray_light`` if given (shape broadcastable to
            (..., 4, n_wavelengths) on the output grid), else the non-magnetic (B = 0) ME profile of
            the same thermodynamic parameters.
        instrument : bool
            Apply the spectral PSF and pixel sampling (True) or return the fine-grid profiles.
        """
        params = check_parameters(params)
        elements = self.propagation_elements(params)
        s0, s1 = params[..., 7:8], params[..., 8:9]
        stokes = unno_rachkovsky(elements, s0, s1, self.mu)
        if instrument:
            stokes = self._instrument(stokes)
        if filling_factor is None:
            return stokes
        alpha = torch.as_tensor(filling_factor, dtype=params.dtype, device=params.device)
        if not bool(torch.isfinite(alpha).all()) or bool(((alpha < 0) | (alpha > 1)).any()):
            raise ValueError("filling factor must be finite and in [0, 1]")
        if stray_light is None:
            nonmagnetic = params.clone()
            nonmagnetic[..., 0] = 0.0
            stray = unno_rachkovsky(self.propagation_elements(nonmagnetic), s0, s1, self.mu)
            if instrument:
                stray = self._instrument(stray)
        else:
            stray = torch.as_tensor(stray_light, dtype=params.dtype, device=params.device)
        while alpha.ndim < stokes.ndim:
            alpha = alpha.unsqueeze(-1)
        return alpha * stokes + (1.0 - alpha) * stray

    __call__ = synthesize


def add_noise(stokes: torch.Tensor, sigma: float = 1e-3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` (continuum units) to every Stokes pixel."""
    if sigma < 0:
        raise ValueError("noise sigma must be >= 0")
    noise = torch.randn(stokes.shape, generator=generator, dtype=stokes.dtype, device=stokes.device)
    return stokes + sigma * noise
