/* Constants of the SPICE LZ and GLZ byte formats (as spice-gtk decodes them). */
#ifndef SPICE_TWISTED_LZ_FORMAT_H
#define SPICE_TWISTED_LZ_FORMAT_H

#define LZ_MAGIC 0x20205a4cu /* "LZ  " read as a big-endian word */
#define LZ_VERSION 0x00010001u /* 1.1 */
#define LZ_TYPE_PLT1_BE 2 /* palette indices, 8 pixels a byte, leftmost in the top bit */
#define LZ_TYPE_PLT4_BE 4 /* 2 pixels a byte, leftmost in the top nibble */
#define LZ_TYPE_RGB32 8
#define LZ_TYPE_RGBA 9

#define LZ_MAX_COPY 32 /* literals per control byte */
/* LZ distances (minus one): below LZ_MAX_DISTANCE in 13 bits, else LZ_MAX_DISTANCE plus 16 bits */
#define LZ_MAX_DISTANCE 8191
#define LZ_MAX_FAR (LZ_MAX_DISTANCE + 65535)

/* GLZ pixel offsets: 12 bits (short), 17 (medium), 25 (long) */
#define GLZ_PIX_SHORT (1u << 12)
#define GLZ_PIX_MEDIUM (1u << 17)
#define GLZ_MAX_IMAGE_DIST ((1u << 24) - 1) /* what every offset size can carry */

/* Clients refuse an LZ image whose stride * height exceeds this (1 GiB - 1). */
#define LZ_MAX_IMAGE_BYTES ((size_t)1024 * 1024 * 1024 - 1)

/* Our own bound: the largest side we encode (the display's surfaces are far smaller). */
#define LZ_MAX_SIDE 16384

#endif
