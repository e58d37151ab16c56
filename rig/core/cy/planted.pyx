# cython: language_level=3, boundscheck=False, wraparound=False
"""A planted branch behind a 64-bit magic: proof that libFuzzer sees the core's native code.

One comparison of the input's first eight bytes with "GMEMRIG!", the shape of a header
check in C.  With the instrumented build (-fsanitize=fuzzer-no-link traces comparisons)
libFuzzer records the 8-byte operand pair and splices the wanted word into the input, so
the branch falls within a few thousand runs; the plain gcc build gives it no feedback and
it must guess 64 bits at once.  (The other half of the proof, that the core's C edges are
counted, is the coverage comparison in tests/fuzz/test_native.py.)

Why one 8-byte word: libFuzzer keeps operand tables only for 4- and 8-byte compares.  A
byte-by-byte version got nothing but an edge per level and needed 70k-300k runs (it
missed a 300k budget on a CI machine); a two-level 4-byte version fell to the entropic
scheduler on some seeds, which starved the entry that had passed level one.
Used only by the native_canary harness and its test; nothing in the rig calls it.
"""

from libc.stdint cimport uint64_t
from libc.string cimport memcpy

# "GMEMRIG!" read as a little-endian 64-bit word (x86 and arm64 alike).
cdef uint64_t PLANTED_MAGIC = 0x214749524D454D47ULL


def deep_branch(const unsigned char[:] data):
    cdef uint64_t word
    if data.shape[0] < 8:
        return False
    memcpy(&word, &data[0], 8)
    return word == PLANTED_MAGIC
