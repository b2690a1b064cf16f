"""Line table export: centre, depth, FWHM, equivalent width (and the raw line parameters).

Formats: FITS binary table (units and descriptions in the header), CSV or ``.npz``. Units: Angstrom
for every length; depth dimensionless.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .line_model import LineModel

COLUMNS = {
    "centre_angstrom": ("Angstrom", "line centre"),
    "depth": ("", "central depth of the line alone, 1 - F(centre)"),
    "fwhm_angstrom": ("Angstrom", "full width at half maximum of the profile"),
    "equivalent_width_angstrom": ("Angstrom", "equivalent width, integral of 1 - F over the line window"),
    "amplitude_angstrom": ("Angstrom", "amplitude a of the area-normalised profile"),
    "sigma_angstrom": ("Angstrom", "Gaussian standard deviation"),
    "gamma_angstrom": ("Angstrom", "Lorentzian half width at half maximum"),
}


def write_line_table(model: LineModel, path: str | Path) -> Path:
    """Write ``model.line_table()`` to ``.fits``, ``.csv`` or ``.npz`` (chosen by suffix)."""
    path = Path(path)
    table = model.line_table()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, profile=model.profile, form=model.form, **table)
    elif path.suffix == ".csv":
        names = list(COLUMNS)
        data = np.column_stack([table[n] for n in names])
        np.savetxt(path, data, delimiter=",", header=",".join(names), comments="", fmt="%.10g")
    elif path.suffix in (".fits", ".fit"):
        from astropy.io import fits

        cols = [fits.Column(name=n, format="D", unit=u or None, array=table[n]) for n, (u, _d) in COLUMNS.items()]
        hdu = fits.BinTableHDU.from_columns(cols)
        for i, (_n, (_u, desc)) in enumerate(COLUMNS.items(), start=1):
            hdu.header[f"TCOMM{i}"] = desc
        hdu.header["PROFILE"] = model.profile
        hdu.header["FORM"] = model.form
        hdu.writeto(path, overwrite=True)
    else:
        raise ValueError(f"{path}: line table must be .fits, .csv or .npz")
    return path


def read_line_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read a table written by :func:`write_line_table` back into arrays."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: np.asarray(data[k]) for k in COLUMNS}
    if path.suffix == ".csv":
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        return {k: data[:, i] for i, k in enumerate(COLUMNS)}
    from astropy.io import fits

    with fits.open(path) as hdul:
        return {k: np.asarray(hdul[1].data[k], dtype=np.float64) for k in COLUMNS}
