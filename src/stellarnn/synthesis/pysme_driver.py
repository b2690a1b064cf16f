"""PySME driver: stellar labels -> atmosphere -> PySME LTE spectrum -> instrument.

PySME (Wehrhahn, Piskunov & Ryabchikova 2023, A&A 671, A171; the SME library of Valenti &
Piskunov 1996) computes the spectrum from our own atmosphere (ATLAS9 grid interpolated by
:mod:`stellarnn.atmospheres`) and our own line list (:mod:`stellarnn.synthesis.linelists`).
PySME must never download anything: :func:`forbid_pysme_downloads` replaces its file
downloader by one that raises, and the atmosphere is always passed embedded (RHOX scale).

Known limitation: H I lines are dropped from the line list, because SME needs the principal
quantum numbers of hydrogen lines (long line-list format) and computes nothing sensible
without them; Brackett lines therefore are missing in hot (>~ 7000 K) stars.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .linelists import LineTable

#: the elements with H-band lines whose [X/M] AstroNN reports (Leung & Bovy 2019), Fe set by [M/H]
ASTRONN_ELEMENTS = ("C", "N", "O", "Na", "Mg", "Al", "Si", "P", "S", "K", "Ca", "Ti", "V", "Cr", "Mn", "Co", "Ni")

SOLAR_PATTERN = "asplund2009"


class PySMEDownloadError(RuntimeError):
    """PySME attempted to download a file (forbidden in stellarnn)."""


_GUARD_INSTALLED = False


def forbid_pysme_downloads() -> None:
    """Make every PySME download attempt raise :class:`PySMEDownloadError` (idempotent)."""
    global _GUARD_INSTALLED
    if _GUARD_INSTALLED:
        return
    import pysme.large_file_storage as lfs

    def refuse(url, *args, **kwargs):
        raise PySMEDownloadError(
            f"PySME tried to download {url!r}. stellarnn never lets PySME fetch its atmosphere/NLTE grids: "
            "pass an embedded atmosphere (stellarnn.atmospheres) and LTE settings instead.")

    lfs.download_file = refuse
    _GUARD_INSTALLED = True


def microturbulence_apogee(logg):
    """APOGEE DR13 micro-turbulence relation [km/s] (Holtzman et al. 2018, AJ 156, 125, eq. 2):
    log10 v_micro = 0.226 - 0.0228 logg + 0.0297 logg^2 - 0.0113 logg^3."""
    g = np.asarray(logg, dtype=np.float64)
    return 10 ** (0.226 - 0.0228 * g + 0.0297 * g ** 2 - 0.0113 * g ** 3)


@dataclass
class StellarLabels:
    """Labels of one synthetic star."""

    teff: float
    logg: float
    m_h: float
    v_micro: float | None = None  # km/s; default: APOGEE relation in log g
    x_m: dict = field(default_factory=dict)  # element -> [X/M]

    def as_dict(self) -> dict:
        out = {"teff": self.teff, "logg": self.logg, "m_h": self.m_h,
               "v_micro": float(microturbulence_apogee(self.logg)) if self.v_micro is None else self.v_micro}
        for el in ASTRONN_ELEMENTS:
            out[f"{el.lower()}_m"] = float(self.x_m.get(el, 0.0))
        return out


def log_lambda_grid(wmin: float, wmax: float, resolution: float) -> np.ndarray:
    """Wavelengths uniform in log lambda with lambda / d lambda = ``resolution``."""
    step = np.log(1 + 1 / resolution)
    return np.exp(np.arange(np.log(wmin), np.log(wmax) + step / 2, step))


class PySMESynthesizer:
    """Synthesise normalised spectra and continua with PySME over one wavelength range.

    Parameters
    ----------
    wmin, wmax : float
        Vacuum wavelength range [Angstrom].
    lines : LineTable
        Line list (vacuum); H I lines are removed (see module notes).
    atmospheres : object with ``interpolate_linear(teff, logg, m_h)``
        Source of atmospheres (default: the ATLAS9 grid).
    resolution : float
        Sampling lambda / d lambda of the output high-resolution grid (default 300,000).
    cull_threshold : float or None
        If given, each :meth:`synthesize` call first drops the lines whose line-to-continuum
        opacity ratio stays below this value at the star's labels
        (:func:`stellarnn.synthesis.culling.cull_lines`; the measured default is
        :data:`~stellarnn.synthesis.culling.DEFAULT_CULL_THRESHOLD`).  None (default) keeps every
        line, so existing grids stay reproducible.  :attr:`last_n_lines` gives the count used.
    """

    def __init__(self, wmin: float, wmax: float, lines: LineTable, atmospheres=None, resolution: float = 3e5,
                 cull_threshold: float | None = None):
        forbid_pysme_downloads()
        logging.getLogger("pysme").setLevel(logging.ERROR)
        self.wmin, self.wmax = float(wmin), float(wmax)
        self.lines = lines.select(lines.species != "H 1")
        self.n_hydrogen_dropped = len(lines) - len(self.lines)
        self._pysme_lines = self.lines.to_pysme()
        if atmospheres is None:
            from ..atmospheres import AtmosphereGrid

            atmospheres = AtmosphereGrid.load_atlas9()
        self.atmospheres = atmospheres
        self.wave = log_lambda_grid(self.wmin, self.wmax, resolution)
        if cull_threshold is not None and cull_threshold < 0:
            raise ValueError(f"cull_threshold must be >= 0 or None, got {cull_threshold}")
        self.cull_threshold = cull_threshold
        self.last_n_lines = len(self.lines)

    def synthesize(self, labels: StellarLabels) -> tuple[np.ndarray, np.ndarray]:
        """Normalised flux and continuum (erg/s/cm^2/A/sr as SME returns) on :attr:`wave`.

        Raises
        ------
        stellarnn.atmospheres.OutOfGridError
            The labels fall outside the atmosphere grid.
        RuntimeError
            PySME returned a non-finite or non-positive spectrum.
        """
        from pysme.abund import Abund
        from pysme.atmosphere.atmosphere import Atmosphere as SmeAtmosphere
        from pysme.sme import SME_Structure
        from pysme.synthesize import synthesize_spectrum

        lab = labels.as_dict()
        atm = self.atmospheres.interpolate_linear(teff=lab["teff"], logg=lab["logg"], m_h=lab["m_h"])
        abund = Abund(lab["m_h"], SOLAR_PATTERN)
        for el in ASTRONN_ELEMENTS:
            offset = lab[f"{el.lower()}_m"]
            if offset:
                abund.set_xm(el, offset)
        sme = SME_Structure()
        sme.teff, sme.logg, sme.monh = lab["teff"], lab["logg"], lab["m_h"]
        sme.vmic, sme.vmac, sme.vsini = lab["v_micro"], 0.0, 0.0
        sme.abund = abund
        if self.cull_threshold:
            from .culling import cull_lines

            kept = cull_lines(self.lines, lab["teff"], lab["logg"], lab["m_h"], threshold=self.cull_threshold,
                              v_micro=lab["v_micro"], x_m=labels.x_m, atmosphere=atm)
            sme.linelist = kept.to_pysme()
            self.last_n_lines = len(kept)
        else:
            sme.linelist = self._pysme_lines
            self.last_n_lines = len(self.lines)
        smeatm = SmeAtmosphere()
        smeatm.teff, smeatm.logg, smeatm.monh, smeatm.vturb = lab["teff"], lab["logg"], lab["m_h"], lab["v_micro"]
        smeatm.rhox = np.asarray(atm.rhox, dtype=np.float64)
        smeatm.temp = np.asarray(atm.temperature, dtype=np.float64)
        smeatm.xne = np.asarray(atm.n_e, dtype=np.float64)
        smeatm.xna = np.asarray(atm.n_atoms, dtype=np.float64)
        smeatm.rho = np.asarray(atm.density, dtype=np.float64)
        smeatm.geom, smeatm.depth, smeatm.interp, smeatm.method = "PP", "RHOX", "RHOX", "embedded"
        smeatm.abund = abund
        sme.atmo = smeatm
        sme.wran = [[self.wmin, self.wmax]]
        sme.wave = [self.wave]
        sme.normalize_by_continuum = False
        sme.iptype = None
        sme.vrad_flag, sme.cscale_flag = "none", "none"
        sme = synthesize_spectrum(sme)
        flux = np.asarray(sme.synth[0], dtype=np.float64)
        cont = np.asarray(sme.cont[0], dtype=np.float64)
        if flux.shape != self.wave.shape or not (np.all(np.isfinite(flux)) and np.all(cont > 0)):
            raise RuntimeError(f"PySME returned an unusable spectrum for {lab}")
        return flux / cont, cont


class ApogeeInstrument:
    """APOGEE LSF convolution and resampling from a log-lambda high-resolution grid to the 8575 apStar pixels.

    The LSF is the Gauss-Hermite LSF of one apVisit fibre (data entry ``lsf_entry``); each apStar
    pixel is a weighted sum of high-resolution points (sparse matrix), rows normalised to one.
    """

    def __init__(self, hires_wave: np.ndarray, lsf_entry: str = "apvisit-5095-55844-128", half_width: float = 2.5):
        from scipy import sparse

        from ..data import fetch
        from ..spectra import apogee_wavelength, read_apvisit

        self.lsf = read_apvisit(fetch(lsf_entry)).lsf
        self.lsf_entry = lsf_entry
        self.hires_wave = np.asarray(hires_wave, dtype=np.float64)
        out = apogee_wavelength()
        step = np.median(np.diff(np.log(self.hires_wave)))
        n_half = int(np.ceil(half_width / (out.min() * step)))
        centre = np.searchsorted(self.hires_wave, out)
        cols = centre[:, None] + np.arange(-n_half, n_half + 1)[None, :]
        valid = (cols >= 0) & (cols < self.hires_wave.size)
        cols_c = np.clip(cols, 0, self.hires_wave.size - 1)
        dl = self.hires_wave[cols_c] - out[:, None]
        weights = self.lsf.kernel_rows_in_wavelength(out, dl) * valid
        coverage = weights.sum(axis=1)
        self.covered = coverage > 0.999
        weights = weights / np.where(coverage > 0, coverage, 1.0)[:, None]
        rows = np.repeat(np.arange(out.size), cols.shape[1])
        self.matrix = sparse.csr_matrix((weights.ravel(), (rows, cols_c.ravel())),
                                        shape=(out.size, self.hires_wave.size))

    def apply(self, hires_flux: np.ndarray) -> np.ndarray:
        """Convolve and resample (n_hires,) or (n, n_hires) to (8575,) or (n, 8575); NaN off the synthesis range."""
        y = np.asarray(hires_flux, dtype=np.float64)
        res = (self.matrix @ y.T).T
        return np.where(self.covered, res, np.nan)


APOGEE_SYNTHESIS_RANGE = (15100.0, 17000.0)  # vacuum Angstrom; covers the apStar grid (15100.8-16999.8)
