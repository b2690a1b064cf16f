"""AstroNN's robust heteroscedastic loss with missing labels (Leung & Bovy 2019, eq. 7-8).

For a label y with (optional) uncertainty sigma_y, prediction y_hat and predicted log-variance s:

    L = 1/2 [ (y - y_hat)^2 / (e^s + sigma_y^2) + ln(e^s + sigma_y^2) ],

zero where the label is missing (NaN, or the ASPCAP sentinel -9999 when labels are given
unnormalised), and rescaled by N / N_valid per label so that sparsely measured labels weigh as
much as complete ones (astroNN's "magic correction").  The batch loss is the mean over labels
that have at least one valid value in the batch.

``beta`` > 0 gives the beta-NLL of Seitzer et al. (2022, ICLR, "On the pitfalls of heteroscedastic
uncertainty estimation with probabilistic neural networks"): each term is multiplied by the
stop-gradient factor (e^s + sigma_y^2)^beta.  With beta = 0 (the published AstroNN loss) a network
can lower the loss by predicting a large variance for a hard label, which scales that label's
mean gradient down by 1/variance and stalls its learning; beta = 0.5 removes most of that
effect while the variance head still converges to the residual variance.
"""
from __future__ import annotations

import torch

MISSING_SENTINEL = -9999.0


def missing_label_mask(labels: torch.Tensor) -> torch.Tensor:
    """True where a label is missing: NaN, inf or the -9999 sentinel."""
    return ~torch.isfinite(labels) | (labels == MISSING_SENTINEL)


def robust_heteroscedastic_loss(value: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor,
                                target_error: torch.Tensor | None = None, beta: float = 0.0) -> torch.Tensor:
    """Mean robust heteroscedastic loss over a batch.

    Parameters
    ----------
    value, log_var : Tensor (B, L)
        Predictions and predicted log-variances (z-scored label space).
    target : Tensor (B, L)
        Labels in the same space; NaN / -9999 mark missing ones.
    target_error : Tensor (B, L), optional
        1-sigma label uncertainties in the same space (NaN or negative treated as 0).
    beta : float
        beta-NLL exponent (0: the published loss).

    Returns
    -------
    Tensor (scalar)
    """
    if value.shape != target.shape or log_var.shape != target.shape:
        raise ValueError(f"shapes differ: value {tuple(value.shape)}, log_var {tuple(log_var.shape)}, "
                         f"target {tuple(target.shape)}")
    valid = ~missing_label_mask(target)
    y = torch.where(valid, target, value.detach())  # no NaN reaches the graph
    var = torch.exp(log_var)
    if target_error is not None:
        if target_error.shape != target.shape:
            raise ValueError("target_error must have the shape of target")
        sy = torch.where(torch.isfinite(target_error) & (target_error > 0), target_error, 0.0)
        var = var + sy ** 2
    per = 0.5 * ((y - value) ** 2 / var + torch.log(var))
    if beta:
        per = per * var.detach() ** beta
    per = torch.where(valid, per, 0.0)
    n_valid = valid.sum(dim=0)
    per_label = per.sum(dim=0) / n_valid.clamp_min(1)  # = mean * N / N_valid
    has = n_valid > 0
    if not bool(has.any()):
        return (value * 0.0).sum()  # no label at all in this batch: zero, still differentiable
    return per_label[has].mean()
