# cython: language_level=3, boundscheck=False, wraparound=False
"""A planted branch behind a 64-bit magic: proof that libFuzzer sees the core's native code.

One comparison of the input's first eight bytes with "GMEMRIG!", the shape of a header
check in C.  With the instrumented build (-fsanitize=fuzzer-no-link traces comparisons)
libFuzzer records the 8-byte operand pair and splices the wanted word into the input, so
the branch falls within a few hundred runs (about 430); the plain gcc build gives it no
feedback and it must guess 64 bits at once.  (The other half of the proof, that the
core's C edges are counted, is the coverage comparison in tests/fuzz/test_native.py.)

Why one 8-byte word: libFuzzer keeps operand tables only for 4- and 8-byte compares.  A
byte-by-byte version got nothing but an edge per level and needed 70k-300k runs (it
missed a 300k budget on a CI machine).  Two nested magics fared worse: with 4-byte words
seeds 2 and 6 of 1-8 never passed level two in 300k runs (with -entropic=0 they did, in
5k), and with 8-byte words 10 of 12 seeds did not; libFuzzer's default entropic schedule
starves the one entry that passed level one.
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
