import pytest
import torch

from stellarnn.labels.astronn.uncertainty import predict_mc_dropout


class Known(torch.nn.Module):
    """forward_mc gives values 0, 1, 0, 1, ... (z space) and log-variance ln 4 in every pass."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.mc_dropout = False

    def forward_mc(self, x, n, **kwargs):
        assert self.mc_dropout
        v = (torch.arange(n) % 2).to(x.dtype)[None, :, None].expand(x.shape[0], n, 2)
        return v, torch.full_like(v, float(torch.log(torch.tensor(4.0))))


def test_combined_variance_and_units():
    out = predict_mc_dropout(Known(), torch.zeros(3, 5), [10.0, 0.0], [2.0, 0.5], n_passes=100)
    # mean 0.5, MC variance 0.25, predictive 4 -> sigma_z = sqrt(4.25)
    assert out["value"][:, 0].tolist() == pytest.approx([11.0] * 3)
    assert out["raw_error"][:, 0].tolist() == pytest.approx([2.0 * 4.25 ** 0.5] * 3)
    assert out["raw_error"][:, 1].tolist() == pytest.approx([0.5 * 4.25 ** 0.5] * 3)


def test_real_network_is_reproducible_and_restores_mode():
    from stellarnn.labels.astronn.network import ApogeeBCNNCensored

    torch.manual_seed(0)
    m = ApogeeBCNNCensored(branch_pixel_counts=[8] * 19).train()
    x = torch.randn(5, 7514)
    a = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 20, seed=3, max_rows=40)
    b = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 20, seed=3, max_rows=40)
    c = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 20, seed=4, max_rows=40)
    assert torch.equal(a["value"], b["value"]) and (a["raw_error"] > 0).all()
    assert not torch.equal(a["value"], c["value"])
    assert m.training and not m.mc_dropout
    with pytest.raises(ValueError):
        predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 1)


def _tiny_network():
    from stellarnn.labels.astronn.network import ApogeeBCNNCensored

    torch.manual_seed(0)
    return ApogeeBCNNCensored(branch_pixel_counts=[8] * 19, dense_units=(16, 8), branch_units=(4, 4),
                              wide_branch_units=(8, 4)).eval()


def test_grouping_spectra_by_mask_bank_equals_one_spectrum_at_a_time():
    """The GPU form (spectra of one bank evaluated together in big chunks) gives each spectrum's numbers
    of the CPU form (one spectrum at a time) up to float32 rounding; the CPU form stays bit-stable."""
    m = _tiny_network()
    x = torch.randn(7, 7514)
    banks = [m.pass_masks(10, torch.Generator().manual_seed(k)) for k in range(2)]
    masks = [banks[i % 2] for i in range(7)]
    args = (m, x, torch.zeros(22), torch.ones(22), 10)
    alone = predict_mc_dropout(*args, masks=masks)
    grouped = predict_mc_dropout(*args, masks=masks, group_by_masks=True, chunk_rows=65536, max_rows=102400)
    small = predict_mc_dropout(*args, masks=masks, group_by_masks=True, chunk_rows=7, max_rows=20)
    for out in (grouped, small):
        assert torch.allclose(out["value"], alone["value"], rtol=1e-5, atol=1e-5)
        assert torch.allclose(out["raw_error"], alone["raw_error"], rtol=1e-4, atol=1e-5)
    # one spectrum alone in its batch: the CPU form gives the same bits as inside the batch
    one = predict_mc_dropout(m, x[3:4], torch.zeros(22), torch.ones(22), 10, masks=masks[3:4])
    assert torch.equal(one["value"][0], alone["value"][3])
    assert not torch.allclose(alone["value"][0], alone["value"][2])  # different spectra, different labels


def test_shared_pass_masks_argument_checks():
    m = _tiny_network()
    bank = m.pass_masks(4)
    with pytest.raises(ValueError, match="excludes"):
        m.forward_mc(torch.randn(2, 7514), 4, masks=[bank, bank], shared_pass_masks=bank)
    with pytest.raises(ValueError, match="passes"):
        m.forward_mc(torch.randn(2, 7514), 5, shared_pass_masks=bank)


def test_bf16_is_refused_on_cpu_and_the_network_runs_under_autocast():
    m = _tiny_network()
    x = torch.randn(3, 7514)
    with pytest.raises(ValueError, match="CUDA"):
        predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 4, precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 4, precision="fp8")
    # the same code under a bfloat16 autocast (CPU here, as "bf16" does on CUDA): float64 results near float32
    masks = [m.pass_masks(8, torch.Generator().manual_seed(1))] * 3
    ref = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 8, masks=masks, group_by_masks=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = predict_mc_dropout(m, x, torch.zeros(22), torch.ones(22), 8, masks=masks, group_by_masks=True)
    assert low["value"].dtype == torch.float64 and torch.isfinite(low["value"]).all()
    assert not torch.equal(low["value"], ref["value"])  # it did run in bfloat16
    assert torch.allclose(low["value"], ref["value"], atol=0.05 * float(ref["raw_error"].min()) + 0.02)
