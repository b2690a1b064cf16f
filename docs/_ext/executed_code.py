"""Sphinx directive ``.. executed-code::``: run a tutorial's Python block at build time.

Each block is shown as code, followed by what it printed and by the figures it saved.  The blocks of
one page share one namespace (run in page order), so a tutorial reads like a notebook.  A block's
working directory is the build's figure folder (``<doctreedir>/tutorial_figures/<page>``); a
block names the PNG files it writes with the ``:figures:`` option and they are embedded below it.

Set the configuration value ``tutorials_execute`` to False (``sphinx-build -D tutorials_execute=0``)
to show the code without running it (a note says so); the test suite builds this way, ``make docs``
runs everything.  An exception in a block is a build warning naming the page and the block's line,
so ``sphinx-build -W`` fails on a broken tutorial.
"""
from __future__ import annotations

import contextlib
import io
import os
import time
import traceback
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: page name -> the namespace its blocks share (reset when the page is read again)
_NAMESPACES: dict[str, dict] = {}
#: page name -> seconds its blocks took (reported at the end of the build)
TIMINGS: dict[str, float] = {}


def _figure_folder(env, docname: str) -> Path:
    folder = Path(env.doctreedir) / "tutorial_figures" / docname.replace("/", "__")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class ExecutedCode(SphinxDirective):
    """Show, run and embed the output and figures of one Python block (module notes)."""

    has_content = True
    option_spec = {"figures": directives.unchanged, "hide-output": directives.flag,
                   "width": directives.unchanged}

    def run(self):
        env = self.env
        code = "\n".join(self.content)
        shown = nodes.literal_block(code, code, language="python")
        self.set_source_info(shown)
        out = [shown]
        if not env.config.tutorials_execute:
            if env.temp_data.get("executed_code_note") != env.docname:
                env.temp_data["executed_code_note"] = env.docname
                note = nodes.note()
                note += nodes.paragraph(text="This build did not run the tutorial code (tutorials_execute = 0): "
                                             "no output or figures are shown.")
                out.insert(0, note)
            return out
        # a page read again (incremental build) starts with a fresh namespace at its first block
        if env.temp_data.get("executed_code_page") != env.docname:
            env.temp_data["executed_code_page"] = env.docname
            _NAMESPACES[env.docname] = {"__name__": f"tutorial_{env.docname.replace('/', '_')}"}
        namespace = _NAMESPACES[env.docname]
        folder = _figure_folder(env, env.docname)
        figures = (self.options.get("figures") or "").split()
        for name in figures:
            (folder / name).unlink(missing_ok=True)
        buffer = io.StringIO()
        cwd = os.getcwd()
        start = time.perf_counter()
        try:
            os.chdir(folder)
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                exec(compile(code, f"{env.docname}.rst:{self.lineno}", "exec"), namespace)
        except Exception:
            logger.warning("executed-code block failed:\n%s", traceback.format_exc(limit=-3),
                           location=(env.docname, self.lineno))
            return out
        finally:
            os.chdir(cwd)
            TIMINGS[env.docname] = TIMINGS.get(env.docname, 0.0) + time.perf_counter() - start
            try:
                import matplotlib.pyplot as plt

                plt.close("all")
            except ImportError:
                pass
        printed = buffer.getvalue().rstrip()
        if printed and "hide-output" not in self.options:
            block = nodes.literal_block(printed, printed, language="text", classes=["executed-output"])
            out.append(block)
        docdir = Path(env.srcdir, env.docname).parent
        for name in figures:
            path = folder / name
            if not path.is_file():
                logger.warning(f"executed-code block did not write its figure {name}", location=(env.docname,
                                                                                                self.lineno))
                continue
            # a path relative to the page: Sphinx copies the file into _images/ like any other image
            image = nodes.image(uri=os.path.relpath(path, docdir), alt=name, width=self.options.get("width", "100%"))
            out.append(image)
        return out


def _report_timings(app, exception):
    if exception is None and TIMINGS:
        total = sum(TIMINGS.values())
        detail = ", ".join(f"{page} {sec:.1f} s" for page, sec in sorted(TIMINGS.items()))
        logger.info(f"executed tutorial code: {total:.1f} s ({detail})")


def setup(app):
    app.add_config_value("tutorials_execute", True, "env", types=(bool,))
    app.add_directive("executed-code", ExecutedCode)
    app.connect("build-finished", _report_timings)
    return {"version": "1.0", "parallel_read_safe": False, "parallel_write_safe": True}
