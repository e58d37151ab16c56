"""The fuzz harness registry: how each harness turns bytes into something to run.

World harnesses decode bytes into a trace with the one decoder (rig.decode), so every
crash file prints as a trace and replays with ``rig replay --harness NAME FILE``.  A
harness name may carry a fixed design after a colon: ``convert:qemu-10.1``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rig.decode import DecodeOptions, decode
from rig.trace import Trace


@dataclass(frozen=True)
class WorldHarness:
    name: str
    doc: str
    options: DecodeOptions

    def to_trace(self, data: bytes) -> Trace:
        config, ops = decode(data, self.options)
        return Trace(config, ops, comments=[f"decoded from {len(data)} raw bytes by harness "
                                            f"{self.name}"])

    def with_design(self, design: str) -> "WorldHarness":
        return WorldHarness(f"{self.name.split(':')[0]}:{design}", self.doc,
                            replace(self.options, design=design))


_BASE = {h.name: h for h in (
    WorldHarness("convert", "a whole World, design chosen by the input, seeded faults "
                 "(BUGGIFY) from the input bytes; oracle after every op",
                 DecodeOptions(faults="seeded")),
    WorldHarness("convert-explicit", "a whole World with explicit per-op fault properties "
                 "decoded from the input (faults pinned to ops)",
                 DecodeOptions(faults="explicit")),
)}

DEFAULT = "convert"


class _Registry(dict):
    """``WORLD_HARNESSES["convert:hardened"]`` works for every design."""

    def __contains__(self, name) -> bool:
        base, _, design = str(name).partition(":")
        if base not in _BASE:
            return False
        if not design:
            return True
        from rig.world.designs import DESIGNS

        return design in DESIGNS

    def __getitem__(self, name):
        if name not in self:
            raise KeyError(name)
        base, _, design = name.partition(":")
        harness = _BASE[base]
        return harness.with_design(design) if design else harness

    def __iter__(self):
        return iter(_BASE)

    def __len__(self):
        return len(_BASE)


WORLD_HARNESSES = _Registry()
