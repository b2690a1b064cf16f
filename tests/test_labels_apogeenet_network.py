import math

import pytest
import torch

from stellarnn.labels.apogeenet.network import (APOGEENET_FULL, APOGEENET_MEDIUM, APOGEENET_SIZES, APOGEENET_SMALL,
                                                APOGEENetResNet, ChannelsLastConv1d,
                                                ResidualBlock1d, conv1d_channel_last, count_parameters,
                                                fold_batch_norm, pool_max_channel_last, positional_channel)


def test_full_configuration_has_published_size():
    n = count_parameters(APOGEENetResNet(**APOGEENET_FULL))
    assert n == pytest.approx(72.6e6, rel=0.005)
    # the head dominates: Linear(64 * 1024 -> 1024)
    assert n > 65536 * 1024


def test_medium_configuration_is_published_pool_on_small_convolutions():
    # bench/apogeenet_sizes.py: the convolution widths set the pipeline's cost, the pool and head are nearly free
    assert APOGEENET_SIZES == {"small": APOGEENET_SMALL, "medium": APOGEENET_MEDIUM, "full": APOGEENET_FULL}
    for key in ("stem_channels", "block_channels", "kernel_size"):
        assert APOGEENET_MEDIUM[key] == APOGEENET_SMALL[key]
    assert APOGEENET_MEDIUM["pool_length"] == APOGEENET_FULL["pool_length"]
    n = count_parameters(APOGEENetResNet(**APOGEENET_MEDIUM))
    # 8 channels x 1024 pooled positions -> 512, three 512 x 512, 512 -> 3, plus the small convolutions
    head = (8 * 1024 + 1) * 512 + 3 * (512 + 1) * 512 + (512 + 1) * 3
    assert head < n < head + 20_000


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


def _random_batch_norm_statistics(m):
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.normal_(0, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.normal_(1, 0.2)
            mod.bias.data.normal_(0, 0.2)


@pytest.mark.parametrize("config", [APOGEENET_SMALL, APOGEENET_MEDIUM,
                                    dict(APOGEENET_FULL, pool_length=16, head_width=32, n_head_layers=2),
                                    dict(APOGEENET_SMALL, pool_length=100, kernel_size=7)])
def test_inference_forward_equals_module_forward(config):
    # eval mode runs the folded, channel-last, blocked-convolution path; it must equal the layer-by-layer one
    torch.manual_seed(0)
    m = APOGEENetResNet(**config)
    _random_batch_norm_statistics(m)
    m.eval()
    x = torch.randn(2, 8575) * 0.2
    with torch.inference_mode():
        fast, ref = m(x), m.forward_modules(x)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-4)
    m.train()  # training mode (batch statistics) goes through the modules
    torch.manual_seed(1)
    y = m(x)
    assert torch.equal(y, m.forward_modules(x))


def test_state_dict_keys_are_unchanged():
    # trained checkpoints must keep loading with strict=True
    sd = APOGEENetResNet(**APOGEENET_SMALL).state_dict()
    assert len(sd) == 7 + 4 * 12 + 8  # stem conv + BN, 4 blocks of 2 x (conv + BN), 4 linear layers
    assert sd["stem.0.weight"].shape == (4, 2, 30) and sd["blocks.3.conv2.weight"].shape == (8, 8, 30)
    assert sd["head.6.weight"].shape == (3, 128) and "blocks.0.bn1.running_var" in sd


@pytest.mark.parametrize("c_in,c_out,k,left,right,block", [(1, 4, 30, 15, 15, None), (4, 8, 30, 15, 14, 4),
                                                           (3, 5, 7, 0, 0, 3), (2, 4, 8, 3, 4, 1)])
def test_channel_last_blocked_conv_equals_conv1d(c_in, c_out, k, left, right, block):
    torch.manual_seed(0)
    w, b = torch.randn(c_out, c_in, k), torch.randn(c_out)
    x = torch.randn(2, 301, c_in)
    ref = torch.nn.functional.conv1d(torch.nn.functional.pad(x.transpose(1, 2), (left, right)), w, b).transpose(1, 2)
    out = conv1d_channel_last(x, w, b, left, right, block)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("pool", [2, 3, 4, 6])
def test_channel_last_max_pool(pool):
    y = torch.randn(3, 50, 5)
    ref = torch.nn.functional.max_pool1d(y.transpose(1, 2), pool).transpose(1, 2)
    assert torch.equal(pool_max_channel_last(y, pool), ref)


def test_fold_batch_norm():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv1d(3, 4, 5, bias=True), torch.nn.BatchNorm1d(4)
    _random_batch_norm_statistics(torch.nn.Sequential(bn))
    bn.eval()
    w, b = fold_batch_norm(conv, bn)
    x = torch.randn(2, 3, 40)
    with torch.no_grad():
        assert torch.allclose(torch.nn.functional.conv1d(x, w, b), bn(conv(x)), atol=1e-5)
