"""Kurucz / ATLAS9 ``.mod`` decks: reader and writer.

Format (Kurucz 1970, SAO Special Report 309; Castelli & Kurucz 2003): header cards
``TEFF ... GRAVITY ... LTE``, ``TITLE [M/H] VTURB=..``, ``OPACITY IFOP ...``,
``CONVECTION ...``, ``ABUNDANCE SCALE s ABUNDANCE CHANGE 1 N_H/N_tot 2 N_He/N_tot``,
``ABUNDANCE CHANGE Z log10(N_Z/N_tot) ...`` cards, then ``READ DECK6 n RHOX,T,P,XNE,ABROSS,
ACCRAD,VTURB[, FLXCNV,VCONV,VELSND]`` and ``n`` rows, ending with ``PRADK`` and ``BEGIN``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .abundances import kurucz_abundances
from .model import Atmosphere

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?"


class KuruczFormatError(ValueError):
    """A file that is not a readable ATLAS9 deck."""


def read_kurucz(path) -> Atmosphere:
    """Read an ATLAS9/Kurucz model deck.

    Parameters
    ----------
    path : str or Path
        The ``.mod``/``.dat`` file.

    Returns
    -------
    Atmosphere
        rhox, temperature, p_gas, n_e, abross, accrad, vturb (cgs, as in the deck); teff and logg
        from the first card; m_h = log10(ABUNDANCE SCALE) (the deck's metal scaling).

    Raises
    ------
    FileNotFoundError, KuruczFormatError
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Kurucz deck at {path}")
    lines = path.read_text(errors="replace").splitlines()
    text = "\n".join(lines[:40])
    teff = re.search(r"TEFF\s+(" + _NUMBER + ")", text)
    grav = re.search(r"GRAVITY\s+(" + _NUMBER + ")", text)
    scale = re.search(r"ABUNDANCE SCALE\s+(" + _NUMBER + ")", text)
    if teff is None or grav is None:
        raise KuruczFormatError(f"{path}: no 'TEFF ... GRAVITY ...' card; not an ATLAS9 deck")
    deck_line = next((i for i, ln in enumerate(lines) if ln.strip().startswith("READ DECK6")), None)
    if deck_line is None:
        raise KuruczFormatError(f"{path}: no 'READ DECK6' card; not an ATLAS9 deck")
    try:
        n_layers = int(lines[deck_line].split()[2])
    except (IndexError, ValueError) as exc:
        raise KuruczFormatError(f"{path}: cannot read the number of layers on '{lines[deck_line].strip()}'") from exc
    rows = []
    for ln in lines[deck_line + 1: deck_line + 1 + n_layers]:
        try:
            rows.append([float(v.replace("D", "E")) for v in ln.split()[:7]])
        except ValueError as exc:
            raise KuruczFormatError(f"{path}: bad layer row '{ln.strip()}'") from exc
    table = np.array(rows) if rows else np.empty((0, 7))
    if table.shape != (n_layers, 7):
        raise KuruczFormatError(f"{path}: expected {n_layers} rows of at least 7 numbers, got {table.shape}")
    m_h = float(np.log10(float(scale.group(1)))) if scale else 0.0
    return Atmosphere(rhox=table[:, 0], temperature=table[:, 1], p_gas=table[:, 2], n_e=table[:, 3],
                      abross=table[:, 4], accrad=table[:, 5], vturb=table[:, 6],
                      teff=float(teff.group(1)), logg=float(grav.group(1)), m_h=m_h,
                      source=str(path))


def read_kurucz_abundances(path) -> np.ndarray:
    """The 99 entries of a deck's ``ABUNDANCE CHANGE`` cards (ATLAS9 convention, before ABUNDANCE SCALE).

    Entries 1, 2: N_H/N_tot, N_He/N_tot; 3..99: log10(N_X/N_tot), -20 for absent.  Elements without a
    card are NaN.

    Raises
    ------
    FileNotFoundError, KuruczFormatError
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Kurucz deck at {path}")
    out = np.full(99, np.nan)
    found = False
    for line in path.read_text(errors="replace").splitlines():
        if line.strip().startswith("READ DECK6"):
            break
        if "ABUNDANCE CHANGE" not in line:
            continue
        found = True
        tokens = line.split("ABUNDANCE CHANGE", 1)[1].split()
        if len(tokens) % 2:
            raise KuruczFormatError(f"{path}: odd number of entries on '{line.strip()}'")
        for z, value in zip(tokens[::2], tokens[1::2]):
            try:
                out[int(z) - 1] = float(value)
            except (ValueError, IndexError) as exc:
                raise KuruczFormatError(f"{path}: bad abundance card '{line.strip()}'") from exc
    if not found:
        raise KuruczFormatError(f"{path}: no ABUNDANCE CHANGE cards")
    return out


def write_kurucz(atmosphere: Atmosphere, path, title: str | None = None) -> Path:
    """Write a single atmosphere as an ATLAS9 deck (readable by PySME's ``KrzFile`` and ATLAS9).

    Columns RHOX, T, P, XNE, ABROSS, ACCRAD, VTURB are written; FLXCNV, VCONV and VELSND are
    not known and written as 0.  When ``abross`` is absent (emulated atmospheres on a tau
    scale) it is recovered as ``d tau_Ross / d RHOX`` by finite differences of the depth
    scale (:func:`numpy.gradient`); ACCRAD absent -> 0; VTURB absent -> the VTURB of the grid's decks at
    the model's [M/H] (:func:`stellarnn.atmospheres.grid.deck_vturb`: 0 at [M/H] = 0, 2 km/s elsewhere).
    The abundances are the scaled-solar GS98 mixture with ``ABUNDANCE SCALE = 10**[M/H]``, all 99
    elements (:func:`stellarnn.atmospheres.abundances.kurucz_abundances`).
    """
    atm = atmosphere.numpy()
    if atm.batched:
        raise ValueError("write_kurucz writes one atmosphere; index the batch first (atm[i])")
    atm = atm.finite_layers()
    n = atm.n_layers
    if atm.abross is not None:
        abross = atm.abross
    elif atm.log_tau_ross is not None:
        abross = np.gradient(10.0 ** atm.log_tau_ross, atm.rhox)
    else:
        raise ValueError("need abross or log_tau_ross to write an ATLAS9 deck")
    accrad = atm.accrad if atm.accrad is not None else np.zeros(n)
    if atm.vturb is not None:
        vturb = atm.vturb
    else:
        from .grid import deck_vturb

        vturb = np.full(n, deck_vturb(float(atm.m_h)))
    ab = kurucz_abundances(float(atm.m_h))
    out = [f"TEFF {atm.teff:7.0f}.  GRAVITY {atm.logg:7.5f} LTE ",
           f"TITLE {title or f'[{atm.m_h:+.2f}] VTURB={np.median(vturb) / 1e5:.1f} L/H=1.25 written by stellarnn'}",
           " OPACITY IFOP 1 1 1 1 1 1 1 1 1 1 1 1 1 0 1 0 0 0 0 0",
           " CONVECTION ON   1.25 TURBULENCE OFF  0.00  0.00  0.00  0.00",
           f"ABUNDANCE SCALE {10.0 ** atm.m_h:9.5f} ABUNDANCE CHANGE 1 {ab[0]:.5f} 2 {ab[1]:.5f}"]
    for start in range(2, 99, 6):
        cards = " ".join(f"{z + 1:2d} {ab[z]:6.2f}" for z in range(start, min(start + 6, 99)))
        out.append(f" ABUNDANCE CHANGE {cards}")
    out.append(f"READ DECK6 {n} RHOX,T,P,XNE,ABROSS,ACCRAD,VTURB, FLXCNV,VCONV,VELSND")
    for i in range(n):
        out.append(f"{atm.rhox[i]:15.8E} {atm.temperature[i]:8.1f} {atm.p_gas[i]:9.3E} {atm.n_e[i]:9.3E} "
                   f"{abross[i]:9.3E} {accrad[i]:9.3E} {vturb[i]:9.3E} 0.000E+00 0.000E+00 0.000E+00")
    out += ["PRADK 0.0000E+00", "BEGIN                    ITERATION  15 COMPLETED", ""]
    path = Path(path)
    path.write_text("\n".join(out))
    return path
