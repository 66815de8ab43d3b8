"""The client side of the link stage, for our own protocol-level clients (tests, benchmarks,
fuzzers): what a real client sends, built from the same schema the server parses."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from .caps import caps_to_words, pack_words
from .enums import SPICE_MAGIC, SPICE_VERSION_MAJOR, SPICE_VERSION_MINOR, AuthMechanism, ChannelType, CommonCap
from .messages import LINK_HEADER, LINK_MESS
from .schema import encode
from .ticket import encrypt_ticket

DEFAULT_COMMON_CAPS = (CommonCap.AUTH_SELECTION, CommonCap.MINI_HEADER)


def link_message(
    channel: int = ChannelType.MAIN,
    connection_id: int = 0,
    common_caps: Iterable[int] = DEFAULT_COMMON_CAPS,
    channel_caps: Iterable[int] = (),
    magic: bytes = SPICE_MAGIC,
    major: int = SPICE_VERSION_MAJOR,
) -> bytes:
    """SpiceLinkHeader + SpiceLinkMess + capability words."""
    common, chan = caps_to_words(common_caps), caps_to_words(channel_caps)
    mess = encode(
        LINK_MESS,
        {
            "connection_id": connection_id,
            "channel_type": channel,
            "channel_id": 0,
            "num_common_caps": len(common),
            "num_channel_caps": len(chan),
            "caps_offset": LINK_MESS.size,
        },
    ) + pack_words(common + chan)
    return encode(LINK_HEADER, {"magic": magic, "major": major, "minor": SPICE_VERSION_MINOR, "size": len(mess)}) + mess


def ticket_message(public_key_der: bytes, password: bytes, auth_selection: bool = True) -> bytes:
    """The auth mechanism (when AUTH_SELECTION was advertised) and the encrypted ticket."""
    mech = struct.pack("<I", AuthMechanism.SPICE) if auth_selection else b""
    return mech + encrypt_ticket(public_key_der, password)
