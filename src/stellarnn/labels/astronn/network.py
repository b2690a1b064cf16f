"""AstroNN ApogeeBCNNCensored: Bayesian CNN with element-censored branches (Leung & Bovy 2019).

Architecture (REFERENCE.md, "AstroNN ApogeeBCNNCensored"; Astra PyTorch port):

* trunk: input (B, 7514) (normalised flux minus the training mean) -> Conv1d(1 -> 2, k 8, same)
  -> ReLU -> Dropout(0.3) -> Conv1d(2 -> 4, k 8, same) -> ReLU -> MaxPool(4) -> flatten in
  channel-last order (1878 x 4 = 7512) -> Dropout -> Dense(192) -> ReLU -> Dropout -> Dense(96) -> ReLU;
  heads: Teff, log g, [Fe/H] values and log-variances, and a 2-unit auxiliary output whose
  weight vectors have max-norm 0.5;
* 19 censored branches (C, C I, N, O, Na, Mg, Al, Si, P, S, K, Ca, Ti, Ti II, V, Cr, Mn, Co, Ni),
  each fed only its ASPCAP window pixels: Dense(32; 256 for C and N) -> ReLU -> Dropout ->
  Dense(16; 64 for C and N) -> ReLU -> Dropout, concatenated with [aux(2), Teff, log g, [Fe/H]]
  (gradients stopped) -> value and log-variance heads.

Outputs are in z-scored label space, in the order of :data:`OUTPUT_LABELS`.

The max-norm constraint (Keras ``MaxNorm(0.5)``: each unit's incoming weight vector is
projected back onto norm <= 0.5 after every update) is applied as the same projection in the
forward pass, so the effective weights always satisfy it.

Dropout is active in training mode and, for Monte-Carlo dropout at inference, when
``mc_dropout`` is True (the network has no batch normalisation, so nothing else changes).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...spectra import APOGEE_N_KEPT
from ...train import register_model
from ..apogeenet.network import ChannelsLastConv1d
from .element_windows import BRANCH_ELEMENTS, BRANCH_PIXEL_COUNTS, element_window_indices

#: output labels (field names), in network order
OUTPUT_LABELS = ("teff", "logg", "c_h", "c_1_h", "n_h", "o_h", "na_h", "mg_h", "al_h", "si_h", "p_h", "s_h", "k_h",
                 "ca_h", "ti_h", "ti_2_h", "v_h", "cr_h", "mn_h", "fe_h", "co_h", "ni_h")
BRANCH_LABELS = ("c_h", "c_1_h", "n_h", "o_h", "na_h", "mg_h", "al_h", "si_h", "p_h", "s_h", "k_h", "ca_h", "ti_h",
                 "ti_2_h", "v_h", "cr_h", "mn_h", "co_h", "ni_h")
TRUNK_LABELS = ("teff", "logg", "fe_h")
AUX_MAX_NORM = 0.5

#: the published configuration (the shipped one too: it is small enough for a CPU)
ASTRONN_FULL = dict(n_pixels=APOGEE_N_KEPT, conv_filters=(2, 4), kernel_size=8, pool_length=4, dense_units=(192, 96),
                    branch_units=(32, 16), wide_branch_units=(256, 64), wide_branch_elements=("C", "N"),
                    dropout=0.3, branch_pixel_counts=BRANCH_PIXEL_COUNTS)


class MaxNormLinear(nn.Linear):
    """Linear layer whose incoming weight vector of each output unit has norm <= ``max_norm``."""

    def __init__(self, in_features: int, out_features: int, max_norm: float):
        super().__init__(in_features, out_features)
        self.max_norm = float(max_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.weight.norm(dim=1, keepdim=True)
        w = self.weight * torch.clamp(self.max_norm / norm.clamp_min(1e-12), max=1.0)
        return F.linear(x, w, self.bias)


@register_model("astronn")
class ApogeeBCNNCensored(nn.Module):
    """AstroNN's censored Bayesian CNN with configurable widths.

    Parameters
    ----------
    n_pixels : int
        Input length (7514).
    conv_filters : (int, int)
        Channels of the two convolutions (2, 4).
    kernel_size, pool_length : int
        Convolution kernel (8) and max-pool length (4).
    dense_units : (int, int)
        Trunk dense widths (192, 96).
    branch_units, wide_branch_units : (int, int)
        Branch widths (32, 16), and (256, 64) for ``wide_branch_elements`` (C, N).
    dropout : float
        Dropout rate (0.3).
    branch_pixel_counts : sequence of 19 int
        Window sizes; the window pixel indices are buffers of the state dict, filled from the
        ASPCAP mask when ``load_windows`` is True (a new network) and by the checkpoint otherwise.
    """

    def __init__(self, n_pixels: int = APOGEE_N_KEPT, conv_filters=(2, 4), kernel_size: int = 8, pool_length: int = 4,
                 dense_units=(192, 96), branch_units=(32, 16), wide_branch_units=(256, 64),
                 wide_branch_elements=("C", "N"), dropout: float = 0.3,
                 branch_pixel_counts=BRANCH_PIXEL_COUNTS, load_windows: bool = False):
        super().__init__()
        branch_pixel_counts = tuple(int(c) for c in branch_pixel_counts)
        if len(branch_pixel_counts) != len(BRANCH_ELEMENTS):
            raise ValueError(f"need {len(BRANCH_ELEMENTS)} branch window sizes, got {len(branch_pixel_counts)}")
        self.n_pixels, self.dropout, self.mc_dropout = int(n_pixels), float(dropout), False
        c1, c2 = conv_filters
        self.conv1 = ChannelsLastConv1d(1, c1, kernel_size)  # nn.Conv1d, evaluated faster on CPUs
        self.conv2 = ChannelsLastConv1d(c1, c2, kernel_size)
        self.pool_length = int(pool_length)
        flat = c2 * (self.n_pixels // self.pool_length)
        d1, d2 = dense_units
        self.dense1, self.dense2 = nn.Linear(flat, d1), nn.Linear(d1, d2)
        self.trunk_value = nn.Linear(d2, len(TRUNK_LABELS))
        self.trunk_log_var = nn.Linear(d2, len(TRUNK_LABELS))
        self.aux = MaxNormLinear(d2, 2, AUX_MAX_NORM)
        self.branch_in, self.branch_hidden, self.branch_value, self.branch_log_var = (nn.ModuleList() for _ in range(4))
        for k, (element, count) in enumerate(zip(BRANCH_ELEMENTS, branch_pixel_counts)):
            u1, u2 = wide_branch_units if element in wide_branch_elements else branch_units
            self.register_buffer(f"window_{k}", torch.zeros(count, dtype=torch.int64))
            self.branch_in.append(nn.Linear(count, u1))
            self.branch_hidden.append(nn.Linear(u1, u2))
            self.branch_value.append(nn.Linear(u2 + 2 + len(TRUNK_LABELS), 1))
            self.branch_log_var.append(nn.Linear(u2 + 2 + len(TRUNK_LABELS), 1))
        if load_windows:
            self.set_windows(element_window_indices())
        # output order: teff, logg, then branches with fe_h between mn_h and co_h
        order = []
        for name in OUTPUT_LABELS:
            order.append(TRUNK_LABELS.index(name) if name in TRUNK_LABELS else 3 + BRANCH_LABELS.index(name))
        self.register_buffer("output_order", torch.as_tensor(order, dtype=torch.int64), persistent=False)

    def set_windows(self, windows) -> None:
        """Set the branch window pixel indices (list of 19 integer arrays)."""
        for k, w in enumerate(windows):
            buf = getattr(self, f"window_{k}")
            w = torch.as_tensor(np.asarray(w), dtype=torch.int64)
            if w.shape != buf.shape:
                raise ValueError(f"window {k} ({BRANCH_ELEMENTS[k]}) has {w.numel()} pixels, expected {buf.numel()}")
            if w.numel() and (w.min() < 0 or w.max() >= self.n_pixels):
                raise ValueError(f"window {k} indices outside 0..{self.n_pixels - 1}")
            buf.copy_(w)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        """Inverted dropout (as F.dropout: zero with probability p, scale the rest by 1/(1-p)).

        The Bernoulli mask is drawn as booleans, about twice as fast as ``F.dropout`` on CPUs.
        """
        if not (self.training or self.mc_dropout) or self.dropout == 0.0:
            return x
        keep = 1.0 - self.dropout
        mask = torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(keep)
        return x * mask * (1.0 / keep)

    def _deterministic(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The parts before the first dropout: ReLU(conv1(x)) and each branch's first dense layer output."""
        if x.ndim != 2 or x.shape[1] != self.n_pixels:
            raise ValueError(f"input must be (B, {self.n_pixels}), got {tuple(x.shape)}")
        k = self.conv1.kernel_size[0]
        conv = F.relu(self.conv1(F.pad(x[:, None], ((k - 1) // 2, k // 2))))  # Keras "same" padding
        branches = [F.relu(self.branch_in[j](x.index_select(1, getattr(self, f"window_{j}"))))
                    for j in range(len(self.branch_in))]
        return conv, branches

    def _stochastic(self, conv: torch.Tensor, branches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything from the first dropout on (rows may repeat a spectrum: each gets its own masks)."""
        k = self.conv2.kernel_size[0]
        h = self.conv2(F.pad(self._drop(conv), ((k - 1) // 2, k // 2)))
        h = F.max_pool1d(F.relu(h), self.pool_length)
        h = h.transpose(1, 2).flatten(1)  # channel-last flatten, as Keras
        h = F.relu(self.dense1(self._drop(h)))
        h = F.relu(self.dense2(self._drop(h)))
        trunk_value, trunk_log_var = self.trunk_value(h), self.trunk_log_var(h)
        context = torch.cat([self.aux(h), trunk_value], dim=1).detach()  # gradients stopped
        values, log_vars = [trunk_value], [trunk_log_var]
        for j, b in enumerate(branches):
            b = self._drop(F.relu(self.branch_hidden[j](self._drop(b))))
            b = torch.cat([b, context], dim=1)
            values.append(self.branch_value[j](b))
            log_vars.append(self.branch_log_var[j](b))
        value = torch.cat(values, dim=1).index_select(1, self.output_order)
        log_var = torch.cat(log_vars, dim=1).index_select(1, self.output_order)
        return value, log_var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (value, log_variance), each (B, 22) in z-scored label space, OUTPUT_LABELS order."""
        return self._stochastic(*self._deterministic(x))

    def forward_mc(self, x: torch.Tensor, n_passes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_passes`` Monte-Carlo dropout passes per spectrum: (value, log_var), each (B, n_passes, 22).

        Identical in distribution to running ``forward`` on ``n_passes`` copies of each spectrum
        with dropout on, but the layers before the first dropout (conv1 and every branch's first
        dense layer, which see the same input in every pass) are computed once per spectrum.
        """
        b = x.shape[0]
        conv, branches = self._deterministic(x)
        conv = conv.repeat_interleave(n_passes, dim=0)
        branches = [t.repeat_interleave(n_passes, dim=0) for t in branches]
        value, log_var = self._stochastic(conv, branches)
        return value.reshape(b, n_passes, -1), log_var.reshape(b, n_passes, -1)


def build_astronn(**overrides) -> tuple[ApogeeBCNNCensored, dict]:
    """A new network with the ASPCAP windows loaded, and its hyper-parameters (for checkpoints)."""
    hp = dict(ASTRONN_FULL, **overrides)
    model = ApogeeBCNNCensored(**hp, load_windows=True)
    hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()}
    return model, hp
