"""Tests of stellarnn.spectra.cli: ``stellarnn spectra info|plot`` on real files."""
from __future__ import annotations

import numpy as np
import pytest

from stellarnn.cli import main


def test_spectra_info_and_plot(tmp_path, real_file, capsys):
    f = str(real_file("apstar-2M17335483"))
    assert main(["spectra", "info", f]) == 0
    out = capsys.readouterr().out
    assert "3 visit(s)" in out and "rv_teff" in out
    png = tmp_path / "p.png"
    assert main(["spectra", "plot", f, "-o", str(png), "--row-index", "2"]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_plot_names_the_rows_that_exist(tmp_path, real_file, capsys):
    f = str(real_file("apstar-2M17335483"))
    assert main(["spectra", "plot", f, "-o", str(tmp_path / "p.png"), "--row-index", "4"]) == 1
    assert "--row-index 4 does not exist (rows 0-3" in capsys.readouterr().err


def test_info_on_an_apvisit_reports_chips_and_lsf(real_file, capsys):
    assert main(["spectra", "info", str(real_file("apvisit-5095-55844-128"))]) == 0
    out = capsys.readouterr().out
    assert "apVisit, 3 chips x 4096 px" in out and "2M01183798+8403419" in out
    assert out.count("LSF resolving power") == 3


def test_info_on_an_echelle_file_gives_angstrom_and_says_where_the_unit_came_from(real_file, capsys):
    assert main(["spectra", "info", str(real_file("chiron-hip108294"))]) == 0
    out = capsys.readouterr().out
    assert "échelle, 58 orders, 185600 px, 4578.031-8629.233 Å" in out  # the file's nm, not read as Angstrom
    assert "unit: nm, inferred from the values (no TUNIT)" in out


@pytest.mark.parametrize("entry, expected", [
    ("phoenix-10kK", "338649 px, 8038.010-12848.980 Å, no uncertainty column"),
])
def test_info_on_a_generic_csv(real_file, capsys, entry, expected):
    assert main(["spectra", "info", str(real_file(entry))]) == 0
    out = capsys.readouterr().out
    assert expected in out and "medium: unknown" in out


def test_plot_of_an_apvisit_shows_it_on_the_apstar_grid(tmp_path, real_file, capsys):
    png = tmp_path / "v.png"
    assert main(["spectra", "plot", str(real_file("apvisit-9518-57729-104")), "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_info_on_an_aspcapstar_names_the_layout_and_aspcap_labels(tmp_path, capsys):
    from astropy.io import fits

    from stellarnn.spectra.apogee_grid import APOGEE_DLOG10_LAMBDA, APOGEE_LOG10_LAMBDA0

    rows = []
    for value in (1.0, 0.01, 0.99):  # flux, error, ASPCAP's best fit
        hdu = fits.ImageHDU(np.full(8575, value, np.float32))
        hdu.header.update({"CRVAL1": APOGEE_LOG10_LAMBDA0, "CDELT1": APOGEE_DLOG10_LAMBDA})
        rows.append(hdu)
    rows[0].data[:246] = 0.0  # blue of the blue chip: no data
    table = fits.BinTableHDU.from_columns([fits.Column(name="APOGEE_ID", format="18A", array=["2M00000000+0000000"]),
                                           fits.Column(name="TEFF", format="E", array=[4800.0])])
    path = tmp_path / "aspcapStar-test.fits"
    fits.HDUList([fits.PrimaryHDU(), *rows, table]).writeto(path)
    assert main(["spectra", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "aspcapStar (ASPCAP's pseudo-continuum-normalised spectrum)" in out
    assert "aspcap_teff 4800.0" in out and "2M00000000+0000000" in out and "246 pixels without data" in out
    assert main(["spectra", "plot", str(path), "-o", str(tmp_path / "a.png")]) == 0
