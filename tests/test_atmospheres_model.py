"""Atmosphere data model: derived n_atoms and density, shapes, tensors."""
import numpy as np
import pytest
import torch

from stellarnn.atmospheres.abundances import mean_mass_per_nucleus
from stellarnn.atmospheres.model import ATOMIC_MASS_UNIT, K_BOLTZMANN, Atmosphere


def _atm(n=4, **kw):
    base = dict(rhox=np.logspace(-2, 1, n), temperature=np.linspace(4000, 8000, n),
                p_gas=np.logspace(2, 5, n), n_e=np.logspace(9, 13, n), teff=5000.0, logg=3.0, m_h=0.0)
    base.update(kw)
    return Atmosphere(**base)


def test_n_atoms_and_density_formulae():
    atm = _atm()
    expected_n = atm.p_gas / (K_BOLTZMANN * atm.temperature) - atm.n_e
    np.testing.assert_allclose(atm.n_atoms, expected_n)
    np.testing.assert_allclose(atm.density, expected_n * mean_mass_per_nucleus(0.0) * ATOMIC_MASS_UNIT)
    metal_poor = _atm(m_h=-2.0)
    assert np.all(metal_poor.density < atm.density)


def test_batched_derived_quantities_broadcast_metallicity():
    one = _atm()
    batch = Atmosphere(rhox=np.stack([one.rhox] * 2), temperature=np.stack([one.temperature] * 2),
                       p_gas=np.stack([one.p_gas] * 2), n_e=np.stack([one.n_e] * 2),
                       teff=np.array([5000.0, 5000.0]), logg=np.array([3.0, 3.0]), m_h=np.array([0.0, -1.0]))
    np.testing.assert_allclose(batch.density[0], one.density)
    assert np.all(batch.density[1] < batch.density[0])


def test_tensors_stay_differentiable():
    m_h = torch.tensor(-0.5, requires_grad=True)
    atm = Atmosphere(rhox=torch.logspace(-2, 1, 5), temperature=torch.linspace(4000, 8000, 5),
                     p_gas=torch.logspace(2, 5, 5), n_e=torch.logspace(9, 13, 5), teff=5000.0, logg=3.0, m_h=m_h)
    atm.density.sum().backward()
    assert m_h.grad is not None and m_h.grad > 0


def test_log_tau_from_abross_and_shape_errors():
    atm = _atm(abross=np.full(4, 2.0))
    np.testing.assert_allclose(atm.log_tau_ross, np.log10(2.0 * atm.rhox))
    with pytest.raises(ValueError, match="shape"):
        _atm(n_e=np.ones(3))
    with pytest.raises(ValueError):
        _atm(n=0)


def test_finite_layers_trims_padding_only():
    t = np.array([np.nan, 4000.0, 5000.0, np.nan])
    atm = _atm(temperature=t).finite_layers()
    assert atm.n_layers == 2
    with pytest.raises(ValueError, match="between"):
        _atm(temperature=np.array([4000.0, np.nan, 5000.0, 6000.0])).finite_layers()
