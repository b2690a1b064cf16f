"""The APOGEENet label pipeline (``get_pipeline("apogeenet")``): Teff, log g, [Fe/H] from apStar spectra.

Steps (REFERENCE.md, Astra APOGEENet documentation): preprocessing (:mod:`~stellarnn.labels.apogeenet.preprocessing`),
network (:mod:`~stellarnn.labels.apogeenet.network`), 20 noise draws (:mod:`~stellarnn.labels.apogeenet.uncertainty`), noise model
e = scale * raw_e + offset (the published one by default, or the one calibrated and stored with
the weights), flags and fields (:mod:`~stellarnn.labels.apogeenet.flags`).  A spectrum that cannot be used (wrong pixel
count, no information, an exception in its batch) gets ``flag_runtime_exception`` and a reason;
``process`` never raises for a bad spectrum.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from ...spectra import Spectrum, apogee_wavelength
from ...spectra.brackett_mask import BRACKETT_MASK_DEFAULT, COOL_TEFF, brackett_mask as brackett_pixels
from ...train import file_sha256, load_checkpoint, pick_device
from ..noise_model import NoiseModel, population_of_predictions
from ..pipeline import (QualityChecks, check_precision, device_defaults, failed_row, process_in_batches,
                        register_pipeline, resolve_shipped_weights, spectrum_seed)
from . import network  # noqa: F401  (registers the "apogeenet" model kind)
from .flags import FIELDS, FLAG_RUNTIME_EXCEPTION, flag_bad, flag_warn, result_flags
from .network import APOGEENET_OUTPUT_MEAN, APOGEENET_OUTPUT_STD
from .preprocessing import preprocess
from .uncertainty import DRAW_DEVICE_DEFAULTS, N_DRAWS_DEFAULT, predict_with_noise_draws

log = logging.getLogger(__name__)

LABELS = ("teff", "logg", "fe_h")
#: the published APOGEENet noise model (Astra): e = scale * raw_e + offset
PUBLISHED_NOISE_MODEL = NoiseModel(list(LABELS), [1.25, 1.25, 1.0], [10.0, 0.01, 0.01],
                                   {"calibrated": False, "source": "Astra APOGEENet documentation"})
@register_pipeline("apogeenet")
class APOGEENetPipeline:
    """APOGEENet III: Teff, log g, [Fe/H] with noise-draw uncertainties and flags.

    Parameters
    ----------
    weights : path, optional
        A checkpoint of kind ``"apogeenet"`` (default: the shipped one, ``weights/apogeenet``).
    n_draws : int
        Noise draws per spectrum (20).
    batch_size : int, optional
        Spectra per network batch (each expands to 1 + n_draws rows); default per device
        (:data:`~stellarnn.labels.apogeenet.uncertainty.DRAW_DEVICE_DEFAULTS`: 32 on a CPU).
    device : str
        "auto" (GPU if present), "cpu", "cuda".  On a GPU the noise draws come from per-spectrum
        generators on the GPU (other random streams than on a CPU: the labels agree within the
        Monte-Carlo noise, not bit for bit).
    chunk_size : int, optional
        Network rows per call; default per device (128 on a CPU).
    precision : {"float32", "bf16"}
        "bf16" runs the network under a bfloat16 autocast: CUDA only (refused on a CPU with a
        ``ValueError``).
    seed : int
        Base seed of the noise draws; each spectrum's draws come from its own generator seeded by
        :func:`~stellarnn.labels.pipeline.spectrum_seed` (its identity and data), so a spectrum's
        numbers do not depend on the batch size or on the other spectra of the run.
    ood_emulator : path, None or False
        Emulator of the out-of-distribution measures (:class:`~stellarnn.labels.pipeline.QualityChecks`):
        None for the shipped one, False for none.
    quality_checks : bool
        False skips refusing spectra (information bits, emulator measures): only for calibrating the
        network on its own synthetic spectra (``train calibrate-noise``), never for labelling.
    brackett_mask : bool or None
        Set the H I Brackett cores (:mod:`stellarnn.spectra.brackett_mask`) to the continuum with ivar 0
        before the network and leave them out of the OOD measures.  None: what the checkpoint was
        trained with (``normalisation["brackett_mask"]``), else ``BRACKETT_MASK_DEFAULT`` (off: the
        shipped weights were trained without the mask).  Two passes (:meth:`predict_brackett_masked`).

    Before the network, every spectrum's usable information is checked
    (:mod:`stellarnn.labels.spectrum_information`); after it, the OOD measures of
    :mod:`stellarnn.labels.emulator_ood` are added to the row.  Their bits are in :mod:`~stellarnn.labels.apogeenet.flags`.
    """

    name = "apogeenet"
    fields = FIELDS

    def __init__(self, weights=None, n_draws: int = N_DRAWS_DEFAULT, batch_size: int | None = None,
                 device: str = "auto", seed: int = 0, chunk_size: int | None = None, ood_emulator=None,
                 quality_checks: bool = True, brackett_mask: bool | None = None, precision: str = "float32"):
        path = resolve_shipped_weights("apogeenet", weights)
        self.device = pick_device(device)
        self.precision = check_precision(precision, self.device)
        sizes = device_defaults(DRAW_DEVICE_DEFAULTS, self.device)
        batch_size = sizes["batch_size"] if batch_size is None else batch_size
        chunk_size = sizes["chunk_size"] if chunk_size is None else chunk_size
        if min(batch_size, chunk_size) < 1:
            raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
        self.model, payload = load_checkpoint(path, expected_kind="apogeenet", device=self.device)
        self.weights_path = path
        self.version = file_sha256(path)[:12]
        norm = payload.get("normalisation", {})
        self.output_mean = [float(v) for v in norm.get("output_mean", APOGEENET_OUTPUT_MEAN)]
        self.output_std = [float(v) for v in norm.get("output_std", APOGEENET_OUTPUT_STD)]
        self.input_flux = str(norm.get("input_flux", "raw"))
        nm = norm.get("noise_model")
        self.noise_model = NoiseModel.from_dict(nm) if nm else PUBLISHED_NOISE_MODEL
        if list(self.noise_model.labels) != list(LABELS):
            raise ValueError(f"{path}: noise model labels {self.noise_model.labels} are not {list(LABELS)}")
        if n_draws < 2:
            raise ValueError("n_draws must be >= 2 (the uncertainty is a standard deviation over draws)")
        self.n_draws, self.batch_size, self.chunk_size, self.seed = int(n_draws), int(batch_size), int(chunk_size), seed
        self.brackett_mask = bool(norm.get("brackett_mask", BRACKETT_MASK_DEFAULT) if brackett_mask is None
                                  else brackett_mask)
        self.quality = QualityChecks(ood_emulator, enabled=quality_checks, brackett_mask=self.brackett_mask)

    def predict_arrays(self, flux, ivar, bitmask=None, generator=None, continuum=None, masked=None) -> dict:
        """Raw predictions for arrays (B, 8575): teff, logg, fe_h and raw_e_* (numpy, float64).

        ``generator``: one torch.Generator, or a list with one per spectrum; ``continuum``: the DR17
        normalisation of these spectra if already computed; ``masked``: pixels set to the continuum
        with ivar 0 (:func:`~.preprocessing.preprocess`).
        """
        f, e = preprocess(flux, ivar, bitmask, self.input_flux, continuum, masked)
        out = predict_with_noise_draws(self.model, f, e, self.output_mean, self.output_std, self.n_draws,
                                       generator, self.chunk_size, self.precision)
        return {k: v.numpy() for k, v in out.items()}

    def predict_brackett_masked(self, flux, ivar, bitmask, seeds, continuum=None) -> dict:
        """:meth:`predict_arrays` with the Brackett cores masked when ``brackett_mask`` (else unchanged).

        ``seeds``: one per spectrum (its noise draws come from a generator seeded with it, afresh in each
        pass).  Pass 1 masks every spectrum as a cool star (wide Br 11-13 windows); spectra whose
        pass-1 Teff is >= ``COOL_TEFF`` are predicted again with the cores only, as the network saw such
        stars in training, and keep that second prediction.
        """
        def generators(s):  # on the model's device: the draws are made there
            return [torch.Generator(device=self.device).manual_seed(int(v)) for v in s]

        if not self.brackett_mask:
            return self.predict_arrays(flux, ivar, bitmask, generators(seeds), continuum)
        flux, ivar = np.asarray(flux), np.asarray(ivar)
        wl = apogee_wavelength(flux.shape[1])
        out = self.predict_arrays(flux, ivar, bitmask, generators(seeds), continuum, brackett_pixels(wl, None))
        hot = np.flatnonzero(out["teff"] >= COOL_TEFF)
        if len(hot):
            sel = torch.as_tensor(hot)
            cont = None if continuum is None else type(continuum)(*(getattr(continuum, k)[sel] for k in (
                "flux", "error", "continuum", "not_normalised", "chip_failed")))
            again = self.predict_arrays(flux[hot], ivar[hot], None if bitmask is None else np.asarray(bitmask)[hot],
                                        generators([seeds[i] for i in hot]), cont,
                                        brackett_pixels(wl, out["teff"][hot]))
            for key in out:
                out[key][hot] = again[key]
        return out

    def columns_from_predictions(self, pred: dict, snr=None) -> dict:
        """Columns (fields + reason, arrays over spectra) from :meth:`predict_arrays` output.

        ``snr``: the spectra's error-array S/N (``snr_error``), for a noise model with an S/N term.

        The rows are built from them at the end of the batch
        (:meth:`~stellarnn.labels.pipeline.QualityChecks.rows`).
        """
        raw_e = np.stack([pred["raw_e_teff"], pred["raw_e_logg"], pred["raw_e_fe_h"]], axis=1).astype(np.float64)
        values = np.stack([np.asarray(pred[name], dtype=np.float64) for name in LABELS], axis=1)
        population = population_of_predictions(LABELS, values)
        e = np.asarray(self.noise_model.apply(raw_e, population, snr), dtype=np.float64)
        flags = np.asarray(result_flags(pred["teff"], pred["logg"], pred["fe_h"], np.zeros(len(pred["teff"]), bool)),
                           dtype=np.int64)
        columns = {}
        for k, name in enumerate(LABELS):
            columns[name] = np.asarray(pred[name], dtype=np.float64)
            columns[f"e_{name}"] = e[:, k]
        for k, name in enumerate(LABELS):
            columns[f"raw_e_{name}"] = raw_e[:, k]
        columns["population"] = population.astype(object)
        columns.update(result_flags=flags, flag_warn=flag_warn(flags), flag_bad=flag_bad(flags),
                       reason=np.full(len(flags), "", dtype=object))
        return columns

    def _run_batch(self, batch: list[Spectrum]) -> list[dict]:
        info = self.quality.assess(batch)
        good = np.flatnonzero(info.usable)
        columns, labels = {}, {}
        if len(good):
            sel = torch.as_tensor(good)
            cont = info.continuum
            cont = type(cont)(cont.flux[sel], cont.error[sel], cont.continuum[sel], cont.not_normalised[sel],
                              cont.chip_failed[sel])
            seeds = [spectrum_seed(batch[i], self.seed) for i in good]
            pred = self.predict_brackett_masked(np.stack([batch[i].flux for i in good]),
                                                np.stack([batch[i].ivar for i in good]),
                                                np.stack([batch[i].bitmask for i in good]), seeds, cont)
            columns = self.columns_from_predictions(pred, np.asarray(info.snr_error, dtype=np.float64)[good])
            labels = {k: pred[k] for k in LABELS}
        profile = () if self.quality.ood is None else [n for n in self.quality.ood.label_names
                                                        if n not in ("teff", "logg", "m_h")]
        return self.quality.rows(len(batch), info, good, columns, labels, FIELDS, profile, flag_warn, flag_bad)

    def _failed(self, reason: str) -> dict:
        return failed_row(FIELDS, FLAG_RUNTIME_EXCEPTION, reason, True, False)

    def process(self, spectra: Sequence[Spectrum]) -> list[dict]:
        """One row per spectrum, in order; unusable spectra get flag_runtime_exception or an information
        bit (NaN labels) and a reason."""
        return process_in_batches(spectra, self.batch_size, self._run_batch, self._failed, log)
