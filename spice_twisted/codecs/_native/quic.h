/* The QUIC image format's constants, as spice-gtk's decoder (spice-common quic.c) expects them.
 *
 * QUIC is SFALIC-style lossless coding: each colour plane is predicted from its left and
 * upper neighbours, the prediction error is mapped to 0..255 and written as an adaptive
 * Golomb-Rice code whose parameter comes from a "bucket" selected by the previous error;
 * rows that repeat the row above switch to a run-length mode.  Every number below is part
 * of the bitstream: the decoder derives the same model from the same constants, so any
 * difference desynchronises it.  The code using them is ours (quic.c).
 */
#ifndef SPICE_TWISTED_QUIC_H
#define SPICE_TWISTED_QUIC_H

#include <stdint.h>

#define QUIC_MAGIC 0x43495551u /* "QUIC" read as a little-endian word */
#define QUIC_VERSION 0u        /* major 0 << 16 | minor 0 */

/* The image types of the header's third word (spice-common QuicImageType). */
#define QUIC_TYPE_RGB32 4u
#define QUIC_TYPE_RGBA 5u

#define QUIC_BPC 8          /* bits per colour plane: codes 0..7 */
#define QUIC_NCODES 8       /* Golomb parameters a bucket chooses from */
#define QUIC_CODE_LIMIT 26  /* the longest codeword (an escape code past this) */
#define QUIC_WAIT_MAX 6     /* model updates wait up to 2^6-1 pixels once warmed up */
#define QUIC_WAIT_NEXT 2048 /* pixels coded before the wait mask widens by one bit */
#define QUIC_MAX_PIXELS (512u * 1024u * 1024u - 1u) /* the decoder refuses larger images */

/* Counter threshold per wait-mask index (model evolution 3): past it a bucket's counters halve. */
static const unsigned quic_halving_trigger[11] = {110, 550, 900, 800, 550, 400, 350, 250, 140, 160, 140};

/* Run lengths: state s expects runs of 2^quic_run_order[s] pixels. */
#define QUIC_RUN_STATES 32
static const uint8_t quic_run_order[QUIC_RUN_STATES] = {
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15,
};

/* The pseudo-random waits between model updates: entry k of the format's 256-entry
 * sequence, reduced to the 6 bits the widest wait mask keeps. */
static const uint8_t quic_wait_table[256] = {
     2, 23, 19, 21,  7, 18, 40, 14, 12, 32, 47, 44, 36,  6, 18, 11,
     4, 19, 42, 29, 16, 63, 57, 51, 16,  3,  5, 14, 15, 30, 20,  9,
    36, 45,  3, 57, 61,  0,  8,  5, 41, 14, 43, 27, 43, 59, 31, 35,
    39, 60, 42, 38, 13, 54, 62,  1, 26,  3, 11, 61, 52, 34,  7, 48,
     4, 59, 22, 12, 22,  8, 50,  4, 10,  6, 44,  8, 11, 46, 31, 51,
    53, 17,  1, 43, 46, 60, 36, 54, 10, 27, 39, 44, 22, 41, 23,  2,
    44,  0, 40, 53, 40, 48, 16, 43, 32, 28, 33, 12, 20,  2, 56, 62,
    55, 58, 18, 20, 13, 55, 38, 29, 57, 19, 49, 33, 47, 63, 59,  0,
    35, 61, 19, 25, 46, 38, 60,  4, 35,  1, 26, 40, 28, 10,  5, 14,
    25, 18, 48, 49, 20, 59, 62, 34, 46,  7, 33, 52, 34, 58,  9, 29,
     8, 55, 62, 60, 37, 36, 37, 50,  6,  3, 10, 28, 48, 24, 26, 61,
    57, 30, 11, 54,  2,  6, 50, 47,  7, 17, 35, 53, 32, 12, 23, 17,
     5, 21, 49, 55, 51, 45, 52, 27, 39, 25, 39, 63, 22, 24, 42, 52,
    56, 38, 41, 41, 56, 32, 13, 24, 26, 51, 27, 56, 58, 37, 24, 42,
    15, 28, 17, 30, 31, 15, 16, 23, 25, 54, 33, 34,  1, 29, 31, 50,
    53, 21, 49, 15, 47,  9,  0, 58, 37, 45, 30, 13,  9, 45, 63, 21,
};

#endif
