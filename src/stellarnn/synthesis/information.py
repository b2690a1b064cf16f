"""Cramér-Rao lower bounds on stellar labels from a spectrum model's Jacobian.

For a spectrum model m(θ) observed with independent Gaussian noise σ_p per pixel, the Fisher information
is F = Jᵀ W J with J_pk = ∂m_p/∂θ_k and W = diag(1/σ_p²); any unbiased estimator of θ has covariance
at least F⁻¹ (Cramér 1946; Rao 1945; e.g. Kay 1993, Fundamentals of Statistical Signal Processing I,
ch. 3), so sqrt(diag F⁻¹) bounds the label errors every method can reach at that S/N, *with all the
other parameters free* (marginalised: the inverse of the whole matrix, not 1/sqrt(F_kk)).

Here the model is the Payne emulator (:class:`~stellarnn.synthesis.emulator.PayneEmulator`) on the
pipelines' pixels (by default the 7514 apStar pixels the label networks keep), with its labels, the
radial velocity (:func:`~stellarnn.synthesis.fitter.doppler_shift`) and, optionally, a polynomial
continuum of degree ``continuum_degree`` per chip (multiplicative, 1 + Σ c_k P_k(x) with Legendre
P_k on each chip's pixels mapped to [-1, 1]) free.  σ_p = 1/SNR on the normalised flux, optionally
plus the model's own error in quadrature (``model_error``).  Jacobians come from ``torch.func``
(forward-mode, batched over stars).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..spectra.apogee_grid import APOGEE_CHIP_SLICES, apogee_wavelength, kept_pixel_index
from ..spectra.brackett_mask import brackett_mask
from .fitter import doppler_shift

#: km/s per unit of the RV parameter in the Jacobian (any scale gives the same bound in km/s)
_RV_UNIT = 1.0


@dataclass
class InformationBound:
    """Per-star Cramér-Rao bounds (1σ, physical units) and the Fisher matrices behind them."""

    names: list[str]  # label names, then "rv" (km/s), then the continuum coefficients
    sigma: np.ndarray  # (n_stars, n_params)
    fisher: np.ndarray  # (n_stars, n_params, n_params)

    def column(self, name: str) -> np.ndarray:
        return self.sigma[:, self.names.index(name)]


def continuum_basis(pixels: np.ndarray, degree: int) -> np.ndarray:
    """(n_pixels, 3 (degree + 1)) Legendre polynomials of degree 0..``degree`` on each APOGEE chip, zero elsewhere."""
    cols = []
    for sl in APOGEE_CHIP_SLICES:
        on = (pixels >= sl.start) & (pixels < sl.stop)
        x = np.where(on, 2 * (pixels - sl.start) / max(sl.stop - sl.start - 1, 1) - 1, 0.0)
        for k in range(degree + 1):
            c = np.zeros(k + 1)
            c[k] = 1
            cols.append(np.where(on, np.polynomial.legendre.legval(x, c), 0.0))
    return np.stack(cols, axis=1)


def model_jacobian(emulator, labels: np.ndarray, pixels: np.ndarray | None = None,
                   rv: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Model flux (n, n_pix) and its Jacobian (n, n_pix, n_labels [+1 for RV]) in physical units.

    The RV derivative is that of the emulator's spectrum Doppler-shifted by ``rv`` km/s at rv = 0
    (linear interpolation on the log-lambda grid, as the fitter uses).
    """
    pixels = kept_pixel_index() if pixels is None else np.asarray(pixels)
    lab = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    pix = torch.as_tensor(pixels, dtype=torch.long)

    def one(theta):  # theta: labels (+ rv) of one star
        flux = emulator(theta[None, :lab.shape[1]])
        if rv:
            flux = doppler_shift(flux, theta[None, lab.shape[1]] * _RV_UNIT)
        return flux[0, pix]

    theta = torch.cat([lab, torch.zeros(len(lab), 1)], 1) if rv else lab
    emulator.eval()
    with torch.no_grad():
        flux = torch.func.vmap(one)(theta)
        jac = torch.func.vmap(torch.func.jacfwd(one))(theta)
    if rv:
        jac[..., -1] /= _RV_UNIT
    return flux.numpy().astype(np.float64), jac.numpy().astype(np.float64)


def fisher_bounds(jacobian: np.ndarray, sigma: np.ndarray, names: list[str], flux: np.ndarray | None = None,
                  pixels: np.ndarray | None = None, continuum_degree: int | None = None) -> InformationBound:
    """Cramér-Rao bounds from a Jacobian (n, n_pix, n_par) and per-pixel noise ``sigma`` ((n, n_pix) or broadcastable).

    With ``continuum_degree`` (needs ``flux`` and ``pixels``) a multiplicative Legendre continuum per
    chip is added to the free parameters (its derivative at the solution is flux × P_k).
    """
    jac = np.asarray(jacobian, dtype=np.float64)
    names = list(names)
    if continuum_degree is not None:
        if flux is None or pixels is None:
            raise ValueError("a continuum needs the model flux and the pixel indices")
        basis = continuum_basis(np.asarray(pixels), int(continuum_degree))
        jac = np.concatenate([jac, np.asarray(flux)[:, :, None] * basis[None]], axis=2)
        names += [f"continuum_chip{c}_p{k}" for c in range(3) for k in range(int(continuum_degree) + 1)]
    w = 1.0 / np.broadcast_to(np.asarray(sigma, dtype=np.float64), jac.shape[:2]) ** 2
    fisher = np.einsum("npa,np,npb->nab", jac, w, jac)
    # invert in a scaled basis (labels differ by 1e4 in scale); pinv keeps degenerate directions finite (inf bound)
    d = np.sqrt(np.clip(np.einsum("naa->na", fisher), 1e-300, None))
    scaled = fisher / d[:, :, None] / d[:, None, :]
    cov = np.linalg.pinv(scaled, hermitian=True) / d[:, :, None] / d[:, None, :]
    var = np.einsum("naa->na", cov)
    sigma_out = np.sqrt(np.where(var > 0, var, np.inf))
    return InformationBound(names, sigma_out, fisher)


def emulator_bounds(emulator, labels: np.ndarray, label_names: list[str], snr: float,
                    model_error: np.ndarray | float | None = None, pixels: np.ndarray | None = None,
                    continuum_degree: int | None = None, batch: int = 64,
                    brackett_masked: bool = False) -> InformationBound:
    """Per-star bounds with the emulator as the model: σ_p = sqrt(1/SNR² + model_error²), all labels + RV free.

    ``brackett_masked``: without the H I Brackett cores that networks trained with the mask never see
    (:func:`~stellarnn.spectra.brackett_mask.brackett_mask` at each star's Teff, the first label): those pixels
    get σ = ∞, i.e. no information.
    """
    pixels = kept_pixel_index() if pixels is None else np.asarray(pixels)
    masked = None
    if brackett_masked:
        masked = brackett_mask(apogee_wavelength()[pixels], np.asarray(labels, dtype=np.float64)[:, 0])
    parts = []
    for i in range(0, len(labels), batch):
        flux, jac = model_jacobian(emulator, labels[i:i + batch], pixels)
        sig = np.full(flux.shape, 1.0 / snr)
        if model_error is not None:
            me = np.asarray(model_error, dtype=np.float64)
            sig = np.sqrt(sig ** 2 + (me[i:i + batch] if me.ndim == 2 else me) ** 2)
        if masked is not None:
            sig = np.where(masked[i:i + batch], np.inf, sig)
        parts.append(fisher_bounds(jac, sig, list(label_names) + ["rv"], flux, pixels, continuum_degree))
    return InformationBound(parts[0].names, np.concatenate([p.sigma for p in parts]),
                            np.concatenate([p.fisher for p in parts]))
