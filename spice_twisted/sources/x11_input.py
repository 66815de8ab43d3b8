"""Input into X through XTEST: keys by scancode, the pointer, buttons, the wheel, lock LEDs.

Keys: a SPICE client sends set-1 scancodes, i.e. *physical* key positions. X names
physical positions too: XKB gives every keycode a four-letter key name (<AE01> is
the key right of the top-left one, <UP> the up arrow), whatever the keycode set
(evdev, the older xfree86 set, a VNC server's own) and whatever the layout. So a
scancode goes to a key name (the fixed table below: positions, not characters) and
the name to the X server's keycode through its own XKB names (GetNames KeyNames and
KeyAliases). Only if the server names no keys does the mapping fall back to the evdev
rule (scancode + 8, extended keys by table). The layout (what a key types) is the X
server's business: a French client on a French X server types French.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import xcffib
import xcffib.xkb
import xcffib.xproto
import xcffib.xtest

E0 = 0x100  # an extended (E0-prefixed) key, as the input router numbers keys
PAUSE = 0x145

# set-1 scancode -> XKB key names that position has (first known name wins)
SCANCODE_NAMES: dict[int, tuple[str, ...]] = {
    0x01: ("ESC",),
    **{0x02 + i: (f"AE{i + 1:02d}",) for i in range(12)},  # 1 .. = (AE01 .. AE12)
    0x0E: ("BKSP",),
    0x0F: ("TAB",),
    **{0x10 + i: (f"AD{i + 1:02d}",) for i in range(12)},  # q .. ]
    0x1C: ("RTRN",),
    0x1D: ("LCTL",),
    **{0x1E + i: (f"AC{i + 1:02d}",) for i in range(11)},  # a .. '
    0x29: ("TLDE",),
    0x2A: ("LFSH",),
    0x2B: ("BKSL", "AC12"),
    **{0x2C + i: (f"AB{i + 1:02d}",) for i in range(10)},  # z .. /
    0x36: ("RTSH",),
    0x37: ("KPMU",),
    0x38: ("LALT",),
    0x39: ("SPCE",),
    0x3A: ("CAPS",),
    **{0x3B + i: (f"FK{i + 1:02d}",) for i in range(10)},  # F1 .. F10
    0x45: ("NMLK",),
    0x46: ("SCLK",),
    0x47: ("KP7",),
    0x48: ("KP8",),
    0x49: ("KP9",),
    0x4A: ("KPSU",),
    0x4B: ("KP4",),
    0x4C: ("KP5",),
    0x4D: ("KP6",),
    0x4E: ("KPAD",),
    0x4F: ("KP1",),
    0x50: ("KP2",),
    0x51: ("KP3",),
    0x52: ("KP0",),
    0x53: ("KPDL",),
    0x54: ("SYRQ",),  # Alt+Print arrives as its own scancode
    0x56: ("LSGT",),  # the extra key of ISO keyboards
    0x57: ("FK11",),
    0x58: ("FK12",),
    0x59: ("KPEQ",),
    **{0x64 + i: (f"FK{13 + i:02d}",) for i in range(6)},  # F13 .. F18
    0x70: ("HKTG",),  # Japanese: hiragana/katakana
    0x73: ("AB11",),  # Japanese: ro
    0x79: ("HENK",),
    0x7B: ("MUHE",),
    0x7D: ("AE13",),  # Japanese: yen
    0x7E: ("KPPT", "KPCO"),  # Brazilian keypad comma
    E0 | 0x10: ("I173", "PREV"),  # previous track
    E0 | 0x19: ("I171", "NEXT"),
    E0 | 0x1C: ("KPEN",),
    E0 | 0x1D: ("RCTL",),
    E0 | 0x20: ("MUTE",),
    E0 | 0x22: ("I172", "PLAY"),
    E0 | 0x24: ("I174", "STOP"),
    E0 | 0x2E: ("VOL-",),
    E0 | 0x30: ("VOL+",),
    E0 | 0x35: ("KPDV",),
    E0 | 0x37: ("PRSC",),
    E0 | 0x38: ("RALT",),
    E0 | 0x46: ("BRK",),  # Ctrl+Pause
    E0 | 0x47: ("HOME",),
    E0 | 0x48: ("UP",),
    E0 | 0x49: ("PGUP",),
    E0 | 0x4B: ("LEFT",),
    E0 | 0x4D: ("RGHT",),
    E0 | 0x4F: ("END",),
    E0 | 0x50: ("DOWN",),
    E0 | 0x51: ("PGDN",),
    E0 | 0x52: ("INS",),
    E0 | 0x53: ("DELE",),
    E0 | 0x5B: ("LWIN", "LMTA"),
    E0 | 0x5C: ("RWIN", "RMTA"),
    E0 | 0x5D: ("COMP", "MENU"),
    E0 | 0x5E: ("POWR",),
    E0 | 0x5F: ("I150", "SLEP"),
    PAUSE: ("PAUS",),
}

# The evdev keycodes of the extended keys (Linux input codes + 8), used only when the X
# server has no key names at all.
EVDEV_EXTENDED = {
    E0 | 0x1C: 104,
    E0 | 0x1D: 105,
    E0 | 0x35: 106,
    E0 | 0x37: 107,
    E0 | 0x38: 108,
    E0 | 0x47: 110,
    E0 | 0x48: 111,
    E0 | 0x49: 112,
    E0 | 0x4B: 113,
    E0 | 0x4D: 114,
    E0 | 0x4F: 115,
    E0 | 0x50: 116,
    E0 | 0x51: 117,
    E0 | 0x52: 118,
    E0 | 0x53: 119,
    E0 | 0x20: 121,
    E0 | 0x2E: 122,
    E0 | 0x30: 123,
    E0 | 0x5B: 133,
    E0 | 0x5C: 134,
    E0 | 0x5D: 135,
    PAUSE: 127,
}

# SPICE buttons (1 left .. 5 wheel down, 6 side, 7 extra) -> X buttons (8 back, 9 forward)
X_BUTTONS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 9}

# The lock LEDs as the router numbers them, the scancode of their key, and the XKB indicator
LOCKS = ((1, 0x46, "Scroll Lock"), (2, 0x45, "Num Lock"), (4, 0x3A, "Caps Lock"))

KEY_PRESS, KEY_RELEASE, BUTTON_PRESS, BUTTON_RELEASE, MOTION = 2, 3, 4, 5, 6


def _name(raw: Any) -> str:
    """An XKB key name as xcffib hands it (a list of 1-byte bytes, or a str) -> 'AE01'."""
    if isinstance(raw, str):
        return raw.rstrip("\0")
    return b"".join(bytes(c) if not isinstance(c, int) else bytes([c]) for c in raw).rstrip(b"\0").decode("latin-1")


def _xkb(conn: Any) -> Any:
    """XKB on `conn`, announced (XKB answers nothing before UseExtension; asking twice is harmless)."""
    xkb = conn(xcffib.xkb.key)
    xkb.UseExtension(1, 0).reply()
    return xkb


def key_names(conn: Any) -> dict[str, int]:
    """The X server's key names (and their aliases) -> keycodes, from XKB."""
    xkb = _xkb(conn)
    which = xcffib.xkb.NameDetail.KeyNames | xcffib.xkb.NameDetail.KeyAliases
    r = xkb.GetNames(xcffib.xkb.ID.UseCoreKbd, which).reply()
    names: dict[str, int] = {}
    for i, kn in enumerate(r.keyNames):
        n = _name(kn.name)
        if n and n not in names:
            names[n] = r.firstKey + i
    for alias in getattr(r, "keyAliases", []):
        real, name = _name(alias.real), _name(alias.alias)
        if real in names and name not in names:
            names[name] = names[real]
    return names


def build_keymap(names: dict[str, int]) -> dict[int, int]:
    """Scancode (+0x100 for E0 keys) -> X keycode, from the server's key names."""
    keymap: dict[int, int] = {}
    for scancode, candidates in SCANCODE_NAMES.items():
        for n in candidates:
            if n in names:
                keymap[scancode] = names[n]
                break
    return keymap


def evdev_keymap() -> dict[int, int]:
    """The evdev rule, for an X server that names no keys."""
    # Linux numbers the keys of a PC keyboard's main block as their set-1 scancodes
    keymap = {sc: sc + 8 for sc in (*range(0x01, 0x54), 0x56, 0x57, 0x58)}
    keymap.update(EVDEV_EXTENDED)
    return keymap


def server_keymap(conn: Any) -> tuple[dict[int, int], str]:
    """The keymap to use with this server and how it was found ('xkb names' or 'evdev')."""
    try:
        keymap = build_keymap(key_names(conn))
    except xcffib.Error:
        keymap = {}
    if len(keymap) < 40:  # a server that names (almost) nothing: assume evdev
        return evdev_keymap(), "evdev"
    return keymap, "xkb names"


def indicator_bits(conn: Any) -> dict[str, int]:
    """XKB indicator name -> its bit in the indicator state ('Caps Lock' -> 1 << 0, ...)."""
    xkb = _xkb(conn)
    r = xkb.GetNames(xcffib.xkb.ID.UseCoreKbd, xcffib.xkb.NameDetail.IndicatorNames).reply()
    bits = [i for i in range(32) if r.indicators >> i & 1]
    cookies = [conn.core.GetAtomName(a) for a in r.indicatorNames]
    return {c.reply().name.to_string(): 1 << bit for c, bit in zip(cookies, bits, strict=True)}


def lock_state(conn: Any, bits: dict[str, int]) -> int:
    """The X server's lock LEDs in the router's numbering (1 scroll, 2 num, 4 caps)."""
    state = conn(xcffib.xkb.key).GetIndicatorState(xcffib.xkb.ID.UseCoreKbd).reply().state
    return sum(mod for mod, _, name in LOCKS if state & bits.get(name, 0))


class XInjector:
    """Sends input to X over its own connection (used on the reactor thread only).

    Keys and buttons are tracked per client (session id): two clients holding the
    same key release it in X only when both let go, and whatever a client that went
    away still held is released for it (`release_all`)."""

    def __init__(
        self, conn: Any, root: int, keymap: dict[int, int], indicators: dict[str, int], on_error: Callable[[BaseException], None]
    ) -> None:
        self.conn, self.root, self.keymap, self.indicators = conn, root, keymap, indicators
        self.xtest = conn(xcffib.xtest.key)
        self.on_error = on_error
        self.keys: dict[int, set[int]] = {}  # session id -> keycodes held
        self.buttons: dict[int, set[int]] = {}  # session id -> X buttons held
        self.pos: tuple[int, int] | None = None
        self.sent = 0
        self.unmapped = 0

    def _fake(self, kind: int, detail: int, x: int = 0, y: int = 0) -> None:
        self.xtest.FakeInput(kind, detail, 0, self.root if kind == MOTION else 0, x, y, 0)
        self.sent += 1

    def _flush(self) -> None:
        try:
            self.conn.flush()
            while self.conn.poll_for_event() is not None:  # MappingNotify etc. reach every client
                pass
        except xcffib.Error:
            pass  # an X error for one fake event (a bad keycode): nothing to undo
        except Exception as exc:
            self.on_error(exc)

    def _held_elsewhere(self, table: dict[int, set[int]], session: int, code: int) -> bool:
        return any(code in held for sid, held in table.items() if sid != session)

    # --- pointer -------------------------------------------------------------------
    def move(self, x: int, y: int) -> None:
        if self.pos != (x, y):
            self.pos = (x, y)
            self._fake(MOTION, 0, x, y)
            self._flush()

    def button(self, session: int, button: int, pressed: bool, x: int, y: int) -> None:
        xb = X_BUTTONS.get(button)
        if xb is None:
            return
        if self.pos != (x, y):
            self.pos = (x, y)
            self._fake(MOTION, 0, x, y)
        held = self.buttons.setdefault(session, set())
        if pressed:
            held.add(xb)
            self._fake(BUTTON_PRESS, xb)
        else:
            held.discard(xb)
            if not self._held_elsewhere(self.buttons, session, xb):
                self._fake(BUTTON_RELEASE, xb)
        self._flush()

    # --- keys ----------------------------------------------------------------------
    def key(self, session: int, scancode: int, pressed: bool) -> None:
        kc = self.keymap.get(scancode)
        if kc is None:
            self.unmapped += 1
            return
        held = self.keys.setdefault(session, set())
        if pressed:
            held.add(kc)  # a repeated press while held is X's autorepeat: sent on
            self._fake(KEY_PRESS, kc)
        else:
            held.discard(kc)
            if not self._held_elsewhere(self.keys, session, kc):
                self._fake(KEY_RELEASE, kc)
        self._flush()

    def release_all(self, session: int) -> int:
        """Release what `session` still holds (a client that went away); how many."""
        n = 0
        for kc in sorted(self.keys.pop(session, set())):
            if not self._held_elsewhere(self.keys, session, kc):
                self._fake(KEY_RELEASE, kc)
                n += 1
        for xb in sorted(self.buttons.pop(session, set())):
            if not self._held_elsewhere(self.buttons, session, xb):
                self._fake(BUTTON_RELEASE, xb)
                n += 1
        if n:
            self._flush()
        return n

    def sessions(self) -> set[int]:
        return {sid for sid, held in self.keys.items() if held} | {sid for sid, held in self.buttons.items() if held}

    # --- lock LEDs ---------------------------------------------------------------------
    def locks(self) -> int:
        return lock_state(self.conn, self.indicators)

    def set_locks(self, wanted: int) -> int:
        """Toggle Caps/Num/Scroll Lock in X where X differs from `wanted`; X's state after."""
        have = self.locks()
        for mod, scancode, _ in LOCKS:
            kc = self.keymap.get(scancode)
            if kc is not None and (have ^ wanted) & mod:
                self._fake(KEY_PRESS, kc)
                self._fake(KEY_RELEASE, kc)
        self._flush()
        return self.locks()

    def close(self) -> None:
        try:
            self.conn.disconnect()
        except Exception:
            pass
