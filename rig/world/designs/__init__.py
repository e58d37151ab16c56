"""The designs under test (DESIGN.md 3): one file each, registered here."""

from rig.world.designs.base import Design
from rig.world.designs.hardened import Hardened
from rig.world.designs.inplace import InPlace
from rig.world.designs.keep_shared import KeepShared
from rig.world.designs.qemu_10_1 import Qemu101
from rig.world.designs.rdm_rollback import RdmRollback
from rig.world.designs.uncoordinated import Uncoordinated

#: name -> class, in the order reports list them.
DESIGNS: dict[str, type[Design]] = {cls.name: cls for cls in (
    Uncoordinated,
    KeepShared,
    Qemu101,
    RdmRollback,
    Hardened,
    InPlace,
)}


def make_design(name: str) -> Design:
    try:
        return DESIGNS[name]()
    except KeyError:
        raise ValueError(f"unknown design {name!r} (one of {', '.join(DESIGNS)})") from None
