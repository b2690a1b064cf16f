"""Sparse, auto-differentiable line-by-line spectrum model (blasé, Gully-Santiago & Morley 2022).

Each line ``i`` has a centre ``λ_i`` (Angstrom), an amplitude ``a_i`` (Angstrom; the profile is
area-normalised, so ``a_i`` is the line's integrated optical depth or, for weak lines, its
equivalent width), a Gaussian ``σ_i`` and a Lorentzian half width ``γ_i`` (Angstrom), stored as
``ln a``, ``ln σ``, ``ln γ``. The spectrum is

* optical-depth form: ``F(λ) = exp(−Σ_i a_i V(λ − λ_i; σ_i, γ_i))``
* multiplicative form: ``F(λ) = Π_i (1 − a_i V(λ − λ_i; σ_i, γ_i))`` (blasé's published form)

with ``V`` the pseudo-Voigt or the exact Voigt profile (:mod:`stellarnn.blase.profiles`).

Sparse evaluation: every line is evaluated only at the pixels inside its own window; the window
half width is set per line from its current strength so that the neglected wing absorption stays
below ``wing_tolerance``:

    Gaussian core:   x_G = σ √(2 ln(a / (σ √(2π) ε)))
    Lorentzian wing: x_L = √(a γ_w / (π ε))   (far wing of a γ_w-HWHM Lorentzian of area a)

``γ_w = γ`` for the Voigt and ``η f / 2`` for the pseudo-Voigt; the half width is
``max(x_G, x_L, min_half_window)`` capped at ``max_half_window`` (Angstrom). Strong lines therefore
keep their broad wings (blasé's published code used one fixed window for all lines). The ragged
(line, pixel) pairs are built with ``repeat_interleave`` and the contributions summed with
``index_add`` – no Python loop over lines.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..numerics.faddeeva import faddeeva_parts
from ..train import register_model
from .line_finder import FORMS, LineGuesses
from .profiles import SQRT_2PI, pseudo_voigt_fwhm_eta, pseudo_voigt_from_fwhm_eta, voigt_fwhm

PROFILE_NAMES = ("pseudo_voigt", "voigt")
_MAX_TRANSMISSION_LOSS = 1.0 - 1e-6  # multiplicative form: a·V clamped below 1 (flux stays > 0)


@register_model("blase-lines")
class LineModel(nn.Module):
    """A set of spectral lines with learnable centres, ln amplitudes, ln σ and ln γ.

    Parameters
    ----------
    n_lines : int
        Number of lines.
    profile : {"pseudo_voigt", "voigt"}
        Line profile.
    form : {"tau", "multiplicative"}
        How lines combine into a spectrum (see module docstring).
    centre_scale_angstrom : float
        Unit of the learnable centre shift (so an optimiser step of ~lr moves a centre by
        ~lr × this many Angstrom).
    wing_tolerance : float
        Absorption neglected beyond each line's window (dimensionless).
    min_half_window_angstrom, max_half_window_angstrom : float
        Bounds on the per-line window half width (Angstrom).
    """

    def __init__(self, n_lines: int, profile: str = "pseudo_voigt", form: str = "tau",
                 centre_scale_angstrom: float = 0.01, wing_tolerance: float = 1e-4,
                 min_half_window_angstrom: float = 0.05, max_half_window_angstrom: float = 60.0):
        super().__init__()
        if n_lines < 0:
            raise ValueError("n_lines must be >= 0")
        if profile not in PROFILE_NAMES:
            raise ValueError(f"profile must be one of {PROFILE_NAMES}, got {profile!r}")
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if not (0 < min_half_window_angstrom <= max_half_window_angstrom):
            raise ValueError("need 0 < min_half_window_angstrom <= max_half_window_angstrom")
        if wing_tolerance <= 0:
            raise ValueError("wing_tolerance must be > 0")
        self.hyperparameters = dict(n_lines=int(n_lines), profile=profile, form=form,
                                    centre_scale_angstrom=float(centre_scale_angstrom),
                                    wing_tolerance=float(wing_tolerance),
                                    min_half_window_angstrom=float(min_half_window_angstrom),
                                    max_half_window_angstrom=float(max_half_window_angstrom))
        self.n_lines = int(n_lines)
        self.profile = profile
        self.form = form
        self.centre_scale = float(centre_scale_angstrom)
        self.wing_tolerance = float(wing_tolerance)
        self.min_half_window = float(min_half_window_angstrom)
        self.max_half_window = float(max_half_window_angstrom)
        # centres split into an integer and a fractional Angstrom part: both survive a float32
        # round trip exactly (to ~1e-7 Å), unlike one float32 number near 1e4 Å
        self.register_buffer("centre_whole", torch.zeros(n_lines, dtype=torch.float64))
        self.register_buffer("centre_frac", torch.zeros(n_lines, dtype=torch.float64))
        self.centre_shift = nn.Parameter(torch.zeros(n_lines))
        self.ln_amplitude = nn.Parameter(torch.full((n_lines,), math.log(1e-3)))
        self.ln_sigma = nn.Parameter(torch.full((n_lines,), math.log(0.05)))
        self.ln_gamma = nn.Parameter(torch.full((n_lines,), math.log(0.01)))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_guesses(cls, guesses: LineGuesses, **hyperparameters) -> "LineModel":
        """Build a model whose lines start at the line finder's guesses."""
        model = cls(n_lines=len(guesses), **hyperparameters)
        model.set_lines(guesses.centres, guesses.amplitudes, guesses.sigmas, guesses.gammas)
        return model

    @torch.no_grad()
    def set_lines(self, centres, amplitudes, sigmas, gammas) -> None:
        """Set all lines (Angstrom arrays of length ``n_lines``); resets the centre shifts."""
        arrays = [np.asarray(v, dtype=np.float64) for v in (centres, amplitudes, sigmas, gammas)]
        for name, arr in zip(("centres", "amplitudes", "sigmas", "gammas"), arrays):
            if arr.shape != (self.n_lines,):
                raise ValueError(f"{name}: expected shape ({self.n_lines},), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} has NaN/inf values")
        for name, arr in zip(("amplitudes", "sigmas", "gammas"), arrays[1:]):
            if np.any(arr <= 0):
                raise ValueError(f"{name} must be > 0")
        c = arrays[0]
        whole = np.floor(c)
        self.centre_whole.copy_(torch.from_numpy(whole))
        self.centre_frac.copy_(torch.from_numpy(c - whole))
        self.centre_shift.zero_()
        self.ln_amplitude.copy_(torch.from_numpy(np.log(arrays[1])))
        self.ln_sigma.copy_(torch.from_numpy(np.log(arrays[2])))
        self.ln_gamma.copy_(torch.from_numpy(np.log(arrays[3])))

    # ------------------------------------------------------------------ per-line quantities
    def centres(self) -> torch.Tensor:
        """Line centres (Angstrom, float64, differentiable through the centre shift)."""
        return self.centre_whole + self.centre_frac + self.centre_shift.double() * self.centre_scale

    def _widths(self):
        amp = torch.exp(self.ln_amplitude)
        sigma = torch.exp(self.ln_sigma)
        gamma = torch.exp(self.ln_gamma)
        return amp, sigma, gamma

    @torch.no_grad()
    def half_windows(self) -> torch.Tensor:
        """Per-line window half width (Angstrom, float64) from the current parameters."""
        amp, sigma, gamma = (t.double() for t in self._widths())
        eps = self.wing_tolerance
        core = sigma * torch.sqrt(2.0 * torch.log(torch.clamp(amp / (sigma * SQRT_2PI * eps), min=1.0)))
        if self.profile == "voigt":
            wing_gamma = gamma
        else:
            fwhm, eta = pseudo_voigt_fwhm_eta(sigma, gamma)
            wing_gamma = eta * 0.5 * fwhm
            core = torch.maximum(core, fwhm)  # its Gaussian part has the combined width
        wing = torch.sqrt(amp * wing_gamma / (math.pi * eps))
        half = torch.maximum(torch.maximum(core, wing), torch.full_like(core, self.min_half_window))
        return torch.clamp(half, max=self.max_half_window)

    @torch.no_grad()
    def window_index(self, wavelength: torch.Tensor, centres: torch.Tensor | None = None):
        """Ragged (pixel, line) pairs of every line's window on a sorted wavelength grid.

        Returns
        -------
        pixel_index, line_index : LongTensor (M,)
            ``M = Σ_i n_i`` with ``n_i`` the pixels inside line ``i``'s window.
        """
        centres = self.centres() if centres is None else centres.detach()
        half = self.half_windows()
        lo = torch.searchsorted(wavelength, centres - half)
        hi = torch.searchsorted(wavelength, centres + half, right=True)
        counts = (hi - lo).clamp(min=0)
        line_index = torch.repeat_interleave(torch.arange(self.n_lines, device=wavelength.device), counts)
        starts = torch.cumsum(counts, 0) - counts
        within = torch.arange(line_index.numel(), device=wavelength.device) - starts[line_index]
        return lo[line_index] + within, line_index

    # ------------------------------------------------------------------ evaluation
    def _profile_values(self, dx: torch.Tensor, line_index: torch.Tensor | None, sigma, gamma):
        """Profile at offsets ``dx`` (float32); per-line widths gathered by ``line_index``
        (``None`` means ``dx`` is (L, P) dense and widths broadcast over pixels)."""
        def take(t):
            return t[line_index] if line_index is not None else t[:, None]

        if self.profile == "pseudo_voigt":
            fwhm, eta = pseudo_voigt_fwhm_eta(sigma, gamma)
            return pseudo_voigt_from_fwhm_eta(dx, take(fwhm), take(eta))
        scale = sigma * math.sqrt(2.0)
        u, _ = faddeeva_parts(dx / take(scale), take(gamma / scale))
        return u / take(sigma * SQRT_2PI)

    def _combine(self, absorption_sum: torch.Tensor) -> torch.Tensor:
        return torch.exp(-absorption_sum) if self.form == "tau" else torch.exp(absorption_sum)

    def _per_pair(self, contribution: torch.Tensor) -> torch.Tensor:
        if self.form == "tau":
            return contribution
        return torch.log1p(-torch.clamp(contribution, max=_MAX_TRANSMISSION_LOSS))

    def forward(self, wavelength: torch.Tensor, doppler_factor: torch.Tensor | float | None = None) -> torch.Tensor:
        """Sparse evaluation of the spectrum on ``wavelength`` (Angstrom, 1-D, increasing).

        ``doppler_factor`` multiplies every centre (``1 + v/c`` for a radial velocity ``v``).
        Returns dimensionless flux (P,), float32.
        """
        wavelength = _as_grid(wavelength)
        centres = self.centres()
        if doppler_factor is not None:
            centres = centres * (doppler_factor.double() if torch.is_tensor(doppler_factor) else float(doppler_factor))
        if self.n_lines == 0:
            return torch.ones(wavelength.shape, dtype=torch.float32, device=wavelength.device)
        pixel, line = self.window_index(wavelength, centres)
        amp, sigma, gamma = self._widths()
        dx = (wavelength[pixel] - centres[line]).float()
        contribution = amp[line] * self._profile_values(dx, line, sigma, gamma)
        total = torch.zeros(wavelength.shape, dtype=contribution.dtype, device=wavelength.device)
        total = total.index_add(0, pixel, self._per_pair(contribution))
        return self._combine(total)

    def forward_dense(self, wavelength: torch.Tensor, doppler_factor: torch.Tensor | float | None = None,
                      max_elements: int = 20_000_000) -> torch.Tensor:
        """Dense evaluation: every line at every pixel (the baseline the sparse model is timed against).

        Lines are processed in chunks of at most ``max_elements`` (line, pixel) pairs to bound memory.
        """
        wavelength = _as_grid(wavelength)
        centres = self.centres()
        if doppler_factor is not None:
            centres = centres * (doppler_factor.double() if torch.is_tensor(doppler_factor) else float(doppler_factor))
        amp, sigma, gamma = self._widths()
        total = torch.zeros(wavelength.shape, dtype=torch.float32, device=wavelength.device)
        step = max(1, max_elements // max(wavelength.numel(), 1))
        for start in range(0, self.n_lines, step):  # chunks bound memory; each chunk is one tensor op
            sl = slice(start, start + step)
            dx = (wavelength[None, :] - centres[sl, None]).float()
            contribution = amp[sl, None] * self._profile_values(dx, None, sigma[sl], gamma[sl])
            total = total + self._per_pair(contribution).sum(0)
        return self._combine(total)

    # ------------------------------------------------------------------ line table
    @torch.no_grad()
    def line_table(self, samples_per_line: int = 2001, chunk_lines: int = 2000) -> dict[str, np.ndarray]:
        """Per-line centre, central depth, FWHM and equivalent width (all Angstrom except depth).

        Depth: ``1 − exp(−a V(0))`` (tau form) or ``a V(0)`` (multiplicative), the line alone.
        FWHM: of the Voigt with the line's σ, γ (Olivero & Longbothum 1977) or of the pseudo-Voigt.
        EW: ``∫ (1 − F_line(λ)) dλ`` over the line's window by the trapezoid rule on a grid
        ``x = w sinh(u asinh(h/w))``, ``u ∈ [−1, 1]`` (dense in the core of width ``w`` = FWHM,
        sparse in the far wings up to the window half width ``h``).
        """
        amp, sigma, gamma = (t.double() for t in self._widths())
        half = self.half_windows()
        if self.profile == "voigt":
            fwhm = voigt_fwhm(sigma, gamma)
        else:
            fwhm, _ = pseudo_voigt_fwhm_eta(sigma, gamma)
        ew = torch.zeros(self.n_lines, dtype=torch.float64)
        depth = torch.zeros(self.n_lines, dtype=torch.float64)
        unit = torch.linspace(-1.0, 1.0, samples_per_line, dtype=torch.float64)
        for start in range(0, self.n_lines, chunk_lines):  # memory chunks of vectorised work
            sl = slice(start, start + chunk_lines)
            core = fwhm[sl, None] / 2
            x = core * torch.sinh(unit[None, :] * torch.asinh(half[sl, None] / core))
            prof = self._profile_values(x, None, sigma[sl], gamma[sl])
            contribution = amp[sl, None] * prof
            loss = 1.0 - self._combine(self._per_pair(contribution) if self.form == "multiplicative"
                                       else contribution)
            ew[sl] = torch.trapezoid(loss, x, dim=1)
            depth[sl] = loss[:, samples_per_line // 2]
        return {"centre_angstrom": self.centres().detach().numpy().copy(),
                "depth": depth.numpy(), "fwhm_angstrom": fwhm.numpy(),
                "equivalent_width_angstrom": ew.numpy(),
                "amplitude_angstrom": amp.numpy(), "sigma_angstrom": sigma.numpy(),
                "gamma_angstrom": gamma.numpy()}


def _as_grid(wavelength) -> torch.Tensor:
    wavelength = torch.as_tensor(wavelength)
    if wavelength.ndim != 1 or wavelength.numel() == 0:
        raise ValueError(f"wavelength must be a non-empty 1-D grid, got shape {tuple(wavelength.shape)}")
    return wavelength.double()
