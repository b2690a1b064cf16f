import re

import pytest

from stellarnn.data import ENTRIES, UnknownDataEntry, get_entry, select


def test_every_entry_is_complete():
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names))
    for e in ENTRIES:
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.size > 0 and e.package.licence and e.package.citation and e.description
        assert e.package.kind in ("wheel", "sdist")


def test_required_entries_present():
    names = {e.name for e in ENTRIES}
    for required in ("atlas9-grid", "apstar-2M17335483", "apstar-2M19485057", "apvisit-5095-55844-128",
                     "apvisit-9518-57729-104", "aspcap-masks", "dr17-contmask", "moog-atoms", "moog-co",
                     "kurucz-sun", "phoenix-10kK", "chiron-hip108294"):
        assert required in names


def test_unknown_name_lists_choices():
    with pytest.raises(UnknownDataEntry) as exc:
        get_entry("no-such-file")
    assert "no-such-file" in str(exc.value) and "atlas9-grid" in str(exc.value)


def test_select_by_tag():
    apstars = select(tag="apstar")
    assert {e.name for e in apstars} == {"apstar-2M17335483", "apstar-2M19485057"}
