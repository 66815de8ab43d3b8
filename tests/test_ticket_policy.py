"""Who must give a ticket (issue 16, items 7 and 8), against real server processes:
TLS encrypts but does not authenticate, so a public TLS-only listener needs a ticket or
client certificates; a source that drives a real desktop (x11, a VM) needs a ticket even
on loopback. --disable-ticketing is the one way to say no ticket, knowingly."""

from __future__ import annotations

import pytest
from support.admin import TOKEN, Api, write_token
from support.processes import free_port, wait_match
from test_tls_policy import _client_ca, _link_result, _tls_socket

from spice_twisted.wire.enums import LinkError

DESKTOP_RULE = "takes keyboard and mouse input into a real desktop"


def _public_tls(spawn, certs, *args: str):
    return spawn.server(
        "--listen", "0.0.0.0", "--cert", str(certs["cert"]), "--key", str(certs["key"]), *args, port=0, tls_port=free_port()
    )


@pytest.fixture
def xvfb(xvfb_factory):
    return xvfb_factory(size=(640, 480), solid="#336699")


# --- 7. a public TLS-only listener ---------------------------------------------------------------
def test_public_tls_only_listener_without_a_ticket_is_refused(spawn, certs):
    with pytest.raises(RuntimeError, match="TLS encrypts but does not say who connects") as err:
        _public_tls(spawn, certs)
    assert "--tls-client-ca" in str(err.value) and "Traceback" not in str(err.value)


def test_public_tls_only_listener_with_client_certificates_needs_no_ticket(spawn, certs, tmp_path):
    cc = _client_ca(tmp_path)
    srv = _public_tls(spawn, certs, "--tls-client-ca", str(cc["ca"]))
    with _tls_socket(srv.tls_port, certs["ca"], cert=(str(cc["cert"]), str(cc["key"]))) as s:
        assert _link_result(s) == LinkError.OK
    with pytest.raises(OSError):  # no certificate: no link (TLS 1.3 reports it on the first read)
        with _tls_socket(srv.tls_port, certs["ca"]) as s:
            _link_result(s)


# --- 8. sources that drive a real desktop --------------------------------------------------------
def test_x11_source_without_a_ticket_is_refused_even_on_loopback(spawn, xvfb):
    with pytest.raises(RuntimeError, match=DESKTOP_RULE) as err:
        spawn.server("--source", f"x11:{xvfb.display}")
    assert "--disable-ticketing" in str(err.value) and "Traceback" not in str(err.value)


def test_vm_source_without_a_ticket_is_refused_even_on_loopback(spawn):
    with pytest.raises(RuntimeError, match=DESKTOP_RULE):
        spawn.server("--source", f"spice://127.0.0.1:{free_port()}")


def test_x11_source_with_a_ticket_lets_only_its_holders_in_and_keeps_it(spawn, xvfb, tmp_path):
    (tmp_path / "pw").write_text("desk-ticket\n")
    (tmp_path / "pw").chmod(0o600)
    write_token(tmp_path / "admin-token")
    aport = free_port()
    srv = spawn.server(
        "--source",
        f"x11:{xvfb.display}",
        "--password-file",
        str(tmp_path / "pw"),
        "--admin-port",
        str(aport),
        "--admin-token-file",
        str(tmp_path / "admin-token"),
    )
    stranger = spawn.client("--port", str(srv.port))
    stranger.wait_event("channel", channel="main", what="error-auth", timeout=30)
    holder = spawn.client("--port", str(srv.port), "--password", "desk-ticket")
    holder.wait_event("mark", timeout=30)
    wait_match(xvfb.root_image, [holder], "the X root window")
    # The admin site cannot clear it: that would open the desktop to every local user.
    status, out = Api(aport, TOKEN).call("POST", "/api/ticket", {"password": None})
    assert status == 400 and "cannot be cleared" in out["error"]


def test_x11_source_with_disable_ticketing_starts(spawn, xvfb):
    srv = spawn.server("--source", f"x11:{xvfb.display}", "--disable-ticketing")
    client = spawn.client("--port", str(srv.port))
    client.wait_event("mark", timeout=30)
