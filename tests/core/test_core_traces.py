"""Core traces (rig.trace.core): the core differential's findings print, replay and
minimize as world traces do, in the same v1 text format.

A planted core bug (the pure twin's state_change telling listeners before it sets the
bitmap, as in test_order.py) is found by the core harness, printed as a core trace in
hex, reported by ``rig replay`` as a finding and shrunk by the core minimizer to two
ops; its signature names the kind of disagreement and the op kind only.
"""

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.check import differential
from rig.check.differential import (MISMATCH_KINDS, STATE_KEYS, CoreConfig,
                                    DifferentialMismatch, OrderViolation)
from rig.cli import replay
from rig.cli.main import main
from rig.core.pure import ram_block_attributes as pure_rba
from rig.drive.harnesses import HARNESSES
from rig.trace import core
from rig.trace.format import MAGIC, TraceError
from rig.trace.format import parse as parse_world

from tests.conftest import BACKENDS
from tests.core.test_order import populate_whole_notify_first

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
CONFIGS = differential.selftest_configs()
RBA = pure_rba.RamBlockAttributes
#: The implementations a planted twin bug leaves alone.
REAL = tuple(b for b in BACKENDS if b != "pure") + ("model",)
HEADER = "# core nblocks=8 block_size=0x1000 rollback=none iommu=type1 dma_entry_limit=12"


def ops_from(draws, cfg):
    it = iter(draws)
    ops = []
    while True:
        try:
            ops.append(differential.random_op(lambda n: next(it) % n, cfg))
        except StopIteration:
            return ops


# -- the format ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
@settings(max_examples=30)
@given(draws=st.lists(st.integers(0, 2**32), min_size=1, max_size=200),
       comments=st.lists(st.sampled_from(["", "a comment", "symptom: x"]), max_size=2),
       expect=st.sampled_from([None, "ok", "mismatch", "mismatch order",
                               "mismatch log.R1 in state_change", "mismatch in nest"]))
def test_random_op_streams_round_trip(cfg, draws, comments, expect):
    """Every op the core differential draws (nests of nests, odd and wrapping values,
    every name and word) serializes to text that parses back to the same ops."""
    ops = ops_from(draws, cfg)
    trace = core.CoreTrace(cfg, ops, core.parse_core_expect(expect) if expect else None, comments)
    text = core.serialize(trace)
    assert core.is_core_trace(text)
    again = core.parse(text, "t.trace")
    assert again == trace and again.ops == ops and again.config == cfg
    assert core.serialize(again) == text


def test_the_op_text_is_hex_and_names_the_core_functions():
    ops = [("register", "R1", 0x0, 0x8000, 0x100000000), ("state_change", 0x2000, 0x1000, True),
           ("map", "D", 0x1000, 0x2000, 0x7F0000001000, False), ("replay", False, 0, 0x4000, 2),
           ("arm", "R2", -12), ("bitmap", "find_next_zero_bit", 300, 16),
           ("nest", "R0", 2, ("nest", "R1", 1, ("unregister", "V0")))]
    assert [differential.format_core_op(o) for o in ops] == [
        "register_listener(R1, 0x0, 0x8000, 0x100000000)",
        "state_change(0x2000, 0x1000, discard)",
        "map_dma(D, 0x1000, 0x2000, 0x7f0000001000, rw)",
        "replay_discarded(0x0, 0x4000, 2)",
        "arm(R2, ENOMEM)",
        "find_next_zero_bit(0x12c, 0x10)",
        "nest(R0)  (nested: 2 nest(R1)  (nested: 1 unregister_listener(V0)))",
    ]
    text = "\n".join([MAGIC, HEADER] + [differential.format_core_op(o) for o in ops]) + "\n"
    assert core.parse(text).ops == ops


def test_world_traces_are_not_core_traces():
    """The extension is compatible: no world trace of the corpus is taken for a core
    trace, and a core header is what a world parser would keep as a plain comment."""
    # (corpora/mutants/ holds both kinds: the kill traces of core-level mutants are
    # core traces.)
    world = [p for p in CORPORA.rglob("*.trace")
             if "core" not in p.parts and "mutants" not in p.parts]
    assert world
    for path in world:
        assert not core.is_core_trace(path.read_text()), path
    text = (CORPORA / "core" / "ok-every-op.trace").read_text()
    assert core.is_core_trace(text)
    with pytest.raises(TraceError):
        parse_world(text)  # a world parser refuses the core ops, it never misreads them


def test_state_keys_are_every_key_a_run_compares():
    """MISMATCH_KINDS (what an expect line may name) covers every state key."""
    system = differential._System("model", CoreConfig())
    assert tuple(system.state()) == STATE_KEYS
    assert set(STATE_KEYS) < set(MISMATCH_KINDS) and "result" in MISMATCH_KINDS


BAD = [
    # (lines after the magic line, line number, message)
    ([HEADER, "frob(0x0)"], 3, "unknown core op 'frob'"),
    ([HEADER, "state_change(4096, 0x1000, discard)"], 3,
     "state_change: argument offset '4096': addresses, sizes and bits are hex"),
    ([HEADER, "state_change(0x0, 0x1000, private)"], 3,
     "state_change: argument to_discard 'private' is not discard or populate"),
    ([HEADER, "unregister_listener(R9)"], 3,
     "unregister_listener: argument listener 'R9' is not a listener (R0, R1, R2, V0, V1)"),
    ([HEADER, "arm(V0, ENOMEM)"], 3, "arm: argument recorder 'V0' is not a recorder"),
    ([HEADER, "arm(R0, ENOPE)"], 3, "arm: argument errno: unknown errno 'ENOPE'"),
    ([HEADER, "map_dma(C, 0x0, 0x1000, 0x0, rw)"], 3, "map_dma: argument container 'C'"),
    ([HEADER, "replay_populated(0x0, 0x1000, 0x2)"], 3,
     "replay_populated: argument fail_at '0x2' is not a decimal count"),
    ([HEADER, "is_populated(0x0)"], 3, "is_populated takes 2 arguments (offset, size), not 1"),
    ([HEADER, "is_populated(0x10000000000000000, 0x0)"], 3, "does not fit in 64 bits"),
    ([HEADER, "is_populated(0x0, 0x1000) junk"], 3, "unexpected text after the op"),
    ([HEADER, "nest(R0)"], 3, "nest: the nested op is missing"),
    ([HEADER, "nest(R0)  (nested: 0 unregister_listener(R1))"], 3,
     "nested: '0' is not a callback number >= 1"),
    ([HEADER, "nest(R0)  (nested: 1 map_dma(D, 0x0, 0x1000, 0x0, rw))"], 3,
     "nested: a callback runs the manager's ops only (not map_dma)"),
    ([HEADER, "nest(R0)  (interleave: 1 unregister_listener(R1))"], 3,
     "unknown property 'interleave' of nest"),
    ([HEADER, "state_change(0x0, 0x1000, discard)  (fault: vfio.dma_map=ENOMEM)"], 3,
     "state_change takes no properties"),
    (["# core nblocks=8 colour=red"], 2, "unknown core header key 'colour'"),
    (["# core nblocks=0x20"], 2, "nblocks: '0x20' is not a decimal count"),
    (["# core nblocks=0"], 2, "nblocks: 0 is not in 1..4096"),
    (["# core block_size=0x1800"], 2, "block_size: 0x1800 is not a power of two"),
    (["# core block_size=4096"], 2, "block_size: '4096': sizes are hex"),
    (["# core rollback=some"], 2, "rollback: 'some' is not one of none, listeners, full, sources"),
    (["# core iommu=vfio"], 2, "iommu: 'vfio' is not one of type1, iommufd"),
    (["# core dma_entry_limit=-1"], 2, "dma_entry_limit: '-1' is not a decimal count"),
    (["# core nblocks=8 nblocks=8"], 2, "core header key 'nblocks' given twice"),
    ([HEADER, HEADER], 3, "the core header is given twice"),
    ([HEADER, "# design=hardened"], 3, "'design' is not a core header key"),
    ([HEADER, "# expect: mismatch colour"], 3, "expect: unknown kind of mismatch 'colour'"),
    ([HEADER, "# expect: mismatch order in frob"], 3, "expect: unknown core op 'frob'"),
    ([HEADER, "# expect: violation stale-mapping"], 3, "is not 'ok' or 'mismatch"),
    ([HEADER, "unregister_listener(R0)", "# expect: ok"], 4,
     "the expect line belongs in the header"),
]


@pytest.mark.parametrize("lines,lineno,message", BAD, ids=[b[2][:40] for b in BAD])
def test_strict_errors_name_the_line_and_the_field(lines, lineno, message):
    text = "\n".join([MAGIC] + lines) + "\n"
    with pytest.raises(TraceError) as info:
        core.parse(text, "bad.trace")
    assert str(info.value).startswith(f"bad.trace:{lineno}: "), str(info.value)
    assert message in info.value.message


def test_lenient_parsing_skips_with_a_warning():
    text = "\n".join([MAGIC, HEADER, "frob(0x0)", "unregister_listener(R0)"]) + "\n"
    trace = core.parse(text, "t.trace", strict=False)
    assert trace.ops == [("unregister", "R0")]
    assert trace.warnings == ["t.trace:3: unknown core op 'frob' (skipped)"]


def test_missing_header_keys_take_their_defaults():
    trace = core.parse(f"{MAGIC}\n# core rollback=full\nunregister_listener(R0)\n")
    assert trace.config == CoreConfig(rollback="full")


# -- a planted core bug: found, printed, replayed, minimized -------------------------------

# Two different inputs that reach the same planted bug: other configs, other ops, other
# arguments, the disagreement at another op index.
SAME_BUG = [
    (CoreConfig(nblocks=8), [("register", "R0", 0, 0x8000, 0),
                             ("state_change", 0x2000, 0x2000, False)]),
    (CoreConfig(nblocks=24, block_size=0x2000, rollback="listeners", iommu="iommufd",
                dma_entry_limit=0),
     [("map", "E", 0x1000, 0x1000, 0x3000, False), ("register", "R2", 0x4000, 0x8000, 0x100004000),
      ("is_populated", 0x4000, 0x2000), ("register", "V1", 0, 0x30000, 0x100000000),
      ("state_change", 0x4000, 0x4000, False)]),
]


@pytest.fixture
def planted(monkeypatch):
    """The pure twin with the bitmap set after the listeners are told."""
    monkeypatch.setattr(RBA, "state_change", populate_whole_notify_first)


def test_a_planted_bug_has_one_signature(planted):
    found = []
    for cfg, ops in SAME_BUG:
        assert differential.run(ops, cfg, REAL) == len(ops)  # the real core agrees
        with pytest.raises(DifferentialMismatch) as info:
            differential.run(ops, cfg, differential.impls_for())
        found.append(info.value)
    a, b = found
    assert isinstance(a, OrderViolation) and a.impl == "pure"
    assert a.index != b.index and a.op != b.op and str(a) != str(b)
    assert a.signature == b.signature == "core mismatch order in state_change"


def test_a_mismatch_shows_the_op_in_trace_syntax_and_the_values_in_hex(monkeypatch):
    """A result mismatch: the op as a trace writes it, each implementation's value."""
    real = RBA.is_populated

    def off_by_one_block(self, section):
        offset, size, oas = section
        return real(self, type(section)(offset, size + self.block_size, oas))

    monkeypatch.setattr(RBA, "is_populated", off_by_one_block)
    ops = [("state_change", 0x2000, 0x2000, False), ("is_populated", 0x2000, 0x2000)]
    with pytest.raises(DifferentialMismatch) as info:
        differential.run(ops, CoreConfig(nblocks=8), ("pure", "model"))
    assert str(info.value) == ("op 1 is_populated(0x2000, 0x2000): result differs\n"
                               "  pure: False\n  model: True")
    assert info.value.signature == "core mismatch result in is_populated"


def test_a_state_mismatch_shows_the_first_entry_that_differs(monkeypatch):
    from rig.check import model

    original = model.ModelRamBlockAttributes.register_listener

    def tail_insert(self, rdl, section):
        ret = original(self, rdl, section)
        if self.entries and self.entries[0][0] is rdl:
            self.entries.append(self.entries.pop(0))
        return ret

    monkeypatch.setattr(model.ModelRamBlockAttributes, "register_listener", tail_insert)
    ops = [("register", "R0", 0, 0x4000, 0), ("register", "R1", 0, 0x4000, 0)]
    with pytest.raises(DifferentialMismatch) as info:
        differential.run(ops, CoreConfig(), ("pure", "model"))
    assert str(info.value) == ("op 1 register_listener(R1, 0x0, 0x4000, 0x0): listeners differs\n"
                               "  pure: [R1, R0]\n  model: [R0, R1]")


def _crash(planted_harness="core_differential") -> bytes:
    """The first of a fixed stream of fuzzer inputs the planted bug trips."""
    rng = random.Random(0)
    harness = HARNESSES[planted_harness]
    for _ in range(400):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(16, 200)))
        try:
            harness.one_input(data)
        except OrderViolation:
            return data
    raise AssertionError("the planted bug was not found")


def test_the_harness_prints_its_input_as_a_core_trace(planted):
    data = _crash()
    harness = HARNESSES["core_differential"]
    lines = harness.explain(data)
    assert lines[0] == MAGIC and lines[1].startswith("# core nblocks=")
    assert lines[2] == f"# decoded from {len(data)} raw bytes by harness core_differential"
    assert core.parse("\n".join(lines) + "\n").ops == harness.decode_ops(data)[1]
    assert not any("('" in line for line in lines)  # no Python tuple reprs


def test_rig_replay_reports_the_planted_bug(planted, tmp_path, capsys):
    raw = tmp_path / "crash-1"
    raw.write_bytes(_crash())
    assert main(["replay", "--harness", "core_differential", str(raw)]) == 2
    out = capsys.readouterr().out
    assert f"replay: {raw} (raw input, harness core_differential)" in out
    assert "       MISMATCH notification order broken on pure" in out
    assert "outcome: mismatch order in state_change at op" in out
    # The same finding as a core trace file: the same report, op by op.
    text = core.serialize(HARNESSES["core_differential"].to_core_trace(raw.read_bytes()))
    path = tmp_path / "crash.trace"
    path.write_text(text)
    assert main(["replay", str(path)]) == 2
    report = capsys.readouterr().out
    assert report.splitlines()[1:] == out.splitlines()[1:]
    assert main(["replay", "--quiet", str(path)]) == 2
    assert capsys.readouterr().out.startswith(f"{path}: mismatch order in state_change at op ")
    assert main(["replay", "--json", str(path)]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["outcome"]["signature"] == "core mismatch order in state_change"
    assert doc["matches"] is None and doc["steps"][-1]["op"].startswith("state_change(")


def test_the_core_minimizer_shrinks_the_planted_bug_to_two_ops(planted, tmp_path):
    loaded = core.CoreTrace(*HARNESSES["core_differential"].decode_ops(_crash()))
    m = core.CoreMinimizer(loaded, differential.impls_for())
    m.minimize()
    small = core.finalize(m, len(loaded.ops))
    assert str(small.expect) == "mismatch order in state_change"
    assert len(small.ops) == 2 < len(loaded.ops)
    assert small.ops[-1][0] == "state_change" and small.ops[0][0] == "register"
    assert small.config.nblocks == 1  # the header shrank too
    assert small.comments[0].startswith("symptom: notification order: pure: ")
    text = core.serialize(small)
    assert core.parse(text) == small
    path, created = core.write(small, str(tmp_path))
    assert created and Path(path).name.startswith("core-order-state_change-none-")
    assert Path(path).read_text() == text
    assert core.write(small, str(tmp_path)) == (path, False)
    # As expected while the bug is planted (exit 0); on the real core it DIFFERS (exit 2).
    loaded_file = replay.load_input(path)
    result, lines = replay.replay_core(loaded_file, path)
    assert replay.core_exit_code(loaded_file, result) == 0, "\n".join(lines)
    assert lines[-1] == "expect: mismatch order in state_change (matches)"
    result, lines = replay.replay_core(loaded_file, path, "pure", differential=False)
    assert result.outcome.kind == "mismatch"  # the twin alone still breaks the order rule


def test_a_minimized_trace_differs_on_the_real_core(tmp_path):
    text = "\n".join([MAGIC, "# core nblocks=1", "# expect: mismatch order in state_change",
                      "register_listener(R0, 0x0, 0x1000, 0x0)",
                      "state_change(0x0, 0x1000, populate)"]) + "\n"
    path = tmp_path / "fixed.trace"
    path.write_text(text)
    assert main(["replay", "--quiet", str(path)]) == 2


def test_rig_minimize_of_a_core_trace(planted, tmp_path, capsys):
    path = tmp_path / "crash.trace"
    path.write_text(core.serialize(HARNESSES["core_differential"].to_core_trace(_crash())))
    assert main(["minimize", "--no-write", str(path)]) == 0
    out = capsys.readouterr().out
    assert "target mismatch order in state_change" in out
    assert out.rstrip().endswith("state_change(0x0, 0x1000, populate)")


def test_minimizing_an_ok_core_trace_is_a_usage_error(capsys):
    assert main(["minimize", "--no-write", str(CORPORA / "core" / "ok-every-op.trace")]) == 1
    assert "does not fail: nothing to minimize" in capsys.readouterr().err


def test_expect_patterns():
    entry = ("discard", (0x0, 0x1000, 0x0), True, True)
    error = DifferentialMismatch(3, ("unregister", "R0"), "log.R0", {"pure": [], "model": [entry]})
    assert str(error) == ("op 3 unregister_listener(R0): log.R0 differs\n"
                          "  entry 0 (of pure 0, model 1)\n"
                          "  pure: (none)\n"
                          "  model: discard 0x0+0x1000@0x0 (discarded: yes, listed: yes)")
    outcome = core.CoreOutcome.of(error)
    assert outcome.describe() == "mismatch log.R0 in unregister_listener at op 3"
    for text, matches in (("mismatch", True), ("mismatch log.R0", True),
                          ("mismatch in unregister_listener", True),
                          ("mismatch log.R0 in unregister_listener", True),
                          ("mismatch order", False), ("mismatch log.R0 in state_change", False),
                          ("ok", False)):
        assert core.parse_core_expect(text).matches(outcome) is matches, text
        assert str(core.parse_core_expect(text)) == text
    assert core.parse_core_expect("ok").matches(core.CoreOutcome.of(None))


def test_a_clean_raw_input_replays_ok(tmp_path, capsys):
    raw = tmp_path / "input"
    raw.write_bytes(bytes(range(64)))
    assert main(["replay", "--harness", "iommu", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "outcome: ok" in out
    ops = [line.split("(")[0].split()[-1] for line in out.splitlines() if line.startswith("#")]
    assert ops and set(ops) <= {"map_dma", "unmap_dma", "translate"}


def test_a_core_trace_reproduces_in_fresh_processes():
    """The 3/3 check rig minimize runs before writing replays core traces too."""
    from rig.trace.minimize import reproduces_in_fresh_processes

    text = (CORPORA / "core" / "ok-every-op.trace").read_text()
    assert reproduces_in_fresh_processes(text, 1)
    assert not reproduces_in_fresh_processes(text.replace("# expect: ok", "# expect: mismatch"), 1)


def test_malformed_core_input_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.trace"
    bad.write_text(f"{MAGIC}\n{HEADER}\nstate_change(0x0, 0x1000, sideways)\n")
    for command in ("replay", "minimize"):
        assert main([command, str(bad)]) == 1
        err = capsys.readouterr().err
        assert err == (f"rig {command}: {bad}:3: state_change: argument to_discard 'sideways' "
                       "is not discard or populate\n")
    assert main(["replay", "--lenient", "--quiet", str(bad)]) == 0
    assert capsys.readouterr().out == f"{bad}: ok\n"
