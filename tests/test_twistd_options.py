"""`twistd spice` option handling: clear errors, never tracebacks; secure by default."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.processes import ROOT, _env


def run_twistd(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twisted", "spice", *args], capture_output=True, text=True, env=_env(), cwd=str(cwd), timeout=60
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--port", "abc"], "not a port number"),
        (["--port", "70000"], "out of range"),
        (["--source", "image:/nonexistent.png"], "cannot read image"),
        (["--source", "bogus"], "unknown source"),
        (["--tls-port", "5999"], "--tls-port needs --cert"),
        (["--password-file", "/nonexistent"], "--password-file"),
        (["--listen", "0.0.0.0"], "refusing to listen on non-loopback"),
        (["--port", "0"], "nothing to listen on"),
        (["--ticket-expires", "10"], "needs --password-file"),
        (["--stats-interval", "-1"], "must not be negative"),
        (["--admin-request-timeout", "0"], "--admin-request-timeout: must be positive"),
        (["--admin-max-connections", "0"], "--admin-max-connections: must be positive"),
        (["--image-compression", "glz4"], "use one of auto_glz, auto_lz, quic, glz, lz, lz4, off"),
        (["--streaming-video", "sometimes"], "use one of filter, all, off"),
        (["--video-codecs", "gstreamer:h265"], "list codecs from mjpeg, vp8"),
        (["--tls-port", "5999", "--cert", __file__, "--key", __file__, "--listen", "0.0.0.0"], "does not protect plain port"),
    ],
)
def test_bad_options_give_clear_errors(tmp_path, args, message):
    r = run_twistd(*args, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert message in out
    assert "Traceback" not in out


def test_empty_password_file_refused(tmp_path):
    (tmp_path / "pw").write_text("\n")
    r = run_twistd("--password-file", str(tmp_path / "pw"), cwd=tmp_path)
    assert r.returncode != 0 and "is empty" in r.stdout + r.stderr


def test_public_address_allowed_with_explicit_opt_out(spawn, random_image):
    """--disable-ticketing is the explicit way to serve a public address with no ticket."""
    path, _ = random_image
    srv = spawn.server("--source", f"image:{path}", "--listen", "0.0.0.0", "--disable-ticketing")
    client = spawn.client("--port", str(srv.port))
    client.wait_event("mark")


def test_qemu_on_off_forms_of_disable_ticketing(spawn, random_image, tmp_path):
    """QEMU writes disable-ticketing=on: --disable-ticketing=on is the flag, =off leaves it out."""
    path, _ = random_image
    srv = spawn.server("--source", f"image:{path}", "--listen", "0.0.0.0", "--disable-ticketing=on")
    assert "none: anyone who can reach a port can connect" in srv.log()
    client = spawn.client("--port", str(srv.port))
    client.wait_event("mark")
    r = run_twistd("--listen", "0.0.0.0", "--disable-ticketing=off", "--admin-port", "0", cwd=tmp_path)
    assert r.returncode == 1 and "refusing to listen on non-loopback address 0.0.0.0" in r.stderr, r.stderr
    r = run_twistd("--disable-ticketing=yes please", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith(
        "twistd spice: --disable-ticketing=yes please: use --disable-ticketing, or QEMU's --disable-ticketing=on or --disable-ticketing=off"
    ), r.stderr
    # =off is as if not given: it does not clash with a password file
    (tmp_path / "pw").write_text("a-password\n")
    (tmp_path / "pw").chmod(0o600)
    srv = spawn.server("--source", f"image:{path}", "--password-file", str(tmp_path / "pw"), "--disable-ticketing=off")
    client = spawn.client("--port", str(srv.port), "--password", "a-password")
    client.wait_event("mark")


def test_plugin_is_listed(tmp_path):
    r = subprocess.run([sys.executable, "-m", "twisted", "--help"], capture_output=True, text=True, env=_env(), cwd=str(ROOT), timeout=60)
    assert "spice" in r.stdout and "one display to many SPICE clients" in r.stdout.replace("\n", " ")


def test_port_in_use_is_a_message(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_twistd("--port", str(port), "--admin-port", "0", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and f"--port {port}: cannot listen on 127.0.0.1" in out and "Traceback" not in out


def test_public_tls_only_with_a_ticket_is_allowed(spawn, random_image, certs, tmp_path):
    """A public TLS-only listener with a ticket starts; only a client with the ticket gets in
    (without one it is refused at start: tests/test_ticket_policy.py)."""
    from support.processes import free_port

    path, _ = random_image
    (tmp_path / "pw").write_text("tls-ticket\n")
    (tmp_path / "pw").chmod(0o600)
    srv = spawn.server(
        "--source",
        f"image:{path}",
        "--listen",
        "0.0.0.0",
        "--cert",
        str(certs["cert"]),
        "--key",
        str(certs["key"]),
        "--password-file",
        str(tmp_path / "pw"),
        port=0,
        tls_port=free_port(),
    )
    client = spawn.client("--tls-port", str(srv.tls_port), "--ca-file", str(certs["ca"]), "--tls-only", "--password", "tls-ticket")
    client.wait_event("mark")


def test_password_file_with_a_control_character_is_refused(tmp_path):
    (tmp_path / "pw").write_bytes(b"tab\there\n")
    (tmp_path / "pw").chmod(0o600)
    r = run_twistd("--password-file", str(tmp_path / "pw"), "--admin-port", "0", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "control character" in out and "Traceback" not in out
