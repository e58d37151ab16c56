"""The decoder is generic over the op registry, and bytes keep their meaning.

``reference_decode`` is the decoder as it was before the registry (a frozen copy of its
swarm, op and nested-op parts, which named each of the 8 op kinds): for those kinds
every input must decode to exactly the trace it did then.  The comparison decodes with
``op_kinds=8`` (the 8 ops with ids 0..7), so it holds whatever ops are appended later;
``DIGEST`` pins the same, as a hash of what the frozen decoder produced.  The design is
given, not decoded, and ``_faults`` is the live one: the design pick and the fault specs
have encodings of their own, pinned elsewhere.

Then a throwaway op past the eighth: the mask grows a byte, the new kind is drawn when
its bit is set and only then, and ``op_kinds`` still gives the old meaning.
"""

import hashlib
import random

import pytest

from rig.trace import decode as live
from rig.trace.decode import DecodeOptions, decode, swarm_ops
from rig.trace.format import Trace, serialize
from rig.world.config import WorldConfig
from rig.world.ops import OPS, op

from tests.world.test_op_registry import extra_op

# -- the frozen reference ---------------------------------------------------------------

KINDS = ("kvm_convert_memory", "guest_touch", "device_dma", "vfio_register",
         "vfio_unregister", "listener_register", "listener_unregister", "replay")


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self.pos += 1
            return 0
        value = self.data[self.pos]
        self.pos += 1
        return value

    def below(self, n: int) -> int:
        if n <= 1:
            self.byte()
            return 0
        if n <= 256:
            return self.byte() % n
        return (self.byte() | self.byte() << 8) % n

    def chance(self, numerator: int, denominator: int = 256) -> bool:
        return self.byte() < numerator * 256 // denominator

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)


def reference_decode(data: bytes, options: DecodeOptions):
    assert options.design, "the comparison gives the design"
    r = Reader(data)
    design = options.design
    layout = live.LAYOUTS[r.below(len(live.LAYOUTS))]
    hugetlb = r.chance(1, 16)
    if hugetlb:
        layout = live.HUGETLB_LAYOUT
    cfg = WorldConfig(
        design=design,
        iommu=("type1", "iommufd")[r.below(2)],
        dma_entry_limit=live.LIMITS[r.below(len(live.LIMITS))],
        max_memslots=r.below(4),
        block_size=live.BLOCK_SIZES[r.below(len(live.BLOCK_SIZES))],
        hugetlb=hugetlb,
        ram=layout,
        memlock_limit=None if r.chance(7, 8) else (4 + r.below(28)) * 0x1000,
    )
    if options.faults == "seeded":
        seed = r.byte() | r.byte() << 8 | r.byte() << 16
        cfg = cfg.with_(faults="seeded", seed=seed, p_activate=0.3, p_fire=0.15)
    else:
        for _ in range(3):
            r.byte()
    mask_byte = r.byte()
    junk = bool(mask_byte & 0x01)
    mask = mask_byte | 0x01
    weights = [(1 + r.below(4)) if mask >> i & 1 else 0 for i in range(len(KINDS))]
    table = [kind for kind, w in zip(KINDS, weights) for _ in range(w)]
    ops = []
    while not r.exhausted and len(ops) < options.ops_max:
        ops.append(_ref_op(r, cfg, table, options, junk))
    return cfg, ops


def _ref_address(r, cfg, junk=True):
    bs = cfg.block_size
    pick = r.below(16)
    block = cfg.ram[r.below(len(cfg.ram))]
    if pick < 12 or not junk:
        return block.gpa + r.below(block.size // bs) * bs
    if pick < 14:
        return block.gpa + r.below(block.size // 0x1000) * 0x1000
    if pick < 15:
        return block.gpa + block.size
    return block.gpa + r.below(block.size) | 0x800


def _ref_size(r, cfg, junk=True):
    pick = r.below(16)
    if pick < 12:
        return (1 + r.below(4)) * cfg.block_size
    if pick < 15 or not junk:
        return (1 + r.below(16)) * cfg.block_size
    return (0, 0x800, 0x1000)[r.below(3)]


def _ref_range(r, cfg, junk):
    addr, size = _ref_address(r, cfg, junk), _ref_size(r, cfg, junk)
    if not junk:
        block = next(b for b in cfg.ram if b.gpa <= addr < b.gpa + b.size)
        size = min(size, block.gpa + block.size - addr)
    return addr, size


def _ref_op(r, cfg, table, options, junk):
    kind = table[r.below(len(table))]
    dev = r.below(3)
    if kind in ("kvm_convert_memory", "replay"):
        args = (*_ref_range(r, cfg, junk), bool(r.below(2)))
    elif kind == "guest_touch":
        args = (_ref_address(r, cfg),)
    elif kind == "device_dma":
        args = (dev, _ref_address(r, cfg), _ref_size(r, cfg), bool(r.below(2)))
    elif kind in ("vfio_register", "listener_register"):
        block = cfg.ram[r.below(len(cfg.ram))]
        if r.chance(3, 4):
            gpa, size = block.gpa, block.size
        else:
            gpa, size = _ref_range(r, cfg, junk)
        args = (dev, gpa, size)
    else:
        args = (dev,)
    props = {}
    if options.faults == "explicit" and r.chance(1, 4):
        props["fault"] = live._faults(r)
    if kind in ("vfio_register", "vfio_unregister", "listener_register",
                "kvm_convert_memory") and r.chance(1, 8):
        props["interleave"] = (live.POINTS[r.below(len(live.POINTS))],
                               _ref_nested(r, cfg, junk, kind, args))
    return op(kind, *args, **props)


def _ref_nested(r, cfg, junk, kind, args):
    base = None
    if kind == "kvm_convert_memory":
        base = args[0], args[1]
    elif kind in ("vfio_register", "listener_register"):
        base = args[1], args[2]
    mode = r.below(4)
    if base is None or mode >= 2 or base[1] < cfg.block_size:
        return op("kvm_convert_memory", *_ref_range(r, cfg, junk), bool(r.below(2)))
    bs = cfg.block_size
    if mode == 0:
        addr, size = base
    else:
        addr = base[0] + r.below(base[1] // bs) * bs
        size = _ref_size(r, cfg, junk)
        block = next((b for b in cfg.ram if b.gpa <= addr < b.gpa + b.size), None)
        if not junk and block is not None:
            size = min(size, block.gpa + block.size - addr)
    if kind == "kvm_convert_memory":
        to_private = args[2] if r.below(4) == 3 else not args[2]
    else:
        to_private = bool(r.below(2))
    return op("kvm_convert_memory", addr, size, to_private)


# -- the comparison ---------------------------------------------------------------------

def inputs(n: int, seed: int):
    """``n`` pseudo-random inputs of assorted lengths (a fixed seed: the same every run)."""
    rng = random.Random(seed)
    for _ in range(n):
        size = rng.choice((0, 1, 5, 12, 13, 14, 20, 40, 80, 160, 300))
        yield bytes(rng.randrange(256) for _ in range(size))


EIGHT = dict(op_kinds=8)
OPTIONS = [DecodeOptions(design="hardened", **EIGHT),
           DecodeOptions(design="qemu-10.1", faults="explicit", **EIGHT),
           DecodeOptions(design="uncoordinated", faults="explicit", **EIGHT),
           DecodeOptions(design="inplace", faults="explicit", ops_max=8, **EIGHT)]


def _features(ops) -> set:
    """What a decoded run exercised: each kind, each interleaved outer kind, whole-block
    sections, faults (so a comparison that passes has compared something)."""
    out = set()
    for o in ops:
        out.add(o.name)
        if o.prop("interleave"):
            at, nested = o.prop("interleave")
            out.add(("interleave", o.name))
            if o.name == "kvm_convert_memory" and nested.args[:2] == o.args[:2]:
                out.add("same range")
        if o.prop("fault"):
            out.add("fault")
    return out


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o.design}-{o.faults}")
def test_every_input_decodes_as_before_the_registry(options):
    seen = set()
    for data in inputs(3000, 2024):
        cfg, ops = decode(data, options)
        assert (cfg, ops) == reference_decode(data, options), data.hex()
        seen |= _features(ops)
    expected = set(KINDS) | {("interleave", k) for k in (
        "kvm_convert_memory", "vfio_register", "vfio_unregister", "listener_register")}
    expected.add("same range")
    if options.faults == "explicit":
        expected.add("fault")
    assert expected <= seen, expected - seen


def test_the_comparison_can_fail():
    """The frozen reference tells a changed decoding apart: a different swarm byte."""
    data = bytes(range(10)) + b"\x02" + bytes(range(40, 120))
    changed = bytes(range(10)) + b"\x04" + bytes(range(40, 120))
    assert reference_decode(data, OPTIONS[0]) != reference_decode(changed, OPTIONS[0])
    assert decode(data, OPTIONS[0]) == reference_decode(data, OPTIONS[0])


#: sha256 over the serialized traces the frozen decoder gave for inputs(3000, 2024) in
#: DIGEST_OPTIONS, recorded before the decoder became generic.
DIGEST = "fd6272b6c5682310244fc11420d8df64140d84ed1156359652b86b4ff0b17cf5"
DIGEST_OPTIONS = [DecodeOptions(design="qemu-10.1", **EIGHT),
                  DecodeOptions(design="hardened", ops_max=12, **EIGHT)]


def test_the_decoded_traces_hash_as_recorded():
    h = hashlib.sha256()
    for options in DIGEST_OPTIONS:
        for data in inputs(3000, 2024):
            cfg, ops = decode(data, options)
            h.update(serialize(Trace(cfg, ops, None, [])).encode())
    assert h.hexdigest() == DIGEST


def test_every_registered_op_decodes_as_the_first_8_while_they_are_all():
    """``op_kinds`` past the last id is the registry as it is."""
    last = max(s.id for s in OPS.values())
    for data in inputs(300, 11):
        assert decode(data, DecodeOptions(op_kinds=last + 1)) == decode(data)
        assert decode(data, DecodeOptions(op_kinds=last + 100)) == decode(data)


def test_the_swarm_needs_op_0():
    with pytest.raises(ValueError, match="op 0"):
        swarm_ops(DecodeOptions(op_kinds=0))
    assert [s.id for s in swarm_ops(DecodeOptions(op_kinds=3))] == [0, 1, 2]


# -- a kind past the eighth -------------------------------------------------------------

# The fixed part of the header with the design given and seeded faults: 10 bytes (a
# memlock byte below 224: no limit), then the swarm.
HEAD = bytes(10)
HARDENED = DecodeOptions(design="hardened")


def swarm(enabled, weight: int = 0) -> bytes:
    """The swarm bytes that enable the ops with ids ``enabled`` (and op 0, always on;
    junk off), each with weight ``1 + weight``, for the registry as it is."""
    ids = [s.id for s in OPS.values()]
    mask = sum(1 << i for i in set(enabled))
    width = max(ids) // 8 + 1
    kinds = sum(1 for i in ids if i == 0 or mask >> i & 1)
    return mask.to_bytes(width, "little") + bytes([weight]) * kinds


def _names(data: bytes, options=HARDENED) -> set:
    return {o.name for o in decode(data, options)[1]}


def test_a_kind_past_the_eighth_widens_the_mask_and_is_drawn_by_its_bit():
    rng = random.Random(4)
    bodies = [bytes(rng.randrange(256) for _ in range(120)) for _ in range(100)]
    with extra_op() as spec:
        assert spec.id >= 8 and len(swarm(())) == spec.id // 8 + 1 + 1
        # Its bit on, every other off (but op 0's): the two kinds are drawn, no other.
        drawn = set()
        for body in bodies:
            drawn |= _names(HEAD + swarm({spec.id}) + body)
        assert drawn == {"kvm_convert_memory", "probe_read"}
        # Its bit off: never drawn, though every other kind is on.
        others = {s.id for s in OPS.values()} - {spec.id}
        drawn = set()
        for body in bodies:
            drawn |= _names(HEAD + swarm(others, 3) + body)
        assert "probe_read" not in drawn and drawn >= set(KINDS)
        # op_kinds=8: the old one-byte meaning, whatever is registered after.
        for body in bodies[:20]:
            data = HEAD + body
            assert decode(data, DecodeOptions(design="hardened", op_kinds=8)) == \
                reference_decode(data, DecodeOptions(design="hardened"))


def test_a_retired_id_leaves_its_bit_empty():
    """Ids need not be dense: an op 9 ids past the last makes the mask wider, and the
    bits of the ids between enable nothing."""
    from tests.world.test_op_registry import next_id

    gap = range(next_id(), next_id() + 9)
    with extra_op(id_=gap.stop) as spec:
        rng = random.Random(6)
        drawn = set()
        for _ in range(60):
            body = bytes(rng.randrange(256) for _ in range(100))
            drawn |= _names(HEAD + swarm({*gap, spec.id}) + body)
        assert drawn == {"kvm_convert_memory", "probe_read"}


def test_a_new_interleavable_op_gets_nested_conversions_from_its_range():
    def op_probe_register(self, dev, gpa, size):
        """A throwaway hot-plug-like op."""
        return 0

    with extra_op(op_probe_register, None, ("dev:dev", "gpa:addr", "size:size"),
                  interleave=True, whole_blocks=True) as spec:
        rng = random.Random(8)
        inside = 0
        for _ in range(400):
            body = bytes(rng.randrange(256) for _ in range(150))
            for o in decode(HEAD + swarm({spec.id}, 2) + body, HARDENED)[1]:
                if o.name == "probe_register" and o.prop("interleave"):
                    nested = o.prop("interleave")[1]
                    assert nested.name == "kvm_convert_memory"
                    inside += o.args[1] <= nested.args[0] < o.args[1] + o.args[2]
        assert inside >= 10
