"""The ``rig`` command line (main.py) and the commands that are mostly presentation:
``rig replay`` (replay.py), ``rig designs`` (report.py), ``rig bench`` (bench.py),
``rig list`` (listing.py), the verdict matrix of ``rig sweep`` (matrix.py) and ``rig
report`` (htmlreport.py).

May import every other layer; nothing imports it.
"""
