"""A real spice-gtk client against `twistd -n spice`: plain, TLS, tickets, both header kinds."""

from __future__ import annotations

import numpy as np
import pytest
from support.processes import as_rgb, free_port


def _connected_picture(client, expect: np.ndarray) -> None:
    client.wait_event("mark")
    client.wait_quiet(0.3)
    fb = client.framebuffer()
    assert fb.shape[:2] == expect.shape[:2]
    assert np.array_equal(as_rgb(fb), expect)


def test_plain_tcp_no_ticket_exact_pixels(spawn, random_image):
    path, rgb = random_image
    srv = spawn.server("--source", f"image:{path}", "--disable-ticketing")
    client = spawn.client("--port", str(srv.port))
    _connected_picture(client, rgb)
    ev = client.wait_event("primary-create")
    assert (ev["width"], ev["height"], ev["format"]) == (333, 217, 32)


def test_full_header_exact_pixels(spawn, random_image):
    path, rgb = random_image
    srv = spawn.server("--source", f"image:{path}", "--no-mini-header")
    client = spawn.client("--port", str(srv.port))
    _connected_picture(client, rgb)


def test_right_password_connects(spawn, random_image, tmp_path):
    path, rgb = random_image
    (tmp_path / "pw").write_text("s3cret-ticket\n")
    srv = spawn.server("--source", f"image:{path}", "--password-file", str(tmp_path / "pw"))
    client = spawn.client("--port", str(srv.port), "--password", "s3cret-ticket")
    _connected_picture(client, rgb)


def test_wrong_password_is_denied(spawn, random_image, tmp_path):
    path, _ = random_image
    (tmp_path / "pw").write_text("s3cret-ticket")
    srv = spawn.server("--source", f"image:{path}", "--password-file", str(tmp_path / "pw"))
    client = spawn.client("--port", str(srv.port), "--password", "wrong")
    ev = client.wait_event("channel", channel="main", what="error-auth")
    assert ev["error"]  # spice-gtk's own message for a refused ticket
    assert "PERMISSION_DENIED" in srv.log()
    assert not any(e.get("event") == "mark" for e in client.events)


def test_expired_ticket_is_denied(spawn, random_image, tmp_path):
    import time

    path, _ = random_image
    (tmp_path / "pw").write_text("pw")
    srv = spawn.server("--source", f"image:{path}", "--password-file", str(tmp_path / "pw"), "--ticket-expires", "0.5")
    time.sleep(0.6)
    client = spawn.client("--port", str(srv.port), "--password", "pw")
    client.wait_event("channel", channel="main", what="error-auth")
    assert "PERMISSION_DENIED" in srv.log()


@pytest.mark.parametrize("password", [None, "tls-pass"])
def test_tls_with_verified_certificate(spawn, random_image, certs, tmp_path, password):
    path, rgb = random_image
    args = ["--source", f"image:{path}", "--cert", str(certs["cert"]), "--key", str(certs["key"])]
    if password:
        (tmp_path / "pw").write_text(password)
        args += ["--password-file", str(tmp_path / "pw")]
    srv = spawn.server(*args, port=0, tls_port=free_port())
    cargs = ["--tls-port", str(srv.tls_port), "--ca-file", str(certs["ca"]), "--tls-only"]
    if password:
        cargs += ["--password", password]
    client = spawn.client(*cargs)
    _connected_picture(client, rgb)


def test_tls_client_refuses_unknown_ca(spawn, random_image, tmp_path):
    """The client really verifies: a CA that did not sign the server certificate fails TLS."""
    from support.certs import make_ca_and_server

    path, _ = random_image
    (tmp_path / "good").mkdir()
    (tmp_path / "other").mkdir()
    good, other = make_ca_and_server(tmp_path / "good"), make_ca_and_server(tmp_path / "other")
    srv = spawn.server("--source", f"image:{path}", "--cert", str(good["cert"]), "--key", str(good["key"]), port=0, tls_port=free_port())
    client = spawn.client("--tls-port", str(srv.tls_port), "--ca-file", str(other["ca"]), "--tls-only")
    ev = client.wait_for(lambda e: e.get("event") == "channel" and e.get("what", "").startswith("error"))
    assert ev["what"] in ("error-tls", "error-link", "error-connect")


def test_plain_and_tls_ports_together(spawn, random_image, certs):
    path, rgb = random_image
    srv = spawn.server("--source", f"image:{path}", "--cert", str(certs["cert"]), "--key", str(certs["key"]), tls_port=free_port())
    plain = spawn.client("--port", str(srv.port))
    tls = spawn.client("--tls-port", str(srv.tls_port), "--ca-file", str(certs["ca"]), "--tls-only")
    _connected_picture(plain, rgb)
    _connected_picture(tls, rgb)
