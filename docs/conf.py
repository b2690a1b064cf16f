"""Sphinx configuration of the stellarnn documentation (``make docs`` builds it)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent / "src"))  # the checkout's code, also without an installed package
os.environ.setdefault("MPLBACKEND", "Agg")  # tutorials draw into files; no display in a build
os.environ.setdefault("OMP_NUM_THREADS", "1")  # fastest on a busy machine (torch spins otherwise)

import stellarnn  # noqa: E402

project = "stellarnn"
author = "the stellarnn developers"
copyright = "the stellarnn developers (BSD-3-Clause)"
release = stellarnn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "executed_code",
    "cli_help",
    "api_pages",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path: list[str] = []
html_theme = "alabaster"
html_theme_options = {
    "description": "Neural-network stellar and solar spectroscopy",
    "page_width": "1180px",
    "sidebar_width": "250px",
    "fixed_sidebar": True,
    "body_max_width": "none",  # code blocks of up to ~110 characters without scrolling
}
html_title = f"stellarnn {release}"
html_show_sourcelink = False

# API reference: numpy-style docstrings through numpydoc, members in source order
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_mock_imports: list[str] = []
numpydoc_show_class_members = False  # no autosummary tables of members (the members follow anyway)
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

# tutorials: run their code at build time (``-D tutorials_execute=0`` shows the code only)
tutorials_execute = True
