"""The main channel: session setup (INIT), the channel list, mouse modes; no guest agent."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Protocol

from ..wire.enums import ChannelType, MainCap, MouseMode
from ..wire.link import LinkRequest
from .base import ChannelClient, ChannelHost

if TYPE_CHECKING:
    from ..server import Client

AGENT_TOKENS = 10


class MainSession(Protocol):
    """What the main channel needs of the server: the session-wide facts and decisions."""

    name: str
    uuid: uuid.UUID
    supported_mouse_modes: MouseMode
    mouse_mode: MouseMode

    def mm_time(self) -> int: ...
    def channel_list(self) -> list[tuple[int, int]]: ...
    def request_mouse_mode(self, mode: MouseMode | None, client: Client) -> None: ...
    def main_channel_closed(self, client: Client) -> None: ...


class MainChannelClient(ChannelClient):
    channel_type = ChannelType.MAIN

    def __init__(
        self, host: ChannelHost, client: Client, request: LinkRequest, mini_header: bool, secure: bool, session: MainSession
    ) -> None:
        self.session = session
        super().__init__(host, client, request, mini_header, secure)

    def on_connected(self) -> None:
        srv = self.session
        self.send(
            "INIT",
            {
                "session_id": self.client.session_id,
                "display_channels_hint": 1,
                "supported_mouse_modes": srv.supported_mouse_modes,
                "current_mouse_mode": srv.mouse_mode,
                "agent_connected": 0,
                "agent_tokens": AGENT_TOKENS,
                "multi_media_time": srv.mm_time(),
                "ram_hint": 64 << 20,
            },
        )
        if MainCap.NAME_AND_UUID in self.request.channel_caps:
            self.send("NAME", {"name": srv.name.encode() + b"\0"})
            self.send("UUID", {"uuid": srv.uuid.bytes})

    def handle_ATTACH_CHANNELS(self, fields: dict[str, Any]) -> None:
        self.send("CHANNELS_LIST", {"channels": [{"type": t, "id": i} for t, i in self.session.channel_list()]})

    def handle_MOUSE_MODE_REQUEST(self, fields: dict[str, Any]) -> None:
        self.session.request_mouse_mode(MouseMode(fields["mode"]) if fields["mode"] in (1, 2) else None, self.client)

    def send_mouse_mode(self) -> None:
        self.send("MOUSE_MODE", {"supported_modes": self.session.supported_mouse_modes, "current_mode": self.session.mouse_mode})

    # No guest agent: the client may still try to talk to one; upstream drops this too.
    def handle_AGENT_START(self, fields: dict[str, Any]) -> None:
        self.log.debug("{cc}: agent start ignored (no agent)", cc=self)

    def handle_AGENT_DATA(self, fields: dict[str, Any]) -> None:
        self.log.debug("{cc}: agent data dropped (no agent)", cc=self)

    def on_disconnected(self) -> None:
        self.session.main_channel_closed(self.client)
