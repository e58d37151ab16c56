"""The text and byte forms of a run: the trace format v1 (format.py), the decoder from
fuzzer bytes to a trace (decode.py), the corpus files shipped with the rig (corpus.py)
and the minimizer (minimize.py).

May import: rig.check (the invariant names an ``# expect:`` line uses, the session a
minimizer replays with), rig.world, rig.core and rig.errors.  Not the drivers or the
command line.
"""
