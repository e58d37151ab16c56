"""The fuzz dictionaries, generated: fuzz/convert.dict, fuzz/convert_explicit.dict and
fuzz/trace_text.dict, from the registries and the decoder.

    python -m rig.trace.dictionaries fuzz        write the three files into fuzz/
    python -m rig.trace.dictionaries --check fuzz  exit 1 if a file there is stale

The binary dictionaries' tokens are byte layouts of rig.trace.decode, built by an encoder:
the inverse of the decoder's reads (``Writer`` answers each ``Reader`` call with the byte
that makes it return the wanted value), so given the wanted config fields, swarm, op or
fault property it produces the bytes.  Every binary token carries a comment that says
what it decodes to, in a form ``check()`` verifies by decoding:

    # decodes: EXPR -> RESULT

EXPR is the input: token names of the same dictionary and single bytes (``0xff``),
concatenated in order; it names the token under the comment.  RESULT is one of
``key=value ...`` (header words the decoded trace's header has), ``kinds: OP ... junk=
yes|no`` (the swarm's weighted table of op kinds, in order, and whether ranges may be
junk), or one op line as a trace prints it (what EXPR decodes to, and nothing else; a
token at the end of EXPR must also be whole: EXPR with the token twice decodes to the op
twice).  trace_text.dict is the words of the text format, grouped under
``# grammar: KIND`` comments that ``check_text()`` verifies word by word (an op name, a
fault site with an errno it can return, an invariant, a header key and value, ...).

The output is the same bytes on every run.  A test regenerates the files and compares
(tests/fuzz/test_dictionaries.py): edit a registry or a decoder read, then run the first
command above.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from rig.errors import ERRNO_BY_NAME, errno_name
from rig.check.oracle import INVARIANTS
from rig.trace import decode as dec
from rig.trace.decode import DecodeOptions, decode
from rig.trace.format import (MAGIC, Trace, format_header, format_value, parse_expect,
                              parse_op_line, parse_value, serialize)
from rig.world.config import CONFIG_FIELDS, OPTIONAL_FIELDS, RamSpec, WorldConfig
from rig.world.designs import BUILT_IN, DESIGNS, ensure
from rig.world.faults import SITES, FaultSpec
from rig.world.ops import OPS, POINT_ATTR, Op, OpSpec, before_point, format_op, nested_op, op

#: The binary dictionaries and how their harness decodes (rig.drive.harnesses): the
#: harnesses fix the design, so no design byte is read and the design named here changes
#: no byte of any token.
BINARY = {
    "convert": DecodeOptions(design="hardened", faults="seeded"),
    "convert_explicit": DecodeOptions(design="hardened", faults="explicit"),
}
TEXT = "trace_text"
FILES = (*BINARY, TEXT)


class EncodeError(ValueError):
    """The decoder cannot produce the wanted value from any byte, in this context."""


# -- the encoder: Reader's inverse ------------------------------------------------------

class Writer:
    """Bytes for a Reader: each call emits what makes the Reader call of the same name
    return ``value``."""

    def __init__(self):
        self.data = bytearray()

    def byte(self, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise EncodeError(f"byte {value} is not in 0..255")
        self.data.append(value)

    def below(self, n: int, value: int) -> None:
        if not 0 <= value < max(n, 1):
            raise EncodeError(f"{value} is not below {n}")
        if n <= 256:
            self.byte(value)
        else:
            self.byte(value & 0xFF)
            self.byte(value >> 8)

    def chance(self, numerator: int, denominator: int, value: bool) -> None:
        threshold = numerator * 256 // denominator
        if value and threshold == 0 or not value and threshold > 0xFF:
            raise EncodeError(f"chance {numerator}/{denominator} cannot be {value}")
        self.byte(0 if value else 0xFF)

    def choice(self, table: tuple, value, what: str) -> None:
        """``table[r.below(len(table))] == value``: the first index that holds it."""
        if value not in table:
            raise EncodeError(f"{what} {value!r} is not one of {table!r}")
        self.below(len(table), table.index(value))


def encode_header(options: DecodeOptions, **fields) -> bytes:
    """The header bytes (rig.trace.decode.decode, up to the swarm) of a world with these
    config fields: ram, hugetlb, iommu, dma_entry_limit, max_memslots, block_size,
    memlock_limit, and seed (seeded faults); design too when the options do not fix it."""
    w = Writer()
    if options.design is None:
        w.byte(DESIGNS[fields["design"]].id)  # pick_id: an id is its own byte, for good
    ram, hugetlb = tuple(fields["ram"]), fields["hugetlb"]
    if hugetlb:
        if ram != dec.HUGETLB_LAYOUT:
            raise EncodeError(f"hugetlb decodes only with ram {dec.HUGETLB_LAYOUT}")
        w.below(len(dec.LAYOUTS), 0)
    else:
        w.choice(dec.LAYOUTS, ram, "ram")
    w.chance(1, 16, hugetlb)
    w.choice(("type1", "iommufd"), fields["iommu"], "iommu")
    w.choice(dec.LIMITS, fields["dma_entry_limit"], "dma_entry_limit")
    w.below(4, fields["max_memslots"])
    w.choice(dec.BLOCK_SIZES, fields["block_size"], "block_size")
    memlock = fields["memlock_limit"]
    w.chance(7, 8, memlock is None)
    if memlock is not None:
        if memlock % 0x1000:
            raise EncodeError(f"memlock_limit 0x{memlock:x} is not whole pages")
        w.below(28, memlock // 0x1000 - 4)
    seed = fields.get("seed", 0) if options.faults == "seeded" else 0
    if not 0 <= seed < 1 << 24:
        raise EncodeError(f"seed {seed} is not 3 bytes")
    for i in range(3):
        w.byte(seed >> 8 * i & 0xFF)
    return bytes(w.data)


def encode_swarm(options: DecodeOptions, weights: dict[str, int],
                 junk: bool) -> tuple[bytes, list[OpSpec]]:
    """The swarm bytes enabling the ops of ``weights`` (name -> 1..4), and the weighted
    table they give, as rig.trace.decode.decode reads them."""
    specs = dec.swarm_ops(options)
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(weights) - set(by_name))
    if unknown:
        raise EncodeError(f"swarm: no op {unknown[0]!r} among {', '.join(by_name)}")
    if specs[0].name not in weights:
        raise EncodeError(f"swarm: op 0 ({specs[0].name}) is always on; give it a weight")
    mask = int(junk)
    for name in weights:
        if by_name[name].id:
            mask |= 1 << by_name[name].id
    w = Writer()
    for i in range(specs[-1].id // 8 + 1):
        w.byte(mask >> 8 * i & 0xFF)
    table: list[OpSpec] = []
    for spec in specs:
        if spec.name in weights:
            w.below(4, weights[spec.name] - 1)
            table += [spec] * weights[spec.name]
    return bytes(w.data), table


def _block_index(cfg: WorldConfig, addr: int) -> int | None:
    return next((i for i, b in enumerate(cfg.ram) if b.gpa <= addr < b.gpa + b.size), None)


def _write_address(w: Writer, cfg: WorldConfig, addr: int, junk: bool) -> None:
    """rig.trace.decode._address's reads for ``addr``."""
    bs = cfg.block_size
    i = _block_index(cfg, addr)
    if i is not None:
        block = cfg.ram[i]
        offset = addr - block.gpa
        if offset % bs == 0:
            w.below(16, 0)
            w.below(len(cfg.ram), i)
            w.below(block.size // bs, offset // bs)
            return
        if junk and offset % 0x1000 == 0:
            w.below(16, 12)
            w.below(len(cfg.ram), i)
            w.below(block.size // 0x1000, offset // 0x1000)
            return
    if junk:
        for i, block in enumerate(cfg.ram):
            if addr == block.gpa + block.size:
                w.below(16, 14)
                w.below(len(cfg.ram), i)
                return
            offset = addr - 0x800 - block.gpa
            if addr & 0x800 and 0 <= offset < block.size and (block.gpa + offset) | 0x800 == addr:
                w.below(16, 15)
                w.below(len(cfg.ram), i)
                w.below(block.size, offset)
                return
    raise EncodeError(f"address 0x{addr:x} cannot be decoded (junk={junk})")


def _write_size(w: Writer, cfg: WorldConfig, size: int, junk: bool) -> None:
    """rig.trace.decode._size's reads for ``size``."""
    bs = cfg.block_size
    blocks = size // bs
    if size % bs == 0 and 1 <= blocks <= 4:
        w.below(16, 0)
        w.below(4, blocks - 1)
    elif size % bs == 0 and 1 <= blocks <= 16:
        w.below(16, 12)
        w.below(16, blocks - 1)
    elif junk and size in (0, 0x800, 0x1000):
        w.below(16, 15)
        w.below(3, (0, 0x800, 0x1000).index(size))
    else:
        raise EncodeError(f"size 0x{size:x} cannot be decoded (junk={junk})")


def _write_range(w: Writer, cfg: WorldConfig, addr: int, size: int, junk: bool) -> None:
    """rig.trace.decode._range's reads: without junk the range must stay in its block."""
    if not junk:
        i = _block_index(cfg, addr)
        if i is None or addr + size > cfg.ram[i].gpa + cfg.ram[i].size:
            raise EncodeError(f"range 0x{addr:x}+0x{size:x} leaves its RAM block (no junk)")
    _write_address(w, cfg, addr, junk)
    _write_size(w, cfg, size, junk)


def _write_group(w: Writer, cfg: WorldConfig, spec: OpSpec, group: tuple, args: tuple,
                 junk: bool) -> None:
    """rig.trace.decode._group's reads for the values of ``group`` in ``args``."""
    junk = junk or spec.junk
    if len(group) == 2:
        addr, size = args[group[0]], args[group[1]]
        if spec.whole_blocks:
            whole = next((i for i, b in enumerate(cfg.ram) if (b.gpa, b.size) == (addr, size)),
                         None)
            w.below(len(cfg.ram), whole or 0)
            w.chance(3, 4, whole is not None)
            if whole is not None:
                return
        _write_range(w, cfg, addr, size, junk)
        return
    kind = spec.args[group[0]].kind
    if kind == "dev":
        return  # the op's device byte, written before the arguments
    if kind == "addr":
        _write_address(w, cfg, args[group[0]], junk)
    elif kind == "size":
        _write_size(w, cfg, args[group[0]], junk)
    else:
        w.below(2, int(bool(args[group[0]])))


def _device(spec: OpSpec, args: tuple) -> int:
    return next((args[i] for i, a in enumerate(spec.args) if a.kind == "dev"), 0)


def _write_nested(w: Writer, cfg: WorldConfig, outer: OpSpec, outer_args: tuple,
                  nested: Op, junk: bool) -> None:
    """rig.trace.decode._nested's reads: the outer op's own range when the nested op
    reuses it (mode 0), else an independent draw (mode 2)."""
    spec = nested_op()
    if nested.name != spec.name:
        raise EncodeError(f"only {spec.name} is interleaved, not {nested.name}")
    base = outer.first_range(outer_args)
    own = next((g for g in spec.groups if len(g) == 2), None)
    same = (base is not None and own is not None and base[1] >= cfg.block_size
            and (nested.args[own[0]], nested.args[own[1]]) == base)
    w.below(4, 0 if same else 2)
    if any(a.kind == "dev" for a in spec.args):
        w.below(dec.DEVICES, _device(spec, nested.args))
    if not same:
        for group in spec.groups:
            _write_group(w, cfg, spec, group, nested.args, junk)
        return
    for group in spec.groups:
        if group is own:
            continue  # mode 0: the outer range, no bytes
        value = nested.args[group[0]]
        if spec.args[group[0]].words is not None and outer.name == spec.name:
            theirs = outer_args[group[0]]
            w.below(4, 3 if value == theirs else 0)
        else:
            _write_group(w, cfg, spec, group, nested.args, junk)


def encode_faults(specs) -> bytes:
    """rig.trace.decode._faults's reads for one or two fault specs."""
    w = Writer()
    if not 1 <= len(specs) <= 2:
        raise EncodeError("a fault property decodes with one or two specs")
    w.below(2, len(specs) - 1)
    for spec in specs:
        site = SITES[spec.site]
        w.byte(site.id)  # pick_id: an id below ID_SPACE is its own byte, for good
        w.below(len(site.errnos), site.errnos.index(-spec.errno))
        w.below(3, spec.nth - 1)
        if site.partial:
            w.below(4, spec.partial or 0)
        elif spec.partial is not None:
            raise EncodeError(f"{spec.site} has no partial progress")
        w.choice(dec.FAULT_COUNTS, spec.count, "count")
    return bytes(w.data)


def encode_op(cfg: WorldConfig, table: list[OpSpec], options: DecodeOptions, junk: bool,
              wanted: Op, props: bool = True) -> bytes:
    """rig.trace.decode.decode_op's reads for ``wanted`` after a swarm whose weighted
    table is ``table``; without ``props``, the bytes up to its first property byte."""
    spec = OPS[wanted.name]
    if spec not in table:
        raise EncodeError(f"{wanted.name} is not enabled by the swarm")
    w = Writer()
    w.below(len(table), table.index(spec))
    w.below(dec.DEVICES, _device(spec, wanted.args))
    for group in spec.groups:
        _write_group(w, cfg, spec, group, wanted.args, junk)
    if not props:
        return bytes(w.data)
    faults = wanted.prop("fault")
    if options.faults == "explicit":
        w.chance(1, 4, bool(faults))
        if faults:
            w.data += encode_faults(faults)
    elif faults:
        raise EncodeError("fault properties decode only with explicit faults")
    interleave = wanted.prop("interleave")
    if spec.interleave:
        w.chance(1, 8, interleave is not None)
        if interleave is not None:
            point, nested = interleave
            w.choice(dec.POINTS, point, "interleaving point")
            _write_nested(w, cfg, spec, wanted.args, nested, junk)
    elif interleave is not None:
        raise EncodeError(f"{wanted.name} carries no interleaving")
    return bytes(w.data)


# -- the binary dictionaries ----------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    name: str
    data: bytes
    expr: tuple = ()      # token names and single bytes (int)
    result: str = ""      # what expr decodes to
    note: str = ""        # a comment line of its own, before the claim


@dataclass(frozen=True)
class Section:
    title: tuple          # comment lines
    tokens: tuple


#: The header every op token decodes after, and the header fields a token sets besides it.
BASE_FIELDS = dict(ram=(RamSpec(0x0, 0x10000),), hugetlb=False, iommu="type1",
                   dma_entry_limit=65535, max_memslots=0, block_size=0x1000,
                   memlock_limit=None, seed=0)
HEADERS = (
    ("hdr_one_block", "one 64 KiB RAM block", {}),
    ("hdr_x86_split", "x86: RAM below and above 4 GiB", {"ram": dec.LAYOUTS[1]}),
    ("hdr_adjacent_blocks", "two adjacent RAM blocks", {"ram": dec.LAYOUTS[2]}),
    ("hdr_big_block_8k", "one 256 KiB block in 8 KiB granules",
     {"ram": dec.LAYOUTS[3], "block_size": 0x2000}),
    ("hdr_hugetlb", "shared memory on 2 MiB hugetlb pages",
     {"ram": dec.HUGETLB_LAYOUT, "hugetlb": True}),
    ("hdr_iommufd", "iommufd instead of type1", {"iommu": "iommufd"}),
    ("hdr_entry_limit_4", "type1 with room for 4 DMA mappings", {"dma_entry_limit": 4}),
    ("hdr_memslots_3", "KVM reports 3 memslots (QEMU's budget check)", {"max_memslots": 3}),
    ("hdr_memlock_4_pages", "RLIMIT_MEMLOCK of 4 pages", {"memlock_limit": 0x4000}),
    ("hdr_tight", "x86 split, iommufd, 4 mappings, 8 KiB granules, 4 pages of memlock",
     {"ram": dec.LAYOUTS[1], "iommu": "iommufd", "dma_entry_limit": 4,
      "block_size": 0x2000, "memlock_limit": 0x4000}),
)
CONTEXT_HEADER = "hdr_one_block"
CONTEXT_SWARM = "swarm_all_kinds"


def _swarms() -> tuple:
    """(name, weights, junk, note): a few mixes, and every op at once."""
    every = {name: 1 for name in OPS}
    first = dec.swarm_ops()[0].name  # op 0, always on: every swarm gives it a weight
    return (
        ("swarm_convert_only", {first: 1}, True, "conversions only"),
        ("swarm_convert_hotplug", {first: 1, "vfio_register": 1}, True,
         "conversions and VFIO hot-plug"),
        ("swarm_convert_hotplug_unplug", {first: 1, "vfio_register": 1, "vfio_unregister": 1},
         True, "conversions, VFIO hot-plug and unplug"),
        ("swarm_convert_hotplug_no_junk", {first: 1, "vfio_register": 1}, False,
         "conversions and hot-plug, block-aligned ranges inside RAM only"),
        ("swarm_convert_dma_touch", {first: 1, "guest_touch": 1, "device_dma": 1,
                                     "vfio_register": 1}, True,
         "conversions, guest and device accesses, hot-plug"),
        ("swarm_listeners", {first: 1, "listener_register": 1, "listener_unregister": 1}, True,
         "conversions and generic listeners"),
        ("swarm_convert_heavy", {**every, first: 4}, True, "every op, conversions weighted 4"),
        (CONTEXT_SWARM, every, True, "every op"),
        ("swarm_all_kinds_no_junk", every, False, "every op, no junk ranges"),
    )


def _default_args(spec: OpSpec) -> tuple:
    """Plain arguments for ``spec`` on the one-block header: device 0, the range
    [0x2000, 0x3000) (a whole block for whole_blocks ops), the second word of an
    enumeration (shared, read, discarded)."""
    values: list = []
    for group in spec.groups:
        if len(group) == 2:
            values += [0x0, 0x10000] if spec.whole_blocks else [0x2000, 0x1000]
            continue
        kind = spec.args[group[0]].kind
        values.append({"dev": 0, "addr": 0x2000, "size": 0x1000}.get(kind, False))
    return tuple(values)


def _ops() -> tuple:
    """(name, op, note): one token per op of the registry, then some that matter."""
    convert = nested_op().name
    out = [(f"op_{name}", op(name, *_default_args(spec)), "") for name, spec in OPS.items()]
    out += [
        ("op_vfio_register_dev1", op("vfio_register", 1, 0x0, 0x10000), ""),
        ("op_vfio_register_interleaved",
         op("vfio_register", 0, 0x0, 0x10000,
            interleave=(1, op(convert, 0x2000, 0x1000, False))),
         "a conversion lands after the first notification of the hot-plug replay"),
        ("op_convert_raced_back",
         op(convert, 0x2000, 0x2000, True,
            interleave=(before_point(1), op(convert, 0x2000, 0x2000, False))),
         "a conversion raced back over its own pages before the first notification"),
        ("op_convert_attr_window",
         op(convert, 0x2000, 0x2000, False,
            interleave=(POINT_ATTR, op(convert, 0x2000, 0x2000, True))),
         "the same, in the window after KVM_SET_MEMORY_ATTRIBUTES"),
        ("op_to_private", op(convert, 0x2000, 0x1000, True), ""),
        ("op_to_shared_4_blocks", op(convert, 0x2000, 0x4000, False), ""),
        ("op_to_shared_whole_block", op(convert, 0x0, 0x10000, False), ""),
        ("op_to_shared_past_end", op(convert, 0x10000, 0x1000, False),
         "just past the RAM block"),
        ("op_to_shared_zero_size", op(convert, 0x2000, 0x0, False), ""),
        ("op_to_shared_half_page", op(convert, 0x2000, 0x800, False), ""),
        ("op_to_shared_unaligned", op(convert, 0x2800, 0x1000, False), ""),
        ("op_device_dma_write", op("device_dma", 0, 0x2000, 0x1000, True), ""),
    ]
    return tuple(out)


def _fault_tokens() -> tuple:
    """(name, specs): every site with every errno it returns (partial sites after one
    unit), then a second hit, two specs, and a run as long as the decoder draws."""
    out = []
    for site in SITES.values():
        for errno in site.errnos:
            spec = FaultSpec(site.name, -errno, 1, 1 if site.partial else None)
            out.append((f"fault_{site.name.replace('.', '_')}_{errno_name(-errno)}", (spec,)))
    dma, notify, attrs = SITES["vfio.dma_map"], SITES["listener.notify_populate"], \
        SITES["kvm.set_memory_attributes"]
    out += [
        (f"fault_vfio_dma_map_{errno_name(-dma.errnos[0])}_nth2",
         (FaultSpec(dma.name, -dma.errnos[0], 2),)),
        ("fault_two_specs_dma_map_and_notify",
         (FaultSpec(dma.name, -dma.errnos[0], 2), FaultSpec(notify.name, -notify.errnos[0]))),
        (f"fault_kvm_set_memory_attributes_{errno_name(-attrs.errnos[0])}_x{dec.FAULT_COUNT_MAX}",
         (FaultSpec(attrs.name, -attrs.errnos[0], 1, None, dec.FAULT_COUNT_MAX),)),
    ]
    return tuple(out)


def _header_words(options: DecodeOptions, fields: dict) -> str:
    words = [f"{k}={format_value(k, v)}" for k, v in fields.items()
             if k != "seed" or options.faults == "seeded"]
    return " ".join(words)


def binary_sections(options: DecodeOptions) -> list[Section]:
    """Every token of one binary dictionary, built by the encoder, with its claim."""
    sections = []
    headers, cfgs = [], {}
    for name, note, changes in HEADERS:
        fields = {**BASE_FIELDS, **changes}
        data = encode_header(options, **fields)
        cfgs[name] = WorldConfig(**{k: v for k, v in fields.items() if k != "seed"})
        headers.append(Token(name, data, (name,), _header_words(options, fields), note))
    sections.append(Section((
        "Headers: everything before the swarm (layout, hugetlb, iommu, dma_entry_limit,",
        "max_memslots, block_size, memlock_limit[+ pages], 3 seed bytes); the harness fixes",
        "the design, so no design byte is read.",
    ), tuple(headers)))

    swarms, tables = [], {}
    for name, weights, junk, note in _swarms():
        data, table = encode_swarm(options, weights, junk)
        tables[name] = (table, junk)
        kinds = " ".join(s.name for s in table)
        swarms.append(Token(name, data, (CONTEXT_HEADER, name),
                            f"kinds: {kinds} junk={'yes' if junk else 'no'}", note))
    sections.append(Section((
        "Swarm: the mask of enabled op kinds (bit = op id, bit 0 = junk ranges allowed),",
        "then one weight byte per enabled kind, in id order.",
    ), tuple(swarms)))

    cfg = cfgs[CONTEXT_HEADER]
    table, junk = tables[CONTEXT_SWARM]
    ops = []
    for name, wanted, note in _ops():
        data = encode_op(cfg, table, options, junk, wanted)
        ops.append(Token(name, data, (CONTEXT_HEADER, CONTEXT_SWARM, name), format_op(wanted),
                         note))
    sections.append(Section((
        f"Ops, whole (arguments and property bytes), after {CONTEXT_HEADER} and "
        f"{CONTEXT_SWARM}.",
    ), tuple(ops)))

    if options.faults == "explicit":
        target = op(nested_op().name, 0x2000, 0x1000, False)
        head = encode_op(cfg, table, options, junk, target, props=False)
        rest = 1 if OPS[target.name].interleave else 0  # the interleave byte after the faults
        head_token = Token("op_head_to_shared", head,
                           (CONTEXT_HEADER, CONTEXT_SWARM, "op_head_to_shared",
                            *([0xFF] * (1 + rest))), format_op(target),
                           "an op up to its fault byte, for the fault tokens below")
        faults = [head_token]
        for name, specs in _fault_tokens():
            w = Writer()
            w.chance(1, 4, True)
            data = bytes(w.data) + encode_faults(specs)
            faults.append(Token(name, data, (CONTEXT_HEADER, CONTEXT_SWARM, "op_head_to_shared",
                                             name, *([0xFF] * rest)),
                                format_op(target.with_props(fault=specs))))
        sections.append(Section((
            "Fault properties: where an op's fault byte is read (after its arguments): the",
            "fault byte, the spec count, then per spec site (by id), errno, nth, partial",
            "progress (partial sites), count.",
        ), tuple(faults)))
    return sections


def _escape(data: bytes, text: bool = False) -> str:
    """libFuzzer's value syntax: a word's printable characters as they are (``text``),
    every byte of a byte layout as ``\\xHH``."""
    return "".join(chr(b) if text and 0x20 <= b < 0x7F and chr(b) not in '\\"'
                   else f"\\x{b:02x}" for b in data)


def _expr_text(expr) -> str:
    return " ".join(f"0x{item:02x}" if isinstance(item, int) else item for item in expr)


def render_binary(name: str, options: DecodeOptions) -> str:
    lines = [
        f"# libFuzzer dictionary for fuzz/{name}.py: bytes -> world trace through",
        f"# rig.trace.decode (faults={options.faults}).",
        "#",
        "# Generated by `python -m rig.trace.dictionaries fuzz` from the registries and the",
        "# decoder; do not edit.  Each token is a byte layout built by the decoder's inverse",
        "# (rig.trace.dictionaries).  The comment above it, `decodes: EXPR -> RESULT`, says",
        "# what it decodes to: EXPR is tokens and bytes, concatenated; RESULT is header",
        "# words, the swarm's op table (kinds: ...), or one op line.",
        "# tests/fuzz/test_dictionaries.py decodes every EXPR and compares.",
    ]
    for section in binary_sections(options):
        lines.append("#")
        lines += [f"# {line}" for line in section.title]
        for token in section.tokens:
            if token.note:
                lines.append(f"# {token.note}")
            lines.append(f"# decodes: {_expr_text(token.expr)} -> {token.result}")
            lines.append(f'{token.name}="{_escape(token.data)}"')
    return "\n".join(lines) + "\n"


# -- trace_text.dict -------------------------------------------------------------------------

#: Header values worth a token besides the registries' own words.
HEADER_VALUES = {
    "dma_entry_limit": (65535, *sorted(set(dec.LIMITS) - {65535})),
    "max_memslots": (32764, 0),
    "memlock_limit": (None, 0x4000),
    "block_size": (0x1000, 0x2000, 0x200000),
    "hugetlb": (True, False),
    "fail_nth": (1, 3),
    "seed": (0, 1),
    "p_activate": (0.25, 1.0),
    "p_fire": (0.1, 1.0),
}
NUMBERS = (0x0, 0x800, 0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x100000000, 0x200000)


def _token_name(prefix: str, text: str) -> str:
    return prefix + "_" + re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def text_sections() -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(grammar kind, ((name, word), ...)) of trace_text.dict, from the registries."""
    config = WorldConfig()
    header = []
    for key in CONFIG_FIELDS:
        if key in OPTIONAL_FIELDS:
            continue  # (sweep-only knobs: the fuzzer needs no token for them)
        if key == "design":
            values = tuple(BUILT_IN)  # (the same dictionary whatever RIG_DESIGNS loads)
        elif key == "iommu":
            values = ("type1", "iommufd")
        elif key == "budget_check":
            values = ("auto", "refuse", "warn")
        elif key == "faults":
            values = ("explicit", "fail_nth", "seeded")
        elif key == "ram":
            values = tuple(dict.fromkeys((*dec.LAYOUTS, dec.HUGETLB_LAYOUT)))
        else:
            values = HEADER_VALUES.get(key, (getattr(config, key),))
        for value in values:
            word = f"{key}={format_value(key, value)}"
            header.append((_token_name("hdr", word.replace("=", "_")), word))
    ops = [(f"op_{name}", f"{name}(") for name in OPS]
    words = dict.fromkeys(w for spec in OPS.values() for a in spec.args if a.words
                          for w in a.words)
    enums = [(f"arg_{w}", f", {w})") for w in words]
    faults = [(_token_name("fault", f"{s.name}_{errno_name(-e)}"), f"{s.name}={errno_name(-e)}")
              for s in SITES.values() for e in s.errnos]
    errnos = dict.fromkeys(errno_name(-e) for s in SITES.values() for e in s.errnos)
    return [
        ("magic", (("magic", MAGIC),)),
        ("text", (("nl", "\n"), ("hash_space", "# "), ("props_open", "  ("),
                  ("args_sep", ", "), ("close_paren", ")"))),
        ("expect", (("expect_ok", "# expect: ok"), ("expect_vm_stopped", "# expect: vm_stopped"),
                    ("expect_violation", "# expect: violation "))),
        ("header", tuple(header)),
        ("op", tuple(ops)),
        ("enum", tuple(enums)),
        ("number", tuple((f"num_0x{n:x}", f"0x{n:x}") for n in NUMBERS)),
        ("property", (("prop_fault", "(fault: "), ("prop_interleave", "(interleave: "),
                      ("prop_and_interleave", ", interleave: "))),
        ("point", tuple((_token_name("point", str(p)), f"{p} ")
                        for p in dict.fromkeys(dec.POINTS))),
        ("fault", tuple(faults)),
        ("fault_suffix", (("nth_2", "@2"), ("nth_3", "@3"), ("nth_1_count_2", "@1*2"),
                          (f"nth_1_count_{dec.FAULT_COUNT_MAX + 1}",
                           f"@1*{dec.FAULT_COUNT_MAX + 1}"),
                          ("partial_1", "/1"), ("partial_2", "/2"))),
        ("errno", tuple((f"errno_{e}", e) for e in errnos)),
        ("invariant", tuple((_token_name("inv", name), name) for name in INVARIANTS)),
    ]


def render_text() -> str:
    lines = [
        "# libFuzzer dictionary for fuzz/trace_text.py: the words of trace format v1",
        "# (corpora/README.md).  The harness' custom mutator edits traces that parse at the op",
        "# level; libFuzzer's own mutations, and so these tokens, act on inputs that do not",
        "# parse (atheris.Mutate), bringing them back into the format.",
        "#",
        "# Generated by `python -m rig.trace.dictionaries fuzz` from the registries (ops,",
        "# fault sites, invariants, designs, config keys); do not edit.  Each word is checked",
        "# against the grammar kind it is listed under (tests/fuzz/test_dictionaries.py).",
    ]
    for kind, entries in text_sections():
        lines.append("#")
        lines.append(f"# grammar: {kind}")
        lines += [f'{name}="{_escape(word.encode(), text=True)}"' for name, word in entries]
    return "\n".join(lines) + "\n"


def generate() -> dict[str, str]:
    """file name -> text of every dictionary.  Refuses to produce one whose claims do
    not hold (the encoder and the decoder disagree)."""
    out = {f"{name}.dict": render_binary(name, options) for name, options in BINARY.items()}
    out[f"{TEXT}.dict"] = render_text()
    for name, options in BINARY.items():
        errors = check(out[f"{name}.dict"], options)
        if errors:
            raise AssertionError(f"{name}.dict: " + "; ".join(errors))
    errors = check_text(out[f"{TEXT}.dict"])
    if errors:
        raise AssertionError(f"{TEXT}.dict: " + "; ".join(errors))
    return out


# -- checking: every claim, by decoding ---------------------------------------------------------

_ENTRY = re.compile(r'^([A-Za-z0-9_]+)="(.*)"$')


def _unescape(body: str) -> bytes:
    return re.sub(rb"\\(x[0-9A-Fa-f]{2}|\\|\")",
                  lambda m: bytes([int(m.group(1)[1:], 16)]) if m.group(1)[:1] == b"x"
                  else m.group(1), body.encode("ascii"))


def parse_entries(text: str) -> list[tuple[str, bytes, list[str]]]:
    """(name, value, the comment lines just above it) of every named entry."""
    out, comments = [], []
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        m = _ENTRY.match(line.strip())
        if m:
            out.append((m.group(1), _unescape(m.group(2)), comments))
            comments = []
        elif line.strip():
            raise ValueError(f"not a dictionary line: {line!r}")
    return out


def _probe(seed: int) -> bytes:
    """Deterministic filler bytes: many ops' worth."""
    return b"".join(hashlib.sha256(f"probe/{seed}/{i}".encode()).digest() for i in range(32))


def _is_junk(cfg: WorldConfig, o: Op) -> bool:
    """A conversion whose range is not block-aligned inside one RAM block."""
    addr, size = o.args[0], o.args[1]
    bs = cfg.block_size
    i = _block_index(cfg, addr)
    return (i is None or size == 0 or addr % bs or size % bs
            or addr + size > cfg.ram[i].gpa + cfg.ram[i].size)


def _bytes(expr: list, tokens: dict) -> bytes:
    return b"".join(bytes([item]) if isinstance(item, int) else tokens[item] for item in expr)


def _first_kinds(data: bytes, options: DecodeOptions, count: int) -> list:
    """The kind of the first op after ``data`` when its kind byte is 0, 1, ..."""
    out = []
    for k in range(count):
        ops = decode(data + bytes([k]) + bytes(64), options)[1]
        out.append(ops[0].name if ops else None)
    return out


def _check_claim(name: str, expr: list, result: str, tokens: dict, options: DecodeOptions,
                 headers: tuple = ()) -> str | None:
    """None if decoding ``expr`` gives ``result``; otherwise what is wrong.  A swarm's
    table must also hold after each of ``headers`` (the header tokens) in place of the
    header in ``expr``: so each header token is exactly as long as the decoder's header."""
    if name not in expr:
        return f"{name}: its claim does not decode {name} itself"
    missing = [item for item in expr if isinstance(item, str) and item not in tokens]
    if missing:
        return f"{name}: claim names an unknown token {missing[0]!r}"
    data = _bytes(expr, tokens)
    many = replace(options, ops_max=10_000)
    cfg, ops = decode(data, many)
    if result.startswith("kinds:"):
        words = result[len("kinds:"):].split()
        if not words or not words[-1].startswith("junk="):
            return f"{name}: a swarm claim ends with junk=yes|no"
        kinds, junk = words[:-1], words[-1] == "junk=yes"
        got = _first_kinds(data, many, 256)
        want = [kinds[k % len(kinds)] for k in range(256)]
        if got != want:
            return f"{name}: the swarm's op table is {got[:len(kinds) + 2]}..., not {kinds}"
        for header in headers:
            other = _bytes([header if item in headers else item for item in expr], tokens)
            got = _first_kinds(other, many, 2 * len(kinds))
            if got != want[:2 * len(kinds)]:
                return (f"{name}: after {header} the swarm's op table is {got}: {header} is "
                        "not exactly the header's bytes")
        convs = [o for s in range(16) for o in decode(data + _probe(s), many)[1]
                 if o.name == nested_op().name]
        seen = any(_is_junk(cfg, o) for o in convs)
        if seen != junk:
            return f"{name}: junk ranges are {'on' if seen else 'off'}, not as claimed"
        return None
    if "(" in result and result.split("(", 1)[0] in OPS:
        lines = [format_op(o) for o in ops]
        if lines != [result]:
            return f"{name}: decodes to {lines}, not [{result!r}]"
        if expr[-1] == name:
            twice = [format_op(o) for o in decode(data + tokens[name], many)[1]]
            if twice != [result, result]:
                return f"{name}: is not one whole op: twice it decodes to {twice}"
        return None
    # Header words hold whatever follows the header: a header token one byte short
    # would take its last field from the next token.
    for after in (b"", b"\xff" * 16):
        cfg = decode(data + after, many)[0]
        header = set(format_header(cfg)[2:].split())
        for word in result.split():
            if word not in header:
                return f"{name}: {word} is not in the decoded header {format_header(cfg)}"
    return None


def check(text: str, options: DecodeOptions) -> list[str]:
    """What is wrong with a binary dictionary: a token with no ``decodes:`` claim, or one
    that decodes to something else."""
    entries = parse_entries(text)
    tokens = {name: value for name, value, _ in entries}
    errors = []
    if len(tokens) != len(entries):
        errors.append("duplicate token names")
    claims = {}
    for name, _, comments in entries:
        found = [c[len("decodes:"):].strip() for c in comments if c.startswith("decodes:")]
        if len(found) != 1 or " -> " not in found[0]:
            errors.append(f"{name}: no single 'decodes: EXPR -> RESULT' comment")
            continue
        expr_text, result = found[0].split(" -> ", 1)
        expr = [int(item, 16) if re.fullmatch(r"0x[0-9a-f]{2}", item) else item
                for item in expr_text.split()]
        claims[name] = expr, result.strip()
    headers = tuple(name for name, (expr, result) in claims.items()
                    if expr == [name] and "=" in result and "(" not in result)
    for name, (expr, result) in claims.items():
        error = _check_claim(name, expr, result, tokens, options, headers)
        if error:
            errors.append(error)
    return errors


def _sample_text() -> str:
    """A trace that uses every piece of punctuation the format has."""
    convert = nested_op().name
    site = next(iter(SITES.values()))
    nested = op(convert, 0x2000, 0x1000, True)
    ops = [op(convert, 0x2000, 0x1000, False,
              fault=(FaultSpec(site.name, -site.errnos[0], 2),), interleave=(1, nested)),
           op(convert, 0x2000, 0x1000, False, interleave=(1, nested))]
    return serialize(Trace(WorldConfig(), ops, comments=["sample"]))


def _text_word_error(kind: str, word: str) -> str | None:
    """None if ``word`` is a valid word of the trace grammar of ``kind``."""
    if kind == "magic":
        return None if word == MAGIC else "is not the magic line"
    if kind in ("text", "property"):
        return None if word in _sample_text() else "is not in a serialized trace"
    if kind == "expect":
        if not word.startswith("# expect: "):
            return "is not an expect line"
        try:
            parse_expect(word[len("# expect: "):].strip())
        except ValueError as exc:
            return str(exc)
        return None
    if kind == "header":
        key, sep, value = word.partition("=")
        if not sep or key not in CONFIG_FIELDS:
            return "is not key=value with a header key"
        try:
            parsed = parse_value(key, value)
            if key == "design" and not ensure(parsed):
                return f"names no design ({', '.join(DESIGNS)})"
            WorldConfig().with_(**{key: parsed}).validate()
        except ValueError as exc:
            # Valid on its own if what is wrong is another key (hugetlb=yes needs a
            # 2 MiB-aligned ram=).
            if str(exc).split(":", 1)[0] == key:
                return str(exc)
        return None
    if kind == "op":
        return None if word.endswith("(") and word[:-1] in OPS else "is not OPNAME("
    if kind == "enum":
        words = {w for s in OPS.values() for a in s.args if a.words for w in a.words}
        m = re.fullmatch(r", (\w+)\)", word)
        return None if m and m.group(1) in words else "is not ', WORD)' of an op's enumeration"
    if kind == "number":
        return None if re.fullmatch(r"0x[0-9a-f]+", word) else "is not a 0x number"
    if kind == "point":
        convert = nested_op().name
        try:
            parse_op_line(f"{convert}(0x0, 0x1000, shared)  "
                          f"(interleave: {word}{convert}(0x0, 0x1000, private))")
        except ValueError as exc:
            return str(exc)
        return None
    if kind == "fault":
        try:
            FaultSpec.parse(word)
        except ValueError as exc:
            return str(exc)
        return None
    if kind == "fault_suffix":
        partial = next((s for s in SITES.values() if s.partial), None)
        try:
            FaultSpec.parse(f"{partial.name}={errno_name(-partial.errnos[0])}{word}")
        except ValueError as exc:
            return str(exc)
        return None
    if kind == "errno":
        return None if word in ERRNO_BY_NAME else "is not an errno name"
    if kind == "invariant":
        return None if word in INVARIANTS else "is not an invariant (rig.check.oracle)"
    return f"unknown grammar kind {kind!r}"


def check_text(text: str) -> list[str]:
    """What is wrong with trace_text.dict: a word outside the grammar kind it is listed
    under (the last ``# grammar: KIND`` comment above it)."""
    errors = []
    kind = None
    for name, value, comments in parse_entries(text):
        kinds = [c[len("grammar:"):].strip() for c in comments if c.startswith("grammar:")]
        kind = kinds[-1] if kinds else kind
        if kind is None:
            errors.append(f"{name}: no '# grammar: KIND' above it")
            continue
        error = _text_word_error(kind, value.decode("ascii"))
        if error:
            errors.append(f"{name} ({kind}): {value!r} {error}")
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rig.trace.dictionaries",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("outdir", help="where the .dict files go (the repository's fuzz/)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a file in OUTDIR differs")
    args = ap.parse_args(argv)
    out = Path(args.outdir)
    stale = []
    for name, text in generate().items():
        path = out / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="ascii") != text:
                stale.append(str(path))
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="ascii", newline="\n")
        print(f"{path}: {len(parse_entries(text))} tokens")
    if stale:
        print(f"stale: {', '.join(stale)} (run python -m rig.trace.dictionaries {args.outdir})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
