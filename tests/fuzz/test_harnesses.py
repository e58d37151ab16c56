"""The fuzz harness registry, in-process (no libFuzzer): every harness runs its seeds,
world harnesses decode to traces, known signatures are not re-reported, and the
trace_text mutator keeps inputs parseable."""

import random

import pytest

import rig.drive.base
from rig.drive import harnesses
from rig.drive.harnesses import HARNESSES, Finding, harness_for
from rig.trace.format import parse, serialize


@pytest.mark.parametrize("name", [n for n in HARNESSES if not HARNESSES[n].expect_crash])
def test_seeds_run_clean_on_the_default_design(name):
    harness = harness_for(name, None if name in ("core_differential", "iommu") else "hardened")
    for seed in harness.seeds():
        harness.one_input(seed)


def test_canaries_fail_on_their_planted_input():
    with pytest.raises(Finding):
        HARNESSES["canary"].one_input(b"\x42\x21")
    HARNESSES["canary"].one_input(b"\x42\x20")
    with pytest.raises(Finding, match="planted deep branch"):
        HARNESSES["native_canary"].one_input(b"GMEMRIG!")
    for near_miss in (b"GMEMRIG?", b"GMEM", b"XMEMRIG!", b""):
        HARNESSES["native_canary"].one_input(near_miss)


def test_world_harness_names_carry_the_design():
    h = harness_for("convert", "qemu-10.1")
    assert h.name == "convert:qemu-10.1"
    assert HARNESSES["convert:qemu-10.1"].name == "convert:qemu-10.1"
    assert "convert:nope" not in HARNESSES and "canary:hardened" not in HARNESSES
    trace = h.to_trace(bytes(range(60)))
    assert trace.config.design == "qemu-10.1"
    assert parse(serialize(trace)) == trace


@pytest.mark.parametrize("name", ["convert", "convert_explicit", "trace_text", "statemachine"])
def test_standalone_world_harnesses_target_hardened(name):
    """What fuzz/<name>.py and a ClusterFuzzLite bundle run with no RIG_FUZZ_DESIGN: the
    hardened design, whatever the input bytes say, and the same world as NAME:hardened
    (so `rig replay --harness NAME` reproduces their crash files)."""
    plain, named = harness_for(name, None), HARNESSES[f"{name}:hardened"]
    if name == "statemachine":
        assert plain.for_design(None).name == named.name
        return
    rng = random.Random(3)
    inputs = plain.seeds() if name == "trace_text" else [
        bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120))) for _ in range(200)]
    for data in inputs:
        trace = plain.to_trace(data)
        assert trace.config.design == "hardened"
        other = named.to_trace(data)
        assert (trace.config, trace.ops) == (other.config, other.ops)


def test_a_bad_design_is_found_and_known_signatures_are_not_reported(monkeypatch):
    """uncoordinated breaks on the seed-like inputs the decoder makes; once the campaign
    knows the signature, the harness stays quiet about it."""
    h = harness_for("convert", "uncoordinated")
    rng = random.Random(0)
    found = None
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 120)))
        try:
            h.one_input(data)
        except Finding as exc:
            found = (data, exc)
            break
    assert found is not None
    data, exc = found
    assert exc.signature.startswith("violation ") and exc.trace is not None
    monkeypatch.setattr(rig.drive.base, "KNOWN", frozenset({exc.signature}))
    try:
        h.one_input(data)
    except Finding as again:
        assert again.signature != exc.signature


def test_trace_text_mutator_is_deterministic_and_parseable():
    h = harness_for("trace_text", "hardened")
    seeds = h.seeds()
    assert len(seeds) >= 6  # the regression corpus
    for i, seed in enumerate(seeds):
        a = h.mutate(seed, 4096, i)
        assert a == h.mutate(seed, 4096, i)
        assert h.parse(a) is not None


def test_trace_text_keeps_faults_within_hardened_retry_bound():
    """A fault outlasting hardened's retries is its documented limit: trace_text clamps
    COUNT, and drops a second spec that would extend a run of failing hits past it."""
    from rig.trace.decode import FAULT_COUNT_MAX
    from rig.world.faults import FaultSpec

    text = ("# gmem-rig trace v1\n"
            "vfio_register(0, 0x0, 0x4000)\n"
            "kvm_convert_memory(0x0, 0x2000, shared)  (fault: vfio.dma_map=ENOMEM@2 "
            "kvm.set_memory_attributes=ENOMEM@2*8)\n"
            "kvm_convert_memory(0x0, 0x2000, shared)  (fault: vfio.dma_map=ENOMEM@2 "
            "kvm.set_memory_attributes=ENOMEM@2*4 kvm.set_memory_attributes=ENOMEM@6*4)\n")
    harness = HARNESSES["trace_text:hardened"]
    ops = harness.to_trace(text.encode()).ops
    kvm = [[s for s in o.prop("fault", ()) if s.site == "kvm.set_memory_attributes"]
           for o in ops[1:]]
    assert kvm[0] == [FaultSpec("kvm.set_memory_attributes", -12, 2, None, FAULT_COUNT_MAX)]
    assert [s.nth for s in kvm[1]] == [2]
    harness.one_input(text.encode())  # hardened survives what is left


def test_decoded_faults_stay_within_hardened_retry_bound():
    """Two decoded specs on one site can add up past the bound; convert_explicit drops
    the second, so no site fails more than FAULT_COUNT_MAX hits in a row."""
    from rig.trace.decode import FAULT_COUNT_MAX

    harness, rng, pairs = HARNESSES["convert_explicit:hardened"], random.Random(5), 0
    for _ in range(1500):
        trace = harness.to_trace(bytes(rng.randrange(256) for _ in range(rng.randrange(60, 200))))
        for o in trace.ops:
            specs = o.prop("fault", ())
            for site in {s.site for s in specs}:
                pairs += sum(s.site == site for s in specs) > 1
                # Ask the specs hit by hit, as the explicit plan does.
                failing = "".join("x" if any(s.site == site and s.fires_at(hit) for s in specs)
                                  else "." for hit in range(1, 40))
                assert "x" * (FAULT_COUNT_MAX + 1) not in failing, o
    assert pairs  # the inputs did put two specs on one site


# -- the registry: everything else is derived from the entries -----------------------------

def test_every_entry_declares_kind_default_and_doc():
    from rig.drive.base import KINDS

    for name, h in HARNESSES.items():
        assert h.kind in KINDS and isinstance(h.in_default, bool), name
        assert h.summary and h.doc.startswith(h.doc.split("\n")[0]), name
        assert h.script == name and h.expect_crash == (h.kind == "canary")
        assert not (h.kind == "canary" and h.in_default), "a canary fails on purpose"
    with pytest.raises(ValueError, match="kind 'sometimes'"):
        harnesses.CanaryHarness("x", kind="sometimes", in_default=False, doc="x")


def test_the_lists_are_derived_from_the_registry():
    from rig.drive import campaign

    assert harnesses.WORLD_HARNESSES == tuple(n for n, h in HARNESSES.items()
                                              if h.kind == "world")
    assert harnesses.DEFAULT_CAMPAIGN == tuple(n for n, h in HARNESSES.items() if h.in_default)
    assert "statemachine" in harnesses.WORLD_HARNESSES
    assert not hasattr(campaign, "DEFAULT_HARNESSES") and not hasattr(campaign, "WORLD")
    # The campaign fixes the design of exactly the world harnesses.
    resolved = campaign.resolve(list(HARNESSES), "qemu-10.1")
    assert [r for r in resolved if ":" in r] == [f"{n}:qemu-10.1"
                                                 for n in harnesses.WORLD_HARNESSES]


def test_world_harnesses_decode_to_world_traces_and_only_they_take_a_design():
    from rig.trace.format import Trace

    for name, h in HARNESSES.items():
        if h.kind == "world":
            trace = h.to_trace(h.seeds()[0])
            assert isinstance(trace, Trace) and trace.config.design == "hardened", name
            assert f"{name}:qemu-10.1" in HARNESSES
        else:
            assert f"{name}:hardened" not in HARNESSES, name


def test_names_are_unique_and_carry_no_design():
    one = HARNESSES["canary"]
    with pytest.raises(ValueError, match="taken"):
        harnesses._Registry([one, one])
    with pytest.raises(ValueError, match="carries a design"):
        harnesses._Registry([harnesses.CanaryHarness("canary:x", kind="canary",
                                                     in_default=False, doc="x")])
