"""The admin site's connection bounds (issue 16, item 3), against a real server process:
a whole request must arrive within --admin-request-timeout, one address holds at most
--admin-max-connections-per-address connections and all together --admin-max-connections,
and a flood of the admin port never keeps a SPICE client out."""

from __future__ import annotations

import resource
import select
import socket
import threading
import time

import numpy as np
import requests
from support.admin import TOKEN, write_token
from support.hostile import closed_within, connect, fds
from support.processes import as_rgb, free_port, wait_until


def _admin_server(spawn, tmp_path, *args: str, source: str | None = None):
    write_token(tmp_path / "admin-token")
    port = free_port()
    extra = ["--source", source] if source else []
    srv = spawn.server("--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"), *extra, *args)
    return srv, port


def _is_open(sock: socket.socket) -> bool:
    """Not ended by the server: nothing to read. These connections ask nothing, so anything
    readable is the end: EOF, a reset, or a 408 before the close."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def test_a_request_head_dribbled_line_by_line_is_closed_at_the_deadline(spawn, tmp_path):
    """A header line every half second kept a connection open for ever (each line restarted
    the 60 s idle timeout). Now the whole request must arrive within the deadline."""
    srv, port = _admin_server(spawn, tmp_path, "--admin-request-timeout", "2")
    socks = [connect(port) for _ in range(5)]
    for s in socks:
        s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
    idle = connect(port)  # sends nothing at all
    start = time.monotonic()
    closed_at: dict[int, float] = {}
    while len(closed_at) < len(socks) and time.monotonic() - start < 30:
        for i, s in enumerate(socks):
            if i in closed_at:
                continue
            try:
                s.sendall(b"X-Dribble: %d\r\n" % i)
            except OSError:
                closed_at[i] = time.monotonic() - start
                continue
            if not _is_open(s):
                closed_at[i] = time.monotonic() - start
        time.sleep(0.5)
    assert len(closed_at) == len(socks), f"dribbling connections still open after 30 s: {sorted(set(range(5)) - set(closed_at))}"
    assert max(closed_at.values()) < 20  # the deadline (2 s), not the 60 s idle timeout
    assert closed_within(idle, 10)
    # An ordinary client is not hurt: requests on one kept-alive connection, each in time,
    # together longer than the deadline.
    with requests.Session() as session:
        for _ in range(3):
            r = session.get(f"http://127.0.0.1:{port}/api/server", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            assert r.status_code == 200
            time.sleep(1.0)
    for s in socks:
        s.close()
    idle.close()


def test_a_late_request_gets_408(spawn, tmp_path):
    srv, port = _admin_server(spawn, tmp_path, "--admin-request-timeout", "1")
    with connect(port) as s:
        s.sendall(b"GET /login HTTP/1.1\r\n")
        s.settimeout(15)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 408 ")


def test_connections_past_the_per_address_limit_are_closed(spawn, tmp_path):
    srv, port = _admin_server(spawn, tmp_path, "--admin-max-connections-per-address", "4")
    socks = [connect(port) for _ in range(10)]
    wait_until(lambda: sum(not _is_open(s) for s in socks) >= 6, timeout=15, what="6 connections closed")
    time.sleep(0.5)  # nothing more is closed: exactly the limit stays
    open_ones = [s for s in socks if _is_open(s)]
    assert len(open_ones) == 4
    for s in open_ones:  # those work
        s.sendall(f"GET /api/server HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    with connect(port) as s:  # one more from 127.0.0.1: closed at once, nothing read
        assert closed_within(s, 10)
    # Another address is not held back by this one's connections.
    with connect(port, source="127.0.0.2") as s:
        s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    for s in socks:
        s.close()
    # Once they are gone, 127.0.0.1 is served again.
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/login", timeout=10).status_code == 200, timeout=15, what="served again")
    assert "4 admin connections from that address already" in srv.log()


def test_all_addresses_together_hold_at_most_the_total(spawn, tmp_path):
    srv, port = _admin_server(spawn, tmp_path, "--admin-max-connections", "6", "--admin-max-connections-per-address", "4")
    socks = [connect(port, source=f"127.0.0.{10 + i}") for i in range(10)]  # one each from 10 addresses
    wait_until(lambda: sum(not _is_open(s) for s in socks) >= 4, timeout=15, what="4 connections closed")
    time.sleep(0.5)
    assert sum(_is_open(s) for s in socks) == 6
    for s in socks:
        s.close()


class _Flood:
    """Keeps up to `n` admin connections from 127.0.0.1 open, each dribbling header lines,
    reconnecting any the server closes: what the reporter's attacker did."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.n = port, n
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.peak = 0
        self.attempts = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self) -> None:
        for _ in range(min(64, self.n - len(self.socks))):
            self.attempts += 1
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                continue
            self.socks.append(s)

    def _run(self) -> None:
        while not self.stop.is_set():
            self._open()
            alive = []
            for s in self.socks:
                try:
                    s.sendall(b"X-Dribble: 1\r\n")
                    if _is_open(s):
                        alive.append(s)
                        continue
                except OSError:
                    pass
                s.close()
            self.socks = alive
            self.peak = max(self.peak, len(alive))
            self.stop.wait(0.3)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(10)
        for s in self.socks:
            s.close()


def test_a_flooded_admin_port_never_keeps_spice_clients_out(spawn, tmp_path, random_image):
    """With 400 slow admin connections from one address the process reached its fd limit
    and SPICE clients were refused. The admin site now holds at most its limits; a real
    spice-gtk client connects during the flood and gets the picture."""
    path, rgb = random_image
    srv, port = _admin_server(spawn, tmp_path, source=f"image:{path}")
    in_use = len(fds(srv.proc.pid))
    limit = in_use + 150  # room for SPICE clients, not for 400 admin connections
    resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))
    flood = _Flood(port, 400)
    try:
        wait_until(lambda: flood.attempts >= 400 and flood.peak >= 16, timeout=60, what="the flood at the admin site's limit")
        client = spawn.client("--port", str(srv.port))
        client.wait_event("mark", timeout=30)
        client.wait_quiet(0.3)
        fb = client.framebuffer()
        assert np.array_equal(as_rgb(fb), rgb)
        assert len(fds(srv.proc.pid)) < limit
    finally:
        flood.close()


def test_over_https_the_limits_hold_before_the_handshake(spawn, tmp_path, certs):
    """On the HTTPS admin site a connection past the limit is closed before any TLS work,
    and one that never completes its handshake is closed at the request deadline."""
    srv, port = _admin_server(
        spawn,
        tmp_path,
        "--admin-tls",
        "--cert",
        str(certs["cert"]),
        "--key",
        str(certs["key"]),
        "--admin-request-timeout",
        "2",
        "--admin-max-connections-per-address",
        "2",
    )
    silent = [connect(port) for _ in range(3)]  # TCP only: no ClientHello
    wait_until(lambda: sum(not _is_open(s) for s in silent) >= 1, timeout=15, what="the third closed")
    start = time.monotonic()
    for s in silent:
        assert closed_within(s, 20)
    assert time.monotonic() - start < 20
    r = requests.get(f"https://localhost:{port}/login", verify=str(certs["ca"]), timeout=10)
    assert r.status_code == 200
