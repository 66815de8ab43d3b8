"""What channel clients are given, as narrow interfaces: channels/ never imports the server
or the session module, so neither can grow into an import cycle with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..link_estimate import LinkEstimate


class ClientView(Protocol):
    """The client session a channel belongs to, as channels see it (`session.Client` is one)."""

    session_id: int
    view_only: bool  # its input is dropped
    live: bool  # its main channel answered a PING (the main channel sets it)
    link: LinkEstimate  # bandwidth, round trip and WAN verdict, which channels measure and read
