"""--view-only-password-file: clients that give the view-only password only watch, however they
reconnect; an admin cannot let them drive; their channels cannot join a full session."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from support.admin import TOKEN, Api, write_token
from support.hostile import link, main_session
from support.processes import ROOT, as_rgb, free_port, wait_until

from spice_twisted.wire.enums import ChannelType, LinkError


@pytest.fixture
def served(spawn, random_image, tmp_path):
    path, rgb = random_image
    for name, text in (("pw", "full-password"), ("vpw", "watch-only")):
        (tmp_path / name).write_text(text + "\n")
        (tmp_path / name).chmod(0o600)
    write_token(tmp_path / "admin-token")
    aport = free_port()
    srv = spawn.server(
        "--source",
        f"image:{path}",
        "--password-file",
        str(tmp_path / "pw"),
        "--view-only-password-file",
        str(tmp_path / "vpw"),
        "--admin-port",
        str(aport),
        "--admin-token-file",
        str(tmp_path / "admin-token"),
    )
    return srv, Api(aport, TOKEN), rgb


def _client(spawn, srv, password):
    c = spawn.client("--port", str(srv.port), "--password", password)
    c.wait_event("mark")
    c.wait_event("channel", channel="inputs", what="opened")
    return c


def test_view_only_password_watches_however_it_reconnects(served, spawn):
    srv, api, rgb = served
    for _ in range(2):  # and again after a reconnect
        viewer = _client(spawn, srv, "watch-only")
        viewer.wait_quiet(0.3)
        assert np.array_equal(as_rgb(viewer.framebuffer()), rgb)
        (info,) = api.ok("GET", "/api/clients")
        assert info["view_only"] is True and info["view_only_ticket"] is True
        viewer.send("key 30")
        cid = info["id"]
        wait_until(lambda cid=cid: api.ok("GET", f"/api/clients/{cid}")["input_dropped"] >= 2, what="the key dropped")
        status, out = api.call("PATCH", f"/api/clients/{info['id']}", {"view_only": False})
        assert status == 409 and "view-only password" in out["error"]
        viewer.close()
        wait_until(lambda: api.ok("GET", "/api/clients") == [], what="the viewer gone")
    driver = _client(spawn, srv, "full-password")
    (info,) = api.ok("GET", "/api/clients")
    assert info["view_only"] is False and info["view_only_ticket"] is False
    driver.send("key 30")
    wait_until(lambda: api.ok("GET", f"/api/clients/{info['id']}")["input_events"] >= 2, what="the key taken")
    assert "watch-only" not in srv.log() and "full-password" not in srv.log()


def test_view_only_channels_cannot_join_a_full_session(served):
    srv, api, _ = served
    main, sid = main_session(srv.port, b"full-password")
    s, result = link(srv.port, b"watch-only", ChannelType.INPUTS, sid)
    assert result == LinkError.PERMISSION_DENIED
    s.close()
    s, result = link(srv.port, b"full-password", ChannelType.INPUTS, sid)
    assert result == LinkError.OK
    # The full password may join a view-only session; the session stays view-only.
    vmain, vsid = main_session(srv.port, b"watch-only")
    s, result = link(srv.port, b"full-password", ChannelType.INPUTS, vsid)
    assert result == LinkError.OK
    assert api.ok("GET", f"/api/clients/{vsid}")["view_only"] is True
    status, out = api.call("POST", "/api/ticket", {"password": "watch-only"})
    assert status == 400 and "view-only password" in out["error"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--view-only-password-file", "VPW"], "needs a full ticket beside it"),
        (["--password-file", "VPW", "--view-only-password-file", "VPW"], "holds the full password"),
        (["--password-file", "PW", "--view-only-password-file", "/nonexistent"], "--view-only-password-file: No such file"),
    ],
)
def test_view_only_password_option_errors(tmp_path, args, message):
    (tmp_path / "pw").write_text("a\n")
    (tmp_path / "vpw").write_text("b\n")
    args = [str(tmp_path / "vpw") if a == "VPW" else str(tmp_path / "pw") if a == "PW" else a for a in args]
    cmd = [sys.executable, "-m", "twisted", "spice", "--port", str(free_port()), "--admin-port", "0", *args]
    r = subprocess.run(cmd, capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and message in r.stderr.decode(), r.stderr.decode()
