"""FaultPlan: explicit specs, fail_nth, seeded (BUGGIFY) plans, and their determinism."""

import hashlib
import os
import subprocess
import sys

import pytest

from rig.errors import EINTR, ENOMEM, ENOSPC
from rig.world.faults import SITES, ExplicitPlan, FailNthPlan, FaultSpec, SeededPlan, make_plan
from rig.world.events import GiveUp, Retry
from rig.world.ops import op


@pytest.mark.parametrize("text,spec", [
    ("vfio.dma_map=ENOSPC", FaultSpec("vfio.dma_map", -ENOSPC, 1, None)),
    ("vfio.dma_map=ENOSPC@2", FaultSpec("vfio.dma_map", -ENOSPC, 2, None)),
    ("memfd.punch_hole=EINTR@1/3", FaultSpec("memfd.punch_hole", -EINTR, 1, 3)),
    ("kvm.set_memory_attributes=ENOMEM@2*8",
     FaultSpec("kvm.set_memory_attributes", -ENOMEM, 2, None, 8)),
    ("memfd.punch_hole=EINTR@1*3/2", FaultSpec("memfd.punch_hole", -EINTR, 1, 2, 3)),
])
def test_fault_spec_parse_and_format(text, spec):
    assert FaultSpec.parse(text) == spec
    assert FaultSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text,message", [
    ("vfio.dma_map", "expected site=ERRNO"),
    ("vfio.dma_mapp=ENOSPC", "unknown site 'vfio.dma_mapp'"),
    ("vfio.dma_map=ENOPE", "unknown errno 'ENOPE'"),
    ("vfio.dma_map=EINTR", "cannot fail with EINTR"),
    ("vfio.dma_map=ENOSPC@0", "nth must be >= 1"),
    ("vfio.dma_map=ENOSPC@x", "nth 'x' is not a number"),
    ("vfio.dma_map=ENOSPC/2", "has no partial progress"),
    ("vfio.dma_map=ENOSPC@2*0", "count must be >= 1"),
    ("vfio.dma_map=ENOSPC@2*y", "count 'y' is not a number"),
])
def test_fault_spec_errors_name_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        FaultSpec.parse(text)


def test_explicit_plan_fires_the_nth_hit_of_the_op():
    plan = ExplicitPlan()
    plan.begin_op(0, op("guest_touch", 0, fault=(FaultSpec("pin.pin_pages", -ENOMEM, 2),)))
    assert plan.hit("pin.pin_pages") is None
    assert plan.hit("vfio.dma_map") is None
    fired = plan.hit("pin.pin_pages")
    assert (fired.site, fired.errno, fired.injected) == ("pin.pin_pages", -ENOMEM, True)
    assert plan.hit("pin.pin_pages") is None
    plan.begin_op(1, op("guest_touch", 0))  # counts restart per op; no spec here
    assert plan.hit("pin.pin_pages") is None
    assert plan.coverage()["pin.pin_pages"] == (4, 1)


def test_explicit_plan_fires_count_hits_in_a_row():
    plan = ExplicitPlan()
    plan.begin_op(0, op("guest_touch", 0, fault=(FaultSpec("pin.pin_pages", -ENOMEM, 2,
                                                           None, 3),)))
    fired = [plan.hit("pin.pin_pages") is not None for _ in range(6)]
    assert fired == [False, True, True, True, False, False]


def restore_failing(count: int) -> list:
    """The populate of the 2nd page fails; then the KVM attribute restore fails ``count``
    times in a row."""
    return [op("vfio_register", 0, 0, 0x4000),
            op("kvm_convert_memory", 0, 0x2000, False,
               fault=(FaultSpec("vfio.dma_map", -ENOMEM, 2),
                      FaultSpec("kvm.set_memory_attributes", -ENOMEM, 2, None, count)))]


def test_hardened_survives_a_restore_failing_one_less_than_its_retries():
    """hardened retries an undo step 8 times: 7 failures leave the world exactly as
    before; 8 are its documented limit (give_up, and the oracle reports what is left)."""
    from rig.check.session import run
    from rig.world.config import RamSpec, WorldConfig
    from rig.world.designs import DESIGNS

    config = WorldConfig(design="hardened", ram=(RamSpec(0, 0x4000),), faults="explicit")
    retries = DESIGNS["hardened"].retries
    result = run(config, restore_failing(retries - 1))
    assert result.outcome.kind == "ok" and result.steps[1].result == -ENOMEM
    assert sum(isinstance(e, Retry) for e in result.steps[1].events) == retries - 1

    result = run(config, restore_failing(retries))
    assert GiveUp("kvm attribute restore", 0, 0x2000, -ENOMEM) in result.steps[1].events
    assert {v.invariant for v in result.outcome.violations} == {
        "shared-unmapped", "attr-agree", "atomic-failure"}


def test_fail_nth_fires_exactly_once_at_the_nth_hit():
    plan = FailNthPlan(3)
    plan.begin_op(0, op("guest_touch", 0))
    sites = ["kvm.set_memory_attributes", "vfio.dma_map", "memfd.punch_hole", "vfio.dma_map"]
    fired = [plan.hit(s, units=4) for s in sites]
    assert [f is not None for f in fired] == [False, False, True, False]
    assert fired[2].partial == 2  # partial sites fail halfway
    assert fired[2].errno == -SITES["memfd.punch_hole"].errnos[0]


def decisions(plan, sites, hits=200):
    plan.begin_op(0, op("guest_touch", 0))
    return [(s, (f.errno, f.partial) if (f := plan.hit(s, 8)) else None)
            for _ in range(hits) for s in sites]


def test_seeded_plan_is_deterministic_and_sites_are_independent():
    a = decisions(SeededPlan(7, 1.0, 0.3), ["vfio.dma_map"])
    b = decisions(SeededPlan(7, 1.0, 0.3), ["vfio.dma_map"])
    assert a == b and any(d for _, d in a)
    # Hitting other sites in between does not change what vfio.dma_map decides: every
    # site draws from its own sub-seed.
    mixed = decisions(SeededPlan(7, 1.0, 0.3), ["gmem.punch_hole", "vfio.dma_map"])
    assert [d for s, d in mixed if s == "vfio.dma_map"] == [d for _, d in a]
    assert decisions(SeededPlan(8, 1.0, 0.3), ["vfio.dma_map"]) != a


def test_seeded_activation_respects_p_activate():
    assert not any(SeededPlan(s, 0.0, 1.0).active[n] for s in range(20) for n in SITES)
    assert all(SeededPlan(s, 1.0, 1.0).active[n] for s in range(5) for n in SITES)


def test_make_plan_modes():
    assert make_plan("explicit").mode == "explicit"
    assert make_plan("fail_nth", nth=2).describe() == "fail_nth=2"
    assert make_plan("seeded", seed=3).describe().startswith("seeded seed=3")
    with pytest.raises(ValueError):
        make_plan("sometimes")


DIGEST = """
import hashlib, sys
from rig.trace.decode import decode
from rig.check.session import run
digest = hashlib.sha256()
for i in range(40):
    data = hashlib.sha256(str(i).encode()).digest() * 3
    cfg, ops = decode(data)
    r = run(cfg, ops, sys.argv[1])
    digest.update(repr([(s.result, s.faults, s.events, [str(v) for v in s.violations])
                        for s in r.steps]).encode())
print(digest.hexdigest())
"""


def test_seeded_runs_identical_across_processes_and_hash_seeds():
    """Determinism is the product: the same bytes give the same run in any process,
    whatever PYTHONHASHSEED is, on both core backends."""
    from tests.conftest import BACKENDS

    outs = set()
    for backend in BACKENDS:
        for hash_seed in ("0", "12345"):
            env = dict(os.environ, PYTHONHASHSEED=hash_seed)
            out = subprocess.run([sys.executable, "-c", DIGEST, backend], env=env,
                                 capture_output=True, text=True, check=True)
            outs.add(out.stdout.strip())
    assert len(outs) == 1, outs
    assert len(hashlib.sha256(b"").hexdigest()) == len(outs.pop())
