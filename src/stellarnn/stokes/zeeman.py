"""Zeeman patterns of spectral lines from their quantum numbers (LS coupling).

Landé factors, Wigner 3j symbols and the relative strengths and shifts of the Zeeman
components, following Landi Degl'Innocenti & Landolfi (2004, "Polarization in Spectral Lines",
hereafter LL04), §3.1–3.4:

* Landé factor of an LS level (LL04 eq. 3.8):
  g = 1 + [J(J+1) + S(S+1) − L(L+1)] / [2J(J+1)]   (g = 0 by convention for J = 0).
* Effective Landé factor (LL04 eq. 3.44):
  ḡ = ½(g_u + g_l) + ¼(g_u − g_l)[J_u(J_u+1) − J_l(J_l+1)].
* Component M_u → M_l with q = M_l − M_u ∈ {−1, 0, +1} has the strength (LL04 eq. 3.14)
  S = 3 (J_u J_l 1; −M_u M_l −q)², normalised so that each of the three groups sums to 1, and the
  wavelength shift −Δλ_B (g_u M_u − g_l M_l), where Δλ_B = 4.6686e-13 λ0² B (Å, λ0 in Å, B in G)
  (LL04 eq. 3.10; a higher upper-level energy means a shorter wavelength).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: Δλ_B / (λ0² B) in Å⁻¹ G⁻¹ (e/(4π m_e c²), LL04 eq. 3.10)
LARMOR_WAVELENGTH_CONSTANT = 4.6686e-13

_ORBITAL_LETTERS = "SPDFGHIKLMNOQRTUV"


def _as_half_integer(x, name: str) -> Fraction:
    f = Fraction(x).limit_denominator(2)
    if f * 2 != int(f * 2) or abs(float(f) - float(x)) > 1e-9:
        raise ValueError(f"{name} = {x} is not an integer or half-integer")
    return f


@dataclass(frozen=True)
class Term:
    """An LS-coupling level ^(2S+1)L_J.

    Parameters
    ----------
    spin : float  (S, integer or half-integer)
    orbital : int (L)
    total : float (J, ``|L − S| ≤ J ≤ L + S``)
    """

    spin: float
    orbital: int
    total: float

    def __post_init__(self):
        s = _as_half_integer(self.spin, "S")
        j = _as_half_integer(self.total, "J")
        if s < 0 or self.orbital < 0 or j < 0:
            raise ValueError("quantum numbers must be non-negative")
        if not (abs(self.orbital - s) <= j <= self.orbital + s):
            raise ValueError(f"J = {self.total} is not allowed for S = {self.spin}, L = {self.orbital}")
        if (j - s).denominator != 1:
            raise ValueError("J − S must be an integer")

    @classmethod
    def parse(cls, label: str) -> "Term":
        """Parse a label such as ``"5P2"``, ``"5D0"`` or ``"2P3/2"`` (multiplicity, L letter, J)."""
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z])\s*(\d+(?:/2)?)\s*", label)
        if match is None:
            raise ValueError(f"cannot parse term label {label!r} (expected e.g. '5P2')")
        mult, letter, j = match.groups()
        letter = letter.upper()
        if letter not in _ORBITAL_LETTERS:
            raise ValueError(f"unknown orbital letter {letter!r} in {label!r}")
        total = float(Fraction(j))
        return cls(spin=(int(mult) - 1) / 2, orbital=_ORBITAL_LETTERS.index(letter), total=total)

    @property
    def lande(self) -> float:
        """LS-coupling Landé factor (LL04 eq. 3.8); 0 for J = 0."""
        j, s, l_ = self.total, self.spin, self.orbital
        if j == 0:
            return 0.0
        return 1.0 + (j * (j + 1) + s * (s + 1) - l_ * (l_ + 1)) / (2.0 * j * (j + 1))


def wigner_3j(j1, j2, j3, m1, m2, m3) -> float:
    """Wigner 3j symbol (j1 j2 j3; m1 m2 m3) by the Racah formula (Edmonds 1957, eq. 3.7.3).

    Arguments are integers or half-integers; returns 0 when the selection rules fail.
    """
    j1, j2, j3, m1, m2, m3 = (_as_half_integer(x, "argument") for x in (j1, j2, j3, m1, m2, m3))
    if m1 + m2 + m3 != 0:
        return 0.0
    if any(abs(m) > j for m, j in ((m1, j1), (m2, j2), (m3, j3))):
        return 0.0
    if not (abs(j1 - j2) <= j3 <= j1 + j2):
        return 0.0
    for j, m in ((j1, m1), (j2, m2), (j3, m3)):
        if (j - m).denominator != 1:
            return 0.0
    if (j1 + j2 + j3).denominator != 1:
        return 0.0

    def fact(x: Fraction) -> int:
        return math.factorial(int(x))

    triangle = Fraction(fact(j1 + j2 - j3) * fact(j1 - j2 + j3) * fact(-j1 + j2 + j3), fact(j1 + j2 + j3 + 1))
    norm = (fact(j1 + m1) * fact(j1 - m1) * fact(j2 + m2) * fact(j2 - m2) * fact(j3 + m3) * fact(j3 - m3))
    k_min = int(max(0, j2 - j3 - m1, j1 - j3 + m2))
    k_max = int(min(j1 + j2 - j3, j1 - m1, j2 + m2))
    total = Fraction(0)
    for k in range(k_min, k_max + 1):
        denom = (math.factorial(k) * fact(j3 - j2 + k + m1) * fact(j3 - j1 + k - m2) * fact(j1 + j2 - j3 - k)
                 * fact(j1 - k - m1) * fact(j2 - k + m2))
        total += Fraction((-1) ** k, denom)
    sign = -1 if int(j1 - j2 - m3) % 2 else 1
    return float(sign * total) * math.sqrt(float(triangle) * norm)


@dataclass(frozen=True)
class ZeemanPattern:
    """Components of a Zeeman pattern.

    Attributes
    ----------
    shift : (n,) array
        g_u M_u − g_l M_l of each component; the wavelength shift is −shift·Δλ_B.
    strength : (n,) array
        Relative strengths, summing to 1 within each group.
    delta_m : (n,) int array
        M_u − M_l: 0 (π), +1 (σ "blue": shifted blueward when ḡ > 0), −1 (σ "red").
    """

    shift: np.ndarray
    strength: np.ndarray
    delta_m: np.ndarray


def zeeman_pattern(lower: Term, upper: Term) -> ZeemanPattern:
    """All allowed components (non-zero strength) of the transition lower ↔ upper (LL04 eq. 3.14)."""
    if abs(upper.total - lower.total) > 1 or (upper.total == 0 and lower.total == 0):
        raise ValueError("not an electric-dipole transition (|ΔJ| ≤ 1, not 0 → 0)")
    shifts, strengths, dms = [], [], []
    m_u = -upper.total
    while m_u <= upper.total + 1e-9:
        for dm in (-1, 0, 1):
            m_l = m_u - dm
            if abs(m_l) > lower.total + 1e-9:
                continue
            q = m_l - m_u
            s = 3.0 * wigner_3j(upper.total, lower.total, 1, -m_u, m_l, -q) ** 2
            if s > 1e-14:
                shifts.append(upper.lande * m_u - lower.lande * m_l)
                strengths.append(s)
                dms.append(dm)
        m_u += 1
    return ZeemanPattern(np.array(shifts), np.array(strengths), np.array(dms, dtype=np.int64))


def effective_lande(lower: Term, upper: Term) -> float:
    """ḡ = ½(g_u + g_l) + ¼(g_u − g_l)[J_u(J_u+1) − J_l(J_l+1)] (LL04 eq. 3.44)."""
    gu, gl = upper.lande, lower.lande
    ju, jl = upper.total, lower.total
    return 0.5 * (gu + gl) + 0.25 * (gu - gl) * (ju * (ju + 1) - jl * (jl + 1))


@dataclass(frozen=True)
class SpectralLine:
    """An atomic line for the Milne-Eddington model.

    Parameters
    ----------
    name : str
    wavelength : float, Å (air)
    lower, upper : Term
    log_gf : float
    excitation_ev : float, lower-level excitation potential in eV
    """

    name: str
    wavelength: float
    lower: Term
    upper: Term
    log_gf: float
    excitation_ev: float

    @property
    def pattern(self) -> ZeemanPattern:
        return zeeman_pattern(self.lower, self.upper)

    @property
    def effective_lande(self) -> float:
        return effective_lande(self.lower, self.upper)


#: Fe I 6301.5012 Å, z⁵P°₂ – e⁵D₂ (ḡ = 1.67 in LS coupling). log gf from NIST ASD (−0.718).
FE_I_6301 = SpectralLine("Fe I 6301.5", 6301.5012, Term.parse("5P2"), Term.parse("5D2"),
                         log_gf=-0.718, excitation_ev=3.654)
#: Fe I 6302.4936 Å, z⁵P°₁ – e⁵D₀ (ḡ = 2.5 in LS coupling; 2.49 measured). log gf from NIST ASD (−1.165).
FE_I_6302 = SpectralLine("Fe I 6302.5", 6302.4936, Term.parse("5P1"), Term.parse("5D0"),
                         log_gf=-1.165, excitation_ev=3.686)
HINODE_LINES = (FE_I_6301, FE_I_6302)
