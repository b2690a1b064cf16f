"""APOGEENet Monte-Carlo noise-injection uncertainties, vectorised over spectra and draws.

REFERENCE.md ("APOGEENet III"): the reported value is the prediction for the noiseless input;
the raw uncertainty is the standard deviation of the predictions for ``n_draws`` (20) inputs
flux + error * N(0, 1), each log-scaled and clipped like the noiseless one.  Teff is predicted
as log10 Teff, so its uncertainty is propagated from log space:
sigma_Teff = 10^(log10 Teff) * sigma_log10Teff * ln 10.

All draws of all spectra go through the network together (in chunks of ``chunk_size`` rows).
"""
from __future__ import annotations

import math

import torch

from .preprocessing import log_scale

N_DRAWS_DEFAULT = 20


def noisy_network_inputs(flux: torch.Tensor, error: torch.Tensor, n_draws: int,
                         generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """Network inputs (B, 1 + n_draws, n): the noiseless input first, then the noise draws.

    ``generator``: one for the whole batch, or a list with one per spectrum (each spectrum's
    draws then depend on its own generator only, not on the batch it is in).
    """
    if n_draws < 0:
        raise ValueError("n_draws must be >= 0")
    b, n = flux.shape
    flux, error = flux.to(torch.float32), error.to(torch.float32)  # the network runs in float32
    if isinstance(generator, (list, tuple)):
        if len(generator) != b:
            raise ValueError(f"{len(generator)} generators for {b} spectra")
        noise = torch.stack([torch.randn((n_draws, n), generator=g, dtype=torch.float32, device=flux.device)
                             for g in generator]) if b else torch.empty((0, n_draws, n))
    else:
        noise = torch.randn((b, n_draws, n), generator=generator, dtype=torch.float32, device=flux.device)
    noisy = torch.cat([flux[:, None], flux[:, None] + error[:, None] * noise], dim=1)
    return log_scale(noisy)


@torch.inference_mode()
def predict_with_noise_draws(model: torch.nn.Module, flux: torch.Tensor, error: torch.Tensor,
                             output_mean, output_std, n_draws: int = N_DRAWS_DEFAULT,
                             generator: torch.Generator | None = None, chunk_size: int = 128):
    """Physical predictions and raw uncertainties.

    Parameters
    ----------
    model : APOGEENetResNet (eval mode)
    flux, error : Tensor (B, n)
        Output of :func:`.preprocessing.preprocess`.
    output_mean, output_std : sequence of 3 floats
        z-scoring of the network outputs [log g, log10 Teff, [Fe/H]].
    n_draws : int
        Noise draws per spectrum (20); with fewer than 2 the raw errors are NaN.

    Returns
    -------
    dict of Tensor (B,), float64
        ``teff`` (K), ``logg`` (dex), ``fe_h`` (dex), ``log10_teff`` and the raw errors
        ``raw_e_teff`` (K), ``raw_e_logg``, ``raw_e_fe_h`` (dex).
    """
    model.eval()
    param = next(model.parameters())
    b, n = flux.shape
    inputs = noisy_network_inputs(flux, error, n_draws, generator).reshape(b * (1 + n_draws), n)
    outs = []
    for start in range(0, inputs.shape[0], chunk_size):
        chunk = inputs[start:start + chunk_size].to(device=param.device, dtype=param.dtype)
        outs.append(model(chunk).to(torch.float64).cpu())
    z = torch.cat(outs).reshape(b, 1 + n_draws, -1)
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
