"""Agent benchmark with real spice-gtk clients on the demo (a harness server, as the tests
start it):

- file transfer: one client sends a file of SIZE MiB (file_copy_async) into
  --file-xfer-dir; seconds from the command to spice-gtk's "done", and MiB/s. The agent's
  flow control is 10 tokens of 2048-byte AGENT_DATA, returned 5 at a time.
- clipboard fan-out: client A copies TEXT KiB of text; each of the N other clients pastes
  it (waits for the grab, requests, receives): seconds until the last has it.

One run on a shared machine: read orders of magnitude, not digits; nothing asserts them.

    .venv/bin/python benchmarks/agent.py [--file-mib 20] [--text-kib 1024] [--clients 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import command_line, cpu_model, load_average, md_table  # noqa: E402
from support.processes import GtkClient, HarnessServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file-mib", type=int, default=20)
    ap.add_argument("--text-kib", type=int, default=1024)
    ap.add_argument("--clients", type=int, default=3, help="clients that paste (besides the one that copies)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    drop = tmp / "drop"
    drop.mkdir()
    server = HarnessServer("--file-xfer-dir", str(drop), "--file-xfer-max-size", f"{args.file_mib + 1}M", tmp=tmp, paused=True)
    clients = []
    try:
        for _ in range(args.clients + 1):
            c = GtkClient("--port", str(server.port), tmp=tmp)
            c.wait_event("mark", timeout=60)
            c.wait_event("agent", connected=True, timeout=60)
            clients.append(c)
        a, others = clients[0], clients[1:]
        time.sleep(1.0)  # caps exchanged
        src = tmp / "payload.bin"
        src.write_bytes(os.urandom(args.file_mib << 20))
        t0 = time.monotonic()
        a.command(f"send_file {src}", "send_file")
        done = a.wait_event("file-done", timeout=600)
        file_s = time.monotonic() - t0
        assert done["ok"] and (drop / "payload.bin").stat().st_size == args.file_mib << 20, done

        text = "y" * (args.text_kib << 10)
        t0 = time.monotonic()
        a.command(f"clip_copy 0 {text}", "clip_copy", timeout=120)
        for c in others:
            c.wait_for(lambda e: e.get("event") == "clip-grab", timeout=120)
            c.command("clip_request 0 1", "clip_request")
        for c in others:
            got = c.wait_for(lambda e: e.get("event") == "clip-data", timeout=120)
            assert got["size"] == len(text), got["size"]
        clip_s = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
        server.close()
    rows = [
        [f"file transfer, {args.file_mib} MiB, 1 client", f"{file_s:.2f}", f"{args.file_mib / file_s:.1f} MiB/s"],
        [
            f"clipboard, {args.text_kib} KiB to {args.clients} clients",
            f"{clip_s:.2f}",
            f"{args.text_kib * args.clients / 1024 / clip_s:.1f} MiB/s out",
        ],
    ]
    print(md_table(["what", "seconds", "rate"], rows))
    print(f"\n{cpu_model()}, load {load_average()}; `{command_line()}`")


if __name__ == "__main__":
    main()
