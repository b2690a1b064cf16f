"""stellarnn.constants: every value equals astropy's (CODATA 2018) in the unit its name says."""
import math

import astropy.constants as const
import astropy.units as u
import pytest

from stellarnn import constants as C


@pytest.mark.parametrize("ours, theirs, rel", [
    (C.SPEED_OF_LIGHT_KM_S, const.c.to_value(u.km / u.s), 0.0),
    (C.SPEED_OF_LIGHT_CGS, const.c.cgs.value, 0.0),
    (C.BOLTZMANN_CGS, const.k_B.cgs.value, 0.0),
    (C.BOLTZMANN_EV, const.k_B.to_value(u.eV / u.K), 1e-10),
    (C.PLANCK_CGS, const.h.cgs.value, 0.0),
    (C.ATOMIC_MASS_UNIT_CGS, const.u.cgs.value, 1e-15),
    (C.ELECTRONVOLT_CGS, u.eV.to(u.erg), 1e-15),
    (C.ELECTRON_RADIUS_CGS, (const.e.esu ** 2 / (const.m_e * const.c ** 2)).cgs.value, 1e-9),
])
def test_values_match_astropy(ours, theirs, rel):
    assert isinstance(ours, float)
    assert ours == pytest.approx(theirs, rel=rel, abs=0.0)


def test_gaussian_fwhm_per_sigma():
    # the half maximum of exp(-x²/2σ²) lies at x = σ √(2 ln 2)
    assert math.exp(-0.5 * (C.FWHM_PER_SIGMA / 2) ** 2) == pytest.approx(0.5, rel=1e-15)
    assert C.FWHM_PER_SIGMA == pytest.approx(2.3548200450309493, rel=1e-15)
