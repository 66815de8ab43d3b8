"""Hypothesis pictures pasted one by one on a served screen, each checked in a real client:
the loop the QUIC (spice-gtk) and spice-html5 tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spice_twisted.wire.enums import MsgDisplay

from .tap import TapConnection


class Paste(NamedTuple):
    """One picture pasted: its size and what carried it to the client: the image types of
    the draws it caused (FROM_CACHE for a repeat the pixmap cache held), or none but a
    DRAW_FILL (one colour)."""

    w: int
    h: int
    types: dict[int, int]
    fill: bool


def paste_pictures(
    server: Any,
    conn: TapConnection,
    pictures: st.SearchStrategy[np.ndarray],
    examples: int,
    check: Callable[[str], object],
    screen: tuple[int, int] = (480, 360),
) -> list[Paste]:
    """Paste `examples` pictures at random places on the harness server's `screen` (w, h);
    after each, wait until its draw (or, for one colour, its DRAW_FILL) crossed `conn`,
    then call check(what) (it raises if the client does not show the server's picture).
    Returns each picture pasted, with what carried it."""
    pasted: list[Paste] = []

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(px=pictures, data=st.data())
    def paste(px: np.ndarray, data: st.DataObject) -> None:
        h, w = px.shape[:2]
        x, y = data.draw(st.integers(0, screen[0] - w)), data.draw(st.integers(0, screen[1] - h))
        mark = conn.mark()
        server.paste(px, x, y)
        conn.wait_for(
            lambda k: k.draws(mark) or any(t == MsgDisplay.DRAW_FILL for t, _ in k.snapshot(mark)), what="the pasted picture's draw"
        )
        check(f"a {w}x{h} paste at {x},{y}")
        fill = any(t == MsgDisplay.DRAW_FILL for t, _ in conn.snapshot(mark))
        pasted.append(Paste(w, h, conn.image_types(mark), fill))

    paste()
    return pasted
