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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.stats import mad_std
from scipy.optimize import minimize

from ..synthesis.populations import POPULATIONS, population_of

MIN_PAIRS = 10


@dataclass
class NoiseModel:
    """Per-label linear uncertainty correction ``e = scale * raw_e + offset``.

    Parameters
    ----------
    labels : list of str
        Label names, in the order of the last axis of the arrays it is applied to.
    scale, offset : ndarray, shape (n_labels,)
        Dimensionless scale and offset in the unit of each label (K for Teff, dex otherwise).
    diagnostics : dict
        Calibration figures (number of pairs used, std of z before and after), if calibrated.
    by_population : dict, optional
        ``{population: (scale, offset)}`` for the populations of :mod:`stellarnn.synthesis.populations`
        calibrated on their own (:func:`calibrate_accuracy_by_population`); other stars use ``scale``, ``offset``.
    """

    labels: list[str]
    scale: np.ndarray
    offset: np.ndarray
    diagnostics: dict = field(default_factory=dict)
    by_population: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = list(self.labels)
        self.scale, self.offset = self._checked(self.scale, self.offset, "")
        unknown = sorted(set(self.by_population) - set(POPULATIONS))
        if unknown:
            raise ValueError(f"noise model for unknown population(s) {unknown}; known: {list(POPULATIONS)}")
        self.by_population = {name: self._checked(*pair, f" of population {name!r}")
                              for name, pair in self.by_population.items()}

    def _checked(self, scale, offset, what: str) -> tuple[np.ndarray, np.ndarray]:
        scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        offset = np.asarray(offset, dtype=np.float64).reshape(-1)
        n = len(self.labels)
        if scale.shape != (n,) or offset.shape != (n,):
            raise ValueError(f"scale and offset{what} need {n} values (one per label), got "
                             f"{scale.shape} and {offset.shape}")
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(offset))):
            raise ValueError(f"noise model scale and offset{what} must be finite")
        if np.any(scale <= 0) or np.any(offset < 0):
            raise ValueError(f"noise model needs scale > 0 and offset >= 0{what}")
        return scale, offset

    @classmethod
    def identity(cls, labels) -> "NoiseModel":
        """The model that leaves the raw errors unchanged (scale 1, offset 0)."""
        labels = list(labels)
        return cls(labels, np.ones(len(labels)), np.zeros(len(labels)), {"calibrated": False})

    def apply(self, raw_error, population=None):
        """Corrected errors, ``scale * raw_e + offset`` (array (..., n_labels); NaN stays NaN).

        ``population`` (array of population names over the leading axes, e.g. :func:`population_of_predictions`
        of the predicted labels): rows of a population with its own model use it, the others the global one.
        """
        raw_error = np.asarray(raw_error, dtype=np.float64)
        if raw_error.shape[-1] != len(self.labels):
            raise ValueError(f"last axis has {raw_error.shape[-1]} labels, noise model has {len(self.labels)}")
        scale = np.broadcast_to(self.scale, raw_error.shape).copy()
        offset = np.broadcast_to(self.offset, raw_error.shape).copy()
        if population is not None and self.by_population:
            population = np.asarray(population)
            if population.shape != raw_error.shape[:-1]:
                raise ValueError(f"population has shape {population.shape}, the errors' leading axes "
                                 f"{raw_error.shape[:-1]}")
            for name, (s, o) in self.by_population.items():
                rows = population == name
                scale[rows], offset[rows] = s, o
        return scale * raw_error + offset

    def to_dict(self) -> dict:
        out = {"labels": list(self.labels), "scale": [float(v) for v in self.scale],
               "offset": [float(v) for v in self.offset], "diagnostics": dict(self.diagnostics)}
        if self.by_population:
            out["by_population"] = {name: {"scale": [float(v) for v in s], "offset": [float(v) for v in o]}
                                    for name, (s, o) in self.by_population.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseModel":
        try:
            by_population = {name: (np.asarray(v["scale"], dtype=np.float64), np.asarray(v["offset"], dtype=np.float64))
                             for name, v in dict(d.get("by_population", {})).items()}
            return cls(d["labels"], np.asarray(d["scale"], dtype=np.float64),
                       np.asarray(d["offset"], dtype=np.float64), dict(d.get("diagnostics", {})), by_population)
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
    """The model without an accuracy floor: offsets back to their repeat-pair values (if one was added)."""
    accuracy = model.diagnostics.get("accuracy")
    if not accuracy:
        return model
    offset = np.array([accuracy["labels"][name]["offset_precision"] for name in model.labels])
    scale = np.array([accuracy["labels"][name].get("scale_precision", model.scale[j])
                      for j, name in enumerate(model.labels)])
    diagnostics = {k: v for k, v in model.diagnostics.items() if k not in ("accuracy", "accuracy_by_population")}
    return NoiseModel(model.labels, scale, offset, diagnostics)  # the populations' models are accuracy steps


def calibrate_accuracy_offset(model: NoiseModel, values, truth, raw_errors, clip_sigma: float = 5.0,
                              max_iterations: int = 5, source: str = "", raise_scale: bool = False,
                              bounded: bool = True) -> NoiseModel:
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

    Returns
    -------
    NoiseModel
        Same labels; scale kept (or, with ``raise_scale``, the maximum-likelihood scale >= the
        precision scale); offset = max(precision offset, maximum-likelihood offset);
        ``diagnostics["accuracy"]`` holds, per label, spectra used and std of (value - truth)/e
        with the precision model and after.
    """
    v, t, r = (np.asarray(a, dtype=np.float64) for a in (values, truth, raw_errors))
    if not clip_sigma > 0:
        raise ValueError(f"clip_sigma must be a positive number of sigma, got {clip_sigma!r}")
    n_labels = len(model.labels)
    if not (v.shape == t.shape == r.shape) or v.ndim != 2 or v.shape[1] != n_labels:
        raise ValueError(f"values, truth and raw errors must all have shape (n, {n_labels}); got "
                         f"{[a.shape for a in (v, t, r)]}")
    offset, scale = model.offset.copy(), model.scale.copy()
    raise_scale = raise_scale or not bounded
    how = ("scale and offset free" if not bounded else
           "scale and offset bounded below by the precision model" if raise_scale else "scale fixed")
    report = {"method": "maximum likelihood of (value - truth) with e = scale raw_e + offset, " + how,
              "source": source, "clip_sigma": float(clip_sigma), "labels": {}}
    for j, name in enumerate(model.labels):
        ok = np.isfinite(v[:, j]) & np.isfinite(t[:, j]) & np.isfinite(r[:, j]) & (r[:, j] > 0)
        if ok.sum() < MIN_PAIRS:
            raise ValueError(f"label {name!r}: only {int(ok.sum())} labelled spectra (need >= {MIN_PAIRS})")
        d, e0 = v[ok, j] - t[ok, j], model.scale[j] * r[ok, j]
        unit = float(np.median(e0))
        keep = np.ones(d.size, dtype=bool)
        o, k = offset[j], 1.0  # e = k e0 + o, k >= 1 (scale = k * precision scale)
        for _ in range(max_iterations):
            dk, ek = d[keep] / unit, e0[keep] / unit

            def nll(x):
                e = (x[1] if raise_scale else 1.0) * ek + x[0]
                return float(np.sum(np.log(e) + 0.5 * dk ** 2 / e ** 2))

            lowest_offset, lowest_k = (offset[j] / unit, 1.0) if bounded else (0.0, 1e-3)
            res = minimize(nll, [max(o / unit, 0.1), k], method="L-BFGS-B",
                           bounds=[(lowest_offset, 1e6), (lowest_k, 1e6) if raise_scale else (1.0, 1.0)])
            o, k = float(res.x[0]) * unit, float(res.x[1])
            new_keep = np.abs(d / (k * e0 + o)) <= clip_sigma
            if new_keep.sum() < MIN_PAIRS or np.array_equal(new_keep, keep):
                break
            keep = new_keep
        z_before, z_after = d / (e0 + offset[j]), d / (k * e0 + o)
        report["labels"][name] = {"n": int(ok.sum()), "n_used": int(keep.sum()), "offset_precision": float(offset[j]),
                                  "offset_accuracy": o, "scale_precision": float(model.scale[j]),
                                  "scale_accuracy": float(k * model.scale[j]),
                                  "std_z_precision_model": float(np.std(z_before)),
                                  "std_z_calibrated": float(np.std(z_after))}
        offset[j], scale[j] = o, k * model.scale[j]
    diagnostics = dict(model.diagnostics)
    diagnostics["accuracy"] = report
    return NoiseModel(model.labels, scale, offset, diagnostics)


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
        ``clip_sigma``, ``max_iterations``, ``source``, ``raise_scale`` of :func:`calibrate_accuracy_offset`.

    Returns
    -------
    NoiseModel
        ``diagnostics["accuracy"]`` as from the global fit; ``diagnostics["accuracy_by_population"]`` holds each
        population's spectra and its per-label report, or why it has no model of its own.
    """
    if min_spectra < MIN_PAIRS:
        raise ValueError(f"min_spectra must be >= {MIN_PAIRS}, got {min_spectra}")
    base = NoiseModel(model.labels, model.scale, model.offset, dict(model.diagnostics))
    fitted = calibrate_accuracy_offset(base, values, truth, raw_errors, **kwargs)
    v, t, r = (np.asarray(a, dtype=np.float64) for a in (values, truth, raw_errors))
    population = population_of_predictions(model.labels, v)
    usable = np.all(np.isfinite(v) & np.isfinite(t) & np.isfinite(r) & (r > 0), axis=1)
    by_population, report = {}, {}
    for name in POPULATIONS:
        rows = (population == name) & usable
        if rows.sum() < min_spectra:
            report[name] = {"n": int(rows.sum()), "model": f"global (fewer than {min_spectra} spectra)"}
            continue
        own = calibrate_accuracy_offset(base, v[rows], t[rows], r[rows], **dict(kwargs, bounded=False))
        by_population[name] = (own.scale, own.offset)
        report[name] = {"n": int(rows.sum()), "model": "own", "labels": own.diagnostics["accuracy"]["labels"]}
    diagnostics = dict(fitted.diagnostics)
    diagnostics["accuracy_by_population"] = {"assigned_by": "predicted teff, logg, fe_h",
                                             "min_spectra": int(min_spectra), "populations": report}
    return NoiseModel(fitted.labels, fitted.scale, fitted.offset, diagnostics, by_population)


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
