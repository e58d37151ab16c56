"""``rig port-doc``: docs/porting.md, generated from the rig, never kept by hand.

The document tells a QEMU developer what to change to get from QEMU 10.1 to the design the
rig proved (``hardened``), and why.  Nothing in it is a list kept apart from the code it
describes:

- the hardenings are the differences between the two design classes
  (``attribute_differences``: every public class attribute, inherited ones included) and
  the methods only ``hardened`` defines (``hardened_methods``).  Each is mapped to a
  description kept here, next to the mapping; ``undescribed`` names a difference without
  one, and the tests fail on it, so the document cannot silently go stale when a design
  changes;
- every regression trace it cites is replayed on both designs (and, where one exists, on
  the world mutant that removes just that hardening) each time the document is written,
  and the document states the outcomes it saw, not the ones it expected;
- what the C port carries is read from rig/port/ram-block-attributes.c itself: each
  ``Hardening:`` comment and the function it is in.

``--qemu-src DIR`` appends a unified diff of DIR's system/ram-block-attributes.c against the
port.  The committed document is written without it: QEMU's code is never committed.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from rig.errors import UsageError

#: The two designs the document compares: the upstream baseline and the rig's target.
BASE = "qemu-10.1"
TARGET = "hardened"
#: Where the document goes by default (relative to the working directory, as the other
#: commands' outputs; CI runs from the checkout's root).
DEFAULT_OUT = "docs/porting.md"
#: The C port, in the package.
PORT = Path(__file__).resolve().parents[1] / "port" / "ram-block-attributes.c"
#: The upstream file the port replaces, inside a QEMU tree.
UPSTREAM_FILE = "system/ram-block-attributes.c"
#: Class attributes that name a design rather than describe its behaviour.
IDENTITY = ("name", "id")
#: A class attribute one of the designs does not have.
MISSING = "(not set)"


@dataclass(frozen=True)
class Citation:
    """A committed trace cited for a hardening: ``path`` relative to corpora/, and
    whether it must show a bug (any outcome but ``ok``) on ``BASE`` and on ``TARGET``.
    ``mutant``: the world mutant of ``TARGET`` that drops just this hardening, which must
    show the bug too."""

    path: str
    bug_on_base: bool = True
    bug_on_target: bool = False
    mutant: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Hardening:
    """One change from QEMU 10.1 to ``hardened``, as a QEMU developer needs it."""

    title: str
    what: str
    why: str
    invariants: tuple[str, ...]   # rig.check.oracle invariant names the bug breaks
    touches: tuple[str, ...]      # "file: function()" in QEMU's tree
    in_port: bool                 # carried by rig/port/ram-block-attributes.c
    cites: tuple[Citation, ...] = ()
    #: Said plainly when no committed regression trace shows the hardening.
    no_trace: str = ""
    #: Core mutants of the bug benchmark that each remove one part of it (not replayed
    #: here: a core mutant needs its own build; ``rig bench bugs`` runs them).
    core_mutants: tuple[str, ...] = ()


_RBA = "system/ram-block-attributes.c"
_KVM = "accel/kvm/kvm-all.c"
_VFIO = "hw/vfio/listener.c"

#: Each design attribute that differs between ``BASE`` and ``TARGET``: what it changes.
ATTRIBUTES: dict[str, Hardening] = {
    "rollback": Hardening(
        "Roll back listeners and bitmap on a populate failure",
        "When a listener refuses to populate, every listener notified before it gets "
        "notify_discard of its own section clipped to the range (never the failing "
        "listener's), and the bitmap returns to exactly its prior bits: the whole range "
        "is cleared again, and in the \"Unexpected mixture\" path the failing block's bit "
        "is cleared and the blocks this call populated are discarded, newest first.  At "
        "unregistration one discard of the whole section is sent whatever the listener "
        "supports.",
        "QEMU 10.1 stops at the failing listener and undoes nothing: the bitmap says "
        "shared over blocks that the failing listener and every later one never mapped, "
        "and the earlier listeners stay mapped over a range the caller goes on to treat "
        "as failed.",
        ("shared-unmapped", "atomic-failure"),
        (f"{_RBA}: ram_block_attributes_notify_populate()",
         f"{_RBA}: ram_block_attributes_state_change()",
         f"{_RBA}: ram_block_attributes_rdm_unregister_listener()"),
        True,
        (Citation("regressions/shared-unmapped-qemu-10.1-a0658dea.trace"),),
        core_mutants=("rollback-wrong-section", "rollback-forgets-failing-bit"),
    ),
    "atomic": Hardening(
        "A failed conversion leaves the world as it was",
        "kvm_convert_memory() validates the whole range before it changes anything "
        "(page-aligned, no wrap, every piece RAM and block-aligned; a range over two RAM "
        "blocks is split per block, one that touches a gap is refused), and on a "
        "state_change failure converts the blocks it already converted back and frees "
        "the shared pages that pinning allocated for formerly private pages.",
        "QEMU 10.1 does not clip the size to the region memory_region_find() returned: a "
        "range crossing a RAM block's end changes KVM's attributes, then fails in "
        "state_change, and nothing is undone.",
        ("atomic-failure", "attr-agree"),
        (f"{_KVM}: kvm_convert_memory()",),
        False,
        (Citation("regressions/shared-unmapped-qemu-10.1-f915fd5f.trace"),),
    ),
    "stops_vm": Hardening(
        "No VM stop for a recoverable conversion error",
        "A negative kvm_convert_memory() return goes back to the guest (the vCPU loop "
        "carries on) instead of stopping the VM.",
        "In QEMU 10.1 any negative return from the KVM_EXIT_MEMORY_FAULT case ends "
        "kvm_cpu_exec() and stops the VM, so a transient -ENOMEM from a DMA map is "
        "fatal.  Safe only because the conversion is atomic (the rows above): the guest "
        "sees a failed conversion and a world exactly as before it.",
        (),
        (f"{_KVM}: kvm_cpu_exec(), case KVM_EXIT_MEMORY_FAULT",),
        False,
        (Citation("regressions/shared-unmapped-qemu-10.1-a0658dea.trace",
                  note="the VM stop is part of qemu-10.1's outcome"),),
    ),
    "budget_check": Hardening(
        "Refuse a device that could run out of DMA mappings",
        "The dma_max_mappings check at hot-plug refuses the device (gracefully while its "
        "container is new) instead of warning and keeping it.",
        "With only a warning, a device whose sections need more type1 mappings than "
        "dma_entry_limit allows is admitted, and a later valid conversion fails with "
        "-ENOSPC (on QEMU 10.1, stopping the VM).",
        ("mapping-exhaustion", "shared-unmapped"),
        (f"{_VFIO}: vfio_ram_discard_register_listener()",),
        False,
        (Citation("mutants/limit-warn-only.trace", mutant="limit-warn-only",
                  note="the kill trace of the mutant that only warns"),),
        no_trace="No trace in corpora/regressions/ shows it; the mutant's kill trace below "
        "does.",
    ),
    "serialize_hotplug": Hardening(
        "Serialize hot-plug and conversions",
        "A conversion waits until a device's registration (insert and replay of the "
        "populated runs) has finished: one lock around both.",
        "A conversion that lands inside a registration replay populates a block the "
        "replay populates again: VFIO's map fails with -EEXIST and its rollback, one "
        "unmap of the whole section, also removes the valid older mappings.",
        ("shared-unmapped",),
        (f"{_KVM}: kvm_convert_memory()",
         f"{_RBA}: ram_block_attributes_rdm_register_listener()",
         f"{_VFIO}: vfio_listener_region_add()"),
        False,
        (Citation("regressions/shared-unmapped-rdm-rollback-a42c9ea7.trace"),
         Citation("mutants/register-race.trace", bug_on_base=False, mutant="register-race",
                  note="the kill trace of the mutant that lets the conversion land between "
                  "the replay and the insertion")),
    ),
    "retries": Hardening(
        "Retry the idempotent undo steps",
        "The steps that undo or finish a conversion and are idempotent (the VFIO unmap of "
        "a section, checked against what is left mapped; the punch of the unused side; "
        "the KVM attribute restore) are retried, up to the design's bound, before the "
        "design gives up and reports it.",
        "QEMU 10.1 only reports an unmap error (its iommufd backend even takes -ENOENT, "
        "which the kernel returns after a partial unmap, for success), so a mapping "
        "survives on a page that is then freed or made private.",
        ("stale-mapping", "pin-leak"),
        (f"{_VFIO}: vfio_ram_discard_notify_discard()",
         f"{_KVM}: kvm_convert_memory()"),
        False,
        (Citation("regressions/stale-mapping-qemu-10.1-c4341ccb.trace"),
         Citation("regressions/stale-mapping-qemu-10.1-dc804da0.trace"),
         Citation("regressions/shared-unmapped-hardened-c1359247.trace", bug_on_target=True,
                  note="the bound: every one of the retries of the attribute restore fails, "
                  "and hardened reports what it could not restore")),
    ),
}

#: Each behaviour only ``TARGET``'s code shows (no class attribute says it), keyed by a
#: short name; ``METHODS`` maps the methods ``TARGET`` defines to these or to attributes.
BEHAVIOURS: dict[str, Hardening] = {
    "kvm-attribute-restore": Hardening(
        "Restore KVM's memory attributes after a failed conversion",
        "kvm_convert_memory() saves the private attribute of every page before "
        "KVM_SET_MEMORY_ATTRIBUTES and, when state_change fails, sets it back run by run "
        "(each run all or nothing, retried).",
        "QEMU 10.1 leaves KVM's attribute changed after state_change fails: KVM says "
        "shared over a bitmap the manager rolled back to private.",
        ("attr-agree", "atomic-failure"),
        (f"{_KVM}: kvm_convert_memory()",),
        False,
        (Citation("regressions/shared-unmapped-qemu-10.1-a0658dea.trace",
                  mutant="attr-not-restored"),),
    ),
    "register-replay-failure": Hardening(
        "A failed registration replay refuses the device, not the process",
        "ram_block_attributes_rdm_register_listener() returns the replay's -errno (the "
        "listener stays registered), and the caller unregisters the device's listeners, "
        "which discards what the replay populated, and refuses the device.",
        "QEMU 10.1 calls exit(1) when a listener fails during the replay of the "
        "populated runs: a DMA map failure at hot-plug kills the VM.  The refusal must "
        "leave nothing behind: a refused device holds no listener and no mapping "
        "(invariant `orphan-listener`).",
        (),
        (f"{_RBA}: ram_block_attributes_rdm_register_listener()",
         f"{_VFIO}: vfio_ram_discard_register_listener()"),
        True,
        no_trace="No committed trace shows it: none of corpora/ fails a DMA map during a "
        "registration replay.",
    ),
}

#: Every method ``TARGET`` defines itself, and the hardening it implements (a key of
#: ``ATTRIBUTES`` or ``BEHAVIOURS``).
METHODS: dict[str, str] = {
    "kvm_convert_memory": "atomic",
    "pieces": "atomic",
    "discard_new_bits": "atomic",
    "discard_pinned_holes": "atomic",
    "save_attributes": "kvm-attribute-restore",
    "restore_attributes": "kvm-attribute-restore",
    "register_failed": "register-replay-failure",
    "discard_unused_side": "retries",
}

#: Attribute differences that are not hardenings, and why.
NOT_HARDENINGS: dict[str, str] = {
    "discard_shared": "a knob of Qemu101Conversion (keep-shared turns it off); hardened "
    "has its own conversion and always discards the unused side, as QEMU 10.1 does",
}


# -- what the designs say -----------------------------------------------------------------
def _design(name: str):
    from rig.world.designs import design_class

    cls = design_class(name)
    if cls is None:
        raise UsageError(f"no design {name!r}")
    return cls


def _public_data(cls) -> dict[str, object]:
    out = {}
    for attr in dir(cls):
        if attr.startswith("_") or attr in IDENTITY:
            continue
        value = getattr(cls, attr)
        if callable(value) or isinstance(value, (property, staticmethod, classmethod)):
            continue
        out[attr] = value
    return out


def attribute_differences(base=None, target=None) -> list[tuple[str, object, object]]:
    """(attribute, base's value, target's value) for every public class attribute, the
    inherited ones included, in which the two design classes differ; ``MISSING`` where
    one class does not have it.  Sorted by name."""
    a = _public_data(base or _design(BASE))
    b = _public_data(target or _design(TARGET))
    return [(k, a.get(k, MISSING), b.get(k, MISSING)) for k in sorted(set(a) | set(b))
            if a.get(k, MISSING) != b.get(k, MISSING)]


def hardened_methods(target=None) -> list[str]:
    """The methods ``TARGET``'s class defines itself (its code-only behaviours), sorted."""
    cls = target or _design(TARGET)
    return sorted(k for k, v in vars(cls).items()
                  if not k.startswith("_") and callable(getattr(cls, k)))


def undescribed(base=None, target=None) -> list[str]:
    """Differences between the designs that this module does not describe: attributes
    in neither ``ATTRIBUTES`` nor ``NOT_HARDENINGS``, methods not in ``METHODS``.  Empty
    when the document covers the designs as they are."""
    out = [f"attribute {k}" for k, _, _ in attribute_differences(base, target)
           if k not in ATTRIBUTES and k not in NOT_HARDENINGS]
    out += [f"method {m}" for m in hardened_methods(target) if m not in METHODS]
    return out


def stale_descriptions(base=None, target=None) -> list[str]:
    """Descriptions of differences the designs no longer have (the reverse check)."""
    diff = {k for k, _, _ in attribute_differences(base, target)}
    out = [f"attribute {k}" for k in list(ATTRIBUTES) + list(NOT_HARDENINGS) if k not in diff]
    methods = set(hardened_methods(target))
    out += [f"method {m}" for m in METHODS if m not in methods]
    out += [f"behaviour {b}" for b in BEHAVIOURS if b not in METHODS.values()]
    return out


# -- replaying the citations --------------------------------------------------------------
@dataclass(frozen=True)
class Replayed:
    citation: Citation
    base: str            # outcome on BASE, as Outcome.describe() says it
    target: str
    mutant: str | None   # outcome on the mutant, when the citation names one

    @property
    def verified(self) -> bool:
        def bug(text):
            return text != "ok"
        return (bug(self.base) == self.citation.bug_on_base
                and bug(self.target) == self.citation.bug_on_target
                and (self.mutant is None or bug(self.mutant)))


def replay(citation: Citation, backend: str | None = None) -> Replayed:
    """Run the cited trace on ``BASE``, ``TARGET`` (and the mutant) from its own world:
    the trace's header with only the design swapped."""
    import rig.core
    from rig.check.session import run
    from rig.trace.corpus import root
    from rig.trace.format import load

    backend = backend or rig.core.BACKEND
    path = root() / citation.path
    if not path.is_file():
        raise UsageError(f"cited trace corpora/{citation.path} does not exist")
    trace = load(str(path), strict=True)

    def outcome(design: str) -> str:
        return run(trace.config.with_(design=design), trace.ops, backend).outcome.describe()

    return Replayed(citation, outcome(BASE), outcome(TARGET),
                    outcome(citation.mutant) if citation.mutant else None)


# -- what the C port carries --------------------------------------------------------------
_DEF = re.compile(r"^(?:[A-Za-z_][\w \*]*?[\s\*])?(ram_block_attributes_\w+)\(")


def port_hardenings(text: str | None = None) -> list[tuple[str, str]]:
    """(function, text) of every ``Hardening:`` comment of the C port, in file
    order.  A comment inside a function belongs to it; one at file level to the function
    declared next."""
    lines = (PORT.read_text() if text is None else text).splitlines()
    out: list[tuple[str, str]] = []
    current = None
    pending: list[str] = []     # file-level comments waiting for the next definition
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _DEF.match(line)
        if match:
            current = match.group(1)
            out += [(current, s) for s in pending]
            pending = []
        elif line.startswith("}"):
            current = None
        stripped = line.strip()
        if stripped.startswith("/*"):
            body = []
            while True:
                body.append(lines[i].strip().lstrip("/*").rstrip("*/").strip())
                if "*/" in lines[i]:
                    break
                i += 1
            text_ = " ".join(part for part in body if part)
            found = text_.find("Hardening:")
            if found >= 0:
                sentence = text_[found + len("Hardening:"):].strip().rstrip(".")
                if current is None:
                    pending.append(sentence)
                else:
                    out.append((current, sentence))
        i += 1
    return out


# -- the document ---------------------------------------------------------------------------
def _value(v) -> str:
    return MISSING if v == MISSING else f"`{v!r}`" if isinstance(v, str) else f"`{v}`"


def _claim(c: Citation) -> str:
    """What the citation is cited to show, in words."""
    def shows(bug: bool, design: str) -> str:
        return f"{'a bug' if bug else 'ok'} on {design}"
    parts = [shows(c.bug_on_base, BASE), shows(c.bug_on_target, TARGET)]
    if c.mutant:
        parts.append(shows(True, c.mutant))
    return ", ".join(parts) + (" (the documented limit)" if c.bug_on_target else "")


def _section(key: str, h: Hardening, header: str, backend: str | None,
             replayed: list[Replayed]) -> list[str]:
    out = [f"### {h.title}", "", header, "",
           f"**What.** {h.what}", "",
           f"**Why.** {h.why}" + (
               " Invariants it breaks (`rig list invariants`): "
               + ", ".join(f"`{i}`" for i in h.invariants) + "." if h.invariants else ""), "",
           "**Where in QEMU.** " + "; ".join(f"`{t}`" for t in h.touches) + ".", "",
           "**Carried by.** " + ("the C port, `rig/port/ram-block-attributes.c`."
                                 if h.in_port else "a QEMU change described here (the C "
                                 "port carries the state manager only)."), ""]
    if h.no_trace:
        out += [f"**Regression trace.** {h.no_trace}", ""]
    elif h.cites:
        out += ["**Regression trace.**", ""]
    for c in h.cites:
        r = replay(c, backend)
        replayed.append(r)
        line = f"- `corpora/{c.path}`" + (f" ({c.note})" if c.note else "") + \
            f": on `{BASE}`: {r.base}; on `{TARGET}`: {r.target}"
        if c.mutant:
            line += f"; on `{c.mutant}` (`{TARGET}` without just this change): {r.mutant}"
        line += f".  {'Verified' if r.verified else 'NOT VERIFIED'}: {_claim(c)}."
        out.append(line)
    if h.cites:
        out.append("")
    if h.core_mutants:
        out += ["Core mutants that each remove one part of it (`rig list mutants`, run by "
                "`rig bench bugs`): " + ", ".join(f"`{m}`" for m in h.core_mutants) + ".", ""]
    return out


def generate(qemu_src: str | None = None, backend: str | None = None,
             replayed: list | None = None) -> str:
    """The document's text.  ``replayed`` (a list) collects every citation's replay."""
    replayed = [] if replayed is None else replayed
    problems = undescribed()
    if problems:
        raise UsageError("rig/cli/porting.py does not describe "
                         + ", ".join(problems) + f" (a difference between {BASE} and "
                         f"{TARGET}): add it to ATTRIBUTES, BEHAVIOURS/METHODS or "
                         "NOT_HARDENINGS")
    diffs = attribute_differences()
    hardenings = [(k, b, t) for k, b, t in diffs if k in ATTRIBUTES]
    out = [
        "# Porting the hardened design to QEMU",
        "",
        "Generated by `rig port-doc` from the designs, the regression corpus and the C port",
        "(do not edit by hand; `rig port-doc --check` fails when this file is not what it",
        "would write, and a test runs it). Every trace cited below was replayed on both",
        "designs when this file was written; the outcomes are the ones seen.",
        "",
        f"It lists what `{TARGET}` (`rig/world/designs/hardened.py`) does differently from",
        f"`{BASE}` (`rig/world/designs/qemu_10_1.py`), as changes to QEMU: what, why (the",
        "bug and the invariants of `rig/check/oracle.py` it breaks), the QEMU function it",
        "touches, and the regression trace that shows the bug on one and not on the other.",
        "",
        "## The bridge",
        "",
        "- `rig/port/ram-block-attributes.c` is the hardened state manager written as C for",
        "  QEMU, in the layout of QEMU 10.1's `system/ram-block-attributes.c`, so that",
        "  `diff -u` against that file shows only the hardening; GPL-2.0-or-later, as QEMU",
        "  and this project. Its executable specification is the rig's core with",
        "  `rollback=\"full\"` (`rig/core/pure/ram_block_attributes.py`).",
        "- `rig port-check --builtin` builds it against the rig's QEMU stub layer and",
        f"  differential-tests it against the core's `{TARGET}` policy over seeded random op",
        "  streams (CI runs it on every change).",
        "- `rig port-check --qemu-src DIR --against hardened` does the same for the files of",
        "  a QEMU tree you have patched: the proof that your port behaves like the design",
        "  the rig fuzzed.",
        "- `rig port-doc --qemu-src DIR -o FILE` writes this document with the unified diff",
        "  of DIR's `system/ram-block-attributes.c` against the port appended.",
        "",
        "## The hardenings",
        "",
        f"| hardening | `{BASE}` | `{TARGET}` | carried by |",
        "|---|---|---|---|",
    ]
    for key, b, t in hardenings:
        h = ATTRIBUTES[key]
        out.append(f"| {h.title} (`{key}`) | {_value(b)} | {_value(t)} | "
                   f"{'C port' if h.in_port else 'QEMU change'} |")
    for key, h in BEHAVIOURS.items():
        methods = ", ".join(f"`{m}`" for m, k in METHODS.items() if k == key)
        out.append(f"| {h.title} | (code) | {methods} | "
                   f"{'C port' if h.in_port else 'QEMU change'} |")
    out.append("")
    for key, b, t in hardenings:
        h = ATTRIBUTES[key]
        methods = [m for m, k in METHODS.items() if k == key]
        header = f"Design attribute `{key}`: {_value(b)} on `{BASE}`, {_value(t)} on `{TARGET}`."
        if methods:
            header += f" Code: `Hardened.{'`, `Hardened.'.join(methods)}`."
        out += _section(key, h, header, backend, replayed)
    for key, h in BEHAVIOURS.items():
        methods = [m for m, k in METHODS.items() if k == key]
        header = (f"Shown by code only: `Hardened.{'`, `Hardened.'.join(methods)}` "
                  f"(no design attribute says it).")
        out += _section(key, h, header, backend, replayed)
    others = [(k, b, t) for k, b, t in diffs if k in NOT_HARDENINGS]
    if others:
        out += ["## Differences that are not hardenings", ""]
        for key, b, t in others:
            out.append(f"- `{key}` ({_value(b)} on `{BASE}`, {_value(t)} on `{TARGET}`): "
                       f"{NOT_HARDENINGS[key]}.")
        out.append("")
    out += ["## What the C port carries", "",
            "The state manager: each `Hardening:` comment of "
            "`rig/port/ram-block-attributes.c`, by function:", ""]
    for function, sentence in port_hardenings():
        out.append(f"- `{function}()`: {sentence}.")
    out += ["", "The rest stays QEMU changes, described above:", ""]
    out += [f"- {h.title}: " + ", ".join(f"`{t}`" for t in h.touches) + "."
            for h in list(ATTRIBUTES.values()) + list(BEHAVIOURS.values()) if not h.in_port]
    out.append("")
    out += ["## The diff against QEMU 10.1", ""]
    if qemu_src is None:
        out += ["Not in the committed document: QEMU's code is never committed here. Run",
                "`rig port-doc --qemu-src DIR -o FILE` with DIR a QEMU 10.1 tree to get this",
                "document with the unified diff of DIR's `system/ram-block-attributes.c`",
                "against `rig/port/ram-block-attributes.c` appended.", ""]
    else:
        out += [f"`{UPSTREAM_FILE}` of the QEMU tree given to `--qemu-src` against "
                "`rig/port/ram-block-attributes.c`:", "", "```diff",
                *unified_diff(qemu_src), "```", ""]
    return "\n".join(out)


def upstream_file(qemu_src: str) -> Path:
    """DIR's system/ram-block-attributes.c, or UsageError naming what is wrong."""
    root = Path(qemu_src)
    if not root.is_dir():
        raise UsageError(f"--qemu-src {qemu_src}: not a directory")
    path = root / UPSTREAM_FILE
    if not path.is_file():
        raise UsageError(f"--qemu-src {qemu_src}: no {UPSTREAM_FILE} (not a QEMU tree "
                         "with the RamBlockAttributes state manager, QEMU 10.1 or later)")
    return path


def unified_diff(qemu_src: str) -> list[str]:
    path = upstream_file(qemu_src)
    try:
        theirs = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--qemu-src {qemu_src}: cannot read {UPSTREAM_FILE} ({exc})") \
            from None
    ours = PORT.read_text(encoding="utf-8").splitlines()
    return list(difflib.unified_diff(theirs, ours, f"a/{UPSTREAM_FILE}", f"b/{UPSTREAM_FILE}",
                                     lineterm=""))


def first_difference(a: str, b: str) -> int:
    """The 1-based number of the first line where ``a`` and ``b`` differ."""
    la, lb = a.splitlines(), b.splitlines()
    for n, (x, y) in enumerate(zip(la, lb), 1):
        if x != y:
            return n
    return min(len(la), len(lb)) + 1


def main(args) -> int:
    """``rig port-doc``: write (or with --check, compare) the document."""
    from rig.errors import EXIT_OK

    if args.qemu_src is not None:
        upstream_file(args.qemu_src)  # a bad tree fails before the replays
        if args.output is None:
            raise UsageError(f"--qemu-src puts QEMU's code in the document: give -o FILE "
                             f"(the committed {DEFAULT_OUT} is written without it)")
    out = args.output or DEFAULT_OUT
    replayed: list[Replayed] = []
    text = generate(args.qemu_src, replayed=replayed)
    for r in replayed:
        if not r.verified:
            print(f"rig port-doc: warning: corpora/{r.citation.path} no longer shows what it "
                  f"is cited for (on {BASE}: {r.base}; on {TARGET}: {r.target})",
                  file=sys.stderr)
    if args.check:
        path = Path(out)
        if not path.is_file():
            raise UsageError(f"{out}: missing; run `rig port-doc -o {out}`")
        current = path.read_text(encoding="utf-8")
        if current != text:
            raise UsageError(f"{out} is not current (first difference at line "
                             f"{first_difference(current, text)}): run `rig port-doc -o {out}`")
        print(f"{out} is current")
        return EXIT_OK
    if out == "-":
        sys.stdout.write(text)
        return EXIT_OK
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(replayed)} trace replays)")
    return EXIT_OK
