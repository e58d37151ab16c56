"""What the world records during an op, beside its result: the events.

Each kind is a small frozen dataclass, and its ``__str__`` is the one way it is written
(``rig replay`` prints it under the op, ``--json`` lists it, the tests compare them).
The world appends them in the order they happen (``World.events``); the session cuts
them per op (``Step.events``, with the injected faults apart in ``Step.faults``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.errors import errno_name
from rig.world.ops import Op, format_op, format_point, format_result


class Event:
    """Base of every event kind (no fields of its own)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Fault(Event):
    """The fault plan failed a hit of ``site`` with ``errno`` (negative), after
    ``partial`` units of progress for partial sites."""

    site: str
    errno: int
    partial: int | None = None

    def __str__(self) -> str:
        text = f"{self.site}={errno_name(self.errno)}"
        return text + (f" after {self.partial} units" if self.partial is not None else "")


@dataclass(frozen=True, slots=True)
class Interleave(Event):
    """The op's interleaved op ran, at ``at`` (rig.world.ops.interleave_point)."""

    at: object
    op: Op
    result: object

    def __str__(self) -> str:
        return (f"interleaved {format_point(self.at)}: {format_op(self.op)} = "
                f"{format_result(self.result)}")


@dataclass(frozen=True, slots=True)
class IommuFault(Event):
    """A device access the IOMMU could not translate."""

    iova: int
    ret: int

    def __str__(self) -> str:
        return f"IOMMU fault at iova 0x{self.iova:x} ({format_result(self.ret)})"


@dataclass(frozen=True, slots=True)
class IommuFaultRun(Event):
    """``pages`` consecutive pages from ``iova`` that no mapping covers, each a fault
    (a run longer than World.IOMMU_FAULT_RUN_MAX, which would print a line a page)."""

    iova: int
    pages: int
    ret: int

    def __str__(self) -> str:
        return (f"IOMMU fault at iova 0x{self.iova:x}+0x{self.pages * 0x1000:x}: "
                f"{self.pages} pages ({format_result(self.ret)})")


@dataclass(frozen=True, slots=True)
class Retry(Event):
    """A design retried ``what``: attempt number ``attempt``, after ``value`` (the errno
    of the failed attempt, or what was left to undo)."""

    what: str
    attempt: int
    value: int

    def __str__(self) -> str:
        return f"retry {self.what} #{self.attempt} after {format_result(self.value)}"


@dataclass(frozen=True, slots=True)
class GiveUp(Event):
    """A design stopped retrying ``what`` on ``[start, start+size)``."""

    what: str
    start: int
    size: int
    ret: int

    def __str__(self) -> str:
        return (f"gave up on {self.what} of 0x{self.start:x}+0x{self.size:x} "
                f"({format_result(self.ret)})")


@dataclass(frozen=True, slots=True)
class Budget(Event):
    """QEMU's DMA-mapping budget check spoke about device ``dev``
    (vfio_ram_discard_register_listener): a warning, a refusal or an hw_error."""

    dev: int
    message: str

    def __str__(self) -> str:
        return f"budget: {self.dev} {self.message}"


@dataclass(frozen=True, slots=True)
class Exit(Event):
    """QEMU exited at this op (hw_error or a fatal replay failure at hot-plug of ``dev``):
    the kernel releases everything the process held."""

    dev: int
    ret: int

    def __str__(self) -> str:
        return f"QEMU exited at hot-plug of vfio{self.dev} ({format_result(self.ret)})"


@dataclass(frozen=True, slots=True)
class RegisterError(Event):
    """Registering device ``dev``'s listener failed with ``ret``."""

    dev: int
    ret: int

    def __str__(self) -> str:
        return f"register_error: {self.dev} {self.ret}"


@dataclass(frozen=True, slots=True)
class UnmapError(Event):
    """An uncoordinated design's unmap of ``[iova, iova+size)`` failed with ``ret``."""

    iova: int
    size: int
    ret: int

    def __str__(self) -> str:
        return f"unmap of 0x{self.iova:x}+0x{self.size:x} failed ({format_result(self.ret)})"


@dataclass(frozen=True, slots=True)
class VmStop(Event):
    """A conversion failed and the design stops the VM (QEMU: kvm_cpu_exec returns the
    error and the vCPU thread stops the guest)."""

    errno: int

    def __str__(self) -> str:
        return f"VM stopped ({format_result(self.errno)})"
