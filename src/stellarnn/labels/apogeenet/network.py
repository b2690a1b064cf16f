"""The APOGEENet III network: the BOSSNet 1-D residual CNN (Sizemore et al. 2024, AJ 167, 173).

Architecture (REFERENCE.md, "APOGEENet III"): the flux (B, 8575) is stacked with a positional
channel sin(pixel index) into (B, 2, 8575); Conv1d(2 -> 4, k 30, pad 15) -> BatchNorm -> ELU ->
MaxPool(2); four residual blocks 4 -> 8 -> 16 -> 32 -> 64, each
conv(k 30, pad 15, no bias) -> BN -> ELU -> conv(k 30, pad 14, no bias) -> BN, plus a shortcut
that zero-pads the channels, then ELU; AdaptiveAvgPool1d(1024) -> flatten (64 x 1024 = 65536)
-> Linear + ReLU to 1024, five Linear(1024) + ReLU, Linear(1024 -> 3).  Outputs are
[log g, log10 Teff, [Fe/H]] z-scored with (mean, std) = (3.2, 1.2), (3.7, 0.1), (-0.2, 0.3).

The full network has about 72.6 M parameters (67 M of them in the first dense layer); the
widths (stem and block channels, pooled length, head width and depth, kernel size) are
hyper-parameters so that a smaller configuration of the same architecture can be trained and
shipped on a CPU.  :data:`APOGEENET_FULL` is the published configuration,
:data:`APOGEENET_SMALL` the shipped one.
"""
from __future__ import annotations

import torch
from torch import nn

from ...train import register_model

#: output order of the network and its z-scoring (REFERENCE.md)
APOGEENET_OUTPUTS = ("logg", "log10_teff", "fe_h")
APOGEENET_OUTPUT_MEAN = (3.2, 3.7, -0.2)
APOGEENET_OUTPUT_STD = (1.2, 0.1, 0.3)

#: the published APOGEENet III configuration (~72.6 M parameters)
APOGEENET_FULL = dict(stem_channels=4, block_channels=(8, 16, 32, 64), kernel_size=30, pool_length=1024,
                      head_width=1024, n_head_layers=6)
#: the configuration shipped with stellarnn: same architecture, narrower (CPU-trainable, fast inference)
APOGEENET_SMALL = dict(stem_channels=4, block_channels=(4, 4, 8, 8), kernel_size=30, pool_length=64,
                       head_width=128, n_head_layers=3)


class ChannelsLastConv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and state dict) evaluated as a channels-last 2-D convolution.

    On CPUs PyTorch's channels-last conv2d is several times faster than conv1d for the few
    channels and long kernel (30) of this network; the result is the same convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(x)
        x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        y = nn.functional.conv2d(x4, self.weight.unsqueeze(2), self.bias, stride=(1, self.stride[0]),
                                 padding=(0, self.padding[0]), dilation=(1, self.dilation[0]), groups=self.groups)
        return y.squeeze(2)


def positional_channel(n_pixels: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The positional encoding sin(pixel index), i = 0 .. n_pixels - 1 (shape (n_pixels,))."""
    return torch.sin(torch.arange(n_pixels, dtype=torch.float64, device=device)).to(dtype)


class ResidualBlock1d(nn.Module):
    """conv -> BN -> ELU -> conv -> BN, plus a channel-zero-padded shortcut, then ELU (length kept).

    Paddings k//2 and k-1-k//2 keep the length for any kernel size (15 and 14 for k = 30).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"residual block cannot reduce channels ({in_channels} -> {out_channels})")
        pad1 = kernel_size // 2
        self.extra_channels = out_channels - in_channels
        self.conv1 = ChannelsLastConv1d(in_channels, out_channels, kernel_size, padding=pad1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = ChannelsLastConv1d(out_channels, out_channels, kernel_size, padding=kernel_size - 1 - pad1,
                                       bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        shortcut = nn.functional.pad(x, (0, 0, 0, self.extra_channels)) if self.extra_channels else x
        return self.act(h + shortcut)


@register_model("apogeenet")
class APOGEENetResNet(nn.Module):
    """APOGEENet III / BOSSNet residual CNN with configurable widths.

    Parameters
    ----------
    stem_channels : int
        Channels of the first convolution (4 in the published network).
    block_channels : sequence of int
        Output channels of the residual blocks (8, 16, 32, 64 published); non-decreasing.
    kernel_size : int
        Convolution kernel size in pixels (30).
    pool_length : int
        Output length of the adaptive average pooling (1024).
    head_width : int
        Width of the dense layers (1024).
    n_head_layers : int
        Number of Linear + ReLU layers before the output layer (6: one from the pooled
        features, then five of ``head_width``).
    n_outputs : int
        3: z-scored log g, log10 Teff, [Fe/H].

    Input: (B, n_pixels) or (B, 1, n_pixels) preprocessed (log-scaled, clipped) flux; the
    positional channel is added here.  Output: (B, n_outputs), z-scored.
    """

    def __init__(self, stem_channels: int = 4, block_channels=(8, 16, 32, 64), kernel_size: int = 30,
                 pool_length: int = 1024, head_width: int = 1024, n_head_layers: int = 6, n_outputs: int = 3):
        super().__init__()
        block_channels = tuple(int(c) for c in block_channels)
        if n_head_layers < 1:
            raise ValueError("n_head_layers must be >= 1")
        self.stem = nn.Sequential(ChannelsLastConv1d(2, stem_channels, kernel_size, padding=kernel_size // 2),
                                  nn.BatchNorm1d(stem_channels), nn.ELU(), nn.MaxPool1d(2))
        blocks, c = [], stem_channels
        for out in block_channels:
            blocks.append(ResidualBlock1d(c, out, kernel_size))
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(pool_length)
        layers, width = [], c * pool_length
        for _ in range(n_head_layers):
            layers += [nn.Linear(width, head_width), nn.ReLU()]
            width = head_width
        layers.append(nn.Linear(width, n_outputs))
        self.head = nn.Sequential(*layers)

    def forward(self, flux: torch.Tensor) -> torch.Tensor:
        if flux.ndim == 3:
            if flux.shape[1] != 1:
                raise ValueError(f"expected one flux channel, got shape {tuple(flux.shape)}")
            flux = flux[:, 0]
        if flux.ndim != 2:
            raise ValueError(f"flux must be (B, n_pixels), got shape {tuple(flux.shape)}")
        pos = positional_channel(flux.shape[1], flux.dtype, flux.device).expand_as(flux)
        x = torch.stack([flux, pos], dim=1)
        x = self.blocks(self.stem(x))
        return self.head(self.pool(x).flatten(1))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
