"""Every fault site is reachable, fires when asked, is marked as injected, and its error
reaches the design's error path; the site registry keeps its ids and refuses to reuse
one (rig.world.faults)."""

import os
import subprocess
import sys

import pytest

from rig.errors import EBUSY, EFAULT, EINTR, EIO, ENOENT, ENOMEM, ENOSPC
from rig.check.session import run
from rig.world.faults import SITES, FaultSpec, fault_site
from rig.world.ops import op
from rig.world.config import WorldConfig
from rig.world.events import Fault, Retry

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


#: name -> id of every fault site, pinned: the byte decoder picks a site by its id
#: (rig.trace.decode.pick_id), so saved inputs and dictionary tokens mean what they meant
#: only while no id changes.  A new site appends its line here; no line ever changes.
SITE_IDS = {
    "vfio.dma_map": 0,
    "vfio.dma_unmap": 1,
    "iommufd.ioas_map": 2,
    "iommufd.ioas_unmap": 3,
    "pin.pin_pages": 4,
    "memfd.punch_hole": 5,
    "gmem.punch_hole": 6,
    "kvm.set_memory_attributes": 7,
    "listener.notify_populate": 8,
}


def test_every_site_has_a_case():
    assert set(CASES) == set(SITES)


def test_site_ids_are_pinned_and_in_order():
    assert {name: site.id for name, site in SITES.items()} == SITE_IDS
    assert [site.id for site in SITES.values()] == sorted(SITE_IDS.values())
    assert len(set(SITE_IDS.values())) == len(SITE_IDS)


def test_every_site_is_declared_with_where_it_is_hit():
    for site in SITES.values():
        assert site.where and site.doc and site.errnos, site.name


def test_the_registry_refuses_a_reused_name_or_id():
    before = dict(SITES)
    with pytest.raises(ValueError, match="'vfio.dma_map' is declared twice"):
        fault_site("vfio.dma_map", id=len(SITES), errnos=(ENOMEM,), where="here", doc="d")
    with pytest.raises(ValueError, match="id 4 is already 'pin.pin_pages'.s .*next free "
                                         f"one is {max(SITE_IDS.values()) + 1}"):
        fault_site("test.reused_id", id=4, errnos=(ENOMEM,), where="here", doc="d")
    with pytest.raises(ValueError, match="id must be an int >= 0"):
        fault_site("test.bad_id", id=-1, errnos=(ENOMEM,), where="here", doc="d")
    with pytest.raises(ValueError, match="errnos must be positive"):
        fault_site("test.no_errno", id=99, errnos=(), where="here", doc="d")
    assert SITES == before  # a refused site is not registered


def test_importing_the_registry_alone_registers_every_site():
    """Whoever reads SITES first, every site is there: rig.world imports the modules
    that declare them."""
    code = "from rig.world.faults import SITES; print(' '.join(SITES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "RIG_PUREPYTHON": "1"}).stdout
    assert out.split() == list(SITE_IDS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("site", sorted(CASES))
def test_site_reaches_error_path(site, backend):
    iommu, ops, qemu_expect, hardened_expect = CASES[site]
    last = len(ops) - 1
    for design, (kind, value) in (("qemu-10.1", qemu_expect), ("hardened", hardened_expect)):
        result = run(WorldConfig(design=design, iommu=iommu), ops, backend)
        step = result.steps[last]
        fired = [f.site for f in step.faults]
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
    assert Retry("discard", 1, -EINTR) in result.steps[2].events


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
    assert result.steps[2].faults == [Fault("vfio.dma_map", -ENOSPC, None)]
    assert Fault("vfio.dma_map", -ENOSPC, None) in result.world.events


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
