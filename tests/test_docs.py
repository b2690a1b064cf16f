"""The Sphinx documentation (docs/): it builds with no warnings, its pages hold what they promise, and the
directive that runs the tutorials shows output and figures and fails the build on a broken block.

The full build here runs the four tutorials (about 30-60 s), as ``make docs`` does; ``make docs`` then also
runs the docstring examples.
"""
from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

sphinx_cmd = pytest.importorskip("sphinx.cmd.build", reason="Sphinx is not installed (pip install '.[docs]')")
pytest.importorskip("numpydoc", reason="numpydoc is not installed (pip install '.[docs]')")

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))


def _build(source: Path, out: Path, *extra: str) -> tuple[int, str]:
    """Run sphinx-build in this process; its exit status and what it wrote to stderr."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = sphinx_cmd.build_main(["-W", "--keep-going", "-E", "-q", "-b", "html", "-d", str(out / "doctrees"),
                                        *extra, str(source), str(out / "html")])
    return status, err.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    status, err = _build(DOCS, out)  # the tutorials are executed: a broken tutorial fails the build
    assert status == 0, f"docs build failed (warnings are errors):\n{err}"
    assert err.strip() == "", err
    return out / "html"


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_docs_build_without_warnings_and_pages_exist(site):
    for page in ("index", "install", "cli", "facts", "api/index", "api/labels", "api/stokes", "api/synthesis",
                 "tutorials/labels", "tutorials/atmosphere_pysme", "tutorials/blase", "tutorials/stokes"):
        assert (site / f"{page}.html").is_file(), page
    # executed: the tutorials show their output, not the note of a build that skipped them
    labels = _text(site / "tutorials" / "labels.html")
    assert "did not run the tutorial code" not in labels
    assert len(list(site.glob("_images/*.png"))) >= 4


@pytest.mark.slow
def test_tutorials_ran_and_embed_their_figures(site):
    pages = sorted((site / "tutorials").glob("*.html"))
    assert len(pages) >= 4
    for page in pages:
        html = page.read_text(encoding="utf-8")
        if "index" in page.name:
            continue
        assert re.search(r'<img[^>]+src="[^"]+\.png"', html), f"{page.name} shows no figure"


@pytest.mark.slow
def test_api_reference_is_generated_from_docstrings(site):
    api = _text(site / "api" / "labels.html")
    # predict_labels with its numpydoc sections and its example
    assert "stellarnn.labels.predict.predict_labels" in api
    assert "Returns" in api and "astropy.table.QTable" in api
    assert 'predict_labels(fetch("apstar-2M19485057"), pipeline="astronn")' in api.replace("&quot;", '"')
    # every module of a package gets its own section, sub-packages included
    for module in ("stellarnn.labels.astronn.network", "stellarnn.labels.apogeenet.flags", "stellarnn.labels.noise_model"):
        assert module in api, module
    synthesis = _text(site / "api" / "synthesis.html")
    for module in ("label_priors", "populations", "information", "pysme_driver", "grid_builder", "emulator", "fitter"):
        assert f"stellarnn.synthesis.{module}" in synthesis, module
    stokes = _text(site / "api" / "stokes.html")
    assert "MEInverter" in stokes and "invert_lm" in stokes and "write_sp_level1" in stokes


@pytest.mark.slow
def test_cli_page_holds_every_group_help(site):
    from cli_help import group_names, help_text

    page = _text(site / "cli.html").replace("&quot;", '"').replace("&amp;", "&").replace("&gt;", ">").replace("&lt;", "<")
    groups = group_names()
    assert {"data", "atmosphere", "blase", "stokes", "runner", "main"} <= set(groups)
    for group in groups:
        assert f"$ stellarnn {group} --help" in page, f"the CLI page lacks `stellarnn {group} --help`"
    # the text is the parser's own (first lines of one command's help)
    assert help_text(["blase", "clone"]).splitlines()[0].split()[:3] == ["usage:", "stellarnn", "blase"]


@pytest.mark.slow
def test_facts_page_cites_its_sources(site):
    facts = _text(site / "facts.html")
    for fact in ("10^(4.179 + 6×10⁻⁶", "7514", "21.549 mÅ", "4.6686×10⁻¹³", "(3.7, 0.1)", "100 passes"):
        assert fact in facts, fact
    for ref in ("Leung &amp; Bovy 2019, MNRAS 483, 3255", "Sizemore et al. 2024, AJ 167, 173",
                "Gully-Santiago &amp; Morley 2022, ApJ 941, 200", "Landi Degl’Innocenti &amp; Landolfi 2004"):
        assert ref.replace("&amp;", "&") in facts.replace("&amp;", "&").replace("'", "’"), ref


def _mini_project(root: Path, block: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "conf.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(DOCS / '_ext')!r})
        extensions = ["executed_code"]
        exclude_patterns = ["_build"]
    """))
    (root / "index.rst").write_text("Page\n====\n\n" + textwrap.dedent(block))
    return root


def test_executed_code_shows_output_and_embeds_figures(tmp_path):
    pytest.importorskip("matplotlib")
    src = _mini_project(tmp_path / "src", """
        .. executed-code::
           :figures: line.png

           import matplotlib
           matplotlib.use("Agg")
           import matplotlib.pyplot as plt
           answer = 6 * 7
           fig, ax = plt.subplots()
           ax.plot([0, 1], [0, answer])
           fig.savefig("line.png")
           print("answer", answer)

        .. executed-code::

           print("still here:", answer + 1)
    """)
    status, err = _build(src, tmp_path / "out")
    assert status == 0, err
    html = (tmp_path / "out" / "html" / "index.html").read_text()
    assert "answer 42" in html and "still here: 43" in html  # one namespace per page
    images = list((tmp_path / "out" / "html" / "_images").glob("line*.png"))
    assert len(images) == 1 and images[0].stat().st_size > 1000
    assert f'src="_images/{images[0].name}"' in html


def test_executed_code_off_shows_code_only(tmp_path):
    src = _mini_project(tmp_path / "src", """
        .. executed-code::

           print("should not run")
    """)
    status, err = _build(src, tmp_path / "out", "-D", "tutorials_execute=0")
    assert status == 0, err
    html = (tmp_path / "out" / "html" / "index.html").read_text()
    assert "did not run the tutorial code" in html
    assert "should not run" in html and "executed-output" not in html


def test_broken_block_or_missing_figure_fails_the_build(tmp_path):
    src = _mini_project(tmp_path / "src", """
        .. executed-code::

           raise ValueError("tutorial is broken")
    """)
    status, err = _build(src, tmp_path / "out")
    assert status != 0
    assert "executed-code block failed" in err and "tutorial is broken" in err and "index" in err
    src = _mini_project(tmp_path / "src2", """
        .. executed-code::
           :figures: never_written.png

           x = 1
    """)
    status, err = _build(src, tmp_path / "out2")
    assert status != 0 and "did not write its figure never_written.png" in err


def test_docstring_examples_run():
    """Every docstring example of the package runs (doctest), as in ``make docs``."""
    import doctest
    import importlib

    src = Path(__file__).resolve().parents[1] / "src"
    modules = sorted(p for p in (src / "stellarnn").rglob("*.py") if ">>>" in p.read_text(encoding="utf-8"))
    assert modules, "no docstring examples found"
    for path in modules:
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"
