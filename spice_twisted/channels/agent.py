"""One client's side of the built-in agent: its AGENT_* messages, caps, clipboard requests
and file transfers. The main channel hands it AGENT_START, AGENT_DATA and AGENT_TOKEN; what
the messages mean for the desktop and the other clients is decided by the AgentHub
(agent_policy.py).

Outgoing agent messages wait in the sans-IO AgentLink (wire/agent.py) and enter the main
channel's pipe a few chunks at a time (IN_PIPE), as the client's tokens and the pipe's
writes allow: a 16 MiB clipboard never sits in the pipe as 8000 messages, and a client that
returns no tokens only fills its own bounded queue, then is disconnected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger

from ..file_xfer import FileReceiver, XferRefused
from ..wire.agent import AgentError, AgentLink, AgentMessage, caps_message, caps_of, decode_message, encode_message
from ..wire.enums import (
    AgentCap,
    AgentMsg,
    AgentReply,
    ClipboardSelection,
    FileXferStatus,
)
from ..wire.schema import WireError

if TYPE_CHECKING:
    from ..agent_policy import AgentHub

IN_PIPE = 4  # AGENT_DATA messages in the main channel's pipe at once
MAX_QUEUED = 48 * 1024 * 1024  # bytes of agent messages one client may have waiting for tokens
SELECTIONS = (ClipboardSelection.CLIPBOARD, ClipboardSelection.PRIMARY)


class AgentChannel(Protocol):
    """What the agent needs of its main channel."""

    def send(self, name: str, fields: dict[str, Any] | None = None) -> None: ...
    def abort(self, reason: str) -> None: ...


class ClientAgent:
    log = Logger()

    def __init__(self, hub: AgentHub, client: Any, channel: AgentChannel, grant: int, connected_tokens: bool = True) -> None:
        self.hub = hub
        self.client = client
        self.channel = channel
        self.grant = grant
        self.connected_tokens = connected_tokens  # the client has MAIN_CAP_AGENT_CONNECTED_TOKENS
        self.connected = hub.available  # what MAIN_INIT's agent_connected says
        self.link = AgentLink(grant, hub.max_clipboard, MAX_QUEUED)
        self.files = FileReceiver(hub.policy.file_xfer_dir, hub.policy.file_xfer_max_size)
        self.client_caps: frozenset[int] = frozenset()
        self.ready = False  # its caps arrived: we know how to talk to it
        self.requested: dict[int, int] = {}  # selection -> the clipboard type we asked it for
        self._in_pipe = 0
        self._pumping = False
        self.closed = False

    # --- what we announce ----------------------------------------------------------------
    def our_caps(self) -> frozenset[int]:
        caps = {AgentCap.REPLY, AgentCap.FILE_XFER_DETAILED_ERRORS}
        if self.hub.policy.clipboard != "none" and self.hub.clipboard_types:  # (a ClipboardMode, a str)
            caps |= {AgentCap.CLIPBOARD_BY_DEMAND, AgentCap.CLIPBOARD_SELECTION}
        if self.hub.desktop.can_resize:
            caps.add(AgentCap.MONITORS_CONFIG)
        if not self.files.enabled:
            caps.add(AgentCap.FILE_XFER_DISABLED)
        return frozenset(int(c) for c in caps)

    @property
    def selection_prefix(self) -> bool:
        """Clipboard messages carry the selection when both sides announced it."""
        return AgentCap.CLIPBOARD_SELECTION in self.our_caps() and AgentCap.CLIPBOARD_SELECTION in self.client_caps

    @property
    def clipboard(self) -> bool:
        return AgentCap.CLIPBOARD_BY_DEMAND in self.our_caps()

    # --- from the main channel -------------------------------------------------------------
    def attach(self) -> None:
        """The main channel is up: the hub knows this client from now on."""
        self.hub.attach(self)

    def start(self, tokens: int) -> None:
        if not self.connected:
            return  # no agent to start (MAIN_INIT or AGENT_DISCONNECTED said so): dropped
        self.link.start(tokens)
        self._queue(AgentMsg.ANNOUNCE_CAPABILITIES, caps_message(self.our_caps(), request=True))

    def set_connected(self, connected: bool) -> None:
        """The agent comes (AGENT_CONNECTED_TOKENS, or AGENT_CONNECTED for a client without
        that cap) or goes (AGENT_DISCONNECTED): either way this client's agent state starts
        over, its transfers are dropped, and the client sends AGENT_START again."""
        if connected == self.connected or self.closed:
            return
        self.connected = connected
        for t in self.files.drop_all():
            self.hub.file_refused(self, t.name, "the agent went away", "cancelled")
        self.link = AgentLink(self.grant, self.hub.max_clipboard, MAX_QUEUED)
        self.client_caps, self.ready, self.requested = frozenset(), False, {}
        if not connected:
            self.channel.send("AGENT_DISCONNECTED", {"error_code": 0})
        elif self.connected_tokens:
            self.channel.send("AGENT_CONNECTED_TOKENS", {"num_tokens": self.grant})
        else:
            self.channel.send("AGENT_CONNECTED")

    def data(self, body: bytes) -> None:
        for msg in self.link.receive(body):
            self._handle(msg)
            if self.closed:
                return
        n = self.link.returned()
        if n:
            self.channel.send("AGENT_TOKEN", {"num_tokens": n})

    def token(self, n: int) -> None:
        self.link.credit(n)
        self._pump()

    def chunk_written(self) -> None:
        self._in_pipe -= 1
        self._pump()

    def close(self) -> None:
        """The main channel is gone (or goes): drop its transfers (and their part files)."""
        if self.closed:
            return
        self.closed = True
        self.hub.detach(self)
        for t in self.files.drop_all():
            self.hub.file_refused(self, t.name, "the client disconnected", "cancelled")

    # --- receiving ---------------------------------------------------------------------------
    def _handle(self, msg: AgentMessage) -> None:
        try:
            kind = AgentMsg(msg.type)
        except ValueError:
            self.log.debug("{c}: unknown agent message type {t}", c=self, t=msg.type)
            return
        handler = getattr(self, "on_" + kind.name, None)
        if handler is None:
            return  # REPLY, MAX_CLIPBOARD, DISPLAY_CONFIG ...: nothing to do
        try:
            fields = decode_message(kind, msg.data, self.selection_prefix)
        except WireError as exc:
            raise AgentError(f"{kind.name}: {exc}") from None
        handler(fields)

    def _selection(self, fields: dict[str, Any]) -> int | None:
        sel = fields.get("selection", ClipboardSelection.CLIPBOARD)
        return sel if sel in SELECTIONS and self.clipboard else None

    def announce(self) -> None:
        """Our capabilities again (what the desktop can do changed)."""
        if self.ready:
            self._queue(AgentMsg.ANNOUNCE_CAPABILITIES, caps_message(self.our_caps(), request=False))

    def on_ANNOUNCE_CAPABILITIES(self, fields: dict[str, Any]) -> None:
        self.client_caps = caps_of(fields)
        if fields["request"]:
            self._queue(AgentMsg.ANNOUNCE_CAPABILITIES, caps_message(self.our_caps(), request=False))
        if not self.ready:
            self.ready = True
            self.hub.client_ready(self)

    def on_CLIPBOARD_GRAB(self, fields: dict[str, Any]) -> None:
        sel = self._selection(fields)
        if sel is not None:
            self.requested.pop(sel, None)
            self.hub.client_grab(self, sel, fields["types"][:16])

    def on_CLIPBOARD(self, fields: dict[str, Any]) -> None:
        sel = self._selection(fields)
        if sel is None or self.requested.get(sel) != fields["clip_type"]:
            return  # not what we asked for (or no longer)
        del self.requested[sel]
        self.hub.client_clipboard(self, sel, fields["clip_type"], fields["data"])

    def on_CLIPBOARD_REQUEST(self, fields: dict[str, Any]) -> None:
        sel = self._selection(fields)
        if sel is not None:
            self.hub.client_request(self, sel, fields["clip_type"])

    def on_CLIPBOARD_RELEASE(self, fields: dict[str, Any]) -> None:
        sel = self._selection(fields)
        if sel is not None:
            self.requested.pop(sel, None)
            self.hub.client_release(self, sel)

    def on_MONITORS_CONFIG(self, fields: dict[str, Any]) -> None:
        ok = self.hub.monitors(self, fields["monitors"][:16])
        reply = AgentReply.SUCCESS if ok else AgentReply.ERROR
        self._queue(AgentMsg.REPLY, encode_message(AgentMsg.REPLY, {"type": AgentMsg.MONITORS_CONFIG, "error": reply}))

    def on_FILE_XFER_START(self, fields: dict[str, Any]) -> None:
        xid = fields["id"]
        try:
            t = self.files.start(xid, fields["data"], allowed=not self.client.view_only)
            self._xfer_status(xid, FileXferStatus.CAN_SEND_DATA)
            saved = self.files.finish_empty(t)
        except XferRefused as exc:
            self._refused(xid, None, exc)
            return
        if saved is not None:
            self._saved(xid, t.name, t.size, str(saved))

    def on_FILE_XFER_DATA(self, fields: dict[str, Any]) -> None:
        xid = fields["id"]
        try:
            got = self.files.data(xid, fields["data"])
        except XferRefused as exc:
            self._refused(xid, None, exc)
            return
        if got is not None and got[1] is not None:
            self._saved(xid, got[0].name, got[0].size, str(got[1]))

    def on_FILE_XFER_STATUS(self, fields: dict[str, Any]) -> None:
        """The client cancelled (or failed) a transfer: its part file goes."""
        t = self.files.drop(fields["id"])
        if t is not None:
            result = fields["result"]
            status = FileXferStatus(result).name.lower() if result in FileXferStatus._value2member_map_ else str(result)
            self.hub.file_refused(self, t.name, "the client cancelled", status)

    def _saved(self, xid: int, name: str, size: int, path: str) -> None:
        self._xfer_status(xid, FileXferStatus.SUCCESS)
        self.hub.file_received(self, name, size, path)

    def _refused(self, xid: int, name: str | None, exc: XferRefused) -> None:
        detail = exc.detail if AgentCap.FILE_XFER_DETAILED_ERRORS in self.client_caps else b""
        self._xfer_status(xid, exc.status, detail)
        self.hub.file_refused(self, name, exc.reason, exc.status.name.lower())
        self.log.info("{c}: file transfer {xid} refused: {why}", c=self, xid=xid, why=exc.reason)

    def _xfer_status(self, xid: int, status: FileXferStatus, detail: bytes = b"") -> None:
        self._queue(AgentMsg.FILE_XFER_STATUS, encode_message(AgentMsg.FILE_XFER_STATUS, {"id": xid, "result": status, "data": detail}))

    # --- sending -----------------------------------------------------------------------------
    def send_grab(self, sel: int, types: list[int]) -> None:
        """(A grab or release of `sel` still waiting for this client is replaced: only the
        newest state of a selection matters.)"""
        if self.ready and self.clipboard and (sel == ClipboardSelection.CLIPBOARD or self.selection_prefix):
            body = encode_message(AgentMsg.CLIPBOARD_GRAB, {"selection": sel, "types": types}, self.selection_prefix)
            self._queue(AgentMsg.CLIPBOARD_GRAB, body, key=("owner", sel))

    def send_release(self, sel: int) -> None:
        if self.ready and self.clipboard and (sel == ClipboardSelection.CLIPBOARD or self.selection_prefix):
            body = encode_message(AgentMsg.CLIPBOARD_RELEASE, {"selection": sel}, self.selection_prefix)
            self._queue(AgentMsg.CLIPBOARD_RELEASE, body, key=("owner", sel))

    def send_request(self, sel: int, clip_type: int) -> None:
        self.requested[sel] = clip_type
        self._queue(
            AgentMsg.CLIPBOARD_REQUEST,
            encode_message(AgentMsg.CLIPBOARD_REQUEST, {"selection": sel, "clip_type": clip_type}, self.selection_prefix),
        )

    def send_clipboard(self, sel: int, clip_type: int, data: bytes) -> None:
        """The contents follow the message's fields as a tail: every client's queue holds
        the one shared copy."""
        head = encode_message(AgentMsg.CLIPBOARD, {"selection": sel, "clip_type": clip_type, "data": b""}, self.selection_prefix)
        self._queue(AgentMsg.CLIPBOARD, head, data)

    def _queue(self, msg_type: int, body: bytes, tail: bytes = b"", key: Any = None) -> None:
        if self.closed:
            return
        try:
            self.link.send(msg_type, body, tail, key)
        except AgentError as exc:
            self.close()
            self.channel.abort(f"agent: {exc}")
            return
        self._pump()

    def _pump(self) -> None:
        # A write may complete at once and call chunk_written (so _pump) from inside send:
        # the outer loop goes on instead, so a long message never recurses.
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._in_pipe < IN_PIPE and not self.closed:
                chunk = self.link.next_chunk()
                if chunk is None:
                    return
                self._in_pipe += 1
                self.channel.send("AGENT_DATA", {"data": chunk})
        finally:
            self._pumping = False

    def __repr__(self) -> str:
        return f"<agent session={self.client.session_id:#x}>"

    def describe(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "started": self.link.started,
            "client_caps": sorted(self.client_caps),
            "received": self.link.received_messages,
            "sent": self.link.sent_messages,
            "queued_bytes": self.link.queued_bytes,
            "buffered": self.link.stream.buffered,
            "file_transfers": len(self.files.active),
            "clipboard": self.hub.clipboard_mode(self).value,
        }
