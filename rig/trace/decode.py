"""The one decoder: arbitrary bytes -> a valid trace (config + ops), for every harness.

Total by construction: every byte string decodes (running out of bytes reads zeros), so
any libFuzzer input or crash file prints as a text trace.  Small byte changes make small
trace changes: the header takes a fixed number of bytes, then each op consumes its own.

Swarm testing (Groce et al., 2012): the header picks which op kinds this input may use
and how they are weighted, so different inputs explore different mixes.  It also picks whether
conversions and sections may take junk ranges (unaligned, in a gap, crossing a block's
end).  QEMU's designs stop the VM on the first such conversion, so with junk always on
half of the qemu-10.1 runs ended there, at 7.5 ops per run against 15.6 on hardened
(measured over 2,000 random inputs); the inputs that turn junk off reach deeper states.

The op kinds are the registry's (rig.world.ops.OPS), in id order; nothing here names
one.  After the header, the swarm:

- the mask, ``max_id // 8 + 1`` bytes, little-endian: bit ``id`` enables the op with that
  id (ids are explicit and append-only).  Up to 8 kinds that is the one byte it has
  always been, so saved inputs keep their meaning; a ninth kind makes it two bytes.  Op
  0 (kvm_convert_memory) is always on, so bit 0 says instead whether ranges may be junk.
  A bit with no op (a retired id) enables nothing;
- one byte per enabled kind, in id order: its weight, 1 to 4.

Then each op: a byte picking its kind from the weighted table; a device byte (read for
every op, whether or not it takes a device); its arguments group by group
(``OpSpec.groups``: a range, an address, a size, an enumeration, as ``_group`` draws
them); with explicit faults, a byte (1 in 4: a fault property follows, ``_faults``); and
for an op that may carry an interleaving, a byte (1 in 8: a point and the nested op
follow, ``_nested``).  ``DecodeOptions.op_kinds`` decodes as if only the ops with ids
below it existed: the meaning bytes had before later ops were added.

A design (when the harness does not fix one) and a fault site are picked from one byte
by their registry id, never their position (``pick_id``), so appending a design or a
site keeps the meaning of every byte that names one.  The fuzz dictionaries are built by
this decoder's inverse (rig.trace.dictionaries): after changing a read here, regenerate
them with ``python -m rig.trace.dictionaries fuzz``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.world.faults import SITES, FaultSpec
from rig.world.ops import OPS, POINT_ATTR, Op, OpSpec, before_point, nested_op, op
from rig.world.config import X86_LAYOUT, RamSpec, WorldConfig
from rig.world.designs import BUILT_IN  # (external designs have no id: never decoded)

OPS_MAX = 40

LAYOUTS = (
    (RamSpec(0x0, 0x10000),),
    X86_LAYOUT,                                            # below and above 4 GiB
    (RamSpec(0x0, 0x8000), RamSpec(0x8000, 0x8000)),        # two adjacent blocks
    (RamSpec(0x0, 0x40000),),
)
#: hugetlb shared memory needs 2 MiB-aligned blocks: two huge pages.
HUGETLB_LAYOUT = (RamSpec(0x0, 0x400000),)
LIMITS = (65535, 4, 8, 16)
BLOCK_SIZES = (0x1000, 0x1000, 0x1000, 0x2000)
#: Device numbers drawn: 0 to DEVICES - 1.
DEVICES = 3

#: Fault sites and designs are picked by their registry id, never by a position: byte
#: ``v`` picks the entry with id ``v % ID_SPACE`` when there is one, and otherwise the
#: ``v % len(ids)``-th id in id order (``pick_id``).  Ids are append-only and below
#: ID_SPACE, so a byte that is an id (every byte below ``len(ids)`` while the ids have no
#: holes, every dictionary token's byte) names that entry for good; adding an entry
#: reassigns only the fallback bytes, which name no id.  32 leaves room for three times
#: today's sites; an id past it is refused at import (the pick would need a second byte).
ID_SPACE = 32


def pick_id(v: int, ids: tuple[int, ...]) -> int:
    """The id byte ``v`` picks among ``ids`` (sorted): the id ``v % ID_SPACE`` if it is
    one of them, else ``ids[v % len(ids)]``."""
    if v % ID_SPACE in ids:
        return v % ID_SPACE
    return ids[v % len(ids)]


def _id_table(what: str, entries: dict[int, object]) -> tuple[dict, tuple[int, ...]]:
    ids = tuple(sorted(entries))
    too_big = [i for i in ids if i >= ID_SPACE]
    if too_big:
        raise ValueError(f"{what} id {too_big[0]} is not below ID_SPACE ({ID_SPACE}): the "
                         "decoder picks it from one byte (rig.trace.decode.pick_id)")
    return entries, ids


#: id -> site and id -> design name, and the ids in order, as the decoder picks them.
SITE_BY_ID, SITE_IDS = _id_table("fault site", {s.id: s for s in SITES.values()})
DESIGN_BY_ID, DESIGN_IDS = _id_table("design", {c.id: n for n, c in BUILT_IN.items()})


class Reader:
    """Consumes bytes; past the end every read is 0 (so decoding never fails)."""

    __slots__ = ("data", "pos", "size")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.size = len(data)

    def byte(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < self.size else 0

    def below(self, n: int) -> int:
        """An int in [0, n), from one byte (two when n > 256).  (The decoder's most
        called function: one byte read inline.)"""
        if n <= 256:
            pos = self.pos
            self.pos = pos + 1
            return self.data[pos] % n if n > 1 and pos < self.size else 0
        return (self.byte() | self.byte() << 8) % n

    def chance(self, numerator: int, denominator: int = 256) -> bool:
        return self.byte() < numerator * 256 // denominator

    @property
    def exhausted(self) -> bool:
        return self.pos >= self.size


@dataclass(frozen=True)
class DecodeOptions:
    """What a harness fixes instead of decoding: the design, the fault mode."""

    design: str | None = None
    faults: str = "seeded"       # seeded (seed from the bytes) | explicit (per-op props)
    ops_max: int = OPS_MAX
    #: Decode as if only the ops with an id below this were registered (None: every op);
    #: see the module docstring.
    op_kinds: int | None = None


def decode(data: bytes, options: DecodeOptions = DecodeOptions()) -> tuple[WorldConfig, list[Op]]:
    r = Reader(data)
    design = options.design or DESIGN_BY_ID[pick_id(r.byte(), DESIGN_IDS)]
    layout = LAYOUTS[r.below(len(LAYOUTS))]
    hugetlb = r.chance(1, 16)
    if hugetlb:
        layout = HUGETLB_LAYOUT
    cfg = WorldConfig(
        design=design,
        iommu=("type1", "iommufd")[r.below(2)],
        dma_entry_limit=LIMITS[r.below(len(LIMITS))],
        max_memslots=r.below(4),
        block_size=BLOCK_SIZES[r.below(len(BLOCK_SIZES))],
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
    return cfg, _swarm_and_ops(r, cfg, options)


def decode_ops(data: bytes, config: WorldConfig,
               options: DecodeOptions = DecodeOptions()) -> list[Op]:
    """The ops ``decode`` would give after its header, for a world the caller fixes
    (rig sweep's cells: a design, a guest shape and a fault plan): ``data`` begins at the
    swarm.  ``options.faults`` says only whether ops carry explicit fault properties."""
    return _swarm_and_ops(Reader(data), config, options)


def _swarm_and_ops(r: Reader, cfg: WorldConfig, options: DecodeOptions) -> list[Op]:
    # Swarm: a mask of enabled kinds and a weight per kind (the module docstring).
    # Conversions are always on, so bit 0 of the mask says instead whether ranges may be
    # junk.
    specs = swarm_ops(options)
    mask = 0
    for i in range(specs[-1].id // 8 + 1):
        mask |= r.byte() << 8 * i
    junk = bool(mask & 0x01)
    mask |= 0x01
    table: list[OpSpec] = []
    for spec in specs:
        if mask >> spec.id & 1:
            table += [spec] * (1 + r.below(4))
    ops: list[Op] = []
    while not r.exhausted and len(ops) < options.ops_max:
        ops.append(decode_op(r, cfg, table, options, junk=junk))
    return ops


def swarm_ops(options: DecodeOptions = DecodeOptions()) -> tuple[OpSpec, ...]:
    """The op kinds the swarm draws from, in id order: every registered op, or those
    with an id below ``options.op_kinds``.  Op 0 is always among them (always on)."""
    specs = tuple(s for s in OPS.values()
                  if options.op_kinds is None or s.id < options.op_kinds)
    if not specs or specs[0].id != 0:
        raise ValueError("the swarm needs op 0 (always on) among its kinds")
    return specs


def _address(r: Reader, cfg: WorldConfig, junk: bool = True) -> int:
    """Mostly a block-aligned address inside RAM; with ``junk``, sometimes a page, a gap
    or an unaligned address."""
    bs = cfg.block_size
    pick = r.below(16)
    block = cfg.ram[r.below(len(cfg.ram))]
    if pick < 12 or not junk:
        return block.gpa + r.below(block.size // bs) * bs
    if pick < 14:
        return block.gpa + r.below(block.size // 0x1000) * 0x1000
    if pick < 15:
        return block.gpa + block.size  # just past the block: a gap or the next block
    return block.gpa + r.below(block.size) | 0x800  # unaligned


def _size(r: Reader, cfg: WorldConfig, junk: bool = True) -> int:
    pick = r.below(16)
    if pick < 12:
        return (1 + r.below(4)) * cfg.block_size
    if pick < 15 or not junk:
        return (1 + r.below(16)) * cfg.block_size
    return (0, 0x800, 0x1000)[r.below(3)]


def _range(r: Reader, cfg: WorldConfig, junk: bool) -> tuple[int, int]:
    """An (address, size) pair; without ``junk`` it is block-aligned and stays inside the
    RAM block it starts in."""
    addr, size = _address(r, cfg, junk), _size(r, cfg, junk)
    if not junk:
        block = next(b for b in cfg.ram if b.gpa <= addr < b.gpa + b.size)
        size = min(size, block.gpa + block.size - addr)
    return addr, size


#: How many hits in a row an explicit fault fails: mostly one; sometimes enough to make a
#: retry loop go round again, up to 7 (hardened retries an undo step 8 times; a fault
#: that outlasts that is its documented limit, which corpora/regressions/ pins, not
#: something a campaign on hardened should report over and over: the world harnesses
#: also drop a second spec that would extend a run past it, rig.drive.harnesses).
FAULT_COUNT_MAX = 7
FAULT_COUNTS = (1, 1, 1, 1, 1, 2, 3, FAULT_COUNT_MAX)


def _faults(r: Reader) -> tuple:
    """A fault property: a byte for one or two specs, then per spec a site byte (by id,
    ``pick_id``), an errno, the nth hit, the partial progress (partial sites only) and
    the count (rig.trace.dictionaries.encode_faults is the inverse)."""
    specs = []
    for _ in range(1 + r.below(2)):
        site = SITE_BY_ID[pick_id(r.byte(), SITE_IDS)]
        errno = -site.errnos[r.below(len(site.errnos))]
        nth = 1 + r.below(3)
        partial = r.below(4) if site.partial else None
        count = FAULT_COUNTS[r.below(len(FAULT_COUNTS))]
        specs.append(FaultSpec(site.name, errno, nth, partial, count))
    return tuple(specs)


def decode_op(r: Reader, cfg: WorldConfig, table, options: DecodeOptions,
              junk: bool = True) -> Op:
    """One op: its kind from the swarm's weighted ``table`` of specs, a device byte, its
    arguments, then its properties (the module docstring)."""
    spec = table[r.below(len(table))]
    dev = r.below(DEVICES)
    args = _args(r, cfg, spec, dev, junk)
    props = {}
    if options.faults == "explicit" and r.chance(1, 4):
        props["fault"] = _faults(r)
    if spec.interleave and r.chance(1, 8):
        props["interleave"] = (_point(r), _nested(r, cfg, junk, spec, args))
    return op(spec.name, *args, **props)


def _args(r: Reader, cfg: WorldConfig, spec: OpSpec, dev: int, junk: bool) -> tuple:
    """Every argument of ``spec``, group by group (``OpSpec.groups``)."""
    values: tuple = ()
    for group in spec.groups:
        values += _group(r, cfg, spec, group, dev, junk)
    return values


def _group(r: Reader, cfg: WorldConfig, spec: OpSpec, group: tuple, dev: int,
           junk: bool) -> tuple:
    """The values of one group of ``spec``'s arguments: a device is ``dev`` (the op's
    device byte); a range is ``_range``, except that for a ``whole_blocks`` op it is,
    three times in four, a whole RAM block, as QEMU's sections are; an address is
    ``_address``, a size ``_size``; an enumeration is one byte.  A ``junk`` op keeps junk
    on whatever the swarm says: a device DMA or a touch outside RAM is an error the
    oracle judges, not a VM stop."""
    junk = junk or spec.junk
    kind = spec.args[group[0]].kind
    if len(group) == 2:
        if spec.whole_blocks:
            block = cfg.ram[r.below(len(cfg.ram))]
            if r.chance(3, 4):
                return block.gpa, block.size
        return _range(r, cfg, junk)
    if kind == "dev":
        return (dev,)
    if kind == "addr":
        return (_address(r, cfg, junk),)
    if kind == "size":
        return (_size(r, cfg, junk),)
    return (bool(r.below(2)),)


#: Interleaving points, one byte: after the 1st..4th notification (trace v1), before the
#: 1st or 2nd (the bitmap changed, the listener not yet), or right after the op's
#: KVM_SET_MEMORY_ATTRIBUTES (before the state manager: QEMU's unlocked vCPU window).
POINTS = (1, 2, 3, 4, before_point(1), before_point(2), POINT_ATTR, POINT_ATTR)


def _point(r: Reader):
    return POINTS[r.below(len(POINTS))]


def _nested(r: Reader, cfg: WorldConfig, junk: bool, outer: OpSpec, args: tuple) -> Op:
    """The op interleaved into an ``outer`` op with ``args``: the registry's nested op, a
    conversion.  Half the time its range is drawn from the outer op's own (first) range
    (the same range, or one starting inside it), and then, when the outer op is a
    conversion too, mostly in the other direction: a conversion racing back over the
    pages the outer conversion is converting, or into the section a hot-plug is
    replaying.  Drawn independently, the two ranges rarely meet on the larger layouts,
    and a conversion raced back over its own pages needs both the overlap and the
    opposite direction.  A device byte comes first if the nested op takes a device."""
    spec = nested_op()
    base = outer.first_range(args)
    own = next((g for g in spec.groups if len(g) == 2), None)
    mode = r.below(4)  # 0: the same range, 1: a range starting inside it, 2-3: any
    dev = r.below(DEVICES) if any(a.kind == "dev" for a in spec.args) else 0
    if base is None or own is None or mode >= 2 or base[1] < cfg.block_size:
        return op(spec.name, *_args(r, cfg, spec, dev, junk))
    values: tuple = ()
    for group in spec.groups:
        if group is own:
            values += _drawn_from(r, cfg, junk or spec.junk, base, mode)
        elif spec.args[group[0]].words is not None and outer.name == spec.name:
            theirs = args[group[0]]
            values += (theirs if r.below(4) == 3 else not theirs,)  # zeros: the other way
        else:
            values += _group(r, cfg, spec, group, dev, junk)
    return op(spec.name, *values)


def _drawn_from(r: Reader, cfg: WorldConfig, junk: bool, base: tuple[int, int],
                mode: int) -> tuple[int, int]:
    """A range drawn from ``base``: itself (mode 0), or one starting at a block inside
    it (mode 1), clipped to its RAM block when junk is off."""
    if mode == 0:
        return base
    bs = cfg.block_size
    addr = base[0] + r.below(base[1] // bs) * bs
    size = _size(r, cfg, junk)
    block = next((b for b in cfg.ram if b.gpa <= addr < b.gpa + b.size), None)
    if not junk and block is not None:
        size = min(size, block.gpa + block.size - addr)
    return addr, size


__all__ = ["decode", "DecodeOptions", "Reader"]
