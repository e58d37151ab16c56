"""rig.check.statehash: the canonical digest ``rig explore`` deduplicates states by.

- Soundness: random short op sequences (the convert_explicit decoder, seeded) on small
  worlds of every built-in design, grouped by the digest of their end state; in every
  group of two or more different sequences, the same random continuations run after each
  member must do the same, op by op (result, events, violations, with frames and tags
  renamed by the prefix's canonical labels), stop the same way, and end on one digest.
- Completeness: two worlds that differ in exactly one component (a bitmap bit, a KVM
  attribute, a mapping, a pin, a listener, a device, backed vs hole, a device's data,
  ...) get different digests; each case first checks that the two worlds had one digest
  before the change, so it is the component that tells them apart.
- Canonical: sequences that reach the same state with other frame and tag numbers (a
  page converted shared, private and shared again vs once; two pages touched in either
  order) get one digest; on hugetlb, where tags are compared by order, a renaming that
  does not keep their order is another state.
- Backends: a sequence's digest is the same on the Cython core and the pure-Python twin.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

import pytest

from rig.check.session import Session
from rig.core.types import MemoryRegionSection
from rig.check.statehash import WORLD_ATTRIBUTES, canonical, state_digest
from rig.trace.decode import DecodeOptions, decode_ops
from rig.world.config import X86_LAYOUT, RamSpec, WorldConfig
from rig.world.designs import BUILT_IN
from rig.world.ops import op

from tests.conftest import BACKENDS

BACKEND = BACKENDS[0]  # cy, unless RIG_PUREPYTHON=1
TINY = (RamSpec(0x0, 0x4000),)
LAYOUTS = {"tiny": TINY, "x86": X86_LAYOUT}
EXPLICIT = DecodeOptions(faults="explicit")

#: Prefixes per (design, layout), and continuations per group.  The pure twin is several
#: times slower: fewer prefixes there, still well over the groups asserted below.
PREFIXES = 1500 if BACKEND == "cy" else 600
CONTINUATIONS = 3
MEMBERS = 3            # members of a group that run the continuations
#: Groups of two or more different sequences each (design, layout) must give at least.
MIN_GROUPS = {"tiny": 40, "x86": 60} if BACKEND == "cy" else {"tiny": 20, "x86": 30}


def _ops(rng: random.Random, config: WorldConfig, most: int) -> list:
    data = rng.randbytes(rng.randint(3, 40))
    return decode_ops(data, config, EXPLICIT)[:rng.randint(1, most)]


def _session(config: WorldConfig, ops, backend: str = BACKEND) -> Session:
    """A session after ``ops``, run past violations (their state is a state too), up to
    a VM stop."""
    session = Session(config, backend)
    for o in ops:
        session.step(o, stop_at_violation=False)
        if session.world.vm_stopped is not None:
            break
    return session


class Renamer:
    """Frame ids and tags in the text of what a continuation reports, renamed: an id or
    tag the prefix left by its canonical label, a newer one by its distance from the
    counter the prefix left (both worlds then hand out the same sequence)."""

    def __init__(self, session: Session):
        world = session.world
        canon = canonical(world)
        self.frames, self.tags = canon.frames, canon.tags
        self.next_frame = world.frames.next_id
        self.tag = world.tag
        self.log = len(world.listener_log)
        self.shadow_log = len(session.shadow.listener_log)

    def frame(self, m) -> str:
        n = int(m.group(1))
        if n in self.frames:
            return f"#F{self.frames[n]}"
        return f"#N{n - self.next_frame}" if n >= self.next_frame else f"#STALE{n}"

    def tag_of(self, n: int) -> str:
        if n == 0:
            return "0"
        if n in self.tags:
            return f"T{self.tags[n]}"
        return f"U{n - self.tag}" if n > self.tag else f"STALE{n}"

    def text(self, text: str) -> str:
        text = re.sub(r"#(\d+)", self.frame, text)
        text = re.sub(r"tag (\d+), guest reads (\d+)", lambda m: (
            f"tag {self.tag_of(int(m.group(1)))}, guest reads {self.tag_of(int(m.group(2)))}"),
            text)
        return re.sub(r"listener calls (\d+) vs model (\d+)", lambda m: (
            f"listener calls +{int(m.group(1)) - self.log} vs model "
            f"+{int(m.group(2)) - self.shadow_log}"), text)

    def violation(self, v) -> tuple:
        items = tuple(self.text(str(i)) for i in v.items)
        if v.invariant == "pin-leak" and "dropped by their file" in v.detail:
            # Listed by frame id: the one place id order shows (the module docstring).
            return v.invariant, self.text(v.detail.split(": ")[0]), tuple(sorted(items))
        return v.invariant, self.text(v.detail), items


def _continue(config: WorldConfig, prefix, continuation) -> tuple:
    """What ``continuation`` does after ``prefix``: every step, how it ended, the digest."""
    session = _session(config, prefix)
    rename = Renamer(session)
    start = len(session.steps)
    steps, first = [], None
    for o in continuation:
        step = session.step(o, stop_at_violation=False)
        index = step.index - start
        violations = [rename.violation(v) for v in step.violations]
        steps.append((index, repr(step.result), [str(e) for e in step.faults + step.events],
                      violations))
        if violations and first is None:
            first = ("violation", violations[0][0], index)
        if session.world.vm_stopped is not None:
            first = first or ("vm_stopped", session.world.vm_stopped, index)
            break
    return steps, first or ("ok",), state_digest(session.world)


def _groups(config: WorldConfig, rng: random.Random) -> dict:
    """digest -> the different sequences (as text) reaching it, and one list of ops each."""
    groups: dict = defaultdict(dict)
    for _ in range(PREFIXES):
        ops = _ops(rng, config, 4)
        session = _session(config, ops)
        if session.world.vm_stopped is not None:
            continue  # a stopped VM ends the run: nothing continues from there
        groups[state_digest(session.world)].setdefault(tuple(map(str, ops)), ops)
    return {d: list(seqs.values()) for d, seqs in groups.items() if len(seqs) > 1}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("design", list(BUILT_IN))
def test_equal_digests_behave_the_same(design, layout):
    config = WorldConfig(design=design, ram=LAYOUTS[layout])
    rng = random.Random(f"statehash/{design}/{layout}")
    groups = _groups(config, rng)
    assert len(groups) >= MIN_GROUPS[layout], (
        f"only {len(groups)} groups of >1 sequence: the test would prove little")
    for digest in sorted(groups):
        members = groups[digest][:MEMBERS]
        for _ in range(CONTINUATIONS):
            continuation = _ops(rng, config, 6)
            seen = [_continue(config, prefix, continuation) for prefix in members]
            for prefix, got in zip(members[1:], seen[1:]):
                assert got == seen[0], (
                    f"{design}/{layout}: prefixes {list(map(str, members[0]))} and "
                    f"{list(map(str, prefix))} share digest {digest[:12]} but "
                    f"{list(map(str, continuation))} tells them apart")


# -- completeness: one component at a time ------------------------------------------------

def _container(world, dev=0):
    return world.devices[("vfio", dev)].container


def _set_bit(world):
    world.blocks[0].attr.bitmap.set_bit(3)


def _kvm_private(world):
    world.kvm.private.discard(3)


def _kvm_elsewhere(world):
    world.kvm.elsewhere.add(0x100, 0x101)


def _move_mapping(world):
    """The mapping of page 0 moved to IOVA 0x3000, still on page 0's frame: pins,
    locked_vm, dma_avail and the count stay."""
    c, block = _container(world), world.blocks[0]
    assert c.unmap_dma(0x0, 0x1000) == 0x1000
    assert c.map_dma(0x3000, 0x1000, block.vaddr, False) == 0


def _readonly_mapping(world):
    c, block = _container(world), world.blocks[0]
    assert c.unmap_dma(0x0, 0x1000) == 0x1000
    assert c.map_dma(0x0, 0x1000, block.vaddr, True) == 0


def _swap_frames(world):
    """Pages 0 and 1 mapped crosswise: each frame keeps its one pin, only what each
    mapping points at changes."""
    c, block = _container(world), world.blocks[0]
    assert c.unmap_dma(0x0, 0x2000) == 0x2000
    assert c.map_dma(0x0, 0x1000, block.vaddr + 0x1000, False) == 0
    assert c.map_dma(0x1000, 0x1000, block.vaddr, False) == 0


def _frame(world, gpa=0x0):
    return world.blocks[0].memfd.frame_at(gpa)


def _extra_pin(world):
    _frame(world).pins += 1


def _locked_vm(world):
    world.pinner.locked_vm += 1


def _back_hole(world):
    world.blocks[0].memfd.touch(0x3000)


def _lost_write(world):
    _frame(world).data = 0


def _forget_expected(world):
    world.expected_data.clear()


def _drop_device(world):
    """The device forgotten, its listener left on the list (an orphan)."""
    del world.devices[("vfio", 0)]


def _device_range(world):
    world.devices[("vfio", 0)].size = 0x2000


def _orphan_listener(section):
    def mutate(world):
        block = world.blocks[0]
        rdl = world.new_generic_listener(7, block)
        assert block.attr.register_listener(rdl, section) == 0
    return mutate


def _populated(world):
    world.devices[("rdl", 0)].listeners[0][1].populated.discard(0)


def _unhook(world):
    _container(world).fault_hook = None


def _dma_avail(world):
    _container(world).dma_avail -= 1


def _stop(world):
    world.vm_stopped = -12


def _design_state(world):
    world.design.pending = 1


def _plan_counted(world):
    world.plan.eligible += 1


PLUGGED = [op("vfio_register", 0, 0x0, 0x4000),
           op("kvm_convert_memory", 0x0, 0x2000, False)]
WRITTEN = PLUGGED + [op("device_dma", 0, 0x0, 0x1000, True)]
LISTENER = [op("listener_register", 0, 0x0, 0x4000),
            op("kvm_convert_memory", 0x0, 0x2000, False)]
SECTION_A = MemoryRegionSection(0x0, 0x1000, 0x0)
SECTION_B = MemoryRegionSection(0x1000, 0x1000, 0x1000)

#: name -> (ops, change): the change alters exactly one component of the world the ops
#: leave (``None`` for ``ops``: a component the pair of sequences below differs in).
CASES = {
    "bitmap bit": (PLUGGED, _set_bit),
    "kvm private page": (PLUGGED, _kvm_private),
    "kvm attribute outside RAM": (PLUGGED, _kvm_elsewhere),
    "mapping iova": (PLUGGED, _move_mapping),
    "mapping readonly": (PLUGGED, _readonly_mapping),
    "frames a mapping points at": (PLUGGED, _swap_frames),
    "pin count": (PLUGGED, _extra_pin),
    "locked_vm": (PLUGGED, _locked_vm),
    "backed vs hole": (PLUGGED, _back_hole),
    "frame data": (WRITTEN, _lost_write),
    "expected data": (WRITTEN, _forget_expected),
    "device": (PLUGGED, _drop_device),
    "device range": (PLUGGED, _device_range),
    "listener section": ([], _orphan_listener(SECTION_A)),
    "generic listener populated": (LISTENER, _populated),
    "container fault hook": (PLUGGED, _unhook),
    "dma_avail": (PLUGGED, _dma_avail),
    "vm stopped": (PLUGGED, _stop),
    "design state": (PLUGGED, _design_state),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_one_component_changes_the_digest(name, backend):
    ops, change = CASES[name]
    config = WorldConfig(ram=TINY)
    a, b = _session(config, ops, backend).world, _session(config, ops, backend).world
    assert state_digest(a) == state_digest(b)
    if name == "dma_avail" and backend == "cy":
        pytest.skip("the Cython core's dma_avail is read-only: only the twin can change "
                    "it alone (with the mapping count, it is covered on both)")
    if name == "listener section":
        _orphan_listener(SECTION_B)(a)
    change(b)
    assert state_digest(a) != state_digest(b)


def test_fault_plan_state_changes_the_digest():
    config = WorldConfig(ram=TINY, faults="fail_nth", fail_nth=50)
    a, b = _session(config, PLUGGED).world, _session(config, PLUGGED).world
    assert state_digest(a) == state_digest(b)
    _plan_counted(b)
    assert state_digest(a) != state_digest(b)


#: Pairs of sequences whose end states differ in one thing.
PAIRS = {
    # Head insertion: the same two listeners, in the other notification order.
    "listener order": ([op("listener_register", 0, 0x0, 0x4000),
                        op("listener_register", 1, 0x0, 0x4000)],
                       [op("listener_register", 1, 0x0, 0x4000),
                        op("listener_register", 0, 0x0, 0x4000)]),
    "which page is backed": ([op("guest_touch", 0x0)], [op("guest_touch", 0x1000)]),
    "a listener": (PLUGGED, [op("listener_register", 0, 0x0, 0x4000)] + PLUGGED),
    "data written by a device": (PLUGGED + [op("device_dma", 0, 0x0, 0x1000, False)], WRITTEN),
    "a device": ([op("kvm_convert_memory", 0x0, 0x2000, False)],
                 [op("kvm_convert_memory", 0x0, 0x2000, False),
                  op("vfio_register", 0, 0x0, 0x4000)]),
    "the design": (PLUGGED, PLUGGED),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_sequences_that_differ_get_different_digests(name):
    first, second = PAIRS[name]
    config = WorldConfig(ram=TINY)
    other = config.with_(design="rdm-rollback") if name == "the design" else config
    assert state_digest(_session(config, first).world) != \
        state_digest(_session(other, second).world)


def test_every_world_attribute_is_classified():
    world = Session(WorldConfig(ram=TINY)).world
    assert set(vars(world)) == set(WORLD_ATTRIBUTES)
    world.surprise = 1
    with pytest.raises(TypeError, match="surprise"):
        state_digest(world)


def test_design_state_that_cannot_be_canonicalized_is_refused():
    world = Session(WorldConfig(ram=TINY)).world
    world.design.pending = object()
    with pytest.raises(TypeError, match="pending"):
        state_digest(world)


# -- canonical: renamings are the same state ----------------------------------------------

SHARED = op("kvm_convert_memory", 0x0, 0x1000, False)
PRIVATE = op("kvm_convert_memory", 0x0, 0x1000, True)
PLUG = op("vfio_register", 0, 0x0, 0x4000)
TOUCH0, TOUCH1 = op("guest_touch", 0x0), op("guest_touch", 0x1000)

RENAMED = {
    # Page 0's frame is punched and a new one pinned: same state, another frame id.
    "shared, private, shared again vs once": ([PLUG, SHARED], [PLUG, SHARED, PRIVATE, SHARED]),
    # Two guest writes to one page: the second tag replaces the first.
    "a page written twice vs once": ([TOUCH0], [TOUCH0, TOUCH0]),
    # Frames and tags allocated in the other order.
    "two pages touched in either order": ([TOUCH0, TOUCH1], [TOUCH1, TOUCH0]),
}


@pytest.mark.parametrize("design", ["hardened", "qemu-10.1"])
@pytest.mark.parametrize("name", list(RENAMED))
def test_renamed_frames_and_tags_are_one_state(name, design):
    first, second = RENAMED[name]
    config = WorldConfig(design=design, ram=TINY)
    a, b = _session(config, first).world, _session(config, second).world
    raw = lambda w: sorted((f.file.name, f.index, f.id, f.data)  # noqa: E731
                           for f in w.frames.frames.values())
    assert raw(a) != raw(b), "the pair must differ in frame ids or tags, or it tests nothing"
    assert state_digest(a) == state_digest(b)


def test_hugetlb_keeps_the_order_of_tags():
    """On hugetlb a 2 MiB frame holds the newest tag of all its 4 KiB pages, and a tag
    newer than the one expected is no lost write: order matters there, so a frame holding
    a newer tag and one holding an older one are two states (with the same oracle they
    get different verdicts), although first-appearance labels would make them one."""
    from rig.check import oracle

    config = WorldConfig(ram=(RamSpec(0x0, 0x200000),), hugetlb=True)
    ops = [op("vfio_register", 0, 0x0, 0x200000),
           op("kvm_convert_memory", 0x0, 0x2000, False),
           op("guest_touch", 0x1000),
           op("device_dma", 0, 0x0, 0x1000, True)]
    a, b = _session(config, ops).world, _session(config, ops).world
    tag = a.expected_data[0x0]
    _frame(a).data, _frame(b).data = tag + 1, tag - 1   # newer / older (the touch's)
    assert not oracle.check_data(a) and oracle.check_data(b)
    assert state_digest(a) != state_digest(b)


# -- backends -------------------------------------------------------------------------------

@pytest.mark.skipif("cy" not in BACKENDS,
                    reason="RIG_PUREPYTHON=1: the suite runs on the twin alone")
@pytest.mark.parametrize("design", list(BUILT_IN))
def test_cython_core_and_twin_give_one_digest(design):
    config = WorldConfig(design=design, ram=TINY)
    rng = random.Random(f"statehash/backends/{design}")
    for _ in range(60):
        ops = _ops(rng, config, 6)
        assert state_digest(_session(config, ops, "cy").world) == \
            state_digest(_session(config, ops, "pure").world), list(map(str, ops))
