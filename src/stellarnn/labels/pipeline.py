"""The contract between label pipelines (APOGEENet, AstroNN, ...) and the survey runner.

A pipeline takes a batch of :class:`~stellarnn.spectra.Spectrum` objects (apStar combined
spectra or visits, 8575 px) and returns one row (a dict) per spectrum, in order.  It never
raises for a bad spectrum: such a spectrum gets its documented flag and a ``reason``.
The runner owns files, batching, databases and exports; pipelines never touch a database.

Information and out-of-distribution bits, the same in every pipeline's ``result_flags`` (measures and
thresholds in :mod:`stellarnn.labels.spectrum_information` and :mod:`stellarnn.labels.emulator_ood`):

=====  ==========================  ==========================================================
bit    name                        set when
=====  ==========================  ==========================================================
2^4    flag_missing_chip           a chip has < 50 % good pixels or error-array S/N < 2 (bad)
2^5    flag_low_snr                robust S/N (``snr_robust``) < 5 (bad)
2^6    flag_featureless            no absorption structure: line contrast < 0.5 before the
                                   network (constant, smooth), or the emulator's line pattern
                                   at the predicted labels detected at S/N (``line_snr``) < 5
                                   after it (noise only) (bad)
2^7    flag_ood_chi2               ``ood_chi2`` > 25 (warn)
2^8    flag_ood_chi2_bad           ``ood_chi2`` > 100 (bad)
2^9    flag_outside_training       predicted Teff / log g / [Fe/H] outside the training box
                                   3500-8000 K, 0-5, -2.5..+0.5 by more than 0.5 e_* (warn)
2^10   flag_far_outside_training   ``ood_label_distance`` > 1, e.g. Teff < 3250 K or > 8250 K (bad)
=====  ==========================  ==========================================================

Bits 4-6 (and 2^6 set after the network) leave every label NaN: the spectrum carries no stellar
information.  The ``good_fraction_*``, ``snr_robust``, ``line_contrast``, ``line_snr``, ``ood_chi2`` and
``ood_label_distance`` columns (:data:`stellarnn.labels.pipeline.QUALITY_FIELDS`) hold the measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..spectra import APOGEE_N_PIXELS, Spectrum


@dataclass(frozen=True)
class FieldInfo:
    """One output column: its unit (astropy string, '' if none), description, and numpy dtype."""

    unit: str
    description: str
    dtype: str = "float64"


@runtime_checkable
class Pipeline(Protocol):
    """What every label pipeline provides."""

    #: short name, e.g. "apogeenet" or "astronn"
    name: str
    #: model version (e.g. the first 12 hex digits of the weights' sha256)
    version: str
    #: the columns each row holds (besides "reason"), in a fixed order: name -> FieldInfo
    fields: dict[str, FieldInfo]

    def process(self, spectra: Sequence[Spectrum]) -> list[dict]:
        """One row per spectrum, same order; bad spectra get flags and a non-empty "reason"."""
        ...


from ..data.shipped_weights import WEIGHTS_ENV, shipped_weights  # noqa: F401 (WEIGHTS_ENV re-exported)


def resolve_shipped_weights(name: str, weights=None) -> Path:
    """The checkpoint to load: ``weights`` if given, else the shipped one named by its group's manifest
    (found and sha256-checked by :func:`stellarnn.data.shipped_weights.shipped_weights`)."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{name} weights {path} do not exist")
        return path
    return shipped_weights(name)


def spectrum_problem(spectrum) -> str:
    """Why a spectrum cannot go through an apStar-grid pipeline ('' if it can)."""
    if not isinstance(spectrum, Spectrum):
        return f"not a Spectrum (got {type(spectrum).__name__})"
    if spectrum.flux.shape != (APOGEE_N_PIXELS,):
        return f"has {spectrum.flux.shape[0]} pixels, expected {APOGEE_N_PIXELS} (apStar grid)"
    if not np.any(np.isfinite(spectrum.ivar) & (spectrum.ivar > 0)):
        return "no pixel with positive inverse variance"
    return ""


def spectrum_seed(spectrum, base_seed: int = 0) -> int:
    """A stable 63-bit seed for one spectrum's Monte-Carlo draws, from its identity.

    BLAKE2b of ``base_seed`` and the spectrum's identity: its ``apogee_id`` (or ``object_id``) from
    ``spectrum.meta``, with the row for a visit (``kind == "visit"``); a spectrum without an identity
    is identified by the bytes of its flux (float64).  The same spectrum gets the same draws whatever
    batch it is processed in (a run resumed with another batch size gives the same numbers), and
    whichever way it was read (apStar path, Spectrum1D or arrays carrying the same apogee_id).
    """
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    h.update(f"{int(base_seed)}|".encode())
    meta = getattr(spectrum, "meta", None) or {}
    name = meta.get("apogee_id") or meta.get("object_id")
    if name:
        visit = f"|visit {meta.get('row')}" if meta.get("kind") == "visit" else ""
        h.update(f"id:{name}{visit}".encode())
    else:
        h.update(b"flux:" + np.ascontiguousarray(spectrum.flux, dtype=np.float64).tobytes())
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


#: numeric precisions of the label networks at inference (``precision=`` of both pipelines)
INFERENCE_PRECISIONS = ("float32", "bf16")


def device_defaults(table: dict, device) -> dict:
    """The entry of a per-device table of inference sizes for ``device`` (a torch.device or its name).

    ``table`` maps a device type ("cpu", "cuda") to a dict of keyword defaults; a device type the table
    lacks (e.g. "mps") gets the "cpu" entry, the cache-sized one.
    """
    import torch

    kind = torch.device(device).type
    return dict(table.get(kind, table["cpu"]))


def check_precision(precision: str, device) -> str:
    """``precision`` if the label networks can run at it on ``device``, else a ``ValueError`` saying why.

    "float32" runs everywhere.  "bf16" (bfloat16 autocast of the network's convolutions and matrix
    products, :func:`inference_autocast`) needs a CUDA device: on CPUs it is refused rather than run
    slowly (most CPUs have no bfloat16 matrix units) and untested.
    """
    import torch

    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {INFERENCE_PRECISIONS}, not {precision!r}")
    if precision == "bf16" and torch.device(device).type != "cuda":
        raise ValueError(f"precision='bf16' needs a CUDA device, got {str(torch.device(device))!r}; "
                         "use precision='float32' on a CPU")
    return precision


def inference_autocast(precision: str, device):
    """Context for the network's forward passes: nothing for "float32", bfloat16 autocast for "bf16" (CUDA).

    Under autocast the convolutions and linear layers run in bfloat16 with float32 accumulation; the
    outputs are stored and reduced (means, variances) in float32 / float64 as without it.
    """
    import contextlib

    import torch

    check_precision(precision, device)
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


#: the population column both pipelines add to every row
POPULATION_FIELD: dict[str, FieldInfo] = {
    "population": FieldInfo("", "Population of the predicted teff, logg, fe_h: giants, metal_poor_giants, warm_giants, "
                                "dwarfs, m_dwarfs or hot (edges: stellarnn.synthesis.populations), empty for none or "
                                "no label; the e_ columns use this population's noise model where the weights carry "
                                "one, else the global model", "str"),
}


#: the information / out-of-distribution columns both pipelines add to every row
QUALITY_FIELDS: dict[str, FieldInfo] = {
    "good_fraction_blue": FieldInfo("", "Fraction of good pixels (finite flux, ivar > 0, no bad PIXMASK bit) "
                                        "on the blue chip (apStar pixels 246-3274)"),
    "good_fraction_green": FieldInfo("", "Fraction of good pixels on the green chip (apStar pixels 3585-6080)"),
    "good_fraction_red": FieldInfo("", "Fraction of good pixels on the red chip (apStar pixels 6344-8335)"),
    "snr_error": FieldInfo("", "S/N per pixel from the error array: median flux*sqrt(ivar) over the good pixels "
                               "of the three chips (the S/N of the noise model's 1/(S/N) term)"),
    "snr_robust": FieldInfo("", "Robust S/N per pixel: min of median flux*sqrt(ivar) and median flux / "
                                "(1.4826 MAD of adjacent flux differences / sqrt 2)"),
    "line_contrast": FieldInfo("", "rms of the continuum-normalised flux in the ASPCAP windows over its noise "
                                   "(1: noise only, 0: constant)"),
    "line_snr": FieldInfo("", "Matched-filter S/N of the emulator's line pattern at the predicted labels "
                              "(N(0,1) for noise; NaN when not computed)"),
    "ood_chi2": FieldInfo("", "Reduced chi^2 of the Payne emulator's spectrum at the predicted labels against "
                              "the normalised input, good pixels, per-chip quadratic continuum (NaN when not computed)"),
    "ood_label_distance": FieldInfo("", "Distance of the predicted Teff, log g, [Fe/H] outside the training box "
                                        "by more than half their uncertainties, in units of 250 K, 0.5, 0.25 dex "
                                        "(0 inside)"),
}


class QualityChecks:
    """The information checks before the network and the OOD measures after it, shared by both pipelines.

    See :mod:`stellarnn.labels.spectrum_information` and :mod:`stellarnn.labels.emulator_ood` for the
    measures, bits and thresholds.

    Parameters
    ----------
    emulator : path, None or False
        The Payne emulator for the OOD measures: None for the shipped one, False for none (then
        ``line_snr``, ``ood_chi2`` are NaN and only the pre-network checks and the label box flag).
    enabled : bool
        False: measure but never refuse a spectrum (no information bits, no emulator) -- for
        calibrating a network on its own synthetic spectra, never for labelling unknown inputs.
    brackett_mask : bool
        Leave the Brackett cores out of the OOD measures (:class:`~stellarnn.labels.emulator_ood.EmulatorOOD`);
        the pipelines pass their own setting, so the network and the OOD measures skip the same pixels.
    """

    def __init__(self, emulator=None, enabled: bool = True, brackett_mask: bool = False):
        from .emulator_ood import EmulatorOOD

        self.ood = None
        self.enabled = bool(enabled)
        if emulator is not False and self.enabled:
            try:
                self.ood = EmulatorOOD(emulator, brackett_mask=brackett_mask)
            except FileNotFoundError as exc:
                if emulator is not None:
                    raise
                import logging

                logging.getLogger(__name__).warning("no emulator for the out-of-distribution measures (%s): "
                                                    "line_snr and ood_chi2 will be NaN", exc)

    def assess(self, batch: Sequence[Spectrum]):
        """:func:`~stellarnn.labels.spectrum_information.assess_information` of a list of spectra
        (its bits cleared when the checks are not ``enabled``)."""
        from .spectrum_information import assess_information

        info = assess_information(np.stack([s.flux for s in batch]), np.stack([s.ivar for s in batch]),
                                  np.stack([s.bitmask for s in batch]))
        if not self.enabled:
            info.flags[:] = 0
            info.reasons = [""] * len(batch)
        return info

    def rows(self, n: int, info, good_idx, good_columns: dict, labels: dict, fields: dict, profile=(),
             flag_warn=None, flag_bad=None) -> list[dict]:
        """Final rows of a batch: network columns (for ``good_idx``) with OOD columns and bits, NaN rows elsewhere.

        Everything is computed on columns (arrays over the batch); the row dicts are built in the
        last step only (:func:`rows_from_columns`).

        Parameters
        ----------
        n : int
            Spectra in the batch.
        info : InformationReport
            Of the whole batch.
        good_idx : sequence of int
            Spectra that passed the information checks.
        good_columns : dict of str -> array
            The network's columns for ``good_idx`` (same order): label values, ``e_*`` ... and
            ``result_flags``, ``reason`` (e.g. a pipeline's ``columns_from_predictions``).
        labels : dict
            ``teff``, ``logg``, ``fe_h`` (arrays over ``good_idx``) and optionally ``x_h`` (dict of
            AstroNN [X/H] arrays) for the emulator.
        profile : sequence of str
            Emulator labels the network does not predict (profiled, see :meth:`EmulatorOOD.measure`).
        flag_warn, flag_bad : callable
            The pipeline's summary-flag functions of ``result_flags`` (vectorised over an array).
        """
        from .emulator_ood import FLAG_FEATURELESS, OOD_FLAG_BITS, label_distance, ood_flags
        from .spectrum_information import INFORMATION_FLAG_BITS

        good_idx = np.asarray(list(good_idx), dtype=np.int64)
        m = len(good_idx)
        nan = np.full(m, np.nan)
        dist, bits = nan, np.zeros(m, dtype=np.int64)
        measures = {"line_snr": nan, "ood_chi2": nan}
        if m:
            teff, logg, fe_h = (np.asarray(labels[k], dtype=np.float64) for k in ("teff", "logg", "fe_h"))
            errors = {k: np.asarray(good_columns.get(f"e_{k}", nan), dtype=np.float64) * np.ones(m)
                      for k in ("teff", "logg", "fe_h")}
            if self.ood is not None:
                dist = self.ood.label_distance(teff, logg, fe_h, errors)
                grid = self.ood.grid_labels(teff, logg, fe_h, labels.get("x_h"))
                measures = self.ood.measure(grid, info, rows=good_idx.tolist(), profile=profile)
                bits = np.asarray(ood_flags(measures["ood_chi2"], measures["line_snr"], dist), dtype=np.int64)
            else:  # no emulator: only the label box
                dist = label_distance(teff, logg, fe_h, errors=errors)
                bits = np.asarray(ood_flags(nan, np.full(m, np.inf), dist), dtype=np.int64)
        columns = {}
        for key, f in fields.items():
            if f.dtype.startswith("float"):
                columns[key] = np.full(n, np.nan)
            else:
                columns[key] = np.full(n, None, dtype=object)
            if m and key in good_columns:
                columns[key][good_idx] = good_columns[key]
        columns.update(information_columns(info))
        for key, values in (("line_snr", measures["line_snr"]), ("ood_chi2", measures["ood_chi2"]),
                            ("ood_label_distance", dist)):
            columns[key] = np.full(n, np.nan)
            columns[key][good_idx] = np.asarray(values, dtype=np.float64)
        flags = np.asarray(info.flags, dtype=np.int64).copy()
        reasons = np.asarray(info.reasons, dtype=object).copy() if n else np.empty(0, dtype=object)
        if m:
            flags[good_idx] = np.asarray(good_columns["result_flags"], dtype=np.int64) | bits
            reasons[good_idx] = good_columns.get("reason", np.full(m, "", dtype=object))
            featureless = good_idx[(bits & FLAG_FEATURELESS) != 0]
            if len(featureless):  # no stellar line pattern: never a label
                for key, f in fields.items():
                    if f.dtype.startswith("float") and key not in QUALITY_FIELDS:
                        columns[key][featureless] = np.nan
                    elif key in POPULATION_FIELD:
                        columns[key][featureless] = None
            names = {**INFORMATION_FLAG_BITS, **OOD_FLAG_BITS}
            for k in np.flatnonzero(bits):  # only flagged spectra: a reason string each
                i = good_idx[k]
                new = [name for name, bit in names.items() if bits[k] & bit]
                if new and not reasons[i]:
                    reasons[i] = (("no stellar information: " if bits[k] & FLAG_FEATURELESS else
                                   "out of distribution: ") + ", ".join(new) +
                                  f" (line_snr {columns['line_snr'][i]:.3g}, ood_chi2 {columns['ood_chi2'][i]:.3g}, "
                                  f"label distance {columns['ood_label_distance'][i]:.3g})")
        columns["result_flags"] = flags
        columns["flag_warn"] = np.asarray(flag_warn(flags), dtype=bool)
        columns["flag_bad"] = np.asarray(flag_bad(flags), dtype=bool)
        columns["reason"] = reasons
        return rows_from_columns(columns, n)


def information_columns(info) -> dict:
    """The information columns of a whole batch as arrays (``info.columns(i)`` for every spectrum i at once)."""
    from .spectrum_information import CHIP_NAMES

    good_fraction = np.asarray(info.good_fraction, dtype=np.float64)
    out = {f"good_fraction_{c}": good_fraction[:, k].copy() for k, c in enumerate(CHIP_NAMES)}
    out.update(snr_error=np.asarray(info.snr_error, dtype=np.float64).copy(),
               snr_robust=np.asarray(info.snr_robust, dtype=np.float64).copy(),
               line_contrast=np.asarray(info.line_contrast, dtype=np.float64).copy())
    return out


def rows_from_columns(columns: dict, n: int) -> list[dict]:
    """Row dicts from columns (arrays of length ``n``): the last step of a batch, Python scalars in every row.

    ``ndarray.tolist`` turns each column into Python floats, ints and bools at once (what ``float(x[i])``
    etc. give one by one); the rows are zipped from those lists.
    """
    keys = list(columns)
    values = []
    for key in keys:
        col = np.asarray(columns[key])
        if col.shape != (n,):
            raise ValueError(f"column {key!r} has shape {col.shape}, expected ({n},)")
        values.append(col.tolist())
    return [dict(zip(keys, row)) for row in zip(*values)]


def failed_row(fields, flag: int, reason: str, flag_bad_value: bool, flag_warn_value: bool) -> dict:
    """A row of NaN values carrying ``flag`` and ``reason``."""
    row = {}
    for key, info in fields.items():
        row[key] = np.nan if info.dtype.startswith("float") else None
    row.update(result_flags=int(flag), flag_warn=bool(flag_warn_value), flag_bad=bool(flag_bad_value),
               reason=reason)
    return row


def process_in_batches(spectra: Sequence, batch_size: int, run_batch: Callable[[list], list[dict]],
                       failed: Callable[[str], dict], log) -> list[dict]:
    """One row per spectrum, in order, never raising for a bad spectrum.

    Spectra that :func:`spectrum_problem` refuses get ``failed(reason)``; the others go through
    ``run_batch`` ``batch_size`` at a time.  A batch that raises is retried one spectrum at a time, so
    only the offending spectrum gets ``failed("ExceptionName: message")``.
    """
    rows: list[dict | None] = [None] * len(spectra)
    good = []
    for i, s in enumerate(spectra):
        problem = spectrum_problem(s)
        if problem:
            rows[i] = failed(problem)
        else:
            good.append(i)
    for start in range(0, len(good), batch_size):
        idx = good[start:start + batch_size]
        try:
            for i, row in zip(idx, run_batch([spectra[i] for i in idx])):
                rows[i] = row
        except Exception as exc:  # isolate the offending spectrum; the others still get results
            log.warning("batch failed (%s: %s); retrying one by one", type(exc).__name__, exc)
            for i in idx:
                try:
                    rows[i] = run_batch([spectra[i]])[0]
                except Exception as exc_i:
                    rows[i] = failed(f"{type(exc_i).__name__}: {exc_i}")
    return rows


_REGISTRY: dict[str, type] = {}


def register_pipeline(name: str):
    """Class decorator: make a pipeline constructible by name (``get_pipeline(name, **kwargs)``)."""

    def deco(cls):
        _REGISTRY[name] = cls
        return cls

    return deco


def _import_builtin_pipelines() -> None:
    import importlib

    for module in ("stellarnn.labels.apogeenet", "stellarnn.labels.astronn"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def get_pipeline(name: str, **kwargs) -> Pipeline:
    """Build a registered pipeline by name (built-in ones are imported first)."""
    _import_builtin_pipelines()
    if name not in _REGISTRY:
        raise KeyError(f"unknown pipeline {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def available_pipelines() -> list[str]:
    _import_builtin_pipelines()
    return sorted(_REGISTRY)
