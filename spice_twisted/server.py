"""The SPICE server state: clients and their channels, the ticket, mouse mode, one render service."""

from __future__ import annotations

import secrets
import time
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from .channels.base import ChannelClient
from .channels.display import DisplayChannelClient
from .channels.main import MainChannelClient
from .render.service import RenderService
from .sources.base import DisplaySource
from .wire.enums import ChannelType, CommonCap, LinkError, MouseMode
from .wire.link import LinkRequest
from .wire.ticket import Ticket

CHANNEL_CLASSES: dict[ChannelType, type[ChannelClient]] = {
    ChannelType.MAIN: MainChannelClient,
    ChannelType.DISPLAY: DisplayChannelClient,
}


@dataclass
class Client:
    """One remote client: a session id and the channel clients that joined it."""

    session_id: int
    address: str
    connected_since: float = field(default_factory=time.time)
    main: MainChannelClient | None = None
    channels: list[ChannelClient] = field(default_factory=list)


class SpiceServer:
    log = Logger()

    def __init__(self, source: DisplaySource, ticket: Ticket, reactor: Any, mini_header: bool = True, name: str = "spice-twisted") -> None:
        self.source = source
        self.ticket = ticket
        self.reactor = reactor
        self.mini_header = mini_header
        self.name = name
        self.uuid = uuidlib.uuid4()
        self.render = RenderService(source.width, source.height)
        self.clients: dict[int, Client] = {}
        self.supported_mouse_modes = MouseMode.SERVER | MouseMode.CLIENT
        self.mouse_mode = MouseMode.SERVER
        self.started = time.monotonic()
        self.link_refusals: Counter[str] = Counter()

    def start(self) -> None:
        self.source.start(self.render)

    def stop(self) -> None:
        self.source.stop()
        for client in list(self.clients.values()):
            self.disconnect_client(client, "server stopping")

    def mm_time(self) -> int:
        """The multimedia clock (ms) that clients schedule stream frames against."""
        return int((time.monotonic() - self.started) * 1000) & 0xFFFFFFFF

    # --- link decisions ---------------------------------------------------------------
    def common_caps(self) -> frozenset[int]:
        caps = {CommonCap.AUTH_SELECTION, CommonCap.AUTH_SPICE}
        if self.mini_header:
            caps.add(CommonCap.MINI_HEADER)
        return frozenset(caps)

    def channel_caps(self, request: LinkRequest) -> frozenset[int]:
        return frozenset()

    def channel_list(self) -> list[tuple[int, int]]:
        return [(int(t), 0) for t in CHANNEL_CLASSES if t != ChannelType.MAIN]

    def check_link(self, request: LinkRequest, secure: bool) -> LinkError | None:
        ctype = request.known_channel
        if ctype not in CHANNEL_CLASSES or request.channel_id != 0:
            return LinkError.CHANNEL_NOT_AVAILABLE
        if ctype != ChannelType.MAIN and request.connection_id not in self.clients:
            return LinkError.BAD_CONNECTION_ID
        return None

    def stats_link_refused(self, error: LinkError) -> None:
        self.link_refusals[error.name] += 1

    # --- clients and channels -----------------------------------------------------------
    def _new_session_id(self) -> int:
        while True:
            sid = secrets.randbits(32)
            if sid and sid not in self.clients:
                return sid

    def create_channel_client(self, request: LinkRequest, mini_header: bool, secure: bool, peer: str) -> ChannelClient:
        ctype = ChannelType(request.channel_type)
        if ctype == ChannelType.MAIN:
            sid = request.connection_id
            if not sid or sid in self.clients:
                sid = self._new_session_id()
            client = Client(sid, peer)
            self.clients[sid] = client
            self.log.info("client {sid:#x} connected from {peer}", sid=sid, peer=peer)
        else:
            client = self.clients[request.connection_id]
        cc = CHANNEL_CLASSES[ctype](self, client, request, mini_header, secure)
        client.channels.append(cc)
        if isinstance(cc, MainChannelClient):
            client.main = cc
        return cc

    def channel_closed(self, cc: ChannelClient) -> None:
        if cc in cc.client.channels:
            cc.client.channels.remove(cc)

    def main_channel_closed(self, client: Client) -> None:
        """Closing a client's main channel closes all its channels."""
        if self.clients.pop(client.session_id, None) is None:
            return
        self.log.info("client {sid:#x} disconnected", sid=client.session_id)
        for cc in list(client.channels):
            cc.close("main channel closed")

    def disconnect_client(self, client: Client, reason: str) -> None:
        for cc in list(client.channels):
            cc.close(reason)

    # --- mouse ------------------------------------------------------------------------
    def request_mouse_mode(self, mode: MouseMode | None, client: Client) -> None:
        if mode is not None and mode & self.supported_mouse_modes:
            self.mouse_mode = mode
        for c in self.clients.values():
            if c.main is not None:
                c.main.send_mouse_mode()
