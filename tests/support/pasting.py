"""Hypothesis pictures pasted one by one on a served screen, each checked in a real client:
the loop the QUIC (spice-gtk) and spice-html5 tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spice_twisted.wire.enums import MsgDisplay

from .tap import TapConnection


def paste_pictures(
    server: Any,
    conn: TapConnection,
    pictures: st.SearchStrategy[np.ndarray],
    examples: int,
    check: Callable[[str], object],
    screen: tuple[int, int] = (480, 360),
) -> list[tuple[int, int]]:
    """Paste `examples` pictures at random places on the harness server's `screen` (w, h);
    after each, wait until its draw (or, for one colour, its DRAW_FILL) crossed `conn`,
    then call check(what) (it raises if the client does not show the server's picture).
    Returns the (w, h) of every picture pasted."""
    pasted: list[tuple[int, int]] = []

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
        pasted.append((w, h))

    paste()
    return pasted
