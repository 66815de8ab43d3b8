"""The admin REST API against the real running server with real spice-gtk clients."""

from __future__ import annotations

import os
import stat

from support.admin import Api
from support.processes import free_port, wait_until


def test_clients_listed_with_traffic_and_pipes(admin):
    srv, api, clients = admin
    wait_until(lambda: len([c for c in api.ok("GET", "/api/clients") if c["bytes_sent"] > 0]) == 2)
    listed = api.ok("GET", "/api/clients")
    for c in listed:
        kinds = {ch["channel"] for ch in c["channels"]}
        assert kinds == {"main", "display", "inputs", "cursor"}
        for ch in c["channels"]:
            assert {"pipe_items", "pipe_bytes", "bytes_sent", "rtt_ms"} <= set(ch)
        assert c["address"].startswith("127.0.0.1:")
    assert [c["primary"] for c in listed] == [True, False]
    one = api.ok("GET", f"/api/clients/{listed[1]['id']}")
    assert one["id"] == listed[1]["id"]
    server = api.ok("GET", "/api/server")
    assert server["clients_connected"] == 2 and server["endpoints"]["port"] == srv.port
    assert sum(server["render"]["encodes"].values()) >= 1 and server["render"]["draws_sent"] > 0
    wait_until(lambda: any(c["bytes_per_second"] > 0 for c in api.ok("GET", "/api/clients")))


def test_disconnect_really_disconnects(admin):
    srv, api, (a, b) = admin
    ids = [c["id"] for c in api.ok("GET", "/api/clients")]
    assert api.ok("POST", f"/api/clients/{ids[1]}/disconnect") == {"disconnected": ids[1]}
    b.wait_event("channel", channel="main", what="closed")
    b.wait_event("channel", channel="display", what="closed")  # all its channels go
    wait_until(lambda: [c["id"] for c in api.ok("GET", "/api/clients")] == [ids[0]])
    assert a.stats()["marks"] == 1 and a.channel_events("main") == ["opened"]


def test_view_only_drops_input(admin):
    srv, api, (a, b) = admin
    ids = [c["id"] for c in api.ok("GET", "/api/clients")]
    assert api.ok("PATCH", f"/api/clients/{ids[1]}", {"view_only": True})["view_only"] is True
    b.send("position 300 600 0")
    b.send("press 1 1")
    b.send("position 340 600 1")
    b.send("release 1 0")
    c = wait_until(lambda: (c := api.ok("GET", f"/api/clients/{ids[1]}"))["input_dropped"] >= 3 and c)
    assert c["view_only"] is True
    assert api.ok("GET", "/api/server")["source_state"]["strokes"] == 0
    assert api.ok("PATCH", f"/api/clients/{ids[1]}", {"view_only": False})["view_only"] is False


def test_multiple_clients_off_then_new_client_replaces_all(admin, spawn):
    srv, api, (a, b) = admin
    assert api.ok("PATCH", "/api/settings", {"allow_multiple_clients": False}) == {"allow_multiple_clients": False}
    assert api.ok("GET", "/api/settings") == {"allow_multiple_clients": False}
    c = spawn.client("--port", str(srv.port))
    c.wait_event("mark")
    a.wait_event("channel", channel="main", what="closed")
    b.wait_event("channel", channel="main", what="closed")
    wait_until(lambda: len(api.ok("GET", "/api/clients")) == 1)


def test_errors(admin):
    srv, api, _ = admin
    assert api.call("GET", "/api/clients", token=None)[0] == 401
    assert api.call("GET", "/api/clients", token="wrong-token-wrong-token")[0] == 401
    assert api.call("PATCH", "/api/settings", raw=b"{not json")[0] == 400
    assert api.call("PATCH", "/api/settings", body={"allow_multiple_clients": "yes"})[0] == 400
    assert api.call("PATCH", "/api/settings", body={"bogus": True})[0] == 400
    assert api.call("PATCH", "/api/clients/1", body={"view_only": True})[0] == 404
    assert api.call("GET", "/api/clients/999")[0] == 404
    assert api.call("GET", "/api/clients/not-a-number")[0] == 404
    assert api.call("POST", "/api/clients/999/disconnect")[0] == 404
    assert api.call("GET", "/api/nothing-here")[0] == 404
    status, body = api.call("POST", "/api/ticket", body={"password": "x" * 61})
    assert status == 400 and "60 bytes" in body["error"]
    # Errors are JSON with the status repeated inside.
    status, body = api.call("GET", "/api/clients/999")
    assert body == {"error": "no client 999", "status": 404}


def test_ticket_set_expire_clear(admin, spawn):
    srv, api, _ = admin
    api.ok("POST", "/api/ticket", {"password": "new-pass"})
    denied = spawn.client("--port", str(srv.port), "--password", "wrong")
    denied.wait_event("channel", channel="main", what="error-auth")
    ok = spawn.client("--port", str(srv.port), "--password", "new-pass")
    ok.wait_event("mark")
    t = api.ok("POST", "/api/ticket", {"expires": 0})
    assert t["enabled"] and t["expired"]
    late = spawn.client("--port", str(srv.port), "--password", "new-pass")
    late.wait_event("channel", channel="main", what="error-auth")
    assert api.ok("POST", "/api/ticket", {"password": None}) == {"enabled": False, "expires": None, "expired": False}
    free = spawn.client("--port", str(srv.port))
    free.wait_event("mark")


def test_connection_file(admin, tmp_path):
    srv, api, _ = admin
    api.ok("POST", "/api/ticket", {"password": "vv-pass"})
    status, text = api.call("GET", "/api/connection.vv")
    assert status == 200
    lines = text.splitlines()
    assert lines[0] == "[virt-viewer]" and "type=spice" in lines and f"port={srv.port}" in lines and "host=127.0.0.1" in lines
    assert not any(line.startswith("password=") for line in lines)
    status, text = api.call("GET", "/api/connection.vv?password=1")
    assert "password=vv-pass" in text.splitlines()
    assert api.call("GET", "/api/connection.vv", token=None)[0] == 401


def test_openapi_matches_routes(admin):
    from admin_ui.app import AdminApp

    srv, api, _ = admin
    doc = api.ok("GET", "/api/openapi.json")
    assert doc["openapi"].startswith("3.")
    documented = {(path, m.upper()) for path, ops in doc["paths"].items() for m in ops}
    routed = set()
    for rule in AdminApp.app.url_map.iter_rules():
        path = rule.rule.replace("<client_id>", "{client_id}")
        if rule.methods is None:  # the JSON 404 catch-all under /api/
            continue
        if path.startswith("/api/") and path != "/api/openapi.json":
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed


def test_generated_token_file_is_private(spawn, tmp_path):
    port = free_port()
    srv = spawn.server("--admin-port", str(port))
    path = [line.split("admin token in ", 1)[1].strip() for line in srv.log().splitlines() if "admin token in" in line][0]
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        token = open(path).read().strip()
        assert len(token) >= 32
        assert Api(port, token).call("GET", "/api/server")[0] == 200
        assert Api(port, token[:-1] + "x").call("GET", "/api/server")[0] == 401
    finally:
        os.unlink(path)
