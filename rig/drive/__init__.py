"""Drivers: what runs many inputs.  The harness registry (base.py, harnesses.py), the
atheris target every fuzz/<name>.py calls (target.py), the hypothesis state machine
(stateful.py), the fuzz campaign (campaign.py) and its
instrumented build (native.py), the sweeps (sweep.py: the cells of ``rig sweep`` and
fail_nth; sweeprun.py: one pytest-xdist item per cell), and the bug benchmark's
engines and kill check (bugbench.py, ``rig bench bugs``).

May import: rig.trace, rig.check, rig.world, rig.core and rig.errors.  Not the command
line: what a driver reports, it returns; rig.cli prints it.
"""
