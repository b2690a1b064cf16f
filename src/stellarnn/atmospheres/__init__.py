"""stellarnn.atmospheres: model-atmosphere grids (ATLAS9), readers/writers for PySME, tau_Ross
resampling, SVD basis, the iNNterpol emulator and its linear baseline."""
from .grid import COLUMNS, AtmosphereGrid
from .krz import read_krz, write_krz
from .kurucz import read_kurucz, write_kurucz
from .linear import MultilinearInterpolator, OutOfGridError
from .model import Atmosphere

__all__ = ["Atmosphere", "AtmosphereGrid", "COLUMNS", "MultilinearInterpolator", "OutOfGridError",
           "read_krz", "write_krz", "read_kurucz", "write_kurucz"]
