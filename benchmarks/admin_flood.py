"""Admin port flood: the server's file descriptors while N connections from one address
dribble a header line every second (the slowloris of issue 16), and whether a SPICE link
still completes meanwhile.

    .venv/bin/python benchmarks/admin_flood.py [--connections 400] [--seconds 15]

Starts a real `twistd -n spice` (this checkout) on free loopback ports with the default
admin limits, prints a markdown table. Before the admin limits, every flood connection
stayed open for good (411 descriptors after 15 s of a 400-connection flood).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import command_line, load_average, md_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spice_twisted.wire.client_link import link_message  # noqa: E402
from spice_twisted.wire.enums import ChannelType  # noqa: E402

SPICE_MAGIC = b"REDQ"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def spice_link_replies(port: int) -> bool:
    """A main-channel link request gets a link reply (the server accepted and answered)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(link_message(ChannelType.MAIN, 0))
            return s.recv(4)[:4] == SPICE_MAGIC
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="admin-flood-"))
    port, admin = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "twisted", "spice", "--port", str(port), "--admin-port", str(admin), "--ping-interval", "600"]
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        deadline = time.monotonic() + 30
        while f"starting on {admin}".encode() not in (tmp / "server.log").read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"server did not start: {(tmp / 'server.log').read_text()}")
            time.sleep(0.1)
        idle = fd_count(proc.pid)
        socks = []
        for _ in range(args.connections):
            try:
                s = socket.create_connection(("127.0.0.1", admin), timeout=2)
                s.sendall(b"GET / HTTP/1.1\r\n")
                socks.append(s)
            except OSError:
                pass
        start, peak, links = time.monotonic(), 0, []
        while time.monotonic() - start < args.seconds:
            for s in socks:
                try:
                    s.sendall(b"X-Dribble: 1\r\n")
                except OSError:
                    pass
            peak = max(peak, fd_count(proc.pid))
            links.append(spice_link_replies(port))
            time.sleep(1.0)
        after = fd_count(proc.pid)
        for s in socks:
            s.close()
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    print(f"`{command_line()}` (load {load_average()})\n")
    print(
        md_table(
            ["flood connections", "seconds", "fds idle", "fds peak", f"fds after {args.seconds:g} s", "SPICE links answered"],
            [[str(args.connections), f"{args.seconds:g}", str(idle), str(peak), str(after), f"{sum(links)}/{len(links)}"]],
        )
    )


if __name__ == "__main__":
    main()
