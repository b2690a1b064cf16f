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


def test_the_wheel_carries_the_weights_and_labels_a_real_star_outside_the_repository(tmp_path):
    """Build the wheel, install it with --no-deps into a fresh venv that reuses this environment's
    dependencies, and run predict_labels on a real apStar file from a folder outside the checkout."""
    import site
    import venv

    from stellarnn.data import fetch

    wheel_dir = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(wheel_dir), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(wheel_dir.glob("stellarnn-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)  # its own pip: it sees only the fresh venv
    python = env_dir / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-compile", "--no-index", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    # then the CI's dependencies (torch, astropy, ...) by a path entry, after the venv's own site-packages
    # (the editable stellarnn there is not activated: .pth files are read only in site directories)
    Path(target, "zz_ci_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    script = (
        "import sys, stellarnn\n"
        "from pathlib import Path\n"
        "assert Path(stellarnn.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), stellarnn.__file__\n"
        "from stellarnn.data.shipped_weights import shipped_weights\n"
        "w = shipped_weights('astronn')\n"
        "assert 'share/stellarnn/weights' in str(w), w\n"
        f"t = stellarnn.predict_labels({str(fetch('apstar-2M19485057'))!r}, pipeline='astronn', mc_passes=4)\n"
        "print(float(t['teff'][0].value), t['teff'].unit)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("STELLARNN_WEIGHTS_DIR", "PYTHONPATH")}
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    teff, unit = proc.stdout.split()
    assert unit == "K" and 3500 < float(teff) < 8000
