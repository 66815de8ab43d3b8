"""The connect block and the option aliases in-process: hosts a client can reach, URL forms."""

from __future__ import annotations

import shlex

import pytest
from support.processes import RefusingPort, free_port
from twisted.python import usage

from spice_twisted import connect
from spice_twisted.connect import ConnectInfo, spice_url
from spice_twisted.options import Options


def test_url_forms_are_remote_viewers():
    assert spice_url("127.0.0.1", port=5900) == "spice://127.0.0.1:5900"
    assert spice_url("127.0.0.1", tls_port=5901) == "spice://127.0.0.1?tls-port=5901"
    assert spice_url("h", port=1, tls_port=2) == "spice://h:1?tls-port=2"


@pytest.mark.parametrize(
    "listen,expected",
    [("127.0.0.1", ["127.0.0.1"]), ("::1", ["[::1]"]), ("192.0.2.7", ["192.0.2.7"]), ("localhost", ["localhost"])],
)
def test_a_listener_on_one_address_is_named_by_it(listen, expected):
    assert ConnectInfo(listen, 5900, 0).hosts == expected


def test_a_wildcard_listener_is_named_by_this_machines_addresses(monkeypatch):
    monkeypatch.setattr(connect, "_ipv4_interfaces", lambda: ["127.0.0.1", "192.0.2.10", "198.51.100.3"])
    monkeypatch.setattr(connect, "_ipv6_interfaces", lambda: ["::1", "fe80::1", "2001:db8::5"])
    info = ConnectInfo("0.0.0.0", 5900, 5901)
    assert info.hosts == ["192.0.2.10", "198.51.100.3"]  # never 0.0.0.0, nor loopback
    assert info.urls() == [
        "spice://192.0.2.10:5900",
        "spice://198.51.100.3:5900",
        "spice://192.0.2.10?tls-port=5901",
        "spice://198.51.100.3?tls-port=5901",
    ]
    assert ConnectInfo("::", 5900, 0).hosts == ["192.0.2.10", "198.51.100.3", "[2001:db8::5]"]  # no link-local


def test_a_wildcard_listener_on_a_machine_without_a_network_is_reached_on_loopback(monkeypatch):
    monkeypatch.setattr(connect, "machine_addresses", lambda ipv6: [])
    assert ConnectInfo("0.0.0.0", 5900, 0).urls() == ["spice://127.0.0.1:5900"]


def _cert_for(path, *dns: str):
    """A self-signed certificate whose subjectAltName holds exactly these DNS names."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_tls_url_uses_the_name_the_certificate_carries(tmp_path):
    """A loopback listener with a certificate for localhost only: the TLS URL says localhost."""
    _cert_for(tmp_path / "cert.pem", "localhost")
    info = ConnectInfo("127.0.0.1", 5900, 5901, cert_file=str(tmp_path / "cert.pem"), ca_file="/etc/ca file.pem")
    assert info.urls() == ["spice://127.0.0.1:5900", "spice://localhost?tls-port=5901"]
    commands = dict(info.viewer_commands())
    assert shlex.split(commands["TLS viewer"]) == ["remote-viewer", "--spice-ca-file=/etc/ca file.pem", "spice://localhost?tls-port=5901"]
    block = info.block("headline")
    assert "the certificate is for" not in block  # the chosen host matches it


def test_a_certificate_for_other_names_gets_a_note(tmp_path):
    _cert_for(tmp_path / "cert.pem", "spice.example.org", "spice2.example.org")
    block = ConnectInfo("192.0.2.10", 0, 5901, cert_file=str(tmp_path / "cert.pem")).block("headline")
    assert "TLS URL      spice://192.0.2.10?tls-port=5901" in block
    assert "(the certificate is for spice.example.org, spice2.example.org: a viewer checks the URL's host against it)" in block
    assert "--spice-ca-file=CA.pem" in block  # no CA known: the note says what the viewer needs


def test_block_has_each_fact_and_no_secret():
    info = ConnectInfo("127.0.0.1", 5900, 0, ticket="generated", admin_port=8081, admin_token_file="/run/t.token", view_only=True)
    block = info.block("serving demo (1024x768); how to connect:")
    assert "SPICE URL    spice://127.0.0.1:5900" in block
    assert "viewer       remote-viewer spice://127.0.0.1:5900" in block
    assert "admin site   http://127.0.0.1:8081/" in block
    assert "admin token in /run/t.token\n" in block
    assert ".vv file     http://127.0.0.1:8081/api/connection.vv" in block
    assert "printed once on the terminal" in block and "view-only" in block


def _parse(*args: str) -> Options:
    o = Options()
    o.parseOptions(["--port", str(free_port()), "--admin-port", "0", *args])
    return o


def test_qemu_and_x11spice_names_set_our_options(certs):
    o = _parse(
        "--addr",
        "127.0.0.1",
        "--viewonly",
        "--x509-cert-file",
        str(certs["cert"]),
        "--x509-key-file",
        str(certs["key"]),
        "--x509-cacert-file",
        str(certs["ca"]),
    )
    assert o["listen"] == "127.0.0.1" and o["view-only"]
    assert (o["cert"], o["key"], o["tls-ca"]) == (str(certs["cert"]), str(certs["key"]), str(certs["ca"]))
    assert o["tls-context"] is not None
    same = _parse("--addr", "127.0.0.1", "--listen", "127.0.0.1")  # the same value twice is fine
    assert same["listen"] == "127.0.0.1"


def test_x509_dir_files_and_a_file_given_on_its_own_wins(tmp_path, certs):
    pki = tmp_path / "pki"
    pki.mkdir()
    for src, name in ((certs["ca"], "ca-cert.pem"), (certs["cert"], "server-cert.pem"), (certs["key"], "server-key.pem")):
        (pki / name).write_bytes(src.read_bytes())
    o = _parse("--x509-dir", str(pki))
    assert (o["cert"], o["key"], o["tls-ca"]) == (str(pki / "server-cert.pem"), str(pki / "server-key.pem"), str(pki / "ca-cert.pem"))
    o = _parse("--x509-dir", str(pki), "--x509-cacert-file", str(certs["ca"]))
    assert o["tls-ca"] == str(certs["ca"]) and o["cert"] == str(pki / "server-cert.pem")
    (pki / "ca-cert.pem").unlink()  # without it the server still serves TLS; .vv files carry no CA
    assert _parse("--x509-dir", str(pki))["tls-ca"] is None


def test_abbreviations_raise_in_process_too():
    with pytest.raises(usage.UsageError, match="unknown option --password-fil; did you mean --password-file"):
        _parse("--password-fil", "x")
    with pytest.raises(usage.UsageError, match="--password is not accepted"):
        _parse("--password", "x")


def test_values_that_look_like_options_are_values(tmp_path, monkeypatch):
    """getopt's own walk: an option's value is never checked as an option name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "--weird").write_text("pw\n")
    o = _parse("--password-file", "--weird", "-s0")
    assert o["ticket"].accepts(b"pw") and o["tls-port"] == 0


def test_the_block_does_not_present_a_vms_stand_in_size_as_its_size(spawn, tmp_path):
    """A VM source knows its size only once the VM's surface arrives: the block says the
    800x600 it shows until then is a stand-in (the VM may well be 720x400)."""
    vm = RefusingPort()  # nothing listens: the source waits
    vm_port = vm.port
    pw = tmp_path / "pw"
    pw.write_text("a-password\n")
    pw.chmod(0o600)
    srv = spawn.server("--source", f"spice://127.0.0.1:{vm_port}", "--password-file", str(pw))
    headline = next(line for line in srv.log().splitlines() if "how to connect:" in line)
    assert headline.endswith(f"serving spice://127.0.0.1:{vm_port} (800x600 until connected, then its own size); how to connect:")
    demo = spawn.server("--source", "demo", "--password-file", str(pw))
    assert "serving demo (1024x768); how to connect:" in demo.log()  # a source that knows its size
