import numpy as np
import pytest
import torch

from stellarnn.labels.astronn.network import OUTPUT_LABELS, build_astronn
from stellarnn.labels.astronn.pipeline import AstroNNPipeline
from stellarnn.labels.noise_model import NoiseModel, attach_noise_model
from stellarnn.labels.pipeline import Pipeline, available_pipelines, get_pipeline
from stellarnn.spectra import Spectrum, read_apstar
from stellarnn.train import save_checkpoint

NARROW = dict(dense_units=(16, 8), branch_units=(4, 4), wide_branch_units=(8, 4))


def norm(**k):
    return dict({"spectrum_mean": np.ones(7514), "label_mean": np.r_[4500.0, 2.5, np.zeros(20)],
                 "label_std": np.r_[500.0, 1.0, 0.2 * np.ones(20)]}, **k)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    m, hp = build_astronn(**NARROW)
    return save_checkpoint(tmp_path_factory.mktemp("ann") / "astronn_tiny.pt", m, "astronn", hp,
                           normalisation=norm(), half=True)


@pytest.fixture(scope="module")
def spectra(real_file):
    a = read_apstar(real_file("apstar-2M17335483"))
    b = read_apstar(real_file("apstar-2M19485057"))
    return [a.combined, *a.visits, b.combined]


def test_runs_end_to_end_on_real_apstar(weights, spectra):
    assert {"apogeenet", "astronn"} <= set(available_pipelines())
    p = get_pipeline("astronn", weights=weights, mc_passes=20, batch_size=3)
    assert isinstance(p, Pipeline) and isinstance(p, AstroNNPipeline)
    rows = p.process(spectra)
    assert len(rows) == 5
    for r in rows:
        assert set(r) == set(p.fields) | {"reason"} and r["reason"] == ""
        for name in OUTPUT_LABELS:
            assert np.isfinite(r[name]) and r[f"raw_e_{name}"] > 0
            assert r[f"raw_{name}"] == r[name] and r[f"e_{name}"] == r[f"raw_e_{name}"]  # identity noise model
        assert r["flag_warn"] == (r["result_flags"] > 0)
    # visits of one star agree much better than the prior width (same network, similar spectra)
    teffs = [r["teff"] for r in rows[:4]]
    assert np.ptp(teffs) < 500


def test_bad_spectra_get_no_result_flag(weights, spectra):
    p = get_pipeline("astronn", weights=weights, mc_passes=4)
    dead = Spectrum(spectra[0].wavelength, spectra[0].flux, np.zeros(8575))
    rows = p.process([dead, spectra[4], "not a spectrum"])
    for r in (rows[0], rows[2]):
        assert r["result_flags"] == 2048 and r["flag_warn"] and not r["flag_bad"] and r["reason"]
        assert np.isnan(r["teff"]) and np.isnan(r["raw_e_ni_h"])
    assert rows[1]["reason"] == ""


def test_stored_noise_model_and_bad_checkpoints(tmp_path, weights, spectra):
    import shutil

    path = shutil.copy(weights, tmp_path / "w.pt")
    nm = NoiseModel(OUTPUT_LABELS, np.full(22, 2.0), np.full(22, 0.1))
    attach_noise_model(path, nm)
    r = get_pipeline("astronn", weights=path, mc_passes=4).process(spectra[:1])[0]
    assert r["e_mg_h"] == pytest.approx(2 * r["raw_e_mg_h"] + 0.1)
    m, hp = build_astronn(**NARROW)
    bad = save_checkpoint(tmp_path / "bad.pt", m, "astronn", hp, normalisation={"label_mean": np.zeros(22)})
    with pytest.raises(ValueError, match="spectrum_mean"):
        get_pipeline("astronn", weights=bad)
    with pytest.raises(Exception, match="apogeenet"):
        from stellarnn.labels.apogeenet.network import APOGEENetResNet

        tiny = dict(stem_channels=2, block_channels=[2], kernel_size=3, pool_length=4, head_width=4, n_head_layers=1)
        get_pipeline("astronn", weights=save_checkpoint(tmp_path / "a.pt", APOGEENetResNet(**tiny), "apogeenet", tiny))


def test_exception_inside_a_batch_flags_only_that_spectrum(weights, spectra, monkeypatch):
    p = get_pipeline("astronn", weights=weights, mc_passes=4)
    original = p.predict_normalised

    def failing(normalised_flux):
        if any(float(row[0]) == 0.0 for row in normalised_flux):  # the marked spectrum (zero flux at pixel 246)
            raise RuntimeError("simulated failure")
        return original(normalised_flux)

    monkeypatch.setattr(p, "predict_normalised", failing)
    bad = Spectrum(spectra[0].wavelength, np.r_[np.zeros(300), spectra[0].flux[300:]], spectra[0].ivar)
    rows = p.process([spectra[0], bad, spectra[4]])
    assert rows[1]["result_flags"] == 2048 and "simulated failure" in rows[1]["reason"]
    assert rows[0]["reason"] == rows[2]["reason"] == "" and np.isfinite(rows[2]["fe_h"])
