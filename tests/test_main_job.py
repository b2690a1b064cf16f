import numpy as np
from astropy.io import fits

from stellarnn.main_job import run_main


def test_main_job_outputs(tmp_path):
    summary = run_main(tmp_path)
    with fits.open(summary["fits"]) as h:
        t = h[1].data
        assert len(t) == 5  # giant: combined + 3 visits; dwarf: combined
        assert t["norm_flux"].shape == (5, 7514)
        assert np.all(np.isfinite(t["norm_flux"]))
        assert h[2].data.shape == (7514,)
        names = [h[1].header[f"TTYPE{i}"] for i in range(1, 11)]
        assert h[1].header[f"TCOMM{names.index('rv_teff') + 1}"].startswith("Doppler")
    for png in (tmp_path / "2M17335483-2753043.png", tmp_path / "2M19485057+5005279.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    csv = np.loadtxt(summary["csv"], delimiter=",", skiprows=1)
    assert csv.shape == (7514, 6)


def test_label_stage_on_real_and_synthetic_apstar(tmp_path, monkeypatch):
    import json

    import torch
    from astropy.table import Table

    from stellarnn.labels.apogeenet.network import APOGEENetResNet
    from stellarnn.labels.astronn.network import build_astronn
    from stellarnn.labels.cli import write_manifest
    from stellarnn.main_job import DEFAULT_SYNTHETIC_GRID, run_labels
    from stellarnn.synthesis.populations import POPULATIONS
    from stellarnn.train import save_checkpoint

    # untrained weights of the shipped layout: this tests the plumbing, not the accuracy
    torch.manual_seed(0)
    weights = tmp_path / "weights"
    (weights / "astronn").mkdir(parents=True)
    (weights / "apogeenet").mkdir()
    m, hp = build_astronn()
    save_checkpoint(weights / "astronn" / "a.pt", m, "astronn", hp, normalisation={
        "spectrum_mean": np.ones(7514), "label_mean": np.r_[4500.0, 2.5, np.zeros(20)],
        "label_std": np.r_[500.0, 1.0, 0.2 * np.ones(20)]})
    tiny = dict(stem_channels=2, block_channels=[2], kernel_size=5, pool_length=8, head_width=8, n_head_layers=1)
    save_checkpoint(weights / "apogeenet" / "g.pt", APOGEENetResNet(**tiny), "apogeenet", tiny)
    write_manifest(weights / "astronn" / "a.pt", "astronn")
    write_manifest(weights / "apogeenet" / "g.pt", "apogeenet")
    monkeypatch.setenv("STELLARNN_WEIGHTS_DIR", str(weights))

    out = tmp_path / "out"
    result = run_labels(out, n_synthetic=5, synthetic_grid=DEFAULT_SYNTHETIC_GRID, workers=1, progress=False)
    assert result["n_synthetic"] == 5
    with fits.open(out / "synthetic_apstar" / "apStar-PYSME-00000.fits") as h:
        assert h[1].data.shape == (1, 8575) or h[1].data.shape == (8575,)
        assert 3000 <= h[0].header["TEFF"] <= 8000 and h[0].header["SNR"] >= 50
        assert h[0].header["POPULAT"] in POPULATIONS and "VSINI" in h[0].header
    for name in ("apogeenet", "astronn"):
        t = Table.read(result["exports"][name]["fits"])
        assert len(t) == 2 + 3 + 2 + 5  # two real combined + the giant's 3 visits + two real apVisits + 5 synthetic
        truth = result["synthetic_truth"][name]
        assert truth["n"] == 5 and "teff" not in truth  # per population, never pooled
        assert sum(e["n"] for e in truth["by_population"].values()) == 5
        assert set(truth["by_population"]) <= set(POPULATIONS) and len(truth["by_population"]) >= 3
        for entry in truth["by_population"].values():
            assert 0 < entry["teff"]["n_finite"] <= entry["n"]
    # the four real stars (two apStar, two apVisit), each with both pipelines' labels, flags and OOD measures
    assert len(result["real_stars"]) == 4
    inputs = {}
    for oid, by_pipeline in result["real_stars"].items():
        assert set(by_pipeline) == {"apogeenet", "astronn"}
        for row in by_pipeline.values():
            assert {"teff", "result_flags", "flag_bad", "ood_chi2", "ood_label_distance", "input"} <= set(row)
            assert row["snr_error"] > 5  # the S/N that the noise model's 1/(S/N) term uses
            inputs[oid] = row["input"]
    assert inputs["2M00242666+5341178"] == "apVisit on the apStar grid"
    assert inputs["2M17335483-2753043"] == "apStar combined"
    assert (out / "synthetic_truth.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "main_summary.json").read_text())["n_synthetic"] == 5
