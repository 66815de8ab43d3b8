"""Property-based tests of the live admin API, generated from its own OpenAPI document.

Schemathesis turns every operation of admin_ui.openapi.openapi_document() into
random requests (valid and invalid bodies, ids and query strings) and sends them to
a real `twistd spice` with one real spice-gtk client connected. The only property
checked is that the server never answers 5xx: 400, 401, 403 and 404 are all fine.
Destructive calls (disconnect, a random ticket) only change the SPICE side, so
they cannot break later calls: the admin token stays the same.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from support.admin import Api, write_token
from support.processes import SYSTEM_PYTHON, GtkClient, ServerProcess, free_port

from admin_ui.openapi import openapi_document

TOKEN = "schemathesis-admin-token-0123456789"
EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)

schema = schemathesis.openapi.from_dict(openapi_document())

# Ids of the clients connected right now, filled in by the `live` fixture: generated
# client ids are swapped for a real one half of the time, so the 200 paths run too.
LIVE_IDS: list[int] = []
# (method, path) -> statuses answered to the token-carrying requests.
SEEN: dict[tuple[str, str], set[int]] = {}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy:
    if not path_parameters or "client_id" not in path_parameters or not LIVE_IDS:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, "client_id": LIVE_IDS[0]}])


class Live:
    def __init__(self, server: ServerProcess, api: Api) -> None:
        self.server, self.api = server, api
        self.base_url = f"http://127.0.0.1:{server.admin_port}"


def _have_spice_gtk() -> bool:
    probe = "import gi; gi.require_version('SpiceClientGLib', '2.0'); from gi.repository import SpiceClientGLib"
    return bool(shutil.which(SYSTEM_PYTHON)) and subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One server for the whole module (with one spice-gtk client), so the run stays short."""
    if not _have_spice_gtk():
        pytest.fail("spice-gtk (python3-gi, gir1.2-spiceclientglib-2.0) is not installed: run the README test command (scripts/test.sh)")
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    write_token(tmp / "admin-token", TOKEN)
    access = ["--admin-access-log", str(tmp / "access.log")]  # every status, for the 5xx check
    server = ServerProcess("--admin-port", str(free_port()), "--admin-token-file", str(tmp / "admin-token"), *access, tmp=tmp)
    client = None
    try:
        client = GtkClient("--port", str(server.port), tmp=tmp)
        client.wait_event("mark")
        api = Api(server.admin_port, TOKEN)
        LIVE_IDS[:] = [c["id"] for c in api.ok("GET", "/api/clients")]
        assert len(LIVE_IDS) == 1
        yield Live(server, api)
    finally:
        LIVE_IDS.clear()
        if client is not None:
            client.close()
        server.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[Any]:
    import requests

    with requests.Session() as s:
        yield s


def _check_alive(live: Live) -> None:
    assert live.server.proc.poll() is None, f"the server died:\n{live.server.log()[-4000:]}"


@schema.parametrize()
@EXAMPLES
def test_no_server_errors_with_token(case: Any, live: Live, http: Any) -> None:
    response = case.call(base_url=live.base_url, session=http, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    SEEN.setdefault((case.method.upper(), case.path), set()).add(response.status_code)
    case.validate_response(response, checks=[not_a_server_error])


@schema.parametrize()
@EXAMPLES
def test_no_token_is_always_refused(case: Any, live: Live, http: Any) -> None:
    # Whatever the request, without a token the answer is 401 (or 404/405 for a
    # request no route matches), never a 5xx and never a 2xx: the token is checked
    # before the body or the client id is looked at.
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call(base_url=live.base_url, session=http, timeout=10)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code == 400 and "multipart/" in str((case.headers or {}).get("Content-Type", "")):
        # twisted.web itself rejects a body that is not the multipart it claims to be,
        # with an empty 400, before any route (or the token check) runs.
        assert response.content == b""
        return
    assert response.status_code in (401, 404, 405), (response.status_code, response.text[:300])


# Requests random generation is unlikely to find, each of which once answered 500.
HOSTILE = [
    ("PATCH", "/api/settings", b"[" * 50_000, 400),  # nested past Python's recursion limit
    ("POST", "/api/ticket", b'{"password": "\\ud800"}', 400),  # a lone surrogate: no UTF-8 for it
    ("POST", "/api/ticket", b'{"password": "ok", "expires": NaN}', 400),
    ("POST", "/api/ticket", b'{"password": "ok", "expires": Infinity}', 400),
    ("POST", "/api/ticket", b'{"password": "\xff"}', 400),  # not UTF-8 at all
    ("PATCH", "/api/settings", b" " * 70_000, 413),
    ("GET", "/api/clients/" + "9" * 5000, None, 404),
    ("GET", "/api/clients/-1", None, 404),
]


@pytest.mark.parametrize(("method", "path", "raw", "status"), HOSTILE, ids=[f"{m} {p[:30]} {len(r or b'')}" for m, p, r, _ in HOSTILE])
def test_hostile_requests_are_client_errors(live: Live, method: str, path: str, raw: bytes | None, status: int) -> None:
    got, body = live.api.call(method, path, raw=raw)
    assert got == status, body
    assert body["status"] == status and body["error"]


def test_connection_file_with_a_password_that_is_not_utf8(spawn: Any, tmp_path: Path) -> None:
    # --password-file takes any bytes; a .vv file is UTF-8 text, so it cannot carry this one.
    (tmp_path / "password").write_bytes(b"p\xe4ss")
    write_token(tmp_path / "admin-token", TOKEN)
    port = free_port()
    spawn.server(
        "--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"), "--password-file", str(tmp_path / "password")
    )
    api = Api(port, TOKEN)
    status, body = api.call("GET", "/api/connection.vv?password=1")
    assert status == 400 and "UTF-8" in body["error"], body
    status, text = api.call("GET", "/api/connection.vv")
    assert status == 200 and "[virt-viewer]" in text and "password=" not in text


def test_server_survived_and_still_answers(live: Live) -> None:
    # Runs after the generated tests (file order): the process is alive, the API answers
    # and no request got a 5xx (the access log has every status) or an unhandled error.
    _check_alive(live)
    assert live.api.ok("GET", "/api/server")["endpoints"]["admin_port"] == live.server.admin_port
    log = live.server.log()
    access = (live.server.log_path.parent / "access.log").read_text()
    assert not re.findall(r'^.*" 5\d\d \d+ .*$', access, re.M), access[-4000:]
    assert "admin site answered 5" not in log, log[-4000:]
    assert "Unhandled Error" not in log and "Processing Failed" not in log, log[-4000:]
    if SEEN:  # the generated tests ran in this session: they reached past the checks too
        assert access.count("\n") > 100, access[-2000:]  # their requests are in the access log
        assert 200 in SEEN[("GET", "/api/clients/{client_id}")], SEEN
        assert 404 in SEEN[("GET", "/api/clients/{client_id}")], SEEN
        assert 200 in SEEN[("PATCH", "/api/settings")] and 400 in SEEN[("PATCH", "/api/settings")], SEEN
        assert 200 in SEEN[("POST", "/api/ticket")], SEEN
