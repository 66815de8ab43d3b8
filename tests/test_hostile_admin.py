"""Regression tests for what the hostile-client run found on the admin site (issue 10),
against a real server process, over raw sockets where the defect needed them."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest
import requests
from support.admin import TOKEN, Api, write_token
from support.hostile import fds, rss_kb
from support.processes import ROOT, free_port, wait_until


@pytest.fixture
def site(spawn, tmp_path):
    write_token(tmp_path / "admin-token")
    port = free_port()
    access = tmp_path / "access.log"
    srv = spawn.server("--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"), "--admin-access-log", str(access))
    return srv, port, access


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (headers, and the body by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _send_until_closed(sock: socket.socket, total: int) -> bool:
    """Send up to `total` bytes of body; True if the server stopped taking them first."""
    piece = bytes(1 << 20)
    try:
        for _ in range(total // len(piece)):
            sock.sendall(piece)
    except OSError:
        return True
    return False


def _deleted_files(pid: int) -> list[str]:
    return [f for f in fds(pid) if "(deleted)" in f]


# --- 3. the body of an unauthenticated POST ---------------------------------------------------
def test_unauthenticated_post_is_refused_before_its_body_is_read(site):
    """A 300 MB body was written to a temporary file before the 401. Now the 401 comes on
    the headers alone, nothing of the body is read, and no file appears."""
    srv, port, _ = site
    base = rss_kb(srv.proc.pid)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/ticket HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 300000000\r\n\r\n")
        status, headers, body = _response(s)  # before a single byte of the body
        assert status == 401 and b"authentication required" in body
        assert headers["connection"] == "close"
        assert _send_until_closed(s, 64 << 20), "the server went on reading the body"
    assert _deleted_files(srv.proc.pid) == []
    assert rss_kb(srv.proc.pid) - base < 20_000
    # A wrong token is refused the same way.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PATCH /api/settings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 100000\r\n\r\n")
        assert _response(s)[0] == 401


def test_authenticated_oversized_body_is_refused_at_once_and_a_chunked_one_when_it_grows(site):
    srv, port, _ = site
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /api/ticket HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 300000000\r\n\r\n".encode())
        status, _, body = _response(s)
        assert status == 413 and b"body too large" in body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"400\r\n" + bytes(1024) + b"\r\n"
        try:
            for _ in range(64):
                s.sendall(chunk)
        except OSError:
            pass
        assert _response(s)[0] == 401  # past the 4 KiB an unauthenticated request may send
    assert _deleted_files(srv.proc.pid) == []
    # Ordinary calls still work.
    assert Api(port, TOKEN).ok("PATCH", "/api/settings", {"allow_multiple_clients": True}) == {"allow_multiple_clients": True}


# --- 4. the token in the URL -------------------------------------------------------------------
def _login_form(base: str) -> tuple[requests.Session, str]:
    s = requests.Session()
    form = s.get(base + "/login", timeout=10).text
    return s, re.search(r'name="csrf" value="([^"]+)"', form).group(1)


def test_login_with_the_token_in_the_url_is_refused_and_no_log_holds_the_token(site):
    srv, port, access = site
    base = f"http://127.0.0.1:{port}"
    s, csrf = _login_form(base)
    r = s.post(base + f"/login?token={TOKEN}", data={"csrf": csrf}, timeout=10, allow_redirects=False)
    assert r.status_code == 400 and "spice_admin_session" not in r.headers.get("Set-Cookie", "")
    r = s.post(base + f"/login?token={TOKEN}", data={"csrf": csrf, "token": TOKEN}, timeout=10, allow_redirects=False)
    assert r.status_code == 400  # not even with the right token in the body as well
    r = s.post(base + "/login?token=wrong", data={"csrf": csrf, "token": "wrong"}, timeout=10, allow_redirects=False)
    assert r.status_code == 400
    # The form, with the token in its body, logs in.
    s, csrf = _login_form(base)
    r = s.post(base + "/login", data={"csrf": csrf, "token": TOKEN}, timeout=10, allow_redirects=False)
    assert r.status_code == 302 and "spice_admin_session=" in r.headers["Set-Cookie"]
    requests.get(base + f"/api/server?token={TOKEN}&csrf=abc&x=1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    text = wait_until(lambda: "x=1" in access.read_text() and access.read_text(), what="the access log lines")
    assert TOKEN not in text and "token=REDACTED" in text and "csrf=REDACTED" in text
    assert TOKEN not in srv.log() and "credentials in the URL" in srv.log()


# --- 5. a ticket with NUL -----------------------------------------------------------------------
def test_ticket_with_nul_is_refused(site):
    _, port, _ = site
    api = Api(port, TOKEN)
    status, out = api.call("POST", "/api/ticket", {"password": "ab\u0000cd"})
    assert status == 400 and "NUL" in out["error"]
    assert api.ok("GET", "/api/server")["ticket"]["enabled"] is False


# --- issue 16, item 6: a ticket with a newline wrote lines into the .vv file --------------------
_READ_VV = """
import json, sys
from gi.repository import GLib
k = GLib.KeyFile()
data = sys.stdin.read()
k.load_from_data(data, len(data.encode()), GLib.KeyFileFlags.NONE)
keys = k.get_keys("virt-viewer")[0]
print(json.dumps({"groups": k.get_groups()[0], "values": {key: k.get_string("virt-viewer", key) for key in keys}}))
"""


def _read_vv(text: str) -> dict:
    """The .vv file as virt-viewer reads it: GLib's GKeyFile (system Python's gi)."""
    r = subprocess.run(["/usr/bin/python3", "-c", _READ_VV], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("password", ["pw\nhost=evil.example\nport=1", "pw\rport=1", "tab\there", "bell\x07", "del\x7f"])
def test_ticket_with_a_control_character_is_refused(site, password):
    _, port, _ = site
    api = Api(port, TOKEN)
    status, out = api.call("POST", "/api/ticket", {"password": password})
    assert status == 400 and "control character" in out["error"], out
    assert api.ok("GET", "/api/server")["ticket"]["enabled"] is False
    assert "evil" not in api.call("GET", "/api/connection.vv?password=1")[1]


def test_vv_values_read_back_exactly(spawn, tmp_path):
    """Backslashes and spaces in a ticket reach virt-viewer's parser as they are (a written
    `\\n` was read back as a newline, a leading space dropped): every value is escaped."""
    write_token(tmp_path / "admin-token")
    port = free_port()
    srv = spawn.server("--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"))
    api = Api(port, TOKEN)
    password = " a\\nb\\tc \\"  # a leading space, backslash-n, backslash-t, a trailing backslash
    assert api.ok("POST", "/api/ticket", {"password": password})["enabled"] is True
    status, text = api.call("GET", "/api/connection.vv?password=1")
    assert status == 200
    vv = _read_vv(text)
    assert vv["groups"] == ["virt-viewer"]
    assert vv["values"] == {
        "type": "spice",
        "host": "127.0.0.1",
        "title": "spice-twisted",
        "delete-this-file": "1",
        "port": str(srv.port),
        "password": password,
    }


def test_no_vv_value_can_start_a_line():
    """Whatever a value holds (tickets refuse control characters; this is the writer's own
    guarantee), GKeyFile reads the same keys back and each value whole."""
    from admin_ui.vv import connection_file

    hostile = "x\nhost=evil.example\r\nport=1\x85tls-port=2\u2028ca=3\t"
    text = connection_file("127.0.0.1", 5900, 0, None, hostile, hostile)
    assert [line.split("=", 1)[0] for line in text.splitlines()] == [
        "[virt-viewer]",
        "type",
        "host",
        "title",
        "delete-this-file",
        "port",
        "password",
    ]
    values = _read_vv(text)["values"]
    assert values["host"] == "127.0.0.1" and values["port"] == "5900"
    assert values["password"] == values["title"] == "x\nhost=evil.example\r\nport=1\ufffdtls-port=2\ufffdca=3\t"


# --- 6. a world-readable token file -------------------------------------------------------------
def test_world_readable_admin_token_file_is_refused_and_group_readable_noted(tmp_path):
    token = tmp_path / "admin-token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    cmd = [
        sys.executable,
        "-m",
        "twisted",
        "spice",
        "--port",
        str(free_port()),
        "--admin-port",
        str(free_port()),
        "--admin-token-file",
        str(token),
    ]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(cmd, capture_output=True, cwd=tmp_path, env=env, timeout=60)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "can be read by every user of this machine (mode 0644): chmod 600" in err, err


def test_group_readable_admin_token_file_is_noted_in_the_log(spawn, tmp_path):
    token = tmp_path / "admin-token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o640)
    port = free_port()
    srv = spawn.server("--admin-port", str(port), "--admin-token-file", str(token))
    assert "can be read by its group (mode 0640)" in srv.log()
    assert Api(port, TOKEN).ok("GET", "/api/settings")


# --- 7. static files ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/static/admin.css%00x", "/static/", "/static/../app.py", "/static/%2e%2e/app.py", "/static/nothing.css"])
def test_static_oddities_are_404_without_a_traceback(site, path):
    srv, port, _ = site
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, headers, body = _response(s)
    assert status == 404, (status, body[:200])
    assert b"Index of" not in body and b"Traceback" not in body
    assert "Traceback" not in srv.log() and "answered 5" not in srv.log()


def test_static_files_are_served_with_their_type(site):
    _, port, _ = site
    r = requests.get(f"http://127.0.0.1:{port}/static/admin.css", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/css") and len(r.content) > 100
    r = requests.get(f"http://127.0.0.1:{port}/static/dashboard.js", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/javascript")


# --- 10. headers ----------------------------------------------------------------------------------
def test_every_response_says_nosniff_and_no_server_software(site):
    _, port, _ = site
    base = f"http://127.0.0.1:{port}"
    answers = [
        requests.get(base + "/login", timeout=10),
        requests.get(base + "/api/server", timeout=10),
        requests.get(base + "/api/server", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10),
        requests.get(base + "/static/admin.css", timeout=10),
        requests.get(base + "/no/such/page", timeout=10),
        requests.get(base + "/", timeout=10, allow_redirects=False),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/ticket HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        _, early, _ = _response(s)
    for r in answers:
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (r.url, r.status_code, r.headers)
        assert "Server" not in r.headers, r.headers
    assert early.get("x-content-type-options") == "nosniff" and "server" not in early
