"""TLS policy with QEMU's names (--tls-channel, --plaintext-channel), TLS 1.2 or newer,
--tls-ciphers, client certificates (--tls-client-ca), and the admin site over TLS."""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.admin import TOKEN, Api, write_token
from support.processes import ROOT, as_rgb, free_port, wait_until
from support.rawclient import read_reply, recv_exact

from spice_twisted.wire.client_link import link_message, ticket_message
from spice_twisted.wire.enums import ChannelType, LinkError


def _tls_server(spawn, certs, *args: str, path=None, **kw):
    base = ["--cert", str(certs["cert"]), "--key", str(certs["key"])]
    if path is not None:
        base += ["--source", f"image:{path}"]
    return spawn.server(*base, *args, tls_port=free_port(), **kw)


def _tls_socket(port: int, ca: Path, **kw) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    for k, v in kw.items():
        if k == "cert":
            ctx.load_cert_chain(*v)
        elif k == "ciphers":
            ctx.set_ciphers(v)
        else:
            setattr(ctx, k, v)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _link_result(sock: socket.socket, channel: int = ChannelType.MAIN, connection_id: int = 0) -> int:
    sock.sendall(link_message(channel, connection_id))
    reply = read_reply(sock)
    if reply["error"]:
        return reply["error"]
    sock.sendall(ticket_message(reply["pub_key"], b""))
    return struct.unpack("<I", recv_exact(sock, 4))[0]


def _channels_tls(api: Api) -> dict[str, bool]:
    clients = api.ok("GET", "/api/clients")
    return {ch["channel"]: ch["tls"] for c in clients for ch in c["channels"]}


@pytest.mark.parametrize(
    "policy,expect",
    [
        (["--tls-channel", "main"], {"main": True, "display": False, "inputs": False, "cursor": False}),
        (["--tls-channel", "default", "--plaintext-channel", "inputs"], {"main": True, "display": True, "inputs": False, "cursor": True}),
    ],
    ids=["main-only", "default-but-inputs"],
)
def test_spice_gtk_is_sent_to_tls_for_tls_channels(spawn, random_image, certs, tmp_path, policy, expect):
    """A plain link to a TLS channel gets NEED_SECURED; spice-gtk reconnects it over TLS."""
    path, rgb = random_image
    write_token(tmp_path / "admin-token")
    aport = free_port()
    srv = _tls_server(spawn, certs, *policy, "--admin-port", str(aport), "--admin-token-file", str(tmp_path / "admin-token"), path=path)
    client = spawn.client("--port", str(srv.port), "--tls-port", str(srv.tls_port), "--ca-file", str(certs["ca"]))
    client.wait_event("mark")
    client.wait_event("channel", channel="inputs", what="opened")
    client.wait_quiet(0.3)
    assert np.array_equal(as_rgb(client.framebuffer()), rgb)
    api = Api(aport, TOKEN)
    wait_until(lambda: len(_channels_tls(api)) == 4, what="four channels")
    assert _channels_tls(api) == expect
    assert "NEED_SECURED" in srv.log()


def test_raw_links_get_need_secured_and_need_unsecured(spawn, certs):
    srv = _tls_server(spawn, certs, "--tls-channel", "main", "--plaintext-channel", "inputs")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        assert _link_result(s) == LinkError.NEED_SECURED
    with _tls_socket(srv.tls_port, certs["ca"]) as s:
        assert _link_result(s) == LinkError.OK
        s.sendall(b"")
        with _tls_socket(srv.tls_port, certs["ca"]) as t:
            assert _link_result(t, ChannelType.INPUTS, 12345) == LinkError.NEED_UNSECURED


def test_tls_below_1_2_is_refused(spawn, certs):
    srv = _tls_server(spawn, certs)
    with _tls_socket(srv.tls_port, certs["ca"], maximum_version=ssl.TLSVersion.TLSv1_2) as s:
        assert s.version() == "TLSv1.2"
        assert _link_result(s) == LinkError.OK
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # we mean it: an old client
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as exc:
            ctx.wrap_socket(raw).do_handshake()
    assert "VERSION" in str(exc.value).upper() or "ALERT" in str(exc.value).upper(), exc.value


def test_tls_ciphers(spawn, certs, tmp_path):
    srv = _tls_server(spawn, certs, "--tls-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256")
    tls12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}
    with _tls_socket(srv.tls_port, certs["ca"], ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", **tls12) as s:
        assert s.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    with pytest.raises(ssl.SSLError):
        _tls_socket(srv.tls_port, certs["ca"], ciphers="ECDHE-ECDSA-AES256-GCM-SHA384", **tls12)
    cmd = [sys.executable, "-m", "twisted", "spice", "--port", "0", "--tls-port", str(free_port()), "--admin-port", "0"]
    cmd += ["--cert", str(certs["cert"]), "--key", str(certs["key"]), "--tls-ciphers", "NO-SUCH-CIPHER"]
    r = subprocess.run(cmd, capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and "--tls-ciphers NO-SUCH-CIPHER" in r.stderr.decode(), r.stderr.decode()


def _client_ca(directory: Path) -> dict[str, Path]:
    """A CA for clients and one client certificate it signed."""
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("client CA"))
        .issuer_name(name("client CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("a viewer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": directory / "client-ca.pem", "cert": directory / "client-cert.pem", "key": directory / "client-key.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return out


def test_client_certificates(spawn, certs, tmp_path):
    cc = _client_ca(tmp_path)
    srv = _tls_server(spawn, certs, "--tls-client-ca", str(cc["ca"]), port=0)
    with _tls_socket(srv.tls_port, certs["ca"], cert=(str(cc["cert"]), str(cc["key"]))) as s:
        assert _link_result(s) == LinkError.OK
    # Without a certificate the handshake fails (TLS 1.3 reports it on the first read).
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with _tls_socket(srv.tls_port, certs["ca"]) as s:
            _link_result(s)


def test_admin_site_over_tls_has_secure_cookies(spawn, certs, tmp_path):
    write_token(tmp_path / "admin-token")
    aport = free_port()
    _tls_server(spawn, certs, "--admin-port", str(aport), "--admin-token-file", str(tmp_path / "admin-token"), "--admin-tls")
    base = f"https://localhost:{aport}"
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would win over s.verify
    s.verify = str(certs["ca"])
    form = s.get(base + "/login", timeout=10)
    assert "Secure" in form.headers["Set-Cookie"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = s.post(base + "/login", data={"csrf": csrf, "token": TOKEN}, timeout=10, allow_redirects=False)
    assert r.status_code == 302
    assert "spice_admin_session=" in r.headers["Set-Cookie"] and "Secure" in r.headers["Set-Cookie"]
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{aport}/login", timeout=5)  # no plain HTTP beside it


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tls-channel", "main"], "--tls-channel needs a --tls-port"),
        (["--tls-channel", "sound"], "--tls-channel: unknown channel 'sound'"),
        (["--tls-port", "PORT", "--tls-channel", "main", "--plaintext-channel", "main"], "named by both"),
        (["--tls-client-ca", "/nonexistent"], "--tls-client-ca: no such file"),
        (["--admin-tls"], "--admin-tls needs --cert and --key"),
    ],
)
def test_tls_option_errors(certs, tmp_path, args, message):
    args = [str(free_port()) if a == "PORT" else a for a in args]
    if "--tls-port" in args:
        args += ["--cert", str(certs["cert"]), "--key", str(certs["key"])]
    cmd = [sys.executable, "-m", "twisted", "spice", "--port", str(free_port()), *args]
    r = subprocess.run(cmd, capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and message in r.stderr.decode(), r.stderr.decode()
