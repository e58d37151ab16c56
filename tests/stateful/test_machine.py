"""The hypothesis state machine over the World (rig.drive.stateful) and its fuzz harness.

The hardened design survives the machine; the known-bad designs break an invariant, and
the Finding prints the run as a trace that parses and replays to the same violation.
Runs are derandomized (a fixed seed), so these tests are deterministic.
"""

import hashlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import rig.drive.base
import rig.drive.harnesses
from rig.check.session import run
from rig.drive.harnesses import HARNESSES, Finding, harness_for
from rig.drive.stateful import StateMachineHarness, machine_for, trace_from_finding
from rig.trace.format import MAGIC, Expect, parse, serialize

from tests.conftest import BACKENDS

BACKEND = BACKENDS[0]  # cy, or the pure twin with RIG_PUREPYTHON=1


# -- (a) the hardened design under the machine, as a plain stateful test -----------------------

TestHardenedMachine = machine_for("hardened", BACKEND).TestCase
TestHardenedMachine.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])


# -- (b) known-bad designs: the machine finds a violation, printed as a replayable trace -------

FIND = settings(max_examples=200, stateful_step_count=25, deadline=None, derandomize=True,
                database=None, report_multiple_bugs=False, print_blob=False,
                # No shrinking: the first failing run is the finding (shrinking a
                # state-machine run of the World takes a minute, not a test's seconds).
                phases=[Phase.generate], suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("design", ["qemu-10.1", "uncoordinated"])
def test_known_bad_design_is_found(design):
    with pytest.raises(Finding) as info:
        run_state_machine_as_test(machine_for(design, BACKEND), settings=FIND)
    finding = info.value
    assert finding.harness == "statemachine" and finding.trace is not None
    assert finding.signature.startswith(f"violation {finding.trace.expect.invariant}")
    text = trace_from_finding(str(finding))
    assert text is not None and text.startswith(MAGIC)
    trace = parse(text, "<finding>")  # strict: the message carries a well-formed trace
    assert trace == finding.trace and serialize(trace) == text
    assert trace.config.design == design
    assert trace.expect.kind == "violation" and trace.expect.invariant in finding.summary
    # It replays: the same ops on a fresh world end in the same violation.
    result = run(trace.config, trace.ops, BACKEND)
    assert trace.expect.matches(result.outcome), result.outcome
    assert result.outcome.op_index == len(trace.ops) - 1


def test_machine_for_is_cached_and_refuses_unknown_designs():
    assert machine_for("qemu-10.1", BACKEND) is machine_for("qemu-10.1", BACKEND)
    assert machine_for("qemu-10.1", BACKEND).design == "qemu-10.1"
    with pytest.raises(ValueError, match="design: unknown design"):
        machine_for("nope")


# -- (c) the fuzz harness ------------------------------------------------------------------------

def inputs():
    """Fixed byte strings: empty, short, and hash-derived runs of several lengths."""
    out = [b"", b"\x00", b"\x00" * 64, b"\x01\x02\x03\x04" * 32, b"\xff" * 16]
    out += [hashlib.sha256(b"statemachine/%d" % i).digest() * (1 + i % 8) for i in range(12)]
    return out


@pytest.fixture(scope="module")
def hardened():
    return replace(harness_for("statemachine"), backend=BACKEND)


def test_registry_entry():
    harness = HARNESSES["statemachine"]
    assert isinstance(harness, StateMachineHarness)
    assert (harness.name, harness.script, harness.design) == ("statemachine", "statemachine", None)
    bad = harness_for("statemachine", "qemu-10.1")
    assert (bad.name, bad.design) == ("statemachine:qemu-10.1", "qemu-10.1")
    assert HARNESSES["statemachine:uncoordinated"].design == "uncoordinated"
    assert bad.for_design(None) == bad


def test_harness_is_clean_and_deterministic_on_hardened(hardened):
    for data in inputs():
        hardened.one_input(data)  # no Finding
        first, second = hardened.to_trace(data), hardened.to_trace(data)
        assert first is not None and first == second
        assert first.expect == Expect("ok") and first.config.design == "hardened"
        # The recorded ops are what ran: replaying them gives the same outcome.
        assert run(first.config, first.ops, BACKEND).outcome.kind == "ok"
        lines = hardened.explain(data)
        assert lines[0] == MAGIC and lines == serialize(first).splitlines()
    assert hardened.to_trace(b"").ops == []
    assert max(len(hardened.to_trace(d).ops) for d in inputs()) >= 5


def test_harness_finding_on_qemu_10_1_is_a_trace(monkeypatch):
    harness = replace(harness_for("statemachine", "qemu-10.1"), backend=BACKEND)
    for i in range(400):  # the first crashing input among fixed pseudo-random ones
        data = hashlib.sha256(b"qemu/%d" % i).digest() * 4
        try:
            harness.one_input(data)
        except Finding as exc:
            finding = exc
            break
    else:
        pytest.fail("no violation on qemu-10.1 in 400 fixed inputs")
    trace = harness.to_trace(data)
    assert trace.expect.kind == "violation" and trace.ops == finding.trace.ops
    assert parse(serialize(trace)) == trace
    assert trace.expect.matches(run(trace.config, trace.ops, BACKEND).outcome)
    # A signature the campaign already has is not reported again.
    monkeypatch.setattr(rig.drive.base, "KNOWN", frozenset({finding.signature}))
    harness.one_input(data)
    assert harness.to_trace(data) == trace
