"""The Cannon (Ness et al. 2015): a quadratic, per-pixel, data-driven label model, the classic peer of the networks."""
from .model import CannonLabels, CannonModel, n_coefficients, quadratic_design

__all__ = ["CannonLabels", "CannonModel", "n_coefficients", "quadratic_design"]
