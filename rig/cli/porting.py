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
- what the C port carries is read from its two files themselves (``PORT_FILES``: the
  state manager, rig/port/ram-block-attributes.c, and the hardened kvm_convert_memory(),
  rig/port/kvm/kvm-convert-memory.c): each ``Hardening:`` comment and the function it is
  in.  A hardening says which of the two carries it and in which functions
  (``Hardening.port``, ``Hardening.carried_in``); ``port_problems`` refuses a claim whose
  function has no ``Hardening:`` comment in that file, so the "carried by" column cannot
  name a file that does not carry it.

``--qemu-src DIR`` appends a unified diff of DIR's system/ram-block-attributes.c against the
port, and one of DIR's kvm_convert_memory() (accel/kvm/kvm-all.c) against the port's.  The
committed document is written without them: QEMU's code is never committed.
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
#: The C port's folder, in the package.
PORT_DIR = Path(__file__).resolve().parents[1] / "port"
#: The port's files, relative to PORT_DIR: the hardened state manager, and the hardened
#: kvm_convert_memory() that runs on top of it.
RBA_PORT = "ram-block-attributes.c"
KVM_PORT = "kvm/kvm-convert-memory.c"
PORT_FILES = (RBA_PORT, KVM_PORT)
#: The state manager port (the file ``--qemu-src`` diffs whole).
PORT = PORT_DIR / RBA_PORT
#: The upstream file the state manager port replaces, inside a QEMU tree.
UPSTREAM_FILE = "system/ram-block-attributes.c"
#: The upstream file that holds kvm_convert_memory(), and the function, which
#: ``--qemu-src`` diffs against the one of ``KVM_PORT``.
UPSTREAM_KVM_FILE = "accel/kvm/kvm-all.c"
KVM_FUNCTION = "kvm_convert_memory"
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
    #: The port file that carries it (a key of ``PORT_FILES``), or None: a QEMU change
    #: described in prose only.
    port: str | None
    #: The functions (or macros) of ``port`` whose ``Hardening:`` comments carry it.
    carried_in: tuple[str, ...] = ()
    #: What stays a QEMU change and where; empty only when ``port`` carries all of it.
    remains: str = ""
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
        RBA_PORT,
        carried_in=("ram_block_attributes_notify_populate", "ram_block_attributes_state_change",
                    "ram_block_attributes_rdm_unregister_listener"),
        cites=(Citation("regressions/shared-unmapped-qemu-10.1-a0658dea.trace"),),
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
        KVM_PORT,
        carried_in=("kvm_convert_memory", "kvm_convert_memory_find_pieces",
                    "kvm_convert_memory_discard_new_bits", "kvm_convert_memory_discard_holes"),
        cites=(Citation("regressions/shared-unmapped-qemu-10.1-f915fd5f.trace"),),
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
        None,
        remains="in the KVM_EXIT_MEMORY_FAULT case of kvm_cpu_exec() "
        f"(`{_KVM}`), kvm_convert_memory()'s caller, which the port does not carry (its "
        "header comment says so); the port's kvm_convert_memory() leaves nothing to stop "
        "the VM for",
        cites=(Citation("regressions/shared-unmapped-qemu-10.1-a0658dea.trace",
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
        None,
        remains=f"the dma_max_mappings check in `{_VFIO}`, which neither "
        "port file touches",
        cites=(Citation("mutants/limit-warn-only.trace", mutant="limit-warn-only",
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
        None,
        remains="the lock, taken by kvm_convert_memory() and around a "
        f"device's registration in `{_VFIO}`; neither port file takes one",
        cites=(Citation("regressions/shared-unmapped-rdm-rollback-a42c9ea7.trace"),
               Citation("mutants/register-race.trace", bug_on_base=False,
                        mutant="register-race",
                        note="the kill trace of the mutant that lets the conversion land "
                        "between the replay and the insertion")),
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
        KVM_PORT,
        carried_in=("KVM_CONVERT_MEMORY_RETRIES", "kvm_convert_memory_retry",
                    "kvm_convert_memory_restore_attributes", "kvm_convert_memory_discard_unused"),
        remains=f"the retried VFIO unmap of a section, checked against what is left mapped: "
        f"`{_VFIO}: vfio_ram_discard_notify_discard()`",
        cites=(Citation("regressions/stale-mapping-qemu-10.1-c4341ccb.trace"),
               Citation("regressions/stale-mapping-qemu-10.1-dc804da0.trace"),
               Citation("regressions/shared-unmapped-hardened-c1359247.trace",
                        bug_on_target=True,
                        note="the bound: every one of the retries of the attribute restore "
                        "fails, and hardened reports what it could not restore")),
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
        KVM_PORT,
        carried_in=("kvm_convert_memory", "kvm_convert_memory_restore_attributes"),
        cites=(Citation("regressions/shared-unmapped-qemu-10.1-a0658dea.trace",
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
        RBA_PORT,
        carried_in=("ram_block_attributes_rdm_register_listener",),
        remains="the caller's part: unregistering the device's listeners and refusing the "
        f"device, in `{_VFIO}: vfio_ram_discard_register_listener()`",
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
#: A line at column 0 that may open a C function definition, QEMU style: the name, with
#: its return type before it on the line or alone on the line above, then "(".
_DEF = re.compile(r"^(?:[A-Za-z_][\w \*]*?[\s\*])?([A-Za-z_]\w*)\(")
#: A macro definition (a file-level ``Hardening:`` comment may explain a constant).
_MACRO = re.compile(r"^#\s*define\s+([A-Za-z_]\w*)")
#: "Hardening:" opening the comment or a sentence of it, not quoted in prose (a header
#: comment that says what is "marked "Hardening:" below" is not one).
_MARK = re.compile(r"(?:^|[.!?]\s+)Hardening:\s*")


def definition(lines: list[str], i: int) -> str | None:
    """The name of the C function whose definition starts at ``lines[i]``, or None.

    QEMU style: the name's line starts at column 0, the parameter list (possibly over
    several lines) closes and then the body opens, on the same line or as ``{`` alone on
    the next.  That keeps out a prototype (``;`` after the list) and a macro invocation
    at column 0 such as ``OBJECT_DEFINE_SIMPLE_TYPE_WITH_INTERFACES(...)`` (no body),
    which a name-only pattern would take for a definition."""
    match = _DEF.match(lines[i])
    if not match:
        return None
    depth, j, pos = 0, i, match.end() - 1
    while j < len(lines):
        text = lines[j][pos:]
        for k, ch in enumerate(text):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    rest = text[k + 1:].strip()
                    if rest:
                        return match.group(1) if rest == "{" else None
                    following = lines[j + 1].rstrip() if j + 1 < len(lines) else ""
                    return match.group(1) if following == "{" else None
        j, pos = j + 1, 0
    return None


def port_hardenings(text: str | None = None, port: str = RBA_PORT) -> list[tuple[str, str]]:
    """(function, text) of every ``Hardening:`` comment of the port file ``port`` (a
    member of ``PORT_FILES``; ``text``: that file's text instead), in file order.  A
    comment inside a function belongs to it; one at file level to the function or the
    macro defined next (a macro's name is upper case, as QEMU spells them)."""
    lines = ((PORT_DIR / port).read_text(encoding="utf-8") if text is None
             else text).splitlines()
    out: list[tuple[str, str]] = []
    current = None
    pending: list[str] = []     # file-level comments waiting for the next definition
    i = 0
    while i < len(lines):
        line = lines[i]
        name = definition(lines, i)
        macro = _MACRO.match(line) if current is None else None
        if name or macro:
            if name:
                current = name
            out += [(name or macro.group(1), s) for s in pending]
            pending = []
        elif line.startswith("}"):
            current = None
        stripped = line.strip()
        if stripped.startswith("/*"):
            body = []
            while True:
                body.append(lines[i].strip().lstrip("/*").rstrip("*/").strip())
                if "*/" in lines[i] or i + 1 == len(lines):
                    break
                i += 1
            text_ = " ".join(part for part in body if part)
            found = _MARK.search(text_)
            if found:
                sentence = text_[found.end():].strip().rstrip(".")
                if current is None:
                    pending.append(sentence)
                else:
                    out.append((current, sentence))
        i += 1
    return out


def is_macro(name: str) -> bool:
    """Whether ``port_hardenings`` named a macro (upper case) rather than a function."""
    return name.upper() == name


def function_lines(text: str, name: str) -> list[str] | None:
    """The definition of the C function ``name`` in ``text``: from its definition line
    (the return type's, when it stands alone on the line above) to the closing brace at
    column 0; None when ``text`` defines no such function."""
    lines = text.splitlines()
    for i in range(len(lines)):
        if definition(lines, i) != name:
            continue
        start = i
        above = lines[i - 1].rstrip() if i else ""
        if lines[i].startswith(name) and above and not above.startswith(("#", "}", "/*", " ")) \
                and not above.endswith((";", "*/", "{", "}")):
            start = i - 1   # the return type, alone on its line
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("}")), None)
        if end is None:
            return None
        return lines[start:end + 1]
    return None


def _all_hardenings() -> list[tuple[str, Hardening]]:
    return list(ATTRIBUTES.items()) + list(BEHAVIOURS.items())


def port_problems() -> list[str]:
    """Claims of the hardenings about the port that its files do not bear out: a port
    file that is not one of ``PORT_FILES``, a hardening carried by no function or whose
    function has no ``Hardening:`` comment in the file named, one carried by neither
    file that does not say where its QEMU change goes.  Empty when every "carried by"
    is true as far as the comments go; ``generate`` refuses to write otherwise."""
    found = {port: {name for name, _ in port_hardenings(port=port)} for port in PORT_FILES}
    out = []
    for key, h in _all_hardenings():
        if h.port is None:
            if h.carried_in:
                out.append(f"{key}: carried_in names functions but no port file")
            if not h.remains:
                out.append(f"{key}: carried by neither port file, but remains does not say "
                           "where its QEMU change goes")
        elif h.port not in found:
            out.append(f"{key}: port {h.port!r} is not one of {', '.join(PORT_FILES)}")
        elif not h.carried_in:
            out.append(f"{key}: carried by rig/port/{h.port}, but carried_in names no "
                       "function of it")
        else:
            out += [f"{key}: rig/port/{h.port} has no Hardening: comment in {name}"
                    for name in h.carried_in if name not in found[h.port]]
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


def _names(names) -> str:
    return ", ".join(f"`{n}`" if is_macro(n) else f"`{n}()`" for n in names)


def _carried_by(h: Hardening) -> str:
    """The section's "Carried by." sentence: the port file and its functions whose
    ``Hardening:`` comments carry it, and what stays a QEMU change."""
    if h.port is None:
        return f"neither port file: a QEMU change, {h.remains}."
    text = (f"`rig/port/{h.port}`, in {_names(h.carried_in)} "
            f"({'their' if len(h.carried_in) > 1 else 'its'} `Hardening:` comments are listed "
            "under \"What the C port carries\").")
    if h.remains:
        text += f" Not in the port, a QEMU change: {h.remains}."
    return text


def _carried_cell(h: Hardening) -> str:
    if h.port is None:
        return "QEMU change"
    return f"`rig/port/{h.port}`" + (", in part" if h.remains else "")


def _section(key: str, h: Hardening, header: str, backend: str | None,
             replayed: list[Replayed]) -> list[str]:
    out = [f"### {h.title}", "", header, "",
           f"**What.** {h.what}", "",
           f"**Why.** {h.why}" + (
               " Invariants it breaks (`rig list invariants`): "
               + ", ".join(f"`{i}`" for i in h.invariants) + "." if h.invariants else ""), "",
           "**Where in QEMU.** " + "; ".join(f"`{t}`" for t in h.touches) + ".", "",
           "**Carried by.** " + _carried_by(h), ""]
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
    from rig.drive.portcheck import STREAMS_DEFAULT, WORLD_STREAMS_DEFAULT

    replayed = [] if replayed is None else replayed
    problems = undescribed()
    if problems:
        raise UsageError("rig/cli/porting.py does not describe "
                         + ", ".join(problems) + f" (a difference between {BASE} and "
                         f"{TARGET}): add it to ATTRIBUTES, BEHAVIOURS/METHODS or "
                         "NOT_HARDENINGS")
    problems = port_problems()
    if problems:
        raise UsageError("rig/cli/porting.py says what the C port carries wrongly: "
                         + "; ".join(problems))
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
        f"- `rig/port/{KVM_PORT}` is the hardened `{KVM_FUNCTION}()` of QEMU's",
        f"  `{UPSTREAM_KVM_FILE}` with its static helpers, in that file's style so that it can",
        "  replace the function there; it runs on top of the state manager above. Its",
        f"  executable specification is the `{TARGET}` design (`rig/world/designs/hardened.py`).",
        "  It does not carry its caller, kvm_cpu_exec() (the VM stop), as its header comment",
        "  says.",
        "- `rig port-check --builtin` checks both files:",
        f"  - it builds `rig/port/{RBA_PORT}` against the rig's QEMU stub layer and",
        "    differential-tests it against the rig's core with `rollback=\"full\"` (the",
        f"    `{TARGET}` policy) over {STREAMS_DEFAULT:,} seeded random op streams by default",
        "    (`--streams`);",
        f"  - it builds `rig/port/{KVM_PORT}` over that state manager with its KVM",
        "    harness (`rig/port/kvm/kvm-harness.c`) and runs seeded conversion streams",
        f"    ({WORLD_STREAMS_DEFAULT:,} by default, `--world-streams`, 0 for none) through "
        "it and",
        "    through the `Hardened` design on a `World` (`rig/drive/portworld.py`),",
        "    comparing after every op.",
        "",
        "  CI runs it on every change.",
        "- `rig port-check --qemu-src DIR --against hardened` does the same for the state",
        "  manager files of a QEMU tree you have patched: the proof that your port behaves",
        "  like the design the rig fuzzed. The conversion streams run on the built-in",
        f"  `{KVM_FUNCTION}()` only.",
        "- `rig port-doc --qemu-src DIR -o FILE` writes this document with two unified diffs",
        f"  appended: DIR's `{UPSTREAM_FILE}` against the port's, and DIR's",
        f"  `{KVM_FUNCTION}()` (from `{UPSTREAM_KVM_FILE}`) against the port's.",
        "",
        "## The hardenings",
        "",
        f"| hardening | `{BASE}` | `{TARGET}` | carried by |",
        "|---|---|---|---|",
    ]
    for key, b, t in hardenings:
        h = ATTRIBUTES[key]
        out.append(f"| {h.title} (`{key}`) | {_value(b)} | {_value(t)} | "
                   f"{_carried_cell(h)} |")
    for key, h in BEHAVIOURS.items():
        methods = ", ".join(f"`{m}`" for m, k in METHODS.items() if k == key)
        out.append(f"| {h.title} | (code) | {methods} | {_carried_cell(h)} |")
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
            "Each `Hardening:` comment of the two files of the port, by the function (or the",
            "macro) it is in:", ""]
    for port, what in ((RBA_PORT, f"the state manager, in place of QEMU's `{UPSTREAM_FILE}`"),
                       (KVM_PORT, f"`{KVM_FUNCTION}()` and its static helpers, in place of "
                        f"the function of QEMU's `{UPSTREAM_KVM_FILE}`")):
        out += [f"`rig/port/{port}`: {what}.", ""]
        out += [f"- {_names([name])}: {sentence}."
                for name, sentence in port_hardenings(port=port)]
        out.append("")
    out += ["What stays QEMU changes, described above:", ""]
    out += [f"- {h.title}: " + ("" if h.port else "all of it, ") + f"{h.remains}."
            for _, h in _all_hardenings() if h.remains]
    out.append("")
    out += ["## The diff against QEMU 10.1", ""]
    if qemu_src is None:
        out += ["Not in the committed document: QEMU's code is never committed here. Run",
                "`rig port-doc --qemu-src DIR -o FILE` with DIR a QEMU 10.1 tree to get this",
                f"document with two unified diffs appended: DIR's `{UPSTREAM_FILE}`",
                f"against `rig/port/{RBA_PORT}`, and DIR's `{KVM_FUNCTION}()` (from",
                f"`{UPSTREAM_KVM_FILE}`) against the one of `rig/port/{KVM_PORT}`.", ""]
    else:
        out += [f"`{UPSTREAM_FILE}` of the QEMU tree given to `--qemu-src` against "
                f"`rig/port/{RBA_PORT}`:", "", "```diff",
                *unified_diff(qemu_src), "```", ""]
        out += kvm_diff_section(qemu_src)
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


def kvm_function_diff(qemu_src: str) -> tuple[str, list[str]]:
    """(why, diff): the unified diff of ``KVM_FUNCTION`` as DIR's ``UPSTREAM_KVM_FILE``
    defines it against the one of ``KVM_PORT``, each from its definition line to its
    closing brace at column 0.  A tree without the file or the function is not an
    error (older and newer trees differ): ``why`` says which, and the diff is empty."""
    path = Path(qemu_src) / UPSTREAM_KVM_FILE
    if not path.is_file():
        return f"no `{UPSTREAM_KVM_FILE}`", []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--qemu-src {qemu_src}: cannot read {UPSTREAM_KVM_FILE} ({exc})") \
            from None
    theirs = function_lines(text, KVM_FUNCTION)
    if theirs is None:
        return f"no definition of `{KVM_FUNCTION}()` in `{UPSTREAM_KVM_FILE}`", []
    ours = function_lines((PORT_DIR / KVM_PORT).read_text(encoding="utf-8"), KVM_FUNCTION)
    if ours is None:   # the port is ours: a broken install, not the user's tree
        raise UsageError(f"rig/port/{KVM_PORT}: no definition of {KVM_FUNCTION}()")
    diff = list(difflib.unified_diff(theirs, ours,
                                     f"a/{UPSTREAM_KVM_FILE}: {KVM_FUNCTION}()",
                                     f"b/rig/port/{KVM_PORT}: {KVM_FUNCTION}()", lineterm=""))
    return ("" if diff else "the same text"), diff


def kvm_diff_section(qemu_src: str) -> list[str]:
    """The document's lines for ``kvm_function_diff``: the diff, or one line saying why
    there is none."""
    why, diff = kvm_function_diff(qemu_src)
    if not diff:
        return [f"`{KVM_FUNCTION}()`: no diff, the QEMU tree given to `--qemu-src` has "
                f"{why}." if why != "the same text" else
                f"`{KVM_FUNCTION}()` of the QEMU tree given to `--qemu-src` is the same text "
                f"as the one of `rig/port/{KVM_PORT}`: no diff.", ""]
    return [f"`{KVM_FUNCTION}()` of the tree's `{UPSTREAM_KVM_FILE}` against the one of "
            f"`rig/port/{KVM_PORT}` (the function only, from its definition line to its "
            "closing brace; the static helpers it calls are in the port file, their "
            "`Hardening:` comments listed above):", "", "```diff", *diff, "```", ""]


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
