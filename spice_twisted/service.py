"""Builds the twistd service tree: the SPICE server and its plain and TLS listeners."""

from __future__ import annotations

import os
import resource
from typing import Any

from twisted.application import internet, service
from twisted.logger import Logger
from twisted.web.server import Site

from admin_ui.app import AdminApp
from admin_ui.connections import AdminConnections
from admin_ui.http import IDLE_TIMEOUT, AdminRequest, redacted_access_log
from admin_ui.tokens import generate_token_file
from admin_ui.watch import find_html5

from .audit import AuditFileObserver
from .channels.link import SpiceFactory
from .codecs import jpeg
from .connect import ConnectInfo
from .option_checks import is_loopback
from .server import SpiceServer
from .stats import summary_line
from .tls import server_context, tls_listener_factory


class SpiceService(service.Service):
    """Starts the source (and so the render service) with the reactor, stops it after."""

    log = Logger()

    def __init__(self, server: SpiceServer, warnings: list[str] | None = None, audit_path: str | None = None) -> None:
        self.server = server
        self.warnings = warnings or []
        self.audit = AuditFileObserver(audit_path) if audit_path else None

    def startService(self) -> None:
        super().startService()
        if self.audit is not None:
            self.audit.start()
        for line in self.warnings:
            self.log.warn("{line}", line=line)
        self.server.start()
        if self.server.stats_interval:
            self.server.every(self.server.stats_interval, self.log_stats)
        self.server.watch_ticket_expiry()

    def log_stats(self) -> None:
        """--stats-interval: one summary line (stats.py reads the server; the server does not import it)."""
        self.log.info("stats: {line}", line=summary_line(self.server))

    def stopService(self) -> Any:
        self.server.stop_watching_ticket()
        self.server.stop()
        if self.audit is not None:
            self.audit.stop()
        return super().stopService()


class ConnectInfoService(service.Service):
    """Added last: once every listener listens, logs how to connect, as one block."""

    log = Logger()

    def __init__(self, server: SpiceServer, info: ConnectInfo) -> None:
        self.server, self.info = server, info

    def startService(self) -> None:
        super().startService()
        src = self.server.source
        size = f"{self.server.render.width}x{self.server.render.height}"
        if not src.size_known:
            size = f"{size} until connected, then its own size"
        headline = f"serving {src.name} ({size}); how to connect:"
        self.log.info("{block}", block=self.info.block(headline))


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
        jpeg_wan_compression=options["jpeg-wan-compression"],
        zlib_glz_wan_compression=options["zlib-glz-wan-compression"],
        limits=options.get("limits"),
        channel_security=options.get("channel-security"),
        view_ticket=options.get("view-ticket"),
        agent_policy=options.get("agent-policy"),
    )
    server.new_clients_view_only = bool(options["view-only"])
    server.configure_audio(options.get("audio-source-object"), options.get("record-to"), options.get("playback-compression", True))
    jpeg.set_quality(options["jpeg-quality"])
    server.render.streams.set_mode(options.get("streaming-video", "filter"))
    server.display_settings.video_codecs = tuple(options.get("video-codecs", ("mjpeg",)))
    top = service.MultiService()
    top.spice_server = server  # type: ignore[attr-defined]
    SpiceService(server, options.get("warnings"), options.get("audit-log")).setServiceParent(top)
    listen = options["listen"]
    server.endpoints.update(listen=listen, port=options["port"], tls_port=options["tls-port"], admin_port=options["admin-port"])
    server.ticket_required = options["ticket-required"]
    if options["tls-ca"]:
        with open(options["tls-ca"], encoding="ascii") as f:
            server.ca_pem = f.read()
    if options["port"]:
        internet.TCPServer(options["port"], SpiceFactory(server, secure=False), interface=listen).setServiceParent(top)
    ctx = options.get("tls-context")
    if ctx is None and options["cert"] and options["key"]:
        ctx = server_context(options["cert"], options["key"])
    if options["tls-port"]:
        tls = tls_listener_factory(ctx, SpiceFactory(server, secure=True))
        internet.TCPServer(options["tls-port"], tls, interface=listen).setServiceParent(top)
    admin = None
    if options["admin-port"]:
        admin = AdminService(server, options, options.get("admin-tls-context") or ctx)
        admin.setServiceParent(top)
    info = ConnectInfo(
        listen=listen,
        port=options["port"],
        tls_port=options["tls-port"],
        ca_file=options["tls-ca"],
        cert_file=options["cert"],
        ticket=options.get("ticket-source", "file" if options["ticket"].enabled else "none"),
        ticket_file=options["password-file"],
        view_only=bool(options["view-only"]),
        admin_port=options["admin-port"],
        admin_https=not is_loopback(listen) or bool(options.get("admin-tls")),
        admin_token_file=admin.token_path if admin else None,
    )
    show_urls = getattr(server.source, "show_urls", None)
    if show_urls is not None:
        show_urls(info.urls(), info.ca_file)  # the demo desktop tells where it really is
    ConnectInfoService(server, info).setServiceParent(top)
    return top


class AdminSite(Site):
    """The admin site, quiet: no line per request in the server log (the dashboard polls
    every second). --admin-access-log FILE writes the usual access log to FILE."""

    noisy = False  # no "Starting factory" lines
    _log = Logger()

    def log(self, request: Any) -> None:
        if self.logPath:
            super().log(request)
        if request.code >= 500:
            self._log.warn(
                "admin site answered {code} to {method} {path}",
                code=request.code,
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("ascii", "replace"),
            )


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
        self.app = AdminApp(server, token, options.get("metrics-token"), find_html5(options.get("html5-dir")))
        if not self.app.html5.available:
            self.log.info("the admin site's /watch page is off: {problem}", problem=self.app.html5.problem)
        site = AdminSite(
            self.app.resource(),
            requestFactory=AdminRequest,
            logPath=options.get("admin-access-log"),
            logFormatter=redacted_access_log,
            timeout=IDLE_TIMEOUT,
        )
        site.body_limit = self.app.body_limit  # read by AdminRequest before any body
        site.displayTracebacks = False
        self.connections = AdminConnections(
            site,
            server.reactor,
            request_timeout=options["admin-request-timeout"],
            total=options["admin-max-connections"],
            per_address=options["admin-max-connections-per-address"],
            refuse=lambda host, kind, fmt: server.guard.refuse(host, kind, fmt),
            # /ws: SPICE over WebSocket on the admin port, marked TLS when the site is HTTPS.
            spice_router=SpiceFactory(server, secure=not (is_loopback(listen) and not options.get("admin-tls"))).buildProtocol,
        )
        if is_loopback(listen) and not options.get("admin-tls"):
            internet.TCPServer(self.port, self.connections, interface=listen).setServiceParent(self)
        else:
            internet.SSLServer(self.port, self.connections, ctx, interface=listen).setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        total = self.connections.total
        if soft != resource.RLIM_INFINITY and total > soft // 4:
            self.log.warn(
                "--admin-max-connections {total} is more than a quarter of this process's file limit "
                "(ulimit -n {soft}): a flood of the admin site could leave SPICE clients short",
                total=total,
                soft=soft,
            )

    def stopService(self) -> Any:
        self.app.stop()
        if self.generated and self.token_path and os.path.exists(self.token_path):
            os.unlink(self.token_path)  # a generated token lives as long as the server
        return super().stopService()
