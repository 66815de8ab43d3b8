"""Command-line options of `twistd spice`, validated up front so mistakes read as messages."""

from __future__ import annotations

import ipaddress
import os
import socket
import time

from twisted.python import usage

from .sources import make_source
from .wire.enums import MAX_PASSWORD_LENGTH
from .wire.ticket import Ticket


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"not a port number: {value!r}") from None
    if not 0 <= n <= 65535:
        raise ValueError(f"port {n} out of range 0-65535")
    return n


def _positive_float(value: str) -> float:
    n = float(value)
    if n <= 0:
        raise ValueError("must be positive")
    return n


def _non_negative_float(value: str) -> float:
    n = float(value)
    if n < 0:
        raise ValueError("must not be negative")
    return n


def _image_compression(value: str) -> str:
    from .codecs.choice import SETTINGS

    if value not in SETTINGS:
        raise ValueError(f"{value!r}: use one of {', '.join(SETTINGS)}")
    return value


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Serve one display to many SPICE clients (remote-viewer, spicy, spice-html5)."

    optParameters = [
        ["listen", None, "127.0.0.1", "Address to listen on."],
        ["port", "p", 5900, "Plain TCP port (0 = none).", _port],
        ["tls-port", "s", 0, "TLS port (0 = none); needs --cert and --key.", _port],
        ["cert", None, None, "TLS certificate (PEM), may include the chain."],
        ["key", None, None, "TLS private key (PEM)."],
        ["password-file", None, None, "File holding the ticket (password)."],
        ["ticket-expires", None, None, "The ticket expires this many seconds after start.", _positive_float],
        ["source", None, "demo", "What to show: demo, image:PATH, or x11[:DISPLAY] (a running X display; x11 alone: $DISPLAY)."],
        ["tls-ca", None, None, "CA certificate (PEM) for clients, put into .vv connection files."],
        ["admin-port", None, 8080, "Admin site and REST API port on the --listen address (0 = off).", _port],
        ["admin-token-file", None, None, "File holding the admin token (default: generate one into a 0600 file)."],
        ["stall-timeout", None, 30.0, "Disconnect a client that stops reading for this many seconds.", _positive_float],
        ["stats-interval", None, 0.0, "Log a stats summary every this many seconds (0 = never).", _non_negative_float],
        ["ping-interval", None, 10.0, "Ping every channel this often (seconds) to measure round-trip time.", _positive_float],
        ["max-fps", None, 30.0, "Turn damage into drawables at most this many times a second.", _positive_float],
        ["image-compression", None, "auto", "off (raw bitmaps), lz4, or auto (LZ4 where the client decodes it).", _image_compression],
    ]
    optFlags = [
        ["disable-ticketing", None, "Accept clients without a password (also on public addresses)."],
        ["no-mini-header", None, "Do not offer mini headers (clients then use full 18-byte headers)."],
        ["no-multiple-clients", None, "One client at a time: a new client replaces the connected one."],
        ["exit-on-x-loss", None, "With --source x11: exit when the X display goes away (default: retry and serve it again)."],
    ]

    def postOptions(self) -> None:
        if not self["port"] and not self["tls-port"]:
            raise usage.UsageError("nothing to listen on: give --port or --tls-port")
        if self["tls-port"]:
            for name in ("cert", "key"):
                if not self[name]:
                    raise usage.UsageError(f"--tls-port needs --{name}")
                if not os.path.isfile(self[name]):
                    raise usage.UsageError(f"--{name}: no such file: {self[name]}")
        if self["password-file"] and self["disable-ticketing"]:
            raise usage.UsageError("--password-file and --disable-ticketing exclude each other")
        self["ticket"] = self._ticket()
        # Every listener on a public address needs a ticket or TLS: a plain port is open to
        # anyone who can reach it, whatever the TLS port next to it does.
        self["ticket-required"] = not is_loopback(self["listen"]) and not self["disable-ticketing"] and bool(self["port"])
        if self["ticket-required"] and not self["ticket"].enabled:
            tls_note = f" (the TLS port does not protect plain port {self['port']}: use --port 0 for TLS only)" if self["tls-port"] else ""
            raise usage.UsageError(
                f"refusing to listen on non-loopback address {self['listen']} with neither a ticket "
                f"(--password-file) nor TLS (--tls-port){tls_note}; pass --disable-ticketing to allow it anyway"
            )
        if self["tls-ca"] and not os.path.isfile(self["tls-ca"]):
            raise usage.UsageError(f"--tls-ca: no such file: {self['tls-ca']}")
        if self["admin-port"]:
            if self["admin-port"] in (self["port"], self["tls-port"]):
                raise usage.UsageError("--admin-port must differ from --port and --tls-port")
            if not is_loopback(self["listen"]) and not (self["cert"] and self["key"]):
                raise usage.UsageError(
                    "the admin site on a non-loopback address needs --cert and --key (it is then served over HTTPS); or pass --admin-port 0"
                )
            if self["admin-token-file"]:
                from admin_ui.tokens import read_token_file

                try:
                    self["admin-token"] = read_token_file(self["admin-token-file"])
                except (OSError, ValueError) as exc:
                    raise usage.UsageError(f"--admin-token-file: {exc}") from None
        try:
            self["source-object"] = make_source(self["source"])
        except ValueError as exc:
            raise usage.UsageError(str(exc)) from None
        if self["exit-on-x-loss"]:
            if not hasattr(self["source-object"], "exit_on_loss"):
                raise usage.UsageError("--exit-on-x-loss needs --source x11")
            self["source-object"].exit_on_loss = True
        self._check_ports_free()

    def _check_ports_free(self) -> None:
        """A port already in use reads as a message here, not as a traceback at start."""
        for name in ("port", "tls-port", "admin-port"):
            port = self[name]
            if not port:
                continue
            try:
                infos = socket.getaddrinfo(self["listen"], port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise usage.UsageError(f"--listen {self['listen']}: {exc.strerror}") from None
            family, kind, proto, _, addr = infos[0]
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(addr)
                except OSError as exc:
                    raise usage.UsageError(f"--{name} {port}: cannot listen on {self['listen']}: {exc.strerror}") from None

    def _ticket(self) -> Ticket:
        path = self["password-file"]
        if not path:
            if self["ticket-expires"]:
                raise usage.UsageError("--ticket-expires needs --password-file")
            return Ticket(None)
        try:
            with open(path, "rb") as f:
                password = f.read().rstrip(b"\r\n")
        except OSError as exc:
            raise usage.UsageError(f"--password-file: {exc.strerror}: {path}") from None
        if not password:
            raise usage.UsageError(f"--password-file: {path} is empty")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise usage.UsageError(f"--password-file: password longer than {MAX_PASSWORD_LENGTH} bytes")
        expires = time.time() + self["ticket-expires"] if self["ticket-expires"] else None
        return Ticket(password, expires)
