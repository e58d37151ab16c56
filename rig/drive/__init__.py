"""Drivers: what runs many inputs.  The harness registry (base.py, harnesses.py), the
atheris target every fuzz/<name>.py calls (target.py), the hypothesis state machine
(stateful.py), the fuzz campaign (campaign.py) and its
instrumented build (native.py), the fail_nth sweeps (sweep.py), and the bug benchmark's
engines and kill check (bugbench.py, ``rig bench bugs``).

May import: rig.trace, rig.check, rig.world, rig.core and rig.errors.  Not the command
line: what a driver reports, it returns; rig.cli prints it.
"""
