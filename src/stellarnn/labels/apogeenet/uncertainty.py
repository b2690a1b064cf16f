"""APOGEENet Monte-Carlo noise-injection uncertainties, vectorised over spectra and draws.

REFERENCE.md ("APOGEENet III"): the reported value is the prediction for the noiseless input;
the raw uncertainty is the standard deviation of the predictions for ``n_draws`` (20) inputs
flux + error * N(0, 1), each log-scaled and clipped like the noiseless one.  Teff is predicted
as log10 Teff, so its uncertainty is propagated from log space:
sigma_Teff = 10^(log10 Teff) * sigma_log10Teff * ln 10.

All draws of all spectra go through the network together (in chunks of ``chunk_size`` rows), on
the model's device: the flux and error are moved there first, so the noise, the log-scaling and the
clipping (:func:`.preprocessing.log_scale`) run there too, and only the (B, 1 + n_draws, 3) outputs
come back.
"""
from __future__ import annotations

import math

import torch

from ..pipeline import inference_autocast
from .preprocessing import log_scale

N_DRAWS_DEFAULT = 20

#: Rows per network call (``chunk_size``) and spectra per pipeline batch (``batch_size``) by device type.
#: "cpu": the cache-sized defaults (unchanged).  "cuda": provisional, NOT measured: issue 24's H200 figures
#: for APOGEENet (348 spectra/s small, 287 full, 20 draws) were taken with the CPU sizes, and its measured
#: gain from larger chunks is AstroNN's (56x from 128 to 65,536 rows,
#: :data:`stellarnn.labels.astronn.uncertainty.MC_DEVICE_DEFAULTS`).  4096 rows hold 195 spectra of
#: 21 inputs per call; the full network's largest activation is about 1.1 MB per row in float32, so
#: a chunk takes about 5 GB.  To be replaced by ``bench/labels.py --device cuda`` figures.
DRAW_DEVICE_DEFAULTS = {"cpu": dict(chunk_size=128, batch_size=32),
                        "cuda": dict(chunk_size=4096, batch_size=1024)}


def noisy_network_inputs(flux: torch.Tensor, error: torch.Tensor, n_draws: int,
                         generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """Network inputs (B, 1 + n_draws, n): the noiseless input first, then the noise draws.

    ``generator``: one for the whole batch, or a list with one per spectrum (each spectrum's
    draws then depend on its own generator only, not on the batch it is in).  The inputs are on
    ``flux``'s device; the noise is drawn on each generator's device (the default one: ``flux``'s)
    and moved there.
    """
    if n_draws < 0:
        raise ValueError("n_draws must be >= 0")
    b, n = flux.shape
    flux, error = flux.to(torch.float32), error.to(device=flux.device, dtype=torch.float32)  # the network's dtype

    def randn(shape, g):
        where = flux.device if g is None else g.device
        return torch.randn(shape, generator=g, dtype=torch.float32, device=where).to(flux.device)

    if isinstance(generator, (list, tuple)):
        if len(generator) != b:
            raise ValueError(f"{len(generator)} generators for {b} spectra")
        noise = torch.stack([randn((n_draws, n), g) for g in generator]) if b else \
            torch.empty((0, n_draws, n), device=flux.device)
    else:
        noise = randn((b, n_draws, n), generator)
    noisy = torch.cat([flux[:, None], flux[:, None] + error[:, None] * noise], dim=1)
    return log_scale(noisy)


@torch.inference_mode()
def predict_with_noise_draws(model: torch.nn.Module, flux: torch.Tensor, error: torch.Tensor,
                             output_mean, output_std, n_draws: int = N_DRAWS_DEFAULT,
                             generator: torch.Generator | None = None, chunk_size: int = 128,
                             precision: str = "float32"):
    """Physical predictions and raw uncertainties.

    Parameters
    ----------
    model : APOGEENetResNet (eval mode)
    flux, error : Tensor (B, n)
        Output of :func:`.preprocessing.preprocess` (any device: moved to the model's).
    output_mean, output_std : sequence of 3 floats
        z-scoring of the network outputs [log g, log10 Teff, [Fe/H]].
    n_draws : int
        Noise draws per spectrum (20); with fewer than 2 the raw errors are NaN.
    generator : torch.Generator or list of them, optional
        See :func:`noisy_network_inputs`; generators on the model's device keep the draws there.
    chunk_size : int
        Network rows per call (:data:`DRAW_DEVICE_DEFAULTS`).
    precision : {"float32", "bf16"}
        "bf16": the network under a bfloat16 autocast (CUDA only,
        :func:`~stellarnn.labels.pipeline.inference_autocast`).

    Returns
    -------
    dict of Tensor (B,), float64
        ``teff`` (K), ``logg`` (dex), ``fe_h`` (dex), ``log10_teff`` and the raw errors
        ``raw_e_teff`` (K), ``raw_e_logg``, ``raw_e_fe_h`` (dex).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    model.eval()
    param = next(model.parameters())
    autocast = inference_autocast(precision, param.device)
    b, n = flux.shape
    flux, error = (t.to(device=param.device, dtype=torch.float32) for t in (flux, error))  # the network's dtype
    inputs = noisy_network_inputs(flux, error, n_draws, generator).reshape(b * (1 + n_draws), n)
    outs = []
    with autocast:
        for start in range(0, inputs.shape[0], chunk_size):
            chunk = inputs[start:start + chunk_size].to(dtype=param.dtype)
            outs.append(model(chunk))
    z = torch.cat(outs).to(torch.float64).cpu().reshape(b, 1 + n_draws, -1)
    mean = torch.as_tensor(output_mean, dtype=torch.float64)
    std = torch.as_tensor(output_std, dtype=torch.float64)
    phys = z * std + mean  # (B, 1 + D, 3): logg, log10 Teff, [Fe/H]
    best = phys[:, 0]
    if n_draws >= 2:
        spread = phys[:, 1:].std(dim=1, unbiased=False)
    else:
        spread = torch.full_like(best, float("nan"))
    teff = 10.0 ** best[:, 1]
    return {"teff": teff, "logg": best[:, 0], "fe_h": best[:, 2], "log10_teff": best[:, 1],
            "raw_e_teff": teff * spread[:, 1] * math.log(10.0), "raw_e_logg": spread[:, 0],
            "raw_e_fe_h": spread[:, 2]}
