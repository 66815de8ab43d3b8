"""The frames between the VM source and its helper (spice_twisted/sources/vm_protocol.py).

Sans-IO, so tested on bytes alone: every message survives a round trip, split at any
byte; malformed frames raise ProtocolError (never another exception, never an
unbounded buffer); the module runs under the helper's interpreter (the system
Python, which has no numpy nor Twisted).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.processes import free_port

from spice_twisted.sources import vm_protocol as p
from spice_twisted.sources.vm import HELPER, HELPER_PYTHON, parse_uri

MESSAGES = [
    p.StateChanged(p.State.CONNECTED, "127.0.0.1:5900"),
    p.StateChanged(p.State.LOST, "error-io: Connection reset — café"),
    p.Surface(720, 400),
    p.Damage(((0, 0, 720, 400), (3, 4, 5, 6))),
    p.Damage(()),
    p.CursorSet(2, 3, 1, 2, bytes(range(24))),
    p.CursorSet(0, 0, 0, 0, b""),
    p.CursorMove(-5, 70000),
    p.CursorHide(),
    p.Locks(5),
    p.MouseMode(2),
    p.Connect("::1", 5900, 5901, "sécret", "/etc/ca.pem"),
    p.Connect("127.0.0.1", 5900, 0, "", "", 8192 * 4320, 8192),
    p.Oversized(16384, 16384),
    p.Key(0x11D, True),
    p.Key(0x1E, False),
    p.Position(10, 20, 1),
    p.Motion(-3, 4, 0),
    p.Button(4, True, 0),
    p.SetLocks(7),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg):
    accept = p.HELPER_TYPES if msg.TYPE < 64 else p.SOURCE_TYPES
    assert p.Decoder(accept).receive_data(p.encode(msg)) == [msg]


@given(st.lists(st.integers(0, 200), max_size=20))
def test_a_stream_split_anywhere_decodes_the_same(cuts):
    stream = b"".join(p.encode(m) for m in MESSAGES)
    d = p.Decoder()
    got = []
    last = 0
    for c in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        got += d.receive_data(stream[last:c])
        last = c
    assert got == MESSAGES and d.buffered == 0


@pytest.mark.parametrize(
    "frame, error",
    [
        (bytes([99, 0, 0, 0, 0]), "unknown or unexpected frame type 99"),
        (p.HEADER.pack(p.Damage.TYPE, p.MAX_PAYLOAD + 1), "is over"),
        (p.HEADER.pack(p.Surface.TYPE, 7) + bytes(7), "expected 8"),
        (p.HEADER.pack(p.Surface.TYPE, 8) + bytes(8), "size 0x0 out of range"),
        (p.HEADER.pack(p.Damage.TYPE, 2) + b"\x02\x00", "do not hold 2 rects"),
        (p.HEADER.pack(p.CursorSet.TYPE, 8) + b"\x02\x00\x02\x00\x00\x00\x00\x00", "bytes of pixels"),
        (p.HEADER.pack(p.CursorSet.TYPE, 24) + b"\x02\x00\x02\x00\x05\x00\x00\x00" + bytes(16), "hot spot"),
        (p.HEADER.pack(p.StateChanged.TYPE, 3) + b"\x01\xff\xfe", "not UTF-8"),
        (p.HEADER.pack(p.StateChanged.TYPE, 1) + b"\x09", "unknown state 9"),
        (p.HEADER.pack(p.Locks.TYPE, 1) + b"\x08", "out of range"),
        (p.HEADER.pack(p.CursorHide.TYPE, 1) + b"\x00", "expected none"),
        (p.HEADER.pack(p.Key.TYPE, 3) + b"\x00\x02\x01", "scancode 0x200"),
        (p.HEADER.pack(p.Key.TYPE, 3) + b"\x1e\x00\x02", "neither 0 nor 1"),
        (p.HEADER.pack(p.Connect.TYPE, 2) + b"[]", "wrong fields"),
        (p.HEADER.pack(p.Connect.TYPE, 1) + b"{", "not JSON"),
        (p.HEADER.pack(p.Connect.TYPE, 4000) + b"[" * 4000, "not JSON"),
    ],
)
def test_malformed_frames_are_refused_clearly(frame, error):
    d = p.Decoder()
    with pytest.raises(p.ProtocolError, match=error):
        d.receive_data(frame)
    with pytest.raises(p.ProtocolError, match=error):  # and for good: no resync on garbage
        d.receive_data(p.encode(p.CursorHide()))


def test_each_side_accepts_only_the_other_sides_frames():
    with pytest.raises(p.ProtocolError, match="unexpected frame type 65"):
        p.Decoder(p.HELPER_TYPES).receive_data(p.encode(p.Key(0x1E, True)))
    with pytest.raises(p.ProtocolError, match="unexpected frame type 3"):
        p.Decoder(p.SOURCE_TYPES).receive_data(p.encode(p.Damage(((0, 0, 1, 1),))))


def test_a_payload_too_large_is_refused_by_the_encoder_too():
    with pytest.raises(ValueError, match="over"):
        p.encode(p.CursorSet(1024, 1024, 0, 0, bytes(1024 * 1024 * 4)))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=12), st.sampled_from([None, p.HELPER_TYPES, p.SOURCE_TYPES]))
def test_fuzzed_bytes_give_messages_or_a_protocol_error(chunks, accept):
    d = p.Decoder(accept)
    try:
        for chunk in chunks:
            for msg in d.receive_data(chunk):
                assert p.Decoder(accept).receive_data(p.encode(msg)) == [msg]  # what decodes re-encodes
            assert d.buffered <= p.HEADER.size + p.MAX_PAYLOAD
    except p.ProtocolError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=64), st.integers(0, 2**32 - 1))
def test_fuzzed_frames_of_every_type(kind, payload, length):
    """A header with any type and length, then bytes: never anything but ProtocolError,
    and a frame still incomplete keeps only what it needs."""
    d = p.Decoder()
    try:
        d.receive_data(p.HEADER.pack(kind, min(length, len(payload))) + payload)
        d.receive_data(p.HEADER.pack(kind, length) + payload)
    except p.ProtocolError:
        return
    assert d.buffered <= p.HEADER.size + p.MAX_PAYLOAD


def test_the_protocol_and_helper_load_under_the_helpers_python():
    """The helper's interpreter has neither numpy nor Twisted: the protocol must not need them,
    and the helper script must at least compile and import there."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import vm_protocol as p; "
        "assert 'numpy' not in sys.modules and 'twisted' not in sys.modules; "
        "print(p.Decoder(p.SOURCE_TYPES).receive_data(p.encode(p.Key(30, True))))"
    )
    r = subprocess.run([HELPER_PYTHON, "-c", code, str(HELPER.parent)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Key(scancode=30, pressed=True)" in r.stdout
    r = subprocess.run([HELPER_PYTHON, "-m", "py_compile", str(HELPER)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_the_helper_reports_an_unreachable_vm_and_exits(tmp_path: Path):
    """The real helper, driven by frames: nothing listens on the port, so it says LOST."""
    import os

    from support.processes import RefusingPort

    nothing = RefusingPort()  # bound, not listening: nothing is there
    port = nothing.port
    fd = os.memfd_create("test")
    try:
        proc = subprocess.Popen([HELPER_PYTHON, str(HELPER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,), **_fd3(fd))
    finally:
        os.close(fd)
    proc.stdin.write(p.encode(p.Connect("127.0.0.1", port)))
    proc.stdin.flush()  # stdin stays open: its end would mean the server left
    d, msgs = p.Decoder(p.HELPER_TYPES), []
    while not any(isinstance(m, p.StateChanged) and m.state == p.State.LOST for m in msgs):
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, msgs
        msgs += d.receive_data(chunk)
    assert proc.wait(30) == 0  # it leaves on its own after saying so
    proc.stdin.close()
    proc.stdout.close()
    states = [m.state for m in msgs if isinstance(m, p.StateChanged)]
    assert states == [p.State.CONNECTING, p.State.LOST], msgs


def _fd3(fd: int) -> dict:
    """Popen kwargs that make `fd` the child's fd 3 (as the source's spawnProcess does)."""

    def dup() -> None:
        import os

        os.dup2(fd, 3)

    return {"preexec_fn": dup}


@pytest.mark.parametrize(
    "uri, expect",
    [
        ("spice://127.0.0.1:5900", ("127.0.0.1", 5900, 0)),
        ("spice://vmhost?port=5900&tls-port=5901", ("vmhost", 5900, 5901)),
        ("spice://vmhost?tls-port=5901", ("vmhost", 0, 5901)),
        ("spice://[::1]:5930", ("::1", 5930, 0)),
    ],
)
def test_uris_as_remote_viewer_writes_them(uri, expect):
    assert parse_uri(uri) == expect


@pytest.mark.parametrize(
    "uri, error",
    [
        ("spice://vmhost", "no port"),
        ("spice://vmhost:5900?password=x", "can be read by anyone"),
        ("spice://user:pw@vmhost:5900", "no user or password"),
        ("spice://vmhost:5900?port=5901", "given twice"),
        ("spice://vmhost?tls-port=abc", "is not a port"),
        ("spice://vmhost:5900?foo=1", "unknown URI parameter 'foo'"),
        ("spice://vmhost:99999", "--source"),
    ],
)
def test_bad_uris_are_usage_errors(uri, error):
    with pytest.raises(ValueError, match=error):
        parse_uri(uri)


def test_options_need_a_spice_source_for_its_password_and_ca(tmp_path: Path):
    from twisted.python import usage

    from spice_twisted.options import Options

    pw = tmp_path / "pw"
    pw.write_text("x\n")
    with pytest.raises(usage.UsageError, match="--source-password-file needs --source spice://HOST:PORT"):
        Options().parseOptions(["--port", str(free_port()), "--admin-port", "0", "--source-password-file", str(pw)])
