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
