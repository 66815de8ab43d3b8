"""Real spice-gtk clients, each through its own wire tap (tests/support/tap.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tap import TapConnection, WireTap


def connect(
    server: Any, tap_for: Callable[..., tuple[WireTap, Any]], n: int, *client_args: str
) -> tuple[list[WireTap], list, list[TapConnection]]:
    """n clients through n taps, each shown its first screen; their display connections."""
    pairs = [tap_for(server, *client_args) for _ in range(n)]
    clients = [c for _, c in pairs]
    for c in clients:
        c.wait_event("mark")
    conns = [t.display() for t, _ in pairs]
    assert len({c.connection_id for c in conns}) == n  # one session per tap
    return [t for t, _ in pairs], clients, conns
