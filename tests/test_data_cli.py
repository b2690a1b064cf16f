"""Tests of stellarnn.data.cli: ``stellarnn data list|fetch|path``."""
from __future__ import annotations

from stellarnn.cli import main
from stellarnn.data import ENTRIES, get_entry
from stellarnn.data.cli import _human
from stellarnn.data.fetch import CACHE_ENV


def test_data_list_shows_every_entry(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for e in ENTRIES:
        assert e.name in out and e.sha256 in out
    assert "MIT" in out


def test_data_list_says_which_entries_are_cached(real_file, tmp_path, monkeypatch, capsys):
    real_file("apstar-2M17335483")
    assert main(["data", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("apstar-2M17335483 "))
    assert line.endswith(" cached")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # an empty cache: nothing is fetched yet
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path}" in out
    rows = [ln for ln in out.splitlines() if ln[:1].isalnum() and not ln.startswith("cache:")]
    assert len(rows) == len(ENTRIES) and all(ln.endswith(" not fetched") for ln in rows)


def test_data_path_and_quiet_fetch_of_a_cached_entry(real_file, capsys):
    path = real_file("apstar-2M17335483")
    assert main(["data", "path", "apstar-2M17335483"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert main(["data", "fetch", "-q", "apstar-2M17335483"]) == 0  # cached and verified: nothing to do or say
    assert capsys.readouterr().out == ""
    assert main(["data", "path", "--fetch", "apstar-2M17335483"]) == 0
    assert capsys.readouterr().out.strip() == str(path)


def test_data_path_of_an_entry_not_fetched_names_where_it_will_be(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    entry = get_entry("apstar-2M17335483")
    assert main(["data", "path", entry.name]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "files" / entry.name / entry.filename)
    assert not (tmp_path / "files").exists()  # printing the path fetches nothing


def test_unknown_entry_is_one_clear_error(capsys):
    assert main(["data", "path", "nope"]) == 1
    assert "no data entry named 'nope'" in capsys.readouterr().err
    assert main(["data", "fetch", "-q", "nope"]) == 1
    assert "no data entry named 'nope'" in capsys.readouterr().err


def test_sizes_are_shown_in_decimal_units():
    assert _human(999) == "999 B"
    assert _human(1000) == "1.0 kB"
    assert _human(2_345_678) == "2.3 MB"
    assert _human(5_000_000_000_000) == "5000.0 GB"
