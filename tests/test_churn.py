"""Churn: 600 mixed valid and invalid connections from many addresses, then a real spice-gtk
client gets the exact picture, and the server's fds and RSS come back near where they were."""

from __future__ import annotations

import concurrent.futures
import socket
import struct

import numpy as np
from support.hostile import closed_within, connect, fds, link, main_session, rss_kb, rst
from support.processes import as_rgb, wait_until
from support.rawclient import link_bytes, read_reply

from spice_twisted.wire.client_link import link_message, ticket_message
from spice_twisted.wire.enums import ChannelType, LinkError, MsgcCommon, MsgcDisplay, MsgcMain

PASSWORD = b"churn-password"


def _src(i: int) -> str:
    return f"127.0.7.{i % 60 + 1}"


def _valid_session(port: int, i: int) -> None:
    s, _ = main_session(port, PASSWORD, _src(i))
    s.sendall(struct.pack("<HI", MsgcMain.ATTACH_CHANNELS, 0))
    s.recv(4096)
    s.close()


def _session_with_display_then_reset(port: int, i: int) -> None:
    main, sid = main_session(port, PASSWORD, _src(i))
    d, result = link(port, PASSWORD, ChannelType.DISPLAY, sid, _src(i))
    assert result == LinkError.OK
    init = struct.pack("<BqBi", 1, 1 << 20, 1, 1 << 20)
    d.sendall(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, 1) + struct.pack("<HI", MsgcDisplay.INIT, len(init)) + init)
    d.recv(65536)
    rst(d)
    rst(main)


def _raw(data: bytes, expect: int | None = None):
    def run(port: int, i: int) -> None:
        with connect(port, _src(i)) as s:
            s.sendall(data)
            if expect is not None:
                assert read_reply(s)["error"] == expect
                assert closed_within(s, 10)

    return run


def _wrong_ticket(port: int, i: int) -> None:
    s, result = link(port, b"not the password", source=f"127.0.9.{i % 250 + 1}")
    assert result == LinkError.PERMISSION_DENIED
    s.close()


def _then(payload: bytes):
    def run(port: int, i: int) -> None:
        s, _ = main_session(port, PASSWORD, _src(i))
        s.sendall(payload)
        assert closed_within(s, 10)
        s.close()

    return run


def _link_then_reset(port: int, i: int) -> None:
    s = connect(port, _src(i))
    s.sendall(link_bytes()[:20])
    rst(s)


def _half_ticket(port: int, i: int) -> None:
    s = connect(port, _src(i))
    s.sendall(link_message(ChannelType.MAIN, 0))
    reply = read_reply(s)
    s.sendall(ticket_message(reply["pub_key"], PASSWORD)[:60])
    s.close()


def _nothing(port: int, i: int) -> None:
    socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(_src(i), 0)).close()


KINDS = [
    _valid_session,
    _session_with_display_then_reset,
    _raw(b"XXXX" + struct.pack("<III", 2, 2, 18) + bytes(18), LinkError.INVALID_MAGIC),
    _raw(link_bytes(major=1), LinkError.VERSION_MISMATCH),
    _raw(link_bytes()[:10]),
    _link_then_reset,
    _wrong_ticket,
    _then(struct.pack("<HI", 9999, 3) + b"abc"),
    _then(struct.pack("<HI", MsgcMain.AGENT_DATA, 1 << 30)),
    _raw(link_bytes(channel=77), LinkError.CHANNEL_NOT_AVAILABLE),
    _raw(link_bytes(channel=ChannelType.DISPLAY, connection_id=4242), LinkError.BAD_CONNECTION_ID),
    _nothing,
    _half_ticket,
]


def _churn(port: int, n: int, start: int = 0) -> None:
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda i: KINDS[i % len(KINDS)](port, i), range(start, start + n)))


def test_600_mixed_connections_then_an_exact_client_and_resources_back(spawn, random_image, tmp_path):
    path, rgb = random_image
    (tmp_path / "pw").write_text(PASSWORD.decode() + "\n")
    (tmp_path / "pw").chmod(0o600)
    srv = spawn.server("--source", f"image:{path}", "--password-file", str(tmp_path / "pw"))
    pid = srv.proc.pid
    # Warm up (imports, allocator arenas, the first client), then the baseline.
    warm = spawn.client("--port", str(srv.port), "--password", PASSWORD.decode())
    warm.wait_event("mark")
    warm.close()
    _churn(srv.port, 26, start=100_000)
    wait_until(lambda: len(fds(pid)) <= 16, timeout=20, what="the warm-up connections closed")
    base_fds, base_rss = len(fds(pid)), rss_kb(pid)

    _churn(srv.port, 600)

    wait_until(lambda: len(fds(pid)) <= base_fds + 2, timeout=40, what=f"fds back near {base_fds}")
    rss = rss_kb(pid)
    print(f"churn: fds {base_fds} -> {len(fds(pid))}, RSS {base_rss} kB -> {rss} kB")
    assert rss - base_rss < 25_000, f"RSS grew by {rss - base_rss} kB"
    client = spawn.client("--port", str(srv.port), "--password", PASSWORD.decode())
    client.wait_event("mark")
    client.wait_quiet(0.3)
    assert np.array_equal(as_rgb(client.framebuffer()), rgb)
    client.close()
    wait_until(lambda: len(fds(pid)) <= base_fds + 2, timeout=20, what="fds back after the client")
    log = srv.log()
    assert "Traceback" not in log and "Unhandled" not in log
