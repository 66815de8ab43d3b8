"""The admin site: Klein routes as methods of one object that reads the live server state.

Served in the server's own reactor, so handlers read and change state without locks.
API calls authenticate with `Authorization: Bearer TOKEN`; browsers log in with the
token once and then carry a session cookie, and every state change they make
carries that session's CSRF token (a form field, or the X-CSRF-Token header).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from klein import Klein
from twisted.internet import task
from twisted.logger import Logger

from spice_twisted.audit import audit
from spice_twisted.stats import HISTORY_EVERY, HISTORY_FIELDS, History, client_stats, server_stats
from spice_twisted.wire.ticket import check_password

from .events import RecentEvents
from .http import BODY_LIMIT, LOGIN_BODY_LIMIT
from .metrics import CONTENT_TYPE_LATEST, metrics_registry, render_metrics
from .openapi import openapi_document
from .thumbnail import Thumbnail, thumbnail_size
from .tokens import LOGIN_COOKIE, SESSION_COOKIE, Sessions
from .vv import connection_file
from .watch import Html5Files, find_html5

HERE = os.path.dirname(os.path.abspath(__file__))
# The only files under /static/: served from memory, no directory listing, no path lookups.
STATIC_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}


def _load_static() -> dict[str, tuple[bytes, bytes]]:
    folder = os.path.join(HERE, "static")
    out = {}
    for name in sorted(os.listdir(folder)):
        ctype = STATIC_TYPES.get(os.path.splitext(name)[1])
        if ctype is not None:
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = (f.read(), ctype)
    return out


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _bool_field(body: dict[str, Any], name: str) -> bool:
    v = body.get(name)
    if not isinstance(v, bool):
        raise ApiError(400, f"'{name}' must be true or false")
    return v


def _count_arg(request: Any, name: str) -> int:
    """A non-negative integer query argument (0 when absent), or a 400."""
    raw = request.args.get(name.encode(), [b"0"])[0]
    try:
        value = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        value = -1
    if not 0 <= value < 2**53:
        raise ApiError(400, f"'{name}' must be a whole number from 0")
    return value


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate, which JSON's "\ud800" can carry
        return None


class AdminApp:
    app = Klein()
    log = Logger()

    def __init__(self, server: Any, token: str, metrics_token: str | None = None, html5: Html5Files | None = None) -> None:
        self.server = server
        self.html5 = html5 if html5 is not None else find_html5()
        self.sessions = Sessions(token)
        # --metrics-token-file: a second token that reads /metrics and nothing else, so a
        # Prometheus scrape config never holds the token that can disconnect clients.
        self.metrics_token = metrics_token
        self.metrics = metrics_registry(server)
        self.env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")), autoescape=select_autoescape(default=True))
        self.static_files = _load_static()
        # The live dashboard: each client's last minutes, the last audit events, the picture.
        self.history = History()
        self.events = RecentEvents()
        self.thumbnail = Thumbnail(server.render, server.reactor) if server is not None else None
        self._sampler: task.LoopingCall | None = None
        if server is not None:
            self._sampler = task.LoopingCall(self._sample)
            self._sampler.clock = server.reactor
            self._sampler.start(HISTORY_EVERY, now=False)

    def _sample(self) -> None:
        try:
            self.history.sample(self.server)
        except Exception:  # a bug here must not end the sampling for good
            self.log.failure("dashboard history sample failed")

    def stop(self) -> None:
        """Stop sampling and listening (the admin service stops)."""
        if self._sampler is not None and self._sampler.running:
            self._sampler.stop()
        self.events.close()

    # --- plumbing -------------------------------------------------------------------------
    def resource(self) -> Any:
        return self.app.resource()

    def _json(self, request: Any, obj: Any, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(obj).encode()

    def _html(self, request: Any, template: str, **ctx: Any) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        request.setHeader(b"X-Frame-Options", b"DENY")
        return self.env.get_template(template).render(**ctx).encode()

    def _session_id(self, request: Any) -> str | None:
        raw = request.getCookie(SESSION_COOKIE.encode())
        return raw.decode("ascii", "replace") if raw else None

    def _auth(self, request: Any, mutating: bool) -> None:
        """Bearer token, or a session cookie (plus its CSRF token for changes)."""
        header = request.getHeader(b"authorization")
        if header:
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and self.sessions.token_ok(token.strip()):
                return
            raise ApiError(401, "invalid token")
        session = self.sessions.get(self._session_id(request))
        if session is None:
            raise ApiError(401, "authentication required: send 'Authorization: Bearer TOKEN'")
        if mutating:
            offered = request.getHeader(b"x-csrf-token")
            if offered is None or not self._same(offered, session.csrf):
                raise ApiError(403, "missing or wrong CSRF token")

    def _who(self, request: Any) -> str:
        """Who made this change, for the log: the API token or a numbered browser session."""
        peer = request.getClientAddress()
        where = getattr(peer, "host", None) or "?"
        if request.getHeader(b"authorization"):
            return f"the admin API token from {where}"
        session = self.sessions.get(self._session_id(request))
        return f"admin session {session.number} from {where}" if session else f"an admin from {where}"

    @staticmethod
    def _same(a: Any, b: str) -> bool:
        a = a.decode("latin-1") if isinstance(a, bytes) else str(a)
        return hmac.compare_digest(a.encode(), b.encode())

    def body_limit(self, request: Any) -> tuple[int, int, str]:
        """What a request may send, decided from its headers before the body is read:
        (limit, status if over it, message). Called by admin_ui.http.AdminRequest."""
        header = request.getHeader(b"authorization")
        if header:
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and self.sessions.token_ok(token.strip()):
                return BODY_LIMIT, 413, f"body too large (limit {BODY_LIMIT} bytes)"
            return 0, 401, "invalid token"
        if self.sessions.get(self._session_id(request)) is not None:
            return BODY_LIMIT, 413, f"body too large (limit {BODY_LIMIT} bytes)"
        return LOGIN_BODY_LIMIT, 401, "authentication required: send 'Authorization: Bearer TOKEN'"

    def _body(self, request: Any) -> dict[str, Any]:
        raw = request.content.read(BODY_LIMIT + 1)
        if len(raw) > BODY_LIMIT:
            raise ApiError(413, "body too large")
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            raise ApiError(400, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    def _client(self, client_id: str) -> Any:
        try:
            sid = int(client_id)
        except ValueError:
            raise ApiError(404, f"no client {client_id!r}") from None
        client = self.server.clients.get(sid)
        if client is None:
            raise ApiError(404, f"no client {sid}")
        return client

    def _api(self, request: Any, fn: Any, mutating: bool = False) -> bytes:
        try:
            self._auth(request, mutating)
            result = fn()
        except ApiError as e:
            if e.status == 401:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="spice-twisted"')
            return self._json(request, {"error": e.message, "status": e.status}, e.status)
        return self._json(request, result)

    # --- state as JSON ------------------------------------------------------------------
    def server_json(self) -> dict[str, Any]:
        s = server_stats(self.server)
        s.pop("clients")
        s["clients_connected"] = len(self.server.clients)
        return s

    def clients_json(self) -> list[dict[str, Any]]:
        return [client_stats(self.server, c) for c in self.server.clients.values()]

    def dashboard_json(self, since: int, events_since: int) -> dict[str, Any]:
        """Everything the live dashboard draws, in one poll: history samples and events
        newer than the ones the page has (`since`, `events_since`)."""
        assert self.thumbnail is not None
        version = "-".join(str(v) for v in self.thumbnail.version())
        return {
            "server": self.server_json(),
            "clients": self.clients_json(),
            "history": {
                "seq": self.history.seq,
                "every": HISTORY_EVERY,
                "keep": self.history.keep,
                "fields": list(HISTORY_FIELDS),
                "clients": self.history.since(since),
            },
            "events": {"seq": self.events.seq, "items": self.events.since(events_since)},
            "thumbnail": {"url": f"/api/thumbnail.jpg?v={version}", "encodes": self.thumbnail.encodes},
        }

    # --- REST API -----------------------------------------------------------------------
    @app.route("/api/server", methods=["GET"])
    def api_server(self, request: Any) -> bytes:
        return self._api(request, self.server_json)

    @app.route("/api/clients", methods=["GET"])
    def api_clients(self, request: Any) -> bytes:
        return self._api(request, self.clients_json)

    @app.route("/api/clients/<client_id>", methods=["GET"])
    def api_client(self, request: Any, client_id: str) -> bytes:
        return self._api(request, lambda: client_stats(self.server, self._client(client_id)))

    @app.route("/api/clients/<client_id>", methods=["PATCH"])
    def api_client_patch(self, request: Any, client_id: str) -> bytes:
        def change() -> dict[str, Any]:
            client = self._client(client_id)
            body = self._body(request)
            unknown = set(body) - {"view_only"}
            if unknown or "view_only" not in body:
                raise ApiError(400, 'expected {"view_only": true|false}')
            try:
                self.server.set_view_only(client.session_id, _bool_field(body, "view_only"), by=self._who(request))
            except ValueError as e:  # authenticated with the view-only password
                raise ApiError(409, str(e)) from None
            return client_stats(self.server, client)

        return self._api(request, change, mutating=True)

    @app.route("/api/clients/<client_id>/disconnect", methods=["POST"])
    def api_client_disconnect(self, request: Any, client_id: str) -> bytes:
        def disconnect() -> dict[str, Any]:
            client = self._client(client_id)
            self.server.disconnect(client.session_id, by=self._who(request))
            return {"disconnected": client.session_id}

        return self._api(request, disconnect, mutating=True)

    @app.route("/api/dashboard", methods=["GET"])
    def api_dashboard(self, request: Any) -> bytes:
        return self._api(request, lambda: self.dashboard_json(_count_arg(request, "since"), _count_arg(request, "events_since")))

    @app.route("/api/thumbnail.jpg", methods=["GET"])
    def api_thumbnail(self, request: Any) -> Any:
        """The display as a small JPEG, made at most once a second for all who ask."""
        try:
            self._auth(request, mutating=False)
        except ApiError as e:
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="spice-twisted"')
            return self._json(request, {"error": e.message, "status": e.status}, e.status)
        assert self.thumbnail is not None

        def send(pic: Any) -> bytes:
            request.setHeader(b"ETag", pic.etag.encode())
            request.setHeader(b"Cache-Control", b"private, max-age=0, must-revalidate")
            if request.getHeader(b"if-none-match") == pic.etag.encode():
                request.setResponseCode(304)
                return b""
            request.setHeader(b"Content-Type", b"image/jpeg")
            return pic.data

        return self.thumbnail.get().addCallback(send)

    @app.route("/api/clients/<client_id>/primary", methods=["POST"])
    def api_client_primary(self, request: Any, client_id: str) -> bytes:
        """Hand control to a client: it owns the desktop's size (and the recording) now."""

        def hand_over() -> dict[str, Any]:
            client = self._client(client_id)
            self.server.set_primary(client.session_id, by=self._who(request))
            return client_stats(self.server, client)

        return self._api(request, hand_over, mutating=True)

    @app.route("/api/settings", methods=["GET"])
    def api_settings(self, request: Any) -> bytes:
        return self._api(request, lambda: {"allow_multiple_clients": self.server.allow_multiple_clients})

    @app.route("/api/settings", methods=["PATCH"])
    def api_settings_patch(self, request: Any) -> bytes:
        def change() -> dict[str, Any]:
            body = self._body(request)
            if set(body) - {"allow_multiple_clients"} or "allow_multiple_clients" not in body:
                raise ApiError(400, 'expected {"allow_multiple_clients": true|false}')
            self.server.set_allow_multiple_clients(_bool_field(body, "allow_multiple_clients"), by=self._who(request))
            return {"allow_multiple_clients": self.server.allow_multiple_clients}

        return self._api(request, change, mutating=True)

    @app.route("/api/ticket", methods=["POST"])
    def api_ticket(self, request: Any) -> bytes:
        def change() -> dict[str, Any]:
            body = self._body(request)
            if set(body) - {"password", "expires"} or not body:
                raise ApiError(400, 'expected {"password": string|null, "expires": seconds|null}')
            expires = body.get("expires")
            if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float)) or not 0 <= expires <= 10**9):
                raise ApiError(400, "'expires' must be seconds from now (0 = now) or null")
            if "password" in body:
                password = body["password"]
                secret = _utf8(password) if isinstance(password, str) else None
                if password is not None and (secret is None or not 0 < len(secret) <= 60):
                    raise ApiError(
                        400, "'password' must be a string of 1 to 60 bytes without control characters, or null to disable ticketing"
                    )
                if secret is not None:
                    try:
                        check_password(secret)  # no NUL, no newline: it goes into .vv files
                    except ValueError as e:
                        raise ApiError(400, f"'password': {e}") from None
            else:  # only the expiry changes
                secret = self.server.ticket.password
                if secret is None:
                    raise ApiError(400, "there is no ticket to expire: set a password")
            if secret is None and expires is not None:
                raise ApiError(400, "a cleared ticket cannot expire")
            try:
                self.server.set_ticket(secret, expires, by=self._who(request))
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            t = self.server.ticket
            return {"enabled": t.enabled, "expires": t.expires, "expired": t.expired()}

        return self._api(request, change, mutating=True)

    @app.route("/api/connection.vv", methods=["GET"])
    def api_vv(self, request: Any) -> bytes:
        def make() -> str:
            ep = self.server.endpoints
            host = ep["listen"]
            if host in ("0.0.0.0", "::", ""):
                host = (request.getRequestHostname() or b"127.0.0.1").decode("ascii", "replace")
            want_pw = request.args.get(b"password", [b"0"])[0] in (b"1", b"true")
            pw = None
            if want_pw and self.server.ticket.password:
                try:
                    pw = self.server.ticket.password.decode()
                except UnicodeDecodeError:  # from --password-file, which takes any bytes
                    raise ApiError(400, "the password is not UTF-8 text, so a .vv file cannot hold it: leave out ?password=1") from None
            return connection_file(host, ep["port"], ep["tls_port"], self.server.ca_pem, pw, self.server.name)

        try:
            self._auth(request, mutating=False)
            text = make()
        except ApiError as e:
            return self._json(request, {"error": e.message, "status": e.status}, e.status)
        request.setHeader(b"Content-Type", b"application/x-virt-viewer")
        request.setHeader(b"Content-Disposition", b'attachment; filename="spice-twisted.vv"')
        return text.encode()

    @app.route("/api/openapi.json", methods=["GET"])
    def api_openapi(self, request: Any) -> bytes:
        return self._json(request, openapi_document())

    @app.route("/api/", branch=True)
    def api_unknown(self, request: Any) -> bytes:
        return self._json(request, {"error": "no such API route", "status": 404}, 404)

    # --- Prometheus ---------------------------------------------------------------------
    @app.route("/metrics", methods=["GET"])
    def metrics_page(self, request: Any) -> bytes:
        """The stats object in Prometheus's text format; the admin token (Bearer or a
        browser session) or the metrics token."""
        header = request.getHeader(b"authorization")
        if header and self.metrics_token is not None:
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.metrics_token.encode()):
                return self._metrics_body(request)
        try:
            self._auth(request, mutating=False)
        except ApiError as e:
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="spice-twisted"')
            return self._json(request, {"error": e.message, "status": e.status}, e.status)
        return self._metrics_body(request)

    def _metrics_body(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        request.setHeader(b"Cache-Control", b"no-store")
        return render_metrics(self.metrics)

    # --- the watch page: a browser client (spice-html5) on the SPICE port -----------------
    # Public like the SPICE port itself: what protects the display is the SPICE ticket,
    # which the page asks for and sends only inside the SPICE link.
    WATCH_CSP = (
        b"default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
        b"media-src 'self' blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    )

    @app.route("/watch", methods=["GET"])
    def watch(self, request: Any) -> bytes:
        ep = self.server.endpoints
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", self.WATCH_CSP)
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"Cache-Control", b"no-store")
        view_only = request.args.get(b"view", [b"0"])[0] in (b"1", b"true", b"yes")
        return (
            self.env.get_template("watch.html")
            .render(
                name=getattr(self.server, "name", None) or "spice-twisted",
                port=ep.get("port") or None,
                tls_port=ep.get("tls_port") or None,
                needs_password=self.server.ticket.enabled,
                view_only=view_only,
                html5=self.html5.available,
                problem=self.html5.problem,
            )
            .encode()
        )

    @app.route("/ws", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    def ws_later(self, request: Any) -> bytes:
        """`/ws` reaches here only when it is not a connection's first request (a first one
        goes to the SPICE link machinery in connections.py, below HTTP)."""
        request.setResponseCode(400)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Connection", b"close")
        return b"/ws is SPICE over WebSocket: open it as the first request of a new connection\n"

    @app.route("/watch/spice-html5/<path:path>", methods=["GET", "HEAD"])
    def watch_html5(self, request: Any, path: str) -> bytes:
        return self._file(request, self.html5.get(path))

    # --- browser pages ------------------------------------------------------------------
    @app.route("/static/<name>", methods=["GET", "HEAD"])
    def static(self, request: Any, name: str) -> bytes:
        return self._file(request, self.static_files.get(name))

    def _file(self, request: Any, found: tuple[bytes, bytes] | None) -> bytes:
        """A file held in memory ((data, content type)), or 404."""
        if found is None:
            return self.not_found(request)
        data, ctype = found
        request.setHeader(b"Content-Type", ctype)
        request.setHeader(b"Cache-Control", b"no-cache")
        return data

    @app.route("/static/", branch=True)
    def not_found(self, request: Any) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"not found\n"

    @app.route("/login", methods=["GET"])
    def login_form(self, request: Any, error: str | None = None) -> bytes:
        # Double-submit CSRF for the login form itself: a cookie and a field that must match.
        login_csrf = secrets.token_urlsafe(24)
        secure = b"; Secure" if request.isSecure() else b""
        request.setHeader(
            b"Set-Cookie", LOGIN_COOKIE.encode() + b"=" + login_csrf.encode() + b"; Path=/login; HttpOnly; SameSite=Strict" + secure
        )
        return self._html(request, "login.html", error=error, csrf=login_csrf)

    @staticmethod
    def _form(request: Any) -> dict[bytes, list[bytes]]:
        """The fields of a form POST body, and only those (never the URL's query)."""
        request.content.seek(0)
        return parse_qs(request.content.read(LOGIN_BODY_LIMIT), keep_blank_values=True)

    @app.route("/login", methods=["POST"])
    def login(self, request: Any) -> Any:
        where = getattr(request.getClientAddress(), "host", None) or "?"
        if urlsplit(request.uri).query:
            # A token in the URL ends up in browser history, proxy and access logs: refused
            # unchecked, whatever it is. The form sends it in the body.
            self.log.warn("admin login refused from {where}: credentials in the URL (nothing was checked)", where=where)
            audit("admin_login_refused", peer=where, reason="credentials in the URL")
            request.setResponseCode(400)
            return self.login_form(request, error="Send the token with the form, never in the address.")
        form = self._form(request)
        token = form.get(b"token", [b""])[0].decode("utf-8", "replace").strip()
        cookie = request.getCookie(LOGIN_COOKIE.encode()) or b""
        field = form.get(b"csrf", [b""])[0]
        if not cookie or not self._same(field, cookie.decode("latin-1")):
            request.setResponseCode(403)
            return self.login_form(request, error="The form expired: try again.")
        if not self.sessions.token_ok(token):
            self.log.warn("admin login refused from {where}: wrong token", where=where)
            audit("admin_login_refused", peer=where, reason="wrong token")
            request.setResponseCode(401)
            return self.login_form(request, error="Wrong token.")
        sid, session = self.sessions.create()
        self.log.info("admin session {n} logged in from {where}", n=session.number, where=where)
        audit("admin", action="login", by=f"admin session {session.number} from {where}")
        secure = b"; Secure" if request.isSecure() else b""
        request.setHeader(b"Set-Cookie", SESSION_COOKIE.encode() + b"=" + sid.encode() + b"; Path=/; HttpOnly; SameSite=Strict" + secure)
        request.redirect(b"/")
        return b""

    @app.route("/logout", methods=["POST"])
    def logout(self, request: Any) -> Any:
        session = self.sessions.get(self._session_id(request))
        if session is not None and self._same(self._form(request).get(b"csrf", [b""])[0], session.csrf):
            self.sessions.drop(self._session_id(request))
            self.log.info("admin session {n} logged out", n=session.number)
            audit("admin", action="logout", by=f"admin session {session.number}")
        request.redirect(b"/login")
        return b""

    @app.route("/", methods=["GET"])
    def dashboard(self, request: Any) -> Any:
        session = self.sessions.get(self._session_id(request))
        if session is None:
            request.redirect(b"/login")
            return b""
        thumb_w, thumb_h = thumbnail_size(self.server.render.width, self.server.render.height)
        return self._html(
            request,
            "dashboard.html",
            server=self.server_json(),
            clients=self.clients_json(),
            csrf=session.csrf,
            thumb_w=thumb_w,
            thumb_h=thumb_h,
        )
