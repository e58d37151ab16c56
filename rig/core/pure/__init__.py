"""Pure-Python twin of the Cython core (selected with RIG_PUREPYTHON=1).

Same names, same signatures, same return codes as ``rig.core.cy``; a parity test keeps
them that way.  It mirrors the Cython algorithms (word bitmaps, the same walk orders) so
that a difference between the two is a porting bug, not a design difference.
"""
