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
  (gradients stopped) -> value and log-variance heads.  (The branches' dropout rate can be set apart from the
  trunk's, ``branch_dropout``; the published network has one rate.)

Outputs are in z-scored label space, in the order of :data:`OUTPUT_LABELS`.

The max-norm constraint (Keras ``MaxNorm(0.5)``: each unit's incoming weight vector is
projected back onto norm <= 0.5 after every update) is applied as the same projection in the
forward pass, so the effective weights always satisfy it.

A new network is initialised as the published implementation (astroNN's ``ApogeeBCNNCensored``, Leung & Bovy
2019): the convolution, trunk, branch and auxiliary kernels from N(0, 0.05^2), the value and log-variance heads
Glorot-uniform (Keras' default), and every bias zero (Keras' default).  PyTorch's default biases,
U(+-1/sqrt(fan_in)), are not harmless here: the input (flux minus the training mean) has a standard deviation of
only ~0.04, so those biases dominate the convolution outputs, every Dense(192) unit sees nearly the same
pre-activation for every star (its common part ~10-30x its star-to-star spread), and ~40 % of the units start
inactive for every spectrum; with zero biases ~95 % are active for some stars (:meth:`ApogeeBCNNCensored.init_published`).

Dropout is active in training mode and, for Monte-Carlo dropout at inference, when
``mc_dropout`` is True (the network has no batch normalisation, so nothing else changes).

Inference is organised for CPU speed without changing the function (tests compare it with a
layer-by-layer reference): conv2 runs as a blocked convolution with max-pool before ReLU in
channel-last layout, and :meth:`ApogeeBCNNCensored.forward_mc` computes the layers before the
first dropout once per spectrum and shares each pass's dropout masks among the spectra of a call
(each spectrum's passes keep their distribution).  The parameters and state dict are those of
the plain layers above.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...spectra import APOGEE_N_KEPT
from ...train import register_model
from ..apogeenet.network import ChannelsLastConv1d, blocked_conv_weight, pool_max_channel_last
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
    branch_dropout : float, optional
        Dropout rate of the 19 abundance branches' two hidden layers (default: ``dropout``, as published).  With
        p = 0.3 on their 32 and 16 units the branches' value heads learn to lean on the trunk's [Fe/H] and shrink
        the window pixels' signal (dropout on a linear layer's inputs acts as an L2 penalty, ~p/(1-p)): the shipped
        network's noise-free [X/Fe] follows the truth with a slope of 0.44-0.57 for Al, Ca, Mn and Ni in held-out
        giants and 0.32-0.74 in its own training giants (``bench/label_shrinkage.py``): it does not fit its
        training data there.
    branch_pixel_counts : sequence of 19 int
        Window sizes; the window pixel indices are buffers of the state dict, filled from the
        ASPCAP mask when ``load_windows`` is True (a new network) and by the checkpoint otherwise.
    """

    def __init__(self, n_pixels: int = APOGEE_N_KEPT, conv_filters=(2, 4), kernel_size: int = 8, pool_length: int = 4,
                 dense_units=(192, 96), branch_units=(32, 16), wide_branch_units=(256, 64),
                 wide_branch_elements=("C", "N"), dropout: float = 0.3,
                 branch_pixel_counts=BRANCH_PIXEL_COUNTS, load_windows: bool = False,
                 branch_dropout: float | None = None):
        super().__init__()
        branch_pixel_counts = tuple(int(c) for c in branch_pixel_counts)
        if len(branch_pixel_counts) != len(BRANCH_ELEMENTS):
            raise ValueError(f"need {len(BRANCH_ELEMENTS)} branch window sizes, got {len(branch_pixel_counts)}")
        self.n_pixels, self.dropout, self.mc_dropout = int(n_pixels), float(dropout), False
        self.branch_dropout = self.dropout if branch_dropout is None else float(branch_dropout)
        for what, rate in (("dropout", self.dropout), ("branch_dropout", self.branch_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{what} must be in [0, 1), got {rate!r}")
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
        self.init_published()

    #: standard deviation of the published hidden kernels (astroNN: ``RandomNormal(mean=0.0, stddev=0.05)``)
    KERNEL_STD = 0.05

    @torch.no_grad()
    def init_published(self, generator: torch.Generator | None = None) -> None:
        """Initialise as astroNN's Keras network: hidden kernels N(0, 0.05^2), heads Glorot-uniform, biases zero.

        The convolutions, the trunk's dense layers, the branches' two hidden layers and the auxiliary
        output use astroNN's ``RandomNormal(stddev=0.05)``; the value and log-variance heads (Keras
        ``Dense`` without an initialiser) Glorot-uniform; all biases Keras' zeros.  Why it matters: see
        the module docstring.
        """
        heads = {id(m) for m in (self.trunk_value, self.trunk_log_var, *self.branch_value, *self.branch_log_var)}
        for module in self.modules():
            if not isinstance(module, (nn.Linear, nn.Conv1d)):
                continue
            if id(module) in heads:
                nn.init.xavier_uniform_(module.weight, generator=generator)
            else:
                nn.init.normal_(module.weight, 0.0, self.KERNEL_STD, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

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

    def _dropout_on(self, rate: float | None = None) -> bool:
        return (self.training or self.mc_dropout) and (self.dropout if rate is None else rate) > 0.0

    def _drop(self, x: torch.Tensor, rate: float | None = None) -> torch.Tensor:
        """Inverted dropout (as F.dropout: zero with probability p, scale the rest by 1/(1-p)), one mask per row.

        ``rate``: p (default the trunk's ``dropout``).  The Bernoulli mask is drawn as booleans, about twice as
        fast as ``F.dropout`` on CPUs.
        """
        rate = self.dropout if rate is None else rate
        if not self._dropout_on(rate):
            return x
        keep = 1.0 - rate
        mask = torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(keep)
        return x * mask * (1.0 / keep)

    def _drop_conv(self, conv: torch.Tensor) -> torch.Tensor:
        """:meth:`_drop` for the padded channel-last conv1 output (N, padded, c1), one mask per row.

        The mask is drawn on the (N, c1, n_pixels) pixels, exactly as in the channel-first form
        (so a given RNG state gives the same masks, in training too), then laid out like ``conv``.
        """
        if not self._dropout_on():
            return conv
        keep = 1.0 - self.dropout
        n, padded, c1 = conv.shape
        left = self._conv2_geometry()[0]
        mask = torch.empty((n, c1, self.n_pixels), dtype=torch.bool, device=conv.device).bernoulli_(keep)
        mask = F.pad(mask.transpose(1, 2).to(conv.dtype), (0, 0, left, padded - left - self.n_pixels))
        return conv * mask * (1.0 / keep)

    def pass_masks(self, n_passes: int, generator: torch.Generator | None = None) -> dict:
        """``n_passes`` dropout mask sets for one spectrum (a dict as :meth:`forward_mc` takes in ``masks``)."""
        param = next(self.parameters())
        with torch.no_grad():
            conv, branches = self._deterministic(torch.zeros(1, self.n_pixels, dtype=param.dtype, device=param.device))
        return self._pass_masks(n_passes, conv, branches, generator=generator)

    def _pass_masks(self, n_passes: int, conv: torch.Tensor, branches: list[torch.Tensor],
                    generator: torch.Generator | None = None) -> dict:
        """One set of inverted-dropout multipliers (0, or 1/(1-p)) per pass, for every dropout layer.

        Shapes (n_passes, *features); see :meth:`forward_mc`.  ``generator``: the random stream
        (default: the global one).
        """
        # float32 at least: under a bfloat16 autocast 1 / keep would be rounded (1/0.7 -> 1.4297)
        dtype = conv.dtype if conv.dtype in (torch.float32, torch.float64) else torch.float32

        def draw(*shape, rate=self.dropout):
            keep = 1.0 - rate
            if generator is not None:  # straight into the float dtype: no bool -> float copy
                return torch.empty((n_passes,) + shape, dtype=dtype, device=conv.device).bernoulli_(
                    keep, generator=generator).mul_(1.0 / keep)
            mask = torch.empty((n_passes,) + shape, dtype=torch.bool, device=conv.device).bernoulli_(keep)
            return mask.to(dtype).mul_(1.0 / keep)

        rate = self.branch_dropout
        return {"conv": draw(*conv.shape[1:]), "flat": draw(self.dense1.in_features),
                "dense1": draw(self.dense1.out_features),
                "branch_in": [draw(t.shape[1], rate=rate) for t in branches],
                "branch_hidden": [draw(lin.out_features, rate=rate) for lin in self.branch_hidden]}

    @staticmethod
    def _expand_passes(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-spectrum rows (S, *f) times per-pass masks (P, *f) -> (S * P, *f), spectrum-major."""
        return (x[:, None] * mask).flatten(0, 1)

    @staticmethod
    def _masked_passes(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(spectrum, pass) rows (S * P, *f) times per-pass masks (P, *f)."""
        return (x.view((-1,) + tuple(mask.shape)) * mask).view(x.shape)

    def _conv2_geometry(self) -> tuple[int, int, int]:
        """(left padding, padded input length, n_blocks) of the blocked conv2 (see :meth:`_trunk_features`)."""
        k, p = self.conv2.kernel_size[0], self.pool_length
        n_blocks = (p + k - 2) // p + 1
        return (k - 1) // 2, (self.n_pixels // p + n_blocks - 1) * p, n_blocks

    def _deterministic(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The parts before the first dropout, once per spectrum.

        Returns ReLU(conv1(x)) in channel-last layout, zero-padded on the left for conv2 (Keras
        "same") and on the right to the length the blocked conv2 reads, (B, padded length, c1),
        and each branch's first dense layer output after its ReLU.
        """
        if x.ndim != 2 or x.shape[1] != self.n_pixels:
            raise ValueError(f"input must be (B, {self.n_pixels}), got {tuple(x.shape)}")
        k = self.conv1.kernel_size[0]
        conv = F.relu(self.conv1(F.pad(x[:, None], ((k - 1) // 2, k // 2))))  # Keras "same" padding
        left, padded, _ = self._conv2_geometry()
        # a negative right padding crops pixels no kept (pooled) output depends on
        conv = F.pad(conv.transpose(1, 2), (0, 0, left, padded - left - self.n_pixels))  # (B, padded, c1)
        branches = [F.relu(self.branch_in[j](x.index_select(1, getattr(self, f"window_{j}"))))
                    for j in range(len(self.branch_in))]
        return conv, branches

    def _trunk_features(self, conv: torch.Tensor) -> torch.Tensor:
        """conv2 -> ReLU -> MaxPool -> channel-last flatten of rows (N, padded length, c1) (:meth:`_deterministic`).

        Evaluated as an equivalent blocked convolution: with P = pool_length, the input is cut into
        blocks of P pixels (c1 * P channels) and conv2 becomes a convolution over blocks whose
        c2 * P output channels are the P positions of each pooling window (weights from
        :func:`blocked_conv_weight`); it is the same sum of products, but with channel counts that
        the CPU convolution kernels handle several times faster than 2 -> 4.  Then max-pool and
        ReLU (they commute, ReLU being monotonic), in channel-last order so that the flatten needs
        no transpose.  The output pixels past the last full pooling window are never computed.
        With autograd on (training) the plain conv2 and ``max_pool1d`` are used instead: their
        backward passes are faster.
        """
        n, padded, c1 = conv.shape
        p = self.pool_length
        _, need, n_blocks = self._conv2_geometry()
        if padded != need:
            raise ValueError(f"conv2 input must have {need} padded pixels, got {padded}")
        if torch.is_grad_enabled():
            y = F.max_pool1d(F.relu(self.conv2(conv.transpose(1, 2))), p)
            return y.transpose(1, 2).flatten(1)  # channel-last flatten, as Keras
        weight, _ = blocked_conv_weight(self.conv2.weight, p)
        bias = None if self.conv2.bias is None else self.conv2.bias.repeat(p)  # max(y + b) = max(y) + b
        x4 = conv.reshape(n, need // p, p * c1).transpose(1, 2).unsqueeze(2)  # channels-last (N, p c1, 1, blocks)
        y = F.conv2d(x4, weight.unsqueeze(2), bias).squeeze(2).transpose(1, 2)  # (N, n_pool, p * c2)
        y = pool_max_channel_last(y.reshape(n, -1, self.conv2.out_channels), p)
        return F.relu(y).flatten(1)

    def _stochastic(self, conv: torch.Tensor, branches: list[torch.Tensor],
                    masks: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything from the first dropout on.

        Without ``masks`` every input row is one pass with its own dropout masks (training, or
        ``forward_mc(..., shared_masks=False)``).  With ``masks`` (:meth:`_pass_masks`, P passes)
        the inputs are per spectrum and each expands to P (spectrum, pass) rows, spectrum-major.
        """
        if masks is None:
            h = self._trunk_features(self._drop_conv(conv))
            h = F.relu(self.dense1(self._drop(h)))
            h = F.relu(self.dense2(self._drop(h)))
        else:
            h = self._trunk_features(self._expand_passes(conv, masks["conv"]))
            h = F.relu(self.dense1(self._masked_passes(h, masks["flat"])))
            h = F.relu(self.dense2(self._masked_passes(h, masks["dense1"])))
        trunk_value, trunk_log_var = self.trunk_value(h), self.trunk_log_var(h)
        context = torch.cat([self.aux(h), trunk_value], dim=1).detach()  # gradients stopped
        values, log_vars = [trunk_value], [trunk_log_var]
        for j, b in enumerate(branches):
            if masks is None:
                b = self._drop(F.relu(self.branch_hidden[j](self._drop(b, self.branch_dropout))), self.branch_dropout)
            else:
                b = F.relu(self.branch_hidden[j](self._expand_passes(b, masks["branch_in"][j])))
                b = self._masked_passes(b, masks["branch_hidden"][j])
            b = torch.cat([b, context], dim=1)
            values.append(self.branch_value[j](b))
            log_vars.append(self.branch_log_var[j](b))
        value = torch.cat(values, dim=1).index_select(1, self.output_order)
        log_var = torch.cat(log_vars, dim=1).index_select(1, self.output_order)
        return value, log_var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (value, log_variance), each (B, 22) in z-scored label space, OUTPUT_LABELS order."""
        return self._stochastic(*self._deterministic(x))

    def forward_mc(self, x: torch.Tensor, n_passes: int, shared_masks: bool = True,
                   chunk_rows: int = 128, generators: list[torch.Generator] | None = None,
                   masks: list[dict] | None = None,
                   shared_pass_masks: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_passes`` Monte-Carlo dropout passes per spectrum: (value, log_var), each (B, n_passes, 22).

        The layers before the first dropout (conv1 and every branch's first dense layer, which see
        the same input in every pass) are computed once per spectrum; the passes are a batch
        dimension, evaluated in chunks of about ``chunk_rows`` (spectrum, pass) rows.

        ``shared_masks`` (default): pass p uses the same dropout masks for all the spectra of
        ``x`` (one mask set per pass and call, all drawn first, so that the result does not
        depend on ``chunk_rows``) rather than one per (spectrum, pass).  Each spectrum
        still gets ``n_passes`` independent mask sets, so its passes -- hence its MC mean and
        variance -- have exactly the distribution of the per-row form; only the Monte-Carlo noise
        of different spectra of one call becomes correlated (its size, ~1/sqrt(n_passes) of the
        MC spread, is unchanged).  Drawing B times fewer random numbers, and masking by
        broadcasting instead of repeating the inputs, is several times faster on CPUs.
        ``shared_masks=False`` draws independent masks for every row.  Without dropout (eval mode
        and ``mc_dropout`` False) every pass is the deterministic prediction.

        ``generators`` (one per spectrum): spectrum i's ``n_passes`` mask sets are drawn from
        ``generators[i]`` alone, so its result depends on its own seed only, not on the other
        spectra of the call (batch-size invariance); the passes of a spectrum are evaluated
        together (``n_passes`` rows per network call), one spectrum after the other.
        ``masks`` (one :meth:`pass_masks` dict per spectrum, e.g. from a bank of mask sets shared by
        many spectra) does the same with given masks instead of drawing them.

        ``shared_pass_masks`` (one :meth:`pass_masks` dict, e.g. one bank) is the batched form of
        ``masks`` for spectra that all use the same mask sets: every spectrum of ``x`` gets exactly
        these passes, evaluated together in chunks of ``chunk_rows`` rows as with ``shared_masks``.
        Each spectrum's result equals the one ``masks`` gives up to floating-point rounding (the
        matrix products see more rows at once), so its bits may depend on the other spectra of the
        call; it is the fast form for GPUs (``chunk_rows`` of 65,536 there, see
        :data:`~stellarnn.labels.astronn.uncertainty.MC_DEVICE_DEFAULTS`).
        """
        b = x.shape[0]
        if generators is not None and len(generators) != b:
            raise ValueError(f"{len(generators)} generators for {b} spectra")
        if masks is not None and len(masks) != b:
            raise ValueError(f"{len(masks)} mask sets for {b} spectra")
        if shared_pass_masks is not None and (generators is not None or masks is not None):
            raise ValueError("shared_pass_masks excludes generators and masks")
        if shared_pass_masks is not None and shared_pass_masks["conv"].shape[0] != n_passes:
            raise ValueError(f"mask set of {shared_pass_masks['conv'].shape[0]} passes for {n_passes} passes")
        if (generators is not None or masks is not None) and self._dropout_on():
            # one spectrum at a time, deterministic layers included: floating-point results then do
            # not depend on the batch either (matrix-product blocking varies with the row count)
            values = torch.empty((b, n_passes, len(OUTPUT_LABELS)), dtype=x.dtype, device=x.device)
            log_vars = torch.empty_like(values)
            pass_chunk = max(1, min(n_passes, chunk_rows))
            for i in range(b):
                ci, bi = self._deterministic(x[i:i + 1])
                own = masks[i] if masks is not None else self._pass_masks(n_passes, ci, bi, generator=generators[i])
                if own["conv"].shape[0] != n_passes:
                    raise ValueError(f"mask set of {own['conv'].shape[0]} passes for {n_passes} passes")
                for p0 in range(0, n_passes, pass_chunk):
                    pc = min(pass_chunk, n_passes - p0)
                    v, s = self._stochastic(ci, bi, _slice_passes(own, slice(p0, p0 + pc)))
                    values[i, p0:p0 + pc] = v
                    log_vars[i, p0:p0 + pc] = s
            return values, log_vars
        conv, branches = self._deterministic(x)
        if not self._dropout_on():
            v, s = self._stochastic(conv, branches)
            return v[:, None].expand(-1, n_passes, -1).clone(), s[:, None].expand(-1, n_passes, -1).clone()
        # outputs stored in the input's dtype (float32 also under a bfloat16 autocast)
        values = torch.empty((b, n_passes, len(OUTPUT_LABELS)), dtype=x.dtype, device=conv.device)
        log_vars = torch.empty_like(values)
        pass_chunk = max(1, min(n_passes, chunk_rows // max(b, 1)))
        spec_chunk = max(1, chunk_rows // pass_chunk)
        if shared_pass_masks is not None:
            all_masks = shared_pass_masks
        else:
            all_masks = self._pass_masks(n_passes, conv, branches) if shared_masks else None
        for p0 in range(0, n_passes, pass_chunk):
            pc = min(pass_chunk, n_passes - p0)
            masks = None if all_masks is None else _slice_passes(all_masks, slice(p0, p0 + pc))
            for s0 in range(0, b, spec_chunk):
                sl = slice(s0, min(s0 + spec_chunk, b))
                if masks is not None:
                    v, s = self._stochastic(conv[sl], [t[sl] for t in branches], masks)
                else:
                    v, s = self._stochastic(conv[sl].repeat_interleave(pc, dim=0),
                                            [t[sl].repeat_interleave(pc, dim=0) for t in branches])
                values[sl, p0:p0 + pc] = v.view(-1, pc, v.shape[1])
                log_vars[sl, p0:p0 + pc] = s.view(-1, pc, s.shape[1])
        return values, log_vars


def _slice_passes(masks: dict, passes: slice) -> dict:
    """The masks of a range of passes (views)."""
    return {k: ([m[passes] for m in v] if isinstance(v, list) else v[passes]) for k, v in masks.items()}


def build_astronn(**overrides) -> tuple[ApogeeBCNNCensored, dict]:
    """A new network with the ASPCAP windows loaded, and its hyper-parameters (for checkpoints)."""
    hp = dict(ASTRONN_FULL, **overrides)
    model = ApogeeBCNNCensored(**hp, load_windows=True)
    hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()}
    return model, hp
