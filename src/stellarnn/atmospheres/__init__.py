"""stellarnn.atmospheres: model-atmosphere grids (ATLAS9), readers/writers for PySME, tau_Ross
resampling, SVD basis, the iNNterpol emulator and its linear baseline."""
from .emulator import Innterpol, InnterpolMLP
from .grid import COLUMNS, AtmosphereGrid
from .krz import read_krz, write_krz
from .kurucz import read_kurucz, write_kurucz
from .linear import MultilinearInterpolator, OutOfGridError
from .model import Atmosphere
from .resample import QUANTITIES, TauSampledGrid, atlas9_tau_grid
from .svd import SVDBasis, reconstruction_error
from .tau import ATLAS9_LOG_TAU, INNTERPOL_LOG_TAU, resample_log_tau, rosseland_optical_depth

__all__ = ["Atmosphere", "AtmosphereGrid", "COLUMNS", "Innterpol", "InnterpolMLP", "MultilinearInterpolator",
           "OutOfGridError", "QUANTITIES", "SVDBasis", "TauSampledGrid", "atlas9_tau_grid", "reconstruction_error",
           "read_krz", "write_krz", "read_kurucz", "write_kurucz", "ATLAS9_LOG_TAU", "INNTERPOL_LOG_TAU",
           "resample_log_tau", "rosseland_optical_depth"]
