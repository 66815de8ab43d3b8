"""The module twistd loads for `twistd spice` (kept tiny so plugin discovery stays cheap)."""

from __future__ import annotations

from twisted.application.service import IService

from .options import Options
from .service import make_service

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> IService:
    return make_service(options)
