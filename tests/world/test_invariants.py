"""The invariant registry (rig/check/oracle.py): every check of every invariant fires on a
case that breaks it and stays silent on the same case done right, the severity order is
the published one, and an invariant declared in oracle.py alone is run, named, sorted and
listed with no other change.

Adding an invariant means adding its row to ``CASES`` (one per check it is declared
with): ``test_every_check_has_a_case`` fails until then.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rig.check import oracle
from rig.check.session import run
from rig.core.pure import ram_block_attributes as pure_rba
from rig.errors import EIO, ENOMEM
from rig.world.config import X86_LAYOUT, RamSpec, WorldConfig
from rig.world.faults import FaultSpec
from rig.world.ops import op
from rig.world.world import World

from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
PRIVATE, SHARED = True, False
BS = 0x1000

#: The published order, most severe first.  Severity picks an outcome's headline, hence
#: the finding signature and the regression file name: this list changes only on purpose.
SEVERITY_ORDER = ("stale-mapping", "private-dma", "orphan-listener", "pin-leak",
                  "data-integrity", "shared-unmapped", "attr-agree", "atomic-failure",
                  "dma-accounting", "mapping-exhaustion", "double-backing",
                  "spurious-failure", "notify-order", "differential")


# -- the cases: what breaks each check, and the same done right ---------------------------

def seed_sequence():
    """docs/semantics.md 2.7: the page goes private and back while VFIO keeps its
    mapping."""
    return [op("vfio_register", 0, 0x0, 0x10000),
            op("kvm_convert_memory", 0x2000, BS, SHARED),
            op("guest_touch", 0x2000),
            op("kvm_convert_memory", 0x2000, BS, PRIVATE),
            op("guest_touch", 0x2000),
            op("kvm_convert_memory", 0x2000, BS, SHARED),
            op("guest_touch", 0x2000),
            op("device_dma", 0, 0x2000, BS, True)]


def populate_failure_in_2nd_listener():
    return [op("vfio_register", 0, 0x0, 0x10000),
            op("vfio_register", 1, 0x0, 0x10000),
            op("kvm_convert_memory", 0x2000, BS, SHARED,
               fault=(FaultSpec("vfio.dma_map", -ENOMEM, 2),))]


def _worlds(cfg: WorldConfig, ops, backend: str, bad: str, good: str = "hardened",
            to_end: bool = False):
    """The world after ``ops`` on design ``bad`` and on ``good``: where the run stopped
    (its first violation or VM stop), or after every op."""
    return tuple((run(cfg.with_(design=design), ops, backend, differential=False,
                      stop_at_violation=not to_end).world,) for design in (bad, good))


def _crafted(design: str, backend: str, ops, tamper):
    """The world after ``ops``, then with ``tamper`` applied behind the design's back,
    and the same world untampered."""
    out = []
    for tampered in (True, False):
        world = World(WorldConfig(design=design), backend)
        world.begin_op(0, None)
        for o in ops:
            world.dispatch(o)
        if tampered:
            tamper(world)
        out.append((world,))
    return tuple(out)


def stale_mapping(backend, monkeypatch):
    return _worlds(WorldConfig(), seed_sequence(), backend, "uncoordinated")


def private_dma(backend, monkeypatch):
    # In place: the attribute flips to private behind VFIO's back, the mapping stays.
    return _crafted("inplace", backend, [op("vfio_register", 0, 0, 0x10000),
                                         op("kvm_convert_memory", 0x3000, BS, SHARED)],
                    lambda world: world.kvm.private.add(0x3))


def pin_leak(backend, monkeypatch):
    return _worlds(WorldConfig(), seed_sequence(), backend, "uncoordinated")


def data_integrity(backend, monkeypatch):
    # The last op: the device writes through the stale mapping.
    return _worlds(WorldConfig(), seed_sequence(), backend, "uncoordinated", to_end=True)


def shared_unmapped(backend, monkeypatch):
    return _worlds(WorldConfig(), populate_failure_in_2nd_listener(), backend, "qemu-10.1")


def attr_agree(backend, monkeypatch):
    # qemu-10.1 does not clip a conversion that crosses the end of a RAM block.
    ops = [op("vfio_register", 0, 0, 0x8000), op("kvm_convert_memory", 0x7000, 0x2000, SHARED)]
    return _worlds(WorldConfig(ram=X86_LAYOUT), ops, backend, "qemu-10.1")


def atomic_failure(backend, monkeypatch):
    """The world before and after the failed conversion (op 2), on qemu-10.1 (no
    rollback) and on hardened."""
    out = []
    for design in ("qemu-10.1", "hardened"):
        snapshots: list = []
        result = run(WorldConfig(design=design), populate_failure_in_2nd_listener(), backend,
                     differential=False, observe=lambda w: snapshots.append(w.snapshot()))
        assert result.steps[2].result == -ENOMEM
        out.append((snapshots[2], snapshots[3]))
    return tuple(out)


def dma_accounting(backend, monkeypatch):
    """A container loses track of one entry (the twin's container: its counters are
    plain attributes)."""
    def leak_an_entry(world):
        world.vfio_devices()[0].container.dma_avail -= 1
    return _crafted("hardened", "pure", [op("vfio_register", 0, 0, 0x10000)], leak_an_entry)


def double_backing(backend, monkeypatch):
    return _worlds(WorldConfig(), seed_sequence(), backend, "keep-shared")


def double_backing_after_stop(backend, monkeypatch):
    """qemu-10.1 punches the memfd's first page only, then the VM stops: the second page
    is private and still backed by the memfd.  hardened retries the punch."""
    ops = [op("kvm_convert_memory", 0x0, 0x2000, SHARED),
           op("guest_touch", 0x1000),
           op("kvm_convert_memory", 0x0, 0x2000, PRIVATE,
              fault=(FaultSpec("memfd.punch_hole", -EIO, 1, 1),))]
    return _worlds(WorldConfig(ram=(RamSpec(0x0, 0x4000),)), ops, backend, "qemu-10.1")


def orphan_listener(backend, monkeypatch):
    """The world forgets a device (as a realize that gives up and does not unregister,
    the failed-realize-keeps-listener mutant) while its listener stays registered and
    its container mapped."""
    ops = [op("vfio_register", 0, 0, 0x10000), op("kvm_convert_memory", 0x0, 0x2000, SHARED)]
    return _crafted("hardened", backend, ops,
                    lambda world: world.devices.pop(("vfio", 0)))


def mapping_exhaustion(backend, monkeypatch):
    """A budget check that only warns where the design's says it refuses (the
    limit-warn-only mutant) admits a device over dma_max_mappings, and its first
    conversion runs the container out; hardened refuses the device, the conversion
    then needs no mapping."""
    cfg = WorldConfig(dma_entry_limit=0, max_memslots=1, ram=(RamSpec(0x0, 0x1000),))
    ops = [op("vfio_register", 0, 0, 0x1000), op("kvm_convert_memory", 0x0, BS, SHARED)]
    return _worlds(cfg, ops, backend, "limit-warn-only")


def spurious_failure(backend, monkeypatch):
    """qemu-10.1 applies a conversion over two adjacent RAM blocks to the first one with
    the full size (docs/semantics.md 2.3): -EINVAL for a valid request, no fault."""
    cfg = WorldConfig(ram=(RamSpec(0x0, 0x1000), RamSpec(0x1000, 0x1000)))
    return _worlds(cfg, [op("kvm_convert_memory", 0x0, 0x2000, SHARED)], backend, "qemu-10.1")


ORIGINAL_STATE_CHANGE = pure_rba.RamBlockAttributes.state_change


def _notify_before_the_bitmap(self, offset, size, to_discard):
    """A mutant manager: a populate of a discarded range tells the listeners first."""
    if (not self.is_valid_range(offset, size) or to_discard
            or not self.is_range_discarded(offset, size)):
        return ORIGINAL_STATE_CHANGE(self, offset, size, to_discard)
    ret = self.notify_populate(offset, size)
    self.bitmap.bitmap_set(offset // self.block_size, size // self.block_size)
    return ret


def notify_order(backend, monkeypatch):
    """A generic listener observes the conversion (op 1); the mutant is the pure twin."""
    ops = [op("listener_register", 0, 0x0, 0x8000), op("kvm_convert_memory", 0x2000, 0x2000, SHARED)]
    cfg = WorldConfig(design="hardened", ram=(RamSpec(0x0, 0x8000),))
    good = run(cfg, ops, "pure", differential=False).world
    monkeypatch.setattr(pure_rba.RamBlockAttributes, "state_change", _notify_before_the_bitmap)
    bad = run(cfg, ops, "pure", differential=False).world
    return (bad,), (good,)


def differential(backend, monkeypatch):
    """The reference model maps one granule too few (a planted model bug)."""
    from rig.check import model
    from rig.core.types import MemoryRegionSection

    ops = [op("vfio_register", 0, 0, 0x10000), op("kvm_convert_memory", 0, 0x3000, SHARED)]
    cfg = WorldConfig(design="hardened")
    ok = run(cfg, ops, backend)
    original = model.ModelVfioListener.notify_populate

    def off_by_one(self, section):
        if section.size > self.granularity:
            section = MemoryRegionSection(section.offset_within_region,
                                          section.size - self.granularity,
                                          section.offset_within_address_space)
        return original(self, section)

    monkeypatch.setattr(model.ModelVfioListener, "notify_populate", off_by_one)
    bad = run(cfg, ops, backend, stop_at_violation=False)
    result = bad.steps[-1].result
    return (bad.world, bad.shadow, result, result), (ok.world, ok.shadow, result, result)


#: (invariant, kind of check) -> the case: ``case(backend, monkeypatch)`` returns the
#: arguments of that check for a broken world, then for the same world done right.
CASES = {
    ("stale-mapping", "state"): stale_mapping,
    ("private-dma", "state"): private_dma,
    ("orphan-listener", "state"): orphan_listener,
    ("pin-leak", "state"): pin_leak,
    ("data-integrity", "state"): data_integrity,
    ("shared-unmapped", "state"): shared_unmapped,
    ("attr-agree", "state"): attr_agree,
    ("atomic-failure", "atomic"): atomic_failure,
    ("dma-accounting", "state"): dma_accounting,
    ("double-backing", "state"): double_backing,
    ("double-backing", "after-stop"): double_backing_after_stop,
    ("mapping-exhaustion", "state"): mapping_exhaustion,
    ("spurious-failure", "state"): spurious_failure,
    ("notify-order", "state"): notify_order,
    ("differential", "differential"): differential,
}

CHECKS = [(name, kind, fn) for name in oracle.INVARIANTS
          for kind, fn in oracle.REGISTRY[name].checks]


def test_every_check_has_a_case():
    assert sorted(CASES) == sorted((name, kind) for name, kind, _ in CHECKS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,kind,check", CHECKS,
                         ids=[f"{name}/{kind}" for name, kind, _ in CHECKS])
def test_each_check_fires_when_broken_and_not_when_right(name, kind, check, backend,
                                                         monkeypatch):
    bad, good = CASES[(name, kind)](backend, monkeypatch)
    fired = [v for v in check(*bad) if v.invariant == name]
    assert fired, [str(v) for v in check(*bad)]
    assert all(v.detail for v in fired)
    assert [str(v) for v in check(*good) if v.invariant == name] == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_pin_leak_sees_a_frame_punched_while_pinned(backend):
    """pin-leak's second reading: a frame punched while the IOMMU pins it, even when the
    unmap later in the same op unpins and frees it (the discard-before-unmap mutant's
    order; hardened unmaps, then punches).  By the end of the op nothing is leaked, so
    only the world's record of the punch (World.punched_pinned) shows it."""
    cfg = WorldConfig(ram=(RamSpec(0x0, 0x1000),))
    ops = [op("vfio_register", 0, 0, 0x1000), op("kvm_convert_memory", 0x0, BS, SHARED),
           op("kvm_convert_memory", 0x0, BS, PRIVATE)]
    (bad,), (good,) = _worlds(cfg, ops, backend, "discard-before-unmap")
    assert bad.frames.leaked() == [] and bad.pinner.locked_vm == 0
    fired = oracle.check_pins(bad)
    assert [v.items for v in fired] == [["frame #1 (memfd0)"]], [str(v) for v in fired]
    assert "punched from their file while the IOMMU still pinned them" in fired[0].detail
    assert oracle.check_pins(good) == []


# -- the registry -------------------------------------------------------------------------

def test_severity_order_is_the_published_one():
    assert oracle.INVARIANTS == SEVERITY_ORDER
    severities = [oracle.severity(name) for name in oracle.INVARIANTS]
    assert severities == sorted(set(severities)), "severities are distinct and ascending"
    assert list(oracle.DOC) == list(SEVERITY_ORDER) and all(oracle.DOC.values())


def test_the_session_sorts_by_severity_not_by_check():
    """qemu-10.1's populate failure breaks shared-unmapped (50) and atomic-failure (70):
    the state check's violation heads the step, whatever order the checks ran in."""
    result = run(WorldConfig(design="qemu-10.1"), populate_failure_in_2nd_listener(), "pure")
    names = [v.invariant for v in result.steps[2].violations]
    assert names == sorted(names, key=oracle.severity) and names[0] == "shared-unmapped"
    assert "atomic-failure" in names


def test_a_declaration_is_checked():
    with pytest.raises(ValueError, match="declared twice"):
        oracle.invariant("pin-leak", severity=35, doc="again")
    with pytest.raises(ValueError, match="severity 30 is 'pin-leak'"):
        oracle.invariant("pin-leak-2", severity=30, doc="a tie")
    before = dict(oracle.REGISTRY)
    with pytest.raises(ValueError, match="kind 'sometimes'"):
        oracle.invariant("odd", severity=31, doc="odd", kind="sometimes")(lambda world: [])
    assert oracle.REGISTRY == before
    with pytest.raises(KeyError):
        oracle.severity("no-such-invariant")


# -- an invariant added in oracle.py alone ------------------------------------------------

THROWAWAY = '''

@invariant("throwaway", severity=15,
           doc="a throwaway invariant: the run has not gone past its third op")
def check_throwaway(world) -> list[Violation]:
    if world.op_index < 3:
        return []
    return [Violation("throwaway", f"op {world.op_index} is past the third")]
'''

TRACE = """# gmem-rig trace v1
# design=uncoordinated
# expect: violation throwaway
""" + "\n".join(["vfio_register(0, 0x0, 0x10000)",
                 "kvm_convert_memory(0x2000, 0x1000, shared)",
                 "guest_touch(0x2000)",
                 "kvm_convert_memory(0x2000, 0x1000, private)",
                 "guest_touch(0x2000)"]) + "\n"


@pytest.fixture(scope="module")
def tree_with_a_throwaway(tmp_path_factory) -> Path:
    """A copy of rig/ whose oracle.py has one more declared invariant at its end."""
    tree = tmp_path_factory.mktemp("throwaway")
    shutil.copytree(ROOT / "rig", tree / "rig",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.pyc"))
    with open(tree / "rig" / "check" / "oracle.py", "a", encoding="utf-8") as f:
        f.write(THROWAWAY)
    (tree / "t.trace").write_text(TRACE)
    return tree


def _rig(tree: Path, *args) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "RIG_PUREPYTHON": "1"}
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_throwaway_invariant_is_run_named_sorted_and_listed(tree_with_a_throwaway):
    tree = tree_with_a_throwaway
    listed = _rig(tree, "list", "invariants", "--json")
    assert listed.returncode == 0, listed.stderr
    invariants = json.loads(listed.stdout)["invariants"]
    assert [i["name"] for i in invariants][:3] == ["stale-mapping", "throwaway", "private-dma"]
    assert invariants[1] == {"name": "throwaway", "severity": 15, "kinds": ["state"],
                             "doc": "a throwaway invariant: the run has not gone past its "
                                    "third op"}
    assert "throwaway" in _rig(tree, "list", "invariants").stdout

    replay = _rig(tree, "replay", "--json", "--backend", "pure", "t.trace")
    report = json.loads(replay.stdout)
    steps = report["steps"]
    # The run stops at op 3, where the design breaks stale-mapping and pin-leak too; the
    # throwaway sorts by its severity, between stale-mapping and pin-leak.
    assert [[v["invariant"] for v in s["violations"]] for s in steps] == [
        [], [], [], ["stale-mapping", "throwaway", "pin-leak"]]
    assert report["outcome"]["invariant"] == "stale-mapping"
    assert report["expect"] == "violation throwaway" and report["matches"] is False
    assert replay.returncode == 2

    hardened = tree / "h.trace"
    hardened.write_text(TRACE.replace("design=uncoordinated", "design=hardened"))
    report = json.loads(_rig(tree, "replay", "--json", "--backend", "pure", "h.trace").stdout)
    assert report["outcome"]["invariant"] == "throwaway"  # named in `# expect:`, matched
    assert report["outcome"]["op_index"] == 3 and report["matches"] is True


def test_the_copy_runs_its_own_oracle(tree_with_a_throwaway):
    """The copy, not the installed rig, is what the subprocesses import."""
    proc = subprocess.run([sys.executable, "-c", "import rig.check.oracle as o; "
                           "print(o.__file__, 'throwaway' in o.INVARIANTS)"],
                          cwd=tree_with_a_throwaway, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree_with_a_throwaway), "RIG_PUREPYTHON": "1"})
    path, found = proc.stdout.split()
    assert Path(path).is_relative_to(tree_with_a_throwaway) and found == "True"
