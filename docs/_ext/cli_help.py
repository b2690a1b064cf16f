"""Sphinx directive ``.. cli-help:: [GROUP [COMMAND]]``: the ``--help`` text of a ``stellarnn`` command,
taken from the real argument parser at build time (so the page never drifts from the code).

The text is formatted at 88 columns.  A group or command that does not exist is a build warning.
"""
from __future__ import annotations

import argparse
import os

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)
COLUMNS = "88"  # fits the page's code block without scrolling


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def help_text(words: list[str]) -> str:
    """``stellarnn WORDS... --help`` as printed (module notes)."""
    from stellarnn.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS  # argparse reads the width when it formats
    try:
        parser = build_parser()
        for word in words:
            parser = _subparser(parser, word)
            if parser is None:
                raise KeyError(f"no command 'stellarnn {' '.join(words)}'")
        return parser.format_help().rstrip()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def group_names() -> list[str]:
    """The top-level command groups of ``stellarnn``, in the parser's order."""
    from stellarnn.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


class CliHelp(SphinxDirective):
    """The help of one command (module notes)."""

    optional_arguments = 2
    has_content = False

    def run(self):
        words = list(self.arguments)
        try:
            text = help_text(words)
        except KeyError as exc:
            logger.warning(str(exc), location=(self.env.docname, self.lineno))
            return []
        command = " ".join(["stellarnn", *words, "--help"])
        block = nodes.literal_block(f"$ {command}\n{text}", f"$ {command}\n{text}", language="text")
        self.set_source_info(block)
        return [block]


def setup(app):
    app.add_directive("cli-help", CliHelp)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
