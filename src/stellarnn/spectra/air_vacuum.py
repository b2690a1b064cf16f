"""Air and vacuum wavelengths, one convention for the whole package.

The conversion used by VALD (N. Piskunov; refractive index of Ciddor 1996, Applied Optics 35, 1566,
evaluated at the air wavenumber ``s = 1e4 / lambda_air`` in inverse micrometres), valid above 2000 Angstrom:
``n = 1 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s^2) + 1.599740894897e-4 / (38.92568793293 - s^2)``.
Below 2000 Angstrom wavelengths are vacuum in both conventions.  The line lists (MOOG, air) and the readers of
observed spectra (:mod:`stellarnn.spectra.echelle_io`) both use it.
"""
from __future__ import annotations

import numpy as np


def air_to_vacuum(wavelength_air: np.ndarray) -> np.ndarray:
    """Vacuum wavelength [Angstrom] from air wavelength (VALD convention; unchanged below 2000 Angstrom)."""
    wl = np.asarray(wavelength_air, dtype=np.float64)
    s2 = (1e4 / wl) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (1.301065924522e2 - s2) + 1.599740894897e-4 / (3.892568793293e1 - s2)
    return np.where(wl > 1999.352, wl * n, wl)


def vacuum_to_air(wavelength_vac: np.ndarray) -> np.ndarray:
    """Air wavelength [Angstrom] from vacuum (inverse of :func:`air_to_vacuum` by fixed-point iteration)."""
    vac = np.asarray(wavelength_vac, dtype=np.float64)
    air = vac / 1.000273
    for _ in range(4):
        air = air * vac / air_to_vacuum(air)
    return np.where(vac > 1999.9, air, vac)
