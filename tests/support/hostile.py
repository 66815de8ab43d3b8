"""A hostile client's tools: raw links from chosen source addresses (127.0.0.0/8 is all
ours, so each test can be "another address"), and the server process's fds and RSS."""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from spice_twisted.wire.enums import ChannelType, LinkError
from support import rawclient
from support.rawclient import recv_exact


def connect(port: int, source: str = "127.0.0.1", timeout: float = 20.0) -> socket.socket:
    """A TCP connection to the server from `source`.

    A server that refuses a connection (a limit) accepts and resets it at once. On a loaded
    machine that reset can come before connect() returns: with a timeout Python connects
    without blocking, polls, then reads SO_ERROR, which by then says ECONNRESET. That is the
    server closing the connection, the very thing the tests look for, so it is returned as
    a socket whose peer is already gone: it reads as EOF, as a refused connection does."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    except ConnectionResetError:
        mine, theirs = socket.socketpair()
        theirs.close()
        mine.settimeout(timeout)
        return mine


def rst(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def link(port: int, password: bytes = b"", channel: int = ChannelType.MAIN, connection_id: int = 0, source: str = "127.0.0.1"):
    """A whole link from `source`, with this module's longer timeout."""
    return rawclient.link(port, password, channel, connection_id, source=source, timeout=20.0)


def main_session(port: int, password: bytes = b"", source: str = "127.0.0.1") -> tuple[socket.socket, int]:
    """A linked main channel (mini headers) and its session id, read from INIT."""
    sock, result = link(port, password, source=source)
    assert result == LinkError.OK, LinkError(result)
    msg_type, size = struct.unpack("<HI", recv_exact(sock, 6))
    body = recv_exact(sock, size)
    assert msg_type == 103, msg_type  # MAIN INIT
    return sock, struct.unpack_from("<I", body)[0]


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """True once the server closed the connection (EOF or reset), within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fds(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def settle(read, tolerance: float, timeout: float = 20.0, target: float | None = None) -> float:
    """Poll `read()` until it is within `tolerance` of `target` (or stops changing); returns it."""
    deadline = time.monotonic() + timeout
    value = read()
    while time.monotonic() < deadline:
        value = read()
        if target is not None and value <= target + tolerance:
            return value
        time.sleep(0.2)
    return value
