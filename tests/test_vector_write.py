"""Display channels on plain TCP write the shared payload pieces to the socket themselves
(spice_twisted/channels/vector_write.py): Twisted's transport buffer, which joins (copies)
what it holds per connection, gets only what the socket does not take.

In process: the real server on a private epoll reactor that the test iterates, a real
listening port and a raw client on a real socket. Looked at from outside: the real TCP
transport's buffer between reactor iterations (empty while the client reads, holding the
remainder while it does not), the bytes on the client's socket, and their decode against
the server's framebuffer. With real spice-gtk clients (one behind a slow link, so the
server's socket fills and the remainder path runs): exact pixels.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
import pytest
from support.display_decode import Screen
from support.inprocess import Canvas, make_server
from support.processes import assert_clients_match, wait_until
from support.rawclient import link, link_bytes, read_reply, recv_exact
from support.tapped import connect
from twisted.internet.epollreactor import EPollReactor

from spice_twisted.channels.link import SpiceFactory
from spice_twisted.render.rect import Rect
from spice_twisted.wire.client_link import ticket_message
from spice_twisted.wire.enums import ChannelType, LinkError, MsgcCommon, MsgcDisplay, MsgCommon, MsgMain
from spice_twisted.wire.framer import Framer
from spice_twisted.wire.messages import CLIENT, encode_body


class Big(Canvas):
    width, height = 640, 480


class RawDisplay:
    """A display channel's client on a real socket: reads when told, decodes, ACKs."""

    def __init__(self, port: int) -> None:
        self.main, result = link(port)
        assert result == LinkError.OK
        msg_type, size = struct.unpack("<HI", recv_exact(self.main, 6))
        body = recv_exact(self.main, size)
        assert msg_type == MsgMain.INIT
        session = struct.unpack_from("<I", body)[0]
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server's socket fills soon
        s.connect(("127.0.0.1", port))
        s.settimeout(10)
        s.sendall(link_bytes(ChannelType.DISPLAY, session))
        reply = read_reply(s)
        s.sendall(ticket_message(reply["pub_key"], b""))
        assert struct.unpack("<I", recv_exact(s, 4))[0] == LinkError.OK
        init = encode_body(
            CLIENT[(ChannelType.DISPLAY, MsgcDisplay.INIT)],
            {"pixmap_cache_id": 1, "pixmap_cache_size": 0, "glz_dictionary_id": 0, "glz_dictionary_window_size": 0},
        )
        s.sendall(struct.pack("<HI", MsgcDisplay.INIT, len(init)) + init)
        s.setblocking(False)
        self.sock = s
        self.framer = Framer(mini=True, max_body=1 << 26)
        self.screen = Screen()
        self.bytes = 0
        self.window = 0
        self.since_ack = 0

    def read(self) -> int:
        got = 0
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
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


@pytest.fixture
def served():
    reactor = EPollReactor()
    srv = make_server(Big(), clock=reactor, image_compression="off")
    port = reactor.listenTCP(0, SpiceFactory(srv, secure=False), interface="127.0.0.1")
    made: list[RawDisplay] = []
    t = threading.Thread(target=lambda: made.append(RawDisplay(port.getHost().port)), daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    assert made, "the raw client never linked"
    (session,) = srv.clients.values()
    (cc,) = [ch for ch in session.channels if ch.channel_type == ChannelType.DISPLAY]
    yield reactor, srv, cc, made[0]
    made[0].close()
    port.stopListening()
    for _ in range(20):
        reactor.iterate(0)


def paint(srv, seed: int) -> None:
    """Eight 160x120 blocks of noise: raw payloads of 75 KiB, batched per client."""
    rng = np.random.default_rng(seed)
    px = srv.render.primary.pixels
    for k in range(8):
        r = Rect(160 * (k % 4), 120 * (k // 4), 160 * (k % 4) + 160, 120 * (k // 4) + 120)
        px[r.top : r.bottom, r.left : r.right] = rng.integers(0, 256, (120, 160, 4), dtype=np.uint8)
        px[r.top : r.bottom, r.left : r.right, 3] = 0
        srv.render.damage(r)
    srv.render.flush()


def run(reactor, cc, client: RawDisplay | None, until, what: str, timeout: float = 30.0) -> list[int]:
    """Iterate the reactor (the client reads between iterations, if given) until `until()`;
    the bytes the real TCP transport held after each iteration."""
    tcp = cc.transport.transport
    held = [tcp._tempDataLen + len(tcp.dataBuffer) - tcp.offset]
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out: {what}"
        reactor.iterate(0.005)
        held.append(tcp._tempDataLen + len(tcp.dataBuffer) - tcp.offset)
        if client is not None:
            client.read()
    return held


def exact(srv, client: RawDisplay) -> bool:
    fb = client.screen.fb
    return fb is not None and np.array_equal(fb[..., :3], srv.render.primary.pixels[..., :3])


def test_the_transport_never_holds_what_the_socket_takes_and_holds_only_the_rest(served):
    reactor, srv, cc, client = served
    run(reactor, cc, client, lambda: exact(srv, client), "the first screen")
    assert cc._vector_writer() is not None  # plain TCP display channel: the vectored path
    # A client that reads: every frame's batches go straight from the shared pieces to
    # the socket, so Twisted's buffer (which would join them: a copy per client) stays empty.
    sent0 = cc.bytes_sent
    for seed in range(6):
        paint(srv, seed)
        held = run(reactor, cc, client, lambda: exact(srv, client) and cc.pipe_bytes == 0, f"frame {seed}")
        assert max(held) == 0, f"the transport buffered {max(held)} bytes the socket would have taken"
    assert cc.bytes_sent - sent0 > 6 * 8 * 160 * 120 * 4
    # A client that stops reading: the kernel's buffers fill, the socket takes part of a
    # write and the rest waits in the transport, which pauses the channel (backpressure).
    for seed in range(10, 16):
        paint(srv, seed)
    held = run(reactor, cc, None, lambda: cc.paused, "the channel paused by its full transport")
    assert held[-1] > 0
    # Reading again, it gets every byte in order: the decode equals the framebuffer, and
    # the bytes on its socket are exactly those the channel wrote (none lost or repeated).
    run(reactor, cc, client, lambda: client.bytes == cc.bytes_sent and not cc.paused and cc.pipe_bytes == 0, "the backlog")
    for _ in range(20):
        reactor.iterate(0.005)
        client.read()
    assert client.bytes == cc.bytes_sent
    assert exact(srv, client)


def a_large_changing_picture(server, rounds: int) -> None:
    rng = np.random.default_rng(7)
    for k in range(rounds):
        px = rng.integers(0, 256, (600, 800, 4), dtype=np.uint8)  # 1.9 MB raw, incompressible
        px[..., 3] = 0
        server.paste(px, 40 * k, 20 * k)


def test_gtk_clients_exact_with_a_full_socket(spawn, tap_for):
    """Raw bitmaps of a changing 800x600 noise picture to two spice-gtk clients: one reads
    at once (the socket takes every write), one behind a 4 MB/s link (the server's socket
    fills: what it leaves goes through the transport). Both, and the slow link's own decode
    of the wire, end equal to the server's framebuffer."""
    server = spawn.harness("--image-compression", "off", paused=True)
    taps, clients, conns = connect(server, tap_for, 2)
    taps[1].shape(rate=4e6)
    start = conns[1].bytes_from_server
    a_large_changing_picture(server, 4)
    wait_until(lambda: conns[1].bytes_from_server - start > 4 * 600 * 800 * 4, timeout=60, what="the pictures on the slow link")
    for c in clients:
        c.wait_quiet(1.0, timeout=60)
    assert_clients_match(server, clients)
    fb = server.framebuffer()
    for conn in conns:
        screen = conn.screen()
        assert screen.fb is not None and np.array_equal(screen.fb[..., :3], fb[..., :3]), conn
