"""AstroNN Monte-Carlo dropout uncertainties, vectorised over spectra and passes.

Leung & Bovy 2019 (sect. 3.3; REFERENCE.md): with dropout on at inference, ``n_passes`` (100)
forward passes give values m_p and predicted log-variances s_p; the prediction is the mean of
m_p and its variance combines the model (MC) and the predictive (aleatoric) parts,

    sigma^2 = Var_p(m_p) + mean_p(exp(s_p)).

Both are computed in z-scored space and converted with the label standard deviations.

The passes of a group of spectra share their dropout masks (one mask set per pass, see
``ApogeeBCNNCensored.forward_mc``): each spectrum's passes keep exactly their distribution, and
the masks cost a fraction of the random numbers.
"""
from __future__ import annotations

import torch

MC_PASSES_DEFAULT = 100


@torch.inference_mode()
def predict_mc_dropout(model, x: torch.Tensor, label_mean, label_std, n_passes: int = MC_PASSES_DEFAULT,
                       seed: int | None = 0, max_rows: int = 4096, chunk_rows: int = 128,
                       shared_masks: bool = True, seeds=None, masks=None) -> dict:
    """Physical predictions and raw uncertainties for network inputs ``x`` (B, 7514).

    Parameters
    ----------
    model : ApogeeBCNNCensored
    x : Tensor (B, 7514)
        Network inputs (normalised flux minus training mean).
    label_mean, label_std : sequence (22,)
        Label z-scoring.
    n_passes : int
        Monte-Carlo dropout passes (100), >= 2.
    seed : int or None
        Seed of the dropout masks (global RNG state is left untouched), None for fresh masks.
    max_rows : int
        Spectra are processed in groups of at most max_rows // n_passes (one set of dropout masks
        per pass and group).
    chunk_rows : int
        (spectrum, pass) rows evaluated together inside a group (CPU cache-sized).
    shared_masks : bool
        Share each pass's masks among the spectra of a group (True), or draw them per row.
    seeds : sequence of int, optional
        One seed per spectrum (e.g. :func:`stellarnn.labels.pipeline.spectrum_seed`): each spectrum's
        masks come from its own generator, so its result does not depend on the batch it is in
        (``seed`` and ``shared_masks`` are then unused).
    masks : list of dict, optional
        One set of ``n_passes`` dropout masks per spectrum (``model.pass_masks``), e.g. the spectrum's
        bank of a pipeline (batch-size invariant too, without drawing masks per spectrum).

    Returns
    -------
    dict with ``value`` and ``raw_error``, Tensor (B, 22) float64 in physical units.
    """
    if n_passes < 2:
        raise ValueError("n_passes must be >= 2")
    if seeds is not None and len(seeds) != x.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {x.shape[0]} spectra")
    if masks is not None and len(masks) != x.shape[0]:
        raise ValueError(f"{len(masks)} mask sets for {x.shape[0]} spectra")
    param = next(model.parameters())
    mean = torch.as_tensor(label_mean, dtype=torch.float64)
    std = torch.as_tensor(label_std, dtype=torch.float64)
    was_training, was_mc = model.training, model.mc_dropout
    model.eval()
    model.mc_dropout = True
    values, errors = [], []
    per_group = max(1, max_rows // n_passes)
    devices = [param.device] if param.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, x.shape[0], per_group):
                xb = x[start:start + per_group].to(device=param.device, dtype=param.dtype)
                gens = None
                if seeds is not None:
                    gens = [torch.Generator(device=param.device).manual_seed(int(sd))
                            for sd in seeds[start:start + per_group]]
                value, log_var = model.forward_mc(xb, n_passes, shared_masks=shared_masks, chunk_rows=chunk_rows,
                                                  generators=gens,
                                                  masks=None if masks is None else masks[start:start + per_group])
                value, log_var = value.to(torch.float64).cpu(), log_var.to(torch.float64).cpu()
                var = value.var(dim=1, unbiased=False) + torch.exp(log_var).mean(dim=1)
                values.append(value.mean(dim=1) * std + mean)
                errors.append(torch.sqrt(var) * std)
    finally:
        model.train(was_training)
        model.mc_dropout = was_mc
    return {"value": torch.cat(values), "raw_error": torch.cat(errors)}
