"""Core-level mutants: one deliberate defect in the core (the code that ports to QEMU),
built in by a compile-time flag of the Cython core and of its twin (rig.core.mutants).

Each class here mixes ``Mutant`` into ``Hardened``: the design is unchanged, only the
core under it is the mutant's, so the one defect is the core's and whatever the oracle
reports against ``hardened`` (whose contract is every invariant under every fault) is
that defect's doing.  A process runs one core: ``rig`` re-executes itself on the
mutant's build when a command names such a design (rig.cli.main.ensure_core_for), and a
World of such a design on another core refuses to start.

Where the oracle sees each one (the kill trace is ``corpora/mutants/NAME.trace``):

- world traces on ``hardened``: rollback-wrong-section, double-populate,
  rollback-forgets-failing-bit, vfio-populate-no-rollback;
- core traces only (the core harnesses ``core_differential`` and ``iommu``, which hold
  the core against the reference model): size-unaligned-accepted and no-wrap-check
  (hardened validates every range itself before the manager sees it, and QEMU 10.1's
  order changes KVM's attributes before the manager refuses, so the unmutated base is
  not clean there either), iommufd-partial-unmap-ignored (the world's VFIO sections are
  block-aligned, so an unmap never meets an area that straddles its range, and QEMU's
  iommufd backend already takes -ENOENT for success).  A core trace names its mutant
  in its header, ``mutant=NAME`` (rig.trace.core), which is what ``rig replay``
  re-executes on.
"""

from __future__ import annotations

from rig.world.designs import design_class
from rig.world.designs.hardened import Hardened
from rig.world.mutants import Mutant

def core_mutant_of(design: str | None) -> str | None:
    """The core mutant design ``design`` needs (None: the real core; also for a name
    that is no design, which the command then reports)."""
    cls = design_class(design) if design else None
    return getattr(cls, "core_mutant", None)


class RollbackWrongSection(Mutant, Hardened):
    """notify_populate's listener rollback clips the failing listener's section instead
    of each earlier listener's own.

    virtio-mem's virtio_mem_notify_populate() rolled back the listeners notified before
    the failing one with ``MemoryRegionSection tmp = *rdl->section`` (the failing
    listener, the outer loop's variable) instead of ``*rdl2->section``; fixed upstream
    by Chenyi Qiang's "virtio-mem: Fix the iterator variable in a vmem->rdl_list loop"
    (Dec 2022, Fixes: 2044969f0b, in QEMU 8.0 and stable 7.2), the loop the
    RamBlockAttributes manager's notify_populate follows.  An earlier listener whose
    own section reaches further than the failing one's keeps mappings that the full
    rollback then turns private: stale-mapping.
    """

    name = "rollback-wrong-section"
    base = "hardened"
    core_mutant = "rollback-wrong-section"


class SizeUnalignedAccepted(Mutant, Hardened):
    """is_valid_range does not check that the size is block-aligned, so state_change
    truncates nbits and converts less than it was asked to, reporting success.

    ram_block_attributes_is_valid_range() tests ``QEMU_IS_ALIGNED(size, block_size)``
    beside the offset's alignment; a version of the RamBlockAttributes series without
    it was fixed before QEMU merged the series.  Without it a size of no whole block
    converts nothing and returns 0, and one of k blocks and a bit converts k.  Core
    traces only: the world converts whole host pages, so only a block size above the
    page size could reach it, and there hardened validates block alignment itself
    while QEMU 10.1's order changes KVM's attributes before the manager refuses.
    """

    name = "size-unaligned-accepted"
    base = "hardened"
    core_mutant = "size-unaligned-accepted"


class NoWrapCheck(Mutant, Hardened):
    """is_valid_range does not reject ``offset + size`` wrapping 2^64 (nor size 0): a
    range whose wrapped end lies inside the region is taken for valid.

    ram_block_attributes_is_valid_range() tests ``offset + size <= offset`` before it
    compares the end with the region's size, because a uint64_t end that wrapped is
    small; without it the C scans and sets bits far past the bitmap (the mutant stops
    at the region's end instead, so the rig survives to report it).  Core traces only:
    KVM_SET_MEMORY_ATTRIBUTES refuses a wrapping range before the manager sees it, and
    hardened checks it too.
    """

    name = "no-wrap-check"
    base = "hardened"
    core_mutant = "no-wrap-check"


class DoublePopulate(Mutant, Hardened):
    """state_change's "Unexpected mixture" populate path notifies every block of the
    range, also the ones already populated.

    ram_block_attributes_state_change() skips a block whose bit is already set
    (``if (test_bit(bit, attr->bitmap)) continue;``), because a second populate is not
    harmless to VFIO: VFIO_IOMMU_MAP_DMA of a mapped granule fails with -EEXIST and
    vfio_ram_discard_notify_populate()'s rollback then unmaps the whole section, the
    valid older mapping included (docs/semantics.md 2.4); the full rollback also
    clears the bit of a block that was shared before: shared-unmapped.
    """

    name = "double-populate"
    base = "hardened"
    core_mutant = "double-populate"


class RollbackForgetsFailingBit(Mutant, Hardened):
    """The full rollback of a populate mixture restores every bit but the failing
    block's.

    The concern with a hand-written rollback of the per-block loop (the rig's ``full``
    policy, which hardened proposes for QEMU): the blocks that succeeded are undone in
    a second loop, and the failing block, whose bit was set before its listeners
    refused ("bitmap first, then notify"), is easy to leave out of it, an off-by-one at
    the loop's start.  Its listeners were rolled back and hardened restores KVM's
    attribute, so the bitmap says shared where nothing is: attr-agree.
    """

    name = "rollback-forgets-failing-bit"
    base = "hardened"
    core_mutant = "rollback-forgets-failing-bit"


class VfioPopulateNoRollback(Mutant, Hardened):
    """The VFIO listener keeps the granules it mapped before a map failure.

    Upstream vfio_ram_discard_notify_populate() unmaps the whole section on the first
    failed vfio_container_dma_map() ("Rollback"), because the manager does not tell the
    failing listener to discard (only the ones before it); without that, the granules
    mapped so far stay pinned and mapped to pages the rollback turns private:
    stale-mapping.
    """

    name = "vfio-populate-no-rollback"
    base = "hardened"
    core_mutant = "vfio-populate-no-rollback"


class IommufdPartialUnmapIgnored(Mutant, Hardened):
    """An iommufd unmap that meets an area not fully inside its range, after it removed
    earlier ones, returns success and leaves that area mapped.

    Linux iopt_unmap_iova_range() (drivers/iommu/iommufd/io_pagetable.c) walks the areas
    of [start, last] in ascending order and, at one not fully inside, sets -ENOENT and
    jumps past ``if (unmapped_bytes) rc = 0;``; the earlier areas stay removed and
    IOMMU_IOAS_UNMAP reports nothing back (cmd->length is written only on success).
    Turning that ``goto out_unlock_iova`` into a ``break`` makes the partial unmap a
    success of the bytes removed, so the caller believes the range is unmapped while
    an area is left behind.  Core traces only (the world's VFIO sections never straddle
    an area).
    """

    name = "iommufd-partial-unmap-ignored"
    base = "hardened"
    core_mutant = "iommufd-partial-unmap-ignored"
