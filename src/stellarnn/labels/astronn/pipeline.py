"""The AstroNN label pipeline (``get_pipeline("astronn")``): Teff, log g and 20 abundances.

Steps (REFERENCE.md, Astra AstroNN documentation): DR17 continuum normalisation and training-mean
subtraction (:mod:`~stellarnn.labels.astronn.preprocessing`), the censored Bayesian CNN (:mod:`~stellarnn.labels.astronn.network`), 100
Monte-Carlo dropout passes (:mod:`~stellarnn.labels.astronn.uncertainty`), noise model e = scale * raw_e + offset
(calibrated by :func:`stellarnn.labels.noise_model.calibrate_noise_model` and stored with the
weights; the identity when none is stored), flags and fields (:mod:`~stellarnn.labels.astronn.flags`).  A spectrum that
cannot be loaded or processed gets ``flag_no_result`` and a reason; ``process`` never raises for it.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from ...spectra import Spectrum
from ...spectra.brackett_mask import BRACKETT_MASK_DEFAULT, COOL_TEFF
from ...train import file_sha256, load_checkpoint, pick_device
from ..noise_model import NoiseModel, population_of_predictions
from ..pipeline import (QualityChecks, check_precision, device_defaults, failed_row, process_in_batches,
                        register_pipeline, resolve_shipped_weights, spectrum_seed)
from . import network  # noqa: F401  (registers the "astronn" model kind)
from .flags import FIELDS, FLAG_NO_RESULT, flag_bad, flag_warn, result_flags
from .network import OUTPUT_LABELS
from .preprocessing import mask_brackett_normalised, network_input
from .uncertainty import MC_DEVICE_DEFAULTS, MC_PASSES_DEFAULT, predict_mc_dropout

log = logging.getLogger(__name__)

#: banks of dropout mask sets a pipeline draws once; a spectrum's bank follows from its seed
N_MASK_BANKS = 8
#: spectra per batch by device type: 64 on a CPU (unchanged); on a GPU 1024, the batch of the H200
#: measurements of issue 24 (``forward_mc`` at 1024 spectra per call, :data:`MC_DEVICE_DEFAULTS`)
BATCH_SIZE_DEFAULTS = {"cpu": dict(batch_size=64), "cuda": dict(batch_size=1024)}


@register_pipeline("astronn")
class AstroNNPipeline:
    """AstroNN (ApogeeBCNNCensored) with MC-dropout uncertainties, noise model and flags.

    Parameters
    ----------
    weights : path, optional
        A checkpoint of kind ``"astronn"`` (default: the shipped one, ``weights/astronn``).
    mc_passes : int
        Monte-Carlo dropout passes per spectrum (100).
    batch_size : int, optional
        Spectra normalised and predicted together (default per device, :data:`BATCH_SIZE_DEFAULTS`: 64 on
        a CPU, 1024 on a GPU).
    device : str
        "auto", "cpu" or "cuda".
    max_rows, chunk_rows : int, optional
        (spectrum, pass) rows per group and per network call
        (:func:`~stellarnn.labels.astronn.uncertainty.predict_mc_dropout`);
        default per device (:data:`~stellarnn.labels.astronn.uncertainty.MC_DEVICE_DEFAULTS`: 4096 and
        128 on a CPU, 102,400 and 65,536 on a GPU).
    group_by_masks : bool, optional
        Evaluate the spectra of one mask bank together (default per device: False on a CPU, where each
        spectrum's numbers are then bit-identical whatever its batch, True on a GPU, where they agree
        to floating-point rounding).
    precision : {"float32", "bf16"}
        "bf16" runs the passes under a bfloat16 autocast: CUDA only (refused on a CPU with a
        ``ValueError``).
    seed : int
        Base seed of the dropout masks.  The pipeline holds ``N_MASK_BANKS`` (8) banks of
        ``mc_passes`` mask sets, bank k drawn once from seed (``seed``, k); each spectrum uses bank
        :func:`~stellarnn.labels.pipeline.spectrum_seed` mod 8 (from its identity and data), so its
        numbers do not depend on the batch size or on the other spectra of the run.  Spectra of one
        bank share their masks (their Monte-Carlo noise is correlated, each one's passes keep their
        distribution, as with the shared masks of :meth:`ApogeeBCNNCensored.forward_mc`); spectra of
        different banks are independent.
    ood_emulator : path, None or False
        Emulator of the out-of-distribution measures (:class:`~stellarnn.labels.pipeline.QualityChecks`):
        None for the shipped one, False for none.
    quality_checks : bool
        False skips refusing spectra (information bits, emulator measures): only for calibrating the
        network on its own synthetic spectra (``train calibrate-noise``), never for labelling.
    brackett_mask : bool or None
        Set the H I Brackett cores (:mod:`stellarnn.spectra.brackett_mask`) to 1 before the network and
        leave them out of the OOD measures.  None: what the checkpoint was trained with
        (``normalisation["brackett_mask"]``), else ``BRACKETT_MASK_DEFAULT`` (off: the shipped weights
        were trained without the mask).  Two passes (:meth:`predict_brackett_masked`): all spectra with
        the cool-star mask, then those whose first-pass Teff is >= ``COOL_TEFF`` again with the cores only.

    Before the network, every spectrum's usable information is checked
    (:mod:`stellarnn.labels.spectrum_information`, which also gives the DR17 normalisation the
    network reads); after it, the OOD measures of :mod:`stellarnn.labels.emulator_ood` are added
    to the row.  Their bits are in :mod:`~stellarnn.labels.astronn.flags`.
    """

    name = "astronn"
    fields = FIELDS

    def __init__(self, weights=None, mc_passes: int = MC_PASSES_DEFAULT, batch_size: int | None = None,
                 device: str = "auto", seed: int = 0, max_rows: int | None = None, ood_emulator=None,
                 quality_checks: bool = True, brackett_mask: bool | None = None, chunk_rows: int | None = None,
                 group_by_masks: bool | None = None, precision: str = "float32"):
        path = resolve_shipped_weights("astronn", weights)
        self.device = pick_device(device)
        self.precision = check_precision(precision, self.device)
        sizes = device_defaults(MC_DEVICE_DEFAULTS, self.device)
        batch_size = device_defaults(BATCH_SIZE_DEFAULTS, self.device)["batch_size"] if batch_size is None \
            else batch_size
        max_rows = sizes["max_rows"] if max_rows is None else max_rows
        self.chunk_rows = int(sizes["chunk_rows"] if chunk_rows is None else chunk_rows)
        self.group_by_masks = bool(sizes["group_by_masks"] if group_by_masks is None else group_by_masks)
        if min(batch_size, max_rows, self.chunk_rows) < 1:
            raise ValueError(f"batch_size, max_rows and chunk_rows must be >= 1, got {batch_size}, {max_rows}, "
                             f"{self.chunk_rows}")
        self.model, payload = load_checkpoint(path, expected_kind="astronn", device=self.device)
        self.weights_path, self.version = path, file_sha256(path)[:12]
        norm = payload.get("normalisation", {})
        missing = [k for k in ("spectrum_mean", "label_mean", "label_std") if k not in norm]
        if missing:
            raise ValueError(f"{path}: checkpoint normalisation lacks {missing}")
        self.spectrum_mean = torch.as_tensor(norm["spectrum_mean"], dtype=torch.float64)
        self.label_mean = torch.as_tensor(norm["label_mean"], dtype=torch.float64)
        self.label_std = torch.as_tensor(norm["label_std"], dtype=torch.float64)
        nm = norm.get("noise_model")
        self.noise_model = NoiseModel.from_dict(nm) if nm else NoiseModel.identity(OUTPUT_LABELS)
        if list(self.noise_model.labels) != list(OUTPUT_LABELS):
            raise ValueError(f"{path}: noise model labels do not match the AstroNN outputs")
        if mc_passes < 2:
            raise ValueError("mc_passes must be >= 2")
        self.mc_passes, self.batch_size, self.seed, self.max_rows = int(mc_passes), int(batch_size), seed, int(max_rows)
        self.brackett_mask = bool(norm.get("brackett_mask", BRACKETT_MASK_DEFAULT) if brackett_mask is None
                                  else brackett_mask)
        self.quality = QualityChecks(ood_emulator, enabled=quality_checks, brackett_mask=self.brackett_mask)
        self._mask_banks: dict[int, dict] = {}

    def mask_bank(self, k: int) -> dict:
        """Bank ``k`` of dropout masks (``mc_passes`` sets), drawn on first use from seed (seed, k)."""
        k = int(k) % N_MASK_BANKS
        if k not in self._mask_banks:
            param = next(self.model.parameters())
            gen = torch.Generator(device=param.device).manual_seed(int(self.seed) * N_MASK_BANKS + k)
            self._mask_banks[k] = self.model.pass_masks(self.mc_passes, gen)
        return self._mask_banks[k]

    def predict_normalised(self, normalised_flux, seeds=None) -> dict:
        """Raw predictions for continuum-normalised flux (B, 7514): ``value``, ``raw_error`` (numpy (B, 22)).

        ``seeds``: one per spectrum (its mask bank is seed mod ``N_MASK_BANKS``); default: masks drawn
        from ``self.seed`` for the batch (results then depend on the batch composition).
        """
        x = network_input(normalised_flux, self.spectrum_mean)
        masks = None if seeds is None else [self.mask_bank(sd) for sd in seeds]
        out = predict_mc_dropout(self.model, x, self.label_mean, self.label_std, self.mc_passes, self.seed,
                                 self.max_rows, self.chunk_rows, masks=masks, group_by_masks=self.group_by_masks,
                                 precision=self.precision)
        return {k: v.numpy() for k, v in out.items()}

    def predict_brackett_masked(self, normalised_flux, seeds=None) -> dict:
        """:meth:`predict_normalised` with the Brackett cores masked (when ``brackett_mask``; else unchanged).

        Pass 1 masks every spectrum as a cool star (wide Br 11-13 windows, the pixels least trusted);
        spectra whose pass-1 Teff is >= ``COOL_TEFF`` are predicted again with the cores only, as the
        network saw such stars in training, and keep that second prediction.
        """
        if not self.brackett_mask:
            return self.predict_normalised(normalised_flux, seeds)
        x = torch.as_tensor(np.asarray(normalised_flux) if not isinstance(normalised_flux, torch.Tensor)
                            else normalised_flux).to(torch.float64)
        out = self.predict_normalised(mask_brackett_normalised(x, None), seeds)
        teff = out["value"][:, OUTPUT_LABELS.index("teff")]
        hot = np.flatnonzero(teff >= COOL_TEFF)
        if len(hot):
            again = self.predict_normalised(mask_brackett_normalised(x[torch.as_tensor(hot)], teff[hot]),
                                            None if seeds is None else [seeds[i] for i in hot])
            for key in out:
                out[key][hot] = again[key]
        return out

    def columns_from_predictions(self, value: np.ndarray, raw_error: np.ndarray, snr=None) -> dict:
        """Columns (fields + reason, arrays over spectra) from raw values and errors (B, 22) in OUTPUT_LABELS order.

        ``snr``: the spectra's error-array S/N (``snr_error``), for a noise model with an S/N term.

        The rows are built from them at the end of the batch
        (:meth:`~stellarnn.labels.pipeline.QualityChecks.rows`).
        """
        value = np.asarray(value, dtype=np.float64)
        raw_error = np.asarray(raw_error, dtype=np.float64)
        population = population_of_predictions(OUTPUT_LABELS, value)
        e = np.asarray(self.noise_model.apply(raw_error, population, snr), dtype=np.float64)
        j = {name: i for i, name in enumerate(OUTPUT_LABELS)}
        flags = result_flags(value[:, j["teff"]], value[:, j["logg"]], value[:, j["fe_h"]], e[:, j["teff"]],
                             e[:, j["logg"]], e[:, j["fe_h"]], np.zeros(len(value), bool))
        columns = {}
        for name, k in j.items():
            columns[name] = value[:, k]
            columns[f"e_{name}"] = e[:, k]
            columns[f"raw_{name}"] = value[:, k]
            columns[f"raw_e_{name}"] = raw_error[:, k]
        flags = np.asarray(flags, dtype=np.int64)
        columns["population"] = population.astype(object)
        columns.update(result_flags=flags, flag_warn=flag_warn(flags), flag_bad=flag_bad(flags),
                       reason=np.full(len(value), "", dtype=object))
        return columns

    def _run_batch(self, batch: list[Spectrum]) -> list[dict]:
        info = self.quality.assess(batch)  # its DR17 normalisation is preprocessing.normalise_apstar's
        good = np.flatnonzero(info.usable)
        columns, labels = {}, {}
        if len(good):
            seeds = [spectrum_seed(batch[i], self.seed) for i in good]
            pred = self.predict_brackett_masked(info.continuum.flux[torch.as_tensor(good)], seeds)
            columns = self.columns_from_predictions(pred["value"], pred["raw_error"],
                                                    np.asarray(info.snr_error, dtype=np.float64)[good])
            j = {name: k for k, name in enumerate(OUTPUT_LABELS)}
            labels = {k: pred["value"][:, j[k]] for k in ("teff", "logg", "fe_h")}
            labels["x_h"] = {name: pred["value"][:, k] for name, k in j.items() if name.endswith("_h")}
        profile = () if self.quality.ood is None else ["v_micro"]
        return self.quality.rows(len(batch), info, good, columns, labels, FIELDS, profile, flag_warn, flag_bad)

    def _failed(self, reason: str) -> dict:
        return failed_row(FIELDS, FLAG_NO_RESULT, reason, True, True)  # no labels at all: bad, not only a warning

    def process(self, spectra: Sequence[Spectrum]) -> list[dict]:
        """One row per spectrum, in order; unusable spectra get flag_no_result and a reason."""
        return process_in_batches(spectra, self.batch_size, self._run_batch, self._failed, log)
