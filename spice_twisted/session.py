"""Client sessions: one `Client` per remote client (its session id and channel clients), and
the registry of the connected ones.

Kept apart from server.py so the channels and the input router can be read against what a
session is without the server's policy; channels see a `Client` only through
`channels/interfaces.py`'s `ClientView`, so this module may name the channel classes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .link_estimate import LinkEstimate
from .ratelimit import address_key

if TYPE_CHECKING:
    from .channels.base import ChannelClient
    from .channels.main import MainChannelClient

# Stroke colours for the demo, one per client in order of arrival (RGB).
PALETTE = [(230, 40, 40), (30, 160, 60), (40, 90, 230), (200, 140, 0), (160, 40, 200), (0, 170, 170), (240, 100, 160), (90, 90, 90)]


@dataclass
class Client:
    """One remote client: a session id and the channel clients that joined it."""

    session_id: int
    address: str
    host: str = ""  # the peer's host, which the per-address client limit counts by
    connected_since: float = field(default_factory=time.time)
    main: MainChannelClient | None = None
    channels: list[ChannelClient] = field(default_factory=list)
    colour: tuple[int, int, int] = (0, 0, 0)
    view_only: bool = False
    view_only_locked: bool = False  # authenticated with the view-only password: stays view-only
    live: bool = False  # its main channel answered a PING: it reads what we send
    view_only_told: float | None = None  # monotonic: when it was last told its input is ignored
    input_events: int = 0
    input_dropped: int = 0
    pointer: tuple[int, int] = (0, 0)
    # Bandwidth, round trip and the WAN verdict (main channel's network test and pings, the
    # display channel's send rate); `link.subscribe(fn)` hears verdict changes.
    link: LinkEstimate = field(default_factory=LinkEstimate)


class ClientRegistry:
    """The connected clients by session id. Insertion order is seniority: the first client
    is the primary, which single-user things (agent, recording) belong to."""

    def __init__(self) -> None:
        self.clients: dict[int, Client] = {}
        self._seen = 0  # clients ever added: picks each one's colour

    def __len__(self) -> int:
        return len(self.clients)

    def __iter__(self) -> Iterator[Client]:
        return iter(self.clients.values())

    def get(self, session_id: int) -> Client | None:
        return self.clients.get(session_id)

    @property
    def primary(self) -> Client | None:
        """The longest-connected client."""
        return next(iter(self.clients.values()), None)

    def promote(self, session_id: int) -> None:
        """Hand control to `session_id`: it goes first, the others keep their order (in
        place: the server and the input router hold this very dict)."""
        client = self.clients.pop(session_id)
        rest = list(self.clients.items())
        self.clients.clear()
        self.clients[session_id] = client
        self.clients.update(rest)

    def new_session_id(self) -> int:
        """A random, non-zero session id no connected client has (ids are not guessable)."""
        while True:
            sid = secrets.randbits(32)
            if sid and sid not in self.clients:
                return sid

    def next_colour(self) -> tuple[int, int, int]:
        return PALETTE[self._seen % len(PALETTE)]

    def add(self, client: Client) -> None:
        self._seen += 1
        self.clients[client.session_id] = client

    def remove(self, client: Client) -> bool:
        """Forget `client`; False if it was not here (already gone)."""
        return self.clients.pop(client.session_id, None) is not None

    def from_address(self, host: str) -> list[Client]:
        """The clients from the same address as `host` (as the per-address limit counts)."""
        key = address_key(host) if host else None
        return [c for c in self.clients.values() if key is not None and address_key(c.host) == key]
