"""Tests for stellarnn.blase.fit_report: what a transfer changed, with uncertainties."""
import json

import numpy as np
import pytest
import torch

from stellarnn.blase.extrinsic import scale_to_segments
from stellarnn.blase.fit_report import plot_fit_report, transfer_report, write_fit_report
from stellarnn.figures import save_figure
from stellarnn.blase.fitting import TransferModel, transfer_spectrum
from stellarnn.blase.line_finder import LineGuesses
from stellarnn.blase.line_model import LineModel
from stellarnn.blase.sources import ObservedSpectrum

CENTRES = np.array([8001.3, 8002.2, 8003.9, 8005.05, 8006.6, 8008.1, 8009.0, 8011.4, 8012.7, 8014.2])
AMPS = np.array([0.02, 0.008, 0.05, 0.004, 0.03, 0.01, 0.015, 0.006, 0.04, 0.012])


def _lines(scale=1.0):
    n = CENTRES.size
    return LineModel.from_guesses(LineGuesses(CENTRES, AMPS * scale, np.full(n, 0.05), np.full(n, 0.01),
                                              np.zeros(n), np.zeros(n)), profile="voigt", form="tau")


@pytest.fixture(scope="module")
def fitted():
    """The clone is the exact line list; the star has every line 50 % stronger (Δ ln a = 0.41)."""
    truth = TransferModel(CENTRES.size, 0, grid_min_angstrom=7995.0, grid_max_angstrom=8021.0, vsini_max_km_s=60.0,
                          resolution_min=20000.0, line_hyperparameters=dict(profile="voigt", form="tau"))
    truth.load_clone(_lines(1.5))
    truth.set_extrinsic(rv_km_s=25.0, vsini_km_s=12.0, resolution=40000.0)
    wl = np.arange(8000.5, 8015.0, 0.04)
    seg = np.zeros(wl.size, int)
    with torch.no_grad():
        flux = truth(torch.from_numpy(wl), torch.from_numpy(scale_to_segments(wl, seg)).float(),
                     torch.from_numpy(seg)).double().numpy()
    flux += np.random.default_rng(0).normal(0, 0.002, wl.size)
    spec = ObservedSpectrum(wl, flux, np.full(wl.size, 0.002), seg, np.array([1]), "synthetic")
    res = transfer_spectrum(_lines(1.0), spec, epochs=80, baseline_epochs=60, lr=0.03, telluric_prominence=0.004,
                            resolution_guess=50000.0, vsini_max_km_s=60.0, rv_grid_km_s=np.arange(-50, 51, 1.0),
                            progress=False, margin_angstrom=5.0, prior_amplitude_scale=1.0)
    return spec, res


def test_report_says_lines_deepened_and_gives_uncertainties(fitted):
    spec, res = fitted
    report = transfer_report(res, spec)
    counts = report["stellar_lines"]["counts"]
    assert counts["deepened"] >= 6 and counts["weakened"] == 0
    assert report["stellar_lines"]["shifted"] == 0 and report["stellar_lines"]["n_in_data"] == 10
    ex = report["extrinsic"]
    assert ex["uncertainty_method"] == "inverse curvature matrix"
    assert 0 < ex["e_rv_km_s"] < 1.0 and 0 < ex["e_vsini_km_s"] < 5.0 and ex["e_resolution"] > 0
    assert abs(ex["rv_km_s"] - 25.0) < 1.0
    # the model's parameters are restored after the curvature evaluation
    assert float(res.model.rv_km_s.detach()) == pytest.approx(res.rv_km_s, abs=1e-5)
    tell = report["tellurics"]
    assert tell["mode"] == "bands" and tell["n_lines_added"] == 0 and tell["per_band"] == []
    assert tell["outside_bands"]["pixels_below_0.99"] == 0


def test_report_files_and_plot(fitted, tmp_path):
    spec, res = fitted
    report = transfer_report(res, spec)
    back = json.loads(write_fit_report(report, tmp_path / "r.json").read_text())
    assert back["stellar_lines"]["counts"] == report["stellar_lines"]["counts"]
    rows = write_fit_report(report, tmp_path / "r.csv").read_text().strip().splitlines()
    assert rows[0].startswith("centre_angstrom,") and len(rows) == 11
    fig = plot_fit_report(report, spec, res)
    top, bottom = fig.axes[:2]
    assert sum(len(c.get_offsets()) for c in top.collections) == len(report["stellar_lines"]["lines"])
    assert len(bottom.patches) == len(report["tellurics"]["per_band"]) + 1  # + outside the bands
    assert save_figure(fig, tmp_path / "r.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="json or .csv"):
        write_fit_report(report, tmp_path / "r.txt")
