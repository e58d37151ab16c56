"""The op registry (rig.world.ops): each op declared once, on its World.op_* method, with
an explicit append-only id; and a new op reaches every driver with no edit there.

``extra_op`` registers a throwaway op for the length of a test (the registry is
restored after), so the generic paths are exercised without touching world.py: the
trace format, ``rig replay``, the decoder, the state machine, the mutator and the
minimizer.
"""

import random
import subprocess
import sys
from contextlib import contextmanager

import pytest

from rig.errors import EFAULT
from rig.world.config import WorldConfig
from rig.world.ops import OPS, OpSpec, nested_op, op, world_op
from rig.world.world import World

#: The ids every saved fuzz input depends on (rig.trace.decode's swarm mask): append a
#: row for a new op; a row that changes is a broken promise to every corpus.
PINNED_IDS = {
    "kvm_convert_memory": 0,
    "guest_touch": 1,
    "device_dma": 2,
    "vfio_register": 3,
    "vfio_unregister": 4,
    "listener_register": 5,
    "listener_unregister": 6,
    "replay": 7,
}


#: The ops the hints below were read from (the decoder named them before the registry).
FIRST_EIGHT = tuple(name for name, i in PINNED_IDS.items() if i < 8)


def pin_errors(ids: dict[str, int]) -> list[str]:
    """What is wrong with a registry's ``name -> id`` table against PINNED_IDS."""
    errors = [f"op {name}: id {ids.get(name)}, pinned {pinned}"
              for name, pinned in PINNED_IDS.items() if ids.get(name) != pinned]
    if len(set(ids.values())) != len(ids):
        errors.append("an id is used twice")
    new = {name: i for name, i in ids.items() if name not in PINNED_IDS}
    if new:
        errors.append(f"pin the new op's id here: {new}")
    return errors


def test_ids_are_pinned_and_never_reused():
    ids = {name: spec.id for name, spec in OPS.items()}
    assert not pin_errors(ids)
    # OPS is in id order (drivers draw in id order).
    assert list(ids.values()) == sorted(ids.values())


def test_the_pin_fails_when_an_id_changes_is_reused_or_is_new():
    ids = {name: spec.id for name, spec in OPS.items()}
    assert pin_errors({**ids, "replay": 9}) == ["op replay: id 9, pinned 7"]
    assert pin_errors({**ids, "replay": 6}) == ["op replay: id 6, pinned 7",
                                                "an id is used twice"]
    free = max(ids.values()) + 1
    assert pin_errors({**ids, "a_new_op": free}) == ["pin the new op's id here: "
                                                     f"{{'a_new_op': {free}}}"]


def test_every_op_is_a_world_method_and_dispatch_goes_through_the_registry():
    for name, spec in OPS.items():
        assert spec.impl is getattr(World, f"op_{name}"), name
        assert spec.doc and spec.name == name
    world = World(WorldConfig().validate())
    assert world.dispatch(op("guest_touch", 0x1000)) == 0
    assert world.dispatch(op("guest_touch", 0x10000000)) == -EFAULT


def test_hints_say_what_the_decoder_did_by_name():
    assert nested_op().name == "kvm_convert_memory"
    assert {n for n in FIRST_EIGHT if OPS[n].interleave} == {
        "kvm_convert_memory", "vfio_register", "vfio_unregister", "listener_register"}
    assert {n for n in FIRST_EIGHT if OPS[n].whole_blocks} == {"vfio_register",
                                                             "listener_register"}
    assert {n for n in FIRST_EIGHT if OPS[n].junk} == {"guest_touch", "device_dma"}
    assert OPS["device_dma"].groups == ((0,), (1, 2), (3,))
    assert OPS["guest_touch"].groups == ((0,),)


def test_the_registry_is_complete_when_only_ops_is_imported():
    """rig.world's package imports world.py, so OPS is never read half-filled."""
    code = "import rig.world.ops as o; print(' '.join(o.OPS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == list(OPS)


# -- the registry refuses what would break an encoding ------------------------------------

def _probe():
    def op_probe(self, gpa):
        return 0
    return op_probe


@pytest.mark.parametrize("id_, args, hints, message", [
    (0, ("gpa:addr",), {}, "already kvm_convert_memory's"),            # a reused id
    (-1, ("gpa:addr",), {}, "not an int >= 0"),
    (99, ("gpa:int",), {}, "unknown kind"),                            # no such arg kind
    (99, ("gpa:enum:a",), {}, "not enum:<a>|<b>"),
    (99, ("addr:addr",), {}, "does not take the declared arguments"),  # names disagree
    (99, ("gpa:addr",), {"nested": True}, "already the nested op"),
])
def test_the_registry_refuses(id_, args, hints, message):
    saved = dict(OPS)
    with pytest.raises(ValueError, match=message):
        world_op(id_, "a probe", args, **hints)(_probe())
    assert OPS == saved


def test_a_name_is_registered_once():
    def op_guest_touch(self, gpa):
        return 0
    with pytest.raises(ValueError, match="registered twice"):
        world_op(99, "again", ("gpa:addr",))(op_guest_touch)


# -- a throwaway op reaches every driver --------------------------------------------------

def op_probe_read(self, gpa: int) -> int:
    """The throwaway op: a vCPU reads the page at gpa (0), or -EFAULT outside RAM."""
    return 0 if self.block_at(gpa) is not None else -EFAULT


def next_id() -> int:
    return max(s.id for s in OPS.values()) + 1


@contextmanager
def extra_op(fn=op_probe_read, id_=None, args=("gpa:addr",), **hints):
    """Register ``fn`` as op ``fn.__name__[3:]`` with ``id_`` (default: the next free
    id) for the block's length."""
    saved = dict(OPS)
    try:
        world_op(next_id() if id_ is None else id_, fn.__doc__ or "a throwaway op", args,
                 **hints)(fn)
        yield OPS[fn.__name__[3:]]
    finally:
        OPS.clear()
        OPS.update(saved)


TRACE = """\
# gmem-rig trace v1
# design=hardened
vfio_register(0, 0x0, 0x10000)
probe_read(0x2000)
probe_read(0x20000)  (fault: vfio.dma_map=ENOSPC@1)
kvm_convert_memory(0x2000, 0x1000, shared)
"""


DOUBLE_BACKING = """\
# gmem-rig trace v1
# design=keep-shared ram=0x0+0x4000
kvm_convert_memory(0x2000, 0x1000, shared)
guest_touch(0x2000)
probe_read(0x3000)
kvm_convert_memory(0x2000, 0x1000, private)
guest_touch(0x2000)
"""


def test_a_new_op_parses_prints_and_runs():
    from rig.check.session import run
    from rig.trace.format import parse, serialize

    with extra_op() as spec:
        assert isinstance(spec, OpSpec) and list(OPS)[-1] == "probe_read"
        trace = parse(TRACE)
        assert [o.name for o in trace.ops][1:3] == ["probe_read", "probe_read"]
        assert "probe_read(0x20000)  (fault: vfio.dma_map=ENOSPC@1)" in serialize(trace)
        result = run(trace.config, trace.ops)
        assert [s.result for s in result.steps][1:3] == [0, -EFAULT]
        assert result.outcome.kind == "ok"
    with pytest.raises(ValueError, match="unknown op"):
        parse(TRACE)  # gone with its registration


def test_rig_replay_runs_a_new_op(tmp_path, capsys):
    from rig.cli.main import main

    path = tmp_path / "read.trace"
    path.write_text(TRACE)
    with extra_op():
        assert main(["replay", str(path)]) == 0
    out = capsys.readouterr().out
    assert "probe_read(0x20000)" in out and "EFAULT" in out


def test_the_mutator_and_the_minimizer_handle_a_new_op():
    from rig.trace.format import mutate_trace, parse
    from rig.trace.minimize import Minimizer

    with extra_op():
        trace = parse(TRACE)
        rng = random.Random(5)
        moved = 0
        for _ in range(300):
            mutated = mutate_trace(trace, rng)
            reads = [o for o in mutated.ops if o.name == "probe_read"]
            moved += any(o.args[0] not in (0x2000, 0x20000) for o in reads)
        assert moved, "the mutator never changed the new op's address"

        # A failing trace (keep-shared backs the page twice) with the new op in it: the
        # minimizer shrinks its address as it does any address.
        m = Minimizer(parse(DOUBLE_BACKING))
        assert m.shrink_args()
        assert [o.args for o in m.trace.ops if o.name == "probe_read"] == [(0x0,)]


def test_the_state_machine_draws_a_new_op():
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    from rig.drive import stateful

    with extra_op():
        machine = stateful._build_world_machine()
        assert hasattr(machine, "registered_op")
        recorded: list = []
        stateful._recorders.append(recorded)
        try:
            run_state_machine_as_test(machine, settings=settings(
                max_examples=30, stateful_step_count=20, derandomize=True, database=None,
                deadline=None, suppress_health_check=list(HealthCheck)))
        finally:
            stateful._recorders.remove(recorded)
    drawn = [o for m in recorded for o in m.ops if o.name == "probe_read"]
    assert drawn, "the generic rule never drew the new op"
    assert all(o.args[0] % 0x800 == 0 and o.args[0] < stateful.RAM_SIZE for o in drawn)


def test_the_generic_rule_exists_only_for_ops_without_a_rule():
    """While every op has a hand-written rule, the rules (and what the statemachine
    harness' bytes mean) are the hand-written ones."""
    from rig.drive import stateful

    machine = stateful._build_world_machine()
    ruled = {name for name in OPS if name in vars(machine)}
    assert ruled >= set(FIRST_EIGHT)
    assert hasattr(machine, "registered_op") == (ruled != set(OPS))


def test_the_state_machine_draws_interleavings_for_a_new_hot_plug_op():
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    from rig.drive import stateful

    def op_probe_register(self, dev, gpa, size):
        """A throwaway op with a device, a range and an interleaving."""
        return 0

    with extra_op(op_probe_register, None, ("dev:dev", "gpa:addr", "size:size"),
                  interleave=True, whole_blocks=True):
        machine = stateful._build_world_machine()
        recorded: list = []
        stateful._recorders.append(recorded)
        try:
            run_state_machine_as_test(machine, settings=settings(
                max_examples=40, stateful_step_count=25, derandomize=True, database=None,
                deadline=None, suppress_health_check=list(HealthCheck)))
        finally:
            stateful._recorders.remove(recorded)
    drawn = [o for m in recorded for o in m.ops if o.name == "probe_register"]
    assert any(o.args[1:] == (0x0, stateful.RAM_SIZE) for o in drawn)
    assert any(o.prop("interleave") for o in drawn)
    assert all(o.prop("interleave")[1].name == "kvm_convert_memory"
               for o in drawn if o.prop("interleave"))
