"""The X selections CLIPBOARD and PRIMARY, both ways, on a connection the reactor reads.

Into X (a client copied): a small window of ours becomes the selection's owner and
answers every SelectionRequest from what it holds: TARGETS, TIMESTAMP, the text as
UTF8_STRING / text/plain;charset=utf-8 / TEXT / STRING (Latin-1), a PNG as image/png.
Data past INCR_ABOVE bytes goes by ICCCM's INCR protocol, a chunk each time the
requestor deletes the property, so one large paste never needs one huge request.

Out of X (another X client copied): XFIXES tells us of every new owner. We ask it for
TARGETS, then for the types we take (UTF8_STRING or its aliases, image/png), read each
reply from our window's property (INCR too), at most MAX_CLIPBOARD bytes in all, and hand
the contents to the sink. A new owner that is our own window is never reported (no echo).
An owner that never answers costs a timer: after FETCH_TIMEOUT the fetch is dropped.

Everything runs on the reactor: X events arrive through `XEventReader` (an
IReadDescriptor on the connection's socket); the only waits are replies from the X
server itself (InternAtom, GetProperty), never from another X client.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import xcffib
import xcffib.xfixes
import xcffib.xproto
from twisted.logger import Logger

from .desktop_agent import MAX_CLIPBOARD, PNG, SELECTIONS, TEXT, Contents
from .x11_capture import _reply_bytes

FETCH_TIMEOUT = 5.0  # seconds an X client may take to hand over a selection's contents
INCR_ABOVE = 256 * 1024  # bytes sent in one property at most; larger data goes by INCR
SEND_TIMEOUT = 10.0  # seconds a requestor may take between INCR chunks before we give up
MAX_INCR_SENDS = 16  # INCR transfers out at once (each holds a reference to the data)

# X protocol constants
CURRENT_TIME = 0
NONE = 0
ANY_PROPERTY_TYPE = 0
PROP_NEW_VALUE, PROP_DELETE = 0, 1
CHANGE_PROPERTY, SEND_EVENT = 18, 25  # core request opcodes (raw ChangeProperty: no per-byte packing)
ATOM_ATOM, ATOM_INTEGER = 4, 19

ATOM_NAMES = (
    "CLIPBOARD",
    "PRIMARY",
    "TARGETS",
    "TIMESTAMP",
    "MULTIPLE",
    "INCR",
    "UTF8_STRING",
    "TEXT",
    "STRING",
    TEXT,
    PNG,
    "SPICE_TWISTED_CLIPBOARD",
    "SPICE_TWISTED_PRIMARY",
)
TEXT_TARGETS = ("UTF8_STRING", TEXT, "TEXT", "STRING")  # what we offer for text, and read (best first)


@dataclass
class _Fetch:
    """Reading one selection's contents from its owner, one target at a time."""

    selection: str
    timestamp: int
    want: list[str] = field(default_factory=list)  # targets still to convert (TARGETS first)
    target: str = "TARGETS"
    got: Contents = field(default_factory=dict)
    incr: bytearray | None = None  # an INCR transfer in progress for `target`
    budget: int = MAX_CLIPBOARD
    timer: Any = None


@dataclass
class _Send:
    """One INCR transfer out: the rest of `data` goes to `window`'s `prop` chunk by chunk."""

    window: int
    prop: int
    type: int
    data: bytes
    offset: int = 0
    timer: Any = None


class XClipboard:
    """Owns and watches CLIPBOARD and PRIMARY on `conn` (which only the reactor uses)."""

    log = Logger()

    def __init__(self, conn: Any, root: int, reactor: Any, report: Callable[[str, Contents | None], None]) -> None:
        self.conn, self.root, self.reactor, self.report = conn, root, reactor, report
        cookies = {n: conn.core.InternAtom(False, len(n), n) for n in ATOM_NAMES}
        self.atom = {n: c.reply().atom for n, c in cookies.items()}
        self.name = {a: n for n, a in self.atom.items()}
        self.window = conn.generate_id()
        screen = conn.get_setup().roots[conn.pref_screen]
        conn.core.CreateWindow(
            0,  # depth: CopyFromParent
            self.window,
            root,
            -10,
            -10,
            1,
            1,
            0,
            xcffib.xproto.WindowClass.InputOnly,
            screen.root_visual,
            xcffib.xproto.CW.EventMask,
            [xcffib.xproto.EventMask.PropertyChange],
        )
        xfixes = conn(xcffib.xfixes.key)
        mask = (
            xcffib.xfixes.SelectionEventMask.SetSelectionOwner
            | xcffib.xfixes.SelectionEventMask.SelectionWindowDestroy
            | xcffib.xfixes.SelectionEventMask.SelectionClientClose
        )
        for sel in SELECTIONS:
            xfixes.SelectSelectionInput(self.window, self.atom[sel], mask)
        self.owned: dict[str, Contents] = {}  # selections our window owns, and what it gives
        self.foreign: dict[str, bool] = {}  # selections another X client owns (reported to the sink)
        self.fetches: dict[str, _Fetch] = {}
        self.sends: dict[tuple[int, int], _Send] = {}
        self.max_request = conn.get_maximum_request_length() * 4
        self.max_bytes = MAX_CLIPBOARD  # one selection's contents taken from X, all types
        self.timeout = FETCH_TIMEOUT
        self.counters = {"fetched": 0, "fetch_timeouts": 0, "too_large": 0, "requests": 0, "refused": 0, "incr_out": 0, "incr_in": 0}
        conn.flush()

    # --- into X -----------------------------------------------------------------------------
    def set(self, selection: str, contents: Contents | None) -> None:
        """Our window owns `selection` with `contents`, or gives it up (None)."""
        sel = self.atom[selection]
        self._cancel_fetch(selection)
        self.foreign.pop(selection, None)
        contents = {k: v for k, v in (contents or {}).items() if k in (TEXT, PNG)}
        if contents:
            self.owned[selection] = contents
            self.conn.core.SetSelectionOwner(self.window, sel, CURRENT_TIME)
        elif self.owned.pop(selection, None) is not None:
            self.conn.core.SetSelectionOwner(NONE, sel, CURRENT_TIME)
        self.conn.flush()

    def reassert(self) -> None:
        """Own again what we held (a new connection after the X server came back)."""
        for selection, contents in list(self.owned.items()):
            self.set(selection, contents)

    def _targets(self, contents: Contents) -> list[int]:
        names = ["TARGETS", "TIMESTAMP"]
        if TEXT in contents:
            names += TEXT_TARGETS
        if PNG in contents:
            names.append(PNG)
        return [self.atom[n] for n in names]

    def _request(self, ev: Any) -> None:
        """Another X client asks for what our window holds."""
        self.counters["requests"] += 1
        prop = ev.property or ev.target  # obsolete clients pass no property: use the target
        selection = self.name.get(ev.selection)
        contents = self.owned.get(selection or "")
        answer = None
        if contents is not None and ev.requestor != NONE:
            target = self.name.get(ev.target, "")
            if target == "TARGETS":
                answer = (ATOM_ATOM, 32, struct.pack(f"={len(self._targets(contents))}I", *self._targets(contents)))
            elif target == "TIMESTAMP":
                answer = (ATOM_INTEGER, 32, struct.pack("=I", ev.time or CURRENT_TIME))
            elif target in TEXT_TARGETS and TEXT in contents:
                text = contents[TEXT]
                if target == "STRING":
                    text = text.decode("utf-8", "replace").encode("latin-1", "replace")
                kind = self.atom["UTF8_STRING"] if target in ("TEXT", "UTF8_STRING") else ev.target
                answer = (kind, 8, text)
            elif target == PNG and PNG in contents:
                answer = (ev.target, 8, contents[PNG])
        if answer is None:
            self.counters["refused"] += 1
            self._notify(ev, NONE)
            return
        kind, fmt, data = answer
        if len(data) > min(INCR_ABOVE, self.max_request - 64):
            if len(self.sends) >= MAX_INCR_SENDS:
                self.counters["refused"] += 1
                self._notify(ev, NONE)
                return
            self._start_send(ev.requestor, prop, kind, data)
        else:
            self._change_property(ev.requestor, prop, kind, fmt, data)
        self._notify(ev, prop)

    def _notify(self, ev: Any, prop: int) -> None:
        notify = xcffib.xproto.SelectionNotifyEvent.synthetic(ev.time, ev.requestor, ev.selection, ev.target, prop)
        self.conn.core.SendEvent(False, ev.requestor, 0, notify.pack())

    def _change_property(self, window: int, prop: int, kind: int, fmt: int, data: bytes) -> None:
        """ChangeProperty (Replace) with the data as one raw request (xcffib would pack it
        byte by byte)."""
        units = len(data) // (fmt // 8)
        head = struct.pack("=xB2xIIIB3xI", xcffib.xproto.PropMode.Replace, window, prop, kind, fmt, units)
        self.conn.core.send_request(CHANGE_PROPERTY, io.BytesIO(head + data))

    def _start_send(self, window: int, prop: int, kind: int, data: bytes) -> None:
        """INCR: the property says how much will come; each deletion of it asks for a chunk."""
        key = (window, prop)
        old = self.sends.pop(key, None)
        if old is not None and old.timer.active():
            old.timer.cancel()
        self.counters["incr_out"] += 1
        self.conn.core.ChangeWindowAttributes(window, xcffib.xproto.CW.EventMask, [xcffib.xproto.EventMask.PropertyChange])
        self._change_property(window, prop, self.atom["INCR"], 32, struct.pack("=I", len(data)))
        send = _Send(window, prop, kind, data)
        send.timer = self.reactor.callLater(SEND_TIMEOUT, self._send_expired, key)
        self.sends[key] = send

    def _send_more(self, send: _Send) -> None:
        chunk = send.data[send.offset : send.offset + INCR_ABOVE]
        send.offset += len(chunk)
        self._change_property(send.window, send.prop, send.type, 8, chunk)
        key = (send.window, send.prop)
        if not chunk:  # the zero-length property ends the transfer
            self.sends.pop(key, None)
            if send.timer.active():
                send.timer.cancel()
        else:
            send.timer.reset(SEND_TIMEOUT)

    def _send_expired(self, key: tuple[int, int]) -> None:
        if self.sends.pop(key, None) is not None:
            self.log.info("an X client stopped reading an INCR paste; dropped")

    # --- out of X ---------------------------------------------------------------------------
    def _owner_changed(self, ev: Any) -> None:
        selection = self.name.get(ev.selection)
        if selection not in SELECTIONS:
            return
        if ev.owner == self.window:  # our own ownership: nothing to tell anyone
            return
        # A queued event can be stale (we, or a third client, took the selection since):
        # ask the X server who owns it now; a later event tells of the current owner.
        if self.conn.core.GetSelectionOwner(ev.selection).reply().owner != ev.owner:
            return
        self._cancel_fetch(selection)
        self.owned.pop(selection, None)
        if ev.owner == NONE:  # the owner left or gave it up
            if self.foreign.pop(selection, False):
                self.report(selection, None)
            return
        self._start_fetch(selection, ev.selection_timestamp or ev.timestamp)

    def take_current(self) -> None:
        """Fetch what other X clients own already: XFIXES tells only of later owners, and a
        copy made in X before we connected is offered too."""
        for selection in SELECTIONS:
            if selection in self.owned or selection in self.fetches:
                continue
            owner = self.conn.core.GetSelectionOwner(self.atom[selection]).reply().owner
            if owner not in (NONE, self.window):
                self._start_fetch(selection, CURRENT_TIME)

    def _start_fetch(self, selection: str, timestamp: int) -> None:
        self.foreign[selection] = True
        fetch = _Fetch(selection, timestamp, budget=self.max_bytes)
        fetch.timer = self.reactor.callLater(self.timeout, self._fetch_expired, selection, fetch)
        self.fetches[selection] = fetch
        self._convert(fetch, "TARGETS")

    def _prop(self, selection: str) -> int:
        return self.atom["SPICE_TWISTED_" + selection]

    def _convert(self, fetch: _Fetch, target: str) -> None:
        fetch.target, fetch.incr = target, None
        prop = self._prop(fetch.selection)
        self.conn.core.DeleteProperty(self.window, prop)
        self.conn.core.ConvertSelection(self.window, self.atom[fetch.selection], self.atom[target], prop, fetch.timestamp)
        self.conn.flush()

    def _converted(self, ev: Any) -> None:
        """The owner answered (or refused) our ConvertSelection."""
        selection = self.name.get(ev.selection, "")
        fetch = self.fetches.get(selection)
        if fetch is None or ev.requestor != self.window or self.name.get(ev.target) != fetch.target:
            return  # an answer to a fetch we dropped
        if ev.property == NONE:
            self._next(fetch)
            return
        kind, data, too_big = self._read_property(self._prop(selection), fetch.budget, delete=True)
        if kind == self.atom["INCR"]:
            self.counters["incr_in"] += 1
            fetch.incr = bytearray()  # chunks come as the owner sees our deletions
            return
        if too_big:
            self.counters["too_large"] += 1
            self._next(fetch)
            return
        self._took(fetch, data, kind)

    def _incr_chunk(self, fetch: _Fetch) -> None:
        assert fetch.incr is not None
        kind, data, too_big = self._read_property(self._prop(fetch.selection), fetch.budget - len(fetch.incr), delete=True)
        if too_big or len(fetch.incr) + len(data) > fetch.budget:
            self.counters["too_large"] += 1
            # The owner would go on writing chunks into our property: no further target is
            # asked for (its answer would mix with them); what was read so far is reported.
            fetch.want.clear()
            self._finish(fetch)
            return
        if data:
            fetch.incr += data
            return
        self._took(fetch, bytes(fetch.incr), kind)

    def _took(self, fetch: _Fetch, data: bytes, kind: int) -> None:
        if fetch.target == "TARGETS":
            offered = {self.name.get(a) for a in struct.unpack(f"={len(data) // 4}I", data[: len(data) // 4 * 4])}
            text = next((t for t in TEXT_TARGETS if t in offered), None)
            fetch.want = ([text] if text else []) + ([PNG] if PNG in offered else [])
        elif fetch.target == PNG:
            fetch.got[PNG] = data
            fetch.budget -= len(data)
        else:
            if fetch.target == "STRING" or (fetch.target == "TEXT" and kind == self.atom["STRING"]):
                data = data.decode("latin-1").encode("utf-8")
            fetch.got[TEXT] = data
            fetch.budget -= len(data)
        self._next(fetch)

    def _next(self, fetch: _Fetch) -> None:
        if fetch.want:
            self._convert(fetch, fetch.want.pop(0))
            return
        self._finish(fetch)

    def _finish(self, fetch: _Fetch) -> None:
        if self.fetches.get(fetch.selection) is fetch:
            del self.fetches[fetch.selection]
        if fetch.timer is not None and fetch.timer.active():
            fetch.timer.cancel()
        self.counters["fetched"] += 1
        self.report(fetch.selection, fetch.got or None)

    def _fetch_expired(self, selection: str, fetch: _Fetch) -> None:
        if self.fetches.get(selection) is not fetch:
            return
        self.counters["fetch_timeouts"] += 1
        self.log.info(
            "the X client owning {sel} did not hand over its {t} in {s:g} s; giving up",
            sel=selection,
            t=fetch.target,
            s=self.timeout,
        )
        fetch.want.clear()
        fetch.timer = None
        self._finish(fetch)

    def _cancel_fetch(self, selection: str) -> None:
        fetch = self.fetches.pop(selection, None)
        if fetch is not None and fetch.timer is not None and fetch.timer.active():
            fetch.timer.cancel()

    def _read_property(self, prop: int, budget: int, delete: bool) -> tuple[int, bytes, bool]:
        """(type, bytes, too_big) of our window's `prop`, at most `budget` bytes read
        (one round trip to the X server; the raw reply, not xcffib's per-byte list)."""
        longs = max(0, budget) // 4 + 1
        cookie = self.conn.core.GetProperty(delete, self.window, prop, ANY_PROPERTY_TYPE, 0, longs)
        raw = bytes(_reply_bytes(self.conn, cookie))
        fmt, kind, after, n = struct.unpack_from("=xB2x4xIII", raw)
        if after:  # more than the budget: the property was not deleted; do it now
            if delete:
                self.conn.core.DeleteProperty(self.window, prop)
            return kind, b"", True
        size = n * (fmt // 8)
        if size > budget:
            return kind, b"", True
        return kind, raw[32 : 32 + size], False

    # --- events -----------------------------------------------------------------------------
    def handle(self, ev: Any) -> None:
        """One X event from the connection."""
        if isinstance(ev, xcffib.xfixes.SelectionNotifyEvent):
            self._owner_changed(ev)
        elif isinstance(ev, xcffib.xproto.SelectionRequestEvent):
            self._request(ev)
        elif isinstance(ev, xcffib.xproto.SelectionNotifyEvent):
            self._converted(ev)
        elif isinstance(ev, xcffib.xproto.SelectionClearEvent):
            selection = self.name.get(ev.selection)
            if selection is not None:
                self.owned.pop(selection, None)  # XFIXES tells us who has it now
        elif isinstance(ev, xcffib.xproto.PropertyNotifyEvent):
            if ev.window == self.window and ev.state == PROP_NEW_VALUE:
                for fetch in list(self.fetches.values()):
                    if fetch.incr is not None and ev.atom == self._prop(fetch.selection):
                        self._incr_chunk(fetch)
            elif ev.state == PROP_DELETE:
                send = self.sends.get((ev.window, ev.atom))
                if send is not None:
                    self._send_more(send)

    def close(self) -> None:
        for selection in list(self.fetches):
            self._cancel_fetch(selection)
        for send in self.sends.values():
            if send.timer is not None and send.timer.active():
                send.timer.cancel()
        self.sends.clear()


class XEventReader:
    """An IReadDescriptor for an xcffib connection: every event waiting goes to `handle`;
    `lost` is called once when the connection fails."""

    log = Logger()

    def __init__(self, conn: Any, handle: Callable[[Any], None], lost: Callable[[str], None]) -> None:
        self.conn, self.handle, self.on_lost = conn, handle, lost
        self._fd = int(conn.get_file_descriptor())
        self.closed = False

    def fileno(self) -> int:
        return -1 if self.closed else self._fd

    def logPrefix(self) -> str:
        return "XEventReader"

    def doRead(self) -> Any:
        self.drain()
        return None

    def drain(self) -> None:
        """Events xcb already queued (while waiting for a reply) never wake the reactor:
        callers drain after their own requests too."""
        while not self.closed:
            try:
                ev = self.conn.poll_for_event()
            except xcffib.Error:
                continue  # an X error for an earlier request (a requestor gone: BadWindow)
            except xcffib.ConnectionException as exc:
                self._lose(f"its X connection closed: {exc}")
                return
            if ev is None:
                break
            try:
                self.handle(ev)
            except xcffib.ConnectionException as exc:
                self._lose(f"its X connection closed: {exc}")
                return
            except xcffib.Error as exc:  # an X error answering one event: that event only
                self.log.info("an X error while handling {ev}: {exc!r}", ev=type(ev).__name__, exc=exc)
        if not self.closed:
            try:
                self.conn.flush()
                self.conn.invalid()
            except xcffib.ConnectionException as exc:
                self._lose(f"its X connection closed: {exc}")

    def _lose(self, why: str) -> None:
        if not self.closed:
            self.closed = True
            self.on_lost(why)

    def connectionLost(self, reason: Any) -> None:
        self._lose("its X connection closed")
