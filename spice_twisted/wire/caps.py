"""Capability sets <-> the u32 words of the link messages (bit i = word i/32, bit i%32)."""

from __future__ import annotations

import struct
from collections.abc import Iterable


def caps_to_words(bits: Iterable[int]) -> list[int]:
    bits = list(bits)
    if not bits:
        return []
    words = [0] * (max(bits) // 32 + 1)
    for b in bits:
        words[b // 32] |= 1 << (b % 32)
    return words


def words_to_caps(words: Iterable[int]) -> frozenset[int]:
    return frozenset(i * 32 + b for i, w in enumerate(words) for b in range(32) if w >> b & 1)


def pack_words(words: list[int]) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


def unpack_words(data: bytes, count: int) -> list[int]:
    return list(struct.unpack_from(f"<{count}I", data))
