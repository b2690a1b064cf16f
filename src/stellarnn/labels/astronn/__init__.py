"""AstroNN (ApogeeBCNNCensored) label pipeline: network, preprocessing, loss, MC dropout, flags, training."""
from .network import ASTRONN_FULL, OUTPUT_LABELS, ApogeeBCNNCensored, build_astronn
from .pipeline import AstroNNPipeline

__all__ = ["ASTRONN_FULL", "OUTPUT_LABELS", "ApogeeBCNNCensored", "build_astronn", "AstroNNPipeline"]
