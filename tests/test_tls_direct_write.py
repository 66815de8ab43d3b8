"""Over TLS the ciphertext goes to the socket itself (spice_twisted/tls_write.py): Twisted's
TCP transport buffer, which held every record until the next reactor iteration, gets only
what the socket does not take.

In process: the real server and the real TLS listener on a private epoll reactor that the
test iterates, a raw TLS client (Python's ssl) on a real socket. Looked at from outside:
the real TCP transport's buffer between reactor iterations (empty while the client reads,
holding the remainder while it does not), the plaintext the client decrypts, and its
decode against the server's framebuffer. With real spice-gtk clients over TLS (one behind
a slow link, so the server's socket fills and the remainder path runs): exact pixels.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

import numpy as np
import pytest
from support.certs import make_ca_and_server
from support.display_decode import Screen
from support.inprocess import Canvas, make_server
from support.processes import assert_clients_match, free_port, wait_until
from support.rawclient import link_bytes, read_reply, recv_exact
from support.tap import WireTap
from twisted.internet.epollreactor import EPollReactor

from spice_twisted.channels.link import SpiceFactory
from spice_twisted.render.rect import Rect
from spice_twisted.tls import server_context, tls_listener_factory
from spice_twisted.tls_write import DirectTLSProtocol
from spice_twisted.wire.client_link import ticket_message
from spice_twisted.wire.enums import ChannelType, LinkError, MsgcCommon, MsgcDisplay, MsgCommon, MsgMain
from spice_twisted.wire.framer import Framer
from spice_twisted.wire.messages import CLIENT, encode_body


class Big(Canvas):
    width, height = 640, 480


def tls_link(port: int, ctx: ssl.SSLContext, channel: int, session: int = 0, rcvbuf: int = 0) -> ssl.SSLSocket:
    raw = socket.socket()
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # a small window: the server's socket fills soon
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(link_bytes(channel, session))
    reply = read_reply(s)
    s.sendall(ticket_message(reply["pub_key"], b""))
    assert struct.unpack("<I", recv_exact(s, 4))[0] == LinkError.OK
    return s


class RawTLSDisplay:
    """A display channel's client over TLS on a real socket: reads when told, decodes, ACKs."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.main = tls_link(port, ctx, ChannelType.MAIN)
        msg_type, size = struct.unpack("<HI", recv_exact(self.main, 6))
        body = recv_exact(self.main, size)
        assert msg_type == MsgMain.INIT
        session = struct.unpack_from("<I", body)[0]
        s = tls_link(port, ctx, ChannelType.DISPLAY, session, rcvbuf=4096)
        init = encode_body(
            CLIENT[(ChannelType.DISPLAY, MsgcDisplay.INIT)],
            {"pixmap_cache_id": 1, "pixmap_cache_size": 0, "glz_dictionary_id": 0, "glz_dictionary_window_size": 0},
        )
        s.sendall(struct.pack("<HI", MsgcDisplay.INIT, len(init)) + init)
        s.setblocking(False)
        self.sock = s
        self.framer = Framer(mini=True, max_body=1 << 26)
        self.screen = Screen()
        self.bytes = 0  # plaintext: what the server's channel wrote, decrypted
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


@pytest.fixture
def served_tls(tmp_path):
    certs = make_ca_and_server(tmp_path)
    reactor = EPollReactor()
    srv = make_server(Big(), clock=reactor, image_compression="off")
    tls = tls_listener_factory(server_context(str(certs["cert"]), str(certs["key"])), SpiceFactory(srv, secure=True))
    port = reactor.listenTCP(0, tls, interface="127.0.0.1")
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    made: list[RawTLSDisplay] = []
    t = threading.Thread(target=lambda: made.append(RawTLSDisplay(port.getHost().port, ctx)), daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while t.is_alive() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    assert made, "the raw TLS client never linked"
    (session,) = srv.clients.values()
    displays = lambda: [ch for ch in session.channels if ch.channel_type == ChannelType.DISPLAY]  # noqa: E731
    while not displays() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    (cc,) = displays()
    yield reactor, srv, cc, made[0]
    made[0].close()
    port.stopListening()
    for _ in range(20):
        reactor.iterate(0)


def paint(srv, seed: int) -> None:
    """Eight 160x120 blocks of noise: raw payloads of 75 KiB, several TLS records each."""
    rng = np.random.default_rng(seed)
    px = srv.render.primary.pixels
    for k in range(8):
        r = Rect(160 * (k % 4), 120 * (k // 4), 160 * (k % 4) + 160, 120 * (k // 4) + 120)
        px[r.top : r.bottom, r.left : r.right] = rng.integers(0, 256, (120, 160, 4), dtype=np.uint8)
        px[r.top : r.bottom, r.left : r.right, 3] = 0
        srv.render.damage(r)
    srv.render.flush()


def held_by(tcp) -> int:
    """Bytes Twisted's TCP transport holds (its send buffer and its pending list)."""
    return tcp._tempDataLen + len(tcp.dataBuffer) - tcp.offset


def run(reactor, tcp, client: RawTLSDisplay | None, until, what: str, timeout: float = 30.0) -> list[int]:
    """Iterate the reactor (the client reads between iterations, if given) until `until()`;
    the bytes the real TCP transport held after each iteration."""
    held = [held_by(tcp)]
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out: {what}"
        reactor.iterate(0.005)
        held.append(held_by(tcp))
        if client is not None:
            client.read()
    return held


def exact(srv, client: RawTLSDisplay) -> bool:
    fb = client.screen.fb
    return fb is not None and np.array_equal(fb[..., :3], srv.render.primary.pixels[..., :3])


def test_tls_ciphertext_not_held_when_the_socket_takes_it(served_tls):
    reactor, srv, cc, client = served_tls
    tls = cc.transport.transport  # the port router's transport: the TLS protocol
    assert isinstance(tls, DirectTLSProtocol)
    tcp = tls.transport  # Twisted's real TCP connection under it
    run(reactor, tcp, client, lambda: exact(srv, client), "the first screen")
    # A client that reads: every message's records go from the memory BIO to the socket in
    # the same reactor iteration, so Twisted's buffer (which held them until the next
    # iteration, registering the socket with epoll and joining them) stays empty.
    sent0 = cc.bytes_sent
    for seed in range(6):
        paint(srv, seed)
        held = run(reactor, tcp, client, lambda: exact(srv, client) and cc.pipe_bytes == 0, f"frame {seed}")
        assert max(held) == 0, f"the TCP transport buffered {max(held)} bytes of ciphertext the socket would have taken"
    assert cc.bytes_sent - sent0 > 6 * 8 * 160 * 120 * 4
    # A client that stops reading: the kernel's buffers fill, the socket takes part of the
    # ciphertext and the rest waits in the transport, which pauses the channel (backpressure).
    for seed in range(10, 16):
        paint(srv, seed)
    held = run(reactor, tcp, None, lambda: cc.paused, "the channel paused by its full transport")
    assert held[-1] > 0
    # Reading again, it decrypts every byte in order: the decode equals the framebuffer, and
    # the plaintext is exactly what the channel wrote (nothing lost, repeated or reordered:
    # a reordered record would fail TLS's own sequence check and close the connection).
    run(reactor, tcp, client, lambda: client.bytes == cc.bytes_sent and not cc.paused and cc.pipe_bytes == 0, "the backlog")
    for _ in range(20):
        reactor.iterate(0.005)
        client.read()
    assert client.bytes == cc.bytes_sent
    assert exact(srv, client)
    assert held_by(tcp) == 0


def a_large_changing_picture(server, rounds: int) -> None:
    rng = np.random.default_rng(7)
    for k in range(rounds):
        px = rng.integers(0, 256, (600, 800, 4), dtype=np.uint8)  # 1.9 MB raw, incompressible
        px[..., 3] = 0
        server.paste(px, 40 * k, 20 * k)


def test_gtk_tls_clients_exact_with_a_full_socket(spawn, tmp_path):
    """Raw bitmaps of a changing 800x600 noise picture to two spice-gtk clients over TLS:
    one reads at once (the socket takes every write), one behind a 4 MB/s link (the
    server's socket fills: what it leaves goes through the transport). Both end equal to
    the server's framebuffer."""
    certs = make_ca_and_server(tmp_path)
    tls_port = free_port()
    server = spawn.harness(
        "--image-compression", "off", "--tls-port", str(tls_port), "--cert", str(certs["cert"]), "--key", str(certs["key"]), paused=True
    )
    tls_args = ("--ca-file", str(certs["ca"]), "--tls-only")
    with WireTap(tls_port) as slow:
        fast_client = spawn.client("--tls-port", str(tls_port), *tls_args)
        slow_client = spawn.client("--tls-port", str(slow.port), *tls_args)
        clients = [fast_client, slow_client]
        for c in clients:
            c.wait_event("mark", timeout=60)
        slow.shape(rate=4e6)

        def slow_bytes() -> int:
            return max(c.bytes_from_server for c in slow.connections)

        start = slow_bytes()
        a_large_changing_picture(server, 4)
        wait_until(lambda: slow_bytes() - start > 4 * 600 * 800 * 4, timeout=60, what="the pictures on the slow link")
        for c in clients:
            c.wait_quiet(1.0, timeout=60)
        assert_clients_match(server, clients)


def test_gtk_tls_small_messages_of_one_turn_all_arrive(spawn, tmp_path):
    """Fifty 4x4 updates in one reactor turn: fifty small draw messages that one send turn
    writes to a spice-gtk client over TLS, and then nothing more (no pings, the source
    paused). Each message ends its own TLS record, so the client, which waits on the socket
    after each message, shows every one of them without further traffic."""
    certs = make_ca_and_server(tmp_path)
    tls_port = free_port()
    server = spawn.harness(
        "--image-compression", "off", "--tls-port", str(tls_port), "--cert", str(certs["cert"]), "--key", str(certs["key"]), paused=True
    )
    client = spawn.client("--tls-port", str(tls_port), "--ca-file", str(certs["ca"]), "--tls-only")
    client.wait_event("mark", timeout=60)
    assert_clients_match(server, [client])
    for _ in range(3):
        server.command("updates 50", "updates")
        assert_clients_match(server, [client])
