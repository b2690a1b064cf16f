"""Where Earth's atmosphere absorbs: the telluric bands that blasé's transfer may put lines in.

The transfer's telluric model (:func:`stellarnn.blase.fitting.transfer_spectrum`) adds observer-frame
lines only inside these bands, and scales them per species (one H2O column factor, one O2
airmass factor, …) instead of fitting every line's depth freely, so that a residual of the stellar
model outside the bands can never be absorbed as "telluric".

Band edges (Å, air, rounded outward) of the main O2, H2O, CO2 and CH4 absorption systems between
0.6 and 1.7 µm, as they appear in model transmission spectra of the Earth's atmosphere (e.g. the
molecfit/LBLRTM transmission of Smette et al. 2015, A&A 576, A77, Fig. 1; and the optical bands
listed in issue 21: O2 B 6860–6950, O2 A 7590–7700, H2O 7160–7400, 8130–8350, 8950–9900 Å).
Weak H2O lines exist between these bands (transmission > 0.98 at airmass ~1 for typical water
columns); they are deliberately excluded: a band list is a physical prior, not a transmission model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TelluricBand:
    """One absorption band: species (shared scaling), a label and its edges (Å, air)."""

    species: str
    name: str
    low_angstrom: float
    high_angstrom: float


TELLURIC_BANDS = (
    TelluricBand("O2", "O2 gamma", 6270.0, 6330.0),
    TelluricBand("H2O", "H2O 0.65 um", 6470.0, 6600.0),
    TelluricBand("O2", "O2 B", 6860.0, 6950.0),
    TelluricBand("H2O", "H2O 0.72 um", 7160.0, 7400.0),
    TelluricBand("O2", "O2 A", 7590.0, 7700.0),
    TelluricBand("H2O", "H2O 0.82 um", 8130.0, 8350.0),
    TelluricBand("H2O", "H2O 0.94 um", 8950.0, 9900.0),
    TelluricBand("H2O", "H2O 1.13 um", 10800.0, 11900.0),
    TelluricBand("O2", "O2 1.27 um", 12600.0, 12750.0),
    TelluricBand("H2O", "H2O 1.4 um", 13000.0, 15000.0),
    TelluricBand("CO2", "CO2 1.575 um", 15650.0, 15850.0),
    TelluricBand("CO2", "CO2 1.605 um", 15950.0, 16150.0),
    TelluricBand("CH4", "CH4 1.66 um", 16300.0, 16900.0),
)


def band_edges(bands=TELLURIC_BANDS, medium: str = "air") -> list[tuple[float, float, str, str]]:
    """``(low, high, species, name)`` of each band in the requested medium (``air`` or ``vacuum``)."""
    from ..spectra.air_vacuum import air_to_vacuum

    out = []
    for band in bands:
        lo, hi = band.low_angstrom, band.high_angstrom
        if medium.startswith("vacuum"):
            lo, hi = (float(x) for x in air_to_vacuum(np.array([lo, hi])))
        out.append((lo, hi, band.species, band.name))
    return out


def assign_bands(wavelength, bands=TELLURIC_BANDS, medium: str = "air") -> tuple[np.ndarray, np.ndarray]:
    """Band index (−1: outside all bands) and species of each wavelength (Å)."""
    wl = np.asarray(wavelength, dtype=np.float64)
    index = np.full(wl.shape, -1)
    species = np.full(wl.shape, "", dtype=object)
    for k, (lo, hi, sp, _name) in enumerate(band_edges(bands, medium)):
        inside = (wl >= lo) & (wl <= hi) & (index < 0)
        index[inside] = k
        species[inside] = sp
    return index, species
