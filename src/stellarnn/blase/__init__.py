"""stellarnn.blase: sparse, auto-differentiable line-by-line spectral models (Gully-Santiago & Morley
2022, ApJ 941, 200): line finder, pseudo-Voigt/Voigt line model, extrinsic and instrumental models,
clone and transfer fitting, line tables."""
from .api import Clone, Transfer, clone, transfer
from .fitting import CloneResult, TransferModel, TransferResult, clone_spectrum, clone_to_air, transfer_spectrum
from .line_finder import LineGuesses, find_lines
from .line_model import LineModel

__all__ = ["Clone", "Transfer", "clone", "transfer", "CloneResult", "TransferModel", "TransferResult",
           "clone_spectrum", "clone_to_air", "transfer_spectrum", "LineGuesses", "find_lines", "LineModel"]
