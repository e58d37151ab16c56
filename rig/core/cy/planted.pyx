# cython: language_level=3, boundscheck=False, wraparound=False
"""A planted deep branch: proof that libFuzzer sees the core's native edges.

Four nested byte comparisons.  With the instrumented build (-fsanitize=fuzzer-no-link,
which traces comparisons) libFuzzer climbs them one byte at a time; with the plain gcc
build it gets no feedback at all and must guess 32 bits at once.  Used only by the
native_canary harness and its test; nothing in the rig calls it.
"""


def deep_branch(const unsigned char[:] data):
    if data.shape[0] >= 4 and data[0] == 0x47:
        if data[1] == 0x4D:
            if data[2] == 0x45:
                if data[3] == 0x4D:
                    return True
    return False
