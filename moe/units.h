/* moe/units.h: physical quantities written with units in configuration
 * files and options, and their formatting for people.
 *
 * Every quantity is held in SI base units as a double: bytes, bytes per
 * second, seconds, floating-point operations per second.  Decimal prefixes
 * (k M G T P) multiply by powers of 1000, binary ones (Ki Mi Gi Ti Pi) by
 * powers of 1024.  A lower-case b means bits (divided by 8), an upper-case
 * B bytes:
 *
 *     "450GB/s" -> 4.5e11 B/s      "400Gb/s" -> 5e10 B/s     "400Gbps" -> 5e10
 *     "80GiB"   -> 85899345920 B   "2us"     -> 2e-6 s       "1.5ms" -> 1.5e-3
 *     "989TFLOP/s" -> 9.89e14      "989e12"  -> 9.89e14 (a bare number is
 *                                                  taken in the base unit)
 */
#ifndef MOEKIT_MOE_UNITS_H
#define MOEKIT_MOE_UNITS_H

#include <stddef.h>
#include "moe/error.h"

enum moe_unit {
	MOE_UNIT_NONE,   /* a plain number; no suffix accepted */
	MOE_UNIT_BYTES,  /* B, kB..PB, KiB..PiB, b (bits) ... */
	MOE_UNIT_RATE,   /* a byte or bit size followed by "/s" or "ps" */
	MOE_UNIT_TIME,   /* s, ms, us (or µs), ns */
	MOE_UNIT_FLOPS,  /* FLOP/s with a decimal prefix: TFLOP/s, also TFLOPS */
};

/* Parses s as a quantity of the given kind into *out (base units).
 * Returns MOE_OK; MOE_EINVAL when s is empty, is not a number, or carries a
 * unit of another kind or none known (the message names the text and the
 * units expected); MOE_ERANGE when the value overflows a double or is NaN.
 * Negative values parse; callers check ranges.  Leading and trailing spaces
 * are allowed, and one space between number and unit. */
enum moe_status moe_units_parse(const char *s, enum moe_unit kind, double *out);

/* Names the units a kind accepts, for error messages ("a byte rate such as
 * 450GB/s or 400Gb/s").  Static string. */
const char *moe_units_expected(enum moe_unit kind);

/* Writes v with a readable prefix ("450 GB/s", "2 us", "80 GiB" when v is a
 * whole number of GiB, else decimal) into buf of size n.  Returns buf. */
char *moe_units_format(double v, enum moe_unit kind, char *buf, size_t n);

#endif
