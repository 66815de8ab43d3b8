"""The first five minutes: the start-up block's URLs work as printed, the demo tells its
real address, and the options SPICE users know (QEMU's, x11spice's) behave as documented."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import urllib.request

import numpy as np
import pytest
from support.processes import ROOT, _env, as_rgb, free_port, wait_until
from support.startup import TWISTD, TwistdRun, connect_block, field

from spice_twisted.sources.demo import WELCOME, DemoSource


@pytest.fixture
def run(tmp_path):
    """run(*args, ...) starts real twistd (TwistdRun) and stops it at the end of the test."""
    started: list[TwistdRun] = []

    def start(*args: str, **kw) -> TwistdRun:
        r = TwistdRun(*args, tmp=tmp_path, **kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def twistd(*args: str, cwd, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """A short run that is to fail: on a free port, without the admin site (later options win)."""
    argv = [*TWISTD, "-n", "--pidfile=", "spice", "--port", str(free_port()), "--admin-port", "0", *args]
    return subprocess.run(argv, input=stdin or b"", capture_output=True, env=_env(), cwd=str(cwd), timeout=timeout)


def _exact_picture(client, rgb: np.ndarray) -> None:
    client.wait_event("mark")
    client.wait_quiet(0.3)
    assert np.array_equal(as_rgb(client.framebuffer()), rgb)


# --- the block, as printed ------------------------------------------------------------------
def test_printed_url_connects_a_real_client_exactly(spawn, random_image):
    path, rgb = random_image
    admin_port = free_port()
    srv = spawn.server("--source", f"image:{path}", "--admin-port", str(admin_port))
    block = wait_until(lambda: "how to connect:" in srv.log() and connect_block(srv.log()), what="the connect block")
    urls = field(block, "SPICE URL")
    assert urls == [f"spice://127.0.0.1:{srv.port}"]
    # The viewer command is exactly the URL after remote-viewer: what a user pastes.
    (viewer,) = field(block, "viewer")
    assert shlex.split(viewer) == ["remote-viewer", urls[0]]
    assert "virt-viewer" in block  # which package the viewer comes in
    client = spawn.client("--uri", urls[0])
    _exact_picture(client, rgb)

    # The admin URL, the token file and the .vv download URL printed there all work.
    (admin,) = field(block, "admin site")
    assert admin == f"http://127.0.0.1:{admin_port}/"
    token_path = re.search(r"admin token in (\S+)$", block, re.M).group(1)
    token = open(token_path).read().strip()
    (vv_url,) = field(block, ".vv file")
    req = urllib.request.Request(vv_url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        vv = r.read().decode()
    assert "host=127.0.0.1" in vv and f"port={srv.port}" in vv
    with urllib.request.urlopen(admin + "login", timeout=10) as r:
        assert r.status == 200
    assert field(block, "password") == ["none: anyone on this machine can connect"]


def test_x509_dir_tls_url_and_viewer_command_connect_exactly(spawn, random_image, tmp_path):
    """QEMU's --x509-dir layout (ca-cert.pem, server-cert.pem, server-key.pem), TLS only:
    the printed TLS URL and the CA file in the printed remote-viewer command connect."""
    from support.certs import make_ca_and_server

    path, rgb = random_image
    pki = tmp_path / "pki"
    pki.mkdir()
    made = make_ca_and_server(pki)
    made["ca"].rename(pki / "ca-cert.pem")  # QEMU's name for it
    srv = spawn.server("--source", f"image:{path}", "--x509-dir", str(pki), port=0, tls_port=free_port())
    block = connect_block(srv.log())
    assert field(block, "SPICE URL") == []  # no plain port
    (url,) = field(block, "TLS URL")
    assert url == f"spice://127.0.0.1?tls-port={srv.tls_port}"
    assert field(block, "viewer") == []
    (viewer,) = field(block, "TLS viewer")
    argv = shlex.split(viewer)
    assert argv == ["remote-viewer", f"--spice-ca-file={pki / 'ca-cert.pem'}", url]
    client = spawn.client("--uri", argv[2], "--ca-file", argv[1].split("=", 1)[1])
    _exact_picture(client, rgb)


def test_demo_desktop_shows_the_address_it_is_served_on(spawn):
    srv = spawn.harness(paused=True)  # the ball stays where it starts
    block = wait_until(lambda: "how to connect:" in srv.stderr() and connect_block(srv.stderr()), what="the connect block")
    (url,) = field(block, "SPICE URL")
    assert url == f"spice://127.0.0.1:{srv.port}"
    client = spawn.client("--uri", url)
    client.wait_event("mark")
    client.wait_quiet(0.3)
    fb = as_rgb(client.framebuffer())
    text_rows = slice(WELCOME.top, WELCOME.top + 200)  # the text, above the ball's start (y 300)
    cols = slice(WELCOME.left, WELCOME.right)
    served = DemoSource(urls=[url]).canvas[..., [2, 1, 0]]
    assert np.array_equal(fb[text_rows, cols], served[text_rows, cols])
    other = DemoSource(urls=["spice://127.0.0.1:5900"]).canvas[..., [2, 1, 0]]
    assert not np.array_equal(fb[text_rows, cols], other[text_rows, cols])  # not the old fixed text


# --- passwords ----------------------------------------------------------------------------
def test_password_file_dash_reads_standard_input(run, spawn, random_image):
    path, rgb = random_image
    srv = run("--source", f"image:{path}", "--password-file", "-", stdin=b"from-stdin-pw\nnot this line\n")
    assert "read from standard input" in field(connect_block(srv.log()), "password")[0]
    good = spawn.client("--port", str(srv.port), "--password", "from-stdin-pw")
    _exact_picture(good, rgb)
    bad = spawn.client("--port", str(srv.port), "--password", "not this line")
    bad.wait_event("channel", channel="main", what="error-auth")


def test_password_file_dash_with_nothing_on_stdin_is_a_message(tmp_path):
    r = twistd("--password-file", "-", cwd=tmp_path)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("twistd spice: --password-file: standard input is empty")


def test_generated_password_printed_once_on_the_terminal_never_in_the_log(run, spawn, random_image, tmp_path):
    path, rgb = random_image
    logfile = tmp_path / "server.log"
    srv = run("--source", f"image:{path}", "--generate-password=20", logfile=logfile)
    printed = re.findall(r"^PASSWORD=(\S+)$", srv.stderr(), re.M)
    assert len(printed) == 1 and len(printed[0]) == 20
    password = printed[0]
    assert "generated" in field(connect_block(srv.log()), "password")[0]
    client = spawn.client("--port", str(srv.port), "--password", password)
    _exact_picture(client, rgb)
    srv.stop()
    assert password not in logfile.read_text() and password not in srv.stdout()


def test_generate_password_bare_takes_the_default_length(run, random_image):
    path, _ = random_image
    srv = run("--source", f"image:{path}", "--generate-password")
    (password,) = re.findall(r"^PASSWORD=(\S+)$", srv.stderr(), re.M)
    assert len(password) == 16 and password.isalnum()
    assert password not in srv.stdout()  # stdout is the log here (-n, no --logfile)


@pytest.mark.parametrize("args", [["--password", "hunter2"], ["--password=hunter2"]])
def test_password_on_the_command_line_is_refused_and_reads_no_file(tmp_path, args):
    """Documented: refused with a message naming --password-file. A FIFO named like the
    password proves no file is opened: opening it would block until the timeout."""
    os.mkfifo(tmp_path / "hunter2")
    r = twistd(*args, cwd=tmp_path, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 1
    assert err.startswith("twistd spice: --password is not accepted")
    assert "--password-file" in err and "--generate-password" in err
    assert "hunter2" not in err and "Traceback" not in err


# --- option names -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,message",
    [
        (["--password-fil", "x"], "unknown option --password-fil; did you mean --password-file?"),
        (["--list", "0.0.0.0"], "unknown option --list; did you mean --listen?"),
        (["--stats", "5"], "unknown option --stats; did you mean --stats-interval?"),
        (["--view"], "unknown option --view; did you mean --view-only or --viewonly or --view-only-password-file?"),
        (["--x509dir", "/tmp"], "did you mean --x509-dir?"),
        (["--logfile", "x.log"], "--logfile is an option of twistd itself: put it before 'spice'"),
        (["--port", "abc"], "--port: not a port number: 'abc'"),
        (["--stall-timeout", "soon"], "--stall-timeout: not a number: 'soon'"),
        (["--generate-password=100"], "--generate-password: length 100 out of range 1-60"),
        (["--generate-password", "--password-file", "pw"], "--password-file and --generate-password exclude each other"),
        (["--addr", "127.0.0.2", "--listen", "127.0.0.3"], "--addr and --listen are the same option"),
        (["--x509-dir", "/nonexistent"], "--x509-dir: no such directory"),
        (["--tls-port", "5999"], "--tls-port needs --cert (or --x509-cert-file, or --x509-dir)"),
    ],
)
def test_long_options_match_exactly_or_fail_clearly(tmp_path, args, message):
    r = twistd(*args, cwd=tmp_path)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 1
    assert err.startswith("twistd spice: "), err
    assert message in err, err
    assert "Traceback" not in out + err and str(ROOT) not in err and "/bin/" not in err.splitlines()[0]


def test_x509_dir_without_the_server_certificate_names_the_file(tmp_path):
    (tmp_path / "pki").mkdir()
    r = twistd("--tls-port", str(free_port()), "--x509-dir", str(tmp_path / "pki"), cwd=tmp_path)
    assert r.returncode == 1 and "--x509-dir: no server-cert.pem in" in r.stderr.decode()


def test_a_broken_certificate_is_a_message_not_a_traceback(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    r = twistd("--tls-port", str(free_port()), "--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "cert.pem"), cwd=tmp_path)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith("twistd spice: cannot use --cert") and "Traceback" not in err


def test_qemu_names_serve_tls_like_ours(spawn, random_image, certs):
    """--addr, --x509-cert-file, --x509-key-file, --x509-cacert-file: QEMU's names, same effect."""
    path, rgb = random_image
    srv = spawn.server(
        "--source",
        f"image:{path}",
        "--addr",
        "127.0.0.1",
        "--x509-cert-file",
        str(certs["cert"]),
        "--x509-key-file",
        str(certs["key"]),
        "--x509-cacert-file",
        str(certs["ca"]),
        tls_port=free_port(),
    )
    block = connect_block(srv.log())
    (tls_url,) = field(block, "TLS URL")
    (viewer,) = field(block, "TLS viewer")
    assert shlex.split(viewer) == ["remote-viewer", f"--spice-ca-file={certs['ca']}", tls_url]
    assert field(block, "SPICE URL") == [f"spice://127.0.0.1:{srv.port}"]  # the plain port too
    client = spawn.client("--uri", tls_url, "--ca-file", str(certs["ca"]), "--tls-only")
    _exact_picture(client, rgb)


def test_help_lists_the_new_options(tmp_path):
    r = subprocess.run([*TWISTD, "spice", "--help"], capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=60)
    for name in (
        "--addr",
        "--x509-dir",
        "--x509-cert-file",
        "--x509-key-file",
        "--x509-cacert-file",
        "--generate-password",
        "--view-only",
        "--admin-access-log",
    ):
        assert name in r.stdout, name
