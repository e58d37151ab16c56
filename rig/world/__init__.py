"""The world: everything outside the core that a conversion touches, simulated.

KVM's memory attributes (kvm.py), host memory and hole punching (host.py), RAM blocks,
devices, pinning and DMA (world.py, device.py), the op vocabulary the world executes
(ops.py), the fault sites and plans (faults.py), the configuration of a world
(config.py) and the designs, one conversion policy per file (designs/).

May import: rig.core and rig.errors.  Nothing here knows about the oracle, traces,
harnesses or the command line.

Importing the package imports world.py, whose ``World.op_*`` methods declare the ops
(rig.world.ops.world_op) and which declares every fault site next to its hit
(rig.world.faults.fault_site): so ``rig.world.ops.OPS`` and ``rig.world.faults.SITES``
are complete whenever they can be read.
"""

import rig.world.world  # noqa: F401  (fills the op and fault-site registries)
