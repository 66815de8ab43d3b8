"""HTTP-level hardening of the admin site, below the routes.

- `AdminRequest` decides what a request may send as its body from its headers alone,
  before any of the body is read: an unauthenticated request gets at most
  `LOGIN_BODY_LIMIT` (the login form), an authenticated one `BODY_LIMIT`; more is
  answered 401 or 413 at once and the connection closed. Bodies are kept in memory,
  never in a temporary file. Every response says `X-Content-Type-Options: nosniff`
  and none names the server software.
- `redacted_access_log` is the access-log line with the values of secret-looking
  query parameters (token, csrf, password, ...) replaced, in the URL and the referrer.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web import http, server

BODY_LIMIT = 64 * 1024  # authenticated API calls: their JSON bodies are tiny
LOGIN_BODY_LIMIT = 4 * 1024  # the login and logout forms
IDLE_TIMEOUT = 60.0  # an idle admin connection is closed after this (Twisted's default is 12 h)
SECRET_WORDS = (b"token", b"csrf", b"secret", b"password", b"passwd", b"session", b"key", b"auth")
SECURITY_HEADERS = [(b"X-Content-Type-Options", b"nosniff"), (b"Referrer-Policy", b"no-referrer")]


def redact_uri(uri: bytes) -> bytes:
    """The URI with every secret-looking query value replaced by REDACTED."""
    path, q, query = uri.partition(b"?")
    if not q:
        return uri
    parts = []
    for pair in query.split(b"&"):
        key, eq, _ = pair.partition(b"=")
        name = unquote_to_bytes(key.replace(b"+", b" ")).lower()
        parts.append(key + b"=REDACTED" if eq and any(w in name for w in SECRET_WORDS) else pair)
    return path + b"?" + b"&".join(parts)


def _escape(value: bytes | str) -> str:
    text = value.decode("charmap") if isinstance(value, bytes) else value
    return repr(text)[1:-1].replace('"', '\\"')


def redacted_access_log(timestamp: str, request: Any) -> str:
    """Twisted's combined log format, without secrets in the URL or the referrer."""
    peer = request.getClientAddress()
    ip = getattr(peer, "host", None) or "-"
    referrer = request.getHeader(b"referer")
    return '"{}" - - {} "{} {} {}" {} {} "{}" "{}"'.format(
        _escape(ip),
        timestamp,
        _escape(request.method),
        _escape(redact_uri(request.uri)),
        _escape(request.clientproto),
        request.code,
        request.sentLength or "-",
        _escape(redact_uri(referrer)) if referrer else "-",
        _escape(request.getHeader(b"user-agent") or b"-"),
    )


class AdminRequest(server.Request):
    """A request of the admin site; `channel.site.body_limit(request)` sets its body limit."""

    _refused = False
    _limit = LOGIN_BODY_LIMIT
    _received = 0

    def gotLength(self, length: int | None) -> None:
        gate = getattr(self.channel.site, "body_limit", None)
        self._limit, status, message = gate(self) if gate is not None else (BODY_LIMIT, 413, "body too large")
        self._status, self._message = status, message
        if length is not None and length > self._limit:
            self._refuse(status, message)
            return
        self.content = io.BytesIO()  # bounded by the limit: never a temporary file

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._limit:  # a chunked body that grows past the limit
            self._refuse(self._status, self._message)
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return  # answered already; the connection is closing
        self._tell_connection("request_received")  # arrived whole: its deadline is met
        super().requestReceived(command, path, version)

    def finish(self) -> None:
        channel = self.channel
        super().finish()
        if channel is not None:
            self._tell_connection("request_done", channel)  # the next request's deadline starts

    def _tell_connection(self, event: str, channel: Any = None) -> None:
        """Tell admin_ui.connections.AdminConnection (the channel's transport), if there."""
        hook = getattr((channel or self.channel).transport, event, None)
        if callable(hook):
            hook()

    def _refuse(self, status: int, message: str) -> None:
        """Answer now, before the body, and close: nothing more of it is read."""
        self._refused = True
        self.content = io.BytesIO()
        body = json.dumps({"error": message, "status": status}).encode()
        head = [
            b"HTTP/1.1 %d %s" % (status, http.RESPONSES.get(status, b"Error")),
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"Cache-Control: no-store",
            b"Connection: close",
        ]
        head += [k + b": " + v for k, v in SECURITY_HEADERS]
        if status == 401:
            head.append(b'WWW-Authenticate: Bearer realm="spice-twisted"')
        transport = self.channel.transport
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        pause = getattr(transport, "pauseProducing", None)
        if pause is not None:
            pause()  # read no more of the body
        transport.loseConnection()

    def process(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.setHeader(name, value)
        super().process()

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        raw = name.encode("ascii") if isinstance(name, str) else name
        if raw.lower() == b"server":
            return  # no software name and version to help an attacker pick an exploit
        super().setHeader(name, value)
