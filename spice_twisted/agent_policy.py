"""The built-in agent's server-wide part: the multi-client policy, the clipboard every client
shares with the desktop, resizes, and what the audit log and stats say about them.

Policy (docs/user-guide.md, "Clipboard, resize and files"):
- the primary client (the senior one, or the one the admin handed control to) owns the
  desktop's size: only its MONITORS_CONFIG resizes, unless it is view-only;
- a client that may drive (not view-only) may paste into the desktop: its copy becomes the
  desktop's clipboard, with `--clipboard both` (the default);
- every client may copy out of the desktop (`--clipboard copy-out` or `both`): the
  desktop's clipboard is offered to all of them, view-only ones included, and so is one
  client's copy to every other client (so a second client can paste it);
- `--clipboard none`: no clipboard at all; a view-only client never gets more than
  copy-out.

The clipboard is eager (sources/desktop_agent.py): when a client grabs, the server asks it
for the contents at once and keeps them (bounded by MAX_CLIPBOARD), so any client can
paste them later even if the one who copied has gone. Contents are never logged: the audit
log has sizes, types, selections and who.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from twisted.logger import Logger

from .audit import audit
from .file_xfer import DEFAULT_MAX_SIZE
from .sources.desktop_agent import MAX_CLIPBOARD, PNG, TEXT, Contents, DesktopAgent
from .wire.enums import ClipboardSelection, ClipboardType


class ClientAgent(Protocol):
    """What the hub needs of one client's agent (channels/agent.py), so the policy does not
    import the channel that imports it."""

    client: Any
    ready: bool

    def announce(self) -> None: ...
    def set_connected(self, connected: bool) -> None: ...
    def send_grab(self, sel: int, types: list[int]) -> None: ...
    def send_release(self, sel: int) -> None: ...
    def send_request(self, sel: int, clip_type: int) -> None: ...
    def send_clipboard(self, sel: int, clip_type: int, data: bytes) -> None: ...


SELECTIONS = {ClipboardSelection.CLIPBOARD: "CLIPBOARD", ClipboardSelection.PRIMARY: "PRIMARY"}
MIME_OF = {ClipboardType.UTF8_TEXT: TEXT, ClipboardType.IMAGE_PNG: PNG}
TYPE_OF = {mime: t for t, mime in MIME_OF.items()}
PREFERENCE = (ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG)  # what to ask a grabbing client for


class ClipboardMode(StrEnum):
    NONE = "none"
    COPY_OUT = "copy-out"
    BOTH = "both"


@dataclass
class AgentPolicy:
    """--clipboard, --file-xfer-dir, --file-xfer-max-size."""

    clipboard: ClipboardMode = ClipboardMode.BOTH
    file_xfer_dir: str | None = None
    file_xfer_max_size: int = DEFAULT_MAX_SIZE

    def clipboard_for(self, view_only: bool) -> ClipboardMode:
        if view_only and self.clipboard == ClipboardMode.BOTH:
            return ClipboardMode.COPY_OUT
        return self.clipboard

    def describe(self) -> dict[str, Any]:
        return {
            "resize": "primary client only (not when view-only)",
            "clipboard_drivers": self.clipboard.value,
            "clipboard_view_only": self.clipboard_for(True).value,
            "file_xfer": "on (drivers only)" if self.file_xfer_dir else "off",
            "file_xfer_dir": self.file_xfer_dir,
            "file_xfer_max_size": self.file_xfer_max_size,
        }


@dataclass
class Offer:
    """What a selection holds: its contents by MIME type and whose copy it is."""

    owner: int | None  # the session id of the client that copied it; None: the desktop's
    contents: Contents


@dataclass
class AgentCounters:
    clipboard_in: int = 0  # clients' copies taken into the desktop
    clipboard_in_bytes: int = 0
    clipboard_out: int = 0  # pastes answered to clients
    clipboard_out_bytes: int = 0
    desktop_copies: int = 0  # the desktop's clipboard changed
    resizes: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # policy refusals by kind
    files_received: int = 0
    files_bytes: int = 0
    files_refused: int = 0

    def refuse(self, kind: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1


class AgentHub:
    """Every client's agent meets here; the source's DesktopAgent is behind it."""

    log = Logger()

    def __init__(self, policy: AgentPolicy, desktop: DesktopAgent | None, primary: Callable[[], Any]) -> None:
        self.policy = policy
        self.desktop = desktop or DesktopAgent()
        self.primary = primary  # () -> the primary Client (server.py)
        self.agents: dict[int, ClientAgent] = {}
        self.offers: dict[int, Offer] = {}  # selection -> what it holds
        self.counters = AgentCounters()
        self.max_clipboard = MAX_CLIPBOARD
        self.last_size: tuple[int, int] | None = None
        self.was_available = self.available

    def start(self) -> None:
        self.desktop.start_agent(self)

    # --- what this server's agent can do -------------------------------------------------
    @property
    def clipboard_types(self) -> list[ClipboardType]:
        return [t for t in PREFERENCE if MIME_OF[t] in self.desktop.clipboard_types]

    @property
    def available(self) -> bool:
        """Whether clients are told an agent is there: the desktop takes or gives a
        clipboard, or resizes, or files may be sent. (A source with none of them, an
        image without --file-xfer-dir or a VM whose own agent is not running, shows
        "agent: no", as upstream does without a guest agent.)"""
        return bool(self.clipboard_types) or self.desktop.can_resize or bool(self.policy.file_xfer_dir)

    def clipboard_mode(self, agent: ClientAgent) -> ClipboardMode:
        if not self.clipboard_types:
            return ClipboardMode.NONE
        return self.policy.clipboard_for(agent.client.view_only)

    # --- clients --------------------------------------------------------------------------
    def attach(self, agent: ClientAgent) -> None:
        self.agents[agent.client.session_id] = agent

    def detach(self, agent: ClientAgent) -> None:
        if self.agents.get(agent.client.session_id) is agent:
            del self.agents[agent.client.session_id]

    def client_ready(self, agent: ClientAgent) -> None:
        """Its caps are known: offer it what the selections hold now."""
        if self.clipboard_mode(agent) == ClipboardMode.NONE:
            return
        for sel, offer in self.offers.items():
            if offer.owner != agent.client.session_id:
                agent.send_grab(sel, self._types(offer.contents))

    def _others(self, sel: int, but: int | None) -> list[ClientAgent]:
        return [a for sid, a in self.agents.items() if sid != but and a.ready and self.clipboard_mode(a) != ClipboardMode.NONE]

    @staticmethod
    def _types(contents: Contents) -> list[int]:
        return [int(t) for t in PREFERENCE if MIME_OF[t] in contents]

    # --- the desktop's side (AgentSink) -------------------------------------------------------
    def desktop_clipboard(self, selection: str, contents: Contents | None) -> None:
        sel = next((s for s, n in SELECTIONS.items() if n == selection), None)
        if sel is None:
            return
        contents = {m: d for m, d in (contents or {}).items() if m in TYPE_OF}
        if not contents:
            self.offers.pop(sel, None)
            for a in self._others(sel, None):
                a.send_release(sel)
            return
        self.offers[sel] = Offer(None, contents)
        self.counters.desktop_copies += 1
        audit("clipboard", direction="desktop", selection=selection, types=sorted(contents), bytes=sum(map(len, contents.values())))
        for a in self._others(sel, None):
            a.send_grab(sel, self._types(contents))

    def desktop_changed(self) -> None:
        """The desktop's abilities changed: every client hears our capabilities again
        (spice-gtk takes a second ANNOUNCE_CAPABILITIES as the new set), or, when the agent
        comes or goes altogether, AGENT_CONNECTED_TOKENS / AGENT_DISCONNECTED."""
        now = self.available
        changed, self.was_available = now != self.was_available, now
        if not now:
            self.offers.clear()
        for a in list(self.agents.values()):
            if changed:
                a.set_connected(now)
            else:
                a.announce()

    # --- a client's side ------------------------------------------------------------------
    def client_grab(self, agent: ClientAgent, sel: int, types: list[int]) -> None:
        """A client copied: ask it for the contents now (eager), if it may paste."""
        if self.clipboard_mode(agent) != ClipboardMode.BOTH:
            self.counters.refuse("paste")
            self.log.debug("client {sid:#x}: clipboard grab ignored (it may not paste)", sid=agent.client.session_id)
            return
        want = next((t for t in self.clipboard_types if t in types), None)
        if want is not None:
            agent.send_request(sel, want)

    def client_clipboard(self, agent: ClientAgent, sel: int, clip_type: int, data: bytes) -> None:
        """The contents we asked a client for: into the desktop, and offered to the others."""
        if self.clipboard_mode(agent) != ClipboardMode.BOTH or clip_type not in MIME_OF:
            self.counters.refuse("paste")
            return
        sid = agent.client.session_id
        contents = {MIME_OF[ClipboardType(clip_type)]: data}
        self.offers[sel] = Offer(sid, contents)
        self.counters.clipboard_in += 1
        self.counters.clipboard_in_bytes += len(data)
        audit(
            "clipboard",
            direction="in",
            session=f"{sid:#x}",
            selection=SELECTIONS[ClipboardSelection(sel)],
            types=sorted(contents),
            bytes=len(data),
        )
        self._desktop_call("take the clipboard", self.desktop.set_clipboard, SELECTIONS[ClipboardSelection(sel)], contents)
        for a in self._others(sel, sid):
            a.send_grab(sel, self._types(contents))

    def client_request(self, agent: ClientAgent, sel: int, clip_type: int) -> None:
        """A client pastes: answer from what the selection holds (NONE if it may not)."""
        offer = self.offers.get(sel)
        mime = MIME_OF.get(clip_type)  # type: ignore[call-overload]
        data = offer.contents.get(mime) if offer is not None and mime is not None else None
        if self.clipboard_mode(agent) == ClipboardMode.NONE or data is None:
            if self.clipboard_mode(agent) == ClipboardMode.NONE:
                self.counters.refuse("copy_out")
            agent.send_clipboard(sel, ClipboardType.NONE, b"")
            return
        self.counters.clipboard_out += 1
        self.counters.clipboard_out_bytes += len(data)
        audit(
            "clipboard",
            direction="out",
            session=f"{agent.client.session_id:#x}",
            selection=SELECTIONS[ClipboardSelection(sel)],
            types=[mime],
            bytes=len(data),
            origin="desktop" if offer is None or offer.owner is None else f"{offer.owner:#x}",
        )
        agent.send_clipboard(sel, clip_type, data)

    def client_release(self, agent: ClientAgent, sel: int) -> None:
        """A client dropped its copy: nothing changes here. Its contents were taken when
        it copied (eager) and are the desktop's now; they stay offered until something
        else is copied."""

    # --- size -----------------------------------------------------------------------------
    def monitors(self, agent: ClientAgent, monitors: list[dict[str, int]]) -> bool:
        """A client's window size (its first monitor): the desktop's size if it is the primary."""
        client = agent.client
        if not self.desktop.can_resize:
            return False
        if client is not self.primary() or client.view_only:
            self.counters.refuse("resize")
            self.log.debug("client {sid:#x}: resize ignored (not the primary, or view-only)", sid=client.session_id)
            return False
        mon = next((m for m in monitors if m["width"] > 0 and m["height"] > 0), None)
        if mon is None:
            return False
        size = (mon["width"], mon["height"])
        if size == self.last_size:
            return True
        self.last_size = size
        self.counters.resizes += 1
        audit("resize", session=f"{client.session_id:#x}", width=size[0], height=size[1])
        self.log.info("client {sid:#x} asks for a {w}x{h} desktop", sid=client.session_id, w=size[0], h=size[1])
        return self._desktop_call("resize", self.desktop.resize, *size)

    def _desktop_call(self, what: str, fn: Callable[..., None], *args: Any) -> bool:
        """A source's failure to follow a client (its X server refused a mode, ...) is its
        own: logged, and the client's message still handled."""
        try:
            fn(*args)
        except Exception:
            self.log.failure("the source failed to {what}", what=what)
            return False
        return True

    def primary_changed(self) -> None:
        """The next size the new primary asks for is applied even if an earlier one matched."""
        self.last_size = None

    # --- files ------------------------------------------------------------------------------
    def file_received(self, agent: ClientAgent, name: str, size: int, path: str) -> None:
        self.counters.files_received += 1
        self.counters.files_bytes += size
        sid = agent.client.session_id
        audit("file_received", session=f"{sid:#x}", name=name, size=size, path=path)
        self.log.info("client {sid:#x} sent a file: {path} ({size} bytes)", sid=sid, path=path, size=size)

    def file_refused(self, agent: ClientAgent, name: str | None, reason: str, status: str) -> None:
        self.counters.files_refused += 1
        audit("file_refused", session=f"{agent.client.session_id:#x}", name=name, reason=reason, status=status)

    def describe(self) -> dict[str, Any]:
        c = self.counters
        return {
            "connected": self.available,
            "policy": self.policy.describe(),
            "clipboard_types": sorted(self.desktop.clipboard_types),
            "can_resize": self.desktop.can_resize,
            "selections": {
                SELECTIONS[ClipboardSelection(s)]: {
                    "owner": "desktop" if o.owner is None else f"{o.owner:#x}",
                    "types": sorted(o.contents),
                    "bytes": sum(map(len, o.contents.values())),
                }
                for s, o in self.offers.items()
            },
            "clipboard_in": c.clipboard_in,
            "clipboard_in_bytes": c.clipboard_in_bytes,
            "clipboard_out": c.clipboard_out,
            "clipboard_out_bytes": c.clipboard_out_bytes,
            "desktop_copies": c.desktop_copies,
            "resizes": c.resizes,
            "files_received": c.files_received,
            "files_bytes": c.files_bytes,
            "files_refused": c.files_refused,
            "refused": dict(c.refused),
        }
