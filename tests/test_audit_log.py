"""--audit-log FILE: JSON lines through twisted.logger for connects, link results, failed
tickets, disconnects with their reason and every admin action with who did it."""

from __future__ import annotations

import json
import re

import requests
from support.admin import TOKEN, Api, write_token
from support.hostile import link
from support.processes import free_port, wait_until

from spice_twisted.wire.enums import LinkError


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_log_records_connections_links_failures_disconnects_and_admin_actions(spawn, tmp_path):
    (tmp_path / "pw").write_text("audit-secret\n")
    (tmp_path / "pw").chmod(0o600)
    write_token(tmp_path / "admin-token")
    audit, aport = tmp_path / "audit.jsonl", free_port()
    srv = spawn.server(
        "--password-file",
        str(tmp_path / "pw"),
        "--audit-log",
        str(audit),
        "--admin-port",
        str(aport),
        "--admin-token-file",
        str(tmp_path / "admin-token"),
    )
    api = Api(aport, TOKEN)
    client = spawn.client("--port", str(srv.port), "--password", "audit-secret")
    client.wait_event("mark")
    client.wait_event("channel", channel="inputs", what="opened")
    s, result = link(srv.port, b"a wrong guess", source="127.0.8.1")
    assert result == LinkError.PERMISSION_DENIED
    s.close()
    (info,) = api.ok("GET", "/api/clients")
    sid = f"{info['id']:#x}"
    api.ok("PATCH", "/api/settings", {"allow_multiple_clients": True})
    api.ok("POST", f"/api/clients/{info['id']}/disconnect")
    # a browser login, and a refused one
    base = f"http://127.0.0.1:{aport}"
    b = requests.Session()
    csrf = re.search(r'name="csrf" value="([^"]+)"', b.get(base + "/login", timeout=10).text).group(1)
    b.post(base + "/login", data={"csrf": csrf, "token": "not it"}, timeout=10)
    wait_until(lambda: sum(e["event"] == "disconnect" and e.get("session") == sid for e in _events(audit)) >= 4, what="four disconnects")
    events = _events(audit)
    kinds = {e["event"] for e in events}
    assert {"connect", "link", "auth_failure", "disconnect", "session_start", "session_end", "admin", "admin_login_refused"} <= kinds
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["time"]) for e in events)
    links = [e for e in events if e["event"] == "link" and e.get("session") == sid]
    assert {e["channel"] for e in links} == {"main", "display", "inputs", "cursor"} and {e["result"] for e in links} == {"OK"}
    failure = next(e for e in events if e["event"] == "auth_failure")
    assert failure["peer"].startswith("127.0.8.1:") and failure["reason"] == "wrong or expired ticket"
    refused = next(e for e in events if e["event"] == "link" and e["result"] == "PERMISSION_DENIED")
    assert refused["peer"].startswith("127.0.8.1:")
    admin = [e for e in events if e["event"] == "admin"]
    assert {"action": "allow_multiple_clients", "allow": True, "by": "the admin API token from 127.0.0.1"}.items() <= admin[0].items()
    assert any(e["action"] == "disconnect" and e["session"] == sid and e["by"] == "the admin API token from 127.0.0.1" for e in admin)
    ends = [e for e in events if e["event"] == "disconnect" and e.get("session") == sid]
    assert any(e["reason"] == "disconnected by the admin" for e in ends), ends
    end = next(e for e in events if e["event"] == "session_end")
    assert end["reason"] == "disconnected by the admin API token from 127.0.0.1"
    connects = {e["conn"] for e in events if e["event"] == "connect"}
    assert connects == {e["conn"] for e in events if e["event"] == "disconnect"}  # every connection ended
    text = audit.read_text()
    assert "audit-secret" not in text and "a wrong guess" not in text and TOKEN not in text and "not it" not in text
    assert audit.stat().st_mode & 0o077 == 0
    assert '"event"' not in srv.log()  # the audit events stay out of the text log
