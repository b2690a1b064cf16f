"""Masks of the H I Brackett line cores that neither LTE code reproduces in cool stars.

Why (measured, ``bench/results/brackett.json``, written by ``bench/brackett.py``):

* ``real_stars_brackett_series.stars.apstar-2M19485057.at.doppler_header.fraction_of_pysme_line_strong_lines``:
  the real K dwarf 2M19485057 (Teff ~ 5230 K, log g 5) holds 0.07 +- 0.14 of the Br 11-13 lines
  that PySME predicts at its labels (Br 11 alone: ``...lines.Br 11.fraction_of_pysme_line`` =
  0.08 +- 0.15), and 0.17 +- 0.34 of synspec's weaker Br 11 (``fraction_of_synspec_line_strong_lines``).
* ``real_stars_brackett_series.stars.apstar-2M17335483.at.doppler_header``: the real 3677 K giant
  2M17335483 shows none of the ~10 % deep Br 11-20 cores that both codes predict (weighted fraction
  -0.08 +- 0.10 of PySME's lines, -0.34 +- 0.09 of synspec's).
* ``pysme_vs_synspec.stars.{dwarf_7000_4.2,sun}.summary.tremblay.depth_ratio_pysme_over_synspec_br11_to_br20``:
  in dwarfs PySME's line centres are 1.7-2.6x (Br 11-14) to 5.6-14x (Br 18-20) deeper than
  synspec's (1.5-2.1x in the 4500 K giant), so neither code can be taken as the truth there.

The training grids compute the Brackett lines with PySME, so a network trained on them learns line
cores that real cool stars do not show.  Following issue 18 item 3 ("if neither code can be trusted
for a regime, mask the line cores consistently in training and in the pipelines, and say so"), the
mask is

* ``CORE_HALF_WIDTH`` = +-3 A around Br 11-20 (``CORE_LINES``) for every star, and
* ``WIDE_HALF_WIDTH`` = +-20 A around Br 11-13 (``WIDE_LINES``) for stars cooler than
  ``COOL_TEFF`` = 5500 K (the true label in training, the network's first-pass estimate in the
  pipelines; an unknown Teff gets the wide windows, the conservative choice).

A masked pixel is treated like any other bad pixel of the network that reads it: continuum flux
(normalised flux 1) with inverse variance 0.

Choosing the windows from the true Teff in training lets a network learn "wide windows => cool": with the
wide windows, AstroNN's staged v4b checkpoint reads held-out stars of 5600-6500 K 95-125 K too cool (median),
but the pipelines' second pass (cores only, for pass-1 Teff >= ``COOL_TEFF``) gives the same scatter and median
as the mask at the true Teff in every bin from 4900 to 6500 K; only stars within ~100 K of the switch whose pass-1
Teff lands below it (2 of 12 at 5500-5600 K) keep a pass-1 error of up to 114 K (``bench/brackett_two_pass.py``,
``bench/results/brackett_two_pass_v4b.json``, S/N 100).

Vacuum wavelengths come from the Rydberg formula for hydrogen,
1 / lambda = R_H (1 / 4^2 - 1 / n^2), with R_H = 109677.58 cm^-1 (the Rydberg constant for the
hydrogen atom, reduced-mass corrected, vacuum wavenumbers; e.g. Herzberg 1944, *Atomic Spectra and
Atomic Structure*, Dover, ch. I; NIST CODATA R_inf = 109737.316 cm^-1 times m_p / (m_p + m_e)).
Fine structure and the Lamb shift move these lines by < 0.05 A, far below an apStar pixel (~0.22 A).

``BRACKETT_MASK_DEFAULT`` is False: the shipped AstroNN and APOGEENet weights were trained without the
mask, so their pipelines keep their behaviour unless asked.  Networks retrained on the new PySME grids
(``grids/apogee_like_f0``) are meant to be trained with ``brackett_mask=True``; the training functions
record the setting in the checkpoint and the pipelines then apply it by default.
"""
from __future__ import annotations

import numpy as np

#: default of every ``brackett_mask`` option (off: the shipped networks were trained without it)
BRACKETT_MASK_DEFAULT = False
#: Rydberg constant of hydrogen (cm^-1, vacuum wavenumbers; module docstring)
RYDBERG_HYDROGEN_PER_CM = 109677.58
#: lower level of the Brackett series
BRACKETT_LOWER_LEVEL = 4
#: upper levels whose cores are masked for every star (Br 11-20)
CORE_LINES = tuple(range(11, 21))
#: half width (A) of the core windows
CORE_HALF_WIDTH = 3.0
#: upper levels whose wide windows are masked in cool stars (Br 11-13)
WIDE_LINES = (11, 12, 13)
#: half width (A) of the wide windows
WIDE_HALF_WIDTH = 20.0
#: stars with Teff below this (K), or of unknown Teff, get the wide windows
COOL_TEFF = 5500.0


def brackett_wavelength_vacuum(n_upper) -> np.ndarray:
    """Vacuum wavelength (A) of the H I Brackett line 4 -> ``n_upper`` (Rydberg formula, module docstring).

    Parameters
    ----------
    n_upper : int or array of int
        Upper principal quantum number(s), > 4.

    Returns
    -------
    float64 array of the shape of ``n_upper``.

    Raises
    ------
    ValueError
        An upper level <= 4 (not a Brackett line).
    """
    n = np.asarray(n_upper)
    if not np.issubdtype(n.dtype, np.integer) or np.any(n <= BRACKETT_LOWER_LEVEL):
        raise ValueError(f"Brackett upper levels must be integers > {BRACKETT_LOWER_LEVEL}, got {n_upper!r}")
    wavenumber = RYDBERG_HYDROGEN_PER_CM * (1.0 / BRACKETT_LOWER_LEVEL ** 2 - 1.0 / n.astype(np.float64) ** 2)
    return 1e8 / wavenumber


def _windows(wavelength: np.ndarray, lines, half_width: float) -> np.ndarray:
    centres = brackett_wavelength_vacuum(np.asarray(lines))
    return (np.abs(wavelength[:, None] - centres[None, :]) <= half_width).any(axis=1)


def brackett_mask(wavelength, teff=None) -> np.ndarray:
    """Pixels to mask (True) for the Brackett cores (module docstring).

    Parameters
    ----------
    wavelength : array (n,)
        Vacuum wavelengths (A) of the pixels, e.g. :func:`~stellarnn.spectra.apogee_wavelength` or its
        7514 kept pixels.
    teff : None, float or array (B,)
        Effective temperature(s) (K).  None or NaN: the wide windows (as for a cool star).

    Returns
    -------
    bool array (n,) for a scalar or None ``teff``, (B, n) for an array.

    Raises
    ------
    ValueError
        Wavelengths not a finite 1-d array, or a Teff array that is not 0- or 1-d.
    """
    wl = np.asarray(wavelength, dtype=np.float64)
    if wl.ndim != 1 or not np.isfinite(wl).all():
        raise ValueError(f"wavelength must be a finite 1-d array (A, vacuum), got shape {wl.shape}")
    core = _windows(wl, CORE_LINES, CORE_HALF_WIDTH)
    wide = core | _windows(wl, WIDE_LINES, WIDE_HALF_WIDTH)
    if teff is None:
        return wide
    t = np.asarray(teff, dtype=np.float64)
    if t.ndim > 1:
        raise ValueError(f"teff must be a number or a 1-d array, got shape {t.shape}")
    cool = ~(t >= COOL_TEFF)  # NaN -> cool (the wide windows)
    return np.where(cool[..., None], wide, core)
