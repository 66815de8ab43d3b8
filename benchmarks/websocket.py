"""What WebSocket costs the reactor: the PortRouter's pass-through for plain SPICE, and the
framing of server writes and unmasking of client frames for WebSocket (in-process).

    .venv/bin/python benchmarks/websocket.py [--seconds 1]

Prints a markdown table: writes per second and MB/s through the router for a plain SPICE
connection and for a WebSocket one, at the sizes the channels write (a small control
message, a 64 KiB image, a 256 KiB chunk), and client-to-server decoding in MB/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import command_line, cpu_model, md_table  # noqa: E402
from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import Message, Request  # noqa: E402

from spice_twisted.channels.link import PortRouter  # noqa: E402


class Sink:
    """The real transport's stand-in: counts what is written."""

    def __init__(self) -> None:
        self.bytes = 0
        self.first = b""

    def write(self, data: bytes) -> None:
        self.first = self.first or data  # the handshake's answer, for the client
        self.bytes += len(data)

    def writeSequence(self, seq: Any) -> None:
        for d in seq:
            self.bytes += len(d)


class Inner:
    """The link protocol's stand-in: takes bytes, needs limits for the router."""

    class limits:
        max_connection_buffer = 1 << 30

    websocket = False

    def __init__(self) -> None:
        self.received = 0

    def makeConnection(self, transport: Any) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)


def router(websocket: bool) -> tuple[PortRouter, Sink, Inner, WSConnection | None]:
    inner, sink = Inner(), Sink()
    r = PortRouter(inner)  # type: ignore[arg-type]
    r.transport = sink
    client = None
    if websocket:
        client = WSConnection(ConnectionType.CLIENT)
        r.dataReceived(client.send(Request(host="h", target="/", subprotocols=["binary"])))
        client.receive_data(sink.first)
        list(client.events())
    else:
        r.dataReceived(b"REDQ")
    return r, sink, inner, client


def rate(fn: Any, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=1.0)
    args = p.parse_args()
    rows = []
    for size in (64, 64 * 1024, 256 * 1024):
        payload = bytes(size)
        out = []
        for ws in (False, True):
            r, _, _, _ = router(ws)
            per_s = rate(lambda r=r, payload=payload: r.write(payload), args.seconds)
            out.append(per_s)
        rows.append(
            [
                f"write {size} B",
                f"{out[0]:,.0f}/s ({out[0] * size / 1e6:,.0f} MB/s)",
                f"{out[1]:,.0f}/s ({out[1] * size / 1e6:,.0f} MB/s)",
            ]
        )
    for size in (16, 4096):
        payload = bytes(size)
        out = []
        for ws in (False, True):
            r, _, inner, client = router(ws)
            data = client.send(Message(data=payload)) if client is not None else payload
            per_s = rate(lambda r=r, data=data: r.dataReceived(data), args.seconds)
            out.append(per_s)
        rows.append(
            [
                f"receive {size} B",
                f"{out[0]:,.0f}/s ({out[0] * size / 1e6:,.1f} MB/s)",
                f"{out[1]:,.0f}/s ({out[1] * size / 1e6:,.1f} MB/s)",
            ]
        )
    print(md_table(["operation", "plain SPICE through the router", "WebSocket"], rows))
    print(f"\n{cpu_model()}; `{command_line()}`")


if __name__ == "__main__":
    main()
