"""Tests of stellarnn.runner.fields: the glossary shared by database, exports and --help."""
from __future__ import annotations

import pytest

from stellarnn.labels.pipeline import FieldInfo
from stellarnn.runner.fields import (RUNNER_FIELDS, RUNNER_FLAG_DESCRIPTIONS, RunnerFlag, describe, glossary,
                                     glossary_text, runner_help_text)


def test_glossary_order_and_reason_merge():
    fields = {"teff": FieldInfo("K", "effective temperature"), "reason": FieldInfo("", "pipeline reason", "str")}
    g = glossary(fields)
    assert list(g) == list(RUNNER_FIELDS) + ["teff"]
    assert g["reason"] is RUNNER_FIELDS["reason"]
    with pytest.raises(ValueError, match=r"\['row', 'spectrum_id'\]"):
        glossary({"spectrum_id": FieldInfo("", "x", "str"), "row": FieldInfo("", "y", "int64")})


def test_text_forms():
    assert describe(FieldInfo("K", "effective temperature")) == "effective temperature [K]"
    assert describe(FieldInfo("", "bits", "int64")) == "bits"
    text = glossary_text({"teff": FieldInfo("K", "effective temperature " * 10)}, width=60)
    lines = text.splitlines()
    assert lines[0].startswith("  teff  effective") and len(lines) > 2 and all(len(x) <= 60 for x in lines)
    help_text = runner_help_text()
    for bit in RunnerFlag:
        assert RUNNER_FLAG_DESCRIPTIONS[bit] in help_text
    assert "runner_flags" in help_text and glossary_text({}) == ""
