"""Sphinx directive ``.. package-modules:: PACKAGE``: the API reference of every module of a package.

It expands, at build time, into one section per module (``automodule`` with its members), in
alphabetical order, so that a module added to ``src/`` appears in the reference without editing
the docs.  The command-line modules (``cli``) are left out: the command line has its own page.
Options: ``:exclude:`` (space-separated module names to leave out), ``:only:`` (the names to keep),
``:recursive:`` (also the sub-packages' modules, each under its own heading).
"""
from __future__ import annotations

import importlib
import pkgutil

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)
ALWAYS_EXCLUDED = {"cli"}


def package_modules(package: str, recursive: bool = False) -> list[str]:
    """Dotted names of the modules of ``package`` (module notes), sorted."""
    pkg = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name in ALWAYS_EXCLUDED:
            continue
        if info.ispkg:
            if recursive:
                names.append(f"{package}.{info.name}")
                names.extend(package_modules(f"{package}.{info.name}", recursive))
            continue
        names.append(f"{package}.{info.name}")
    return sorted(names)


class PackageModules(SphinxDirective):
    """Sections with the autodoc reference of a package's modules (module notes)."""

    required_arguments = 1
    option_spec = {"exclude": directives.unchanged, "only": directives.unchanged, "recursive": directives.flag}

    def run(self):
        package = self.arguments[0]
        try:
            names = package_modules(package, "recursive" in self.options)
        except ImportError as exc:
            logger.warning(f"cannot import {package}: {exc}", location=(self.env.docname, self.lineno))
            return []
        exclude = set((self.options.get("exclude") or "").split())
        only = set((self.options.get("only") or "").split())
        names = [n for n in names if n.rsplit(".", 1)[1] not in exclude and (not only or n.rsplit(".", 1)[1] in only)]
        missing = only - {n.rsplit(".", 1)[1] for n in names}
        if missing:
            logger.warning(f"{package} has no module(s) {sorted(missing)}", location=(self.env.docname, self.lineno))
        lines = []
        for name in names:
            is_package = hasattr(importlib.import_module(name), "__path__")
            title = f"``{name}``"
            lines += [title, "-" * len(title), "", f".. automodule:: {name}"]
            if not is_package:
                lines += ["   :members:", "   :show-inheritance:"]
            lines.append("")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=f"<package-modules {package}>"), container)
        return container.children


def setup(app):
    app.add_directive("package-modules", PackageModules)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
