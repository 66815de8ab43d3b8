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

import ssl
import time

import numpy as np
import pytest
from support.certs import make_ca_and_server
from support.inprocess import make_server
from support.processes import assert_clients_match, free_port, wait_until
from support.raw_display import Big, RawDisplay, connect_while_iterating, exact, held_by, paint, run
from support.tap import WireTap
from twisted.internet.epollreactor import EPollReactor

from spice_twisted.channels.link import SpiceFactory
from spice_twisted.tls import server_context, tls_listener_factory
from spice_twisted.tls_write import DirectTLSProtocol
from spice_twisted.wire.enums import ChannelType


@pytest.fixture
def served_tls(tmp_path):
    certs = make_ca_and_server(tmp_path)
    reactor = EPollReactor()
    srv = make_server(Big(), clock=reactor, image_compression="off")
    tls = tls_listener_factory(server_context(str(certs["cert"]), str(certs["key"])), SpiceFactory(srv, secure=True))
    port = reactor.listenTCP(0, tls, interface="127.0.0.1")
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    client = connect_while_iterating(reactor, lambda: RawDisplay(port.getHost().port, tls=ctx))
    deadline = time.monotonic() + 30
    (session,) = srv.clients.values()
    displays = lambda: [ch for ch in session.channels if ch.channel_type == ChannelType.DISPLAY]  # noqa: E731
    while not displays() and time.monotonic() < deadline:
        reactor.iterate(0.01)
    (cc,) = displays()
    yield reactor, srv, cc, client
    client.close()
    port.stopListening()
    for _ in range(20):
        reactor.iterate(0)


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
        # (Polled: looking at the framebuffers sends the client nothing, so a stuck record would stay stuck.)
        assert_clients_match(server, [client], timeout=20)
