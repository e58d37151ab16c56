"""A canonical digest of a World's state: what ``rig explore`` deduplicates end states by.

Two worlds get the same digest exactly when no continuation (any further ops, faults and
interleavings) can tell them apart, neither in what the ops return nor in what the
oracle reports, up to a renaming of frames and data tags.  The digest covers:

- per RAM block the core's RamBlockAttributes: the bitmap (``Bitmap.to_bytes()``, the
  same bytes on the Cython core and the twin) and the listener list in notification
  order, each listener with its section (``rdl.section``);
- each listener: a VFIO one's container, a generic one's block and the blocks it was
  told are populated; which device holds it (the orphan-listener check asks whether a
  plugged device owns the object on the list, so listeners are told apart by identity,
  not by name: a refused device's orphan and a new device's listener share a name);
- KVM's private pages (RAM gfns, and the runs outside RAM);
- host memory: which pages of each memfd and guest_memfd are backed, by which frame,
  each frame's pins and data tag, and the frames dropped by their file but still pinned;
- every device (kind, number, range, its container, its listeners in order, the
  uncoordinated designs' whole-section mappings) and every container reachable from a
  device or a listener (an orphan listener keeps mapping into a torn-down container):
  mappings (iova, size, readonly, the frames they point at), count, locked_vm,
  dma_avail and the limit, whether its fault hook is still installed;
- the host pinner's locked_vm, the data the oracle expects (``expected_data``), whether
  the VM stopped, the fault plan's state where it has one (fail_nth: the hits counted
  towards n; seeded: each active site's generator), the config, and any state a design
  instance keeps on itself.

**Canonical.**  Frame ids and data tags are allocation counters; they are relabelled in
order of first appearance in a fixed walk (blocks in order, memfd then guest_memfd, pages
ascending; then containers in order of first appearance, mappings ascending), so worlds
that differ only by a renaming get one digest.  Frame ids are only ever compared for
equality (and printed); the next id the world hands out is larger than every id alive,
so its value does not matter.  Tags likewise, except on hugetlb worlds, where
data-integrity compares tags by order (a newer tag on a 2 MiB frame is not a lost
write): there they are relabelled by rank, which keeps their order.  The one place
frame-id *order* shows is the order of the items in pin-leak's "dropped but still
pinned" listing (sorted by id); the digest does not keep it, so two states with one
digest may list the same leaked frames in another order (the same violation).

**Left out**, and why (``WORLD_ATTRIBUTES`` classifies every World attribute; a new one
makes the digest refuse to run until it is classified here):

- per-op state, reset by ``begin_op`` or read only for the current op:
  ``order_violations`` and ``punched_pinned`` (the oracle reads only the entries of
  ``world.op_index``: check_order, check_pins), ``plan.fired`` (likewise:
  _failed_valid_conversion), ``converted``, ``applied``, ``_interleave``,
  ``interleaved_midway``, ``op_index``, ``manager_calls`` (empty between ops);
- history: ``events``; ``listener_log``, which the differential check compares whole
  with the shadow's: both append the same ops' notifications, so once they are equal
  (no differential violation yet, which is all the explorer expands) equality later
  depends on the new entries only; its *length* appears in that violation's text,
  which a digest does not keep; the VFIO listeners' ``discard_errors`` (only the
  entries an op adds are read); the plans' hit statistics (coverage);
- counters: ``tag`` and ``frames.next_id`` / ``frames.freed`` (see Canonical);
- what the config fixes: the design class, the core backend (so the Cython core and the
  twin give one digest), ``budget_check``, the blocks' layout, KVM's RAM ranges.

The shadow world of a Session (the reference model, for the differential invariant) is
not digested: it runs the same ops, and the explorer only digests states where the
oracle found it in agreement.

Cost: linear in what is backed, mapped and registered, plus one C-level sort of KVM's
private gfns; no Python loop over RAM pages that are holes.
"""

from __future__ import annotations

import hashlib

#: Every attribute of a World, classified.  ``state_digest`` refuses a world with an
#: attribute missing here: a new piece of state must be hashed or shown not to matter.
WORLD_ATTRIBUTES = {
    # hashed
    "config": "state", "kvm": "state", "frames": "state", "blocks": "state",
    "pinner": "state", "devices": "state", "expected_data": "state",
    "vm_stopped": "state", "plan": "state", "design": "state",
    # fixed by the config (or deliberately not hashed: the backend)
    "core": "fixed", "backend": "fixed", "budget_check": "fixed",
    # read for the current op only
    "order_violations": "per-op", "punched_pinned": "per-op", "converted": "per-op",
    "applied": "per-op", "_interleave": "per-op", "interleaved_midway": "per-op",
    "op_index": "per-op", "manager_calls": "per-op",
    # history and counters
    "events": "history", "listener_log": "history", "tag": "counter",
}

_KNOWN = frozenset(WORLD_ATTRIBUTES)
_PRIMITIVE = (int, str, bool, float, type(None))


class Canonical:
    """A world's canonical state: ``state`` (a tuple of ints, strings, None and bytes,
    nested; the config is hashed apart, once per config), and the relabelling it used:
    ``frames`` (frame id -> label) and ``tags`` (data tag -> label; 0, a zero-filled
    page, stays 0)."""

    __slots__ = ("config", "state", "frames", "tags")

    def __init__(self, config, state: tuple, frames: dict, tags: dict):
        self.config = config
        self.state = state
        self.frames = frames
        self.tags = tags

    def digest(self) -> str:
        h = _config_hasher(self.config).copy()
        h.update(repr(self.state).encode())
        return h.hexdigest()


def state_digest(world) -> str:
    """The hex sha256 of ``world``'s canonical state (see the module docstring)."""
    return canonical(world).digest()


#: The last config hashed and its hasher (the explorer digests one config object many
#: times), and every config seen, by value.
_LAST: list = [None, None]
_CONFIGS: dict = {}


def _config_hasher(config):
    """A sha256 fed the config's repr (a frozen dataclass of plain values)."""
    if _LAST[0] is config:
        return _LAST[1]
    h = _CONFIGS.get(config)
    if h is None:
        if len(_CONFIGS) >= 256:
            _CONFIGS.clear()  # (a bound: a process may build many worlds' configs)
        h = _CONFIGS[config] = hashlib.sha256(repr(config).encode() + b"\n")
    _LAST[:] = [config, h]
    return h


def _design_state(design) -> tuple:
    """What a design instance keeps on itself between ops (none of the shipped designs
    keeps anything; a mutant that sets an attribute inside an op deletes it again)."""
    own = vars(design)
    if not own:
        return ()
    out = []
    for name in sorted(own):
        value = own[name]
        if not isinstance(value, _PRIMITIVE):
            raise TypeError(f"state_digest: design {design.name!r} keeps {name!r} = "
                            f"{type(value).__name__} between ops, which rig.check.statehash "
                            "cannot canonicalize: teach it, or keep the state off the design")
        out.append((name, value))
    return tuple(out)


def _plan_state(plan) -> tuple:
    """The fault plan's state that later hits depend on.  Explicit: none (each op
    carries its own faults).  fail_nth: the eligible hits counted, up to n (past n the
    plan never fires again).  Seeded: each created, active site's generator (an
    inactive site never draws again, so it behaves as one not created yet)."""
    mode = plan.mode
    if mode == "explicit" or mode == "none":
        return (mode,)
    if mode == "fail_nth":
        return (mode, plan.nth, min(plan.eligible, plan.nth), tuple(sorted(plan.sites)))
    if mode == "seeded":
        sites = tuple((name, repr(rng.getstate()))
                      for name, (rng, active) in sorted(plan._sites.items()) if active)
        return (mode, sites)
    raise TypeError(f"state_digest: fault plan mode {mode!r} is unknown to "
                    "rig.check.statehash")


def canonical(world) -> Canonical:
    """``world``'s canonical state and its relabelling (see the module docstring)."""
    unknown = vars(world).keys() - _KNOWN
    if unknown:
        raise TypeError(f"state_digest: World attribute(s) {', '.join(sorted(unknown))} "
                        "are not classified in rig.check.statehash.WORLD_ATTRIBUTES")
    frame_labels: dict = {}   # frame id -> label, first appearance
    frame_list: list = []     # the frames, in label order

    def frame_label(frame_id: int) -> int:
        label = frame_labels.get(frame_id)
        if label is None:
            label = frame_labels[frame_id] = len(frame_list)
            frame_list.append(frame_id)
        return label

    listener_labels: dict = {}   # id(listener) -> label (identity within this call only)
    listener_list: list = []
    container_labels: dict = {}  # id(container) -> label
    container_list: list = []

    def listener_label(rdl) -> int:
        label = listener_labels.get(id(rdl))
        if label is None:
            label = listener_labels[id(rdl)] = len(listener_list)
            listener_list.append(rdl)
        return label

    def container_label(container) -> int | None:
        if container is None:
            return None
        label = container_labels.get(id(container))
        if label is None:
            label = container_labels[id(container)] = len(container_list)
            container_list.append(container)
        return label

    blocks = world.blocks
    # Host files first: the frames that back pages are labelled by their position.
    files = []
    for block in blocks:
        for file in (block.memfd, block.gmem):
            pages = file.pages
            files.append(tuple([(index, frame_label(pages[index].id))
                                for index in sorted(pages)]) if pages else ())

    # Devices, by (kind, number): their containers and listeners get labels here.
    devices = []
    for key in sorted(world.devices):
        device = world.devices[key]
        devices.append((key[0], key[1], device.gpa, device.size,
                        container_label(device.container),
                        tuple([(b.index, listener_label(rdl)) for b, rdl in device.listeners]),
                        tuple(device.mappings)))

    # Each block's manager: the bitmap and the listener list in notification order.
    managers = []
    for block in blocks:
        attr = block.attr
        managers.append((attr.bitmap.to_bytes(),
                         tuple([listener_label(rdl) for rdl in attr.listeners()])))

    # The listeners, in label order (orphans included: they were met on a list).
    listeners = []
    for rdl in listener_list:
        section = rdl.section
        section = tuple(section) if section is not None else None
        inner = getattr(rdl, "inner", None)
        if inner is not None:       # the world's VFIO listener
            listeners.append(("vfio", rdl.name, section, container_label(rdl.container),
                              container_label(inner.container), inner.granularity,
                              inner.vaddr_base, bool(inner.readonly_map)))
        elif hasattr(rdl, "populated"):  # a generic listener
            listeners.append(("rdl", rdl.name, section, rdl.block.index,
                              tuple(sorted(rdl.populated))))
        else:
            raise TypeError(f"state_digest: listener {type(rdl).__name__} is unknown to "
                            "rig.check.statehash")

    # Containers, in label order: their mappings label the frames not in any file.
    pinner = world.pinner
    containers = []
    for container in container_list:
        maps = tuple([(m.iova, m.size, bool(m.readonly),
                       tuple([frame_label(f) for f in m.frames]))
                      for m in container.mappings()])
        containers.append((type(container).__name__, getattr(container, "dma_avail", None),
                           getattr(container, "dma_entry_limit", None), container.count,
                           container.locked_vm, container.fault_hook is None,
                           container.pinner is pinner, maps))

    # Frames nothing above reaches (none, by construction: a frame out of every file and
    # unpinned is freed); by id, so that such a state is still hashed whole.
    table = world.frames.frames
    if len(frame_list) != len(table):
        for frame_id in sorted(table.keys() - frame_labels.keys()):
            frame_label(frame_id)

    # Data tags: rank order on hugetlb worlds (data-integrity compares them there),
    # first appearance otherwise; 0 (never written) is 0.
    expected = world.expected_data
    hugetlb = world.config.hugetlb
    tag_labels: dict = {0: 0}
    if hugetlb:
        live = {table[f].data for f in frame_list} | set(expected.values())
        for rank, tag in enumerate(sorted(live - {0}), 1):
            tag_labels[tag] = rank

    def tag_label(tag: int) -> int:
        label = tag_labels.get(tag)
        if label is None:
            label = tag_labels[tag] = len(tag_labels)
        return label

    frames = []
    for frame_id in frame_list:
        frame = table[frame_id]
        # Where a frame in a file is, the file walk says; a dropped one is nowhere.
        frames.append((frame.file is not None, frame.pins, tag_label(frame.data)))
    data = tuple([(page, tag_label(expected[page])) for page in sorted(expected)])

    kvm = world.kvm
    runs = kvm.elsewhere
    state = (
        tuple(sorted(kvm.private)),
        (tuple(runs.los), tuple(runs.his)) if runs.los else (),
        tuple(files),
        tuple(devices),
        tuple(managers),
        tuple(listeners),
        tuple(containers),
        tuple(frames),
        data,
        pinner.locked_vm,
        world.vm_stopped,
        _plan_state(world.plan),
        _design_state(world.design),
        len(world.manager_calls),
    )
    return Canonical(world.config, state, frame_labels, tag_labels)


__all__ = ["state_digest", "canonical", "Canonical", "WORLD_ATTRIBUTES"]
