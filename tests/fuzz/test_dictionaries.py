"""The fuzz dictionaries are generated (rig.trace.dictionaries) and mean what they say.

(a) the committed fuzz/*.dict are what the generator writes now, byte for byte, on any
hash seed; (b) every binary token decodes to what its comment says, and every
trace_text word is a word of the grammar kind it is listed under; and the checks fire on
a token whose comment lies.  Also: the decoder's pick by id keeps every byte that names
an id when an entry is appended.
"""

import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rig.check.oracle import INVARIANTS
from rig.errors import errno_name
from rig.trace import decode as dec
from rig.trace import dictionaries as dicts
from rig.trace.decode import DecodeOptions, decode, pick_id
from rig.world.config import WorldConfig
from rig.world.designs import DESIGNS
from rig.world.faults import SITES
from rig.world.ops import OPS, op

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"


def _committed(name: str) -> str:
    return (FUZZ / f"{name}.dict").read_text(encoding="ascii")


# -- (a) generated, deterministic ----------------------------------------------------------

def test_committed_dictionaries_are_the_generated_ones(tmp_path):
    """Fails when a registry or a decoder read changed and nobody regenerated:
    python -m rig.trace.dictionaries fuzz"""
    assert dicts.main([str(tmp_path)]) == 0
    for name in dicts.FILES:
        fresh = (tmp_path / f"{name}.dict").read_bytes()
        assert (FUZZ / f"{name}.dict").read_bytes() == fresh, \
            f"fuzz/{name}.dict is stale: run python -m rig.trace.dictionaries fuzz"
    assert dicts.main(["--check", str(FUZZ)]) == 0


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    for name in dicts.FILES:
        (tmp_path / f"{name}.dict").write_bytes((FUZZ / f"{name}.dict").read_bytes())
    path = tmp_path / "convert.dict"
    path.write_text(path.read_text().replace("hdr_one_block=", "hdr_one_blok=", 1))
    assert dicts.main(["--check", str(tmp_path)]) == 1
    assert "convert.dict" in capsys.readouterr().err


def test_generation_does_not_depend_on_the_hash_seed(tmp_path):
    env = {**os.environ, "RIG_PUREPYTHON": "1", "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "rig.trace.dictionaries", str(tmp_path)], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    for name, text in dicts.generate().items():
        assert (tmp_path / name).read_text(encoding="ascii") == text, name


def test_the_binary_dictionaries_decode_as_their_harnesses_do():
    from rig.drive.harnesses import HARNESSES

    for name, options in dicts.BINARY.items():
        harness = HARNESSES[name].options
        assert harness.design is not None, f"{name} decodes a design byte: no token reads one"
        assert replace(harness, design=None) == replace(options, design=None)


# -- (b) every token means what its comment says --------------------------------------------

@pytest.mark.parametrize("name", sorted(dicts.BINARY))
def test_every_binary_token_decodes_to_its_comment(name):
    text = _committed(name)
    assert dicts.check(text, dicts.BINARY[name]) == []
    claims = [line for line in text.splitlines() if line.startswith("# decodes: ")]
    assert len(claims) == len(dicts.parse_entries(text)) >= 20


def test_every_trace_text_token_is_a_word_of_its_grammar_kind():
    text = _committed(dicts.TEXT)
    assert dicts.check_text(text) == []
    values = {v for _, v, _ in dicts.parse_entries(text)}
    # Everything the registries name has its word.
    for name in OPS:
        assert f"{name}(".encode() in values
    for site in SITES.values():
        for errno in site.errnos:
            assert f"{site.name}={errno_name(-errno)}".encode() in values
    for invariant in INVARIANTS:
        assert invariant.encode() in values
    for design in DESIGNS:
        assert f"design={design}".encode() in values


def test_explicit_fault_tokens_name_every_site_by_its_id():
    """A fault token's site byte is the site's id: the one byte that keeps its meaning."""
    entries = {n: v for n, v, _ in dicts.parse_entries(_committed("convert_explicit"))}
    for site in SITES.values():
        token = entries[f"fault_{site.name.replace('.', '_')}_{errno_name(-site.errnos[0])}"]
        assert token[2] == site.id  # after the fault byte and the spec count


# -- the checks fire on a lie ----------------------------------------------------------------

def _lie(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old,new,error", [
    # A header token whose comment names the wrong iommu.
    ("hdr_iommufd -> ram=0x0+0x10000 hugetlb=no iommu=iommufd",
     "hdr_iommufd -> ram=0x0+0x10000 hugetlb=no iommu=type1", "iommu=type1 is not in"),
    # The drift this file was born of: a header byte that makes the world hugetlb.
    ('hdr_one_block="\\x00\\xff', 'hdr_one_block="\\x00\\x00',
     "ram=0x0+0x10000 is not in the decoded header"),
    # An op whose comment says private where the bytes say shared.
    ("op_kvm_convert_memory -> kvm_convert_memory(0x2000, 0x1000, shared)",
     "op_kvm_convert_memory -> kvm_convert_memory(0x2000, 0x1000, private)", "decodes to"),
    # An op token one byte short: it borrows the next op's first byte.
    ('op_to_shared_4_blocks="\\x00\\x00\\x00\\x00\\x02\\x00\\x03\\x00\\xff\\xff"',
     'op_to_shared_4_blocks="\\x00\\x00\\x00\\x00\\x02\\x00\\x03\\x00\\xff"',
     "op_to_shared_4_blocks: decodes to"),
    # A fault token whose comment names another errno.
    ("(fault: vfio.dma_map=ENOSPC@1)", "(fault: vfio.dma_map=EEXIST@1)", "decodes to"),
    # A swarm that does not enable what it says, or turns junk the other way.
    ("kinds: kvm_convert_memory vfio_register junk=yes",
     "kinds: kvm_convert_memory vfio_unregister junk=yes", "op table"),
    ("kinds: kvm_convert_memory vfio_register junk=no",
     "kinds: kvm_convert_memory vfio_register junk=yes", "junk ranges are off"),
    # A claim that does not decode the token it describes, or names no token.
    ("# decodes: hdr_x86_split ->", "# decodes: hdr_one_block ->", "does not decode"),
    ("# decodes: hdr_one_block swarm_all_kinds op_guest_touch ->",
     "# decodes: hdr_one_block swarm_all op_guest_touch ->", "unknown token"),
    # A header token one byte short: only the swarm after it notices.
    ('hdr_memlock_4_pages="\\x00\\xff\\x00\\x00\\x00\\x00\\xff\\x00\\x00\\x00\\x00"',
     'hdr_memlock_4_pages="\\x00\\xff\\x00\\x00\\x00\\x00\\xff\\x00\\x00\\x00"',
     "hdr_memlock_4_pages is not exactly the header's bytes"),
    # A token with no claim at all.
    ("# decodes: hdr_tight ->", "# claims: hdr_tight ->", "no single"),
])
def test_the_binary_check_fires_on_a_token_whose_comment_lies(old, new, error):
    text = _committed("convert_explicit")  # which checks clean: the test above
    errors = dicts.check(_lie(text, old, new), dicts.BINARY["convert_explicit"])
    assert errors and any(error in e for e in errors), errors


@pytest.mark.parametrize("kind,word,error", [
    ("invariant", "stale-mappings", "is not an invariant"),
    ("op", "vfio_plug(", "is not OPNAME("),
    ("fault", "vfio.dma_map=EINTR", "cannot fail with EINTR"),
    ("fault", "vfio.dma_mapp=ENOMEM", "unknown site"),
    ("header", "design=qemu-11", "names no design"),
    ("header", "block_size=0x3000", "block_size: 0x3000 is not a power of two"),
    ("header", "colour=blue", "header key"),
    ("enum", ", sideways)", "enumeration"),
    ("point", "before 0 ", "not a notification number"),
    ("fault_suffix", "/x", "not a number"),
    ("errno", "ENOTANERRNO", "errno"),
    ("expect", "# expect: fine", "is not 'ok'"),
    ("magic", "# gmem-rig trace v2", "magic"),
    ("text", "::", "not in a serialized trace"),
])
def test_the_text_check_fires_on_a_word_outside_its_grammar(kind, word, error):
    text = _committed(dicts.TEXT) + f'#\n# grammar: {kind}\nbad_word="{word}"\n'
    errors = dicts.check_text(text)
    assert len(errors) == 1 and error in errors[0], errors


def test_the_text_check_needs_a_grammar_kind():
    assert dicts.check_text('orphan="x"\n') == ["orphan: no '# grammar: KIND' above it"]


# -- the encoder refuses what the decoder cannot produce -----------------------------------

def test_the_encoder_refuses_what_no_byte_decodes_to():
    options = dicts.BINARY["convert"]
    fields = dict(dicts.BASE_FIELDS)
    with pytest.raises(dicts.EncodeError, match="max_memslots|below"):
        dicts.encode_header(options, **{**fields, "max_memslots": 32764})
    with pytest.raises(dicts.EncodeError, match="hugetlb"):
        dicts.encode_header(options, **{**fields, "hugetlb": True})
    _, table = dicts.encode_swarm(options, {"kvm_convert_memory": 1}, junk=False)
    cfg = WorldConfig()
    with pytest.raises(dicts.EncodeError, match="range 0x10000.0x1000 leaves its RAM block"):
        dicts.encode_op(cfg, table, options, False, op("kvm_convert_memory", 0x10000, 0x1000,
                                                       False))
    with pytest.raises(dicts.EncodeError, match="not enabled"):
        dicts.encode_op(cfg, table, options, False, op("guest_touch", 0x0))


# -- the pick by id ------------------------------------------------------------------------

def test_a_byte_that_names_an_id_keeps_its_meaning_when_an_entry_is_appended():
    for ids in (dec.SITE_IDS, dec.DESIGN_IDS):
        grown = ids + (max(ids) + 1,)
        for v in range(256):
            if v % dec.ID_SPACE in ids:
                assert pick_id(v, ids) == pick_id(v, grown) == v % dec.ID_SPACE
        for v in range(len(ids)):
            assert pick_id(v, ids) == v  # today's ids have no holes: byte i is id i
        assert {pick_id(v, ids) for v in range(256)} == set(ids)


def test_the_site_and_design_bytes_are_their_ids():
    """Byte i is still what it was before ids existed (position i), for every entry."""
    assert [s.name for s in SITES.values()] == [dec.SITE_BY_ID[i].name for i in dec.SITE_IDS]
    assert list(DESIGNS) == [dec.DESIGN_BY_ID[i] for i in dec.DESIGN_IDS]
    for site in SITES.values():
        assert dec.SITE_BY_ID[pick_id(site.id, dec.SITE_IDS)] is site
    for name, cls in DESIGNS.items():
        data = bytes([cls.id]) + b"\x00" * 16
        assert decode(data, DecodeOptions())[0].design == name


def test_an_id_past_the_byte_is_refused():
    with pytest.raises(ValueError, match=f"id {dec.ID_SPACE} is not below ID_SPACE"):
        dec._id_table("fault site", {0: "a", dec.ID_SPACE: "b"})


def test_decoded_traces_still_reach_every_site_and_design():
    """The pick by id keeps the world harnesses' traces varied: random inputs draw every
    site (explicit faults) and every design (when the design is decoded)."""
    sites, designs = set(), set()
    explicit = DecodeOptions(faults="explicit")
    for i in range(400):
        data = b"".join(hashlib.sha256(f"{i}/{j}".encode()).digest() for j in range(8))
        cfg, ops = decode(data, explicit)
        designs.add(cfg.design)
        sites.update(spec.site for o in ops for spec in o.prop("fault", ()))
    assert sites == set(SITES)
    assert designs == set(DESIGNS)
