"""Spectra: the Spectrum data model, APOGEE apStar/apVisit/aspcapStar and SDSS-V mwmStar I/O and LSF, generic files,
continuum."""
from .apogee_grid import (APOGEE_BAD_PIXEL_MASK, APOGEE_CHIP_SLICES, APOGEE_N_KEPT, APOGEE_N_PIXELS,
                          APOGEE_PIXMASK_BITS, apogee_wavelength, decode_pixmask, kept_pixel_index)
from .apstar import ApStar, read_apstar, write_apstar
from .apvisit import ApogeeLSF, ApVisit, read_apogee_file, read_apvisit
from .aspcapstar import read_aspcapstar, read_aspcapstar_model
from .mwm import read_mwm_star
from .continuum import ContinuumResult, apogee_continuum, load_dr17_contmask
from .air_vacuum import air_to_vacuum, vacuum_to_air
from .echelle_io import ObservedSpectrum, from_spectrum1d, read_echelle_fits
from .errors import SpectrumFileError
from .generic_io import read_spectrum, read_spectrum_csv, read_spectrum_fits, write_spectrum_csv
from .spectrum import Spectrum

__all__ = ["APOGEE_BAD_PIXEL_MASK", "APOGEE_CHIP_SLICES", "APOGEE_N_KEPT", "APOGEE_N_PIXELS", "APOGEE_PIXMASK_BITS",
           "apogee_wavelength", "decode_pixmask", "kept_pixel_index", "ApStar", "read_apstar", "write_apstar",
           "ApogeeLSF", "ApVisit", "read_apogee_file", "read_apvisit", "read_aspcapstar", "read_aspcapstar_model",
           "read_mwm_star", "ContinuumResult", "apogee_continuum",
           "load_dr17_contmask",
           "SpectrumFileError", "air_to_vacuum", "vacuum_to_air", "ObservedSpectrum", "from_spectrum1d",
           "read_echelle_fits", "read_spectrum", "read_spectrum_csv", "read_spectrum_fits", "write_spectrum_csv",
           "Spectrum"]
