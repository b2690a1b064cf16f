"""The APOGEENet label pipeline (``get_pipeline("apogeenet")``): Teff, log g, [Fe/H] from apStar spectra.

Steps (REFERENCE.md, Astra APOGEENet documentation): preprocessing (:mod:`.preprocessing`),
network (:mod:`.network`), 20 noise draws (:mod:`.uncertainty`), noise model
e = scale * raw_e + offset (the published one by default, or the one calibrated and stored with
the weights), flags and fields (:mod:`.flags`).  A spectrum that cannot be used (wrong pixel
count, no information, an exception in its batch) gets ``flag_runtime_exception`` and a reason;
``process`` never raises for a bad spectrum.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from ...spectra import Spectrum
from ...train import file_sha256, load_checkpoint, pick_device
from ..noise_model import NoiseModel
from ..pipeline import failed_row, process_in_batches, register_pipeline, resolve_shipped_weights
from . import network  # noqa: F401  (registers the "apogeenet" model kind)
from .flags import FIELDS, FLAG_RUNTIME_EXCEPTION, flag_bad, flag_warn, result_flags
from .network import APOGEENET_OUTPUT_MEAN, APOGEENET_OUTPUT_STD
from .preprocessing import preprocess
from .uncertainty import N_DRAWS_DEFAULT, predict_with_noise_draws

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
    batch_size : int
        Spectra per network batch (each expands to 1 + n_draws rows).
    device : str
        "auto" (GPU if present), "cpu", "cuda".
    seed : int
        Seed of the noise draws (results are reproducible for a given batch composition).
    """

    name = "apogeenet"
    fields = FIELDS

    def __init__(self, weights=None, n_draws: int = N_DRAWS_DEFAULT, batch_size: int = 32, device: str = "auto",
                 seed: int = 0, chunk_size: int = 128):
        path = resolve_shipped_weights("apogeenet", weights)
        self.device = pick_device(device)
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

    def predict_arrays(self, flux, ivar, bitmask=None, generator: torch.Generator | None = None) -> dict:
        """Raw predictions for arrays (B, 8575): teff, logg, fe_h and raw_e_* (numpy, float64)."""
        f, e = preprocess(flux, ivar, bitmask, self.input_flux)
        out = predict_with_noise_draws(self.model, f, e, self.output_mean, self.output_std, self.n_draws,
                                       generator, self.chunk_size)
        return {k: v.numpy() for k, v in out.items()}

    def rows_from_predictions(self, pred: dict) -> list[dict]:
        """Rows (fields + reason) from :meth:`predict_arrays` output."""
        raw_e = np.stack([pred["raw_e_teff"], pred["raw_e_logg"], pred["raw_e_fe_h"]], axis=1)
        e = self.noise_model.apply(raw_e)
        flags = result_flags(pred["teff"], pred["logg"], pred["fe_h"], np.zeros(len(pred["teff"]), bool))
        warn, bad = flag_warn(flags), flag_bad(flags)
        rows = []
        for i in range(len(flags)):
            rows.append({"teff": float(pred["teff"][i]), "e_teff": float(e[i, 0]),
                         "logg": float(pred["logg"][i]), "e_logg": float(e[i, 1]),
                         "fe_h": float(pred["fe_h"][i]), "e_fe_h": float(e[i, 2]),
                         "raw_e_teff": float(raw_e[i, 0]), "raw_e_logg": float(raw_e[i, 1]),
                         "raw_e_fe_h": float(raw_e[i, 2]), "result_flags": int(flags[i]),
                         "flag_warn": bool(warn[i]), "flag_bad": bool(bad[i]), "reason": ""})
        return rows

    def _run_batch(self, batch: list[Spectrum], generator) -> list[dict]:
        flux = np.stack([s.flux for s in batch])
        ivar = np.stack([s.ivar for s in batch])
        bitmask = np.stack([s.bitmask for s in batch])
        return self.rows_from_predictions(self.predict_arrays(flux, ivar, bitmask, generator))

    def _failed(self, reason: str) -> dict:
        return failed_row(FIELDS, FLAG_RUNTIME_EXCEPTION, reason, True, False)

    def process(self, spectra: Sequence[Spectrum]) -> list[dict]:
        """One row per spectrum, in order; unusable spectra get flag_runtime_exception and a reason."""
        generator = torch.Generator().manual_seed(int(self.seed))
        return process_in_batches(spectra, self.batch_size, lambda batch: self._run_batch(batch, generator),
                                  self._failed, log)
