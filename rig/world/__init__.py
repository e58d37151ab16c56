"""The world: everything outside the core that a conversion touches, simulated.

KVM's memory attributes (kvm.py), host memory and hole punching (host.py), RAM blocks,
devices, pinning and DMA (world.py, device.py), the op vocabulary the world executes
(ops.py), the fault sites and plans (faults.py), the configuration of a world
(config.py) and the designs, one conversion policy per file (designs/).

May import: rig.core and rig.errors.  Nothing here knows about the oracle, traces,
harnesses or the command line.
"""
