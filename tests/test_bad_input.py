"""Bad link data gets the right link error and a closed connection; the server serves others on."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest
from support.processes import as_rgb
from support.rawclient import closed_by_peer, link, link_bytes, read_reply, recv_exact

from spice_twisted.wire.enums import ChannelType, LinkError
from spice_twisted.wire.messages import LINK_HEADER


@pytest.fixture
def served(spawn, random_image):
    path, rgb = random_image
    srv = spawn.server("--source", f"image:{path}")
    client = spawn.client("--port", str(srv.port))
    client.wait_event("mark")
    return srv, client, rgb


def _header(size: int, magic: bytes = b"REDQ", major: int = 2) -> bytes:
    return magic + struct.pack("<III", major, 2, size)


CASES = [
    ("bad magic", b"XXXX" + struct.pack("<III", 2, 2, 18) + bytes(18), LinkError.INVALID_MAGIC),
    ("version 1", link_bytes(major=1), LinkError.VERSION_MISMATCH),
    ("size too small", _header(4) + bytes(4), LinkError.INVALID_DATA),
    ("size oversized", _header(0xFFFFFFF0), LinkError.INVALID_DATA),
    ("caps count huge", _header(18) + struct.pack("<IBBIII", 0, 1, 0, 0xFFFF, 0, 18), LinkError.INVALID_DATA),
    ("caps offset outside", _header(22) + struct.pack("<IBBIII", 0, 1, 0, 1, 0, 4000) + bytes(4), LinkError.INVALID_DATA),
    ("unknown channel type", link_bytes(channel=77), LinkError.CHANNEL_NOT_AVAILABLE),
    ("display with unknown session", link_bytes(channel=ChannelType.DISPLAY, connection_id=12345), LinkError.BAD_CONNECTION_ID),
]


@pytest.mark.parametrize("name,data,error", CASES, ids=[c[0] for c in CASES])
def test_malformed_link_gets_error_and_close(served, name, data, error):
    srv, client, rgb = served
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(data)
        reply = read_reply(sock)
        assert reply["error"] == error
        assert closed_by_peer(sock)
    assert error.name in srv.log()
    # The connected client is undisturbed and a new client still links.
    assert np.array_equal(as_rgb(client.framebuffer()), rgb)
    sock2, result = link(srv.port)
    assert result == LinkError.OK
    sock2.close()


def test_truncated_link_and_vanishing_clients(served, spawn):
    """Clients that vanish mid-link, mid-ticket or mid-message leave the server serving."""
    srv, client, rgb = served
    for cut in (3, LINK_HEADER.size + 5):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(link_bytes()[:cut])
        s.close()
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(link_bytes())
    read_reply(s)
    s.sendall(struct.pack("<I", 1) + b"\x01" * 50)  # half a ticket, then gone
    s.close()
    s, result = link(srv.port)
    assert result == LinkError.OK
    s.sendall(struct.pack("<HI", 104, 1000) + b"x" * 10)  # a message cut short
    s.close()
    late = spawn.client("--port", str(srv.port))
    late.wait_event("mark")
    late.wait_quiet(0.3)
    assert np.array_equal(as_rgb(late.framebuffer()), rgb)
    assert np.array_equal(as_rgb(client.framebuffer()), rgb)


@pytest.mark.parametrize(
    "payload,reason",
    [
        (struct.pack("<HI", 9999, 0), "unknown message type"),
        (struct.pack("<HI", 104, 0x7FFFFFFF), "claims"),
        (struct.pack("<HI", 105, 1) + b"\x01", "MOUSE_MODE_REQUEST"),
    ],
    ids=["unknown-type", "oversized-size", "truncated-body"],
)
def test_bad_messages_after_link_close_that_client_only(served, payload, reason):
    srv, client, rgb = served
    sock, result = link(srv.port)
    assert result == LinkError.OK
    sock.sendall(payload)
    assert closed_by_peer(sock)
    assert "protocol error" in srv.log() and reason in srv.log()
    assert np.array_equal(as_rgb(client.framebuffer()), rgb)


def test_wrong_ticket_raw(spawn, random_image, tmp_path):
    path, _ = random_image
    (tmp_path / "pw").write_text("right")
    srv = spawn.server("--source", f"image:{path}", "--password-file", str(tmp_path / "pw"))
    s, result = link(srv.port, b"wrong")
    assert result == LinkError.PERMISSION_DENIED
    assert closed_by_peer(s)
    s, result = link(srv.port, b"right")
    assert result == LinkError.OK
    assert recv_exact(s, 6)  # the main channel starts talking
