"""Tests of stellarnn.cli: the entry point, global options and what every command group shares."""
import subprocess
import sys

import pytest

from stellarnn.cli import main


def test_help_everywhere(capsys):
    assert main([]) == 0
    assert "data" in capsys.readouterr().out
    for group in ("data", "spectra"):
        assert main([group]) == 2
        assert "usage" in capsys.readouterr().out


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
