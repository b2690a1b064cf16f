import subprocess
import sys

import pytest

from stellarnn.cli import main
from stellarnn.data import ENTRIES


def test_help_everywhere(capsys):
    assert main([]) == 0
    assert "data" in capsys.readouterr().out
    for group in ("data", "spectra"):
        assert main([group]) == 2
        assert "usage" in capsys.readouterr().out


def test_data_list_shows_every_entry(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for e in ENTRIES:
        assert e.name in out and e.sha256 in out
    assert "MIT" in out


def test_unknown_entry_is_one_clear_error(capsys):
    assert main(["data", "path", "nope"]) == 1
    assert "no data entry named 'nope'" in capsys.readouterr().err


def test_spectra_info_and_plot(tmp_path, real_file, capsys):
    f = str(real_file("apstar-2M17335483"))
    assert main(["spectra", "info", f]) == 0
    out = capsys.readouterr().out
    assert "3 visit(s)" in out and "rv_teff" in out
    png = tmp_path / "p.png"
    assert main(["spectra", "plot", f, "-o", str(png), "--row-index", "2"]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "stellarnn.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "stellarnn" in out.stdout


def test_debug_is_a_global_option_that_shows_the_exception(capsys):
    assert main(["data", "path", "nope"]) == 1
    assert capsys.readouterr().err.count("\n") == 1  # one line without --debug
    with pytest.raises(KeyError, match="no data entry named 'nope'"):
        main(["--debug", "data", "path", "nope"])
    with pytest.raises(KeyError):
        main(["data", "path", "nope", "--debug"])


def test_the_command_line_chooses_the_file_backend_unless_the_user_did(monkeypatch, capsys):
    monkeypatch.delenv("MPLBACKEND", raising=False)
    assert main([]) == 0
    import os

    assert os.environ["MPLBACKEND"] == "Agg"
    monkeypatch.setenv("MPLBACKEND", "svg")
    assert main([]) == 0
    assert os.environ["MPLBACKEND"] == "svg"


def test_no_library_module_selects_a_matplotlib_backend():
    """Notebook safety (issue 22): importing and plotting never switch the caller's backend; only the
    command line picks one, through MPLBACKEND at its entry."""
    from pathlib import Path

    import stellarnn

    package = Path(stellarnn.__file__).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py") if "matplotlib.use(" in p.read_text()]
    assert offenders == []
