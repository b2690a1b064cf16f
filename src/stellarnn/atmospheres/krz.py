"""SME ``.krz`` model files: writer and reader.

Layout (SME's KRZ, as written by the MARCS/ATLAS -> krz converters distributed with SME):

1. a title line;
2. ``T EFF=<teff> GRAV=<logg> MODEL TYPE= 0 WLSTD= 5000`` (type 0: depth scale RHOX,
   plane-parallel);
3. 20 opacity switches followed by ``- OPACITY SWITCHES``;
4. ten lines holding 100 numbers: the 99 abundances in SME's convention (elements 1 and 2:
   N/N_tot, linear; 3..99: log10 N/N_tot, -20 for absent) followed by the number of layers;
5. one row per layer: ``RHOX, T, XNE, XNA, RHO`` (comma separated; g cm^-2, K, cm^-3, cm^-3, g cm^-3).

PySME 1.2.0's ``pysme.atmosphere.krzfile.KrzFile`` chooses between this layout and an
ATLAS9 deck by looking for the substring "MARCS" in the first two lines; our title therefore
names the layout ("SME krz layout of MARCS models") while saying that the model is ATLAS9.
Known quirk of that reader (not of the file): it exponentiates the He entry and then treats
the pattern as logarithmic, so ``KrzFile(...).abund`` has a wrong He abundance; it is not used
for synthesis (PySME takes abundances from ``sme.abund``), but set ``sme.abund`` yourself.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .abundances import kurucz_abundances
from .model import Atmosphere

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[Ee][+-]?\d+)?"
OPACITY_SWITCHES = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0)


class KrzFormatError(ValueError):
    """A file that is not a readable KRZ model."""


def sme_abundances(m_h: float) -> np.ndarray:
    """The 99 SME-convention abundances of the scaled-solar GS98 mixture at [M/H].

    Elements 1, 2: N/N_tot (linear); 3..99: log10(N/N_tot) of the scaled mixture, -20 when absent.
    """
    ab = kurucz_abundances(m_h)  # metals relative to the *solar* N_tot, before scaling
    from .abundances import LIGHT_NUMBER, METAL_NUMBER

    n_tot_ratio = (LIGHT_NUMBER + 10.0 ** m_h * METAL_NUMBER) / (LIGHT_NUMBER + METAL_NUMBER)
    out = ab.copy()
    metals = ab[2:] > -19.99
    out[2:][metals] = ab[2:][metals] + m_h - np.log10(n_tot_ratio)
    return out


def write_krz(atmosphere: Atmosphere, path, title: str | None = None) -> Path:
    """Write one atmosphere as an SME ``.krz`` file (depth scale RHOX, plane-parallel).

    XNA and RHO are :attr:`Atmosphere.n_atoms` and :attr:`Atmosphere.density` (molecules neglected;
    see there).  Only finite layers are written (NaN padding of batched results is dropped).
    The header carries VTURB (the model's, else the grid decks' at its [M/H],
    :func:`stellarnn.atmospheres.grid.deck_vturb`) and the grid's mixing length L/H = 1.25 (Castelli &
    Kurucz 2003); the abundances are the full 99-element table of the scaled-solar mixture
    (:func:`sme_abundances`).

    Parameters
    ----------
    atmosphere : Atmosphere
        A single atmosphere (index a batch first).
    path : str or Path
    title : str, optional
        Free text for the first line (the layout tag is always added).
    """
    atm = atmosphere.numpy()
    if atm.batched:
        raise ValueError("write_krz writes one atmosphere; index the batch first (atm[i])")
    atm = atm.finite_layers()
    if not np.all(np.diff(atm.rhox) > 0):
        raise ValueError("rhox must increase strictly with depth to write a KRZ model")
    xna, rho = np.asarray(atm.n_atoms), np.asarray(atm.density)
    if np.any(xna <= 0) or np.any(rho <= 0):
        raise ValueError("non-positive XNA/RHO: P_gas/(kT) - n_e <= 0 in some layer")
    if atm.vturb is not None:
        vt = float(np.median(atm.vturb)) / 1e5
    else:
        from .grid import deck_vturb

        vt = deck_vturb(float(atm.m_h)) / 1e5
    text = title or f"ATLAS9 [M/H]={atm.m_h:+.3f} VTURB={vt:.1f} km/s L/H=1.25 {atm.source}".strip()
    lines = [f"{text} | stellarnn; SME krz layout of MARCS models",
             f"T EFF={atm.teff:8.1f} GRAV={atm.logg:6.3f} MODEL TYPE= 0 WLSTD= 5000 PLANE-PARALLEL. [M/H]={atm.m_h:+.3f}",
             " " + " ".join(str(s) for s in OPACITY_SWITCHES) + " - OPACITY SWITCHES"]
    values = list(sme_abundances(float(atm.m_h))) + [atm.n_layers]
    for row in range(10):
        chunk = values[10 * row: 10 * row + 10]
        lines.append(" " + " ".join(f"{v:.6f}" if i + 10 * row < 2 else
                                    (f"{int(v)}" if i + 10 * row == 99 else f"{v:.3f}")
                                    for i, v in enumerate(chunk)))
    for i in range(atm.n_layers):
        lines.append(f" {atm.rhox[i]:.8E}, {atm.temperature[i]:9.2f}, {atm.n_e[i]:.6E}, "
                     f"{xna[i]:.6E}, {rho[i]:.6E}")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_krz(path) -> dict:
    """Read an SME ``.krz`` file (our writer's output or SME's).

    Returns
    -------
    dict with teff, logg, model_type, abundances (99,), rhox, temperature, n_e, n_atoms, density
    (cgs arrays), and vturb_kms (the ``VTURB=`` of the header lines, None when absent).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no KRZ file at {path}")
    lines = path.read_text().splitlines()
    if len(lines) < 14:
        raise KrzFormatError(f"{path}: too short for a KRZ model")
    head = lines[1].upper()
    teff = re.search(r"T ?EFF=\s*(" + _NUMBER + ")", head)
    grav = re.search(r"GRAV=\s*(" + _NUMBER + ")", head)
    mtype = re.search(r"MODEL TYPE=\s*(\d)", head)
    if not (teff and grav and mtype):
        raise KrzFormatError(f"{path}: line 2 lacks 'T EFF=', 'GRAV=' or 'MODEL TYPE='")
    numbers = np.array(" ".join(lines[3:13]).split(), dtype=float)
    if numbers.size != 100:
        raise KrzFormatError(f"{path}: lines 4-13 must hold 99 abundances and the layer count, got {numbers.size}")
    n = int(numbers[-1])
    table = np.array([[float(v) for v in ln.split(",")[:5]] for ln in lines[13:13 + n]])
    if table.shape != (n, 5):
        raise KrzFormatError(f"{path}: expected {n} rows of 5 values, got {table.shape}")
    vturb = re.search(r"VTURB=\s*(" + _NUMBER + ")", (lines[0] + " " + lines[1]).upper())
    return {"teff": float(teff.group(1)), "logg": float(grav.group(1)), "model_type": int(mtype.group(1)),
            "vturb_kms": float(vturb.group(1)) if vturb else None,
            "abundances": numbers[:99], "rhox": table[:, 0], "temperature": table[:, 1],
            "n_e": table[:, 2], "n_atoms": table[:, 3], "density": table[:, 4]}
