"""Region against a numpy boolean-mask reference: every operation, on small canvases."""

from __future__ import annotations

import heapq
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spice_twisted.render import region as region_module
from spice_twisted.render.rect import Rect
from spice_twisted.render.region import EXACT_RECTS, EXACT_WORK, GREEDY_RECTS, GRID, Region

SIZE = 40  # canvas for the random rects
PAD = 25  # translated regions are drawn on a canvas padded by this much on every side

fast = settings(max_examples=200, deadline=None)
big = settings(max_examples=60, deadline=None)  # examples of up to 120 rects


# --- reference model ------------------------------------------------------------------


def paint(rects: list[Rect], pad: int = 0) -> np.ndarray:
    """The mask of a union of rects, drawn on a SIZE x SIZE canvas padded by pad."""
    mask = np.zeros((SIZE + 2 * pad, SIZE + 2 * pad), dtype=bool)
    for r in rects:
        if not Rect(*r).empty():
            mask[r.top + pad : r.bottom + pad, r.left + pad : r.right + pad] = True
    return mask


def region_mask(region: Region, pad: int = 0) -> np.ndarray:
    """The mask of region.rects(), checking on the way that they are disjoint and form the canonical band form."""
    check_canonical(region)
    rects = region.rects()
    counts = np.zeros((SIZE + 2 * pad, SIZE + 2 * pad), dtype=np.int32)
    b = region.bounds
    for r in rects:
        assert not r.empty()
        assert b.contains(r)
        counts[r.top + pad : r.bottom + pad, r.left + pad : r.right + pad] += 1
    assert counts.max(initial=0) <= 1, "rects overlap"
    assert int(counts.sum()) == region.area == sum(r.area for r in rects)
    assert len(region) == len(rects)
    assert bool(region) == bool(rects)
    return counts.astype(bool)


def check_canonical(region: Region) -> None:
    """The private band list is in the one canonical form that __eq__ relies on."""
    bands = region._bands
    for k, (y1, y2, xs) in enumerate(bands):
        assert y1 < y2
        assert xs and len(xs) % 2 == 0
        assert all(a < b for a, b in zip(xs, xs[1:], strict=False)), f"intervals not sorted, disjoint and apart: {xs}"
        if k:
            py1, py2, pxs = bands[k - 1]
            assert py2 <= y1
            assert not (py2 == y1 and pxs == xs), "touching bands with equal intervals were not merged"


def mask_bounds(mask: np.ndarray, pad: int = 0) -> Rect:
    if not mask.any():
        return Rect(0, 0, 0, 0)
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return Rect(int(xs[0]) - pad, int(ys[0]) - pad, int(xs[-1]) + 1 - pad, int(ys[-1]) + 1 - pad)


# --- strategies -------------------------------------------------------------------------

coord = st.integers(0, SIZE)
# Raw tuples include empty and inverted rects (right < left), which a Region must ignore.
raw_rects = st.builds(Rect, coord, coord, coord, coord)
ordered_rects = st.tuples(coord, coord, coord, coord).map(
    lambda t: Rect(min(t[0], t[2]), min(t[1], t[3]), max(t[0], t[2]), max(t[1], t[3]))
)
rects = st.one_of(ordered_rects, ordered_rects, raw_rects)
rect_lists = st.lists(rects, max_size=12)


# --- construction and queries ------------------------------------------------------------


@fast
@given(rect_lists)
def test_from_rects_matches_mask(rs: list[Rect]) -> None:
    region = Region.from_rects(rs)
    mask = paint(rs)
    assert np.array_equal(region_mask(region), mask)
    assert region.area == int(mask.sum())
    assert region.bounds == mask_bounds(mask)


@fast
@given(rects)
def test_single_rect_constructor(r: Rect) -> None:
    region = Region(r)
    assert region == Region.from_rects([r])
    assert np.array_equal(region_mask(region), paint([r]))
    assert region.rects() == ([] if r.empty() else [r])


def test_empty_region() -> None:
    for region in (Region(), Region(Rect(5, 5, 5, 9)), Region(Rect(9, 0, 3, 4)), Region.from_rects([])):
        assert not region
        assert len(region) == 0
        assert region.area == 0
        assert region.bounds == Rect(0, 0, 0, 0)
        assert region.rects() == []
        assert region.simplify(4) == []
        assert region == Region()


@fast
@given(rect_lists, rects)
def test_contains_rect_and_intersects_rect(rs: list[Rect], probe: Rect) -> None:
    region = Region.from_rects(rs)
    mask = paint(rs)
    if probe.empty():
        assert region.contains_rect(probe)
        assert not region.intersects(probe)
    else:
        window = mask[probe.top : probe.bottom, probe.left : probe.right]
        assert region.contains_rect(probe) == bool(window.all())
        assert region.intersects(probe) == bool(window.any())


def test_contains_rect_needs_every_row() -> None:
    region = Region.from_rects([Rect(0, 0, 10, 5), Rect(0, 6, 10, 10)])  # row 5 is missing
    assert not region.contains_rect(Rect(2, 0, 8, 10))
    assert not region.contains_rect(Rect(2, 4, 8, 7))
    assert region.contains_rect(Rect(2, 6, 8, 10))
    assert not region.contains_rect(Rect(2, 6, 8, 11))
    assert not region.contains_rect(Rect(-1, 6, 8, 10))
    assert not region.intersects(Rect(0, 5, 10, 6))


@fast
@given(rect_lists, rect_lists)
def test_intersects_region(a: list[Rect], b: list[Rect]) -> None:
    ra, rb = Region.from_rects(a), Region.from_rects(b)
    expected = bool((paint(a) & paint(b)).any())
    assert ra.intersects(rb) == expected
    assert rb.intersects(ra) == expected


# --- set operations ----------------------------------------------------------------------


@fast
@given(rect_lists, rect_lists)
def test_binary_operations(a: list[Rect], b: list[Rect]) -> None:
    ra, rb = Region.from_rects(a), Region.from_rects(b)
    ma, mb = paint(a), paint(b)
    before_a, before_b = ra.copy(), rb.copy()
    assert np.array_equal(region_mask(ra.union(rb)), ma | mb)
    assert np.array_equal(region_mask(ra.subtract(rb)), ma & ~mb)
    assert np.array_equal(region_mask(ra.intersect(rb)), ma & mb)
    assert ra | rb == ra.union(rb)
    assert ra - rb == ra.subtract(rb)
    assert ra & rb == ra.intersect(rb)
    assert ra == before_a and rb == before_b, "the non-in-place operations changed an operand"


@fast
@given(rect_lists, rects)
def test_operations_with_a_rect(a: list[Rect], r: Rect) -> None:
    ra = Region.from_rects(a)
    ma, mr = paint(a), paint([r])
    assert np.array_equal(region_mask(ra.union(r)), ma | mr)
    assert np.array_equal(region_mask(ra.subtract(r)), ma & ~mr)
    assert np.array_equal(region_mask(ra.intersect(r)), ma & mr)
    assert ra.union(r) == ra.union(Region(r))
    assert ra.subtract(r) == ra.subtract(Region(r))


@fast
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "intersect_update"]), st.one_of(rects, rect_lists)), max_size=25))
def test_in_place_sequence(steps: list[tuple[str, object]]) -> None:
    """add/remove/intersect_update with rects and regions, checked after every step; earlier copies stay put."""
    region = Region()
    mask = paint([])
    snapshots: list[tuple[Region, np.ndarray]] = []
    for op, arg in steps:
        if isinstance(arg, list):
            other: Region | Rect = Region.from_rects(arg)
            other_mask = paint(arg)
        else:
            other = arg  # type: ignore[assignment]
            other_mask = paint([arg])  # type: ignore[list-item]
        snapshots.append((region.copy(), mask.copy()))
        getattr(region, op)(other)
        mask = {"add": mask | other_mask, "remove": mask & ~other_mask, "intersect_update": mask & other_mask}[op]
        assert np.array_equal(region_mask(region), mask)
    for snap, snap_mask in snapshots:
        assert np.array_equal(region_mask(snap), snap_mask)


def test_add_self_and_remove_self() -> None:
    region = Region.from_rects([Rect(0, 0, 10, 10), Rect(20, 5, 30, 15)])
    expected = region.copy()
    region.add(region)
    assert region == expected
    region.intersect_update(region)
    assert region == expected
    region.remove(region)
    assert not region


@fast
@given(rect_lists, st.integers(-PAD, PAD), st.integers(-PAD, PAD))
def test_translate(rs: list[Rect], dx: int, dy: int) -> None:
    region = Region.from_rects(rs)
    before = region.copy()
    moved = region.translate(dx, dy)
    expected = np.zeros_like(paint([], PAD))
    expected[PAD + dy : PAD + dy + SIZE, PAD + dx : PAD + dx + SIZE] = paint(rs)
    assert np.array_equal(region_mask(moved, PAD), expected)
    assert moved == Region.from_rects([Rect(r.left + dx, r.top + dy, r.right + dx, r.bottom + dy) for r in rs])
    assert region == before
    assert moved.translate(-dx, -dy) == region


# --- equality -----------------------------------------------------------------------------


@fast
@given(rect_lists, rect_lists)
def test_equality_is_pixel_set_equality(a: list[Rect], b: list[Rect]) -> None:
    assert (Region.from_rects(a) == Region.from_rects(b)) == np.array_equal(paint(a), paint(b))


@fast
@given(rect_lists, st.randoms(use_true_random=False))
def test_equality_ignores_construction_order(rs: list[Rect], rnd: random.Random) -> None:
    shuffled = list(rs)
    rnd.shuffle(shuffled)
    by_union = Region()
    for r in shuffled:
        by_union = by_union.union(Region(r))
    assert Region.from_rects(rs) == Region.from_rects(shuffled) == by_union
    # The region's own rects, in any order, rebuild the same region.
    pieces = Region.from_rects(rs).rects()
    rnd.shuffle(pieces)
    assert Region.from_rects(pieces) == Region.from_rects(rs)


def test_equality_of_split_rect_and_whole() -> None:
    quads = [Rect(0, 0, 5, 5), Rect(5, 5, 10, 10), Rect(5, 0, 10, 5), Rect(0, 5, 5, 10)]
    assert Region.from_rects(quads) == Region(Rect(0, 0, 10, 10))
    assert len(Region.from_rects(quads)) == 1
    assert Region(Rect(0, 0, 10, 10)) != Region(Rect(0, 0, 10, 11))
    assert Region() != Rect(0, 0, 0, 0)  # not a Region: not equal
    with pytest.raises(TypeError):
        hash(Region())


# --- x-interval helpers, against Python sets of ints ---------------------------------------

intervals = st.lists(st.integers(0, 30), max_size=10).map(lambda v: tuple(sorted(set(v))))


def as_flat(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Any even-length sorted distinct tuple is a valid interval list; an odd one drops its last value."""
    return xs[: len(xs) // 2 * 2]


def as_set(xs: tuple[int, ...]) -> set[int]:
    return {x for k in range(0, len(xs), 2) for x in range(xs[k], xs[k + 1])}


@fast
@given(intervals, intervals, st.integers(0, 30), st.integers(0, 30))
def test_interval_helpers(a: tuple[int, ...], b: tuple[int, ...], lo: int, hi: int) -> None:
    a, b = as_flat(a), as_flat(b)
    for fn, expected in (
        (region_module._xs_union, as_set(a) | as_set(b)),
        (region_module._xs_subtract, as_set(a) - as_set(b)),
        (region_module._xs_intersect, as_set(a) & as_set(b)),
    ):
        out = fn(a, b)
        assert all(x < y for x, y in zip(out, out[1:], strict=False))
        assert as_set(out) == expected
    lo, hi = min(lo, hi), max(lo, hi)
    if lo < hi:
        one = set(range(lo, hi))
        for fn, expected in ((region_module._xs_union_one, as_set(a) | one), (region_module._xs_subtract_one, as_set(a) - one)):
            out = fn(a, lo, hi)
            assert all(x < y for x, y in zip(out, out[1:], strict=False)), out
            assert as_set(out) == expected


# --- simplify --------------------------------------------------------------------------------


@fast
@given(rect_lists, st.integers(1, 8), st.floats(0, 1), st.sampled_from([0, 16, 4096]))
def test_simplify_covers_within_budget(rs: list[Rect], max_rects: int, slack: float, waste_px: int) -> None:
    region = Region.from_rects(rs)
    out = region.simplify(max_rects, slack=slack, waste_px=waste_px)
    assert len(out) <= max_rects
    assert all(not r.empty() for r in out)
    assert not region.subtract(Region.from_rects(out)), "simplify lost pixels"
    assert all(region.bounds.contains(r) for r in out)
    assert sum(r.area for r in out) <= region.bounds.area, "never more pixels than one box around everything"
    if not region:
        assert out == []
    if max_rects == 1 and region:
        assert out == [region.bounds]


@fast
@given(rect_lists)
def test_simplify_without_waste_is_exact(rs: list[Rect]) -> None:
    """slack=0, waste_px=0 and a big budget: only merges that add no pixel, so the result tiles the region exactly
    (past GREEDY_RECTS rects: tiles the grid cells that hold the region's pixels)."""
    region = Region.from_rects(rs)
    out = region.simplify(1000, slack=0, waste_px=0)
    if len(region) <= GREEDY_RECTS:
        assert Region.from_rects(out) == region
        assert sum(r.area for r in out) == region.area
        assert len(out) <= len(region)
    else:  # the cells' exact merges, each cut down to the region's pixels in it
        assert not Region.from_rects(out).subtract(region._coarse(GREEDY_RECTS))
        assert not region.subtract(Region.from_rects(out))


@fast
@given(rect_lists)
def test_simplify_with_unlimited_waste_is_bounds(rs: list[Rect]) -> None:
    region = Region.from_rects(rs)
    assert region.simplify(50, waste_px=10**9) == ([region.bounds] if region else [])


@pytest.mark.parametrize("max_rects", [1, 2, 5, 100])
def test_simplify_single_rect_is_itself(max_rects: int) -> None:
    r = Rect(3, 4, 17, 9)
    assert Region(r).simplify(max_rects) == [r]
    assert Region.from_rects([Rect(3, 4, 10, 9), Rect(10, 4, 17, 9)]).simplify(max_rects) == [r]


def test_simplify_keeps_far_apart_rects_apart() -> None:
    a, b = Rect(0, 0, 10, 10), Rect(1000, 1000, 1010, 1010)
    region = Region.from_rects([b, a])
    assert region.simplify(2) == [a, b]
    assert region.simplify(16) == [a, b]
    assert region.simplify(1) == [Rect(0, 0, 1010, 1010)]


def test_simplify_merges_overlapping_and_touching_rects() -> None:
    overlapping = Region.from_rects([Rect(0, 0, 100, 100), Rect(50, 50, 150, 150)])
    assert len(overlapping) == 3
    assert overlapping.simplify(8) == [Rect(0, 0, 150, 150)]
    touching = Region.from_rects([Rect(0, 0, 10, 10), Rect(10, 3, 20, 13)])
    assert touching.simplify(8) == [Rect(0, 0, 20, 13)]
    # Large rects: merged by the slack rule alone (2% waste), kept apart when slack is 0.
    big = Region.from_rects([Rect(0, 0, 1000, 1000), Rect(100, 100, 1100, 1100)])
    assert big.simplify(8, waste_px=0) == [Rect(0, 0, 1100, 1100)]
    assert Region.from_rects(big.simplify(8, slack=0, waste_px=0)) == big


def test_simplify_keeps_clusters() -> None:
    rnd = random.Random(7)
    corners = [(0, 0), (2000, 0), (0, 2000), (2000, 2000)]
    rs = []
    for cx, cy in corners:
        for _ in range(60):
            x, y = cx + rnd.randrange(150), cy + rnd.randrange(100)
            rs.append(Rect(x, y, x + rnd.randint(2, 12), y + rnd.randint(2, 12)))
    region = Region.from_rects(rs)
    out = region.simplify(8)
    assert len(out) == 4
    assert not region.subtract(Region.from_rects(out))
    # One box per cluster (a region this big is gathered on a grid first: boxes may reach a cell past it).
    assert sorted((round(r.left / 1000), round(r.top / 1000)) for r in out) == [(0, 0), (0, 2), (2, 0), (2, 2)]
    assert all(r.width < 250 and r.height < 200 for r in out)


def test_simplify_large_region_respects_budget() -> None:
    rnd = random.Random(11)
    rs = []
    for _ in range(2000):
        x, y = rnd.randrange(500), rnd.randrange(500)
        rs.append(Rect(x, y, x + rnd.randint(1, 9), y + rnd.randint(1, 9)))
    region = Region.from_rects(rs)
    for max_rects in (1, 3, 16, 64):
        out = region.simplify(max_rects, waste_px=0)
        assert 1 <= len(out) <= max_rects
        assert not region.subtract(Region.from_rects(out))


def test_simplify_rejects_zero_budget() -> None:
    with pytest.raises(ValueError):
        Region(Rect(0, 0, 1, 1)).simplify(0)


# --- cost of the hot path (no wall clock: count the work) --------------------------------------


def test_add_only_rebuilds_the_bands_it_touches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a rect sweeps at most its own rows' bands, however big the region is: never the whole band list."""
    swept: list[int] = []
    real_sweep = region_module._sweep

    def counting_sweep(a, b, op):  # type: ignore[no-untyped-def]
        swept.append(len(a))
        return real_sweep(a, b, op)

    monkeypatch.setattr(region_module, "_sweep", counting_sweep)
    rnd = random.Random(5)
    region = Region()
    for _ in range(10_000):
        w, h = rnd.randint(1, 8), rnd.randint(1, 8)
        x, y = rnd.randrange(1000), rnd.randrange(1000)
        region.add(Rect(x, y, x + w, y + h))
    assert len(region._bands) > 500  # the region really is big ...
    assert max(swept) <= 8  # ... but each add swept at most rect-height bands
    for _ in range(2000):
        w, h = rnd.randint(1, 8), rnd.randint(1, 8)
        x, y = rnd.randrange(1000), rnd.randrange(1000)
        region.remove(Rect(x, y, x + w, y + h))
    assert max(swept) <= 8


def test_many_adds_in_a_fixed_area_stay_small() -> None:
    """10,000 rects inside one 64x64 area: the region never outgrows what that area can hold, so adds cannot slow down."""
    rnd = random.Random(9)
    region = Region()
    peak = 0
    for _ in range(10_000):
        w, h = rnd.randint(1, 6), rnd.randint(1, 6)
        x, y = rnd.randrange(64 - w + 1), rnd.randrange(64 - h + 1)
        region.add(Rect(100 + x, 200 + y, 100 + x + w, 200 + y + h))
        peak = max(peak, len(region))
    assert peak <= 64 * 32  # at most 64 bands of at most 32 intervals
    assert len(region._bands) <= 64
    assert Rect(100, 200, 164, 264).contains(region.bounds)


# --- bounded planning: from_damage and simplify on any damage (no wall clock: count the work) ----

WIDE = 300  # a canvas big enough for grid cells wider than a pixel (cell = ceil(300 / GRID) = 5)
wide = st.integers(0, WIDE)
wide_rects = st.tuples(wide, wide, st.integers(0, 60), st.integers(0, 60)).map(lambda t: Rect(t[0], t[1], t[0] + t[2], t[1] + t[3]))
many_rects = st.lists(wide_rects, min_size=17, max_size=EXACT_RECTS + 40)  # exact, out of budget, and past EXACT_RECTS


def wide_mask(rects: list[Rect]) -> np.ndarray:
    mask = np.zeros((WIDE + 61, WIDE + 61), dtype=bool)
    for r in rects:
        mask[r.top : r.bottom, r.left : r.right] = True
    return mask


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """Every pixel within k (in x and in y) of a set pixel."""
    rows = mask.copy()
    for d in range(1, k + 1):
        rows[d:] |= mask[:-d]
        rows[:-d] |= mask[d:]
    out = rows.copy()
    for d in range(1, k + 1):
        out[:, d:] |= rows[:, :-d]
        out[:, :-d] |= rows[:, d:]
    return out


@big
@given(many_rects)
def test_from_damage_is_a_close_superset(rs: list[Rect]) -> None:
    """Every damaged pixel is in, and every pixel in lies in a grid cell that holds a damaged one (exact while cheap)."""
    region = Region.from_damage(rs)
    exact = Region.from_rects(rs)
    assert not exact.subtract(region), "from_damage lost pixels"
    assert region.bounds == exact.bounds
    b = exact.bounds
    cell = max(1, -(-max(b.width, b.height) // GRID))
    got = region_mask_wide(region)
    assert not (got & ~dilate(wide_mask(rs), cell - 1)).any(), "a pixel further than a cell from any damage"
    assert len(region) <= GRID * GRID // 2


def region_mask_wide(region: Region) -> np.ndarray:
    check_canonical(region)
    return wide_mask(region.rects())


@fast
@given(st.lists(wide_rects, max_size=11))
def test_from_damage_is_exact_for_few_rects(rs: list[Rect]) -> None:
    """The k-th rect meets at most 2k - 1 bands, so 11 rects rebuild at most 121 <= EXACT_WORK bands."""
    assert EXACT_WORK >= 11 * 11
    assert Region.from_damage(rs) == Region.from_rects(rs)


def test_from_damage_is_exact_for_many_cheap_rects() -> None:
    """Up to EXACT_RECTS small rects far apart cost one band each: still exact."""
    rs = [Rect(x, y, x + 4, y + 3) for x in range(0, 1600, 160) for y in range(0, 1200, 100)][:EXACT_RECTS]
    assert len(rs) == 120
    assert Region.from_damage(rs) == Region.from_rects(rs)
    assert Region.from_damage([*rs, Rect(0, 0, 1, 1)] * 2) != Region.from_rects(rs)  # past EXACT_RECTS: the grid


@big
@given(st.lists(wide_rects, max_size=120), st.integers(1, 20), st.floats(0, 1), st.sampled_from([0, 16, 4096]))
def test_simplify_large_regions_covers_within_budget(rs: list[Rect], max_rects: int, slack: float, waste_px: int) -> None:
    """The same contract as for small regions, on regions big enough to take the grid path."""
    region = Region.from_rects(rs)
    out = region.simplify(max_rects, slack=slack, waste_px=waste_px)
    assert len(out) <= max_rects
    assert all(not r.empty() and region.bounds.contains(r) for r in out)
    assert not region.subtract(Region.from_rects(out)), "simplify lost pixels"
    assert sum(r.area for r in out) <= region.bounds.area
    assert all(region.intersect(r).bounds == r for r in out), "a box reaches past the region's pixels in it"


def adversarial(n: int) -> dict[str, list[Rect]]:
    """The damage shapes that made the exact planner's cost cliff, at 1920 x 1080."""
    rnd = random.Random(n)
    boxes, tiny = [], []
    for _ in range(n):
        w, h = rnd.randint(8, 400), rnd.randint(8, 300)
        x, y = rnd.randrange(1920 - w), rnd.randrange(1080 - h)
        boxes.append(Rect(x, y, x + w, y + h))
        x, y = rnd.randrange(1917), rnd.randrange(1077)
        tiny.append(Rect(x, y, x + rnd.randint(1, 3), y + rnd.randint(1, 3)))
    lines = [
        Rect((i * 1913) % 1920, 0, (i * 1913) % 1920 + 1, 1080) if i & 1 else Rect(0, (i * 1031) % 1080, 1920, (i * 1031) % 1080 + 1)
        for i in range(n)
    ]
    stairs = [Rect(i * 1920 // n, i * 1080 // n, i * 1920 // n + 8, i * 1080 // n + 8) for i in range(n)]
    side = int((2 * n) ** 0.5) + 1
    checker = [Rect(x, y, x + 1, y + 1) for y in range(side) for x in range(y & 1, side, 2)][:n]
    return {"boxes": boxes, "crossing lines": lines, "staircase": stairs, "checkerboard": checker, "scattered": tiny}


def screen_mask(rects: list[Rect]) -> np.ndarray:
    mask = np.zeros((1080, 1920), dtype=bool)
    for r in rects:
        mask[r.top : r.bottom, r.left : r.right] = True
    return mask


class CountingHeapq:
    """heapq with a count of the entries the greedy merge scores (heapify's list plus every push)."""

    def __init__(self) -> None:
        self.entries = 0

    def heapify(self, heap: list[int]) -> None:
        self.entries += len(heap)
        heapq.heapify(heap)

    def heappush(self, heap: list[int], item: int) -> None:
        self.entries += 1
        heapq.heappush(heap, item)

    heappop = staticmethod(heapq.heappop)


# Scoring is the greedy merge's unit of work: all pairs of at most GREEDY_RECTS rects, then
# each merge re-scores at most that many neighbours.
MAX_SCORED = 2 * GREEDY_RECTS * GREEDY_RECTS


@pytest.mark.parametrize("n", [64, 200, 1024, 4096])
def test_planning_work_is_bounded_whatever_the_damage(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame plan (from_damage, then simplify) does bounded work for every shape and count:
    at most EXACT_RECTS exact adds, a grid of at most GRID x GRID cells, and at most
    MAX_SCORED pairs scored by the greedy merge."""
    assert EXACT_RECTS < 256
    adds: list[int] = []  # bands each exact add rebuilt
    real_combine = Region._combine_in_place

    def counting_combine(self: Region, ob, op):  # type: ignore[no-untyped-def]
        adds.append(real_combine(self, ob, op))
        return adds[-1]

    grids: list[tuple[int, int]] = []
    real_bands_of_grid = region_module._bands_of_grid

    def recording_bands_of_grid(grid, cell, bounds):  # type: ignore[no-untyped-def]
        grids.append(grid.shape)
        return real_bands_of_grid(grid, cell, bounds)

    monkeypatch.setattr(Region, "_combine_in_place", counting_combine)
    monkeypatch.setattr(region_module, "_bands_of_grid", recording_bands_of_grid)
    for name, rects in adversarial(n).items():
        counter = CountingHeapq()
        monkeypatch.setattr(region_module, "heapq", counter)
        adds.clear()
        region = Region.from_damage(rects)
        if n > EXACT_RECTS:
            assert not adds, f"{name}: {n} rects took the exact path"
        else:  # exact until the bands rebuilt pass EXACT_WORK: the last add can rebuild at most 2n + 1
            assert sum(adds) <= EXACT_WORK + 2 * n + 1, f"{name}: {sum(adds)} bands rebuilt"
        out = region.simplify(16)
        assert 1 <= len(out) <= 16
        assert not (screen_mask(rects) & ~screen_mask(out)).any(), f"{name}: pixels lost"
        assert counter.entries <= MAX_SCORED, f"{name}: {counter.entries} pairs scored"
        assert all(rows <= GRID and cols <= GRID for rows, cols in grids)


def test_simplify_of_a_huge_exact_region_scores_a_bounded_number_of_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """simplify alone (as the pipes' refresh regions and the X11 capture use it): 128 crossing
    lines make an exact region of 4,160 rects; the greedy still scores at most MAX_SCORED pairs
    (201 here; the planner before the grid path scored 32,835 and took about 80 ms)."""
    region = Region.from_rects(adversarial(128)["crossing lines"])
    assert len(region) > 4000
    counter = CountingHeapq()
    monkeypatch.setattr(region_module, "heapq", counter)
    out = region.simplify(16)
    assert 1 <= len(out) <= 16
    assert not region.subtract(Region.from_rects(out))
    assert counter.entries <= MAX_SCORED, counter.entries
