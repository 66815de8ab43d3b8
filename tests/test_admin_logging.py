"""A quiet log: the dashboard's polls and static files write nothing to the server log;
every admin action is logged with what was done and by which admin session."""

from __future__ import annotations

import re
import time

import requests
from support.admin import TOKEN, Api, write_token
from support.processes import free_port, wait_until

POLLS = [
    "/api/server",
    "/api/clients",
    "/api/dashboard",
    "/api/settings",
    "/static/dashboard.js",
    "/static/admin.css",
    "/api/openapi.json",
    "/login",
]


def _poll(port: int, n: int = 20) -> None:
    api = Api(port, TOKEN)
    for i in range(n):
        status, _ = api.call("GET", POLLS[i % len(POLLS)])
        assert status == 200


def _settled_lines(srv) -> int:
    """The log's line count once nothing has been written for half a second."""
    last, since = -1, time.monotonic()
    while True:
        n = len(srv.log().splitlines())
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            return n
        time.sleep(0.1)


def test_twenty_api_polls_add_no_log_lines(admin):
    srv, api, _ = admin
    before = _settled_lines(srv)
    _poll(srv.admin_port)
    time.sleep(0.5)
    assert _settled_lines(srv) == before, srv.log().splitlines()[before:]
    assert "GET /api/" not in srv.log() and '"GET /static/' not in srv.log()


def test_admin_access_log_option_writes_the_polls_to_its_file(spawn, tmp_path):
    write_token(tmp_path / "admin-token", TOKEN)
    access = tmp_path / "access.log"
    port = free_port()
    srv = spawn.server("--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"), "--admin-access-log", str(access))
    before = _settled_lines(srv)
    _poll(port)
    lines = wait_until(lambda: len(access.read_text().splitlines()) >= 20 and access.read_text().splitlines(), what="20 access lines")
    assert len(lines) == 20 and all('"GET /' in line and '" 200 ' in line for line in lines)
    assert TOKEN not in access.read_text()  # the token travels in a header, which is not logged
    assert _settled_lines(srv) == before


def _browser_session(port: int) -> tuple[requests.Session, str]:
    """Log in like the browser does; returns the session and the page's CSRF token."""
    s = requests.Session()
    base = f"http://127.0.0.1:{port}"
    form = s.get(base + "/login", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    r = s.post(base + "/login", data={"csrf": csrf, "token": TOKEN}, timeout=10, allow_redirects=False)
    assert r.status_code == 302, r.text
    page = s.get(base + "/", timeout=10).text
    return s, re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def test_admin_actions_are_logged_with_the_admin_session(admin):
    srv, api, (a, b) = admin
    base = f"http://127.0.0.1:{srv.admin_port}"
    browser, csrf = _browser_session(srv.admin_port)
    wait_until(lambda: "admin session 1 logged in from 127.0.0.1" in srv.log(), what="the login line")
    ids = [c["id"] for c in api.ok("GET", "/api/clients")]
    by = "(by admin session 1 from 127.0.0.1)"

    def change(method: str, path: str, body=None) -> None:
        r = browser.request(method, base + path, json=body, headers={"X-CSRF-Token": csrf}, timeout=10)
        assert r.status_code == 200, r.text

    change("PATCH", f"/api/clients/{ids[1]}", {"view_only": True})
    change("PATCH", f"/api/clients/{ids[1]}", {"view_only": False})
    change("PATCH", "/api/settings", {"allow_multiple_clients": False})
    change("PATCH", "/api/settings", {"allow_multiple_clients": True})
    change("POST", "/api/ticket", {"password": "a-secret-ticket", "expires": 0.3})
    wait_until(lambda: "ticket expired" in srv.log(), what="the expiry line")
    change("POST", "/api/ticket", {"expires": 60})
    change("POST", "/api/ticket", {"password": None})
    change("POST", f"/api/clients/{ids[1]}/disconnect")
    b.wait_event("channel", channel="main", what="closed")
    api.ok("PATCH", f"/api/clients/{ids[0]}", {"view_only": True})  # the bearer token, not a session

    log = wait_until(lambda: (text := srv.log()) and "the admin API token" in text and text, what="the last action")
    sid = lambda i: f"client {ids[i]:#x}"  # noqa: E731
    expected = [
        f"{sid(1)} is view-only now {by}",
        f"{sid(1)} may drive now (view-only off) {by}",
        f"multiple clients off: the next client replaces the connected ones {by}",
        f"multiple clients allowed {by}",
        f"ticket set: a new password, expires in 0.3s {by}",
        "ticket expired: new connections are refused until a new ticket is set (it was set by admin session 1 from 127.0.0.1)",
        f"ticket expiry changed: expires in 60s {by}",
        f"ticket cleared (ticketing disabled: clients connect without a password) {by}",
        f"{sid(1)} disconnected: disconnected by admin session 1 from 127.0.0.1",
        f"{sid(0)} is view-only now (by the admin API token from 127.0.0.1)",
    ]
    positions = []
    for line in expected:
        assert line in log, f"{line!r} not in the log:\n{log[-4000:]}"
        positions.append(log.index(line))
    assert positions == sorted(positions)  # in the order they were done
    assert "a-secret-ticket" not in log  # never the password itself
    assert TOKEN not in log and browser.cookies.get("spice_admin_session") not in log

    r = browser.post(base + "/logout", data={"csrf": csrf}, timeout=10, allow_redirects=False)
    assert r.status_code == 302
    wait_until(lambda: "admin session 1 logged out" in srv.log(), what="the logout line")


def test_wrong_admin_login_is_logged_without_the_token(admin):
    srv, _, _ = admin
    s = requests.Session()
    base = f"http://127.0.0.1:{srv.admin_port}"
    csrf = re.search(r'name="csrf" value="([^"]+)"', s.get(base + "/login", timeout=10).text).group(1)
    r = s.post(base + "/login", data={"csrf": csrf, "token": "not-the-token-0123456789"}, timeout=10)
    assert r.status_code == 401
    wait_until(lambda: "admin login refused from 127.0.0.1: wrong token" in srv.log(), what="the refusal line")
    assert "not-the-token-0123456789" not in srv.log()


def test_view_only_option_makes_new_clients_view_only_until_an_admin_lets_them_drive(spawn, tmp_path):
    write_token(tmp_path / "admin-token", TOKEN)
    port = free_port()
    srv = spawn.server("--view-only", "--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"))
    api = Api(port, TOKEN)
    client = spawn.client("--port", str(srv.port))
    client.wait_event("mark")
    client.wait_event("channel", channel="inputs", what="opened")
    (c,) = api.ok("GET", "/api/clients")
    assert c["view_only"] is True
    assert f"client {c['id']:#x} connected from 127.0.0.1" in srv.log() and "(view-only)" in srv.log()
    client.send("position 300 600 0")
    client.send("press 1 1")
    client.send("release 1 0")
    wait_until(lambda: api.ok("GET", f"/api/clients/{c['id']}")["input_dropped"] >= 2, what="dropped input")
    assert api.ok("GET", "/api/server")["source_state"]["strokes"] == 0
    api.ok("PATCH", f"/api/clients/{c['id']}", {"view_only": False})
    client.send("press 1 1")
    client.send("release 1 0")
    wait_until(lambda: api.ok("GET", "/api/server")["source_state"]["strokes"] >= 1, what="a stroke once allowed to drive")
