"""Post-hoc noise models of the label pipelines: e = scale * raw_e + offset, per label.

Both APOGEENet and AstroNN (Astra) correct their formal uncertainties with a linear noise
model per label (REFERENCE.md; APOGEENet's published one is
e_teff = 1.25 raw_e_teff + 10 K, e_logg = 1.25 raw_e_logg + 0.01, e_fe_h = raw_e_fe_h + 0.01).
We calibrate it ourselves on pairs of repeat observations of one star: for two independent
measurements x1, x2 of the same true label with true errors e1, e2, the difference
Delta = x1 - x2 has variance e1^2 + e2^2, so z = Delta / sqrt(e1^2 + e2^2) must follow N(0, 1).

Calibration maximises the Gaussian likelihood of the differences,

    -ln L = sum_i [ 1/2 ln(2 pi V_i) + Delta_i^2 / (2 V_i) ],
    V_i = (s r1_i + o)^2 + (s r2_i + o)^2,

over s > 0, o >= 0 (r1, r2 the raw errors), which sets the mean of z^2 to 1 at the optimum
(d(-ln L)/ds = 0).  Outlying pairs (``|z|`` > ``clip_sigma`` after a fit, e.g. one visit with a
failed reduction) are dropped and the fit repeated, a few times.

Repeat pairs measure precision only: an error shared by both visits (the network's or the
training spectra's systematics) cancels in x1 - x2.  :func:`calibrate_accuracy_offset` therefore
adds a second, optional step on labelled spectra never used in training: with the scale kept, the
offset of each label is raised (never lowered) to the maximum-likelihood value of

    -ln L = sum_i [ ln(s r_i + o) + d_i^2 / (2 (s r_i + o)^2) ],   d_i = x_i - truth_i,

so that (x - truth) / e has unit variance: the offset becomes the systematic floor that the
repeats cannot see (as the published APOGEENet noise model's constant terms do).  With
``raise_scale=True`` the scale is fitted too, in the same likelihood, bounded below by its
repeat-pair value: for a network whose raw errors overstate its precision (small repeat-pair scale)
but whose accuracy errors still grow with them (lower S/N), a constant floor alone leaves the
noisiest spectra with too small errors.

The accuracy of a network differs between stellar populations (a metal-rich giant's Teff is known
~30x better from the H band than a hot dwarf's; :mod:`stellarnn.synthesis.populations`), so one
floor per label is too large for some and too small for others.  :func:`calibrate_accuracy_by_population`
fits the accuracy step separately, and freely (scale and offset, not bounded by the global repeat-pair model),
for each population with enough labelled spectra (after the global fit, which stays for stars outside them)
and :meth:`NoiseModel.apply` uses a star's population, decided from its
*predicted* Teff, log g and [Fe/H] (the only labels known at inference; [Fe/H] stands for [M/H] at the
population edges), in calibration as in use.

A network's MC-dropout or ensemble spread barely follows the spectrum's noise: on our held-out grid AstroNN's raw
errors shrink 1.04-1.23x from S/N 50 to 200 while its actual errors shrink 1.5-3.0x
(``bench/results/noise_population_astronn_v4c.json``), so ``scale * raw_e + offset`` fitted over S/N 50-200 is too
large at S/N 200 and too small at 50.  The part of the error that photon noise causes scales as 1/(S/N): the
Cramer-Rao bound, covariance >= (J^T C^-1 J)^-1 with C the flux covariance (REFERENCE.md), is proportional to the
flux noise.  So the model has a third term per label, added in quadrature,

    e = sqrt( (scale raw_e + offset)^2 + (snr_term * SNR_REFERENCE / snr)^2 ),

with ``snr`` the spectrum's S/N per pixel from its error array as the pipelines measure it (``snr_error`` of
:mod:`stellarnn.labels.spectrum_information`: median flux x sqrt(ivar), APOGEE's SNR, the S/N the training noise is
drawn at; not ``snr_robust``, whose flux-difference estimate counts a spectrum's lines as noise: it reads our
held-out grid observed at S/N 200 as 158 in the median and its most line-rich spectra as ~36 in a one-off check on
300 spectra), and ``snr_term`` the label's error from that term at S/N ``SNR_REFERENCE`` = 100.  ``snr_term = 0``
(every model calibrated before 0.5.28) is the linear model unchanged; the accuracy step fits it (>= 0) when given
the calibration spectra's S/N.

That term alone still left AstroNN's errors too small at S/N 50 and too large at 200 in 10 of 54 population x S/N
x label cells of ``bench/results/noise_population_astronn_v4c_snr.json``: a network's error is not a noise-free floor
plus a photon term, its whole error distribution widens with the noise (its raw errors, the floor it learned and
the photon term alike).  The model therefore has a power of the S/N as a factor, ``snr_power`` p per label,

    e = sqrt( (scale raw_e + offset)^2 + (snr_term * SNR_REFERENCE / snr)^2 ) * (SNR_REFERENCE / snr')^p,

fitted in [0, 1] in the same likelihood (0: no factor; 1: errors proportional to the flux noise, the Cramer-Rao
scaling), with snr' = min(snr, ``snr_ceiling``), the highest S/N the model was calibrated at (99th percentile of the
calibration spectra's S/N): beyond it the factor is held, so that a model fitted over S/N 50-200 never promises a
S/N 500 spectrum errors it has not measured.  ``snr_power = 0`` (models calibrated before 0.5.29) leaves the model
of 0.5.28 unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.stats import mad_std
from scipy.optimize import minimize

from ..synthesis.populations import POPULATIONS, population_of

MIN_PAIRS = 10
#: S/N per pixel at which ``NoiseModel.snr_term`` is the error of the 1/(S/N) term
SNR_REFERENCE = 100.0
#: bounds of the fitted ``snr_power`` (errors that shrink faster than the flux noise are not physical)
SNR_POWER_BOUNDS = (0.0, 1.0)
#: percentile of the calibration spectra's S/N taken as ``snr_ceiling``
SNR_CEILING_PERCENTILE = 99.0


@dataclass
class NoiseModel:
    """Per-label uncertainty correction
    ``e = sqrt((scale * raw_e + offset)^2 + (snr_term * 100 / snr)^2) * (100 / min(snr, snr_ceiling))^snr_power``.

    Parameters
    ----------
    labels : list of str
        Label names, in the order of the last axis of the arrays it is applied to.
    scale, offset : ndarray, shape (n_labels,)
        Dimensionless scale and offset in the unit of each label (K for Teff, dex otherwise).
    diagnostics : dict
        Calibration figures (number of pairs used, std of z before and after), if calibrated.
    by_population : dict, optional
        ``{population: (scale, offset[, snr_term[, snr_power]])}`` for the populations of
        :mod:`stellarnn.synthesis.populations` calibrated on their own (:func:`calibrate_accuracy_by_population`);
        other stars use ``scale``, ``offset``, ``snr_term``, ``snr_power``.  Stored as 4-tuples.
    snr_term : ndarray, shape (n_labels,), optional
        Error of the 1/(S/N) term at S/N ``SNR_REFERENCE`` (label units); default 0 (no S/N term).
    snr_power : ndarray, shape (n_labels,), optional
        Exponent of the factor ``(SNR_REFERENCE / snr)^snr_power`` (>= 0); default 0 (no factor).
    snr_ceiling : float
        S/N above which the factor is held at its value (the highest S/N calibrated); default inf.
    """

    labels: list[str]
    scale: np.ndarray
    offset: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    by_population: dict = field(default_factory=dict)
    snr_term: np.ndarray | None = None
    snr_power: np.ndarray | None = None
    snr_ceiling: float = np.inf

    def __post_init__(self):
        self.labels = list(self.labels)
        self.scale, self.offset, self.snr_term, self.snr_power = self._checked(
            self.scale, self.offset, self.snr_term, self.snr_power, "")
        self.snr_ceiling = float(self.snr_ceiling)
        if not self.snr_ceiling > 0:
            raise ValueError(f"snr_ceiling must be a positive S/N (or inf), got {self.snr_ceiling!r}")
        unknown = sorted(set(self.by_population) - set(POPULATIONS))
        if unknown:
            raise ValueError(f"noise model for unknown population(s) {unknown}; known: {list(POPULATIONS)}")
        by_population = {}
        for name, terms in self.by_population.items():
            if len(terms) not in (2, 3, 4):
                raise ValueError(f"population {name!r} needs (scale, offset[, snr_term[, snr_power]]), got "
                                 f"{len(terms)} arrays")
            by_population[str(name)] = self._checked(*terms, *([None] * (4 - len(terms))), f" of population {name!r}")
        self.by_population = by_population

    def _checked(self, scale, offset, snr_term, snr_power, what: str) -> tuple[np.ndarray, ...]:
        n = len(self.labels)
        terms = [np.zeros(n) if a is None else np.asarray(a, dtype=np.float64).reshape(-1)
                 for a in (scale, offset, snr_term, snr_power)]
        if any(a.shape != (n,) for a in terms):
            raise ValueError(f"scale, offset, snr_term and snr_power{what} need {n} values (one per label), got "
                             f"{[a.shape for a in terms]}")
        if not all(np.all(np.isfinite(a)) for a in terms):
            raise ValueError(f"noise model scale, offset, snr_term and snr_power{what} must be finite")
        scale, offset, snr_term, snr_power = terms
        if np.any(scale <= 0) or np.any(offset < 0) or np.any(snr_term < 0) or np.any(snr_power < 0):
            raise ValueError(f"noise model needs scale > 0, offset >= 0, snr_term >= 0 and snr_power >= 0{what}")
        return scale, offset, snr_term, snr_power

    @property
    def needs_snr(self) -> bool:
        """Whether any label (globally or in a population) has an S/N term or factor, so that :meth:`apply` needs
        the S/N."""
        return bool(any(np.any(np.asarray(t[2:]) > 0) for t in (self._global_terms, *self.by_population.values())))

    @property
    def _global_terms(self) -> np.ndarray:
        return np.stack([self.scale, self.offset, self.snr_term, self.snr_power])

    @classmethod
    def identity(cls, labels) -> "NoiseModel":
        """The model that leaves the raw errors unchanged (scale 1, offset 0)."""
        labels = list(labels)
        return cls(labels, np.ones(len(labels)), np.zeros(len(labels)), {"calibrated": False})

    def apply(self, raw_error, population=None, snr=None):
        """Corrected errors, ``sqrt((scale raw_e + offset)^2 + (snr_term 100 / snr)^2)
        * (100 / min(snr, snr_ceiling))^snr_power`` (array (..., n_labels); NaN stays NaN).

        Parameters
        ----------
        raw_error : array (..., n_labels)
        population : array of str over the leading axes, optional
            E.g. :func:`population_of_predictions` of the predicted labels: rows of a population with its own
            model use it, the others the global one.
        snr : array over the leading axes, optional
            The spectra's S/N per pixel (the pipelines' ``snr_error``); needed when a row's model (global or its
            population's) has an S/N term or factor.  A row whose S/N is not a positive number gets NaN errors where
            either is used.
        """
        raw_error = np.asarray(raw_error, dtype=np.float64)
        if raw_error.shape[-1] != len(self.labels):
            raise ValueError(f"last axis has {raw_error.shape[-1]} labels, noise model has {len(self.labels)}")
        scale = np.broadcast_to(self.scale, raw_error.shape).copy()
        offset = np.broadcast_to(self.offset, raw_error.shape).copy()
        snr_term = np.broadcast_to(self.snr_term, raw_error.shape).copy()
        snr_power = np.broadcast_to(self.snr_power, raw_error.shape).copy()
        if population is not None and self.by_population:
            population = np.asarray(population)
            if population.shape != raw_error.shape[:-1]:
                raise ValueError(f"population has shape {population.shape}, the errors' leading axes "
                                 f"{raw_error.shape[:-1]}")
            for name, (s, o, t, p) in self.by_population.items():
                rows = population == name
                scale[rows], offset[rows], snr_term[rows], snr_power[rows] = s, o, t, p
        linear = scale * raw_error + offset
        if not (np.any(snr_term > 0) or np.any(snr_power > 0)):  # no row uses the S/N
            return linear
        if snr is None:
            raise ValueError("this noise model has an S/N term or factor (snr_term or snr_power > 0): pass the "
                             "spectra's S/N (snr=)")
        snr = np.asarray(snr, dtype=np.float64)
        if snr.shape != raw_error.shape[:-1]:
            raise ValueError(f"snr has shape {snr.shape}, the errors' leading axes {raw_error.shape[:-1]}")
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = np.where(snr > 0, SNR_REFERENCE / snr, np.nan)[..., None]
            term = np.where(snr_term > 0, snr_term * inverse, 0.0)
            held = np.where(snr > 0, SNR_REFERENCE / np.minimum(snr, self.snr_ceiling), np.nan)[..., None]
            factor = np.where(snr_power > 0, held ** snr_power, 1.0)
        return np.sqrt(linear ** 2 + term ** 2) * factor

    def to_dict(self) -> dict:
        out = {"labels": list(self.labels), "scale": [float(v) for v in self.scale],
               "offset": [float(v) for v in self.offset], "diagnostics": dict(self.diagnostics)}
        power = any(np.any(t[3] > 0) for t in (self._global_terms, *self.by_population.values()))  # any factor
        if self.needs_snr:  # models without the term keep the dictionary format of 0.5.27 and earlier
            out["snr_term"] = [float(v) for v in self.snr_term]
            out["snr_reference"] = SNR_REFERENCE
        if power:  # ... and models without the factor that of 0.5.28
            out["snr_power"] = [float(v) for v in self.snr_power]
            out["snr_ceiling"] = self.snr_ceiling if np.isfinite(self.snr_ceiling) else None
        if self.by_population:
            out["by_population"] = {name: {"scale": [float(v) for v in s], "offset": [float(v) for v in o]}
                                    for name, (s, o, _, _) in self.by_population.items()}
            for name, (_, _, t, p) in self.by_population.items():
                if self.needs_snr:
                    out["by_population"][name]["snr_term"] = [float(v) for v in t]
                if power:
                    out["by_population"][name]["snr_power"] = [float(v) for v in p]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseModel":
        reference = float(d.get("snr_reference", SNR_REFERENCE))
        if reference != SNR_REFERENCE:
            raise ValueError(f"noise model's snr_term is given at S/N {reference:g}, this version reads it at "
                             f"S/N {SNR_REFERENCE:g}")
        try:
            by_population = {name: (np.asarray(v["scale"], dtype=np.float64), np.asarray(v["offset"], dtype=np.float64),
                                     v.get("snr_term"), v.get("snr_power"))
                             for name, v in dict(d.get("by_population", {})).items()}
            ceiling = d.get("snr_ceiling")
            return cls(d["labels"], np.asarray(d["scale"], dtype=np.float64),
                       np.asarray(d["offset"], dtype=np.float64), dict(d.get("diagnostics", {})), by_population,
                       d.get("snr_term"), d.get("snr_power"), np.inf if ceiling is None else float(ceiling))
        except KeyError as exc:
            raise ValueError(f"noise model dictionary lacks {exc}") from exc


def population_of_predictions(labels, values) -> np.ndarray:
    """Population of each row from its predicted ``teff``, ``logg`` and ``fe_h`` (``labels`` names the last
    axis of ``values``; [Fe/H] stands for [M/H]); "" where a label is missing or NaN."""
    labels, values = list(labels), np.asarray(values, dtype=np.float64)
    missing = [n for n in ("teff", "logg", "fe_h") if n not in labels]
    if missing:
        raise ValueError(f"populations need predicted teff, logg and fe_h; missing {missing}")
    return population_of(*(values[..., labels.index(n)] for n in ("teff", "logg", "fe_h")))


def standardised_differences(value1, value2, error1, error2):
    """z = (x1 - x2) / sqrt(e1^2 + e2^2) for repeat observations (arrays of equal shape)."""
    value1, value2, error1, error2 = (np.asarray(a, dtype=np.float64) for a in (value1, value2, error1, error2))
    if not (value1.shape == value2.shape == error1.shape == error2.shape):
        raise ValueError("values and errors of both observations must have the same shape")
    with np.errstate(invalid="ignore", divide="ignore"):
        return (value1 - value2) / np.sqrt(error1 ** 2 + error2 ** 2)


def _fit_one_label(delta, r1, r2, clip_sigma: float, max_iterations: int) -> tuple[float, float, int]:
    """Maximum-likelihood (scale, offset) of one label; works in units of the median raw error."""
    unit = float(np.median(np.concatenate([r1, r2])))
    if not np.isfinite(unit) or unit <= 0:
        unit = float(np.std(delta)) or 1.0
    d, a, b = delta / unit, r1 / unit, r2 / unit
    keep = np.ones(d.size, dtype=bool)
    params = np.array([1.0, 0.0])
    for _ in range(max_iterations):
        dk, ak, bk = d[keep], a[keep], b[keep]

        def nll(p):
            s, o = p
            v = (s * ak + o) ** 2 + (s * bk + o) ** 2
            v = np.maximum(v, 1e-300)
            return 0.5 * np.sum(np.log(v) + dk ** 2 / v)

        res = minimize(nll, params, method="L-BFGS-B", bounds=[(1e-4, 1e4), (0.0, 1e4)])
        params = res.x
        s, o = params
        z = d / np.sqrt((s * a + o) ** 2 + (s * b + o) ** 2)
        new_keep = np.abs(z) <= clip_sigma
        if new_keep.sum() < MIN_PAIRS or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return float(params[0]), float(params[1] * unit), int(keep.sum())


def calibrate_noise_model(labels, value1, value2, raw_error1, raw_error2, clip_sigma: float = 5.0,
                          max_iterations: int = 5) -> NoiseModel:
    """Fit ``e = scale * raw_e + offset`` per label on repeat observations of the same stars.

    Parameters
    ----------
    labels : list of str
        Label names (length n_labels).
    value1, value2 : array, shape (n_pairs, n_labels)
        Predictions for the two observations of each pair (same star, independent noise).
    raw_error1, raw_error2 : array, shape (n_pairs, n_labels)
        Their raw (formal) uncertainties, same units.
    clip_sigma : float
        Pairs with ``|z|`` above this after a fit are left out of the next fit.
    max_iterations : int
        Maximum number of fit/clip rounds.

    Returns
    -------
    NoiseModel
        With ``diagnostics`` holding, per label, the pairs used and std(z) before (raw errors)
        and after the correction.

    Raises
    ------
    ValueError
        Shapes differ, or a label has fewer than 10 pairs with finite values and positive errors.
    """
    labels = list(labels)
    arrays = [np.asarray(a, dtype=np.float64) for a in (value1, value2, raw_error1, raw_error2)]
    if any(a.ndim == 1 for a in arrays) and len(labels) == 1:
        arrays = [a.reshape(-1, 1) for a in arrays]
    v1, v2, r1, r2 = arrays
    if not (v1.shape == v2.shape == r1.shape == r2.shape) or v1.ndim != 2 or v1.shape[1] != len(labels):
        raise ValueError(f"values and errors must all have shape (n_pairs, {len(labels)}); got "
                         f"{[a.shape for a in arrays]}")
    scale, offset = np.ones(len(labels)), np.zeros(len(labels))
    diagnostics = {"calibrated": True, "method": "Gaussian maximum likelihood on repeat pairs", "labels": {}}
    for j, name in enumerate(labels):
        ok = (np.isfinite(v1[:, j]) & np.isfinite(v2[:, j]) & np.isfinite(r1[:, j]) & np.isfinite(r2[:, j])
              & (r1[:, j] > 0) & (r2[:, j] > 0))
        if ok.sum() < MIN_PAIRS:
            raise ValueError(f"label {name!r}: only {int(ok.sum())} usable repeat pairs (need >= {MIN_PAIRS})")
        delta = v1[ok, j] - v2[ok, j]
        s, o, n_used = _fit_one_label(delta, r1[ok, j], r2[ok, j], clip_sigma, max_iterations)
        scale[j], offset[j] = s, o
        z_raw = standardised_differences(v1[ok, j], v2[ok, j], r1[ok, j], r2[ok, j])
        z_cal = standardised_differences(v1[ok, j], v2[ok, j], s * r1[ok, j] + o, s * r2[ok, j] + o)
        diagnostics["labels"][name] = {"n_pairs": int(ok.sum()), "n_used": n_used,
                                       "std_z_raw": float(np.std(z_raw)), "std_z_calibrated": float(np.std(z_cal)),
                                       "robust_std_z_calibrated": float(mad_std(z_cal))}
    return NoiseModel(labels, scale, offset, diagnostics)


def precision_part(model: NoiseModel) -> NoiseModel:
    """The model without an accuracy floor: offsets (scales, S/N terms) back to their repeat-pair values (if an
    accuracy step was added)."""
    accuracy = model.diagnostics.get("accuracy")
    if not accuracy:
        return model
    offset = np.array([accuracy["labels"][name]["offset_precision"] for name in model.labels])
    scale = np.array([accuracy["labels"][name].get("scale_precision", model.scale[j])
                      for j, name in enumerate(model.labels)])
    snr_term = np.array([accuracy["labels"][name].get("snr_term_precision", 0.0) for name in model.labels])
    snr_power = np.array([accuracy["labels"][name].get("snr_power_precision", 0.0) for name in model.labels])
    diagnostics = {k: v for k, v in model.diagnostics.items() if k not in ("accuracy", "accuracy_by_population")}
    # the populations' models are accuracy steps
    return NoiseModel(model.labels, scale, offset, diagnostics, snr_term=snr_term, snr_power=snr_power,
                      snr_ceiling=model.snr_ceiling if np.any(snr_power > 0) else np.inf)


def calibrate_accuracy_offset(model: NoiseModel, values, truth, raw_errors, clip_sigma: float = 5.0,
                              max_iterations: int = 5, source: str = "", raise_scale: bool = False,
                              bounded: bool = True, snr=None, snr_power: bool = True,
                              snr_ceiling: float | None = None) -> NoiseModel:
    """Raise each label's offset (and with ``raise_scale`` its scale) so that
    (value - truth) / (scale raw_e + offset) has unit variance.

    Parameters
    ----------
    model : NoiseModel
        The precision model (scale, offset) from repeat pairs; its scale is kept.
    values, truth, raw_errors : array, shape (n, n_labels)
        Predictions, true labels and raw errors on labelled spectra never used in training
        (NaN truth, e.g. a missing label, is skipped).
    clip_sigma, max_iterations : as in :func:`calibrate_noise_model`.
    source : str
        Description of the labelled spectra, stored in the diagnostics.
    raise_scale : bool
        Fit scale and offset together (each bounded below by its precision value) instead of the
        offset alone.
    bounded : bool
        False: fit scale and offset freely (scale >= 1e-3 x the precision scale, offset >= 0), for labelled
        spectra of one population, which measure its whole error directly where a global precision model
        (fitted over all populations) would set too high a floor for the populations the network knows best.
    snr : array, shape (n,), optional
        The labelled spectra's S/N per pixel (as the pipeline measures it, ``snr_error``): the S/N term
        ``snr_term`` is fitted too (>= the model's own, 0 for a repeat-pair model; bounded or not).  The spectra
        should span a range of S/N (e.g. 50-200), or the term cannot be told from the offset.
    snr_power : bool
        With ``snr``: fit the factor's exponent ``snr_power`` too (within ``SNR_POWER_BOUNDS``, >= the model's own).
    snr_ceiling : float, optional
        With ``snr`` and ``snr_power``: the S/N above which the factor is held; default the
        ``SNR_CEILING_PERCENTILE`` percentile of ``snr``.

    Returns
    -------
    NoiseModel
        Same labels; scale kept (or, with ``raise_scale``, the maximum-likelihood scale >= the
        precision scale); offset = max(precision offset, maximum-likelihood offset);
        ``diagnostics["accuracy"]`` holds, per label, spectra used and std of (value - truth)/e
        with the precision model and after.
    """
    v, t, r = (np.asarray(a, dtype=np.float64) for a in (values, truth, raw_errors))
    fit_snr = snr is not None
    inverse_snr = (np.full(len(v), np.nan) if not fit_snr else
                   SNR_REFERENCE / np.where(np.asarray(snr, dtype=np.float64) > 0, snr, np.nan))
    if fit_snr and inverse_snr.shape != (len(v),):
        raise ValueError(f"snr must have one value per spectrum ({len(v)}), got shape {np.shape(snr)}")
    if not clip_sigma > 0:
        raise ValueError(f"clip_sigma must be a positive number of sigma, got {clip_sigma!r}")
    n_labels = len(model.labels)
    if not (v.shape == t.shape == r.shape) or v.ndim != 2 or v.shape[1] != n_labels:
        raise ValueError(f"values, truth and raw errors must all have shape (n, {n_labels}); got "
                         f"{[a.shape for a in (v, t, r)]}")
    offset, scale, snr_term = model.offset.copy(), model.scale.copy(), model.snr_term.copy()
    raise_scale = raise_scale or not bounded
    how = ("scale and offset free" if not bounded else
           "scale and offset bounded below by the precision model" if raise_scale else "scale fixed")
    fit_power = fit_snr and snr_power
    power = model.snr_power.copy()
    ceiling = model.snr_ceiling
    if fit_power:
        ceiling = (float(np.nanpercentile(np.where(np.isfinite(inverse_snr), snr, np.nan), SNR_CEILING_PERCENTILE))
                   if snr_ceiling is None else float(snr_ceiling))
        if not ceiling > 0:
            raise ValueError(f"snr_ceiling must be a positive S/N, got {ceiling!r}")
    if not fit_snr and np.any(power > 0):
        raise ValueError("the model has an S/N factor (snr_power > 0): pass the labelled spectra's S/N (snr=)")
    held = SNR_REFERENCE / np.minimum(SNR_REFERENCE / inverse_snr, ceiling)  # NaN without snr, unused then
    form = ("e = sqrt((scale raw_e + offset)^2 + (snr_term 100 / snr)^2) (100 / min(snr, snr_ceiling))^snr_power"
            if fit_power else "e = sqrt((scale raw_e + offset)^2 + (snr_term 100 / snr)^2)" if fit_snr else
            "e = scale raw_e + offset")
    report = {"method": f"maximum likelihood of (value - truth) with {form}, {how}",
              "source": source, "clip_sigma": float(clip_sigma), "labels": {}}
    for j, name in enumerate(model.labels):
        ok = np.isfinite(v[:, j]) & np.isfinite(t[:, j]) & np.isfinite(r[:, j]) & (r[:, j] > 0)
        if fit_snr:
            ok &= np.isfinite(inverse_snr)
        if ok.sum() < MIN_PAIRS:
            raise ValueError(f"label {name!r}: only {int(ok.sum())} labelled spectra (need >= {MIN_PAIRS})")
        d, e0 = v[ok, j] - t[ok, j], model.scale[j] * r[ok, j]
        w = inverse_snr[ok] if fit_snr else np.zeros(d.size)
        h = held[ok] if fit_snr else np.ones(d.size)

        def error(o, k, q, a):  # e = sqrt((k e0 + o)^2 + (q w)^2) h^a, scale = k * precision scale
            return np.sqrt((k * e0 + o) ** 2 + (q * w) ** 2) * h ** a

        e_before = error(offset[j], 1.0, snr_term[j], power[j])
        unit = float(np.median(e0))
        keep = np.ones(d.size, dtype=bool)
        o, k, q, a = offset[j], 1.0, snr_term[j], power[j]
        lowest_offset, lowest_k = (offset[j] / unit, 1.0) if bounded else (0.0, 1e-3)
        bounds = [(lowest_offset, 1e6), (lowest_k, 1e6) if raise_scale else (1.0, 1.0),
                  (snr_term[j] / unit, 1e6) if fit_snr else (0.0, 0.0),
                  (max(power[j], SNR_POWER_BOUNDS[0]), SNR_POWER_BOUNDS[1]) if fit_power else (power[j], power[j])]
        for _ in range(max_iterations):
            dk, ek, wk, log_hk = d[keep] / unit, e0[keep] / unit, w[keep], np.log(h[keep])

            def nll(x):
                e2 = ((x[1] * ek + x[0]) ** 2 + (x[2] * wk) ** 2) * np.exp(2 * x[3] * log_hk)
                return float(np.sum(0.5 * np.log(e2) + 0.5 * dk ** 2 / e2))

            start = [max(o / unit, 0.1), k, max(q / unit, 0.1) if fit_snr else 0.0,
                     min(max(a, 0.3, bounds[3][0]), bounds[3][1])]
            res = minimize(nll, start, method="L-BFGS-B", bounds=bounds)
            o, k, q, a = (float(res.x[0]) * unit, float(res.x[1]), float(res.x[2]) * unit, float(res.x[3]))
            new_keep = np.abs(d / error(o, k, q, a)) <= clip_sigma
            if new_keep.sum() < MIN_PAIRS or np.array_equal(new_keep, keep):
                break
            keep = new_keep
        z_before, z_after = d / e_before, d / error(o, k, q, a)
        report["labels"][name] = {"n": int(ok.sum()), "n_used": int(keep.sum()), "offset_precision": float(offset[j]),
                                  "offset_accuracy": o, "scale_precision": float(model.scale[j]),
                                  "scale_accuracy": float(k * model.scale[j]),
                                  "std_z_precision_model": float(np.std(z_before)),
                                  "std_z_calibrated": float(np.std(z_after))}
        if fit_snr:
            report["labels"][name].update(snr_term_precision=float(snr_term[j]), snr_term_accuracy=q)
        if fit_power:
            report["labels"][name].update(snr_power_precision=float(power[j]), snr_power_accuracy=a)
        offset[j], scale[j], snr_term[j], power[j] = o, k * model.scale[j], q, a
    if fit_power:
        report["snr_ceiling"] = ceiling
    diagnostics = dict(model.diagnostics)
    diagnostics["accuracy"] = report
    return NoiseModel(model.labels, scale, offset, diagnostics, snr_term=snr_term, snr_power=power,
                      snr_ceiling=ceiling if np.any(power > 0) else np.inf)


def calibrate_accuracy_by_population(model: NoiseModel, values, truth, raw_errors, min_spectra: int = 30,
                                     **kwargs) -> NoiseModel:
    """The accuracy step of :func:`calibrate_accuracy_offset`, globally and then per population.

    The global fit (all spectra, bounded below by the precision model as ``kwargs`` say) gives ``scale``/``offset``
    for stars outside every calibrated population; then each population of :mod:`stellarnn.synthesis.populations`,
    assigned from the *predicted* labels (:func:`population_of_predictions`, as :meth:`NoiseModel.apply` will at
    inference), with at least ``min_spectra`` spectra whose every label is usable gets a free fit of scale and
    offset (``bounded=False``): its labelled spectra measure its whole error, while the repeat-pair precision
    model is one fit over all populations and would keep the errors of the best-known populations too large.
    ``bench/noise_population.py`` compares the result with one global model on held-out spectra.

    Parameters
    ----------
    model : NoiseModel
        The precision model (repeat pairs); per-population entries it holds are replaced.
    values, truth, raw_errors : array, shape (n, n_labels)
        As in :func:`calibrate_accuracy_offset`; ``model.labels`` must include teff, logg and fe_h.
    min_spectra : int
        Fewest labelled spectra a population needs for a model of its own (at least 10).
    **kwargs
        ``clip_sigma``, ``max_iterations``, ``source``, ``raise_scale``, ``snr``, ``snr_power`` of
        :func:`calibrate_accuracy_offset` (``snr`` per spectrum: each population's rows of it are used; every
        population's factor is held above the global fit's ``snr_ceiling``).

    Returns
    -------
    NoiseModel
        ``diagnostics["accuracy"]`` as from the global fit; ``diagnostics["accuracy_by_population"]`` holds each
        population's spectra and its per-label report, or why it has no model of its own.
    """
    if min_spectra < MIN_PAIRS:
        raise ValueError(f"min_spectra must be >= {MIN_PAIRS}, got {min_spectra}")
    base = NoiseModel(model.labels, model.scale, model.offset, dict(model.diagnostics), snr_term=model.snr_term,
                      snr_power=model.snr_power, snr_ceiling=model.snr_ceiling)
    v, t, r = (np.asarray(a, dtype=np.float64) for a in (values, truth, raw_errors))
    usable = np.all(np.isfinite(v) & np.isfinite(t) & np.isfinite(r) & (r > 0), axis=1)
    snr = kwargs.pop("snr", None)
    ceiling = kwargs.pop("snr_ceiling", None)
    if snr is not None:
        snr = np.asarray(snr, dtype=np.float64)
        if snr.shape != (len(v),):
            raise ValueError(f"snr must have one value per spectrum ({len(v)}), got shape {snr.shape}")
        usable &= np.isfinite(snr) & (snr > 0)
        if ceiling is None and kwargs.get("snr_power", True) and usable.any():
            ceiling = float(np.percentile(snr[usable], SNR_CEILING_PERCENTILE))  # one for every population
    fitted = calibrate_accuracy_offset(base, values, truth, raw_errors, snr=snr, snr_ceiling=ceiling, **kwargs)
    population = population_of_predictions(model.labels, v)
    by_population, report = {}, {}
    for name in POPULATIONS:
        rows = (population == name) & usable
        if rows.sum() < min_spectra:
            report[name] = {"n": int(rows.sum()), "model": f"global (fewer than {min_spectra} spectra)"}
            continue
        own = calibrate_accuracy_offset(base, v[rows], t[rows], r[rows], **dict(kwargs, bounded=False),
                                        snr=None if snr is None else snr[rows], snr_ceiling=ceiling)
        by_population[name] = (own.scale, own.offset, own.snr_term, own.snr_power)
        report[name] = {"n": int(rows.sum()), "model": "own", "labels": own.diagnostics["accuracy"]["labels"]}
    diagnostics = dict(fitted.diagnostics)
    diagnostics["accuracy_by_population"] = {"assigned_by": "predicted teff, logg, fe_h",
                                             "min_spectra": int(min_spectra), "populations": report}
    powered = any(np.any(terms[3] > 0) for terms in (fitted._global_terms, *by_population.values()))
    return NoiseModel(fitted.labels, fitted.scale, fitted.offset, diagnostics, by_population, fitted.snr_term,
                      fitted.snr_power, ceiling if powered and ceiling is not None else np.inf)


def calibrate_pipeline_on_repeats(pipeline, spectra_a, spectra_b, labels, **kwargs) -> NoiseModel:
    """Run a label pipeline on two observations of the same stars and calibrate its noise model.

    Parameters
    ----------
    pipeline : Pipeline
        Rows must hold ``<label>`` and ``raw_e_<label>`` for each label.
    spectra_a, spectra_b : sequences of Spectrum, same length
        Pair i = two observations (e.g. visits, or two noise realisations of one synthetic star).
    labels : list of str
        Labels to calibrate (in the order the pipeline's noise model uses).
    """
    if len(spectra_a) != len(spectra_b):
        raise ValueError("both lists of repeat observations must have the same length")
    rows_a, rows_b = pipeline.process(spectra_a), pipeline.process(spectra_b)

    def arrays(rows, prefix):
        return np.array([[r.get(f"{prefix}{name}", np.nan) for name in labels] for r in rows], dtype=np.float64)

    return calibrate_noise_model(labels, arrays(rows_a, ""), arrays(rows_b, ""), arrays(rows_a, "raw_e_"),
                                 arrays(rows_b, "raw_e_"), **kwargs)


def accuracy_arrays(pipeline, spectra, grid_labels, grid_label_names, labels):
    """Run a label pipeline on labelled spectra: the arrays the accuracy step takes.

    Parameters
    ----------
    pipeline : Pipeline
        Rows must hold ``<label>``, ``raw_e_<label>`` and ``snr_error``.
    spectra : sequence of Spectrum
    grid_labels : array, shape (n, n_grid_labels)
        The spectra's true labels as a synthetic grid or the emulator names them (teff, logg, m_h, x_m ...),
        converted to the pipelines' [X/H] by :func:`stellarnn.labels.astronn.training.grid_labels_to_astronn`.
    grid_label_names : list of str
    labels : list of str
        The noise model's labels, in its order.

    Returns
    -------
    values, truth, raw_errors : arrays (n, n_labels)
    snr : array (n,)
        The rows' ``snr_error`` (for the 1/(S/N) term).
    """
    from .astronn.network import OUTPUT_LABELS
    from .astronn.training import grid_labels_to_astronn

    labels = list(labels)
    rows = pipeline.process(list(spectra))
    truth = grid_labels_to_astronn(grid_labels, grid_label_names)[:, [OUTPUT_LABELS.index(n) for n in labels]]
    values = np.array([[r.get(n, np.nan) for n in labels] for r in rows], dtype=np.float64)
    raw = np.array([[r.get(f"raw_e_{n}", np.nan) for n in labels] for r in rows], dtype=np.float64)
    snr = np.array([r.get("snr_error", np.nan) for r in rows], dtype=np.float64)
    return values, truth, raw, snr


def attach_noise_model(checkpoint_path, noise_model: NoiseModel):
    """Store a noise model in a stellarnn checkpoint (``normalisation["noise_model"]``), atomically."""
    from pathlib import Path

    import torch

    from ..atomic_files import atomic_write
    from ..train.checkpoint import _to_storable, read_checkpoint

    path = Path(checkpoint_path)
    payload = read_checkpoint(path)
    payload["normalisation"]["noise_model"] = _to_storable(noise_model.to_dict())
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path
