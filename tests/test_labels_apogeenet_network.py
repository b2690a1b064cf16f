import math

import pytest
import torch

from stellarnn.labels.apogeenet.network import (APOGEENET_FULL, APOGEENET_SMALL, APOGEENetResNet, ChannelsLastConv1d,
                                                ResidualBlock1d, count_parameters, positional_channel)


def test_full_configuration_has_published_size():
    n = count_parameters(APOGEENetResNet(**APOGEENET_FULL))
    assert n == pytest.approx(72.6e6, rel=0.005)
    # the head dominates: Linear(64 * 1024 -> 1024)
    assert n > 65536 * 1024


def test_small_configuration_shapes_and_lengths():
    torch.manual_seed(0)
    m = APOGEENetResNet(**APOGEENET_SMALL).eval()
    x = torch.randn(3, 8575)
    with torch.inference_mode():
        y = m(x)
        y3 = m(x[:, None])
        stem = m.stem(torch.stack([x, positional_channel(8575).expand_as(x)], 1))
    assert y.shape == (3, 3) and torch.allclose(y, y3)
    assert stem.shape[-1] == 4288  # conv k30 pad15 gives 8576, pooled by 2
    assert count_parameters(m) < 2_000_000


def test_residual_block_keeps_length_and_pads_channels():
    blk = ResidualBlock1d(2, 5, 30).eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.zero_()
        x = torch.rand(1, 2, 100)
        out = blk(x)
    assert out.shape == (1, 5, 100)
    # with zero convolutions the output is ELU(shortcut): x in the first channels, 0 in the padded ones
    assert torch.allclose(out[:, :2], x) and torch.all(out[:, 2:] == 0)
    with pytest.raises(ValueError):
        ResidualBlock1d(4, 2, 30)


def test_positional_channel_is_sin_of_pixel_index():
    pos = positional_channel(10, torch.float64)
    assert pos[3].item() == pytest.approx(math.sin(3.0))


def test_bad_input_shape():
    m = APOGEENetResNet(**APOGEENET_SMALL)
    with pytest.raises(ValueError):
        m(torch.zeros(2, 2, 8575))


def test_channels_last_conv_equals_conv1d():
    torch.manual_seed(0)
    fast = ChannelsLastConv1d(3, 5, 30, padding=15, bias=True)
    ref = torch.nn.Conv1d(3, 5, 30, padding=15, bias=True)
    ref.load_state_dict(fast.state_dict(), strict=True)
    x = torch.randn(2, 3, 200)
    assert torch.allclose(fast(x), ref(x), atol=1e-5)
