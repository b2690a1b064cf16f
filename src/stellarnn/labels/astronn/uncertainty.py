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

from ..pipeline import inference_autocast

MC_PASSES_DEFAULT = 100

#: Sizes of the Monte-Carlo passes per device type (keyword defaults of :func:`predict_mc_dropout` and
#: the pipeline).  "cpu": cache-sized chunks (the defaults of :func:`predict_mc_dropout`, unchanged).
#: "cuda": from the H200 measurements of issue 24 (shipped weights, ``forward_mc`` at 1024 spectra per
#: call, 100 passes): 329 spectra/s with ``chunk_rows`` = 128, 18,234 with 65,536 and 26,360 with a
#: bfloat16 autocast on top; ``max_rows`` = 1024 x 100 so that a call holds those 1024 spectra (the
#: CPU's 4096 would group 40), and the pipeline's mask banks evaluated batched (``group_by_masks``).
#: These GPU figures were measured once on an H200 (141 GB); a smaller GPU may need smaller
#: ``chunk_rows`` (about 0.2 MB of activations per row in float32).
MC_DEVICE_DEFAULTS = {"cpu": dict(chunk_rows=128, max_rows=4096, group_by_masks=False),
                      "cuda": dict(chunk_rows=65536, max_rows=102400, group_by_masks=True)}


@torch.inference_mode()
def predict_mc_dropout(model, x: torch.Tensor, label_mean, label_std, n_passes: int = MC_PASSES_DEFAULT,
                       seed: int | None = 0, max_rows: int = 4096, chunk_rows: int = 128,
                       shared_masks: bool = True, seeds=None, masks=None, group_by_masks: bool = False,
                       precision: str = "float32") -> dict:
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
        (spectrum, pass) rows evaluated together inside a group (CPU cache-sized; see
        :data:`MC_DEVICE_DEFAULTS` for a GPU).
    shared_masks : bool
        Share each pass's masks among the spectra of a group (True), or draw them per row.
    seeds : sequence of int, optional
        One seed per spectrum (e.g. :func:`stellarnn.labels.pipeline.spectrum_seed`): each spectrum's
        masks come from its own generator, so its result does not depend on the batch it is in
        (``seed`` and ``shared_masks`` are then unused).
    masks : list of dict, optional
        One set of ``n_passes`` dropout masks per spectrum (``model.pass_masks``), e.g. the spectrum's
        bank of a pipeline (batch-size invariant too, without drawing masks per spectrum).
    group_by_masks : bool
        With ``masks``: evaluate the spectra that share one mask set (the same dict object, e.g. one
        bank) together, in chunks of ``chunk_rows`` rows (``forward_mc(shared_pass_masks=...)``),
        instead of one spectrum at a time.  The numbers equal those without it up to floating-point
        rounding, which then depends on the batch; the form for GPUs (False keeps each spectrum's bits
        independent of its batch, the CPU default).
    precision : {"float32", "bf16"}
        "bf16": the passes under a bfloat16 autocast (CUDA only, :func:`~stellarnn.labels.pipeline.inference_autocast`).

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
    autocast = inference_autocast(precision, param.device)
    mean = torch.as_tensor(label_mean, dtype=torch.float64)
    std = torch.as_tensor(label_std, dtype=torch.float64)
    was_training, was_mc = model.training, model.mc_dropout
    model.eval()
    model.mc_dropout = True
    b = x.shape[0]
    value_all = torch.empty((b, len(mean)), dtype=torch.float64)
    error_all = torch.empty_like(value_all)
    per_group = max(1, max_rows // n_passes)
    devices = [param.device] if param.device.type == "cuda" else []

    def reduce(rows, value, log_var):
        """MC mean and combined variance (module docstring) of (n, n_passes, 22) outputs, into ``rows``."""
        value, log_var = value.to(torch.float64), log_var.to(torch.float64)
        var = value.var(dim=1, unbiased=False) + torch.exp(log_var).mean(dim=1)
        value_all[rows] = (value.mean(dim=1).cpu() * std + mean)
        error_all[rows] = torch.sqrt(var).cpu() * std

    try:
        with torch.random.fork_rng(devices=devices), autocast:
            if seed is not None:
                torch.manual_seed(seed)
            if masks is not None and group_by_masks:
                groups: dict[int, list[int]] = {}
                for i, m in enumerate(masks):
                    groups.setdefault(id(m), []).append(i)
                for members in groups.values():
                    shared = masks[members[0]]
                    for start in range(0, len(members), per_group):
                        rows = torch.as_tensor(members[start:start + per_group])
                        xb = x[rows].to(device=param.device, dtype=param.dtype)
                        reduce(rows, *model.forward_mc(xb, n_passes, chunk_rows=chunk_rows, shared_pass_masks=shared))
                return {"value": value_all, "raw_error": error_all}
            for start in range(0, b, per_group):
                xb = x[start:start + per_group].to(device=param.device, dtype=param.dtype)
                gens = None
                if seeds is not None:
                    gens = [torch.Generator(device=param.device).manual_seed(int(sd))
                            for sd in seeds[start:start + per_group]]
                value, log_var = model.forward_mc(xb, n_passes, shared_masks=shared_masks, chunk_rows=chunk_rows,
                                                  generators=gens,
                                                  masks=None if masks is None else masks[start:start + per_group])
                reduce(slice(start, start + xb.shape[0]), value, log_var)
    finally:
        model.train(was_training)
        model.mc_dropout = was_mc
    return {"value": value_all, "raw_error": error_all}
