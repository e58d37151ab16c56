"""Every fault site is reachable, fires when asked, is marked as injected, and its error
reaches the design's error path (DESIGN.md 4, "Faults")."""

import pytest

from rig.errors import EBUSY, EFAULT, EINTR, EIO, ENOENT, ENOMEM, ENOSPC
from rig.check.session import run
from rig.world.faults import SITES, FaultSpec
from rig.world.ops import op
from rig.world.config import WorldConfig

from tests.conftest import BACKENDS

SHARED, PRIVATE = False, True
BS = 0x1000


def f(site, errno, nth=1, partial=None):
    return (FaultSpec(site, -errno, nth, partial),)


def shared_then(fault_props, iommu="type1", pages=2):
    """Register a device, share ``pages`` blocks, then convert them back to private
    with the fault."""
    return [op("vfio_register", 0, 0, 0x10000),
            op("kvm_convert_memory", 0x4000, pages * BS, SHARED),
            op("kvm_convert_memory", 0x4000, pages * BS, PRIVATE, fault=fault_props)]


def to_shared(fault_props):
    return [op("vfio_register", 0, 0, 0x10000),
            op("guest_touch", 0x4000),
            op("kvm_convert_memory", 0x4000, 2 * BS, SHARED, fault=fault_props)]


# site -> (iommu, ops, what qemu-10.1 shows, what hardened shows)
CASES = {
    # 10.1: the bitmap and KVM say shared, VFIO rolled its own mappings back.
    "vfio.dma_map": ("type1", to_shared(f("vfio.dma_map", ENOSPC, 2)),
                     ("violation", "shared-unmapped"), ("result", -ENOSPC)),
    "vfio.dma_unmap": ("type1", shared_then(f("vfio.dma_unmap", EBUSY)),
                       ("violation", "stale-mapping"), ("result", 0)),
    "iommufd.ioas_map": ("iommufd", to_shared(f("iommufd.ioas_map", EFAULT)),
                         ("violation", "shared-unmapped"), ("result", -EFAULT)),
    # The kernel removes 1 of 2 mappings then fails with -ENOENT, which QEMU's iommufd
    # backend reports as success: one mapping of a page about to be punched survives.
    "iommufd.ioas_unmap": ("iommufd", shared_then(f("iommufd.ioas_unmap", ENOENT, 1, 1)),
                           ("violation", "stale-mapping"), ("result", 0)),
    "pin.pin_pages": ("type1", to_shared(f("pin.pin_pages", ENOMEM)),
                      ("violation", "shared-unmapped"), ("result", -ENOMEM)),
    "memfd.punch_hole": ("type1", shared_then(f("memfd.punch_hole", EINTR, 1, 1)),
                         ("violation", "atomic-failure"), ("result", 0)),
    "gmem.punch_hole": ("type1", to_shared(f("gmem.punch_hole", EIO, 1, 0)),
                        ("violation", "atomic-failure"), ("result", 0)),
    # Fails before any change: 10.1 stops the VM, but nothing is inconsistent.
    "kvm.set_memory_attributes": ("type1", to_shared(f("kvm.set_memory_attributes", ENOMEM)),
                                  ("vm_stopped", -ENOMEM), ("result", -ENOMEM)),
    "listener.notify_populate": (
        "type1",
        [op("listener_register", 0, 0, 0x10000),
         op("kvm_convert_memory", 0x4000, BS, SHARED,
            fault=f("listener.notify_populate", EBUSY))],
        ("violation", "shared-unmapped"), ("result", -EBUSY)),
}


def test_every_site_has_a_case():
    assert set(CASES) == set(SITES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("site", sorted(CASES))
def test_site_reaches_error_path(site, backend):
    iommu, ops, qemu_expect, hardened_expect = CASES[site]
    last = len(ops) - 1
    for design, (kind, value) in (("qemu-10.1", qemu_expect), ("hardened", hardened_expect)):
        result = run(WorldConfig(design=design, iommu=iommu), ops, backend)
        step = result.steps[last]
        fired = [s for s, _, _ in step.faults]
        assert site in fired, f"{design}: {site} did not fire ({step.faults})"
        assert result.coverage[site][1] >= 1
        if kind == "result":
            assert result.outcome.kind == "ok", (design, result.outcome, result.outcome.detail)
            assert step.result == value
        elif kind == "vm_stopped":
            assert (result.outcome.kind, result.outcome.errno) == ("vm_stopped", value)
        else:
            assert result.outcome.kind == "violation"
            assert value in {v.invariant for v in result.outcome.violations}, \
                [str(v) for v in result.outcome.violations]


def test_hardened_retries_are_logged():
    """A recoverable error on an idempotent step is retried, and the retry is visible."""
    _, ops, _, _ = CASES["memfd.punch_hole"]
    result = run(WorldConfig(design="hardened"), ops)
    assert ("retry", 2, "discard", 1, -EINTR) in result.steps[2].events


def test_partial_punch_keeps_first_pages():
    """memfd.punch_hole=EINTR@1/1: the first page is punched, then the error."""
    ops = [op("kvm_convert_memory", 0x4000, 2 * BS, SHARED),
           op("guest_touch", 0x4000), op("guest_touch", 0x5000),
           op("kvm_convert_memory", 0x4000, 2 * BS, PRIVATE,
              fault=f("memfd.punch_hole", EINTR, 1, 1))]
    result = run(WorldConfig(design="qemu-10.1"), ops)
    memfd = result.world.blocks[0].memfd
    assert not memfd.backed(0x4000) and memfd.backed(0x5000)
    assert result.outcome.errno == -EINTR or result.world.vm_stopped == -EINTR


def test_injected_faults_are_marked():
    _, ops, _, _ = CASES["vfio.dma_map"]
    result = run(WorldConfig(design="hardened"), ops)
    assert result.steps[2].faults == [("vfio.dma_map", -ENOSPC, None)]
    assert ("fault", 2, "vfio.dma_map", -ENOSPC, None) in result.world.events


def test_natural_exhaustion_is_not_injected():
    """Resource knobs are config: ENOSPC at exactly limit + 1 mappings, and -ENOMEM at
    RLIMIT_MEMLOCK, with no fault plan involved."""
    cfg = WorldConfig(design="hardened", dma_entry_limit=3, max_memslots=0)
    ops = [op("vfio_register", 0, 0, 0x4000)] + [
        op("kvm_convert_memory", page * BS, BS, SHARED) for page in range(4)]
    result = run(cfg, ops)
    assert [s.result for s in result.steps] == [0, 0, 0, 0, -ENOSPC]
    assert all(not s.faults for s in result.steps)
    memlock = run(WorldConfig(design="hardened", memlock_limit=2 * BS),
                  [op("vfio_register", 0, 0, 0x10000),
                   op("kvm_convert_memory", 0, 3 * BS, SHARED)])
    assert memlock.steps[1].result == -ENOMEM and not memlock.steps[1].faults
    assert memlock.outcome.kind == "ok"
