"""Pixel regions as banded rectangle lists (the X11 / pixman representation).

A region is stored in one canonical form: a list of y-bands ``(top, bottom, xs)``
sorted by y and disjoint, where ``xs`` is a flat tuple ``(x0, x1, x2, x3, ...)`` of
sorted, disjoint, non-touching half-open x-intervals ``[x0, x1), [x2, x3), ...``
shared by every row of the band. Bands are never empty and two bands that touch
in y never have equal ``xs`` (they would have been merged). Because the form is
unique for a pixel set, equality is a plain list comparison, and every set
operation is one linear sweep over both band lists (the classic band-merge
algorithm) instead of pairwise rectangle splitting.

Damage is mostly added one rectangle at a time, so the in-place ``add`` and
``remove`` only sweep the bands whose y-range meets the rectangle (found by
bisection) and splice the result back: O(log n + bands touched) plus a list
splice, independent of how large the rest of the region is.

The set operations are pure Python: the regions seen in damage tracking are
small, and numpy's per-call overhead would cost more than it saves. Only the
two places whose input size is unbounded use numpy, on a coarse grid whose
size does not depend on the input (see ``from_damage`` and ``simplify``): an
exact region of n rectangles can hold O(n^2) of them (crossing lines), so no
exact method, pixman's included, has a cost bounded by the frame.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import itemgetter

import numpy as np

from spice_twisted.render.rect import Rect

__all__ = ["Region", "DEFAULT_SLACK", "DEFAULT_WASTE_PX", "EXACT_RECTS", "EXACT_WORK", "GREEDY_RECTS", "GRID"]

Band = tuple[int, int, tuple[int, ...]]

# simplify(): a merge is always accepted when the merged rectangle is at least
# 75% damaged pixels ...
DEFAULT_SLACK = 0.25
# ... or when it adds at most this many undamaged pixels. One more drawable costs
# a message header, a SpiceMsgDisplayDrawCopy body, an image descriptor (roughly
# 100-150 bytes on the wire), one pipe item, one encoder call and one marshal in
# Python, and one draw call in the client: tens of microseconds of fixed cost.
# A C encoder pushes a few thousand pixels in that time, and compressed pixels
# cost about a byte each on the wire, so below ~64x64 pixels of waste the extra
# pixels are cheaper than the extra drawable.
DEFAULT_WASTE_PX = 64 * 64

# The bounds on planning work, whatever the damage (measured in benchmarks/region.py):
# from_damage() is exact for at most EXACT_RECTS rects whose adds rebuild at most
# EXACT_WORK bands in all (an add rebuilds every band it crosses, and n crossing lines
# make n bands: n^2 rebuilds; at one to two microseconds each, 128 is a fifth of a ms) ...
EXACT_RECTS = 128
EXACT_WORK = 128
# ... simplify() runs its greedy merge on at most GREEDY_RECTS rects (about 10 us a
# rect at this size, the merge being quadratic when every pair competes) ...
GREEDY_RECTS = 48
# ... and anything larger is first gathered on a grid of at most GRID x GRID cells
# over the region's bounds (cells coarsened 2x2 until at most GREEDY_RECTS rects remain).
GRID = 64
# After the grid, simplify() cuts each box down to the region's own pixels in it, at a
# cost of boxes x rects: done for regions of up to SHRINK_RECTS rects (from_damage's are).
SHRINK_RECTS = 4096

_UNION, _SUBTRACT, _INTERSECT = 0, 1, 2
_y1 = itemgetter(0)
_y2 = itemgetter(1)


# --- x-interval operations on flat, sorted, coalesced tuples --------------------


def _xs_union(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a:
        return b
    if not b:
        return a
    out: list[int] = []
    i = j = 0
    na, nb = len(a), len(b)
    while i < na or j < nb:
        if j >= nb or (i < na and a[i] <= b[j]):
            s, e = a[i], a[i + 1]
            i += 2
        else:
            s, e = b[j], b[j + 1]
            j += 2
        if out and s <= out[-1]:  # overlaps or touches the last interval: extend it
            if e > out[-1]:
                out[-1] = e
        else:
            out.append(s)
            out.append(e)
    return tuple(out)


def _xs_intersect(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out: list[int] = []
    i = j = 0
    na, nb = len(a), len(b)
    while i < na and j < nb:
        s = a[i] if a[i] > b[j] else b[j]
        ae, be = a[i + 1], b[j + 1]
        e = ae if ae < be else be
        if s < e:
            out.append(s)
            out.append(e)
        if ae < be:
            i += 2
        else:
            j += 2
    return tuple(out)


def _xs_subtract(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a or not b or b[0] >= a[-1] or b[-1] <= a[0]:
        return a
    out: list[int] = []
    j = 0
    nb = len(b)
    for i in range(0, len(a), 2):
        s, e = a[i], a[i + 1]
        while j < nb and b[j + 1] <= s:
            j += 2
        k = j
        while k < nb and b[k] < e:
            if b[k] > s:
                out.append(s)
                out.append(b[k])
            if b[k + 1] > s:
                s = b[k + 1]
            if s >= e:
                break
            k += 2
        if s < e:
            out.append(s)
            out.append(e)
    return tuple(out)


def _xs_union_one(xs: tuple[int, ...], left: int, right: int) -> tuple[int, ...]:
    """xs | [left, right) by bisection and tuple slicing: the add-one-rect hot path."""
    i = bisect_left(xs, left)  # values < left
    if i & 1:  # left is inside, or touches the end of, interval i - 1
        i -= 1
        left = xs[i]
    j = bisect_right(xs, right)  # values <= right
    if j & 1:  # right is inside, or touches the start of, the interval ending at xs[j]
        right = xs[j]
        j += 1
    return xs[:i] + (left, right) + xs[j:]


def _xs_subtract_one(xs: tuple[int, ...], left: int, right: int) -> tuple[int, ...]:
    """xs - [left, right) by bisection and tuple slicing: the remove-one-rect hot path."""
    i = bisect_right(xs, left)  # values <= left
    j = bisect_left(xs, right)  # values < right
    if i == j and not i & 1:
        return xs  # [left, right) falls in a gap
    head = xs[: i - 1] + (xs[i - 1], left) if i & 1 and xs[i - 1] < left else xs[: i - (i & 1)]
    tail = (right, xs[j]) + xs[j + 1 :] if j & 1 and right < xs[j] else xs[j + (j & 1) :]
    return head + tail


_XS_OPS = {_UNION: _xs_union, _SUBTRACT: _xs_subtract, _INTERSECT: _xs_intersect}


# --- the band sweep -------------------------------------------------------------


def _sweep(a: Sequence[Band], b: Sequence[Band], op: int) -> list[Band]:
    """Combine two canonical band lists with a set operation; return a canonical band list.

    Walks both lists once, cutting y at every band edge of either input, so the
    cost is O(bands(a) + bands(b)) x-interval merges.
    """
    out: list[Band] = []

    def emit(top: int, bot: int, xs: tuple[int, ...]) -> None:
        if not xs:
            return
        if out:
            last = out[-1]
            if last[1] == top and last[2] == xs:
                out[-1] = (last[0], bot, xs)
                return
        out.append((top, bot, xs))

    na, nb = len(a), len(b)
    xs_op = _XS_OPS[op]
    if nb == 1 and len(b[0][2]) == 2 and op != _INTERSECT:  # b is one rectangle
        one = _xs_union_one if op == _UNION else _xs_subtract_one
        bl, br = b[0][2]

        def xs_op(axs: tuple[int, ...], _: tuple[int, ...]) -> tuple[int, ...]:
            return one(axs, bl, br)

    i = j = 0
    ya = a[0][0] if na else 0
    yb = b[0][0] if nb else 0
    while i < na and j < nb:
        _, a_y2, axs = a[i]
        _, b_y2, bxs = b[j]
        if ya < yb:  # rows only in a
            bot = a_y2 if a_y2 < yb else yb
            if op != _INTERSECT:
                emit(ya, bot, axs)
            ya = bot
        elif yb < ya:  # rows only in b
            bot = b_y2 if b_y2 < ya else ya
            if op == _UNION:
                emit(yb, bot, bxs)
            yb = bot
        else:  # rows in both
            bot = a_y2 if a_y2 < b_y2 else b_y2
            emit(ya, bot, xs_op(axs, bxs))
            ya = yb = bot
        if ya >= a_y2:
            i += 1
            if i < na:
                ya = a[i][0]
        if yb >= b_y2:
            j += 1
            if j < nb:
                yb = b[j][0]
    if i < na and op != _INTERSECT:
        emit(ya, a[i][1], a[i][2])
        out.extend(a[i + 1 :])
    elif j < nb and op == _UNION:
        emit(yb, b[j][1], b[j][2])
        out.extend(b[j + 1 :])
    return out


def _merge_at(bands: list[Band], k: int) -> None:
    """Merge bands[k - 1] and bands[k] if they touch in y and have the same intervals."""
    if 0 < k < len(bands):
        p, q = bands[k - 1], bands[k]
        if p[1] == q[0] and p[2] == q[2]:
            bands[k - 1 : k + 1] = [(p[0], q[1], p[2])]


class Region:
    """A set of pixels stored as banded, disjoint rectangles.

    ``union``/``subtract``/``intersect``/``translate`` return new regions;
    ``add``/``remove`` change this one (the hot path of damage tracking).
    Anywhere a region is accepted, a ``Rect`` (or any ``(left, top, right,
    bottom)`` tuple) is accepted too. Empty rectangles are ignored.
    """

    __slots__ = ("_bands",)
    __hash__ = None  # type: ignore[assignment]  # mutable (add/remove), so unhashable

    def __init__(self, rect: Rect | None = None) -> None:
        self._bands: list[Band] = []
        if rect is not None:
            self._bands = _rect_bands(rect)

    @classmethod
    def from_rects(cls, rects: Iterable[Rect]) -> Region:
        """The union of many rectangles (any order, overlaps allowed)."""
        region = cls()
        for r in rects:
            region.add(r)
        return region

    @classmethod
    def from_damage(cls, rects: Sequence[Rect]) -> Region:
        """A region holding every pixel of rects, built in time bounded by len(rects).

        It is their exact union while that is cheap: at most EXACT_RECTS rects, and
        at most EXACT_WORK bands rebuilt by the adds (crossing lines make n bands of
        up to n intervals each). Past that (a flood of damage) it is the cells they
        touch on a grid of at most GRID x GRID cells over their bounds: a superset
        by less than one cell around each rect, built by numpy in O(n) with no
        per-rect Python step, and holding at most GRID x GRID / 2 rectangles.
        """
        if len(rects) <= EXACT_RECTS:
            region = cls()
            work = 0
            for r in rects:
                work += region._combine_in_place(_rect_bands(r), _UNION)
                if work > EXACT_WORK:
                    break
            else:
                return region
        a = np.fromiter(chain.from_iterable(rects), dtype=np.int64, count=4 * len(rects)).reshape(-1, 4)
        a = a[(a[:, 0] < a[:, 2]) & (a[:, 1] < a[:, 3])]
        if not len(a):
            return cls()
        bounds = Rect(int(a[:, 0].min()), int(a[:, 1].min()), int(a[:, 2].max()), int(a[:, 3].max()))
        return cls._from_bands(_grid_bands(a[:, 0], a[:, 1], a[:, 2], a[:, 3], bounds, None))

    @classmethod
    def _from_bands(cls, bands: list[Band]) -> Region:
        region = cls()
        region._bands = bands
        return region

    # --- set operations -----------------------------------------------------------

    def add(self, other: Region | Rect) -> None:
        """In place: self |= other. Only the bands overlapping other's rows are rebuilt."""
        self._combine_in_place(_other_bands(other), _UNION)

    def remove(self, other: Region | Rect) -> None:
        """In place: self -= other. Only the bands overlapping other's rows are rebuilt."""
        self._combine_in_place(_other_bands(other), _SUBTRACT)

    def intersect_update(self, other: Region | Rect) -> None:
        """In place: self &= other."""
        ob = _other_bands(other)
        if not ob or not self._bands:
            self._bands = []
            return
        i, j = self._band_range(ob[0][0], ob[-1][1])
        self._bands = _sweep(self._bands[i:j], ob, _INTERSECT)

    def union(self, other: Region | Rect) -> Region:
        """Pixels in either."""
        r = self.copy()
        r.add(other)
        return r

    def subtract(self, other: Region | Rect) -> Region:
        """Pixels in self but not in other."""
        r = self.copy()
        r.remove(other)
        return r

    def intersect(self, other: Region | Rect) -> Region:
        """Pixels in both."""
        r = self.copy()
        r.intersect_update(other)
        return r

    __or__ = union
    __sub__ = subtract
    __and__ = intersect

    def _band_range(self, top: int, bottom: int) -> tuple[int, int]:
        """Indices [i, j) of the bands that share a row with [top, bottom)."""
        bands = self._bands
        i = bisect_right(bands, top, key=_y2)
        j = bisect_left(bands, bottom, lo=i, key=_y1)
        return i, j

    def _combine_in_place(self, ob: list[Band], op: int) -> int:
        """Returns how many of self's bands it rebuilt (the work done, for from_damage)."""
        bands = self._bands
        if not ob or (op == _SUBTRACT and not bands):
            return 0
        i, j = self._band_range(ob[0][0], ob[-1][1])
        if i == j:
            if op == _SUBTRACT:
                return 0
            res: list[Band] = list(ob)
        else:
            res = _sweep(bands[i:j], ob, op)
        bands[i:j] = res
        # The rebuilt slice may now equal a neighbour that touches it; merge the
        # right edge first so the left index stays valid.
        _merge_at(bands, i + len(res))
        _merge_at(bands, i)
        return j - i

    # --- queries ------------------------------------------------------------------

    @property
    def area(self) -> int:
        """Number of pixels."""
        total = 0
        for y1, y2, xs in self._bands:
            total += (y2 - y1) * (sum(xs[1::2]) - sum(xs[0::2]))
        return total

    @property
    def bounds(self) -> Rect:
        """Smallest rectangle holding every pixel; Rect(0, 0, 0, 0) when empty."""
        bands = self._bands
        if not bands:
            return Rect(0, 0, 0, 0)
        return Rect(min(b[2][0] for b in bands), bands[0][0], max(b[2][-1] for b in bands), bands[-1][1])

    def rects(self) -> list[Rect]:
        """Disjoint rectangles covering exactly the region, top-to-bottom then left-to-right."""
        out: list[Rect] = []
        for y1, y2, xs in self._bands:
            for k in range(0, len(xs), 2):
                out.append(Rect(xs[k], y1, xs[k + 1], y2))
        return out

    def __len__(self) -> int:
        """Number of rectangles in rects()."""
        return sum(len(b[2]) for b in self._bands) // 2

    def __bool__(self) -> bool:
        return bool(self._bands)

    def __eq__(self, other: object) -> bool:
        """Same pixel set (the band form is canonical, so this compares the lists)."""
        if isinstance(other, Region):
            return self._bands == other._bands
        return NotImplemented

    def __repr__(self) -> str:
        return f"Region({self.rects()!r})"

    def contains_rect(self, rect: Rect) -> bool:
        """True if every pixel of rect is in the region (an empty rect is always inside)."""
        left, top, right, bottom = rect
        if right <= left or bottom <= top:
            return True
        bands = self._bands
        i = bisect_right(bands, top, key=_y2)
        y = top
        while y < bottom:
            if i >= len(bands):
                return False
            y1, y2, xs = bands[i]
            if y1 > y:
                return False  # a row gap
            k = bisect_right(xs, left)
            if not k & 1 or xs[k] < right:  # left not inside an interval, or the interval ends early
                return False
            y = y2
            i += 1
        return True

    def intersects(self, other: Region | Rect) -> bool:
        """True if at least one pixel is shared; stops at the first one found."""
        if isinstance(other, Region):
            if not self._bands or not other._bands:
                return False
            small, big = (self, other) if len(self._bands) <= len(other._bands) else (other, self)
            return any(big._intersects_rect(r) for r in small.rects())
        return self._intersects_rect(other)

    def _intersects_rect(self, rect: Rect) -> bool:
        left, top, right, bottom = rect
        if right <= left or bottom <= top:
            return False
        bands = self._bands
        i, j = self._band_range(top, bottom)
        for n in range(i, j):
            xs = bands[n][2]
            k = bisect_right(xs, left)
            if k & 1 or (k < len(xs) and xs[k] < right):
                return True
        return False

    # --- copies ---------------------------------------------------------------------

    def copy(self) -> Region:
        """An independent region (bands are immutable tuples, so a shallow list copy suffices)."""
        return Region._from_bands(list(self._bands))

    def translate(self, dx: int, dy: int) -> Region:
        """A new region moved by (dx, dy); self is unchanged."""
        if dx == 0:
            return Region._from_bands([(y1 + dy, y2 + dy, xs) for y1, y2, xs in self._bands])
        return Region._from_bands([(y1 + dy, y2 + dy, tuple(x + dx for x in xs)) for y1, y2, xs in self._bands])

    # --- damage batching ------------------------------------------------------------

    def simplify(self, max_rects: int, slack: float = DEFAULT_SLACK, waste_px: int = DEFAULT_WASTE_PX) -> list[Rect]:
        """At most max_rects rectangles that together cover the region (a superset of it).

        Sending fewer, larger drawables trades undamaged pixels for per-drawable
        overhead. A region of at most GREEDY_RECTS rects goes straight to the
        greedy merge below. A larger one is first gathered on a grid (see
        ``_coarse``): the cells of at most GRID x GRID over the bounds that hold
        a pixel, coarsened 2x2 at a time until at most GREEDY_RECTS rects remain;
        the merged boxes are then cut down to the region's own pixels in them.
        So the cost is O(rects) in numpy plus a bounded merge, never a cliff.

        The greedy rule:

        - Candidate pairs are neighbours: consecutive rects in band order, and
          rects of consecutive bands that overlap or touch in x (plus the nearest
          one on either side). Merged clusters inherit their parts' neighbours.
        - cost(a, b) = area(bbox(a, b)) - area(a | b): the extra pixels sent.
        - A merge is *cheap* if cost <= waste_px (the pixels are cheaper than a
          second drawable, see DEFAULT_WASTE_PX), or if the merged rectangle is
          at most ``slack`` undamaged: area(bbox) - damaged pixels <= slack * area(bbox).
        - Cheap merges are always made, cheapest first. Only when no cheap merge
          is left and more than max_rects remain is the lowest-cost merge forced
          (a forced merge can make new cheap ones, which then go first again).
        - When at most 64 clusters remain, every pair becomes a candidate, so
          boxes that grew into each other (overlap = pixels sent twice) can
          still merge under the same rule; a box inside another is dropped.
        - If the boxes still add up to at least area(bounds), [bounds] is returned.

        Output rects are sorted by (top, left); they cover the region but may
        overlap each other, and each is the bounding box of the region's pixels
        inside it. max_rects=1 gives [bounds]; with slack=0 and waste_px=0, a
        region of at most GREEDY_RECTS rects gets only pixel-exact merges (a
        larger one: the grid cells', cut down as above).
        """
        if max_rects < 1:
            raise ValueError("max_rects must be at least 1")
        if max_rects == 1:
            return [self.bounds] if self else []
        if len(self) > GREEDY_RECTS:
            left, top, right, bottom = self._rect_arrays()
            coarse = Region._from_bands(_grid_bands(left, top, right, bottom, self.bounds, GREEDY_RECTS))
            boxes = coarse._merge(max_rects, slack, waste_px)
            if len(left) <= SHRINK_RECTS:
                boxes = _shrink(boxes, left, top, right, bottom)
            return boxes
        return self._merge(max_rects, slack, waste_px)

    def _rect_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """rects() as four numpy arrays: left, top, right, bottom."""
        bands = self._bands
        counts = [len(xs) // 2 for _, _, xs in bands]
        n = sum(counts)
        xs = np.fromiter(chain.from_iterable(b[2] for b in bands), dtype=np.int64, count=2 * n).reshape(-1, 2)
        ys = np.repeat(np.array([(b[0], b[1]) for b in bands], dtype=np.int64).reshape(-1, 2), counts, axis=0)
        return xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]

    def _coarse(self, limit: int) -> Region:
        """The grid cells that hold a pixel of the region, as a region of at most `limit` rects.

        Cells start at the bounds' top-left corner, square, at most GRID a side across
        the bounds, and are clipped to the bounds; each pass ORs 2x2 cells into one
        until the cells' band form has at most `limit` rects (a 1 x 1 grid is one).
        """
        return Region._from_bands(_grid_bands(*self._rect_arrays(), self.bounds, limit))

    def _merge(self, max_rects: int, slack: float, waste_px: int) -> list[Rect]:
        """simplify()'s greedy merge. Each merge re-scores only the new cluster's
        neighbours, so its cost is O(n log n) for regions whose clusters keep a
        bounded number of neighbours, and O(n^2) at worst: simplify() gives it at
        most GREEDY_RECTS rects."""
        rects = self.rects()
        if len(rects) <= 1:
            return rects
        if max_rects == 1:
            return [self.bounds]

        n = len(rects)
        # Clusters, by id: box edges, box area and the region pixels they stand for.
        # Plain lists (not Rect objects) because score() is the inner loop.
        bl = [r.left for r in rects]
        bt = [r.top for r in rects]
        br = [r.right for r in rects]
        bb = [r.bottom for r in rects]
        barea = [(r.right - r.left) * (r.bottom - r.top) for r in rects]
        damaged = list(barea)
        alive = [True] * n
        nbrs: list[set[int]] = [set() for _ in range(n)]

        # Neighbour graph: consecutive rects in band order (connects everything) ...
        for p in range(n - 1):
            nbrs[p].add(p + 1)
            nbrs[p + 1].add(p)
        # ... and vertical neighbours between consecutive bands.
        first = 0
        bands = self._bands
        for k in range(len(bands) - 1):
            xs, nxs = bands[k][2], bands[k + 1][2]
            nfirst = first + len(xs) // 2
            starts, ends = nxs[0::2], nxs[1::2]
            m = len(starts)
            for p in range(len(xs) // 2):
                lo = bisect_left(ends, xs[2 * p])  # first interval below ending at or after our left
                hi = bisect_right(starts, xs[2 * p + 1])  # intervals below starting at or before our right
                for q in range(max(lo - 1, 0), min(hi + 1, m)):
                    nbrs[first + p].add(nfirst + q)
                    nbrs[nfirst + q].add(first + p)
            first = nfirst

        # A heap entry is one int, compared much faster than a tuple:
        # (expensive flag, cost, p, q) packed most-significant first.
        idbits = (2 * n).bit_length()
        idmask = (1 << idbits) - 1
        bounds = self.bounds
        flagbit = 1 << bounds.area.bit_length()  # > any cost

        def score(p: int, q: int) -> int:
            pl, pt, pr, pb = bl[p], bt[p], br[p], bb[p]
            ql, qt, qr, qb = bl[q], bt[q], br[q], bb[q]
            merged = ((pr if pr > qr else qr) - (pl if pl < ql else ql)) * ((pb if pb > qb else qb) - (pt if pt < qt else qt))
            ow = (pr if pr < qr else qr) - (pl if pl > ql else ql)
            oh = (pb if pb < qb else qb) - (pt if pt > qt else qt)
            cost = merged - barea[p] - barea[q] + (ow * oh if ow > 0 and oh > 0 else 0)
            if not (cost <= waste_px or merged - damaged[p] - damaged[q] <= slack * merged):
                cost |= flagbit
            return (((cost << idbits) | p) << idbits) | q

        heappop, heappush = heapq.heappop, heapq.heappush

        def merge(heap: list[int], count: int) -> int:
            """Run the greedy merges; return how many clusters are left."""
            heapq.heapify(heap)
            while heap and count > 1:
                key = heappop(heap)
                q = key & idmask
                p = (key >> idbits) & idmask
                if not (alive[p] and alive[q]):
                    continue  # stale: one side was merged already
                if key >> (2 * idbits) & flagbit and count <= max_rects:
                    break  # only expensive merges left and we are within budget
                c = len(alive)
                bl.append(min(bl[p], bl[q]))
                bt.append(min(bt[p], bt[q]))
                br.append(max(br[p], br[q]))
                bb.append(max(bb[p], bb[q]))
                barea.append((br[c] - bl[c]) * (bb[c] - bt[c]))
                damaged.append(damaged[p] + damaged[q])
                alive.append(True)
                alive[p] = alive[q] = False
                np_, nq = nbrs[p], nbrs[q]
                if len(np_) < len(nq):
                    np_, nq = nq, np_
                np_ |= nq  # small-to-large: the bigger set becomes the new cluster's
                np_.discard(p)
                np_.discard(q)
                nbrs.append(np_)
                nbrs[p] = nbrs[q] = set()
                for r in np_:
                    s = nbrs[r]
                    s.discard(p)
                    s.discard(q)
                    s.add(c)
                    heappush(heap, score(r, c))  # r < c always: c is the newest id
                count -= 1
            return count

        count = merge([score(p, q) for p in range(n) for q in nbrs[p] if p < q], n)
        if 1 < count <= 64:
            # Few clusters left: let every pair compete, not just graph neighbours, so
            # boxes that grew into each other (overlap = pixels sent twice) still merge.
            live = [i for i in range(len(alive)) if alive[i]]
            for i in live:
                nbrs[i] = set(live)
                nbrs[i].discard(i)
            merge([score(p, q) for k, p in enumerate(live) for q in live[k + 1 :]], count)

        out = [Rect(bl[i], bt[i], br[i], bb[i]) for i in range(len(alive)) if alive[i]]
        if len(out) <= 512:  # a merged box may swallow a non-neighbour: drop rects inside others
            out.sort(key=lambda r: -r.area)
            kept: list[Rect] = []
            for r in out:
                if not any(k.contains(r) for k in kept):
                    kept.append(r)
            out = kept
        if len(out) > 1 and sum(r.area for r in out) >= bounds.area:
            return [bounds]  # overlapping boxes would send more pixels than one box around everything
        out.sort(key=lambda r: (r.top, r.left))
        return out


# --- the coarse grid ---------------------------------------------------------------


def _grid_bands(left: np.ndarray, top: np.ndarray, right: np.ndarray, bottom: np.ndarray, bounds: Rect, limit: int | None) -> list[Band]:
    """The band form of the grid cells the (non-empty) rects touch, clipped to bounds.

    The rects are painted with a 2-D difference array (four bincounts and two
    cumsums: no Python step per rect); with a `limit`, 2x2 cells are ORed together
    until the band form holds at most `limit` rects.
    """
    cell = max(1, -(-max(bounds.width, bounds.height) // GRID))
    cols, rows = -(-bounds.width // cell), -(-bounds.height // cell)
    c0, c1 = (left - bounds.left) // cell, -(-(right - bounds.left) // cell)
    r0, r1 = (top - bounds.top) // cell, -(-(bottom - bounds.top) // cell)
    w = cols + 1
    size = (rows + 1) * w
    diff = (
        np.bincount(r0 * w + c0, minlength=size)
        - np.bincount(r0 * w + c1, minlength=size)
        - np.bincount(r1 * w + c0, minlength=size)
        + np.bincount(r1 * w + c1, minlength=size)
    )
    grid = diff.reshape(rows + 1, w).cumsum(axis=0).cumsum(axis=1)[:rows, :cols] > 0
    if limit is not None:
        while _grid_rect_count(grid) > limit:
            grid = _pool(grid)
            cell *= 2
    return _bands_of_grid(grid, cell, bounds)


def _shrink(boxes: list[Rect], left: np.ndarray, top: np.ndarray, right: np.ndarray, bottom: np.ndarray) -> list[Rect]:
    """Each box cut down to the bounds of the region's pixels inside it (given as rect arrays).

    The boxes still cover the region (every pixel inside a box is inside its cut), and
    the grid's cell edges become the damage's own edges again. O(rects x boxes) in numpy.
    """
    n = len(boxes)
    b = np.array(boxes, dtype=np.int64).reshape(n, 4)
    cl = np.maximum(left, b[:, 0:1])  # shape (boxes, rects)
    ct = np.maximum(top, b[:, 1:2])
    cr = np.minimum(right, b[:, 2:3])
    cb = np.minimum(bottom, b[:, 3:4])
    inside = (cl < cr) & (ct < cb)
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    cut = np.stack(
        [
            np.where(inside, cl, big).min(axis=1),
            np.where(inside, ct, big).min(axis=1),
            np.where(inside, cr, small).max(axis=1),
            np.where(inside, cb, small).max(axis=1),
        ],
        axis=1,
    )
    cuts = sorted((Rect(*row) for row, hit in zip(cut.tolist(), inside.any(axis=1).tolist(), strict=True) if hit), key=lambda r: -r.area)
    out: list[Rect] = []
    for r in cuts:  # a box cut down may now lie inside another one
        if not any(k.contains(r) for k in out):
            out.append(r)
    out.sort(key=lambda r: (r.top, r.left))
    return out


def _grid_rect_count(grid: np.ndarray) -> int:
    """len() of the region the grid's cells make: runs in rows unlike the row above."""
    starts = grid.copy()
    starts[:, 1:] &= ~grid[:, :-1]
    new_row = np.ones(grid.shape[0], dtype=bool)
    new_row[1:] = (grid[1:] != grid[:-1]).any(axis=1)
    return int(starts[new_row].sum())


def _pool(grid: np.ndarray) -> np.ndarray:
    """Each 2 x 2 block of cells ORed into one (a half block at an odd edge)."""
    rows, cols = grid.shape
    padded = np.zeros((rows + rows % 2, cols + cols % 2), dtype=bool)
    padded[:rows, :cols] = grid
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).any(axis=(1, 3))


def _bands_of_grid(grid: np.ndarray, cell: int, bounds: Rect) -> list[Band]:
    rows, cols = grid.shape
    padded = np.zeros((rows, cols + 2), dtype=np.int8)
    padded[:, 1:-1] = grid
    row, col = np.nonzero(np.diff(padded, axis=1))  # run starts and ends, row by row
    xs_all = np.minimum(col * cell + bounds.left, bounds.right).tolist()
    cut = np.searchsorted(row, np.arange(rows + 1)).tolist()
    bands: list[Band] = []
    for r in range(rows):
        if cut[r] == cut[r + 1]:
            continue
        xs = tuple(xs_all[cut[r] : cut[r + 1]])
        top = bounds.top + r * cell
        bottom = min(top + cell, bounds.bottom)
        if bands and bands[-1][1] == top and bands[-1][2] == xs:
            bands[-1] = (bands[-1][0], bottom, xs)
        else:
            bands.append((top, bottom, xs))
    return bands


def _rect_bands(rect: Rect) -> list[Band]:
    left, top, right, bottom = rect
    if right <= left or bottom <= top:
        return []
    return [(top, bottom, (left, right))]


def _other_bands(other: Region | Rect) -> list[Band]:
    if isinstance(other, Region):
        return other._bands
    return _rect_bands(other)
