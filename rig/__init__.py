"""gmem-rig: a deterministic fuzzing and fault-injection rig for the confidential-VM
memory-conversion path (KVM guest_memfd + QEMU RamBlockAttributes + VFIO)."""

__version__ = "0.1.0"
