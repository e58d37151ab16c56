"""Every "first update the bitmap, then notify" rule of docs/semantics.md 2.2 is observable.

Listeners that query the manager from inside their callbacks (``is_populated``,
``replay_populated``, ``listeners()``) see a wrong order; the core differential's
ordering oracle (``differential.check_order``) and the world's ``notify-order``
invariant turn it into a finding.  Each rule gets a mutant of the pure-Python twin with
just that order swapped: the mutant is caught, and the real core passes the same ops.
"""

import pytest

from rig.check import differential
from rig.core.pure import ram_block_attributes as pure_rba
from rig.check.differential import CoreConfig, OrderViolation
from rig.check.session import run
from rig.world.ops import op
from rig.world.config import RamSpec, WorldConfig

from tests.conftest import BACKENDS

RBA = pure_rba.RamBlockAttributes
BS = 0x1000
ORIGINAL = RBA.state_change


def populate_whole_notify_first(self, offset, size, to_discard):
    BS = self.block_size
    if (not self.is_valid_range(offset, size) or to_discard
            or not self.is_range_discarded(offset, size)):
        return ORIGINAL(self, offset, size, to_discard)
    ret = self.notify_populate(offset, size)  # mutant: listeners told first
    self.bitmap.bitmap_set(offset // BS, size // BS)
    return ret


def discard_whole_notify_first(self, offset, size, to_discard):
    BS = self.block_size
    if (not self.is_valid_range(offset, size) or not to_discard
            or not self.is_range_populated(offset, size)):
        return ORIGINAL(self, offset, size, to_discard)
    self.notify_discard(offset, size)
    self.bitmap.bitmap_clear(offset // BS, size // BS)
    return 0


def populate_mixture_notify_first(self, offset, size, to_discard):
    BS = self.block_size
    if (not self.is_valid_range(offset, size) or to_discard
            or self.is_range_discarded(offset, size) or self.is_range_populated(offset, size)):
        return ORIGINAL(self, offset, size, to_discard)
    for bit in range(offset // BS, (offset + size) // BS):
        if not self.bitmap.test_bit(bit):
            ret = self.notify_populate(bit * BS, BS)
            self.bitmap.set_bit(bit)
            if ret:
                return ret
    return 0


def discard_mixture_notify_first(self, offset, size, to_discard):
    BS = self.block_size
    if (not self.is_valid_range(offset, size) or not to_discard
            or self.is_range_discarded(offset, size) or self.is_range_populated(offset, size)):
        return ORIGINAL(self, offset, size, to_discard)
    for bit in range(offset // BS, (offset + size) // BS):
        if self.bitmap.test_bit(bit):
            self.notify_discard(bit * BS, BS)
            self.bitmap.clear_bit(bit)
    return 0


def unregister_remove_first(self, rdl):
    section = rdl.section
    self._list_remove(rdl)  # mutant: removed before its discard
    rdl.notify_discard(section)
    return 0


CORE_MUTANTS = {
    # rule: (method, mutant, ops that show it)
    "populate, whole range": ("state_change", populate_whole_notify_first, [
        ("register", "R0", 0, 0x8000, 0), ("state_change", 0x2000, 0x2000, False)]),
    "discard, whole range": ("state_change", discard_whole_notify_first, [
        ("register", "R0", 0, 0x8000, 0), ("state_change", 0x2000, 0x2000, False),
        ("state_change", 0x2000, 0x2000, True)]),
    "populate, mixture": ("state_change", populate_mixture_notify_first, [
        ("register", "R0", 0, 0x8000, 0), ("state_change", 0x2000, BS, False),
        ("state_change", 0x1000, 0x3000, False)]),
    "discard, mixture": ("state_change", discard_mixture_notify_first, [
        ("register", "R0", 0, 0x8000, 0), ("state_change", 0x2000, BS, False),
        ("state_change", 0x4000, BS, False), ("state_change", 0x1000, 0x5000, True)]),
    "unregister: discard, then remove": ("unregister_listener", unregister_remove_first, [
        ("register", "R1", 0, 0x8000, 0), ("unregister", "R1")]),
}


@pytest.mark.parametrize("rule", sorted(CORE_MUTANTS))
def test_core_mutant_is_caught_by_the_ordering_oracle(rule, monkeypatch):
    method, mutant, ops = CORE_MUTANTS[rule]
    cfg = CoreConfig(nblocks=8)
    assert differential.run(ops, cfg, tuple(BACKENDS) + ("model",)) == len(ops)
    monkeypatch.setattr(RBA, method, mutant)
    with pytest.raises(OrderViolation) as info:
        differential.run(ops, cfg, ("pure",))
    assert info.value.index == len(ops) - 1


def test_register_replays_after_inserting(monkeypatch):
    """register_listener: insert at the head, then replay (a listener that replays
    before it is on the list would miss a conversion racing its replay)."""
    ops = [("state_change", 0x2000, BS, False), ("register", "R0", 0, 0x8000, 0)]
    cfg = CoreConfig(nblocks=8)
    assert differential.run(ops, cfg, tuple(BACKENDS) + ("model",)) == 2

    def replay_then_insert(self, rdl, section):
        from rig.core.types import MemoryRegionSection

        section = MemoryRegionSection(*section)
        ret = self._for_each_populated_section(section, rdl.notify_populate)
        rdl.section = section
        rdl._rdl_next, self._rdl_head = self._rdl_head, rdl
        return ret

    monkeypatch.setattr(RBA, "register_listener", replay_then_insert)
    with pytest.raises(OrderViolation) as info:
        differential.run(ops, cfg, ("pure",))
    assert "on the list" in info.value.rule


def test_ordering_oracle_is_silent_on_rollbacks_and_unregistration():
    """Rollback discards (bitmap still set, by design) and unregistration discards
    (populated runs) are not state-change discards: no alarm on the real core."""
    ops = [("register", "R0", 0, 0x8000, 0), ("register", "R2", 0, 0x8000, 0),
           ("arm", "R0", -12), ("state_change", 0x0, 0x4000, False),
           ("state_change", 0x1000, BS, False), ("arm", "R2", -12),
           ("state_change", 0x0, 0x4000, False), ("unregister", "R2")]
    for rollback in ("none", "listeners", "full", "sources"):
        assert differential.run(ops, CoreConfig(nblocks=8, rollback=rollback),
                                tuple(BACKENDS) + ("model",)) == len(ops)


# -- the world: generic listeners observe, on every design -------------------------------

def world_ops():
    return [op("listener_register", 0, 0x0, 0x8000),
            op("kvm_convert_memory", 0x2000, 0x2000, False),
            op("kvm_convert_memory", 0x2000, 0x2000, True),
            op("kvm_convert_memory", 0x3000, 0x1000, False),
            op("kvm_convert_memory", 0x2000, 0x3000, False),    # a mixture
            op("kvm_convert_memory", 0x1000, 0x5000, True)]     # a mixture


WORLD_MUTANTS = [populate_whole_notify_first, discard_whole_notify_first,
                 populate_mixture_notify_first, discard_mixture_notify_first]


@pytest.mark.parametrize("design", ["hardened", "qemu-10.1", "rdm-rollback", "inplace"])
def test_world_notify_order_silent_on_the_real_core(design):
    for backend in BACKENDS:
        result = run(WorldConfig(design=design, ram=(RamSpec(0x0, 0x8000),)), world_ops(), backend,
                     stop_at_violation=False)
        seen = {v.invariant for s in result.steps for v in s.violations}
        assert "notify-order" not in seen, (backend, seen)


@pytest.mark.parametrize("mutant", WORLD_MUTANTS, ids=lambda f: f.__name__)
def test_world_notify_order_catches_a_core_mutant_on_hardened(mutant, monkeypatch):
    """The default campaign's target: a manager that notifies before updating its bitmap
    is reported as notify-order on hardened (differential off: the mutant is the twin,
    not the model, so this is the oracle's own finding)."""
    monkeypatch.setattr(RBA, "state_change", mutant)
    result = run(WorldConfig(design="hardened", ram=(RamSpec(0x0, 0x8000),)), world_ops(), "pure",
                 differential=False, stop_at_violation=False)
    found = [v for s in result.steps for v in s.violations if v.invariant == "notify-order"]
    assert found, [str(v) for s in result.steps for v in s.violations]
    assert "rdl0.ram0" in found[0].detail


def test_the_default_campaign_harness_would_see_a_wrong_order(monkeypatch):
    """``convert:hardened`` (the default campaign's world harness), fed seeded random
    bytes, reports notify-order within a few hundred inputs when the core notifies
    before setting its bitmap; the same inputs are clean on the real core."""
    import random

    from rig.drive import harnesses
    from rig.core import load_backend
    from rig.world import world as world_mod

    harness = harnesses.harness_for("convert", "hardened")
    rng = random.Random(9)
    inputs = [bytes(rng.randrange(256) for _ in range(rng.randrange(16, 200)))
              for _ in range(400)]
    pure = load_backend("pure")
    monkeypatch.setattr(world_mod, "core_backend",
                        lambda name: __import__("rig.check.model", fromlist=["backend"]).backend()
                        if name == "model" else pure)
    for data in inputs[:150]:
        harness.one_input(data)  # the real (pure) core: nothing found
    monkeypatch.setattr(RBA, "state_change", populate_whole_notify_first)
    found = []
    for data in inputs:
        try:
            harness.one_input(data)
        except harnesses.Finding as finding:
            found.append(str(finding))
    assert any("notify-order" in f for f in found), found[:3]
