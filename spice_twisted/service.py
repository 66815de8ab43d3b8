"""Builds the twistd service tree: the SPICE server and its plain and TLS listeners."""

from __future__ import annotations

from typing import Any

from twisted.application import internet, service
from twisted.logger import Logger

from .channels.link import SpiceFactory
from .server import SpiceServer
from .tls import server_context


class SpiceService(service.Service):
    """Starts the source (and so the render service) with the reactor, stops it after."""

    log = Logger()

    def __init__(self, server: SpiceServer) -> None:
        self.server = server

    def startService(self) -> None:
        super().startService()
        self.server.start()
        self.log.info("serving {source} ({w}x{h})", source=self.server.source.name, w=self.server.render.width, h=self.server.render.height)

    def stopService(self) -> Any:
        self.server.stop()
        return super().stopService()


def make_service(options: Any, reactor: Any = None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    server = SpiceServer(
        options["source-object"],
        options["ticket"],
        reactor,
        mini_header=not options["no-mini-header"],
        allow_multiple_clients=not options["no-multiple-clients"],
        stall_timeout=options["stall-timeout"],
        stats_interval=options["stats-interval"],
    )
    top = service.MultiService()
    top.spice_server = server  # type: ignore[attr-defined]
    SpiceService(server).setServiceParent(top)
    listen = options["listen"]
    if options["port"]:
        internet.TCPServer(options["port"], SpiceFactory(server, secure=False), interface=listen).setServiceParent(top)
    if options["tls-port"]:
        ctx = server_context(options["cert"], options["key"])
        internet.SSLServer(options["tls-port"], SpiceFactory(server, secure=True), ctx, interface=listen).setServiceParent(top)
    return top
