"""Data flows one way (README, "Layout"): no module imports a job above its own layer.

Every ``import`` and ``from ... import`` in ``src/stellarnn`` is read with :mod:`ast` (lazy imports inside
functions included, since they still tie a lower job to a higher one) and resolved to the top-level module it
names. A module may import its own job and any job of a lower layer; two jobs of the same layer stay
independent of each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stellarnn"

#: layer of every top-level module of the package (README "Layout"): foundations, then
#: data -> spectra/atmospheres -> synthesis -> labels/blase/stokes -> runner -> main job -> command line
LAYERS = {
    "constants": 0, "numerics": 0, "figures": 0, "fits_tables": 0, "atomic_files": 0, "cli_arguments": 0,
    "data": 1, "train": 1,
    "spectra": 2, "atmospheres": 2,
    "synthesis": 3,
    "labels": 4, "blase": 4, "stokes": 4,
    "runner": 5,
    "main_job": 6,
    "cli": 7, "__init__": 7, "__main__": 8,
}


def top_level(path: Path, src: Path = SRC) -> str:
    """The top-level module a source file belongs to (``labels`` for labels/astronn/network.py)."""
    rel = path.relative_to(src).parts
    return rel[0] if len(rel) > 1 else rel[0][:-3]


def imported_top_levels(path: Path, src: Path = SRC) -> set[str]:
    """Top-level stellarnn modules that ``path`` imports (``"__version__"`` for the package's version)."""
    rel = path.relative_to(src).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("stellarnn.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("stellarnn."):
                    found.add(node.module.split(".")[1])
                elif node.module == "stellarnn":
                    found |= {a.name for a in node.names}
                continue
            package = list(rel[:-1])
            package = package[:len(package) - (node.level - 1)]
            parts = package + (node.module.split(".") if node.module else [])
            found |= {parts[0]} if parts else {a.name for a in node.names}
    return found


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_top_level_module_has_a_layer():
    missing = sorted({top_level(p) for p in SOURCES} - set(LAYERS))
    assert not missing, f"give these modules a layer in LAYERS (and the README's Layout): {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_the_layers(path):
    own = top_level(path)
    wrong = []
    for target in sorted(imported_top_levels(path) - {own, "__version__"}):
        if target not in LAYERS:
            wrong.append(f"{target} (unknown module)")
        elif LAYERS[target] >= LAYERS[own]:
            wrong.append(f"{target} (layer {LAYERS[target]}, not below {own}'s {LAYERS[own]})")
    assert not wrong, f"{path.relative_to(SRC)} imports " + ", ".join(wrong)


def test_the_check_sees_relative_and_absolute_imports(tmp_path):
    # the check must fail on a lower job importing a higher one, in each spelling
    fake = tmp_path / "stellarnn"
    (fake / "spectra" / "sub").mkdir(parents=True)
    probe = fake / "spectra" / "sub" / "probe.py"
    probe.write_text("from ...labels import x\nimport stellarnn.runner.tasks\n"
                     "def f():\n    from ..reader import y\n    from stellarnn.synthesis import z\n")
    assert imported_top_levels(probe, fake) == {"labels", "runner", "spectra", "synthesis"}
    assert top_level(probe, fake) == "spectra"
