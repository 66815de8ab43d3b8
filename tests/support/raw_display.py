"""An in-process display channel under test, seen from outside: a raw client on a real
socket (plain or TLS) that reads only when told, decodes and ACKs; a 640x480 canvas painted
with noise; and the bytes Twisted's real TCP transport holds between reactor iterations.
Used by the tests of the direct socket writes (tests/test_vector_write.py, plain TCP;
tests/test_tls_direct_write.py, TLS)."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from spice_twisted.render.rect import Rect
from spice_twisted.wire.client_link import ticket_message
from spice_twisted.wire.enums import ChannelType, LinkError, MsgcCommon, MsgcDisplay, MsgCommon, MsgMain
from spice_twisted.wire.framer import Framer
from spice_twisted.wire.messages import CLIENT, encode_body
from support.display_decode import Screen
from support.inprocess import Canvas
from support.rawclient import link_bytes, read_reply, recv_exact


class Big(Canvas):
    width, height = 640, 480


def raw_link(port: int, channel: int, session: int = 0, rcvbuf: int = 0, tls: ssl.SSLContext | None = None) -> socket.socket:
    """A linked channel socket (no ticket), over TLS when `tls` is given."""
    s: socket.socket = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # a small window: the server's socket fills soon
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname="127.0.0.1")
    s.sendall(link_bytes(channel, session))
    reply = read_reply(s)
    s.sendall(ticket_message(reply["pub_key"], b""))
    assert struct.unpack("<I", recv_exact(s, 4))[0] == LinkError.OK
    return s


class RawDisplay:
    """A display channel's client on a real socket: reads when told, decodes, ACKs."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.main = raw_link(port, ChannelType.MAIN, tls=tls)
        msg_type, size = struct.unpack("<HI", recv_exact(self.main, 6))
        body = recv_exact(self.main, size)
        assert msg_type == MsgMain.INIT
        session = struct.unpack_from("<I", body)[0]
        s = raw_link(port, ChannelType.DISPLAY, session, rcvbuf=4096, tls=tls)
        init = encode_body(
            CLIENT[(ChannelType.DISPLAY, MsgcDisplay.INIT)],
            {"pixmap_cache_id": 1, "pixmap_cache_size": 0, "glz_dictionary_id": 0, "glz_dictionary_window_size": 0},
        )
        s.sendall(struct.pack("<HI", MsgcDisplay.INIT, len(init)) + init)
        s.setblocking(False)
        self.sock = s
        self.framer = Framer(mini=True, max_body=1 << 26)
        self.screen = Screen()
        self.bytes = 0  # what the server's channel wrote (over TLS: decrypted)
        self.window = 0
        self.since_ack = 0

    def read(self) -> int:
        got = 0
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            if not data:
                break
            got += len(data)
            msgs = self.framer.feed(data)
            self.screen.feed(msgs)
            for t, body in msgs:
                if t == MsgCommon.SET_ACK:
                    generation, self.window = struct.unpack_from("<II", body)
                    self._send(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, generation))
                    continue
                self.since_ack += 1
                if self.window and self.since_ack >= self.window:
                    self.since_ack = 0
                    self._send(struct.pack("<HI", MsgcCommon.ACK, 0))
        self.bytes += got
        return got

    def _send(self, data: bytes) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()
        self.main.close()


def connect_while_iterating(reactor: Any, make: Callable[[], RawDisplay]) -> RawDisplay:
    """Link a raw client from a thread while the test's reactor turns (it serves the link)."""
    made: list[RawDisplay] = []
    t = threading.Thread(target=lambda: made.append(make()), daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    assert made, "the raw client never linked"
    return made[0]


def paint(srv: Any, seed: int) -> None:
    """Eight 160x120 blocks of noise: raw payloads of 75 KiB (several TLS records each)."""
    rng = np.random.default_rng(seed)
    px = srv.render.primary.pixels
    for k in range(8):
        r = Rect(160 * (k % 4), 120 * (k // 4), 160 * (k % 4) + 160, 120 * (k // 4) + 120)
        px[r.top : r.bottom, r.left : r.right] = rng.integers(0, 256, (120, 160, 4), dtype=np.uint8)
        px[r.top : r.bottom, r.left : r.right, 3] = 0
        srv.render.damage(r)
    srv.render.flush()


def held_by(tcp: Any) -> int:
    """Bytes Twisted's TCP transport holds (its send buffer and its pending list)."""
    return tcp._tempDataLen + len(tcp.dataBuffer) - tcp.offset


def run(reactor: Any, tcp: Any, client: RawDisplay | None, until: Callable[[], bool], what: str, timeout: float = 30.0) -> list[int]:
    """Iterate the reactor (the client reads between iterations, if given) until `until()`;
    the bytes the real TCP transport `tcp` held after each iteration."""
    held = [held_by(tcp)]
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out: {what}"
        reactor.iterate(0.005)
        held.append(held_by(tcp))
        if client is not None:
            client.read()
    return held


def exact(srv: Any, client: RawDisplay) -> bool:
    fb = client.screen.fb
    return fb is not None and np.array_equal(fb[..., :3], srv.render.primary.pixels[..., :3])
