"""The world, the designs and the oracle (docs/semantics.md 2.3-2.7, 3, 4.1).

Every invariant has a test that makes it fire (a known-bad design or a crafted state)
and the same scenario on ``hardened`` stays silent.
"""

import pytest

from rig.check import oracle
from rig.errors import EEXIST, EINVAL, ENOMEM, ENOSPC
from rig.check.session import run
from rig.world.faults import FaultSpec
from rig.world.ops import op
from rig.trace.format import serialize
from rig.world.config import X86_LAYOUT, RamSpec, WorldConfig
from rig.world.designs import BUILT_IN
from rig.world.world import World
from rig.world.events import Budget, Interleave

from tests.conftest import BACKENDS

PRIVATE, SHARED = True, False
BS = 0x1000


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def seed_sequence(dev=0):
    """docs/semantics.md 2.7: allocate shared page; convert to private; discard shared
    page; convert back; allocate shared page; device DMA hits the old mapping."""
    return [
        op("vfio_register", dev, 0x0, 0x10000),
        op("kvm_convert_memory", 0x2000, BS, SHARED),
        op("guest_touch", 0x2000),                 # allocate the shared page
        op("kvm_convert_memory", 0x2000, BS, PRIVATE),  # QEMU punches the memfd
        op("guest_touch", 0x2000),                 # the guest accepts the private page
        op("kvm_convert_memory", 0x2000, BS, SHARED),
        op("guest_touch", 0x2000),                 # a fresh shared page
        op("device_dma", dev, 0x2000, BS, True),   # DMA through the old mapping
    ]


def fault(site, errno, nth=1, partial=None):
    return (FaultSpec(site, -errno, nth, partial),)


def invariants(result):
    return {v.invariant for step in result.steps for v in step.violations}


# -- the seed sequence -------------------------------------------------------------------------

def test_seed_uncoordinated_stale_mapping_and_pin_leak(backend):
    result = run(WorldConfig(design="uncoordinated"), seed_sequence(), backend,
                 stop_at_violation=False)
    assert result.outcome.kind == "violation"
    assert result.outcome.invariant == "stale-mapping"
    assert result.outcome.op_index == 3  # the conversion that punched the pinned page
    assert {"stale-mapping", "pin-leak", "data-integrity"} <= invariants(result)
    assert "iova 0x2000 -> frame #" in result.outcome.detail


def test_seed_keep_shared_double_backing_measured(backend):
    result = run(WorldConfig(design="keep-shared"), seed_sequence(), backend,
                 stop_at_violation=False)
    assert result.outcome.invariant == "double-backing"
    assert result.outcome.op_index == 4  # the guest touched the page privately
    assert {"stale-mapping", "pin-leak"}.isdisjoint(invariants(result))
    assert "(1 extra frames)" in result.outcome.detail
    # The overhead as a figure: frames held twice when the run stops at the finding.
    world = run(WorldConfig(design="keep-shared"), seed_sequence(), backend).world
    extra = sum(len(set(b.memfd.pages) & set(b.gmem.pages)) for b in world.blocks)
    assert extra == 1


@pytest.mark.parametrize("design", ["qemu-10.1", "rdm-rollback", "hardened", "inplace"])
def test_seed_coordinated_designs_clean(backend, design):
    result = run(WorldConfig(design=design), seed_sequence(), backend)
    assert result.outcome.kind == "ok", result.outcome
    assert result.steps[-1].result == 0  # the DMA translated: no IOMMU fault


# -- populate failure in the 2nd of two listeners ------------------------------------------------

def two_devices_populate_failure():
    return [
        op("vfio_register", 0, 0x0, 0x10000),
        op("vfio_register", 1, 0x0, 0x10000),
        # Listeners are notified newest first: vfio1 maps (hit 1), vfio0 fails (hit 2).
        op("kvm_convert_memory", 0x2000, BS, SHARED, fault=fault("vfio.dma_map", ENOMEM, 2)),
    ]


def test_qemu_10_1_populate_failure_no_rollback(backend):
    result = run(WorldConfig(design="qemu-10.1"), two_devices_populate_failure(), backend)
    o = result.outcome
    assert (o.kind, o.invariant, o.op_index) == ("violation", "shared-unmapped", 2)
    kinds = {v.invariant for v in o.violations}
    assert kinds == {"shared-unmapped", "atomic-failure"}
    assert "vfio0: gpa 0x2000 not mapped" in o.detail and "vfio1" not in o.detail
    assert result.world.vm_stopped == -ENOMEM


def test_rdm_rollback_fixes_listeners_not_bitmap(backend):
    result = run(WorldConfig(design="rdm-rollback"), two_devices_populate_failure(), backend)
    o = result.outcome
    assert o.invariant == "shared-unmapped"
    # Both listeners rolled back: they agree with each other ...
    assert "vfio0: gpa 0x2000" in o.detail and "vfio1: gpa 0x2000" in o.detail
    atomic = next(v for v in o.violations if v.invariant == "atomic-failure")
    # ... but the bitmap and KVM's attribute still say shared.
    assert atomic.items == ["kvm private", "bitmaps"]


def test_hardened_populate_failure_is_atomic(backend):
    ops = two_devices_populate_failure() + [op("device_dma", 1, 0x2000, BS, True)]
    result = run(WorldConfig(design="hardened"), ops, backend)
    assert result.outcome.kind == "ok"
    assert result.steps[2].result == -ENOMEM
    assert result.world.vm_stopped is None
    assert result.steps[3].result == 1  # the page is private again: the DMA faults


# -- dma_entry_limit -----------------------------------------------------------------------------

def big_guest(design, iommu, pages, **kw):
    return WorldConfig(design=design, iommu=iommu, ram=(RamSpec(0, pages * BS),), **kw)


def limit_workload(pages):
    return [op("kvm_convert_memory", 0, pages * BS, SHARED), op("vfio_register", 0, 0, pages * BS)]


@pytest.mark.slow
def test_dma_entry_limit_type1_fails_iommufd_passes():
    """A guest whose shared memory needs more 4 KiB mappings than type1's default
    dma_entry_limit (65535) allows: QEMU 10.1 exits when the replay fails with -ENOSPC;
    the same workload on iommufd maps every page."""
    pages = 65535 + 64
    cfg = big_guest("qemu-10.1", "type1", pages, max_memslots=0)
    result = run(cfg, limit_workload(pages), "cy", differential=False)
    assert result.steps[1].result == -ENOSPC
    assert result.outcome.kind in ("vm_stopped", "violation")
    assert result.world.vm_stopped == -ENOSPC
    ok = run(cfg.with_(iommu="iommufd"), limit_workload(pages), "cy", differential=False)
    assert ok.outcome.kind == "ok"
    (device, container), = ok.world.containers()
    assert container.count == pages


@pytest.mark.parametrize("design,expect", [("qemu-10.1", "exit"), ("hardened", "refused")])
def test_dma_entry_limit_small(backend, design, expect):
    """The same exhaustion at a small limit: ENOSPC at exactly limit + 1 mappings."""
    cfg = big_guest(design, "type1", 24, dma_entry_limit=16, max_memslots=0)
    result = run(cfg, limit_workload(17), backend)
    assert result.steps[1].result == -ENOSPC
    if expect == "exit":
        assert result.world.vm_stopped == -ENOSPC
    else:
        assert result.outcome.kind == "ok" and not result.world.devices
    fits = run(cfg, limit_workload(16), backend)
    assert fits.steps[1].result == 0 and fits.outcome.kind == "ok"
    assert run(cfg.with_(iommu="iommufd"), limit_workload(24), backend).outcome.kind == "ok"


@pytest.mark.parametrize("design,refused", [("qemu-10.1", False), ("hardened", True)])
def test_budget_check_refuses_or_warns(backend, design, refused):
    """QEMU's dma_max_mappings check: section mappings + memslots - listeners > limit.
    10.1 only warns (the device is added); since 2025 QEMU refuses the device."""
    cfg = WorldConfig(design=design, dma_entry_limit=64, max_memslots=60)
    result = run(cfg, [op("vfio_register", 0, 0, 0x10000)], backend)
    events = [e for e in result.steps[0].events if isinstance(e, Budget)]
    assert events and ("refused" in events[0].message) == refused
    assert (result.steps[0].result == -ENOSPC) == refused
    assert bool(result.world.devices) != refused


# -- each invariant fires, and not on hardened -------------------------------------------------

def crossing_conversion():
    # Block 0 ends at 0x8000 and a gap follows: the range crosses the block end.
    return [op("vfio_register", 0, 0, 0x8000),
            op("kvm_convert_memory", 0x7000, 0x2000, SHARED)]


def test_attr_agree_fires_on_qemu_10_1_crossing_conversion(backend):
    """kvm_convert_memory() does not clip size to the section: KVM's attributes change,
    then state_change fails with -EINVAL and the VM stops."""
    result = run(WorldConfig(design="qemu-10.1", ram=X86_LAYOUT), crossing_conversion(), backend)
    o = result.outcome
    assert o.op_index == 1 and result.world.vm_stopped == -EINVAL
    attr = next(v for v in o.violations if v.invariant == "attr-agree")
    assert "gpa 0x7000 bitmap private kvm shared" in attr.detail
    # The shared page is not mapped either: the device would fault on it.
    assert o.invariant == "shared-unmapped"


def test_hardened_refuses_crossing_conversion(backend):
    result = run(WorldConfig(design="hardened", ram=X86_LAYOUT), crossing_conversion(), backend)
    assert result.outcome.kind == "ok" and result.steps[1].result == -EINVAL


def test_conversion_spanning_two_blocks_hardened(backend):
    """Two adjacent RAM blocks: hardened converts both halves, atomically."""
    ram = (RamSpec(0, 0x4000), RamSpec(0x4000, 0x4000))
    ops = [op("vfio_register", 0, 0, 0x8000),
           op("kvm_convert_memory", 0x2000, 0x4000, SHARED),
           op("kvm_convert_memory", 0x0, 0x8000, SHARED,
              fault=fault("vfio.dma_map", ENOMEM, 3))]
    result = run(WorldConfig(design="hardened", ram=ram), ops, backend)
    assert result.outcome.kind == "ok"
    assert result.steps[1].result == 0 and result.steps[2].result == -ENOMEM
    bits = [b.attr.bitmap.set_bits() for b in result.world.blocks]
    assert bits == [[2, 3], [0, 1]]


def test_private_dma_fires_on_crafted_state(backend):
    """In-place: a mapping that survives its page going private reaches private memory."""
    world = World(WorldConfig(design="inplace"), backend)
    world.begin_op(0, None)
    world.dispatch(op("vfio_register", 0, 0, 0x10000))
    world.dispatch(op("kvm_convert_memory", 0x3000, BS, SHARED))
    assert not oracle.check(world)
    world.kvm.private.add(0x3)  # the attribute flips behind VFIO's back
    assert [v.invariant for v in oracle.check(world)] == ["private-dma", "attr-agree"]


def test_inplace_refuses_private_while_pinned(backend):
    """KVM_SET_MEMORY_ATTRIBUTES2 on guest_memfd: -EAGAIN while a page is pinned; the
    in-place design unmaps first, so its conversion succeeds."""
    world = World(WorldConfig(design="inplace"), backend)
    world.begin_op(0, None)
    world.dispatch(op("vfio_register", 0, 0, 0x10000))
    world.dispatch(op("kvm_convert_memory", 0x3000, BS, SHARED))
    assert world.kvm_set_memory_attributes(0x3000, BS, True) == -11  # -EAGAIN
    assert world.dispatch(op("kvm_convert_memory", 0x3000, BS, PRIVATE)) == 0
    assert not oracle.check(world)


def test_dma_accounting_fires_on_crafted_state():
    world = World(WorldConfig(design="hardened"), "pure")
    world.begin_op(0, None)
    world.dispatch(op("vfio_register", 0, 0, 0x10000))
    assert not oracle.check_accounting(world)
    world.vfio_devices()[0].container.dma_avail -= 1
    assert oracle.check_accounting(world)[0].invariant == "dma-accounting"


def test_data_integrity_fires_when_dma_hits_a_stale_frame(backend):
    result = run(WorldConfig(design="uncoordinated"), seed_sequence(), backend,
                 stop_at_violation=False)
    last = result.steps[-1]
    assert "data-integrity" in {v.invariant for v in last.violations}
    hardened = run(WorldConfig(design="hardened"), seed_sequence(), backend)
    assert hardened.outcome.kind == "ok"


def test_differential_fires_on_a_planted_model_bug(backend, monkeypatch):
    from rig.check import model

    original = model.ModelVfioListener.notify_populate

    def off_by_one(self, section):  # the model maps one granule too few
        from rig.core.types import MemoryRegionSection
        if section.size > self.granularity:
            section = MemoryRegionSection(section.offset_within_region,
                                          section.size - self.granularity,
                                          section.offset_within_address_space)
        return original(self, section)

    monkeypatch.setattr(model.ModelVfioListener, "notify_populate", off_by_one)
    ops = [op("vfio_register", 0, 0, 0x10000), op("kvm_convert_memory", 0, 0x3000, SHARED)]
    result = run(WorldConfig(design="hardened"), ops, backend)
    assert result.outcome.invariant == "differential" and result.outcome.op_index == 1


def test_generic_listener_refusal(backend):
    """listener.notify_populate: a non-VFIO listener refuses; 10.1 leaves it behind the
    bitmap, hardened converts back."""
    ops = [op("listener_register", 0, 0, 0x10000),
           op("kvm_convert_memory", 0x4000, BS, SHARED,
              fault=fault("listener.notify_populate", ENOMEM))]
    bad = run(WorldConfig(design="qemu-10.1"), ops, backend)
    assert bad.outcome.invariant == "shared-unmapped" and "rdl0" in bad.outcome.detail
    good = run(WorldConfig(design="hardened"), ops, backend)
    assert good.outcome.kind == "ok" and good.steps[1].result == -ENOMEM


# -- interleavings -----------------------------------------------------------------------------

def replay_race():
    """A conversion lands after the 1st notification of a hot-plug's replay: the new
    listener is already on the list, so the conversion maps block 4 into it, and the
    replay then maps it again (-EEXIST): VFIO's rollback unmaps the valid mapping too."""
    return [
        op("kvm_convert_memory", 0x0, BS, SHARED),
        op("kvm_convert_memory", 0x3000, BS, SHARED),
        op("vfio_register", 0, 0, 0x10000,
           interleave=(1, op("kvm_convert_memory", 0x4000, BS, SHARED))),
    ]


def test_interleaved_conversion_double_populates_on_qemu(backend):
    result = run(WorldConfig(design="rdm-rollback"), replay_race(), backend)
    step = result.steps[2]
    assert [type(e) for e in step.events][:1] == [Interleave]
    assert result.outcome.invariant == "shared-unmapped"
    assert "gpa 0x3000" in result.outcome.detail and "gpa 0x4000" in result.outcome.detail
    qemu = run(WorldConfig(design="qemu-10.1"), replay_race(), backend)
    assert qemu.steps[2].result == -EEXIST and qemu.world.vm_stopped == -EEXIST


def test_hardened_serializes_hotplug_and_conversion(backend):
    result = run(WorldConfig(design="hardened"), replay_race(), backend)
    assert result.outcome.kind == "ok"
    (device, container), = result.world.containers()
    assert [m.iova for m in container.mappings()] == [0x0, 0x3000, 0x4000]


# -- outcomes and config -----------------------------------------------------------------------

def test_vm_stop_without_violation(backend):
    """An unaligned conversion: -EINVAL before anything changes; QEMU stops the VM."""
    ops = [op("kvm_convert_memory", 0x2800, BS, SHARED), op("guest_touch", 0)]
    result = run(WorldConfig(design="qemu-10.1"), ops, backend)
    assert (result.outcome.kind, result.outcome.errno, result.outcome.op_index) == \
        ("vm_stopped", -EINVAL, 0)
    assert len(result.steps) == 1
    assert run(WorldConfig(design="hardened"), ops, backend).outcome.kind == "ok"


def test_hugetlb_shared_memory_is_not_discarded(backend):
    cfg = WorldConfig(design="qemu-10.1", hugetlb=True, ram=(RamSpec(0, 0x400000),))
    ops = [op("vfio_register", 0, 0, 0x400000),
           op("kvm_convert_memory", 0, 0x200000, SHARED),
           op("guest_touch", 0x1000),
           op("kvm_convert_memory", 0, 0x200000, PRIVATE),
           op("device_dma", 0, 0x1000, BS, True)]
    result = run(cfg, ops, backend)
    assert result.outcome.kind == "ok"
    assert result.world.blocks[0].memfd.backed(0x1000)  # kept, as QEMU does for hugetlb
    assert result.steps[-1].result == 1  # unmapped by the listener: the DMA faults


@pytest.mark.parametrize("field,value,message", [
    ("design", "nope", "design: unknown design"),
    ("block_size", 0x1800, "block_size: 0x1800 is not a power of two"),
    ("ram", (RamSpec(0, 0),), "ram: block 0"),
    ("ram", (RamSpec(0x1000, 0x1000), RamSpec(0, 0x1000)), "overlaps or precedes"),
    ("iommu", "smmu", "iommu:"),
    ("faults", "fail_nth", "fail_nth: must be >= 1"),
])
def test_impossible_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**{field: value}).validate()


#: name -> id of every design, pinned: the byte decoder picks a design by its id
#: (rig.trace.decode.pick_id) and reports list designs in id order.  A new design appends
#: its line here; no line ever changes.
DESIGN_IDS = {
    "uncoordinated": 0,
    "keep-shared": 1,
    "qemu-10.1": 2,
    "rdm-rollback": 3,
    "hardened": 4,
    "inplace": 5,
}


def test_every_design_registered_with_a_contract():
    # BUILT_IN: DESIGNS also holds what a test of this worker loaded (mutants, designs of
    # one's own), which have no id.
    assert {name: cls.id for name, cls in BUILT_IN.items()} == DESIGN_IDS
    assert [cls.id for cls in BUILT_IN.values()] == sorted(DESIGN_IDS.values())
    for cls in BUILT_IN.values():
        assert "Contract" in cls.__doc__ and "Expected verdict" in cls.__doc__


def test_the_design_registry_refuses_a_missing_or_reused_id_or_name():
    from rig.world.designs import by_id
    from rig.world.designs.base import Design

    def design(name, **attrs):
        return type(name.title().replace("-", ""), (Design,), {"name": name, **attrs})

    a, b = design("a", id=0), design("b", id=1)
    assert list(by_id([b, a])) == ["a", "b"]  # id order, not discovery order
    with pytest.raises(ValueError, match="'c' .* must set its own id.*next free one is 2"):
        by_id([a, b, design("c")])
    with pytest.raises(ValueError, match="'c' .*id 1 is already 'b'.s"):
        by_id([a, b, design("c", id=1)])
    with pytest.raises(ValueError, match="name 'a' is taken twice"):
        by_id([a, b, design("a", id=2)])
    with pytest.raises(ValueError, match="must set its own id"):
        by_id([a, design("c", id=True)])


def test_runs_are_deterministic_across_backends():
    ops = seed_sequence() + two_devices_populate_failure()[1:]
    results = [run(WorldConfig(design="qemu-10.1"), ops, b, stop_at_violation=False)
               for b in BACKENDS for _ in range(2)]
    rendered = {repr([(s.result, s.faults, s.events, [str(v) for v in s.violations])
                      for s in r.steps]) for r in results}
    assert len(rendered) == 1


def test_replay_walks_the_live_bitmap_like_qemu(backend):
    """Found by `rig fuzz`: a conversion interleaved into a registration replay.  QEMU's
    for_each_populated_section finds each run on the live bitmap, so the blocks the
    conversion shared are replayed into the new listener too (it is told twice); the
    model used to snapshot the runs first and disagreed (a `differential` violation)."""
    ops = [op("kvm_convert_memory", 0x0, BS, SHARED),
           op("listener_register", 0, 0x0, 0x8000,
              interleave=(1, op("kvm_convert_memory", 0x4000, 0x3000, SHARED)))]
    result = run(WorldConfig(design="uncoordinated", ram=(RamSpec(0, 0x8000),)), ops, backend)
    assert result.outcome.kind == "ok"
    calls = [(c[2], c[3][:2]) for c in result.world.listener_log]
    assert calls == [("populate", (0x0, BS)), ("populate", (0x4000, 0x3000)),
                     ("populate", (0x4000, 0x3000))]


def test_failed_interleaved_conversion_stops_the_vm(backend):
    """A racing vCPU's conversion that fails stops the VM on QEMU designs, as a failed
    top-level conversion does (found by the state-machine harness's author)."""
    conv = op("kvm_convert_memory", 0x2800, BS, SHARED)  # unaligned: -EINVAL
    ops = [op("vfio_register", 0, 0, 0x10000, interleave=(1, conv)), op("guest_touch", 0)]
    result = run(WorldConfig(design="qemu-10.1"), ops, backend)
    assert (result.outcome.kind, result.outcome.errno) == ("vm_stopped", -EINVAL)
    assert len(result.steps) == 1
    assert run(WorldConfig(design="hardened"), ops, backend).outcome.kind == "ok"


def _attr_agree_by_page_walk(world):
    """attr-agree as docs/semantics.md 4.1 states it, one page at a time: the spec the
    oracle's set algebra must match."""
    items = []
    bs = world.config.block_size
    for block in world.blocks:
        bits = set(block.attr.bitmap.set_bits())
        for nr in range(block.size // bs):
            gpa = block.gpa + nr * bs
            private = [world.kvm.is_private(gpa + o) for o in range(0, bs, 0x1000)]
            shared_bit = nr in bits
            if shared_bit and any(private) or not shared_bit and not all(private):
                kvm = "private" if all(private) else "shared" if not any(private) else "mixed"
                items.append(f"gpa 0x{gpa:x} bitmap {'shared' if shared_bit else 'private'}"
                             f" kvm {kvm}")
    return items


@pytest.mark.parametrize("design", ["qemu-10.1", "uncoordinated", "hardened"])
def test_attr_agree_matches_a_page_walk(design):
    """On every state of decoded runs (one- and two-page blocks, hugetlb, crossing and
    unaligned conversions): the same blocks, in the same words, as a page walk."""
    import random

    from rig.check.session import Session
    from rig.drive.harnesses import harness_for

    harness, rng, fired = harness_for("convert", design), random.Random(11), 0
    for _ in range(150):
        trace = harness.to_trace(bytes(rng.randrange(256) for _ in range(rng.randrange(20, 200))))
        session = Session(trace.config, differential=False)
        for o in trace.ops:
            session.step(o, stop_at_violation=False)
            got = [item for v in oracle.check_attributes(session.world) for item in v.items]
            assert got == _attr_agree_by_page_walk(session.world), serialize(trace)
            fired += bool(got)
    assert fired or design == "hardened"
