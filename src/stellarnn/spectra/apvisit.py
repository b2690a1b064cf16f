"""APOGEE apVisit files and the APOGEE line-spread function (LSF).

apVisit layout (DR17/r13): HDU1 flux, HDU2 error, HDU3 bitmask, HDU4 wavelength (Angstrom,
vacuum), each (3 chips, 4096 px; chip 0 is the red chip, wavelength decreasing with pixel);
HDU9 wavelength-solution coefficients (3, 14); HDU10 LSF coefficients (3, 26).

LSF model (Nidever et al. 2015, AJ 150, 173, sect. 5; the apogeereduce parameterisation):
a Gauss-Hermite profile plus a Gaussian wing, both integrated over a pixel.  The
coefficient vector of one chip is

    [binsize, X0, Horder, Porder_0..Porder_Horder, GH coefficients..., Wproftype, nWpar,
     WPorder_0..WPorder_{nWpar-1}, wing coefficients...]

Each GH parameter p_k (k = 0: sigma; k >= 1: Hermite coefficient H_k) and each wing
parameter varies along the chip as a power series in X = x + X0, x the apVisit pixel.  The
profile at offset dx (in apVisit pixels) from a pixel centre is

    L(dx) = sum_{k=0..Horder} h_k He_k(w) exp(-w^2/2) / sqrt(2 pi k!) + wing,   w = dx / sigma,

with h_0 = 1 - A_wing, h_k = H_k, He_k the probabilists' Hermite polynomials, and a
Gaussian wing of amplitude A_wing and width sigma_wing; both terms are integrated over a
bin of width ``binsize``.  Kernels are returned normalised to unit sum.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import erf

from ..constants import SPEED_OF_LIGHT_KM_S
from .apogee_grid import APOGEE_N_PIXELS, apogee_wavelength
from .apstar import ApStar, open_fits, read_apstar, read_image_hdu, spectrum_from_arrays
from .aspcapstar import is_aspcapstar, read_aspcapstar
from .mwm import is_mwm_file, read_mwm_star
from .errors import SpectrumFileError
from .spectrum import Spectrum

APVISIT_N_PIXELS = 4096
APVISIT_N_CHIPS = 3


@dataclass
class LSFParameters:
    """Unpacked LSF coefficients of one chip."""

    binsize: float
    x0: float
    gh_coeffs: np.ndarray  # (Horder + 1, max Porder + 1), power-series coefficients in X
    wing_type: int
    wing_coeffs: np.ndarray  # (nWpar, max WPorder + 1)

    @classmethod
    def unpack(cls, arr: np.ndarray) -> "LSFParameters":
        arr = np.asarray(arr, dtype=np.float64)
        binsize, x0, horder = arr[0], arr[1], int(arr[2])
        porder = arr[3:4 + horder].astype(int)
        n_gh = int(np.sum(porder + 1))
        gh_flat = arr[4 + horder:4 + horder + n_gh]
        gh = np.zeros((horder + 1, porder.max() + 1))
        start = 0
        for k, p in enumerate(porder):
            gh[k, :p + 1] = gh_flat[start:start + p + 1]
            start += p + 1
        wing = arr[4 + horder + n_gh:]
        wing_type, n_wpar = int(wing[0]), int(wing[1])
        wporder = wing[2:2 + n_wpar].astype(int)
        wflat = wing[2 + n_wpar:]
        wc = np.zeros((n_wpar, wporder.max() + 1 if n_wpar else 1))
        start = 0
        for k, p in enumerate(wporder):
            wc[k, :p + 1] = wflat[start:start + p + 1]
            start += p + 1
        if wing_type != 1 or n_wpar != 2:
            raise ValueError(f"unsupported LSF wing type {wing_type} with {n_wpar} parameters (expected Gaussian, 2)")
        return cls(float(binsize), float(x0), gh, wing_type, wc)


def _powerseries(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate rows of power-series coefficients at x: (n_par, n_coef) x (n,) -> (n_par, n)."""
    return np.stack([np.polynomial.polynomial.polyval(x, c) for c in coeffs])


def _hermite_e_monomial(order: int) -> np.ndarray:
    """Monomial coefficients of He_0..He_order: (order+1, order+1), row k = He_k."""
    out = np.zeros((order + 1, order + 1))
    out[0, 0] = 1.0
    if order >= 1:
        out[1, 1] = 1.0
    for k in range(2, order + 1):  # He_k = x He_{k-1} - (k-1) He_{k-2}
        out[k, 1:] = out[k - 1, :-1]
        out[k] -= (k - 1) * out[k - 2]
    return out


class ApogeeLSF:
    """The LSF of one fibre (3 chips) from apVisit HDU10, with the HDU4 wavelengths.

    Parameters
    ----------
    coefficients : ndarray, shape (3, n_coef)
    wavelength : ndarray, shape (3, 4096)
        Vacuum wavelength (Angstrom) of every apVisit pixel.
    """

    def __init__(self, coefficients: np.ndarray, wavelength: np.ndarray):
        self.params = [LSFParameters.unpack(c) for c in coefficients]
        self.wavelength = np.asarray(wavelength, dtype=np.float64)

    def kernel(self, chip: int, pixels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """LSF at ``offsets`` (apVisit pixels) around each centre pixel; rows sum to 1.

        Returns
        -------
        ndarray, shape (len(pixels), len(offsets))
        """
        pixels = np.atleast_1d(np.asarray(pixels, dtype=np.float64))
        offsets = np.broadcast_to(np.asarray(offsets, dtype=np.float64), (pixels.size, np.size(offsets)))
        out = self._kernel_rows(chip, pixels, offsets)
        return out / out.sum(axis=1, keepdims=True)

    def _locate(self, wavelength: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chip, fractional pixel and |dlambda/dpixel| for each wavelength (chip -1 if off-detector)."""
        wavelength = np.atleast_1d(wavelength)
        chip = np.full(wavelength.shape, -1)
        pix = np.full(wavelength.shape, np.nan)
        disp = np.full(wavelength.shape, np.nan)
        for c in range(self.wavelength.shape[0]):
            wl = self.wavelength[c]
            order = np.argsort(wl)
            inside = (wavelength >= wl.min()) & (wavelength <= wl.max())
            pix[inside] = np.interp(wavelength[inside], wl[order], np.arange(wl.size)[order])
            d = np.abs(np.gradient(wl))
            disp[inside] = np.interp(wavelength[inside], wl[order], d[order])
            chip[inside] = c
        return chip, pix, disp

    def kernel_in_wavelength(self, wavelength: np.ndarray, dlambda: np.ndarray) -> np.ndarray:
        """LSF at wavelength offsets ``dlambda`` (Angstrom) around each ``wavelength``; rows sum to 1.

        Wavelengths between or beyond the chips use the nearest chip edge's LSF.
        """
        wavelength = np.atleast_1d(np.asarray(wavelength, dtype=np.float64))
        dlambda = np.asarray(dlambda, dtype=np.float64)
        return self.kernel_rows_in_wavelength(wavelength, np.broadcast_to(dlambda, (wavelength.size, dlambda.size)))

    def kernel_rows_in_wavelength(self, wavelength: np.ndarray, dlambda: np.ndarray) -> np.ndarray:
        """LSF at per-row wavelength offsets ``dlambda`` (n, m) [Angstrom] around ``wavelength`` (n,).

        Rows are normalised to unit sum (a resampling matrix row).  Wavelengths off the detector
        use the LSF of the nearest chip edge.
        """
        wavelength = np.atleast_1d(np.asarray(wavelength, dtype=np.float64))
        dlambda = np.asarray(dlambda, dtype=np.float64)
        chip, pix, disp = self._locate(wavelength)
        off = chip < 0
        if off.any():  # nearest chip edge
            for i in np.where(off)[0]:
                best = min(((abs(self.wavelength[c][p] - wavelength[i]), c, p)
                            for c in range(self.wavelength.shape[0]) for p in (0, self.wavelength.shape[1] - 1)))
                _, chip[i], pix[i] = best
                disp[i] = abs(np.gradient(self.wavelength[best[1]])[best[2]])
        out = np.empty_like(dlambda)
        for c in range(self.wavelength.shape[0]):
            sel = chip == c
            if sel.any():
                out[sel] = self._kernel_rows(c, pix[sel], dlambda[sel] / disp[sel, None])
        total = out.sum(axis=1, keepdims=True)
        return out / np.where(total > 0, total, 1.0)  # rows far from every offset stay 0

    def _kernel_rows(self, chip, pixels, offsets2d):
        """Unnormalised LSF with one offset vector per row: offsets2d (n, m) -> (n, m)."""
        p = self.params[chip]
        X = pixels + p.x0
        gh = _powerseries(p.gh_coeffs, X)
        wing = _powerseries(p.wing_coeffs, X)
        horder = p.gh_coeffs.shape[0] - 1
        h = np.empty((horder + 1, pixels.size))
        h[0] = 1.0 - wing[0]
        h[1:] = gh[1:horder + 1]
        h /= np.sqrt(2 * np.pi * np.array([math.factorial(k) for k in range(horder + 1)]))[:, None]
        c = h.T @ _hermite_e_monomial(horder)
        w1 = (offsets2d - 0.5 * p.binsize) / gh[0][:, None]
        w2 = (offsets2d + 0.5 * p.binsize) / gh[0][:, None]
        e1, e2 = np.exp(-0.5 * w1 ** 2), np.exp(-0.5 * w2 ** 2)
        integrals = [np.sqrt(np.pi / 2) * (erf(w2 / np.sqrt(2)) - erf(w1 / np.sqrt(2))), e1 - e2]
        for j in range(2, horder + 1):
            integrals.append(-(w2 ** (j - 1) * e2 - w1 ** (j - 1) * e1) + (j - 1) * integrals[j - 2])
        out = sum(c[:, j:j + 1] * integrals[j] for j in range(horder + 1))
        ww1 = (offsets2d - 0.5 * p.binsize) / wing[1][:, None]
        ww2 = (offsets2d + 0.5 * p.binsize) / wing[1][:, None]
        out = out + wing[0][:, None] / 2 * (erf(ww2 / np.sqrt(2)) - erf(ww1 / np.sqrt(2)))
        return np.clip(out, 0.0, None)

    def fwhm_pixels(self, chip: int, pixels: np.ndarray, resolution: float = 0.01) -> np.ndarray:
        """Full width at half maximum of the LSF (apVisit pixels) at the given centre pixels."""
        offsets = np.arange(-15, 15 + resolution / 2, resolution)
        k = self.kernel(chip, pixels, offsets)
        above = k >= 0.5 * k.max(axis=1, keepdims=True)
        first = above.argmax(axis=1)
        last = offsets.size - 1 - above[:, ::-1].argmax(axis=1)
        return (last - first) * resolution

    def resolution(self, chip: int, pixels: np.ndarray) -> np.ndarray:
        """Resolving power lambda / FWHM at the given pixels of ``chip``."""
        pixels = np.atleast_1d(np.asarray(pixels))
        wl = self.wavelength[chip]
        disp = np.abs(np.gradient(wl))[pixels.astype(int)]
        return wl[pixels.astype(int)] / (self.fwhm_pixels(chip, pixels) * disp)


@dataclass
class ApVisit:
    """Contents of one apVisit file."""

    path: str
    header: dict
    flux: np.ndarray  # (3, 4096)
    error: np.ndarray
    bitmask: np.ndarray
    wavelength: np.ndarray  # (3, 4096), Angstrom, vacuum
    wavelength_coefficients: np.ndarray  # (3, 14)
    lsf_coefficients: np.ndarray  # (3, 26)

    @property
    def lsf(self) -> ApogeeLSF:
        return ApogeeLSF(self.lsf_coefficients, self.wavelength)

    def to_spectrum(self, on_bad_pixels: str = "mask") -> Spectrum:
        """The three chips joined and sorted by increasing wavelength."""
        order = np.argsort(self.wavelength.ravel())
        return spectrum_from_arrays(self.path, 0, self.wavelength.ravel()[order], self.flux.ravel()[order],
                                    self.error.ravel()[order], self.bitmask.ravel()[order],
                                    dict(self.header, kind="visit"), on_bad_pixels)

    @property
    def doppler_shift_kms(self) -> float:
        """The visit's observed radial velocity [km/s]: the header's VRAD, else VHELIO - BC (both are APOGEE's)."""
        if "vrad" in self.header:
            return float(self.header["vrad"])
        if "vhelio" in self.header and "bc" in self.header:
            return float(self.header["vhelio"]) - float(self.header["bc"])
        raise SpectrumFileError(self.path, "no VRAD (or VHELIO and BC) in the header: the visit cannot be shifted "
                                           "to the star's rest frame; pass doppler_shift_kms", hdu=0)

    def to_apstar_grid(self, doppler_shift_kms: float | None = None) -> Spectrum:
        """The visit in the star's rest frame on the apStar log-lambda grid, as apStar files hold visits.

        The observed vacuum wavelengths are shifted to the rest frame, ``lambda_rest = lambda_obs / (1 + v / c)``
        with ``v`` the visit's doppler shift (:attr:`doppler_shift_kms`, or the value given), and each chip is
        resampled onto the apStar grid (:func:`~stellarnn.spectra.apogee_wavelength`): APOGEE combines visits
        this way (Nidever et al. 2015, AJ 150, 173).  Flux is interpolated with a cubic spline (the dithered
        visit samples the LSF with ~5 pixels per FWHM, finer than the apStar grid's ~0.21 Angstrom), the error
        linearly; an apStar pixel takes the OR of the bitmasks of the two visit pixels around it.  apStar
        pixels outside every chip, or next to a visit pixel without data (non-finite flux or error <= 0), get
        ivar 0 and the BADPIX bit.
        """
        from scipy.interpolate import make_interp_spline

        v = self.doppler_shift_kms if doppler_shift_kms is None else float(doppler_shift_kms)
        if not abs(v) < SPEED_OF_LIGHT_KM_S:  # NaN, inf or faster than light: no rest frame to shift to
            raise SpectrumFileError(self.path, f"doppler shift {v} km/s cannot be removed (VRAD/VHELIO/BC)", hdu=0)
        grid = apogee_wavelength()
        flux = np.zeros(APOGEE_N_PIXELS)
        error = np.full(APOGEE_N_PIXELS, np.inf)
        bitmask = np.zeros(APOGEE_N_PIXELS, np.int64)
        for chip in range(APVISIT_N_CHIPS):
            order = np.argsort(self.wavelength[chip])
            wave = self.wavelength[chip][order] / (1.0 + v / SPEED_OF_LIGHT_KM_S)
            f, e, m = self.flux[chip][order], self.error[chip][order], self.bitmask[chip][order]
            usable = np.isfinite(f) & np.isfinite(e) & (e > 0)
            inside = (grid >= wave[0]) & (grid <= wave[-1])
            right = np.clip(np.searchsorted(wave, grid[inside]), 1, wave.size - 1)
            left = right - 1
            filled = np.interp(wave, wave[usable], f[usable])  # bridge unusable pixels so the spline does not ring
            flux[inside] = make_interp_spline(wave, filled, k=3)(grid[inside])
            error[inside] = np.interp(grid[inside], wave[usable], e[usable])
            good = usable[left] & usable[right]
            error[np.flatnonzero(inside)[~good]] = np.inf
            bitmask[inside] = m[left] | m[right]
        bitmask[~np.isfinite(error)] |= 1  # BADPIX: no data at this apStar pixel
        header = dict(self.header, kind="visit", visit=0, doppler_shift_kms=v, resampled_from="apVisit")
        return spectrum_from_arrays(self.path, 0, grid, flux, error, bitmask, header, "mask")


APVISIT_HEADER_KEYS = ("OBJID", "TELESCOP", "PLATE", "MJD5", "FIBERID", "SNR", "VRAD", "VHELIO", "BC", "RA", "DEC",
                       "DATE-OBS", "EXPTIME", "J", "H", "K")


def read_apogee_file(path: str | os.PathLike) -> ApStar:
    """An apStar, aspcapStar or SDSS-V mwmStar file, or an apVisit file as a one-visit :class:`ApStar` on the
    apStar grid.

    What the label pipelines read: an apVisit (HDU 1 of 3 x 4096 pixels) is shifted to the star's rest frame and
    resampled onto the apStar grid (:meth:`ApVisit.to_apstar_grid`); its ``combined`` spectrum and its one visit
    are that spectrum, as for a one-visit apStar file.  An aspcapStar (ASPCAP's normalised spectrum,
    :func:`~stellarnn.spectra.aspcapstar.read_aspcapstar`) is read the same way; an mwmStar's combined spectrum is
    its APOGEE coadd of higher S/N (:func:`~stellarnn.spectra.mwm.read_mwm_star`).  Anything else is read by
    :func:`read_apstar`.
    """
    with open_fits(path) as hdul:  # the layout from the headers: HDU 1's data is read once, by the reader below
        h1 = hdul[1].header if len(hdul) > 1 else {}
        aspcap, mwm = is_aspcapstar(hdul), is_mwm_file(hdul)
    if aspcap:
        return read_aspcapstar(path)
    if mwm:
        return read_mwm_star(path)
    shape = (h1.get("NAXIS2"), h1.get("NAXIS1")) if h1.get("NAXIS") == 2 else ()
    if shape == (APVISIT_N_CHIPS, APVISIT_N_PIXELS):
        visit = read_apvisit(path)
        spectrum = visit.to_apstar_grid()
        header = dict(visit.header, apogee_id=visit.header.get("objid", Path(path).name.split(".")[0]))
        return ApStar(str(path), header, spectrum, [spectrum])
    return read_apstar(path)


def read_apvisit(path: str | os.PathLike) -> ApVisit:
    """Read an apVisit file (3 chips, wavelength, LSF coefficients).

    Raises
    ------
    SpectrumFileError
        Not FITS/truncated, a missing HDU, a wrong shape, or a chip with no usable pixel.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        flux = read_image_hdu(hdul, path, 1, APVISIT_N_PIXELS)
        error = read_image_hdu(hdul, path, 2, APVISIT_N_PIXELS)
        bitmask = read_image_hdu(hdul, path, 3, APVISIT_N_PIXELS).astype(np.int64)
        wavelength = read_image_hdu(hdul, path, 4, APVISIT_N_PIXELS).astype(np.float64)
        wcoef = read_image_hdu(hdul, path, 9, None).astype(np.float64)
        lsfc = read_image_hdu(hdul, path, 10, None).astype(np.float64)
        hdr = hdul[0].header
        header = {k.lower(): hdr[k] for k in APVISIT_HEADER_KEYS if k in hdr}
    header["source"] = str(path)
    for idx, arr in ((1, flux), (2, error), (3, bitmask), (4, wavelength), (9, wcoef), (10, lsfc)):
        if arr.shape[0] != APVISIT_N_CHIPS:
            raise SpectrumFileError(path, f"expected {APVISIT_N_CHIPS} chips, found shape {arr.shape}", hdu=idx)
    for chip in range(APVISIT_N_CHIPS):
        usable = np.isfinite(flux[chip]) & np.isfinite(error[chip]) & (error[chip] > 0)
        if not usable.any():
            raise SpectrumFileError(path, f"chip {chip} has no usable pixel (all NaN flux or non-positive error)",
                                    hdu=1)
    if not np.all(np.isfinite(wavelength)):
        raise SpectrumFileError(path, "non-finite wavelengths", hdu=4)
    try:
        ApogeeLSF(lsfc, wavelength)
    except (ValueError, IndexError) as exc:
        raise SpectrumFileError(path, f"LSF coefficients cannot be unpacked ({exc})", hdu=10) from exc
    return ApVisit(str(path), header, flux.astype(np.float64), error.astype(np.float64), bitmask, wavelength,
                   wcoef, lsfc)
