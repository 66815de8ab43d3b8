"""Input routing: which client may drive, where the pointer is, the lock LEDs.

Inputs channels hand every event here with the client it came from. View-only
clients' events are dropped and counted; the rest reach the source with an
`InputOrigin`, so a source can tell its users apart (the demo paints each
client's strokes in that client's colour).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .wire.enums import MouseMode
from .wire.scancodes import KeyEvent

if TYPE_CHECKING:
    from .render.cursor import CursorService
    from .session import Client

# Lock keys (set 1 scancodes) and the KEY_MODIFIERS bits they toggle.
LOCK_KEYS = {0x46: 1, 0x45: 2, 0x3A: 4}  # Scroll, Num, Caps


@dataclass(frozen=True)
class InputOrigin:
    session_id: int
    colour: tuple[int, int, int]


class InputSink(Protocol):
    """Where input goes: the display source (sources/base.py's `DisplaySource` has these)."""

    def pointer(self, origin: InputOrigin, x: int, y: int, buttons: int) -> None: ...
    def button(self, origin: InputOrigin, button: int, pressed: bool, x: int, y: int, buttons: int) -> None: ...
    def key(self, origin: InputOrigin, key: int, pressed: bool) -> None: ...
    def locks(self, modifiers: int) -> None: ...


class SurfaceSize(Protocol):
    """The display's size now (the render service): the shared pointer stays on it."""

    width: int
    height: int


class InputPolicy(Protocol):
    """What the router asks of the server's policy."""

    mouse_mode: MouseMode  # server mode: relative motion moves the one shared pointer

    def view_only_input(self, client: Client) -> None: ...  # tell a view-only client why nothing happens


class InputRouter:
    """Given only what it routes between: the source that takes input, the cursor it moves,
    the clients it tells of lock LEDs, the surface's size and the policy above."""

    def __init__(
        self, source: InputSink, cursor: CursorService, clients: Iterable[Client], surface: SurfaceSize, policy: InputPolicy
    ) -> None:
        self.source, self.cursor, self.clients, self.surface, self.policy = source, cursor, clients, surface, policy
        self.x = 0  # the shared pointer (server mouse mode)
        self.y = 0
        self.modifiers = 0

    def _allowed(self, client: Client, tell: bool = True) -> bool:
        """May this client drive? A view-only one's event is dropped, and it is told why
        (`tell`: not for lock LEDs, which spice-gtk reports by itself on focus)."""
        if client.view_only:
            client.input_dropped += 1
            if tell:
                self.policy.view_only_input(client)
            return False
        client.input_events += 1
        return True

    def _origin(self, client: Client) -> InputOrigin:
        return InputOrigin(client.session_id, client.colour)

    def _clamp(self, x: int, y: int) -> tuple[int, int]:
        r = self.surface
        return min(max(x, 0), r.width - 1), min(max(y, 0), r.height - 1)

    def motion(self, client: Client, dx: int, dy: int, buttons: int) -> None:
        """Relative motion: only meaningful in server mouse mode (as upstream)."""
        if self.policy.mouse_mode != MouseMode.SERVER or not self._allowed(client):
            return
        self.x, self.y = self._clamp(self.x + dx, self.y + dy)
        client.pointer = (self.x, self.y)
        self.source.pointer(self._origin(client), self.x, self.y, buttons)
        self.cursor.move(self.x, self.y)

    def position(self, client: Client, x: int, y: int, buttons: int, display_id: int) -> None:
        """Absolute position: only in client mouse mode; each client has its own pointer."""
        if self.policy.mouse_mode != MouseMode.CLIENT or display_id != 0 or not self._allowed(client):
            return
        x, y = self._clamp(x, y)
        client.pointer = (x, y)
        self.source.pointer(self._origin(client), x, y, buttons)

    def button(self, client: Client, button: int, pressed: bool, buttons: int) -> None:
        if not self._allowed(client):
            return
        x, y = client.pointer
        self.source.button(self._origin(client), button, pressed, x, y, buttons)

    def keys(self, client: Client, events: Iterable[KeyEvent]) -> None:
        n = 0
        if client.view_only:
            for _ in events:
                n += 1
            client.input_dropped += n
            if n:
                self.policy.view_only_input(client)
            return
        origin, key = self._origin(client), self.source.key
        for ev in events:
            n += 1
            key(origin, ev.key, ev.pressed)
            if ev.pressed and ev.key in LOCK_KEYS:
                self._set_modifiers(self.modifiers ^ LOCK_KEYS[ev.key], None)
        client.input_events += n

    def set_modifiers(self, client: Client, modifiers: int) -> None:
        """A client reports its lock LEDs (on focus); every other client is told."""
        if self._allowed(client, tell=False):
            self._set_modifiers(modifiers & 7, client)

    def source_locks(self, modifiers: int) -> None:
        """The source's own lock LEDs changed (a real keyboard on X): every client is told."""
        self._set_modifiers(modifiers & 7, None)

    def _set_modifiers(self, modifiers: int, source_client: Client | None) -> None:
        if modifiers == self.modifiers:
            return
        self.modifiers = modifiers
        self.source.locks(modifiers)
        for c in self.clients:
            if c is source_client:
                continue
            for cc in c.channels:
                send = getattr(cc, "send_modifiers", None)
                if send is not None:
                    send(modifiers)
