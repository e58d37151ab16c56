"""Trace format v1: round trip, strict errors naming file/line/field, lenient triage,
decoder totality, and a hypothesis mutation test of the parser."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.trace.decode import DecodeOptions, decode
from rig.trace.corpus import unminimized
from rig.world.ops import op
from rig.trace.format import MAGIC, Trace, TraceError, parse, serialize
from rig.world.config import WorldConfig


def good_text():
    return serialize(unminimized()[3])  # a trace with an interleave property


def test_round_trip_both_ways():
    for trace in unminimized():
        text = serialize(trace)
        assert serialize(parse(text)) == text
        assert parse(text) == trace


def test_header_defaults_and_partial_header():
    trace = parse(f"{MAGIC}\n# design=qemu-10.1 iommu=iommufd\nguest_touch(0x0)\n")
    assert trace.config == WorldConfig(design="qemu-10.1", iommu="iommufd")
    assert trace.ops == [op("guest_touch", 0)]


MALFORMED = [
    ("", 1, "not a gmem-rig trace"),
    ("# some other file\n", 1, "not a gmem-rig trace"),
    (f"{MAGIC}\nguest_touch(0x0\n", 2, "expected ')' closing guest_touch"),
    (f"{MAGIC}\nconvert(0x0)\n", 2, "unknown op 'convert'"),
    (f"{MAGIC}\nguest_touch(0x0, 0x1)\n", 2, "guest_touch takes 1 arguments (gpa), not 2"),
    (f"{MAGIC}\nguest_touch(0xzz)\n", 2, "argument gpa '0xzz' is not a hex number"),
    (f"{MAGIC}\nguest_touch(16)\n", 2, "addresses and sizes are hex"),
    (f"{MAGIC}\nvfio_unregister(x)\n", 2, "argument dev 'x' is not a device number"),
    (f"{MAGIC}\nguest_touch(0x0)  (colour: red)\n", 2, "unknown property 'colour'"),
    (f"{MAGIC}\nguest_touch(0x0)  (fault: pin.pin_pages=ENOMEM@0)\n", 2, "nth must be >= 1"),
    (f"{MAGIC}\n# dessign=hardened\n", 2, "unknown header key 'dessign'"),
    (f"{MAGIC}\n# dma_entry_limit=lots\n", 2, "dma_entry_limit: 'lots' is not a number"),
    (f"{MAGIC}\n# ram=0x0+0x0\n", 2, "impossible world: ram: block 0 (0x0+0x0) has size 0"),
    (f"{MAGIC}\n# block_size=0x3000\n", 2, "block_size: 0x3000 is not a power of two"),
    (f"{MAGIC}\n# hugetlb=maybe\n", 2, "hugetlb: 'maybe' is not yes or no"),
    (f"{MAGIC}\n# expect: crash\n", 2, "expect: 'crash' is not"),
    (f"{MAGIC}\n# expect: violation everything\n", 2, "unknown invariant 'everything'"),
    (f"{MAGIC}\nguest_touch(0x0)\n# design=hardened\n", 3, "header lines come before"),
    (f"{MAGIC}\n# seed=1 seed=2\n", 2, "header key 'seed' given twice"),
]


@pytest.mark.parametrize("text,line,message", MALFORMED)
def test_malformed_input_names_file_line_field(text, line, message):
    with pytest.raises(TraceError) as info:
        parse(text, "bad.trace")
    assert info.value.line == line
    assert message in str(info.value)
    assert str(info.value).startswith(f"bad.trace:{line}: ")
    assert "\n" not in str(info.value)


def test_lenient_mode_skips_and_warns():
    text = f"{MAGIC}\n# colour=red\nguest_touch(0x0)\nconvert(0x0)\nguest_touch(0x1000)  (colour: x)\n"
    trace = parse(text, "t.trace", strict=False)
    assert trace.ops == [op("guest_touch", 0), op("guest_touch", 0x1000)]
    assert any("unknown header key 'colour'" in w for w in trace.warnings)
    assert any("t.trace:4: unknown op 'convert'" in w for w in trace.warnings)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_decoder_is_total(data):
    """Any bytes decode to a valid trace that serializes and parses back."""
    for options in (DecodeOptions(), DecodeOptions(faults="explicit"),
                    DecodeOptions(design="hardened")):
        config, ops = decode(data, options)
        config.validate()
        trace = Trace(config, ops)
        assert parse(serialize(trace)) == trace


def _ranges(ops):
    """The (address, size) of every op whose range QEMU validates before acting: the
    conversions (nested ones too) and the sections of registrations."""
    for o in ops:
        if o.name in ("kvm_convert_memory", "replay"):
            yield o.args[0], o.args[1]
        elif o.name in ("vfio_register", "listener_register"):
            yield o.args[1], o.args[2]
        nested = o.prop("interleave")
        if nested:
            yield from _ranges([nested[1]])


def _clean(config, addr, size):
    bs = config.block_size
    return (size > 0 and addr % bs == 0 and size % bs == 0 and
            any(b.gpa <= addr and addr + size <= b.gpa + b.size for b in config.ram))


# With the design fixed and a memlock byte below 224 (no limit), the header is 10 bytes
# and the 11th is the swarm mask, whose bit 0 allows junk ranges.
header = st.tuples(*[st.integers(0, 255)] * 6, st.integers(0, 223),
                   *[st.integers(0, 255)] * 3).map(bytes)


@settings(max_examples=300, deadline=None)
@given(header, st.integers(0, 127), st.binary(min_size=1, max_size=400))
def test_decoder_swarm_bit_turns_junk_ranges_off(head, mask, body):
    config, ops = decode(head + bytes([mask << 1]) + body, DecodeOptions(design="qemu-10.1"))
    for addr, size in _ranges(ops):
        assert _clean(config, addr, size), (hex(addr), hex(size), config.ram)


def test_decoder_swarm_bit_on_still_gives_junk():
    """The other half of the switch: with bit 0 set, unaligned, gap and crossing ranges
    still come out (counted over fixed pseudo-random bodies)."""
    rng = random.Random(7)
    junk = 0
    for _ in range(200):
        data = bytes(10) + b"\x01" + bytes(rng.randrange(256) for _ in range(120))
        config, ops = decode(data, DecodeOptions(design="qemu-10.1"))
        junk += sum(not _clean(config, a, s) for a, s in _ranges(ops))
    assert junk >= 50


@st.composite
def mutated(draw):
    lines = good_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "dup", "truncate", "replace_char", "insert"]))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[i])
        elif kind == "truncate":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        elif kind == "replace_char" and lines[i]:
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + draw(st.sampled_from("0x,()=@/#: zq9")) + lines[i][j + 1:]
        elif kind == "insert":
            lines.insert(i, draw(st.text(alphabet="abcdefx0123456789(),=:# _", max_size=30)))
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None)
@given(mutated())
def test_mutated_traces_parse_or_fail_cleanly(text):
    """The parser either parses or raises TraceError (never another exception), and a
    parsed trace replays without an internal error."""
    from rig.cli import replay

    try:
        trace = parse(text, "m.trace")
    except TraceError:
        return
    loaded = replay.Loaded(trace, "trace")
    result, _, _ = replay.replay(loaded, "m.trace", "cy", differential=True)
    assert replay.exit_code(loaded, result) in (0, 2)


def test_fault_sites_is_written_only_when_set_and_round_trips():
    from rig.trace.format import Trace, format_header, parse, serialize
    from rig.world.config import WorldConfig

    plain = WorldConfig()
    assert "fault_sites" not in format_header(plain)
    only = plain.with_(faults="fail_nth", fail_nth=2, fault_sites=("vfio.dma_map", "pin.pin_pages"))
    header = format_header(only)
    assert header.endswith(" fault_sites=vfio.dma_map,pin.pin_pages")
    again = parse(serialize(Trace(only, [])), "<t>")
    assert again.config == only


def test_fault_sites_naming_no_site_is_refused_naming_the_field():
    import pytest

    from rig.world.config import WorldConfig

    with pytest.raises(ValueError, match="^fault_sites: unknown site 'vfio.nope'"):
        WorldConfig(fault_sites=("vfio.nope",)).validate()
    with pytest.raises(ValueError, match="^fault_sites: a site is named twice"):
        WorldConfig(fault_sites=("pin.pin_pages", "pin.pin_pages")).validate()
