"""APOGEENet III label pipeline: network, preprocessing, noise-draw uncertainties, flags, training."""
from .network import APOGEENET_FULL, APOGEENET_MEDIUM, APOGEENET_SIZES, APOGEENET_SMALL, APOGEENetResNet
from .pipeline import APOGEENetPipeline

__all__ = ["APOGEENET_FULL", "APOGEENET_MEDIUM", "APOGEENET_SIZES", "APOGEENET_SMALL", "APOGEENetResNet",
           "APOGEENetPipeline"]
