"""Builds the twistd service tree: the SPICE server and its plain and TLS listeners."""

from __future__ import annotations

import os
from typing import Any

from twisted.application import internet, service
from twisted.logger import Logger
from twisted.web.server import Site

from admin_ui.app import AdminApp
from admin_ui.tokens import generate_token_file

from .channels.link import SpiceFactory
from .options import is_loopback
from .server import SpiceServer
from .tls import server_context, tls_listener_factory


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
        ping_interval=options["ping-interval"],
        max_fps=options["max-fps"],
        image_compression=options["image-compression"],
    )
    top = service.MultiService()
    top.spice_server = server  # type: ignore[attr-defined]
    SpiceService(server).setServiceParent(top)
    listen = options["listen"]
    server.endpoints.update(listen=listen, port=options["port"], tls_port=options["tls-port"], admin_port=options["admin-port"])
    server.ticket_required = options["ticket-required"]
    if options["tls-ca"]:
        with open(options["tls-ca"], encoding="ascii") as f:
            server.ca_pem = f.read()
    if options["port"]:
        internet.TCPServer(options["port"], SpiceFactory(server, secure=False), interface=listen).setServiceParent(top)
    ctx = server_context(options["cert"], options["key"]) if options["cert"] and options["key"] else None
    if options["tls-port"]:
        tls = tls_listener_factory(ctx, SpiceFactory(server, secure=True))
        internet.TCPServer(options["tls-port"], tls, interface=listen).setServiceParent(top)
    if options["admin-port"]:
        AdminService(server, options, ctx).setServiceParent(top)
    return top


class AdminService(service.MultiService):
    """The admin site in the same reactor; its token comes from a file or is generated here."""

    log = Logger()

    def __init__(self, server: SpiceServer, options: Any, ctx: Any) -> None:
        super().__init__()
        self.port, listen = options["admin-port"], options["listen"]
        token, self.token_path = options.get("admin-token"), options["admin-token-file"]
        self.generated = token is None
        if token is None:
            token, self.token_path = generate_token_file(self.port)
        self.app = AdminApp(server, token)
        site = Site(self.app.resource())
        site.displayTracebacks = False
        if is_loopback(listen):
            internet.TCPServer(self.port, site, interface=listen).setServiceParent(self)
        else:
            internet.SSLServer(self.port, site, ctx, interface=listen).setServiceParent(self)

    def startService(self) -> None:
        self.log.info("admin site on port {port}; admin token in {path}", port=self.port, path=self.token_path)
        super().startService()

    def stopService(self) -> Any:
        if self.generated and self.token_path and os.path.exists(self.token_path):
            os.unlink(self.token_path)  # a generated token lives as long as the server
        return super().stopService()
