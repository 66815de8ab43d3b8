/*
 * SPICE LZ (LZ_RGB32) and GLZ (GLZ_RGB32) encoders, written for spice-twisted.
 *
 * The byte formats are the ones spice-gtk decodes (spice-common lz.c for LZ, spice-gtk
 * decode-glz.c for GLZ); see docs/codecs.md. Everything here is our own code: the matcher
 * looks at a few candidates per pixel (the previous pixel: a run; the pixel one row up;
 * the last match's distance back in this image; up to four earlier positions whose three
 * pixels hash alike, newest first, through a hash chain; for GLZ also where the last
 * reference to an earlier image points now, from the alignment the previous image ended
 * on) and keeps the longest (GLZ: the one that saves the most bytes, as its codes differ
 * in size). LZ's chain runs through its image;
 * GLZ's through the image being encoded and on to the newest such position in the
 * window (earlier images keep no links: their pages are what a window costs). A
 * candidate is extended only where its pixel at the current best length matches (one
 * compare turns most away); extend compares four pixels at once.
 *
 * Pixels are compared on B,G,R only (the X byte is not sent: RGB32 decoders write 0 there).
 * The encode loops run without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "lz_format.h"

/* ------------------------------------------------------------------ output buffer */

typedef struct {
    uint8_t *buf;
    size_t len;
    size_t cap;
} Out;

static inline void put(Out *o, uint8_t b) { o->buf[o->len++] = b; }

static inline void put32(Out *o, uint32_t w)
{
    put(o, (uint8_t)(w >> 24));
    put(o, (uint8_t)(w >> 16));
    put(o, (uint8_t)(w >> 8));
    put(o, (uint8_t)w);
}

/* Worst case: every pixel a literal (3 bytes) plus one control byte per 32 literals, the
 * header, and slack for one match's bytes. A match never costs more than the literals it
 * replaces plus a few bytes (it is only taken when it saves), so this bounds the output. */
static size_t out_bound(size_t n_pixels) { return 64 + n_pixels * 3 + n_pixels / 32 + 64; }

/* Literals: a control byte (count - 1, below 32) then B,G,R per pixel. */
static void put_literals(Out *o, const uint32_t *px, size_t from, size_t to)
{
    while (from < to) {
        size_t n = to - from;
        if (n > LZ_MAX_COPY) n = LZ_MAX_COPY;
        put(o, (uint8_t)(n - 1));
        for (size_t k = 0; k < n; k++) {
            uint32_t p = px[from + k];
            put(o, (uint8_t)p);
            put(o, (uint8_t)(p >> 8));
            put(o, (uint8_t)(p >> 16));
        }
        from += n;
    }
}

/* Length code in the control byte's top 3 bits: 1..6 as is, 7 then (len - 7) in bytes of
 * 255 and a final byte below 255 (both formats, RGB32). */
static inline void put_len_ext(Out *o, size_t len)
{
    for (len -= 7; len >= 255; len -= 255) put(o, 255);
    put(o, (uint8_t)len);
}

/* LZ match: distance d >= 1 pixels back, len >= 1. */
static void put_lz_match(Out *o, size_t d, size_t len)
{
    size_t ofs = d - 1;
    unsigned code = len < 7 ? (unsigned)len : 7;
    if (ofs < LZ_MAX_DISTANCE) {
        put(o, (uint8_t)((code << 5) | (ofs >> 8)));
        if (code == 7) put_len_ext(o, len);
        put(o, (uint8_t)(ofs & 255));
    } else {
        size_t far = ofs - LZ_MAX_DISTANCE;
        put(o, (uint8_t)((code << 5) | 31));
        if (code == 7) put_len_ext(o, len);
        put(o, 255);
        put(o, (uint8_t)(far >> 8));
        put(o, (uint8_t)(far & 255));
    }
}

/* GLZ match. image_dist 0: pix is the distance back minus one inside this image; otherwise
 * pix is the offset from the start of the image image_dist ids back. */
static void put_glz_match(Out *o, uint32_t image_dist, size_t pix, size_t len)
{
    unsigned code = len < 7 ? (unsigned)len : 7;
    int medium = pix >= GLZ_PIX_SHORT;
    put(o, (uint8_t)((code << 5) | (medium ? 16 : 0) | (pix & 0x0f)));
    if (code == 7) put_len_ext(o, len);
    put(o, (uint8_t)((pix >> 4) & 255));
    if (!medium) {
        /* 2 bits: how many more bytes; 6 bits of image_dist, then 8 per byte */
        if (image_dist < (1u << 6)) {
            put(o, (uint8_t)(image_dist & 0x3f));
        } else if (image_dist < (1u << 14)) {
            put(o, (uint8_t)(0x40 | (image_dist & 0x3f)));
            put(o, (uint8_t)(image_dist >> 6));
        } else if (image_dist < (1u << 22)) {
            put(o, (uint8_t)(0x80 | (image_dist & 0x3f)));
            put(o, (uint8_t)(image_dist >> 6));
            put(o, (uint8_t)(image_dist >> 14));
        } else {
            put(o, (uint8_t)(0xc0 | (image_dist & 0x3f)));
            put(o, (uint8_t)(image_dist >> 6));
            put(o, (uint8_t)(image_dist >> 14));
            put(o, (uint8_t)(image_dist >> 22));
        }
    } else {
        int lng = pix >= GLZ_PIX_MEDIUM;
        uint8_t hi = (uint8_t)((lng ? 32 : 0) | ((pix >> 12) & 31));
        if (image_dist == 0) {
            put(o, hi);
        } else if (image_dist < (1u << 8)) {
            put(o, (uint8_t)(0x40 | hi));
            put(o, (uint8_t)image_dist);
        } else if (image_dist < (1u << 16)) {
            put(o, (uint8_t)(0x80 | hi));
            put(o, (uint8_t)image_dist);
            put(o, (uint8_t)(image_dist >> 8));
        } else {
            put(o, (uint8_t)(0xc0 | hi));
            put(o, (uint8_t)image_dist);
            put(o, (uint8_t)(image_dist >> 8));
            put(o, (uint8_t)(image_dist >> 16));
        }
        if (lng) put(o, (uint8_t)((pix >> 17) & 255));
    }
}

/* ------------------------------------------------------------------ pixels in */

/* Copies the caller's BGRX rows (any row stride) into one contiguous array of B,G,R
 * words, the X byte cleared, so the matcher compares whole words. */
static void load_pixels(uint32_t *dst, const uint8_t *src, size_t w, size_t h, Py_ssize_t row_stride)
{
    for (size_t y = 0; y < h; y++) {
        const uint8_t *row = src + (Py_ssize_t)y * row_stride;
        uint32_t *d = dst + y * w;
        for (size_t x = 0; x < w; x++) {
            uint32_t v;
            memcpy(&v, row + 4 * x, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            v = __builtin_bswap32(v);
#endif
            d[x] = v & 0x00ffffffu;
        }
    }
}

static inline uint32_t hash3(const uint32_t *p, unsigned bits)
{
    /* three independent 64-bit products (they run in parallel), summed; the top bits */
    uint64_t h = p[0] * UINT64_C(0x9E3779B97F4A7C15) + p[1] * UINT64_C(0xC2B2AE3D27D4EB4F) +
                 p[2] * UINT64_C(0x165667B19E3779F9);
    return (uint32_t)(h >> (64 - bits));
}

/* Three equal pixels: a run, which the run candidate finds; kept out of the hash table,
 * where they would only push out the positions that tell content apart. */
static inline int uniform3(const uint32_t *p) { return p[0] == p[1] && p[1] == p[2]; }

/* Position k is looked up and remembered by the three pixels from k - 1: at the edge
 * where a run or a match ends, that triple still tells the content apart. */
static inline int keyed(const uint32_t *px, size_t k, size_t n) { return k >= 1 && k + 2 <= n && !uniform3(px + k - 1); }

/* After a long stretch without a match (a photo, noise) look at fewer positions, as LZ4
 * does: the pixels passed over go out as literals all the same. */
static inline size_t skip_after(size_t literals) { return literals < 128 ? 1 : (literals < 1024 ? 2 : 4); }

/* How many words from a equal those from b, at most max: four at a time where SSE2 is
 * there (every x86-64), reading only inside both ranges. a and b may overlap (a run). */
static inline size_t extend(const uint32_t *a, const uint32_t *b, size_t max)
{
    size_t n = 0;
#if defined(__SSE2__)
    while (n + 4 <= max) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(a + n));
        __m128i y = _mm_loadu_si128((const __m128i *)(const void *)(b + n));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi32(x, y));
        if (m != 0xffffu) return n + ((unsigned)__builtin_ctz(~m) >> 2);
        n += 4;
    }
#endif
    while (n < max && a[n] == b[n]) n++;
    return n;
}

/* Where a candidate at distance d could beat a match of `best` pixels, its pixel at
 * `best` must match: one compare turns most candidates away before extend runs. */
static inline int may_beat(const uint32_t *px, size_t i, size_t d, size_t best) { return px[i + best] == px[i + best - d]; }

/* ------------------------------------------------------------------ LZ */

#define LZ_HASH_BITS 16
#define LZ_TABLE_SLOTS (1u << LZ_HASH_BITS)

/* Each keyed position k also remembers the position its hash slot held before it, in
 * chain[k % LZ_CHAIN_SLOTS]: a ring longer than the farthest distance, so a position
 * still in reach was written when it was keyed and not since. Following it a few steps
 * finds older repeats that line up better than the newest one (a diagonal gradient
 * repeats exactly a few rows up, not one row up). */
#define LZ_CHAIN_SLOTS (1u << 17)
#define LZ_CHAIN_DEPTH 4 /* candidates per position: 3 rows up and more on the gradient */
#define LZ_NICE 32       /* a match this long ends the search: longer looks find little more */
_Static_assert(LZ_CHAIN_SLOTS > LZ_MAX_FAR + 1, "the chain ring must outlast the farthest distance");

static inline void key_lz(uint32_t *table, uint32_t *chain, const uint32_t *px, size_t k)
{
    uint32_t hv = hash3(px + k - 1, LZ_HASH_BITS);
    chain[k % LZ_CHAIN_SLOTS] = table[hv];
    table[hv] = (uint32_t)k;
}

/* Keys positions from..to-1 (all >= 1, to <= n - 1: each has k - 1..k + 1 inside). */
static void remember_lz(uint32_t *table, uint32_t *chain, const uint32_t *px, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++) {
        if (!uniform3(px + k - 1)) {
            key_lz(table, chain, px, k);
        } else if (k + 9 < to && px[k + 9] == px[k]) {
            /* inside a run: every position whose next pixel still repeats is unkeyed too */
            k += extend(px + k + 2, px + k + 1, to - k - 2);
        }
    }
}

/* Encodes n = w*h pixels as LZ_RGB32 (top-down) into o. table: LZ_TABLE_SLOTS entries,
 * chain: LZ_CHAIN_SLOTS (need no clearing). */
static void lz_encode_rgb32(Out *o, const uint32_t *px, size_t w, size_t h, uint32_t *table, uint32_t *chain)
{
    size_t n = w * h;
    put32(o, LZ_MAGIC);
    put32(o, LZ_VERSION);
    put32(o, LZ_TYPE_RGB32);
    put32(o, (uint32_t)w);
    put32(o, (uint32_t)h);
    put32(o, (uint32_t)(w * 4));
    put32(o, 1); /* top_down */

    memset(table, 0xff, sizeof(uint32_t) * LZ_TABLE_SLOTS);
    size_t i = 0, lit = 0, rep = 0;
    while (i < n) {
        size_t best = 0, best_d = 0, left = n - i;
        if (i > 0 && px[i] == px[i - 1]) {
            best = 1 + extend(px + i + 1, px + i, left - 1);
            best_d = 1;
        }
        if (i >= w && w > 1 && w - 1 <= LZ_MAX_FAR && best < left && may_beat(px, i, w, best)) {
            size_t l = extend(px + i, px + i - w, left);
            if (l > best) { best = l; best_d = w; }
        }
        if (rep && i >= rep && best < left && may_beat(px, i, rep, best)) {
            size_t l = extend(px + i, px + i - rep, left);
            if (l > best) { best = l; best_d = rep; }
        }
        if (best < left && keyed(px, i, n)) {
            uint32_t c = table[hash3(px + i - 1, LZ_HASH_BITS)];
            key_lz(table, chain, px, i);
            /* deep in literals (a photo, noise) repeats are rare: the newest candidate only */
            int depth_max = i - lit < 128 ? LZ_CHAIN_DEPTH : 1;
            for (int depth = 0; depth < depth_max && best < LZ_NICE && c != UINT32_MAX && i - c - 1 <= LZ_MAX_FAR; depth++) {
                if (may_beat(px, i, i - c, best)) {
                    size_t l = extend(px + i, px + c, left);
                    if (l > best) {
                        best = l;
                        best_d = i - c;
                    }
                    if (best >= LZ_NICE || best == left) break;
                }
                c = chain[c % LZ_CHAIN_SLOTS];
            }
        }
        if (best >= 2) {
            put_literals(o, px, lit, i);
            put_lz_match(o, best_d, best);
            if (best_d != 1 && best_d != w) rep = best_d;
            size_t end = i + best;
            /* remember the match's positions for later matches (inside a run, none is keyed) */
            if (best_d != 1) remember_lz(table, chain, px, i + 1, end < n - 1 ? end : n - 1);
            i = lit = end;
        } else {
            i += skip_after(i - lit);
        }
    }
    put_literals(o, px, lit, n);
}

/* ------------------------------------------------------------------ LZ_PLT (palette) */

/* A picture of at most 16 colours goes as palette indices packed into bytes, most
 * significant bits first (LZ_PLT1_BE: 8 pixels a byte, LZ_PLT4_BE: 2), each row padded
 * to whole bytes, then byte-oriented LZ over those bytes: on terminal text a byte match
 * covers 8 (or 2) pixels. */
#define PLT_MAX_COLOURS 16
#define PLT_NONE 0xffffffffu /* no pixel (24 bits once X is cleared) equals it */

/* One pass over the caller's rows: the colours, first seen first, and every pixel's index
 * packed 4 bits a pixel into rows of nstride bytes. Returns the number of colours, or
 * PLT_MAX_COLOURS + 1 as soon as a 17th is seen (a photo stops within a few pixels).
 * The index is found by comparing the pixel with all 16 entries at once (SSE2): text
 * changes colour every few pixels, where a branch per entry would mispredict. */
static unsigned index_pass(const uint8_t *base, size_t w, size_t h, Py_ssize_t row_stride, uint8_t *nib, size_t nstride,
                           uint32_t pal[PLT_MAX_COLOURS])
{
    unsigned k = 0;
    for (unsigned j = 0; j < PLT_MAX_COLOURS; j++) pal[j] = PLT_NONE;
#if defined(__SSE2__)
    __m128i v0 = _mm_set1_epi32(-1), v1 = v0, v2 = v0, v3 = v0;
#endif
    uint32_t last_c = PLT_NONE;
    unsigned last_idx = 0;
    for (size_t y = 0; y < h; y++) {
        const uint8_t *row = base + (Py_ssize_t)y * row_stride;
        uint8_t *d = nib + y * nstride;
        for (size_t x = 0; x < w; x++) {
#if defined(__SSE2__)
            /* a stretch of the last colour (a background), 8 pixels at once */
            if (!(x & 1) && last_c != PLT_NONE) {
                const __m128i rgb = _mm_set1_epi32(0x00ffffff), lc = _mm_set1_epi32((int)last_c);
                const uint8_t twice = (uint8_t)(last_idx << 4 | last_idx);
                while (x + 8 <= w) {
                    __m128i a = _mm_and_si128(_mm_loadu_si128((const __m128i *)(const void *)(row + 4 * x)), rgb);
                    __m128i b = _mm_and_si128(_mm_loadu_si128((const __m128i *)(const void *)(row + 4 * x + 16)), rgb);
                    if (_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi32(a, lc), _mm_cmpeq_epi32(b, lc))) != 0xffff) break;
                    memset(d + (x >> 1), twice, 4);
                    x += 8;
                }
                if (x >= w) break;
            }
#endif
            uint32_t c;
            memcpy(&c, row + 4 * x, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            c = __builtin_bswap32(c);
#endif
            c &= 0x00ffffffu;
            unsigned idx;
#if defined(__SSE2__)
            __m128i b = _mm_set1_epi32((int)c);
            uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi32(b, v0)) |
                         (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi32(b, v1)) << 16 |
                         (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi32(b, v2)) << 32 |
                         (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi32(b, v3)) << 48;
            if (m) {
                idx = (unsigned)__builtin_ctzll(m) >> 2;
            } else {
                if (k == PLT_MAX_COLOURS) return PLT_MAX_COLOURS + 1;
                pal[k] = c;
                idx = k++;
                v0 = _mm_loadu_si128((const __m128i *)(const void *)pal);
                v1 = _mm_loadu_si128((const __m128i *)(const void *)(pal + 4));
                v2 = _mm_loadu_si128((const __m128i *)(const void *)(pal + 8));
                v3 = _mm_loadu_si128((const __m128i *)(const void *)(pal + 12));
            }
#else
            idx = 0;
            while (idx < k && pal[idx] != c) idx++;
            if (idx == k) {
                if (k == PLT_MAX_COLOURS) return PLT_MAX_COLOURS + 1;
                pal[k++] = c;
            }
#endif
            last_c = c, last_idx = idx;
            if (x & 1)
                d[x >> 1] |= (uint8_t)idx;
            else
                d[x >> 1] = (uint8_t)(idx << 4);
        }
    }
    return k;
}

/* Rows of 4-bit indices that are all 0 or 1 -> rows of 1-bit indices (PLT1_BE), the
 * padding bits of a row's last byte 0. */
static void nibbles_to_bits(uint8_t *dst, size_t stride, const uint8_t *nib, size_t nstride, size_t w, size_t h)
{
    for (size_t y = 0; y < h; y++) {
        const uint8_t *s = nib + y * nstride;
        uint8_t *d = dst + y * stride;
        for (size_t x = 0; x < w; x += 8) {
            unsigned v = 0;
            for (unsigned k = 0; k < 8; k += 2) {
                unsigned b = x + k < w ? s[(x + k) >> 1] : 0; /* (a padding nibble is 0) */
                v = (v << 2) | ((b >> 3) & 2) | (b & 1);
            }
            d[x >> 3] = (uint8_t)v;
        }
    }
}

/* LZ_PLT matches are counted in bytes and are at least 3 long: the control byte's length
 * code is len - 2 (3..8), 7 then (len - 9) in bytes of 255 and a final byte below 255. */
#define PLT_MIN_MATCH 3

static void put_plt_match(Out *o, size_t d, size_t len)
{
    size_t ofs = d - 1;
    unsigned code = len < PLT_MIN_MATCH + 6 ? (unsigned)(len - PLT_MIN_MATCH + 1) : 7;
    uint8_t hi = ofs < LZ_MAX_DISTANCE ? (uint8_t)(ofs >> 8) : 31;
    put(o, (uint8_t)((code << 5) | hi));
    if (code == 7) {
        size_t rest = len - (PLT_MIN_MATCH + 6);
        for (; rest >= 255; rest -= 255) put(o, 255);
        put(o, (uint8_t)rest);
    }
    if (ofs < LZ_MAX_DISTANCE) {
        put(o, (uint8_t)(ofs & 255));
    } else {
        size_t far = ofs - LZ_MAX_DISTANCE;
        put(o, 255);
        put(o, (uint8_t)(far >> 8));
        put(o, (uint8_t)(far & 255));
    }
}

static void put_byte_literals(Out *o, const uint8_t *b, size_t from, size_t to)
{
    while (from < to) {
        size_t n = to - from;
        if (n > LZ_MAX_COPY) n = LZ_MAX_COPY;
        put(o, (uint8_t)(n - 1));
        memcpy(o->buf + o->len, b + from, n);
        o->len += n;
        from += n;
    }
}

/* How many bytes from a equal those from b, at most max (eight at a time). */
static inline size_t extend_bytes(const uint8_t *a, const uint8_t *b, size_t max)
{
    size_t n = 0;
    while (n + 8 <= max) {
        uint64_t x, y;
        memcpy(&x, a + n, 8);
        memcpy(&y, b + n, 8);
        if (x != y) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            return n + ((unsigned)__builtin_clzll(x ^ y) >> 3);
#else
            return n + ((unsigned)__builtin_ctzll(x ^ y) >> 3);
#endif
        }
        n += 8;
    }
    while (n < max && a[n] == b[n]) n++;
    return n;
}

static inline uint32_t hash_bytes4(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return (uint32_t)((v * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - LZ_HASH_BITS));
}

/* Byte LZ over b[0..n) (the same candidates as LZ_RGB32: a run, the row above, the last
 * distance, a hash chain over 4-byte keys); table/chain as for lz_encode_rgb32. */
static void lz_encode_bytes(Out *o, const uint8_t *b, size_t n, size_t stride, uint32_t *table, uint32_t *chain)
{
    memset(table, 0xff, sizeof(uint32_t) * LZ_TABLE_SLOTS);
    size_t i = 0, lit = 0, rep = 0, keyed_to = 0;
    while (i < n) {
        size_t best = 0, best_d = 0, left = n - i;
        if (i > 0 && b[i] == b[i - 1]) {
            best = 1 + extend_bytes(b + i + 1, b + i, left - 1);
            best_d = 1;
        }
        if (i >= stride && stride > 1 && stride - 1 <= LZ_MAX_FAR && best < left && b[i + best] == b[i + best - stride]) {
            size_t l = extend_bytes(b + i, b + i - stride, left);
            if (l > best) best = l, best_d = stride;
        }
        if (rep && i >= rep && best < left && b[i + best] == b[i + best - rep]) {
            size_t l = extend_bytes(b + i, b + i - rep, left);
            if (l > best) best = l, best_d = rep;
        }
        if (best < left && i + 4 <= n) {
            /* key every position passed over since the last look (a match's too) */
            for (size_t k = keyed_to; k < i && k + 4 <= n; k++) {
                uint32_t hv = hash_bytes4(b + k);
                chain[k % LZ_CHAIN_SLOTS] = table[hv];
                table[hv] = (uint32_t)k;
            }
            uint32_t hv = hash_bytes4(b + i);
            uint32_t c = table[hv];
            chain[i % LZ_CHAIN_SLOTS] = c;
            table[hv] = (uint32_t)i;
            keyed_to = i + 1;
            for (int depth = 0; depth < LZ_CHAIN_DEPTH && best < LZ_NICE && c != UINT32_MAX && i - c - 1 <= LZ_MAX_FAR;
                 depth++) {
                if (b[i + best] == b[c + best]) {
                    size_t l = extend_bytes(b + i, b + c, left);
                    if (l > best) best = l, best_d = i - c;
                    if (best >= LZ_NICE || best == left) break;
                }
                c = chain[c % LZ_CHAIN_SLOTS];
            }
        }
        if (best >= PLT_MIN_MATCH + (best_d > LZ_MAX_DISTANCE)) { /* a far code costs 4 bytes */
            put_byte_literals(o, b, lit, i);
            put_plt_match(o, best_d, best);
            if (best_d != 1 && best_d != stride) rep = best_d;
            i = lit = i + best;
            /* inside a run nothing new is worth keying */
            if (best_d == 1) keyed_to = i;
        } else {
            i++;
        }
    }
    put_byte_literals(o, b, lit, n);
}

/* ------------------------------------------------------------------ buffers from Python */

/* A C view of a (height, width, 4) uint8 buffer whose pixels are contiguous within a row. */
typedef struct {
    Py_buffer view;
    const uint8_t *base;
    size_t w, h;
    Py_ssize_t row_stride;
} Pixels;

static int get_pixels(PyObject *obj, Pixels *p)
{
    if (PyObject_GetBuffer(obj, &p->view, PyBUF_RECORDS_RO) < 0) return -1;
    Py_buffer *v = &p->view;
    if (v->ndim != 3 || v->shape[2] != 4 || v->itemsize != 1 || v->strides[2] != 1 || v->strides[1] != 4) {
        PyErr_SetString(PyExc_ValueError, "pixels must be a (height, width, 4) uint8 array with contiguous rows");
        PyBuffer_Release(v);
        return -1;
    }
    if (v->format && strcmp(v->format, "B") != 0) {
        PyErr_SetString(PyExc_ValueError, "pixels must be uint8");
        PyBuffer_Release(v);
        return -1;
    }
    if (v->shape[0] < 1 || v->shape[1] < 1 || v->shape[0] > LZ_MAX_SIDE || v->shape[1] > LZ_MAX_SIDE ||
        v->strides[0] < 4 * v->shape[1]) {
        PyErr_Format(PyExc_ValueError, "image size %zdx%zd (row stride %zd) out of range", v->shape[1], v->shape[0],
                     v->strides[0]);
        PyBuffer_Release(v);
        return -1;
    }
    p->base = (const uint8_t *)v->buf;
    p->w = (size_t)v->shape[1];
    p->h = (size_t)v->shape[0];
    p->row_stride = v->strides[0];
    return 0;
}

static PyObject *finish(Out *o)
{
    PyObject *r = PyBytes_FromStringAndSize((const char *)o->buf, (Py_ssize_t)o->len);
    free(o->buf);
    return r;
}

static PyObject *py_encode_lz(PyObject *self, PyObject *arg)
{
    Pixels p;
    if (get_pixels(arg, &p) < 0) return NULL;
    size_t n = p.w * p.h;
    if (n * 4 > LZ_MAX_IMAGE_BYTES) {
        PyBuffer_Release(&p.view);
        PyErr_SetString(PyExc_ValueError, "LZ images hold less than 1 GiB (what clients accept)");
        return NULL;
    }
    /* one block for the pixels, the table and the chain: fewer, larger allocations keep
     * malloc from mapping and faulting in fresh pages on every call */
    uint32_t *px = malloc((n + LZ_TABLE_SLOTS + LZ_CHAIN_SLOTS) * sizeof(uint32_t));
    uint32_t *table = px ? px + n : NULL, *chain = px ? table + LZ_TABLE_SLOTS : NULL;
    Out o = {malloc(out_bound(n)), 0, out_bound(n)};
    if (!px || !o.buf) {
        free(px), free(o.buf);
        PyBuffer_Release(&p.view);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    load_pixels(px, p.base, p.w, p.h, p.row_stride);
    lz_encode_rgb32(&o, px, p.w, p.h, table, chain);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&p.view);
    free(px);
    return finish(&o);
}

/* encode_lz_plt(pixels) -> (type, data, palette) or None: the LZ_PLT1_BE or LZ_PLT4_BE
 * stream of a picture of at most 16 colours (None above that), and its palette as
 * little-endian u32 words (B, G, R, 0), at least 2 (PLT1 decoders read entries 0 and 1). */
static PyObject *py_encode_lz_plt(PyObject *self, PyObject *arg)
{
    Pixels p;
    if (get_pixels(arg, &p) < 0) return NULL;
    size_t n = p.w * p.h;
    if (n * 4 > LZ_MAX_IMAGE_BYTES) {
        PyBuffer_Release(&p.view);
        PyErr_SetString(PyExc_ValueError, "LZ images hold less than 1 GiB (what clients accept)");
        return NULL;
    }
    const size_t nstride = (p.w + 1) / 2, bstride = (p.w + 7) / 8;
    size_t bound = 2 * nstride * p.h + 256; /* no code costs twice the bytes it stands for */
    uint32_t *table = malloc((LZ_TABLE_SLOTS + LZ_CHAIN_SLOTS) * sizeof(uint32_t));
    uint8_t *nib = malloc(nstride * p.h + bstride * p.h);
    Out o = {malloc(bound), 0, bound};
    if (!table || !nib || !o.buf) {
        free(table), free(nib), free(o.buf);
        PyBuffer_Release(&p.view);
        return PyErr_NoMemory();
    }
    uint32_t *chain = table + LZ_TABLE_SLOTS;
    uint32_t pal[PLT_MAX_COLOURS];
    unsigned ncol, type = 0;
    Py_BEGIN_ALLOW_THREADS
    ncol = index_pass(p.base, p.w, p.h, p.row_stride, nib, nstride, pal);
    if (ncol <= PLT_MAX_COLOURS) {
        const uint8_t *rows = nib;
        size_t stride = nstride;
        type = LZ_TYPE_PLT4_BE;
        if (ncol <= 2) {
            uint8_t *bits = nib + nstride * p.h;
            nibbles_to_bits(bits, bstride, nib, nstride, p.w, p.h);
            rows = bits, stride = bstride, type = LZ_TYPE_PLT1_BE;
        }
        put32(&o, LZ_MAGIC);
        put32(&o, LZ_VERSION);
        put32(&o, type);
        put32(&o, (uint32_t)p.w);
        put32(&o, (uint32_t)p.h);
        put32(&o, (uint32_t)stride);
        put32(&o, 1); /* top_down */
        lz_encode_bytes(&o, rows, stride * p.h, stride, table, chain);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&p.view);
    free(table);
    free(nib);
    if (ncol > PLT_MAX_COLOURS) {
        free(o.buf);
        Py_RETURN_NONE;
    }
    unsigned nent = ncol < 2 ? 2 : ncol;
    uint8_t ents[4 * PLT_MAX_COLOURS];
    for (unsigned k = 0; k < nent; k++) {
        uint32_t c = pal[k < ncol ? k : 0];
        ents[4 * k] = (uint8_t)c, ents[4 * k + 1] = (uint8_t)(c >> 8), ents[4 * k + 2] = (uint8_t)(c >> 16);
        ents[4 * k + 3] = 0;
    }
    PyObject *data = finish(&o);
    if (!data) return NULL;
    return Py_BuildValue("(INy#)", type, data, (const char *)ents, (Py_ssize_t)(4 * nent));
}

/* ------------------------------------------------------------------ GLZ dictionary */

#define GLZ_HASH_BITS 17
#define GLZ_OFF_BITS 25 /* pixel offsets below 2^25: the format's longest */
#define GLZ_MAX_ID ((UINT64_C(1) << (64 - GLZ_OFF_BITS)) - 1)
#define GLZ_NONE UINT64_MAX
#define GLZ_NONE32 UINT32_MAX
#define GLZ_MAX_WINDOW ((size_t)1 << 30) /* pixels: the window and an image stay below 2^32 */
#define GLZ_CHAIN_DEPTH LZ_CHAIN_DEPTH /* the same search as LZ's */
#define GLZ_NICE LZ_NICE

/* Every pixel the dictionary has seen has a global position: an image's pixels follow the
 * previous image's. The hash table holds global positions (minus an epoch, in 32 bits).
 * The image being encoded keeps, for each of its keyed positions, how far back the
 * previous position with the same hash is: a hash chain through this image as LZ has,
 * whose last link may lead into an earlier image (that candidate is tried too). Earlier
 * images keep no links: 4 more bytes a pixel of window, faulted in anew for every image,
 * cost more CPU than their candidates saved bytes on our workloads. */
typedef struct {
    uint64_t id;
    uint64_t base;   /* global position of pixel 0 */
    uint32_t *px; /* n B,G,R words */
    size_t n;
    size_t cap; /* pixels the block has room for (a little more than n: a next image of about
                 * its size may take the block over when this one leaves the window) */
} GlzImage;

typedef struct {
    PyObject_HEAD
    GlzImage *ring; /* images by id, oldest first, circular */
    size_t cap, head, count;
    size_t pixels, window;
    uint64_t last_id;   /* GLZ_NONE before the first */
    uint64_t next_base; /* global position of the next image's pixel 0 */
    /* The newest keyed position with each hash, as its global position minus epoch (32
     * bits keep the table in cache), or GLZ_NONE32. The epoch moves up (rebase_table) before
     * the positions of the window and the image being encoded would pass 32 bits. */
    uint32_t *table;
    uint64_t epoch;
    /* Memory kept from one encode to the next: fresh pages cost a page fault each (a fifth
     * of the encode time when every image had a new block). */
    uint32_t *spare; /* the block of the last image dropped, for a next one of about its size */
    size_t spare_cap;
    uint32_t *links; /* the chain links of the image being encoded */
    uint8_t *out;    /* the output buffer */
    size_t links_cap, out_cap; /* bytes */
    int busy;
    /* the last encode's counts, for tests and benchmarks */
    size_t last_ref_pixels;
    uint64_t last_oldest_ref;
    /* The last encode ended referencing the image just before it, at `motion` pixels from
     * its own offsets: where the next image starts looking (a scroll or a drag goes on). */
    int has_motion;
    int64_t motion;
} GlzDict;

static GlzImage *ring_at(GlzDict *d, size_t k) { return &d->ring[(d->head + k) % d->cap]; }

static void dict_drop_oldest(GlzDict *d)
{
    GlzImage *g = ring_at(d, 0);
    d->pixels -= g->n;
    free(d->spare);
    d->spare = g->px;
    d->spare_cap = g->cap;
    g->px = NULL;
    d->head = (d->head + 1) % d->cap;
    d->count--;
}

/* Adds image id (its pixels in px, a block with room for cap), at global position base. */
static int dict_push(GlzDict *d, uint64_t id, uint64_t base, uint32_t *px, size_t n, size_t cap)
{
    if (d->count == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 64;
        GlzImage *nr = malloc(ncap * sizeof(GlzImage));
        if (!nr) return -1;
        for (size_t k = 0; k < d->count; k++) nr[k] = *ring_at(d, k);
        free(d->ring);
        d->ring = nr;
        d->cap = ncap;
        d->head = 0;
    }
    GlzImage *g = &d->ring[(d->head + d->count) % d->cap];
    g->id = id;
    g->base = base;
    g->px = px;
    g->n = n;
    g->cap = cap;
    d->count++;
    d->pixels += n;
    return 0;
}

/* Keys position k (g: its global position minus the epoch): the table's slot now holds g,
 * and g's link says how far back the slot's previous position is (0 where there is none). */
static inline void key_glz(uint32_t *table, uint32_t *chain, const uint32_t *px, size_t k, uint32_t g)
{
    uint32_t hv = hash3(px + k - 1, GLZ_HASH_BITS);
    uint32_t prev = table[hv];
    chain[k] = prev != GLZ_NONE32 ? g - prev : 0;
    table[hv] = g;
}

/* Keys positions from..to-1 (all >= 1, to <= n - 1), skipping long runs as remember_lz does.
 * base: the image's global position minus the epoch. */
static void remember_glz(uint32_t *table, uint32_t *chain, const uint32_t *px, uint32_t base, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++) {
        if (!uniform3(px + k - 1)) {
            key_glz(table, chain, px, k, base + (uint32_t)k);
        } else if (k + 9 < to && px[k + 9] == px[k]) {
            k += extend(px + k + 2, px + k + 1, to - k - 2);
        }
    }
}

/* A buffer kept from one encode to the next, made ready for `need` bytes: reused where it
 * is large enough and not far larger (one huge image must not pin its buffers for good),
 * else allocated anew with room for a bit more. Returns it, or NULL (out of memory). */
static void *kept_buffer(void *buf, size_t *cap, size_t need)
{
    if (buf && *cap >= need && *cap / 4 <= need + ((size_t)1 << 20)) return buf;
    free(buf);
    *cap = need + need / 8;
    buf = malloc(*cap);
    if (!buf) *cap = 0;
    return buf;
}

/* Moves the epoch up where global positions up to `end` would not fit 32 bits past it: to
 * the oldest image held (positions before it can no longer be referenced), or, should
 * that not be enough (images whose encode failed leave gaps), to `base`, the image about
 * to be encoded, forgetting the rest. Runs once every few billion pixels. */
static void rebase_table(GlzDict *d, uint64_t base, uint64_t end)
{
    if (end - d->epoch < GLZ_NONE32) return;
    uint64_t to = d->count ? ring_at(d, 0)->base : base;
    if (end - to >= GLZ_NONE32) to = base;
    for (size_t k = 0; k < ((size_t)1 << GLZ_HASH_BITS); k++) {
        uint32_t t = d->table[k];
        if (t == GLZ_NONE32) continue;
        uint64_t g = d->epoch + t;
        d->table[k] = g >= to ? (uint32_t)(g - to) : GLZ_NONE32;
    }
    d->epoch = to;
}

/* Bytes of a GLZ match (put_glz_match's layout). */
static inline size_t glz_match_cost(uint32_t image_dist, size_t pix, size_t len)
{
    size_t c = 2 + (len >= 7 ? 1 + (len - 7) / 255 : 0);
    if (pix < GLZ_PIX_SHORT) return c + 1 + (image_dist < (1u << 6) ? 0 : image_dist < (1u << 14) ? 1 : image_dist < (1u << 22) ? 2 : 3);
    return c + 1 + (image_dist == 0 ? 0 : image_dist < (1u << 8) ? 1 : image_dist < (1u << 16) ? 2 : 3) + (pix >= GLZ_PIX_MEDIUM);
}

/* What a match saves against sending its pixels as literals (3 bytes each): the measure
 * by which candidates of different lengths and code sizes are compared. */
static inline long glz_gain(uint32_t image_dist, size_t pix, size_t len)
{
    return 3 * (long)len - (long)glz_match_cost(image_dist, pix, len);
}

/* Encodes px (n = w*h; its chain links in chain) as image `id` of the dictionary, at global
 * position base, referencing only this image and the dictionary's images with ids >=
 * min_ref (all of which are older than id). */
static void glz_encode_rgb32(GlzDict *d, Out *o, const uint32_t *px, uint32_t *chain, size_t w, size_t h, uint64_t id,
                             uint64_t base, uint64_t min_ref, uint32_t win_head_dist)
{
    size_t n = w * h;
    uint32_t *table = d->table;
    const uint64_t epoch = d->epoch;
    const uint32_t base32 = (uint32_t)(base - epoch);
    put32(o, LZ_MAGIC);
    put32(o, LZ_VERSION);
    put(o, (uint8_t)(LZ_TYPE_RGB32 | (1 << 4))); /* type, top_down */
    put32(o, (uint32_t)w);
    put32(o, (uint32_t)h);
    put32(o, (uint32_t)(w * 4));
    put32(o, (uint32_t)(id >> 32));
    put32(o, (uint32_t)id);
    put32(o, win_head_dist);

    d->last_ref_pixels = 0;
    d->last_oldest_ref = GLZ_NONE;
    /* The images this encode may reference: ring[lo..count-1], from global position lo_base. */
    size_t lo = 0;
    while (lo < d->count && (ring_at(d, lo)->id < min_ref || id - ring_at(d, lo)->id > GLZ_MAX_IMAGE_DIST)) lo++;
    const uint64_t lo_base = lo < d->count ? ring_at(d, lo)->base : base;

    size_t i = 0, lit = 0, rep = 0; /* rep: the last distance back inside this image */
    /* The alignment of the last reference to an earlier image: content that repeats an
     * earlier image (a window redrawn, a scroll) goes on matching there after a change. */
    GlzImage *cont = NULL;
    int64_t cont_shift = 0; /* offset in cont = i + cont_shift */
    GlzImage *newest = d->count ? ring_at(d, d->count - 1) : NULL;
    if (newest && d->has_motion && lo < d->count && newest->id < id) {
        cont = newest;
        cont_shift = d->motion;
    }
    while (i < n) {
        size_t best = 0, best_d = 0, left = n - i;
        long best_gain = 0;
        GlzImage *best_img = NULL;
        if (cont) {
            int64_t off = (int64_t)i + cont_shift;
            if (off >= 0 && (size_t)off < cont->n) {
                size_t room = cont->n - (size_t)off;
                size_t l = extend(px + i, cont->px + off, room < left ? room : left);
                if (l >= 3) {
                    best = l, best_d = (size_t)off, best_img = cont;
                    best_gain = glz_gain((uint32_t)(id - cont->id), best_d, l);
                }
            }
        }
        /* inside this image: run, the row above, the last distance (cheapest codes first) */
        if (i > 0 && px[i] == px[i - 1] && best < left && may_beat(px, i, 1, best)) {
            size_t l = 1 + extend(px + i + 1, px + i, left - 1);
            long g = glz_gain(0, 0, l);
            if (g > best_gain) best = l, best_d = 1, best_img = NULL, best_gain = g;
        }
        if (i >= w && w > 1 && best < left && may_beat(px, i, w, best)) {
            size_t l = extend(px + i, px + i - w, left);
            long g = glz_gain(0, w - 1, l);
            if (g > best_gain) best = l, best_d = w, best_img = NULL, best_gain = g;
        }
        if (rep && i >= rep && best < left && may_beat(px, i, rep, best)) {
            size_t l = extend(px + i, px + i - rep, left);
            long g = glz_gain(0, rep - 1, l);
            if (g > best_gain) best = l, best_d = rep, best_img = NULL, best_gain = g;
        }
        if (best < left && keyed(px, i, n)) {
            uint32_t hv = hash3(px + i - 1, GLZ_HASH_BITS);
            uint32_t t = table[hv];
            uint64_t c = t != GLZ_NONE32 ? epoch + t : GLZ_NONE;
            key_glz(table, chain, px, i, base32 + (uint32_t)i);
            /* deep in literals (a photo, noise) repeats are rare: the newest candidate only */
            int depth_max = i - lit < 128 ? GLZ_CHAIN_DEPTH : 1;
            size_t at = d->count; /* candidates before this image lie in ring[at - 1] or before */
            for (int depth = 0; depth < depth_max && best < GLZ_NICE && c != GLZ_NONE && c >= lo_base; depth++) {
                size_t coff;
                if (c >= base) {
                    coff = (size_t)(c - base);
                    if (may_beat(px, i, i - coff, best)) {
                        size_t l = extend(px + i, px + coff, left);
                        long g = glz_gain(0, i - coff - 1, l);
                        if (g > best_gain) best = l, best_d = i - coff, best_img = NULL, best_gain = g;
                    }
                } else {
                    while (at > lo && ring_at(d, at - 1)->base > c) at--;
                    if (at == lo) break;
                    GlzImage *g = ring_at(d, at - 1);
                    coff = (size_t)(c - g->base);
                    if (coff >= g->n) break; /* an image whose encode failed: not in the window */
                    size_t max = g->n - coff < left ? g->n - coff : left;
                    if (best < max && px[i + best] == g->px[coff + best]) {
                        size_t l = extend(px + i, g->px + coff, max);
                        long gn = glz_gain((uint32_t)(id - g->id), coff, l);
                        /* 3 pixels at least: a reference to another image takes up to 7 bytes */
                        if (l >= 3 && gn > best_gain) best = l, best_d = coff, best_img = g, best_gain = gn;
                    }
                    break; /* earlier images keep no links */
                }
                if (best >= left) break;
                uint32_t link = chain[coff];
                if (!link) break;
                c -= link;
            }
        }
        if (best >= 2 && best_gain > 0) {
            put_literals(o, px, lit, i);
            if (best_img) {
                cont = best_img;
                cont_shift = (int64_t)best_d - (int64_t)i;
                put_glz_match(o, (uint32_t)(id - best_img->id), best_d, best);
                d->last_ref_pixels += best;
                if (best_img->id < d->last_oldest_ref) d->last_oldest_ref = best_img->id;
            } else {
                put_glz_match(o, 0, best_d - 1, best);
                if (best_d != 1 && best_d != w) rep = best_d;
            }
            size_t end = i + best;
            if (best_img || best_d != 1) remember_glz(table, chain, px, base32, i + 1, end < n - 1 ? end : n - 1);
            i = lit = end;
        } else {
            i += skip_after(i - lit);
        }
    }
    put_literals(o, px, lit, n);
    d->has_motion = cont != NULL && cont == newest;
    d->motion = cont_shift;
}

static PyObject *glz_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"window_pixels", "first_position", NULL};
    Py_ssize_t window;
    unsigned long long first = 0; /* the first image's global position: tests start near 2^32 */
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|K", kwlist, &window, &first)) return NULL;
    if (first > (UINT64_C(1) << 62)) {
        PyErr_SetString(PyExc_ValueError, "first_position must be at most 2^62");
        return NULL;
    }
    if (window < 1 || (size_t)window > GLZ_MAX_WINDOW) {
        PyErr_SetString(PyExc_ValueError, "window_pixels must be positive and at most 2^30");
        return NULL;
    }
    GlzDict *d = (GlzDict *)type->tp_alloc(type, 0);
    if (!d) return NULL;
    d->window = (size_t)window;
    d->last_id = GLZ_NONE;
    d->last_oldest_ref = GLZ_NONE;
    d->next_base = first; /* (the epoch stays 0: the table reaches 2^32 after a few images) */
    d->table = malloc(sizeof(uint32_t) << GLZ_HASH_BITS);
    if (!d->table) {
        Py_DECREF(d);
        return PyErr_NoMemory();
    }
    memset(d->table, 0xff, sizeof(uint32_t) << GLZ_HASH_BITS);
    return (PyObject *)d;
}

static void glz_dealloc(GlzDict *d)
{
    while (d->count) dict_drop_oldest(d);
    free(d->ring);
    free(d->table);
    free(d->spare);
    free(d->out);
    free(d->links);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

/* glz_encode's work, with d->busy set: nothing else may touch the dictionary meanwhile
 * (reading a buffer may run Python code, and the encode itself runs without the GIL). */
static PyObject *glz_encode_busy(GlzDict *d, PyObject *obj, unsigned long long id, unsigned long long min_ref)
{
    if (id > GLZ_MAX_ID || (d->last_id != GLZ_NONE && id <= d->last_id)) {
        PyErr_Format(PyExc_ValueError, "image_id %llu must grow (last %llu) and stay below 2^39", id,
                     (unsigned long long)d->last_id);
        return NULL;
    }
    Pixels p;
    if (get_pixels(obj, &p) < 0) return NULL;
    size_t n = p.w * p.h;
    if (n >= (size_t)1 << GLZ_OFF_BITS) {
        PyBuffer_Release(&p.view);
        PyErr_SetString(PyExc_ValueError, "GLZ images hold fewer than 2^25 pixels");
        return NULL;
    }
    /* Make room first: the window holds this image and as many of the newest before it
     * as fit. The client may release every image below the oldest one kept. */
    while (d->count && d->pixels + n > d->window) dict_drop_oldest(d);
    uint64_t oldest = d->count ? ring_at(d, 0)->id : id;
    if (id - oldest > UINT32_MAX) {
        while (d->count && id - ring_at(d, 0)->id > UINT32_MAX) dict_drop_oldest(d);
        oldest = d->count ? ring_at(d, 0)->id : id;
    }
    /* the pixels: the last dropped image's block where it is
     * large enough and not twice too large, else a new one with room for a bit more */
    uint32_t *px;
    size_t cap;
    if (d->spare && d->spare_cap >= n && d->spare_cap / 2 <= n) {
        px = d->spare, cap = d->spare_cap;
        d->spare = NULL, d->spare_cap = 0;
    } else {
        cap = n + n / 8;
        px = malloc(cap * sizeof(uint32_t));
    }
    d->out = kept_buffer(d->out, &d->out_cap, out_bound(n));
    d->links = kept_buffer(d->links, &d->links_cap, n * sizeof(uint32_t));
    if (!px || !d->out || !d->links) {
        free(px);
        PyBuffer_Release(&p.view);
        return PyErr_NoMemory();
    }
    Out o = {d->out, 0, d->out_cap};
    /* the image's global positions are its own even if it never enters the window: the
     * table may point into it, and no later image may take those positions */
    uint64_t base = d->next_base;
    d->next_base += n;
    rebase_table(d, base, base + n);
    Py_BEGIN_ALLOW_THREADS
    load_pixels(px, p.base, p.w, p.h, p.row_stride);
    glz_encode_rgb32(d, &o, px, d->links, p.w, p.h, id, base, min_ref, (uint32_t)(id - oldest));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&p.view);
    if (dict_push(d, id, base, px, n, cap) < 0) {
        free(px);
        return PyErr_NoMemory();
    }
    d->last_id = id;
    return PyBytes_FromStringAndSize((const char *)o.buf, (Py_ssize_t)o.len);
}

static PyObject *glz_encode(GlzDict *d, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"pixels", "image_id", "min_ref_id", NULL};
    PyObject *obj;
    unsigned long long id, min_ref = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OK|K", kwlist, &obj, &id, &min_ref)) return NULL;
    if (d->busy) {
        PyErr_SetString(PyExc_RuntimeError, "GlzDictionary.encode called while another encode runs");
        return NULL;
    }
    d->busy = 1;
    PyObject *r = glz_encode_busy(d, obj, id, min_ref);
    d->busy = 0;
    return r;
}

static PyObject *glz_get_ids(GlzDict *d, void *closure)
{
    PyObject *l = PyList_New((Py_ssize_t)d->count);
    if (!l) return NULL;
    for (size_t k = 0; k < d->count; k++) {
        PyObject *v = PyLong_FromUnsignedLongLong(ring_at(d, k)->id);
        if (!v) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)k, v);
    }
    return l;
}

static PyObject *glz_get_pixels(GlzDict *d, void *c) { return PyLong_FromSize_t(d->pixels); }
static PyObject *glz_get_busy(GlzDict *d, void *c) { return PyBool_FromLong(d->busy); }
static PyObject *glz_get_window(GlzDict *d, void *c) { return PyLong_FromSize_t(d->window); }
static PyObject *glz_get_last_id(GlzDict *d, void *c)
{
    if (d->last_id == GLZ_NONE) Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(d->last_id);
}
static PyObject *glz_get_ref_pixels(GlzDict *d, void *c) { return PyLong_FromSize_t(d->last_ref_pixels); }
static PyObject *glz_get_oldest_ref(GlzDict *d, void *c)
{
    if (d->last_oldest_ref == GLZ_NONE) Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(d->last_oldest_ref);
}

static PyGetSetDef glz_getset[] = {
    {"image_ids", (getter)glz_get_ids, NULL, "ids of the images held, oldest first", NULL},
    {"pixels", (getter)glz_get_pixels, NULL, "pixels held", NULL},
    {"busy", (getter)glz_get_busy, NULL, "an encode is running (without the GIL)", NULL},
    {"window_pixels", (getter)glz_get_window, NULL, "most pixels held", NULL},
    {"last_id", (getter)glz_get_last_id, NULL, "id of the last image encoded, or None", NULL},
    {"last_ref_pixels", (getter)glz_get_ref_pixels, NULL, "pixels the last encode copied from earlier images",
     NULL},
    {"last_oldest_ref", (getter)glz_get_oldest_ref, NULL, "oldest image id the last encode referenced, or None",
     NULL},
    {NULL},
};

static PyMethodDef glz_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))glz_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(pixels, image_id, min_ref_id=0) -> bytes: GLZ_RGB32 data of image image_id"},
    {NULL},
};

static PyTypeObject GlzDictType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "spice_twisted.codecs._native._lz.GlzDictionary",
    .tp_basicsize = sizeof(GlzDict),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GlzDictionary(window_pixels, first_position=0): the recent images a GLZ stream may reference",
    .tp_new = glz_new,
    .tp_dealloc = (destructor)glz_dealloc,
    .tp_methods = glz_methods,
    .tp_getset = glz_getset,
};

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"encode_lz", py_encode_lz, METH_O, "encode_lz(pixels) -> bytes: LZ_RGB32 data of a (h, w, 4) BGRX array"},
    {"encode_lz_plt", py_encode_lz_plt, METH_O,
     "encode_lz_plt(pixels) -> (lz_type, data, palette) | None: LZ_PLT1_BE/PLT4_BE data of a picture of <= 16 colours"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lz", "SPICE LZ and GLZ encoders", -1, methods};

PyMODINIT_FUNC PyInit__lz(void)
{
    if (PyType_Ready(&GlzDictType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&GlzDictType);
    if (PyModule_AddObject(m, "GlzDictionary", (PyObject *)&GlzDictType) < 0) {
        Py_DECREF(&GlzDictType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_SIDE", LZ_MAX_SIDE);
    PyModule_AddIntConstant(m, "PLT_MAX_COLOURS", PLT_MAX_COLOURS);
    return m;
}
