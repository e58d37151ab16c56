"""Checking: the oracle (oracle.py: the invariants, after every op), the reference model
of the core (model.py), the core's three-way differential check (differential.py), and
the one run loop that applies ops to a world and judges them (session.py: ``Session``,
``Outcome``).

May import: rig.world, rig.core and rig.errors.  Not the trace format (a run is a
config and a list of ops), the drivers or the command line.
"""
