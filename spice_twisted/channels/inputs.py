"""The inputs channel: keys, lock LEDs, mouse motion/position and buttons from one client.

Everything goes to the server's input router, which knows whose input it is (view-only
clients are dropped there) and feeds the source. Motion is acknowledged every
SPICE_INPUT_MOTION_ACK_BUNCH messages, even when dropped, so the client keeps sending.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..wire.enums import ChannelType
from ..wire.link import LinkRequest
from ..wire.scancodes import KeyEvent, code_bytes, iter_scancodes
from .base import ChannelClient, ChannelHost

if TYPE_CHECKING:
    from ..inputs import InputRouter
    from .interfaces import ClientView

MOTION_ACK_BUNCH = 4
KEY_BATCH = 2048


class InputsChannelClient(ChannelClient):
    channel_type = ChannelType.INPUTS

    def __init__(
        self, host: ChannelHost, client: ClientView, request: LinkRequest, mini_header: bool, secure: bool, inputs: InputRouter
    ) -> None:
        self.inputs = inputs
        super().__init__(host, client, request, mini_header, secure)

    def on_connected(self) -> None:
        self.motions = 0
        self.send("INIT", {"keyboard_modifiers": self.inputs.modifiers})

    def _motion_received(self) -> None:
        self.motions += 1
        if self.motions % MOTION_ACK_BUNCH == 0:
            self.send("MOUSE_MOTION_ACK")

    def handle_MOUSE_MOTION(self, f: dict[str, Any]) -> None:
        self._motion_received()
        self.inputs.motion(self.client, f["dx"], f["dy"], f["buttons_state"])

    def handle_MOUSE_POSITION(self, f: dict[str, Any]) -> None:
        self._motion_received()
        self.inputs.position(self.client, f["x"], f["y"], f["buttons_state"], f["display_id"])

    def handle_MOUSE_PRESS(self, f: dict[str, Any]) -> None:
        self.inputs.button(self.client, f["button"], True, f["buttons_state"])

    def handle_MOUSE_RELEASE(self, f: dict[str, Any]) -> None:
        self.inputs.button(self.client, f["button"], False, f["buttons_state"])

    def handle_KEY_DOWN(self, f: dict[str, Any]) -> None:
        self.inputs.keys(self.client, iter_scancodes(code_bytes(f["code"])))

    handle_KEY_UP = handle_KEY_DOWN  # the release bit is in the code itself

    def handle_KEY_SCANCODE(self, f: dict[str, Any]) -> Iterator[None] | None:
        """Raw scancodes, possibly many keys in one message: handled KEY_BATCH at a time,
        each batch a step the channel may spread over reactor turns."""
        events = iter_scancodes(f["code"])
        if len(f["code"]) <= KEY_BATCH:
            self.inputs.keys(self.client, events)
            return None
        return self._key_steps(events)

    def _key_steps(self, events: Iterator[KeyEvent]) -> Iterator[None]:
        while batch := list(islice(events, KEY_BATCH)):
            self.inputs.keys(self.client, batch)
            yield

    def handle_KEY_MODIFIERS(self, f: dict[str, Any]) -> None:
        self.inputs.set_modifiers(self.client, f["modifiers"])

    def send_modifiers(self, modifiers: int) -> None:
        self.send("KEY_MODIFIERS", {"modifiers": modifiers})
