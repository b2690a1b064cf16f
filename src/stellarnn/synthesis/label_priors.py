"""Label priors of the synthetic APOGEE grids: the old uniform box and an APOGEE-like population.

:class:`LabelPrior` (``--prior box``) is the uniform 21-dimensional box the grids ``train``, ``train2``,
``train3``, ``test`` and ``calib`` were drawn from.  Only ~16 % of its stars look like the FGK giants
APOGEE observes most, and its 17 [X/M] are independent.

:class:`ApogeeLikePrior` (``--prior apogee-like``) draws stars along the sequences of the Kiel diagram
that APOGEE samples, with a Galactic metallicity distribution, abundance trends and broadening labels,
plus a broad component over the old box so that nothing falls off the edge.  It is an analytic model
(no isochrone table ships in a registry package we may fetch from); each relation below names its
source.  Its parts, with their weights:

- ``rgb`` (0.34): red-giant branch, log g in [0.3, 3.6] with density rising to the lower branch
  (p(log g) ∝ exp(0.7 log g): stars spend longer low on the branch); Teff on a straight line through the
  solar-metallicity RGB of the APOGEE DR17 Kiel diagram (Abdurro'uf et al. 2022, ApJS 259, 35, fig. of the
  ASPCAP parameters): Teff = 4600 K + 360 K (log g - 2.4) - 300 K [M/H], scatter 60 K (mass spread).  The
  metallicity slope (metal-poor branches are hotter) is that of the PARSEC isochrones (Bressan et al. 2012,
  MNRAS 427, 127) between [M/H] = 0 and -1.
- ``red_clump`` (0.12): log g ~ N(2.45, 0.12), Teff ~ N(4750 - 250 [M/H], 70) K, the APOGEE red-clump
  locus (Bovy et al. 2014, ApJ 790, 127: 1.8 <= log g <= 3.0, Teff 4500-5200 K at solar metallicity).
- ``agb`` (0.04): early AGB, log g uniform in [0.3, 2.2], 80 K hotter than the RGB at the same log g.
- ``dwarfs`` (0.25): main sequence, Teff uniform in 3500-7300 K; log g of the zero-age sequence
  interpolated through (3500, 4.95), (4000, 4.75), (4500, 4.65), (5000, 4.60), (5800, 4.45), (6500, 4.30),
  (7300, 4.20) (our approximation of the dwarf sequence of Pecaut & Mamajek 2013, ApJS 208, 9), lowered
  by evolution: Δlog g = -u² × Δmax with u uniform, Δmax 0.1 below 5000 K (K and M dwarfs barely evolve
  in a Hubble time) rising linearly to 0.45 at 6000 K and above; scatter 0.05 dex.
- ``subgiants`` (0.03): Teff uniform in 4900-6300 K, log g uniform in 3.4-4.0.
- ``broad`` (0.22 >= 20 %): the old box (:class:`LabelPrior`): uniform Teff, log g, [M/H], independent
  [X/M] in ±0.5, kept when plausible.

Metallicity (all but ``broad``): a thin disc N(-0.10, 0.22) (weight 0.70), thick disc N(-0.55, 0.25) (0.22)
and halo N(-1.5, 0.45) (0.08), redrawn outside [-2.5, 0.5].  The thin disc peaks near solar in the APOGEE
metallicity distribution (Hayden et al. 2015, ApJ 808, 132); the thick disc's mean near -0.5 follows
Bensby et al. (2014, A&A 562, A71), the inner halo's -1.5 Carollo et al. (2010, ApJ 712, 692).  Most stars
then have -1 < [M/H] < 0.4, with a tail to -2.5.

Abundances [X/M] (all but ``broad``): the two APOGEE α sequences (Hayden et al. 2015; Weinberg et al. 2019,
ApJ 874, 102).  Thin-disc stars: [α/M] = -0.15 [M/H] clipped to [-0.05, 0.15]; thick disc and halo:
0.30 below [M/H] = -0.8, falling linearly to 0.10 at +0.1.  Each α element carries an amplitude of that
trend: O 1.0, Mg 1.0, Si 0.7, S 0.8, Ca 0.6, Ti 0.6; Al 0.7 (Al follows the high-α sequence in APOGEE,
Weinberg et al. 2019), K 0.5.  Mn falls at low metallicity: [Mn/M] = 0.25 min([M/H], 0) (Battistini &
Bensby 2015, A&A 577, A9).  Giants show the first dredge-up: [C/M] -0.2 and [N/M] +0.3 on the RGB, -0.25
and +0.4 in the clump and on the AGB (Martig et al. 2016, MNRAS 456, 3655; Shetrone et al. 2019, ApJ 872,
137).  Every [X/M] then gets Gaussian scatter of 0.05 dex (0.08 for Na, P, K, V, Co, whose APOGEE lines are
weak) and is clipped to [-0.8, 0.8].

Broadening (all parts): v_micro from the APOGEE relation for giants (Holtzman et al. 2018,
:func:`~stellarnn.synthesis.pysme_driver.microturbulence_apogee`) and from Tsantaki et al. (2013, A&A 555,
A150) for dwarfs, v_micro = 6.932e-4 Teff - 0.348 log g - 1.437 km/s, each with 0.15 km/s scatter and
clipped to 0.3-4 km/s; v_macro for dwarfs from Doyle et al. (2014, MNRAS 444, 3592),
3.21 + 2.33e-3 (Teff - 5777) + 2.00e-6 (Teff - 5777)^2 - 2.00 (log g - 4.44) km/s, evaluated at
max(Teff, 5200 K) (its range of validity starts there), and for giants log-normal around 4 km/s (25 %),
the 3-6 km/s of K giants (Gray 2005, The Observation and Analysis of Stellar Photospheres, 3rd ed., ch. 17);
v sin i: below 6200 K half-normal with σ = 2 km/s (dwarfs) or 1.5 km/s (giants), with 2 % of giants
rapid rotators (uniform 5-20 km/s; Carlberg et al. 2011, ApJ 732, 39); at and above 6200 K, above the
Kraft break (Kraft 1967, ApJ 150, 551), log-normal around 12 km/s with a factor-2 scatter, at most
60 km/s.  ``broad`` stars get the same broadening relations.

With ``stratify=True`` star ``i`` is drawn from the prior conditioned on population
``POPULATIONS[i % 6]`` (:mod:`~stellarnn.synthesis.populations`), so a held-out grid of 600 stars has
100 in each population.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .populations import POPULATIONS, population_of

#: elements whose [X/M] AstroNN reports (Leung & Bovy 2019), Fe set by [M/H]
ASTRONN_ELEMENTS = ("C", "N", "O", "Na", "Mg", "Al", "Si", "P", "S", "K", "Ca", "Ti", "V", "Cr", "Mn", "Co", "Ni")


def microturbulence_apogee(logg):
    """APOGEE DR13 micro-turbulence relation [km/s] (Holtzman et al. 2018, AJ 156, 125, eq. 2):
    log10 v_micro = 0.226 - 0.0228 logg + 0.0297 logg^2 - 0.0113 logg^3."""
    g = np.asarray(logg, dtype=np.float64)
    return 10 ** (0.226 - 0.0228 * g + 0.0297 * g ** 2 - 0.0113 * g ** 3)


def microturbulence_dwarfs(teff, logg):
    """Dwarf micro-turbulence [km/s] (Tsantaki et al. 2013, A&A 555, A150): 6.932e-4 Teff - 0.348 log g - 1.437."""
    return 6.932e-4 * np.asarray(teff, dtype=float) - 0.348 * np.asarray(logg, dtype=float) - 1.437


def macroturbulence_dwarfs(teff, logg):
    """Dwarf macro-turbulence [km/s] (Doyle et al. 2014, MNRAS 444, 3592), Teff floored at 5200 K (its validity)."""
    t = np.maximum(np.asarray(teff, dtype=float), 5200.0) - 5777.0
    return 3.21 + 2.33e-3 * t + 2.00e-6 * t ** 2 - 2.00 * (np.asarray(logg, dtype=float) - 4.44)


#: log g below which the prior's broadening relations treat a star as a giant (the populations' giant edge)
GIANT_LOGG_MAX = 3.5
#: giants' v_macro [km/s], the centre of their log-normal (Gray 2005, ch. 17: 3-6 km/s in K giants)
GIANT_V_MACRO = 4.0
#: the Kraft break [K]: stars at and above it rotate fast (Kraft 1967, ApJ 150, 551)
KRAFT_BREAK_TEFF = 6200.0
#: v sin i above the Kraft break [km/s]: the centre of the log-normal
HOT_V_SINI = 12.0
#: v sin i below the Kraft break [km/s]: sigma of the half-normal for giants and dwarfs
COOL_V_SINI_SIGMA = {"giant": 1.5, "dwarf": 2.0}


def typical_broadening(teff: float, logg: float) -> dict:
    """v_macro and v sin i [km/s] typical of a star in the APOGEE-like prior (module notes), without scatter.

    v_macro: :data:`GIANT_V_MACRO` for giants (log g < :data:`GIANT_LOGG_MAX`), :func:`macroturbulence_dwarfs` for dwarfs; v sin i:
    :data:`HOT_V_SINI` at and above the Kraft break, else the half-normal's sigma (a typical, non-zero value).
    """
    giant = logg < GIANT_LOGG_MAX
    v_macro = GIANT_V_MACRO if giant else float(macroturbulence_dwarfs(teff, logg))
    if teff >= KRAFT_BREAK_TEFF:
        v_sini = HOT_V_SINI
    else:
        v_sini = COOL_V_SINI_SIGMA["giant" if giant else "dwarf"]
    return {"v_macro": v_macro, "v_sini": v_sini}


@dataclass
class LabelPrior:
    """The uniform label box of the first APOGEE grids (``--prior box``): giants and dwarfs, independent [X/M]."""

    teff: tuple[float, float] = (3500.0, 8000.0)
    logg: tuple[float, float] = (0.0, 5.0)
    m_h: tuple[float, float] = (-2.5, 0.5)
    x_m: tuple[float, float] = (-0.5, 0.5)
    v_micro_scatter: float = 0.2  # km/s, Gaussian around the APOGEE relation

    name = "box"

    def plausible(self, teff: float, logg: float) -> bool:
        """Reject hot low-gravity corners where no real stars (and few ATLAS9 models) are:
        log g >= 1.2 (Teff - 5000 K) / 1000 K (0 at 5000 K, 3.6 at 8000 K)."""
        return logg >= 1.2 * (teff - 5000.0) / 1000.0

    def draw(self, rng: np.random.Generator) -> dict:
        """One candidate (teff, logg, m_h, v_micro, x_m); v_macro = v_sini = 0 in this prior."""
        teff = rng.uniform(*self.teff)
        logg = rng.uniform(*self.logg)
        m_h = rng.uniform(*self.m_h)
        x_m = {el: float(rng.uniform(*self.x_m)) for el in ASTRONN_ELEMENTS}
        vmic = float(np.clip(microturbulence_apogee(logg) + self.v_micro_scatter * rng.standard_normal(), 0.3, 4.0))
        return dict(teff=teff, logg=logg, m_h=m_h, v_micro=vmic, x_m=x_m, v_macro=0.0, v_sini=0.0)

    def to_json(self) -> dict:
        return asdict(self)


#: weights of the parts of :class:`ApogeeLikePrior` (module notes)
APOGEE_LIKE_PARTS = {"rgb": 0.34, "red_clump": 0.12, "agb": 0.04, "dwarfs": 0.25, "subgiants": 0.03, "broad": 0.22}
#: amplitude of the α trend per element (module notes)
ALPHA_AMPLITUDE = {"O": 1.0, "Mg": 1.0, "Si": 0.7, "S": 0.8, "Ca": 0.6, "Ti": 0.6, "Al": 0.7, "K": 0.5}
_WEAK_LINE_ELEMENTS = ("Na", "P", "K", "V", "Co")
_ZAMS_TEFF = np.array([3500.0, 4000.0, 4500.0, 5000.0, 5800.0, 6500.0, 7300.0])
_ZAMS_LOGG = np.array([4.95, 4.75, 4.65, 4.60, 4.45, 4.30, 4.20])


@dataclass
class ApogeeLikePrior:
    """APOGEE-like label population (``--prior apogee-like``; module notes give every relation and source).

    Parameters
    ----------
    stratify : bool
        Draw star ``i`` conditioned on population ``POPULATIONS[i % 6]`` (held-out and calibration grids).
    teff, logg, m_h : tuple
        Outer label box (shared with the ``broad`` part); draws outside it are redrawn.
    """

    stratify: bool = False
    teff: tuple[float, float] = (3500.0, 8000.0)
    logg: tuple[float, float] = (0.0, 5.0)
    m_h: tuple[float, float] = (-2.5, 0.5)
    name: str = "apogee-like"

    def plausible(self, teff: float, logg: float) -> bool:
        return LabelPrior.plausible(self, teff, logg)  # the same corner cut as the box

    def _metallicity(self, rng) -> tuple[float, str]:
        while True:
            u = rng.uniform()
            disc = "thin" if u < 0.70 else ("thick" if u < 0.92 else "halo")
            mu, sd = {"thin": (-0.10, 0.22), "thick": (-0.55, 0.25), "halo": (-1.5, 0.45)}[disc]
            m_h = rng.normal(mu, sd)
            if self.m_h[0] <= m_h <= self.m_h[1]:
                return float(m_h), disc

    @staticmethod
    def _abundances(rng, m_h: float, disc: str, part: str) -> dict:
        if disc == "thin":
            alpha = float(np.clip(-0.15 * m_h, -0.05, 0.15))
        else:
            alpha = float(0.30 - 0.20 * np.clip((m_h + 0.8) / 0.9, 0.0, 1.0))
        x_m = {el: 0.0 for el in ASTRONN_ELEMENTS}
        for el, amp in ALPHA_AMPLITUDE.items():
            x_m[el] = amp * alpha
        x_m["Mn"] = 0.25 * min(m_h, 0.0)
        if part == "rgb":
            x_m["C"], x_m["N"] = -0.20, 0.30
        elif part in ("red_clump", "agb"):
            x_m["C"], x_m["N"] = -0.25, 0.40
        for el in ASTRONN_ELEMENTS:
            sd = 0.08 if el in _WEAK_LINE_ELEMENTS else 0.05
            x_m[el] = float(np.clip(x_m[el] + sd * rng.standard_normal(), -0.8, 0.8))
        return x_m

    @staticmethod
    def _rgb_teff(logg: float, m_h: float) -> float:
        return 4600.0 + 360.0 * (logg - 2.4) - 300.0 * m_h

    def _kiel(self, rng, part: str, m_h: float) -> tuple[float, float]:
        if part == "rgb":
            lo, hi, k = 0.3, 3.6, 0.7  # p(log g) ∝ exp(k log g) on [lo, hi], by inverse CDF
            u = rng.uniform()
            logg = np.log(np.exp(k * lo) + u * (np.exp(k * hi) - np.exp(k * lo))) / k
            return self._rgb_teff(logg, m_h) + rng.normal(0, 60.0), logg
        if part == "red_clump":
            return rng.normal(4750.0 - 250.0 * m_h, 70.0), rng.normal(2.45, 0.12)
        if part == "agb":
            logg = rng.uniform(0.3, 2.2)
            return self._rgb_teff(logg, m_h) + 80.0 + rng.normal(0, 60.0), logg
        if part == "subgiants":
            return rng.uniform(4900.0, 6300.0), rng.uniform(3.4, 4.0)
        # dwarfs
        teff = rng.uniform(3500.0, 7300.0)
        dmax = float(np.interp(teff, [5000.0, 6000.0], [0.10, 0.45]))
        logg = np.interp(teff, _ZAMS_TEFF, _ZAMS_LOGG) - rng.uniform() ** 2 * dmax + rng.normal(0, 0.05)
        return teff, float(logg)

    @staticmethod
    def broadening(rng, teff: float, logg: float) -> tuple[float, float, float]:
        """(v_micro, v_macro, v_sini) [km/s] for a star (module notes)."""
        giant = logg < GIANT_LOGG_MAX
        vmic = microturbulence_apogee(logg) if giant else microturbulence_dwarfs(teff, logg)
        vmic = float(np.clip(vmic + 0.15 * rng.standard_normal(), 0.3, 4.0))
        if giant:
            vmac = GIANT_V_MACRO * float(np.exp(0.25 * rng.standard_normal()))
        else:
            vmac = float(np.clip(macroturbulence_dwarfs(teff, logg) + 0.3 * rng.standard_normal(), 0.5, 10.0))
        if teff >= KRAFT_BREAK_TEFF:
            vsini = float(min(HOT_V_SINI * np.exp(np.log(2.0) * rng.standard_normal()), 60.0))
        elif giant and rng.uniform() < 0.02:
            vsini = float(rng.uniform(5.0, 20.0))
        else:
            vsini = float(abs(rng.normal(0.0, COOL_V_SINI_SIGMA["giant" if giant else "dwarf"])))
        return vmic, vmac, vsini

    def draw(self, rng: np.random.Generator) -> dict:
        """One candidate star (teff, logg, m_h, v_micro, x_m, v_macro, v_sini) from the mixture."""
        names = list(APOGEE_LIKE_PARTS)
        part = names[int(rng.choice(len(names), p=np.array(list(APOGEE_LIKE_PARTS.values()))))]
        if part == "broad":
            box = LabelPrior(teff=self.teff, logg=self.logg, m_h=self.m_h)
            star = box.draw(rng)
        else:
            m_h, disc = self._metallicity(rng)
            teff, logg = self._kiel(rng, part, m_h)
            star = dict(teff=float(teff), logg=float(logg), m_h=m_h, x_m=self._abundances(rng, m_h, disc, part))
        star["v_micro"], star["v_macro"], star["v_sini"] = self.broadening(rng, star["teff"], star["logg"])
        star["part"] = part
        return star

    def in_box(self, star: dict) -> bool:
        return (self.teff[0] <= star["teff"] <= self.teff[1] and self.logg[0] <= star["logg"] <= self.logg[1]
                and self.m_h[0] <= star["m_h"] <= self.m_h[1])

    def to_json(self) -> dict:
        return asdict(self)


PRIORS = {"box": LabelPrior, "apogee-like": ApogeeLikePrior}


def prior_from_json(d: dict):
    """The prior a grid's ``spec.json`` describes (specs without a ``name`` are the old box)."""
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(d).items()}
    name = d.pop("name", "box")
    if name not in PRIORS:
        raise ValueError(f"unknown label prior {name!r}; known: {', '.join(PRIORS)}")
    cls = PRIORS[name]
    return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def make_prior(name: str, stratify: bool = False):
    """A prior by its CLI name (``box`` or ``apogee-like``); a clear error for anything else."""
    if name not in PRIORS:
        raise ValueError(f"unknown label prior {name!r}; choose one of: {', '.join(PRIORS)}")
    if name == "box":
        if stratify:
            raise ValueError("--stratify needs the apogee-like prior (the box prior is not stratified)")
        return LabelPrior()
    return ApogeeLikePrior(stratify=stratify)


def wanted_population(prior, index: int) -> str | None:
    """The population star ``index`` is conditioned on, or None when the prior is not stratified."""
    if getattr(prior, "stratify", False):
        return POPULATIONS[index % len(POPULATIONS)]
    return None


def matches_population(star: dict, population: str | None) -> bool:
    return population is None or str(population_of(star["teff"], star["logg"], star["m_h"])) == population
