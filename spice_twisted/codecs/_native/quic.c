/* QUIC images (RGB32, RGBA) for spice_twisted: an encoder, and a decoder for tests and benchmarks.
 *
 * The bitstream is the one spice-gtk decodes (spice-common common/quic.c); this is our own
 * implementation of it.  Layout of an image:
 *
 *   five little-endian u32 words: magic "QUIC", version 0, type (4 RGB32, 5 RGBA), width, height;
 *   then a bit string written most significant bit first into u32 words stored little-endian,
 *   padded to a whole word, followed by one zero word (the decoder reads one word ahead).
 *
 * Each row is coded plane by plane per pixel (R, G, B; for RGBA a second pass over the row
 * codes A).  A pixel's prediction error, mapped to 0..255 (0, -1, 1, -2, ... interleaved),
 * is written with the Golomb-Rice parameter of the bucket its left neighbour's error falls
 * in.  Buckets learn from a sample of pixels: after each coded pixel a countdown (drawn from
 * the format's wait table, masked by a width that grows every 2048 pixels) decides whether
 * the model updates.  From the second row on, where the row above repeats its left pixel and
 * the current row already repeated itself twice, the coder switches to a run of copies of the
 * left pixel, written as an adaptive (MELCODE-like) run length.
 *
 * The hot loops run without the GIL; pixels come through the buffer protocol as
 * H x W x 4 uint8 (B, G, R, X/A), with any row stride.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quic.h"

/* ---- the code family: Golomb-Rice codes for 8-bit values, with an escape past the length limit ---- */

static uint32_t code_bits[256][QUIC_NCODES]; /* codeword of value v with parameter l */
static uint8_t code_len[256][QUIC_NCODES];   /* its length in bits */
static uint32_t code_packed[256][QUIC_NCODES]; /* both in one word: length << 26 | codeword */
static unsigned gr_count[QUIC_NCODES];        /* values below this get a plain Golomb-Rice code */
static unsigned escape_len[QUIC_NCODES];      /* length of the escape codeword (prefix + suffix) */
static unsigned escape_suffix[QUIC_NCODES];   /* bits of the escape codeword after its zero prefix */
static unsigned escape_prefix[QUIC_NCODES];   /* zeros that mark an escape codeword */
static uint8_t to_small[256];                 /* error (mod 256) -> 0, 255->1, 1->2, 254->3, ... */
static uint8_t from_small[256];               /* its inverse */
static uint8_t bucket_of[256];                /* bucket of each previous-error value */
static unsigned n_buckets;

#define MAX_BUCKETS 16

static unsigned ceil_log2(unsigned v)
{
    unsigned bits = 0;
    while ((1u << bits) < v) {
        bits++;
    }
    return bits;
}

static void init_tables(void)
{
    const unsigned levels = 1u << QUIC_BPC;
    for (unsigned l = 0; l < QUIC_BPC; l++) {
        unsigned prefix = QUIC_CODE_LIMIT - QUIC_BPC;   /* zeros before an escape */
        unsigned most = (1u << (QUIC_BPC - l)) - 1u;   /* no more zeros than a value can need */
        if (prefix > most) {
            prefix = most;
        }
        gr_count[l] = prefix << l;
        escape_prefix[l] = prefix;
        escape_suffix[l] = ceil_log2(levels - gr_count[l]);
        escape_len[l] = prefix + escape_suffix[l];
        for (unsigned v = 0; v < levels; v++) {
            if (v < gr_count[l]) {
                code_bits[v][l] = (1u << l) | (v & ((1u << l) - 1u));
                code_len[v][l] = (uint8_t)((v >> l) + 1u + l);
            } else {
                code_bits[v][l] = v - gr_count[l];
                code_len[v][l] = (uint8_t)escape_len[l];
            }
            code_packed[v][l] = (uint32_t)code_len[v][l] << 26 | code_bits[v][l];
        }
    }
    for (unsigned s = 0; s < levels; s++) {
        to_small[s] = (uint8_t)(s < levels / 2 ? s * 2u : (levels - 1u - s) * 2u + 1u);
        from_small[s] = (uint8_t)(s & 1u ? levels - 1u - (s >> 1) : s >> 1);
    }
    /* Buckets (model evolution 3): sizes 1, 2, 4, 8, ... over the error values; a bucket whose
       successor would run past the end takes the rest. */
    unsigned start = 0, size = 1, b = 0;
    for (;;) {
        unsigned end = start + size - 1u;
        if (end + size >= levels) {
            end = levels - 1u;
        }
        for (unsigned v = start; v <= end; v++) {
            bucket_of[v] = (uint8_t)b;
        }
        b++;
        if (end == levels - 1u) {
            break;
        }
        start = end + 1u;
        size *= 2u;
    }
    n_buckets = b;
}

/* ---- model and coder state ---- */

typedef struct {
    uint32_t counters[MAX_BUCKETS][QUIC_NCODES]; /* summed code lengths per parameter */
    uint8_t best[MAX_BUCKETS];                   /* the parameter each bucket uses now */
} Model;

typedef struct {
    unsigned wait;     /* pixels left before the next model update */
    unsigned draw;     /* next entry of the wait table */
    unsigned wmidx;    /* wait mask width in bits */
    unsigned wmleft;   /* pixels before the mask widens */
    unsigned trigger;  /* counter halving threshold */
    unsigned runstate; /* run-length coder state */
} State;

static void state_init(State *s)
{
    s->wait = 0;
    s->draw = 0;
    s->wmidx = 0;
    s->wmleft = QUIC_WAIT_NEXT;
    s->trigger = quic_halving_trigger[0];
    s->runstate = 0;
}

static void model_init(Model *m)
{
    memset(m->counters, 0, sizeof(m->counters));
    memset(m->best, QUIC_BPC - 1, sizeof(m->best));
}

static inline unsigned next_wait(State *s, unsigned mask)
{
    return quic_wait_table[s->draw++ & 255u] & mask;
}

/* Learn from one coded value: every parameter's counter grows by the length the value would
   have cost with it; the bucket takes the cheapest (the highest parameter on ties). */
static inline void model_update(Model *m, const State *s, unsigned bucket, unsigned v)
{
    uint32_t *c = m->counters[bucket];
    unsigned best = QUIC_BPC - 1;
    uint32_t best_len = (c[best] += code_len[v][best]);
    for (int l = QUIC_BPC - 2; l >= 0; l--) {
        uint32_t len = (c[l] += code_len[v][l]);
        if (len < best_len) {
            best = (unsigned)l;
            best_len = len;
        }
    }
    m->best[bucket] = (uint8_t)best;
    if (best_len > s->trigger) {
        for (int l = 0; l < QUIC_BPC; l++) {
            c[l] >>= 1;
        }
    }
}

static inline void widen_wait_mask(State *s)
{
    s->wmidx++;
    s->trigger = quic_halving_trigger[s->wmidx > 10 ? 10 : s->wmidx];
    s->wmleft = QUIC_WAIT_NEXT;
}

/* One pass over an image's rows: the planes it codes (byte offsets in a pixel), their models
   and rows of prediction errors (index -1 valid), its state, and which bytes make two pixels
   "the same" for runs. */
typedef struct {
    int nplanes;
    int offset[3];
    Model *model[3];
    uint8_t *err[3];
    State *state;
    uint32_t same_mask;
} Pass;

static inline uint32_t load_px(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- encoder ---- */

typedef struct {
    uint32_t *buf;
    size_t n, cap; /* words written, words allocated */
    uint32_t word; /* the word being filled, from the top */
    unsigned room; /* its free bits (1..32); a full word is stored at the next put */
} Writer;

static inline void store_le32(uint32_t *dst, uint32_t v)
{
    uint8_t *d = (uint8_t *)dst;
    d[0] = (uint8_t)v;
    d[1] = (uint8_t)(v >> 8);
    d[2] = (uint8_t)(v >> 16);
    d[3] = (uint8_t)(v >> 24);
}

static inline void store_word(Writer *w)
{
    if (w->n < w->cap) { /* always true (rows reserve their worst case); memory safety does not rest on it */
        store_le32(&w->buf[w->n], w->word);
    }
    w->n++;
}

/* Append len (1..31) bits, most significant first. */
static inline void put(Writer *w, uint32_t bits, unsigned len)
{
    if (len <= w->room) {
        w->room -= len;
        w->word |= bits << w->room; /* room may now be 0: the word is stored next time */
        return;
    }
    unsigned spill = len - w->room;
    w->word |= bits >> spill;
    store_word(w);
    w->room = 32 - spill;
    w->word = bits << w->room;
}

/* The last bits, padded to a word, then the zero word the decoder reads ahead. */
static void finish(Writer *w)
{
    store_word(w);
    w->word = 0;
    store_word(w);
}

static int reserve(Writer *w, size_t words)
{
    if (w->n > w->cap) {
        return -2; /* a row overran its reserve: never seen; refuse rather than send garbage */
    }
    if (w->cap - w->n >= words) {
        return 0;
    }
    size_t cap = w->cap * 2 > w->n + words ? w->cap * 2 : w->n + words;
    uint32_t *buf = realloc(w->buf, cap * sizeof(uint32_t));
    if (!buf) {
        return -1;
    }
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static inline void put_run(Writer *w, State *s, unsigned run)
{
    unsigned hits = 0;
    while (run >= (1u << quic_run_order[s->runstate])) {
        run -= 1u << quic_run_order[s->runstate];
        hits++;
        if (s->runstate < QUIC_RUN_STATES - 1) {
            s->runstate++;
        }
    }
    for (; hits >= 32; hits -= 32) {
        put(w, 0xffffu, 16);
        put(w, 0xffffu, 16);
    }
    if (hits) {
        put(w, (1u << hits) - 1u, hits);
    }
    put(w, run, quic_run_order[s->runstate] + 1u); /* a 0, then the remainder */
    if (s->runstate) {
        s->runstate--;
    }
}

static inline void update_all(const Pass *p, int i)
{
    for (int c = 0; c < p->nplanes; c++) {
        model_update(p->model[c], p->state, bucket_of[p->err[c][i - 1]], p->err[c][i]);
    }
}

/* The encoder's hot loop works on local copies of the writer, the state and the plane
   pointers: stores of error bytes (uint8_t may alias anything) would otherwise make the
   compiler reload them all after every byte.  NP (3: R, G, B; 1: A) is a constant in each
   instantiation, so the plane loops unroll. */
#define PLANE_OFFSET(NP, c) ((NP) == 3 ? 2 - (c) : 3)

static inline __attribute__((always_inline)) void code_error(Writer *w, uint8_t *err, uint8_t *last, const Model *m,
                                                             int i, uint8_t e)
{
    err[i] = e;
    unsigned l = m->best[bucket_of[*last]];
    *last = e;
    uint32_t packed = code_packed[e][l];
    put(w, packed & 0x03ffffffu, packed >> 26);
}

static inline __attribute__((always_inline)) void encode_segment(Writer *wp, const Pass *p, const int NP, const int FIRST,
                                                                 const uint8_t *restrict prev, const uint8_t *restrict cur,
                                                                 int i, int end, unsigned mask)
{
    Writer w = *wp;
    State s = *p->state;
    uint8_t *err[3], last[3]; /* last: the error left of pixel i, as err[c][i - 1] holds it */
    Model *model[3];
    for (int c = 0; c < NP; c++) {
        err[c] = p->err[c];
        model[c] = p->model[c];
        last[c] = err[c][i - 1];
    }
    const uint32_t sm = p->same_mask;
    int stop, run_at = 0;
#define UPDATE(idx)                                                                             \
    for (int c = 0; c < NP; c++) {                                                              \
        model_update(model[c], &s, bucket_of[err[c][(idx) - 1]], err[c][idx]);                  \
    }
    if (i == 0) {
        for (int c = 0; c < NP; c++) {
            const int o = PLANE_OFFSET(NP, c);
            unsigned pred = FIRST ? 0u : prev[o];
            code_error(&w, err[c], &last[c], model[c], 0, to_small[(uint8_t)(cur[o] - pred)]);
        }
        if (s.wait) {
            s.wait--;
        } else {
            s.wait = next_wait(&s, mask);
            UPDATE(0);
        }
        i = 1;
    }
    stop = i + (int)s.wait;
    if (FIRST) { /* the first row: left neighbours only, no runs */
        for (; i < end; i++) {
            for (int c = 0; c < NP; c++) {
                const int o = PLANE_OFFSET(NP, c);
                code_error(&w, err[c], &last[c], model[c], i, to_small[(uint8_t)(cur[4 * i + o] - cur[4 * (i - 1) + o])]);
            }
            if (i == stop) {
                UPDATE(i);
                stop = i + 1 + (int)next_wait(&s, mask);
            }
        }
        s.wait = (unsigned)(stop - end);
        goto out;
    }
#define RUN_STARTS_AT(i)                                                                                   \
    (run_at != (i) && (i) > 2 && !((load_px(prev + 4 * ((i) - 1)) ^ load_px(prev + 4 * (i))) & sm) &&     \
     !((load_px(cur + 4 * ((i) - 1)) ^ load_px(cur + 4 * ((i) - 2))) & sm))
#define CODE_PIXEL(i)                                                                                      \
    for (int c = 0; c < NP; c++) {                                                                         \
        const int o = PLANE_OFFSET(NP, c);                                                                 \
        unsigned pred = ((unsigned)cur[4 * ((i) - 1) + o] + prev[4 * (i) + o]) >> 1;                      \
        code_error(&w, err[c], &last[c], model[c], (i), to_small[(uint8_t)(cur[4 * (i) + o] - pred)]);     \
    }
    for (;;) {
        while (stop < end) { /* up to the next model update, then the update */
            for (; i <= stop; i++) {
                if (RUN_STARTS_AT(i)) {
                    goto run;
                }
                CODE_PIXEL(i);
            }
            UPDATE(stop);
            stop = i + (int)next_wait(&s, mask);
        }
        for (; i < end; i++) {
            if (RUN_STARTS_AT(i)) {
                goto run;
            }
            CODE_PIXEL(i);
        }
        s.wait = (unsigned)(stop - end);
        goto out;
    run:
        run_at = i;
        s.wait = (unsigned)(stop - i);
        {
            unsigned run = 0;
            while (!((load_px(cur + 4 * i) ^ load_px(cur + 4 * (i - 1))) & sm)) {
                run++;
                if (++i == end) {
                    put_run(&w, &s, run);
                    goto out;
                }
            }
            put_run(&w, &s, run);
        }
        for (int c = 0; c < NP; c++) {
            last[c] = err[c][i - 1]; /* not written during the run: still the row above's */
        }
        stop = i + (int)s.wait;
    }
#undef UPDATE
#undef RUN_STARTS_AT
#undef CODE_PIXEL
out:
    *wp = w;
    *p->state = s;
}

/* One function per plane count and row kind, so each keeps its registers to itself. */
#define SEGMENT_FN(name, NP, FIRST)                                                                                      \
    static __attribute__((noinline)) void name(Writer *w, const Pass *p, const uint8_t *prev, const uint8_t *cur, int i, \
                                               int end, unsigned mask)                                                   \
    {                                                                                                                    \
        encode_segment(w, p, NP, FIRST, prev, cur, i, end, mask);                                                        \
    }
SEGMENT_FN(encode_segment_rgb0, 3, 1)
SEGMENT_FN(encode_segment_rgb, 3, 0)
SEGMENT_FN(encode_segment_alpha0, 1, 1)
SEGMENT_FN(encode_segment_alpha, 1, 0)
#undef SEGMENT_FN

static void encode_row(Writer *w, const Pass *p, const uint8_t *prev, const uint8_t *cur, unsigned width)
{
    State *s = p->state;
    void (*segment)(Writer *, const Pass *, const uint8_t *, const uint8_t *, int, int, unsigned) =
        p->nplanes == 3 ? (prev ? encode_segment_rgb : encode_segment_rgb0) : (prev ? encode_segment_alpha : encode_segment_alpha0);
    unsigned pos = 0;
    while (s->wmidx < QUIC_WAIT_MAX && s->wmleft <= width) {
        if (s->wmleft) {
            segment(w, p, prev, cur, (int)pos, (int)(pos + s->wmleft), (1u << s->wmidx) - 1u);
            width -= s->wmleft;
            pos += s->wmleft;
        }
        widen_wait_mask(s);
    }
    if (width) {
        segment(w, p, prev, cur, (int)pos, (int)(pos + width), (1u << s->wmidx) - 1u);
        if (s->wmidx < QUIC_WAIT_MAX) {
            s->wmleft -= width;
        }
    }
}

/* Everything one encode or decode needs besides the pixels. */
typedef struct {
    Model model[4];
    State rgb, alpha;
    uint8_t *err_rows; /* 4 rows of width + 1 errors */
    Pass pass_rgb, pass_alpha;
} Coder;

static int coder_init(Coder *k, unsigned width)
{
    for (int c = 0; c < 4; c++) {
        model_init(&k->model[c]);
    }
    state_init(&k->rgb);
    state_init(&k->alpha);
    k->err_rows = calloc(4, (size_t)width + 1);
    if (!k->err_rows) {
        return -1;
    }
    /* planes R, G, B in that order (bytes 2, 1, 0 of a B,G,R,X pixel), then A (byte 3) */
    static const int rgb_offsets[3] = {2, 1, 0};
    k->pass_rgb.nplanes = 3;
    k->pass_rgb.state = &k->rgb;
    k->pass_rgb.same_mask = 0x00ffffffu;
    for (int c = 0; c < 3; c++) {
        k->pass_rgb.offset[c] = rgb_offsets[c];
        k->pass_rgb.model[c] = &k->model[c];
        k->pass_rgb.err[c] = k->err_rows + (size_t)c * (width + 1) + 1;
    }
    k->pass_alpha.nplanes = 1;
    k->pass_alpha.state = &k->alpha;
    k->pass_alpha.same_mask = 0xff000000u;
    k->pass_alpha.offset[0] = 3;
    k->pass_alpha.model[0] = &k->model[3];
    k->pass_alpha.err[0] = k->err_rows + (size_t)3 * (width + 1) + 1;
    return 0;
}

/* Each row's first pixel takes the bucket of the error above it (the previous row's first);
   the first row's takes bucket 0. */
static void carry_first_errors(Pass *p, int first_row)
{
    for (int c = 0; c < p->nplanes; c++) {
        p->err[c][-1] = first_row ? 0 : p->err[c][0];
    }
}

/* Returns the words written into *out (malloc'd); -1 out of memory, -2 a row overran its reserve. */
static Py_ssize_t quic_encode(const uint8_t *px, Py_ssize_t stride, unsigned width, unsigned height, int alpha,
                              uint32_t **out)
{
    Coder k;
    Writer w = {.room = 32};
    *out = NULL;
    if (coder_init(&k, width) < 0) {
        return -1;
    }
    /* Room for one row at worst: a coded pixel costs at most 26 bits a plane, and a run
       (at most 16 bits plus one per pixel it covers) comes after two coded pixels at the
       least: under 96 bits a pixel for R, G, B, under 128 with A. */
    size_t row_words = (size_t)width * (alpha ? 4u : 3u) + 8u;
    w.cap = (size_t)width * height / 2u + row_words + 8u;
    w.buf = malloc(w.cap * sizeof(uint32_t));
    if (!w.buf) {
        free(k.err_rows);
        return -1;
    }
    const uint32_t header[5] = {QUIC_MAGIC, QUIC_VERSION, alpha ? QUIC_TYPE_RGBA : QUIC_TYPE_RGB32, width, height};
    for (int j = 0; j < 5; j++) {
        put(&w, header[j] >> 16, 16);
        put(&w, header[j] & 0xffffu, 16);
    }
    const uint8_t *prev = NULL;
    for (unsigned y = 0; y < height; y++) {
        const uint8_t *cur = px + (Py_ssize_t)y * stride;
        int r = reserve(&w, row_words);
        if (r < 0) {
            free(w.buf);
            free(k.err_rows);
            return r;
        }
        carry_first_errors(&k.pass_rgb, y == 0);
        encode_row(&w, &k.pass_rgb, prev, cur, width);
        if (alpha) {
            carry_first_errors(&k.pass_alpha, y == 0);
            encode_row(&w, &k.pass_alpha, prev, cur, width);
        }
        prev = cur;
    }
    int r = reserve(&w, 4);
    if (r < 0) {
        free(w.buf);
        free(k.err_rows);
        return r;
    }
    finish(&w);
    if (w.n > w.cap) {
        free(w.buf);
        free(k.err_rows);
        return -2;
    }
    free(k.err_rows);
    *out = w.buf;
    return (Py_ssize_t)w.n;
}

/* ---- decoder (tests and benchmarks: a second reading of the format, checked against spice-gtk) ---- */

typedef struct {
    const uint8_t *data;
    size_t nwords, next; /* words in the input, next to load */
    uint64_t acc;        /* bits, the next one highest */
    unsigned nacc;       /* valid bits in acc */
    uint64_t eaten;      /* bits consumed */
} Reader;

/* spice-gtk's decoder keeps 32 bits read ahead: it needs every word up to the one after
   the last bit it consumes, so a stream ends with one word to spare. */
static inline int overrun(const Reader *r)
{
    return r->eaten > ((uint64_t)r->nwords - 1u) * 32u;
}

static inline void refill(Reader *r)
{
    while (r->nacc <= 32) {
        uint32_t v = 0;
        if (r->next < r->nwords) {
            v = load_px(r->data + 4 * r->next);
        }
        r->next++;
        r->acc |= (uint64_t)v << (32 - r->nacc);
        r->nacc += 32;
    }
}

static inline uint32_t peek32(Reader *r)
{
    refill(r);
    return (uint32_t)(r->acc >> 32);
}

static inline void eat(Reader *r, unsigned len)
{
    refill(r);
    r->acc <<= len;
    r->nacc -= len;
    r->eaten += len;
}

static inline uint8_t get_code(Reader *r, unsigned l)
{
    uint32_t bits = peek32(r);
    unsigned len, v;
    if (bits >> (32 - escape_prefix[l])) { /* a 1 among the prefix: plain Golomb-Rice */
        unsigned zeros = (unsigned)__builtin_clz(bits);
        len = zeros + 1u + l;
        v = (zeros << l) | ((bits >> (32 - len)) & ((1u << l) - 1u));
    } else {
        len = escape_len[l];
        v = gr_count[l] + ((bits >> (32 - len)) & ((1u << escape_suffix[l]) - 1u));
    }
    eat(r, len);
    return (uint8_t)v;
}

/* A run length; -1 past `limit` (a corrupt stream). */
static long get_run(Reader *r, State *s, long limit)
{
    long run = 0;
    while (peek32(r) >> 31) {
        eat(r, 1);
        run += 1L << quic_run_order[s->runstate];
        if (s->runstate < QUIC_RUN_STATES - 1) {
            s->runstate++;
        }
        if (run > limit || overrun(r)) {
            return -1;
        }
    }
    eat(r, 1);
    unsigned order = quic_run_order[s->runstate];
    if (order) {
        run += peek32(r) >> (32 - order);
        eat(r, order);
    }
    if (s->runstate) {
        s->runstate--;
    }
    return run > limit ? -1 : run;
}

static inline void decode_pixel(Reader *r, const Pass *p, const uint8_t *prev, uint8_t *cur, int i)
{
    for (int c = 0; c < p->nplanes; c++) {
        const int o = p->offset[c];
        unsigned pred;
        if (i == 0) {
            pred = prev ? prev[o] : 0u;
        } else if (prev) {
            pred = ((unsigned)cur[4 * (i - 1) + o] + prev[4 * i + o]) >> 1;
        } else {
            pred = cur[4 * (i - 1) + o];
        }
        uint8_t e = get_code(r, p->model[c]->best[bucket_of[p->err[c][i - 1]]]);
        p->err[c][i] = e;
        cur[4 * i + o] = (uint8_t)(from_small[e] + pred);
    }
}

static int decode_segment(Reader *r, const Pass *p, const uint8_t *prev, uint8_t *cur, int i, int end, unsigned mask)
{
    State *s = p->state;
    const uint32_t sm = p->same_mask;
    int stop, run_at = 0;
    if (i == 0) {
        decode_pixel(r, p, prev, cur, 0);
        if (s->wait) {
            s->wait--;
        } else {
            s->wait = next_wait(s, mask);
            update_all(p, 0);
        }
        i = 1;
    }
    stop = i + (int)s->wait;
    for (;;) {
        for (; i < end; i++) {
            if (prev && run_at != i && i > 2 && !((load_px(prev + 4 * (i - 1)) ^ load_px(prev + 4 * i)) & sm) &&
                !((load_px(cur + 4 * (i - 1)) ^ load_px(cur + 4 * (i - 2))) & sm)) {
                goto run;
            }
            decode_pixel(r, p, prev, cur, i);
            if (i == stop) {
                update_all(p, i);
                stop = i + 1 + (int)next_wait(s, mask);
            }
        }
        s->wait = (unsigned)(stop - end);
        return 0;
    run:
        run_at = i;
        s->wait = (unsigned)(stop - i);
        {
            long run = get_run(r, s, end - i);
            if (run < 0) {
                return -1;
            }
            for (long k = 0; k < run; k++, i++) {
                for (int c = 0; c < p->nplanes; c++) {
                    cur[4 * i + p->offset[c]] = cur[4 * (i - 1) + p->offset[c]];
                }
            }
        }
        if (i == end) {
            return 0;
        }
        stop = i + (int)s->wait;
    }
}

static int decode_row(Reader *r, const Pass *p, const uint8_t *prev, uint8_t *cur, unsigned width)
{
    State *s = p->state;
    unsigned pos = 0;
    while (s->wmidx < QUIC_WAIT_MAX && s->wmleft <= width) {
        if (s->wmleft) {
            if (decode_segment(r, p, prev, cur, (int)pos, (int)(pos + s->wmleft), (1u << s->wmidx) - 1u) < 0) {
                return -1;
            }
            width -= s->wmleft;
            pos += s->wmleft;
        }
        widen_wait_mask(s);
    }
    if (width) {
        if (decode_segment(r, p, prev, cur, (int)pos, (int)(pos + width), (1u << s->wmidx) - 1u) < 0) {
            return -1;
        }
        if (s->wmidx < QUIC_WAIT_MAX) {
            s->wmleft -= width;
        }
    }
    return overrun(r) ? -1 : 0;
}

/* ---- Python bindings ---- */

static int get_pixels(PyObject *obj, Py_buffer *view, unsigned *width, unsigned *height)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDED_RO | PyBUF_FORMAT) < 0) {
        return -1;
    }
    const char *fmt = view->format ? view->format : "B";
    if (view->ndim != 3 || view->itemsize != 1 || (strcmp(fmt, "B") && strcmp(fmt, "b") && strcmp(fmt, "c")) ||
        view->shape[2] != 4 || view->strides[2] != 1 || view->strides[1] != 4) {
        PyErr_SetString(PyExc_ValueError,
                        "QUIC pixels must be an H x W x 4 array of bytes with pixels 4 bytes apart (rows may be strided)");
        goto fail;
    }
    if (view->shape[0] < 1 || view->shape[1] < 1) {
        PyErr_SetString(PyExc_ValueError, "QUIC images have at least one pixel");
        goto fail;
    }
    if ((uint64_t)view->shape[0] * (uint64_t)view->shape[1] > QUIC_MAX_PIXELS) {
        PyErr_SetString(PyExc_ValueError, "image too large for QUIC (spice-gtk refuses 512 Mpixels or more)");
        goto fail;
    }
    *height = (unsigned)view->shape[0];
    *width = (unsigned)view->shape[1];
    return 0;
fail:
    PyBuffer_Release(view);
    return -1;
}

PyDoc_STRVAR(encode_doc, "encode(pixels, alpha=False) -> bytes\n\n"
                         "The QUIC image (RGB32, or RGBA when alpha) of an H x W x 4 uint8 B,G,R,X array.");

static PyObject *py_encode(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"pixels", "alpha", NULL};
    PyObject *obj;
    int alpha = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p", kwlist, &obj, &alpha)) {
        return NULL;
    }
    Py_buffer view;
    unsigned width, height;
    if (get_pixels(obj, &view, &width, &height) < 0) {
        return NULL;
    }
    uint32_t *words;
    Py_ssize_t n;
    Py_BEGIN_ALLOW_THREADS;
    n = quic_encode(view.buf, view.strides[0], width, height, alpha, &words);
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&view);
    if (n == -2) {
        PyErr_SetString(PyExc_SystemError, "QUIC encoder overran its row reserve (a bug: please report it)");
        return NULL;
    }
    if (n < 0) {
        return PyErr_NoMemory();
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)words, n * 4);
    free(words);
    return result;
}

PyDoc_STRVAR(decode_doc, "decode(data) -> (alpha, width, height, pixels)\n\n"
                         "Decode a QUIC RGB32 or RGBA image into B,G,R,X (X = 0) or B,G,R,A bytes, row after row.\n"
                         "For tests and benchmarks; raises ValueError on a malformed image.");

static PyObject *py_decode(PyObject *self, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const uint8_t *d = in.buf;
    if (in.len < 24 || in.len % 4) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "QUIC data must be whole words, a header and more");
        return NULL;
    }
    uint32_t magic = load_px(d), version = load_px(d + 4), type = load_px(d + 8);
    uint32_t width = load_px(d + 12), height = load_px(d + 16);
    const char *bad = NULL;
    if (magic != QUIC_MAGIC || version != QUIC_VERSION) {
        bad = "not a QUIC image (magic or version)";
    } else if (type != QUIC_TYPE_RGB32 && type != QUIC_TYPE_RGBA) {
        bad = "QUIC image type is neither RGB32 nor RGBA";
    } else if (width < 1 || height < 1 || width > 0x7fffffffu || height > 0x7fffffffu ||
               (uint64_t)width * height > QUIC_MAX_PIXELS) {
        bad = "QUIC image size out of range";
    } else if ((uint64_t)width * 3u > (uint64_t)in.len * 8u || (uint64_t)height > (uint64_t)in.len * 8u) {
        bad = "QUIC data too short for its size"; /* the first row costs 3 bits a pixel, every row 1 bit or more */
    }
    if (bad) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, bad);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)width * height * 4);
    if (!out) {
        PyBuffer_Release(&in);
        return NULL;
    }
    uint8_t *px = (uint8_t *)PyBytes_AS_STRING(out);
    int alpha = type == QUIC_TYPE_RGBA, failed = 0;
    Py_BEGIN_ALLOW_THREADS;
    Coder k;
    if (coder_init(&k, width) < 0) {
        failed = 2;
    } else {
        Reader r = {d + 20, (size_t)(in.len - 20) / 4, 0, 0, 0, 0};
        memset(px, 0, (size_t)width * height * 4);
        const uint8_t *prev = NULL;
        for (uint32_t y = 0; y < height && !failed; y++) {
            uint8_t *cur = px + (size_t)y * width * 4;
            carry_first_errors(&k.pass_rgb, y == 0);
            failed = decode_row(&r, &k.pass_rgb, prev, cur, width) < 0;
            if (alpha && !failed) {
                carry_first_errors(&k.pass_alpha, y == 0);
                failed = decode_row(&r, &k.pass_alpha, prev, cur, width) < 0;
            }
            prev = cur;
        }
        free(k.err_rows);
    }
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&in);
    if (failed) {
        Py_DECREF(out);
        if (failed == 2) {
            return PyErr_NoMemory();
        }
        PyErr_SetString(PyExc_ValueError, "corrupt QUIC data");
        return NULL;
    }
    return Py_BuildValue("(OIIN)", alpha ? Py_True : Py_False, width, height, out);
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))py_encode, METH_VARARGS | METH_KEYWORDS, encode_doc},
    {"decode", (PyCFunction)py_decode, METH_O, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_quic",
    .m_doc = "QUIC image encoder (and a decoder for tests), in the format spice-gtk decodes.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__quic(void)
{
    init_tables();
    if (n_buckets > MAX_BUCKETS) {
        PyErr_SetString(PyExc_ImportError, "QUIC bucket table larger than expected");
        return NULL;
    }
    return PyModule_Create(&module);
}
