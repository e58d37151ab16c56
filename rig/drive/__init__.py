"""Drivers: what runs many inputs.  The harness registry (base.py, harnesses.py), the
atheris target every fuzz/<name>.py calls (target.py), the hypothesis state machine
(stateful.py), the fuzz campaign (campaign.py) and its
instrumented build (native.py), the sweeps (sweep.py: the cells of ``rig sweep`` and
fail_nth; sweeprun.py: one pytest-xdist item per cell), the bug benchmark's
engines and kill check (bugbench.py, ``rig bench bugs``), ``rig explore`` (explore.py),
and the port bridge: real C built against rig/port's QEMU stub layer (portbuild.py),
``rig port-check``'s streams, workers and divergence classes (portcheck.py), and the C
port of hardened's kvm_convert_memory against the design on a World (portworld.py).

May import: rig.trace, rig.check, rig.world, rig.core and rig.errors.  Not the command
line: what a driver reports, it returns; rig.cli prints it.
"""
