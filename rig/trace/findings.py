"""The known findings, as unminimized 40-op traces (the regression corpus' sources).

Each finding is its essential ops spread among 40 ops of harmless noise (guest touches,
device reads, replays), so that ``rig minimize`` has real work to do; the minimized
results live in corpora/regressions/.  ``python -m rig.trace.findings DIR`` writes the
unminimized traces.
"""

from __future__ import annotations

import os
import sys

from rig.errors import ENOENT, ENOMEM
from rig.world.faults import FaultSpec
from rig.world.ops import op
from rig.trace.scenarios import SCENARIOS
from rig.trace.format import Expect, Trace, serialize
from rig.world.config import WorldConfig

SHARED, PRIVATE = False, True
BS = 0x1000
OPS = 40


def _noise(k: int):
    """Harmless op number k: it neither converts, maps nor allocates anything."""
    if k % 3 == 2:
        return op("device_dma", 0, 0xE000 - (k % 4) * BS, BS, False)
    return op("replay", 0x0, 0x10000 - (k % 5) * BS, bool(k % 2))


def spread(essential, total: int = OPS):
    """The essential ops in order, with noise before, between and after them."""
    essential = list(essential)
    noise = total - len(essential)
    gaps = len(essential) + 1
    out, k = [], 0
    for i, o in enumerate(essential + [None]):
        for _ in range(noise // gaps + (1 if i < noise % gaps else 0)):
            out.append(_noise(k))
            k += 1
        if o is not None:
            out.append(o)
    return out


def _findings():
    seed = list(SCENARIOS["seed"].ops)
    yield ("stale-mapping on uncoordinated (the seed sequence)",
           WorldConfig(design="uncoordinated"), seed, Expect("violation", None, "stale-mapping"))
    yield ("double backing on keep-shared (the seed sequence)",
           WorldConfig(design="keep-shared"), seed, Expect("violation", None, "double-backing"))
    yield ("QEMU 10.1: populate failure in the 2nd of two listeners, nothing rolled back",
           WorldConfig(design="qemu-10.1"),
           [op("vfio_register", 0, 0x0, 0x10000), op("vfio_register", 1, 0x0, 0x10000),
            op("kvm_convert_memory", 0x2000, BS, SHARED,
               fault=(FaultSpec("vfio.dma_map", -ENOMEM, 2),))],
           Expect("violation", None, "shared-unmapped"))
    yield ("double populate: a conversion lands inside a hot-plug replay; the replay "
           "maps the block again (-EEXIST) and VFIO's rollback unmaps valid mappings",
           WorldConfig(design="rdm-rollback"),
           [op("kvm_convert_memory", 0x0, BS, SHARED),
            op("kvm_convert_memory", 0x3000, BS, SHARED),
            op("vfio_register", 0, 0, 0x10000,
               interleave=(1, op("kvm_convert_memory", 0x4000, BS, SHARED)))],
           Expect("violation", None, "shared-unmapped"))
    yield ("type1 dma_entry_limit exhaustion: shared memory needs more 4 KiB mappings "
           "than the container allows",
           WorldConfig(design="qemu-10.1", dma_entry_limit=8, max_memslots=0),
           [op("vfio_register", 0, 0x0, 0x10000),
            op("kvm_convert_memory", 0x0, 0x8000, SHARED),
            op("kvm_convert_memory", 0x8000, 0x4000, SHARED)],
           Expect("violation", None, "shared-unmapped"))
    yield ("iommufd partial unmap: the kernel removes the first area then fails with "
           "-ENOENT, which QEMU's backend reports as success; a mapping survives the punch",
           WorldConfig(design="qemu-10.1", iommu="iommufd"),
           [op("vfio_register", 0, 0x0, 0x10000),
            op("kvm_convert_memory", 0x4000, 2 * BS, SHARED),
            op("kvm_convert_memory", 0x4000, 2 * BS, PRIVATE,
               fault=(FaultSpec("iommufd.ioas_unmap", -ENOENT, 1, 1),))],
           Expect("violation", None, "stale-mapping"))


def unminimized() -> list[Trace]:
    return [Trace(cfg, spread(ops), expect, [title]) for title, cfg, ops, expect in _findings()]


def main(argv=None) -> int:
    out = (argv or sys.argv[1:] or ["corpora/unminimized"])[0]
    os.makedirs(out, exist_ok=True)
    for i, trace in enumerate(unminimized()):
        path = os.path.join(out, f"finding-{i}-{trace.config.design}.trace")
        with open(path, "w") as f:
            f.write(serialize(trace))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["unminimized", "spread"]
