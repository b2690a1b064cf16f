"""Tests for `stellarnn blase clone|transfer|plot` on small synthetic files."""
import json

import numpy as np
import pytest
import torch

from stellarnn.blase.line_finder import LineGuesses
from stellarnn.blase.line_model import LineModel
from stellarnn.cli import main


@pytest.fixture()
def source(tmp_path):
    c = np.array([8001.3, 8003.9, 8006.6])
    g = LineGuesses(c, np.array([0.02, 0.05, 0.03]), np.full(3, 0.05), np.full(3, 0.01), np.zeros(3), np.zeros(3))
    wl = np.arange(8000.0, 8008.0, 0.01)
    with torch.no_grad():
        flux = LineModel.from_guesses(g, profile="voigt")(torch.from_numpy(wl)).double().numpy()
    np.savez(tmp_path / "src.npz", wavelength=wl, flux=flux * (1 + 1e-3 * (wl - 8000)))
    # observed: same lines at R ~ 50000, pixels of 0.04 A, 1 % noise, one order
    obs_wl = np.arange(8000.5, 8007.5, 0.04)
    from stellarnn.blase.extrinsic import convolve_same, gaussian_kernel, log_uniform_grid, resample_linear
    grid = log_uniform_grid(7999.0, 8009.0, 0.5)
    with torch.no_grad():
        fine = LineModel.from_guesses(g, profile="voigt")(torch.from_numpy(grid))
        conv = convolve_same(fine.double(), gaussian_kernel(torch.tensor(50000.0, dtype=torch.float64), 0.5, 30))
        obs = resample_linear(torch.from_numpy(grid), conv, torch.from_numpy(obs_wl)).numpy()
    obs = obs + np.random.default_rng(0).normal(0, 0.01, obs.size)
    np.savez(tmp_path / "obs.npz", wavelength=obs_wl, flux=obs, error=np.full(obs.size, 0.01))
    return tmp_path


def test_clone_transfer_plot(source, capsys):
    d = source
    assert main(["blase", "clone", str(d / "src.npz"), "--out", str(d / "c.pt"), "--epochs", "60",
                 "--knot-spacing", "4", "--table", str(d / "c.csv"), "--plot", str(d / "c.png"), "-q"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n_lines"] == 3 and metrics["rms_residual"] < metrics["initial_rms_residual"]
    assert (d / "c.png").stat().st_size > 0 and (d / "c.csv").read_text().startswith("centre_angstrom")
    assert main(["blase", "transfer", str(d / "c.pt"), str(d / "obs.npz"), "--out", str(d / "t.pt"),
                 "--epochs", "20", "--baseline-epochs", "20", "--resolution-guess", "50000",
                 "--plot", str(d / "t.png"), "-q"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(out["rv_km_s"]) < 3.0 and out["transfer_rms"] < 0.03
    assert main(["blase", "plot", str(d / "t.pt"), "--out", str(d / "t2.png")]) == 0
    assert main(["blase", "plot", str(d / "c.pt"), "--out", str(d / "c2.png")]) == 0
    assert (d / "t2.png").stat().st_size > 0 and (d / "c2.png").stat().st_size > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["blase", "clone", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.pt"), "-q"]) == 1
    assert "error" in capsys.readouterr().err
    assert main(["blase"]) == 2  # group help, no action


def test_transfer_from_a_fits_table_with_report(source, capsys):
    """Issue 21: a FITS table as it comes (WAVE in nm with TUNIT, FLUX, IVAR, a NaN pixel, BERV) is read,
    and the fit report says what the transfer changed."""
    from astropy.io import fits

    d = source
    obs = np.load(d / "obs.npz")
    flux = obs["flux"].copy()
    flux[10] = np.nan
    cols = [fits.Column(name="WAVE", format="D", unit="nm", array=obs["wavelength"] / 10.0),
            fits.Column(name="FLUX", format="D", array=flux),
            fits.Column(name="IVAR", format="D", array=obs["error"] ** -2)]
    primary = fits.PrimaryHDU()
    primary.header["BERV"] = (4.2, "km/s")
    fits.HDUList([primary, fits.BinTableHDU.from_columns(cols)]).writeto(d / "obs.fits")
    assert main(["blase", "clone", str(d / "src.npz"), "--out", str(d / "c.pt"), "--epochs", "40",
                 "--knot-spacing", "4", "-q"]) == 0
    capsys.readouterr()
    assert main(["blase", "transfer", str(d / "c.pt"), str(d / "obs.fits"), "--out", str(d / "t.pt"),
                 "--epochs", "20", "--baseline-epochs", "20", "--resolution-guess", "50000",
                 "--report", str(d / "report.json"), "--report-plot", str(d / "report.png"), "-q"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert abs(out["rv_km_s"]) < 3.0 and out["telluric_mode"] == "bands" and out["n_telluric_lines"] == 0
    assert out["reader"]["wavelength_unit"] == "nm" and out["reader"]["barycentric_correction"]["BERV"]["value"] == 4.2
    report = json.loads((d / "report.json").read_text())
    # the CLI cuts the data to the clone's range, so the two edge lines may fall just outside it
    assert 1 <= report["stellar_lines"]["n_in_data"] <= 3 and report["extrinsic"]["e_rv_km_s"] > 0
    assert (d / "report.png").stat().st_size > 0
