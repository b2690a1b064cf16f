import shutil

import numpy as np
import pytest
from astropy.table import Table

from stellarnn.labels.astronn.label_table import load_apstar_training_set, read_label_table
from stellarnn.labels.astronn.network import OUTPUT_LABELS


def write_table(path, **extra):
    t = Table({"APOGEE_ID": ["2M17335483-2753043", "2M19485057+5005279", "2M00000000+0000000"],
               "TEFF": [4500.0, 5800.0, -9999.0], "TEFF_ERR": [50.0, 60.0, -9999.0], "LOGG": [2.1, 4.3, 1.0],
               "FE_H": [-0.3, 0.1, np.nan], "MG_FE": [0.2, 0.0, 0.1], "NI_H": [-0.2, -9999.0, 0.0], **extra})
    t.write(path, overwrite=True)
    return path


def test_read_aspcap_columns(tmp_path):
    d = read_label_table(write_table(tmp_path / "l.fits"))
    j = {n: i for i, n in enumerate(OUTPUT_LABELS)}
    assert d["labels"][0, j["teff"]] == 4500 and np.isnan(d["labels"][2, j["teff"]])
    assert d["labels"][0, j["mg_h"]] == pytest.approx(-0.1)  # [Mg/Fe] + [Fe/H]
    assert np.isnan(d["labels"][2, j["mg_h"]])  # [Fe/H] missing
    assert np.isnan(d["labels"][1, j["ni_h"]]) and np.isnan(d["labels"][0, j["o_h"]])
    assert d["errors"][1, j["teff"]] == 60 and d["columns"]["mg_h"] == "MG_FE" and d["columns"]["o_h"] is None


def test_match_apstar_files(tmp_path, real_file):
    a = shutil.copy(real_file("apstar-2M17335483"), tmp_path / "apStar-a.fits")
    shutil.copy(real_file("apstar-2M19485057"), tmp_path / "apStar-b.fits")
    (tmp_path / "apStar-broken.fits").write_bytes(b"not fits")
    table = write_table(tmp_path / "l.fits")
    d = load_apstar_training_set(str(tmp_path / "apStar*.fits"), table, use="all")
    assert d["flux"].shape == (4 + 2, 8575)  # combined + 3 visits, combined + 1 visit
    assert len(d["skipped"]) == 1 and "broken" in d["skipped"][0][0]
    assert d["labels"][0, 0] == 4500 and d["labels"][-1, 0] == 5800
    assert load_apstar_training_set([a], table)["flux"].shape == (1, 8575)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no spectrum file"):
        load_apstar_training_set(str(tmp_path / "none*.fits"), tmp_path / "l.fits")
    Table({"X": [1.0]}).write(tmp_path / "bad.fits")
    with pytest.raises(ValueError, match="APOGEE_ID or FILE"):
        read_label_table(tmp_path / "bad.fits")
    Table({"APOGEE_ID": ["a"], "X": [1.0]}).write(tmp_path / "bad2.fits")
    with pytest.raises(ValueError, match="none of the label columns"):
        read_label_table(tmp_path / "bad2.fits")
    with pytest.raises(FileNotFoundError):
        read_label_table(tmp_path / "missing.fits")
