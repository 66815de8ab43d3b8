"""file_xfer.py on its own: the start message, names, numbering (hypothesis over names)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spice_twisted.file_xfer import MAX_NAME_BYTES, FileReceiver, XferRefused, numbered, parse_start, safe_name
from spice_twisted.wire.enums import FileXferStatus


def test_parse_start_reads_what_glib_writes() -> None:
    text = b"[vdagent-file-xfer]\nname=\\sleading space\\tand tab.txt\nsize=12\n\0"
    assert parse_start(text) == (" leading space\tand tab.txt", 12)
    assert parse_start(b"[other]\nname=x\nsize=1\n[vdagent-file-xfer]\nsize=2\nname=y\n") == ("y", 2)
    for bad in (b"", b"[vdagent-file-xfer]\nname=x\n", b"[vdagent-file-xfer]\nname=x\nsize=big\n", b"name=x\nsize=1\n"):
        with pytest.raises(XferRefused) as e:
            parse_start(bad)
        assert e.value.status == FileXferStatus.ERROR


@given(st.text(max_size=400))
def test_any_name_stays_in_the_directory(name: str) -> None:
    got = safe_name(name)
    assert got and "/" not in got and "\\" not in got and not got.startswith(".")
    assert len(got.encode()) <= MAX_NAME_BYTES
    assert all(ord(c) >= 0x20 and c != "\x7f" for c in got)
    base = "/srv/drop"
    assert os.path.dirname(os.path.normpath(os.path.join(base, got))) == base


def test_names_and_numbers() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\a.txt") == "a.txt"
    assert safe_name("...") == "file"
    assert numbered("notes.txt", 0) == "notes.txt"
    assert numbered("notes.txt", 2) == "notes (2).txt"
    assert numbered("README", 1) == "README (1)"
    assert numbered(".x", 1) == ".x (1)"


def test_refusals(tmp_path) -> None:
    off = FileReceiver(None)
    with pytest.raises(XferRefused) as e:
        off.start(1, b"[vdagent-file-xfer]\nname=a\nsize=1\n", allowed=True)
    assert e.value.status == FileXferStatus.DISABLED
    r = FileReceiver(tmp_path, max_size=10)
    with pytest.raises(XferRefused) as e:
        r.start(1, b"[vdagent-file-xfer]\nname=a\nsize=1\n", allowed=False)
    assert e.value.status == FileXferStatus.DISABLED
    with pytest.raises(XferRefused) as e:
        r.start(1, b"[vdagent-file-xfer]\nname=a\nsize=11\n", allowed=True)
    assert e.value.status == FileXferStatus.NOT_ENOUGH_SPACE and int.from_bytes(e.value.detail, "little") == 10
    t = r.start(1, b"[vdagent-file-xfer]\nname=a\nsize=0\n", allowed=True)
    assert r.finish_empty(t) == tmp_path / "a" and (tmp_path / "a").read_bytes() == b""
    assert list(tmp_path.iterdir()) == [tmp_path / "a"]
