"""The encoded image of one drawable for one codec, shared by every pipe using that codec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..wire.enums import ImageType


@dataclass(frozen=True, slots=True)
class Payload:
    """`fields` are the image type's own fields (after the 18-byte descriptor) with the
    large part as a `wire.schema.External`, so marshalling never copies it per client."""

    codec: str
    image_type: ImageType
    fields: dict[str, Any]
    nbytes: int  # bytes on the wire for the image, descriptor excluded
