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

import numpy as np
import pytest
from support.inprocess import make_server
from support.processes import assert_clients_match, wait_until
from support.raw_display import Big, RawDisplay, connect_while_iterating, exact, paint, run
from support.tapped import connect
from twisted.internet.epollreactor import EPollReactor

from spice_twisted.channels.link import SpiceFactory
from spice_twisted.wire.enums import ChannelType


@pytest.fixture
def served():
    reactor = EPollReactor()
    srv = make_server(Big(), clock=reactor, image_compression="off")
    port = reactor.listenTCP(0, SpiceFactory(srv, secure=False), interface="127.0.0.1")
    client = connect_while_iterating(reactor, lambda: RawDisplay(port.getHost().port))
    (session,) = srv.clients.values()
    (cc,) = [ch for ch in session.channels if ch.channel_type == ChannelType.DISPLAY]
    yield reactor, srv, cc, client
    client.close()
    port.stopListening()
    for _ in range(20):
        reactor.iterate(0)


def test_the_transport_never_holds_what_the_socket_takes_and_holds_only_the_rest(served):
    reactor, srv, cc, client = served
    tcp = cc.transport.transport  # Twisted's real TCP connection under the port router
    run(reactor, tcp, client, lambda: exact(srv, client), "the first screen")
    assert cc._vector_writer() is not None  # plain TCP display channel: the vectored path
    # A client that reads: every frame's batches go straight from the shared pieces to
    # the socket, so Twisted's buffer (which would join them: a copy per client) stays empty.
    sent0 = cc.bytes_sent
    for seed in range(6):
        paint(srv, seed)
        held = run(reactor, tcp, client, lambda: exact(srv, client) and cc.pipe_bytes == 0, f"frame {seed}")
        assert max(held) == 0, f"the transport buffered {max(held)} bytes the socket would have taken"
    assert cc.bytes_sent - sent0 > 6 * 8 * 160 * 120 * 4
    # A client that stops reading: the kernel's buffers fill, the socket takes part of a
    # write and the rest waits in the transport, which pauses the channel (backpressure).
    for seed in range(10, 16):
        paint(srv, seed)
    held = run(reactor, tcp, None, lambda: cc.paused, "the channel paused by its full transport")
    assert held[-1] > 0
    # Reading again, it gets every byte in order: the decode equals the framebuffer, and
    # the bytes on its socket are exactly those the channel wrote (none lost or repeated).
    run(reactor, tcp, client, lambda: client.bytes == cc.bytes_sent and not cc.paused and cc.pipe_bytes == 0, "the backlog")
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
