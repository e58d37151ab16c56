"""Listener lists under re-entrancy: a callback that registers or unregisters listeners.

QEMU walks its QLIST with QLIST_FOREACH: the next element is read from the current one
after its callback returns, removal goes through ``le_prev`` (always current), an element
inserted at the head during a walk is not visited, and the rollback walk of
``ram_discard_manager_notify_populate`` ends at the failing listener or at NULL.  The
Cython core, the pure twin and the reference model must all behave exactly so.  Each
reproducer below is from issue 9 (an outside check against QEMU's own C) and failed on
the code before it: a segfault (Cython), a lost listener (Cython, model), a listener
notified twice (twin, model).
"""

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.check import differential
from rig.core import load_backend
from rig.core.types import MemoryRegionSection as S
from rig.check.differential import CoreConfig
from rig.errors import ENOMEM
from rig.check.model import ModelRamBlockAttributes, ModelRamDiscardListener

from tests.conftest import BACKENDS

IMPLS = tuple(BACKENDS) + ("model",)
REGION = 0x10000
BS = 0x1000


def make(impl, rollback):
    """(manager, Listener class) on one implementation; listeners log every call and
    can run a hook from inside their next callback."""
    if impl == "model":
        rba, base = ModelRamBlockAttributes(REGION, BS, rollback), ModelRamDiscardListener
    else:
        b = load_backend(impl)
        rba, base = b.RamBlockAttributes(REGION, BS, rollback), b.RamDiscardListener

    class L(base):
        def __init__(self, name, log, double_discard=True):
            super().__init__()
            self.name = name
            self.log = log
            self.double_discard_supported = double_discard
            self.fail_next = 0
            self.hooks = {}  # callback number -> fn

        def _call(self, kind, section, ret=0):
            self.log.append((self.name, kind, section[0], section[1], ret))
            hook = self.hooks.pop(sum(1 for e in self.log if e[0] == self.name), None)
            if hook is not None:
                hook()

        def notify_populate(self, section):
            ret, self.fail_next = self.fail_next, 0
            self._call("populate", section, ret)
            return ret

        def notify_discard(self, section):
            self._call("discard", section)

    return rba, L


def names(rba):
    return [r.name for r in rba.listeners()]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rollback", ["listeners", "full", "sources"])
def test_rollback_walk_ends_at_null_when_the_failing_listener_is_gone(impl, rollback):
    """ram_discard_manager_notify_populate(): L0 fails its populate; from inside L1's 2nd
    callback (its rollback discard) L0 is unregistered.  The rollback walk goes on
    through L1's next, which is NULL now, and ends.  Cython used to walk ``done.next``
    until it met L0, which was no longer on the list, and dereferenced None (exit 139)."""
    log = []
    rba, L = make(impl, rollback)
    l0, l1 = L("L0", log), L("L1", log)
    assert rba.register_listener(l0, S(0, REGION, 0)) == 0
    assert rba.register_listener(l1, S(0, REGION, 0)) == 0
    l0.fail_next = -ENOMEM
    l1.hooks[2] = lambda: rba.unregister_listener(l0)
    assert rba.state_change(0x2000, BS, False) == -ENOMEM
    assert names(rba) == ["L1"]
    expected = [("L1", "populate", 0x2000, BS, 0),
                ("L0", "populate", 0x2000, BS, -ENOMEM),
                ("L1", "discard", 0x2000, BS, 0),
                ("L0", "discard", 0, REGION, 0)]  # its unregistration, from the hook
    assert log == expected
    assert rba.bitmap.test_bit(2) == (rollback != "full")


def test_rollback_walk_does_not_crash_the_cython_core():
    """The same reproducer in a fresh interpreter, so a segfault fails this test instead
    of killing a pytest-xdist worker."""
    pytest.importorskip("rig.core.cy.ram_block_attributes")
    code = textwrap.dedent("""
        from rig.core import load_backend
        from rig.core.types import MemoryRegionSection as S
        b = load_backend("cy")
        rba = b.RamBlockAttributes(0x10000, 0x1000, "listeners")
        class L(b.RamDiscardListener):
            def __init__(self):
                super().__init__(); self.double_discard_supported = True
                self.fail = 0; self.calls = 0; self.hook = None
            def notify_populate(self, s):
                self.calls += 1; r, self.fail = self.fail, 0; return r
            def notify_discard(self, s):
                self.calls += 1
                if self.calls == 2 and self.hook: self.hook()
        l0, l1 = L(), L()
        rba.register_listener(l0, S(0, 0x10000, 0)); rba.register_listener(l1, S(0, 0x10000, 0))
        l0.fail = -12
        l1.hook = lambda: rba.unregister_listener(l0)
        print(rba.state_change(0x2000, 0x1000, False))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == "-12"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rollback", ["none", "listeners"])
def test_unregister_removes_through_the_current_predecessor(impl, rollback):
    """ram_block_attributes_rdm_unregister_listener(): from inside the discard that L0's
    unregistration sends it, L1 is registered (at the head).  QLIST_REMOVE through
    le_prev leaves [L1], and L1 is told of the next conversion.  Cython kept a ``prev``
    found before the callback and lost L1; the model deleted a stale index and kept L0."""
    log = []
    rba, L = make(impl, rollback)
    l0, l1 = L("L0", log), L("L1", log)
    assert rba.register_listener(l0, S(0, REGION, 0)) == 0
    l0.hooks[1] = lambda: rba.register_listener(l1, S(0, REGION, 0))
    assert rba.unregister_listener(l0) == 0
    assert names(rba) == ["L1"]
    assert rba.state_change(0x2000, BS, False) == 0
    assert log[-1] == ("L1", "populate", 0x2000, BS, 0)
    assert [e for e in log if e[0] == "L0"] == [("L0", "discard", 0, REGION, 0)]


@pytest.mark.parametrize("impl", IMPLS)
def test_listener_inserted_during_a_walk_is_not_visited_and_nobody_twice(impl):
    """ram_block_attributes_state_change(), "Unexpected mixture": blocks 1 and 3 are
    shared; 0x0+0x6000 goes shared block by block, and from inside L0's first populate
    callback L1 registers at the head.  QLIST_FOREACH goes on through L0's next: L0 is
    told once per block.  The twin and the model iterated a Python list that
    ``insert(0, ...)`` shifted, and told L0 about block 0 twice (a false differential
    finding in the world)."""
    log = []
    rba, L = make(impl, "none")
    l0, l1 = L("L0", log, double_discard=False), L("L1", log, double_discard=False)
    assert rba.register_listener(l0, S(0, REGION, 0)) == 0
    assert rba.state_change(0x1000, BS, False) == 0
    assert rba.state_change(0x3000, BS, False) == 0
    del log[:]
    l0.hooks[1] = lambda: rba.register_listener(l1, S(0, REGION, 0))
    assert rba.state_change(0x0, 0x6000, False) == 0
    l0_populates = [e[2] for e in log if e[:2] == ("L0", "populate")]
    assert l0_populates == [0x0, 0x2000, 0x4000, 0x5000]
    # L1's register replay saw blocks 0-1 and 3 populated; then each later block, first.
    assert [e[1:4] for e in log if e[0] == "L1"] == [
        ("populate", 0x0, 0x2000), ("populate", 0x3000, BS),
        ("populate", 0x2000, BS), ("populate", 0x4000, BS), ("populate", 0x5000, BS)]


@pytest.mark.parametrize("impl", IMPLS)
def test_self_unregistration_ends_the_walk(impl):
    """QLIST_REMOVE sets the removed element's next to NULL: a listener that unregisters
    itself from inside a notification ends that walk, and the listeners after it are not
    told (exactly what QEMU does; a design must not rely on the opposite)."""
    log = []
    rba, L = make(impl, "none")
    l0, l1 = L("L0", log), L("L1", log)
    rba.register_listener(l0, S(0, REGION, 0))
    rba.register_listener(l1, S(0, REGION, 0))   # list: L1, L0
    l1.hooks[1] = lambda: rba.unregister_listener(l1)
    assert rba.state_change(0x0, BS, False) == 0
    assert [e[:2] for e in log] == [("L1", "populate"), ("L1", "discard")]
    assert names(rba) == ["L0"]


@pytest.mark.parametrize("impl", IMPLS)
def test_nested_unregistration_of_the_same_listener_is_one_removal(impl):
    """A discard callback that unregisters its own listener again: the inner call removes
    it, the outer one finds nothing left to remove (in QEMU, a double QLIST_REMOVE)."""
    log = []
    rba, L = make(impl, "none")
    l0 = L("L0", log)
    rba.register_listener(l0, S(0, REGION, 0))
    results = []
    l0.hooks[1] = lambda: results.append(rba.unregister_listener(l0))
    assert rba.unregister_listener(l0) == 0
    assert results == [0] and names(rba) == []
    assert rba.register_listener(l0, S(0, REGION, 0)) == 0  # and it can come back


@pytest.mark.parametrize("impl", IMPLS)
def test_addresses_wrap_mod_2_64(impl):
    """memory_region_section_intersect_range(): offset_within_address_space is a uint64
    hwaddr; a section whose address-space view runs past 2^64 wraps (the twin and the
    model used unbounded ints)."""
    log = []
    rba, L = make(impl, "none")
    got = []
    l0 = L("L0", log)
    l0.notify_populate = lambda s: got.append(tuple(s)) or 0
    rba.register_listener(l0, S(0, 0x4000, (1 << 64) - 0x1000))
    rba.state_change(0x2000, BS, False)
    assert got == [(0x2000, BS, 0x1000)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("rollback", ["listeners", "full", "sources"])
def test_2026_manager_unregisters_with_one_whole_section_discard(impl, rollback):
    """ram_discard_manager_unregister_listener() (2026): one notify_discard of the whole
    section whether or not the listener supports double discard; QEMU 10.1
    (ram_block_attributes_rdm_unregister_listener) walks the populated runs instead."""
    for policy, expected in ((rollback, [(0, REGION)]), ("none", [(0x1000, BS), (0x3000, BS)])):
        log = []
        rba, L = make(impl, policy)
        l0 = L("L0", log, double_discard=False)
        rba.register_listener(l0, S(0, REGION, 0))
        rba.state_change(0x1000, BS, False)
        rba.state_change(0x3000, BS, False)
        del log[:]
        rba.unregister_listener(l0)
        assert [(e[2], e[3]) for e in log] == expected, policy


@pytest.mark.parametrize("impl", IMPLS)
def test_multi_source_manager_rolls_back_the_failing_listener_too(impl):
    """ram_discard_manager_notify_populate() of the multi-source manager: "notify discard
    for listeners we already notified, including the failing listener which may have been
    partially notified" (policy ``sources``); the first 2026 manager stops before it."""
    for policy, told in (("sources", ["L1", "L0"]), ("listeners", ["L1"])):
        log = []
        rba, L = make(impl, policy)
        l0, l1 = L("L0", log), L("L1", log)
        rba.register_listener(l0, S(0, REGION, 0))
        rba.register_listener(l1, S(0, REGION, 0))
        l0.fail_next = -ENOMEM
        assert rba.state_change(0x2000, BS, False) == -ENOMEM
        assert [e[0] for e in log if e[1] == "discard"] == told, policy


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("offset,size,expected", [
    (0x1800, 0x1000, True),     # rounds down to block 1, which is shared
    (0x2800, 0x1000, False),    # block 2 is private
    (0x1000, 0x1800, True),     # the size truncates to one block
    (0x3000, 0x0, True),        # zero size: vacuously populated...
    (0x0, 0x0, False),          # ...except at block 0: last_bit wraps to ULONG_MAX
    (0x1000, 0x800, True),      # less than a block: no blocks, vacuous
    (0xF000, 0x2000, False),    # would read past the bitmap
])
def test_is_populated_computes_as_the_c(impl, offset, size, expected):
    """ram_block_attributes_rdm_is_populated(): first_bit = offset / block_size,
    last_bit = first_bit + size / block_size - 1 (unsigned), find_next_zero_bit."""
    rba, _ = make(impl, "none")
    rba.state_change(0x1000, BS, False)
    assert rba.is_populated(S(offset, size, 0)) is expected


# -- the property: random nested register/unregister/state_change on all three ----------

RBA_KINDS = ("register", "unregister", "state_change", "arm", "replay", "is_populated", "nest")


@pytest.mark.parametrize("rollback", ["none", "listeners", "full", "sources"])
@settings(max_examples=40)
@given(data=st.data())
def test_nested_callbacks_agree_and_never_crash(rollback, data):
    """Streams of manager ops where about a third are nests (a recorder runs a register,
    unregister, state change, replay or another nest from inside its k-th next
    callback): the Cython core, the twin and the model agree after every op, and the
    ordering oracle holds whenever no nest fired.  Any crash fails the run."""
    cfg = CoreConfig(nblocks=16, rollback=rollback)
    draws = iter(data.draw(st.lists(st.integers(0, 2**32), min_size=20, max_size=300)))
    ops = []
    try:
        while True:
            op = differential.random_op(lambda n: next(draws) % n, cfg)
            if op[0] in RBA_KINDS:
                ops.append(op)
    except StopIteration:
        pass
    differential.run(ops, cfg, IMPLS)


def test_seeded_nested_streams_really_nest():
    """The property is not vacuous: seeded streams fire nests that change the list."""
    import random

    cfg = CoreConfig(nblocks=16, rollback="listeners")
    rng = random.Random(5)
    ops = [op for op in (differential.random_op(rng.randrange, cfg) for _ in range(3000))
           if op[0] in RBA_KINDS][:600]
    systems = [differential._System(impl, cfg) for impl in IMPLS]
    assert differential.run(ops, cfg, IMPLS) == len(ops)
    for s in systems:
        for op in ops:
            differential._call(s, op)
    fired = systems[0].nests_fired
    nested_kinds = {e[1][0] for r in differential.RECORDERS
                    for e in systems[0].listeners[r].log if e[0] == "nested"}
    assert fired >= 20
    assert {"register", "unregister", "state_change"} <= nested_kinds
