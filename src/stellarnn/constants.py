"""Physical and mathematical constants shared by the package, each written once.

The values are the CODATA 2018 recommended values (Tiesinga et al. 2021, Rev. Mod. Phys. 93, 025010;
exact where the 2019 SI redefinition fixed them), the same as ``astropy.constants`` (its ``codata2018``
set; ``tests/test_constants.py`` checks every value against astropy).  They are plain Python floats, so
that importing them costs nothing and they enter numpy and torch arithmetic without unit conversion.
Units are in the names: ``_KM_S`` km/s, ``_CGS`` erg/g/cm/s, ``_EV`` eV.
"""
from __future__ import annotations

import math

#: speed of light in vacuum [km/s] (exact)
SPEED_OF_LIGHT_KM_S = 299792.458
#: speed of light in vacuum [cm/s] (exact)
SPEED_OF_LIGHT_CGS = 2.99792458e10
#: Boltzmann constant [erg/K] (exact)
BOLTZMANN_CGS = 1.380649e-16
#: Boltzmann constant [eV/K] (k / e, exact to the digits given)
BOLTZMANN_EV = 8.617333262e-5
#: Planck constant [erg s] (exact)
PLANCK_CGS = 6.62607015e-27
#: atomic mass unit [g] (CODATA 2018)
ATOMIC_MASS_UNIT_CGS = 1.66053906660e-24
#: one electronvolt [erg] (exact)
ELECTRONVOLT_CGS = 1.602176634e-12
#: classical electron radius e²/(m_e c²) [cm] (CODATA 2018)
ELECTRON_RADIUS_CGS = 2.8179403262e-13

#: full width at half maximum of a Gaussian per standard deviation, 2 √(2 ln 2) = 2.35482...
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
