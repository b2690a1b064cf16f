"""The Cannon (Ness et al. 2015): a quadratic, per-pixel, data-driven label model, the classic peer of the networks;
:mod:`.routed`: one Cannon per stellar population, routed by a global one (the fair peer)."""
from .model import CannonLabels, CannonModel, n_coefficients, quadratic_design
from .routed import RoutedCannon, RoutedCannonLabels, region_masks

__all__ = ["CannonLabels", "CannonModel", "RoutedCannon", "RoutedCannonLabels", "n_coefficients",
           "quadratic_design", "region_masks"]
