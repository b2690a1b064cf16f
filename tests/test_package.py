"""Tests of the package itself: one version, the module entry point, the files a release needs."""
from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import stellarnn

ROOT = Path(__file__).resolve().parents[1]


def test_version_has_one_source_and_a_changelog_entry():
    assert importlib.metadata.version("stellarnn") == stellarnn.__version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)  # dynamic: read from stellarnn.__version__
    assert f"## {stellarnn.__version__} " in (ROOT / "CHANGELOG.md").read_text()
    assert f"version: {stellarnn.__version__}" in (ROOT / "CITATION.cff").read_text()


def test_release_files_exist():
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "CITATION.cff").read_text().startswith("cff-version:")


def test_python_dash_m_runs_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "stellarnn", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"stellarnn {stellarnn.__version__}"
    proc = subprocess.run([sys.executable, "-m", "stellarnn", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: stellarnn" in proc.stdout
