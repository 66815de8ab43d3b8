"""Which channels must use TLS and which must not, with QEMU's option names.

`--tls-channel NAME` (repeatable) makes channel NAME TLS-only: a plain link to it is
answered SPICE_LINK_ERR_NEED_SECURED, and spice-gtk then reconnects that channel over
the TLS port. `--plaintext-channel NAME` is the reverse (NEED_UNSECURED on the TLS
port). NAME is a channel name (main, display, inputs, cursor, playback, record,
smartcard, usbredir, port, webdav) or `default`, which sets every channel not named
on its own. A channel that is named nowhere, with no `default`, may use either port.
"""

from __future__ import annotations

from dataclasses import dataclass

from .wire.enums import ChannelType, LinkError

DEFAULT = "default"
NAMES = [c.name.lower() for c in ChannelType if c is not ChannelType.TUNNEL]


def channel_name(value: str) -> str:
    name = value.strip().lower()
    if name != DEFAULT and name not in NAMES:
        raise ValueError(f"unknown channel {value!r}: use {DEFAULT} or one of {', '.join(NAMES)}")
    return name


@dataclass(frozen=True)
class ChannelSecurity:
    tls: frozenset[str] = frozenset()
    plain: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        both = self.tls & self.plain
        if both:
            raise ValueError(f"{', '.join(sorted(both))}: named by both --tls-channel and --plaintext-channel")

    def mode(self, channel_type: int) -> str | None:
        """'tls', 'plain', or None (either) for a channel type."""
        try:
            name = ChannelType(channel_type).name.lower()
        except ValueError:
            name = None
        for candidate in (name, DEFAULT):
            if candidate in self.tls:
                return "tls"
            if candidate in self.plain:
                return "plain"
        return None

    def check(self, channel_type: int, secure: bool) -> LinkError | None:
        mode = self.mode(channel_type)
        if mode == "tls" and not secure:
            return LinkError.NEED_SECURED
        if mode == "plain" and secure:
            return LinkError.NEED_UNSECURED
        return None

    @property
    def any(self) -> bool:
        return bool(self.tls or self.plain)
