"""The simulated world: KVM, host memory, RAM blocks with their RamBlockAttributes, the
IOMMU, VFIO devices and generic listeners, driven one op at a time by a design.

The world owns the mechanics that are the same for every design (memory_region_find,
the KVM ioctl, hole punching, pinning, device DMA); a design decides the order and the
error handling of kvm_convert_memory and of device hot-plug (rig.world.designs).

Addresses: IOVA = guest-physical address (VFIO maps guest RAM at its GPA); block ``i``'s
shared memory is mapped in the host at ``HOST_VADDR_BASE + i * HOST_VADDR_STRIDE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rig.core import MUTANT as CORE_MUTANT, load_backend
from rig.core.types import MemoryRegionSection
from rig.errors import (EAGAIN, EBUSY, EEXIST, EFAULT, EINTR, EINVAL, EIO, ENOENT, ENOMEM, ENOSPC,
                        UsageError)
from rig.world.faults import FaultPlan, FaultSite, Injected, fault_site, make_plan
from rig.world.ops import OPS, interleave_point, world_op
from rig.world.config import WorldConfig
from rig.world.device import Device
from rig.world.events import Event, Fault, Interleave, IommuFault, IommuFaultRun, Retry, VmStop
from rig.world.host import HUGE_PAGE_SIZE, PAGE_SIZE, FrameTable, HostFile, kvm_gmem_fallocate
from rig.world.kvm import ATTRIBUTES_MAX, Kvm

HOST_VADDR_BASE = 0x7F0000000000
HOST_VADDR_STRIDE = 0x10000000000  # 1 TiB between blocks


#: name -> the loaded backend: a world is built per input (three in a fuzz run), and
#: loading imports and checks the backend's modules each time; they cannot change
#: within a process (sys.modules holds them).
_BACKENDS: dict = {}


def core_backend(backend):
    """A core backend: ``"cy"`` or ``"pure"`` by name, or a namespace with the same
    names (the reference model's, rig.check.model.backend(), for the shadow world)."""
    if isinstance(backend, str):
        loaded = _BACKENDS.get(backend)
        if loaded is None:
            loaded = _BACKENDS[backend] = load_backend(backend)
        return loaded
    return backend


class ManagerCalls:
    """A RAM block's state manager as the designs see it: the core's RamBlockAttributes,
    with the stack of its conversion and (un)registration calls in progress, world-wide,
    so a listener can tell what a notification is part of (the ordering oracle).

    A frame is ``[kind, disturbed]``: kind is "populate" / "discard" (state_change),
    "register" or "unregister"; ``disturbed`` is set when another call starts inside it
    (an interleaved op), after which the state may legitimately move under the walk.
    """

    # What the world reads on every op is bound once, not looked up by __getattr__.
    _BOUND = ("bitmap", "is_valid_range", "get_min_granularity", "is_populated",
              "replay_populated", "replay_discarded", "listeners")
    __slots__ = ("core_attr", "calls") + _BOUND

    def __init__(self, core_attr, calls: list):
        self.core_attr = core_attr
        self.calls = calls
        for name in self._BOUND:
            setattr(self, name, getattr(core_attr, name))

    def __getattr__(self, name):
        return getattr(self.core_attr, name)

    def _run(self, kind: str, fn, *args):
        calls = self.calls
        if calls:
            calls[-1][1] = True
        calls.append([kind, False])
        try:
            return fn(*args)
        finally:
            calls.pop()

    def state_change(self, offset: int, size: int, to_discard: bool) -> int:
        return self._run("discard" if to_discard else "populate",
                         self.core_attr.state_change, offset, size, to_discard)

    def register_listener(self, rdl, section) -> int:
        return self._run("register", self.core_attr.register_listener, rdl, section)

    def unregister_listener(self, rdl) -> int:
        return self._run("unregister", self.core_attr.unregister_listener, rdl)


class RamBlock:
    """A RAMBlock with guest_memfd: shared memfd + guest_memfd + its state manager."""

    def __init__(self, index: int, gpa: int, size: int, world: "World"):
        cfg = world.config
        self.index = index
        self.gpa = gpa
        self.size = size
        self.end = gpa + size
        self.vaddr = HOST_VADDR_BASE + index * HOST_VADDR_STRIDE
        self.memfd = HostFile(f"memfd{index}", size,
                              HUGE_PAGE_SIZE if cfg.hugetlb else PAGE_SIZE, world.frames)
        self.gmem = HostFile(f"gmem{index}", size, PAGE_SIZE, world.frames)
        self.attr = ManagerCalls(
            world.core.RamBlockAttributes(size, cfg.block_size, world.design.rollback),
            world.manager_calls)

    @property
    def name(self) -> str:
        return f"ram{self.index}"

    def contains(self, gpa: int) -> bool:
        return self.gpa <= gpa < self.end

    def shared_file(self, inplace: bool) -> HostFile:
        """The file whose pages the host maps (and VFIO pins) for shared memory."""
        return self.gmem if inplace else self.memfd


_LISTENER_CLASSES: dict = {}

#: Hit by GenericListener.notify_populate below (declared here, outside the function:
#: the listener classes are built once per core backend, a site only once).
LISTENER_NOTIFY_POPULATE = fault_site(
    "listener.notify_populate", id=8, errnos=(ENOMEM, EBUSY),
    where="GenericListener.notify_populate",
    doc="a generic (non-VFIO) RamDiscardListener refuses to populate")


def listener_classes(core):
    """World listener classes for a core backend (they subclass its RamDiscardListener)."""
    if core.name in _LISTENER_CLASSES:
        return _LISTENER_CLASSES[core.name]

    class WorldVfioListener(core.RamDiscardListener):
        """Wraps the core's VFIORamDiscardListener (which maps granule by granule in C)
        so that the world sees each notification: the call log for the differential
        check and replay, and the interleaving points."""

        def __init__(self, world, name, inner, container):
            super().__init__()
            self.double_discard_supported = True
            self.world = world
            self.name = name
            self.inner = inner
            self.container = container

        def notify_populate(self, section):
            self.world.notifying(self, "populate", section)
            errors, fired = len(self.inner.discard_errors), len(self.world.plan.fired)
            ret = self.inner.notify_populate(section)
            if ret:
                # VFIO rolled back with one unmap of the section; make sure it worked.
                self._ensure_unmapped(section, errors, fired)
            self.world.notified(self, "populate", section, ret)
            return ret

        def notify_discard(self, section):
            self.world.notifying(self, "discard", section)
            errors, fired = len(self.inner.discard_errors), len(self.world.plan.fired)
            self.inner.notify_discard(section)
            ret = self._ensure_unmapped(section, errors, fired)
            self.world.notified(self, "discard", section, ret)

        def _ensure_unmapped(self, section, errors: int, fired: int) -> int:
            """Unmapping an exact section is idempotent.  QEMU only reports an unmap
            error (and its iommufd backend even reports -ENOENT, which the kernel
            returns after a *partial* unmap, as success); designs with ``retries`` > 1
            check what is left of the section and unmap again."""
            new_errors = self.inner.discard_errors[errors:]
            ret = new_errors[0][2] if new_errors else 0
            design = self.world.design
            if design.retries <= 1 or (not new_errors and len(self.world.plan.fired) == fired):
                return ret
            iova, end = section.offset_within_address_space, \
                section.offset_within_address_space + section.size
            for attempt in range(1, design.retries + 1):
                left = [m for m in self.container.mappings() if m.iova < end and iova < m.iova + m.size]
                if not left:
                    return 0
                if attempt == design.retries:
                    break
                self.world.event(Retry("vfio unmap", attempt, len(left)))
                self.inner.notify_discard(section)
            return ret or -EBUSY

    class GenericListener(core.RamDiscardListener):
        """A non-VFIO RamDiscardListener (a virtio-mem-like user): it tracks which blocks
        it was told are populated, and may refuse (fault site listener.notify_populate).

        Like virtio-mem's and migration's users it also asks the manager about the
        section it is told of, from inside the callback (``is_populated`` for a
        populate, ``replay_populated`` for a discard), and reports to the world when
        the answer contradicts the notification: the bitmap was not updated first."""

        def __init__(self, world, name, block):
            super().__init__()
            self.world = world
            self.name = name
            self.block = block
            self.populated: set[int] = set()  # region offsets of populated blocks

        def _observe(self, kind, section):
            calls = self.world.manager_calls
            if not calls or calls[-1][1]:
                return  # no conversion of ours, or one an interleaved op disturbed
            attr = self.block.attr.core_attr
            if kind == "populate":
                if not attr.is_populated(section):
                    self.world.order_seen(self, kind, section, calls[-1][0],
                                          "the manager says discarded")
            elif calls[-1][0] == "discard":
                runs = []
                attr.replay_populated(section, lambda s: runs.append(tuple(s)) or 0)
                if runs:
                    self.world.order_seen(self, kind, section, calls[-1][0],
                                          "the manager still replays it as populated")

        def notify_populate(self, section):
            self._observe("populate", section)
            self.world.notifying(self, "populate", section)
            fault = self.world.fault(LISTENER_NOTIFY_POPULATE.name)
            ret = fault.errno if fault else 0
            if not ret:
                self.populated.update(self.world.block_offsets(section))
            self.world.notified(self, "populate", section, ret)
            return ret

        def notify_discard(self, section):
            self._observe("discard", section)
            self.world.notifying(self, "discard", section)
            self.populated.difference_update(self.world.block_offsets(section))
            self.world.notified(self, "discard", section, 0)

    _LISTENER_CLASSES[core.name] = (WorldVfioListener, GenericListener)
    return _LISTENER_CLASSES[core.name]


PIN_PAGES = fault_site(
    "pin.pin_pages", id=4, errnos=(ENOMEM, EFAULT), where="HostPinner.pin_pages",
    doc="pin_user_pages fails (-ENOMEM: RLIMIT_MEMLOCK; -EFAULT); the map is undone")


class HostPinner:
    """pin_user_pages for the IOMMU: resolves a host address to file pages, allocating
    holes (pinning touches the page), and takes a pin on each frame.

    RLIMIT_MEMLOCK is per process, so it is enforced here across every container
    (``locked_vm`` is QEMU's mm->locked_vm, in pages); the containers themselves are
    built without a limit.
    """

    def __init__(self, world: "World"):
        self.world = world
        self.locked_vm = 0

    #: VFIO_BATCH_MAX_CAPACITY: PAGE_SIZE / sizeof(struct page *) pages per
    #: pin_user_pages_remote() call of vfio_pin_pages_remote()'s batch.
    PIN_BATCH = PAGE_SIZE // 8

    def _fault_in(self, vaddr: int):
        """vaddr_get_pfns() for one page (pin_user_pages_remote(): fault in + pin): the
        frame, or None if no host page can back ``vaddr`` (-EFAULT)."""
        world = self.world
        block, offset = world.block_from_vaddr(vaddr, PAGE_SIZE)
        if block is None:
            return None
        inplace = world.design.inplace
        if inplace and world.kvm.is_private(block.gpa + offset):
            return None  # private guest_memfd pages cannot be mapped by the host
        frame = block.shared_file(inplace).touch(offset)
        frame.pins += 1
        return frame

    def pin_pages(self, vaddr: int, npages: int):
        """vfio_pin_pages_remote() as vfio_pin_map_dma() drives it, all or nothing:
        pages are pinned in batches of PIN_BATCH (pin_user_pages_remote() faults each
        page in, stopping at the first one it cannot back), then each pinned page is
        accounted against RLIMIT_MEMLOCK (``locked_vm + lock_acct + 1 > limit`` ->
        -ENOMEM).  A batch that pins nothing is -EFAULT.  So for one page -EFAULT wins
        over -ENOMEM, and on any error everything pinned is unpinned
        (vfio_batch_unpin(), vfio_remove_dma()) but the pages faulted in stay in the
        file."""
        world = self.world
        limit = world.config.memlock_limit
        fault = world.fault(PIN_PAGES.name)
        if fault:
            return fault.errno
        pinned: list = []   # accounted
        batch: list = []    # pinned, not yet accounted
        ret = 0
        while len(pinned) < npages and not ret:
            start = len(pinned)
            for i in range(start, min(npages, start + self.PIN_BATCH)):
                frame = self._fault_in(vaddr + i * PAGE_SIZE)
                if frame is None:
                    break
                batch.append(frame)
            if not batch:
                ret = -EFAULT
                break
            while batch:
                if limit is not None and \
                        (self.locked_vm + len(pinned) + 1) * PAGE_SIZE > limit:
                    ret = -ENOMEM  # RLIMIT_MEMLOCK exceeded
                    break
                pinned.append(batch.pop(0))
        if ret:
            self._put_frames(pinned + batch)
            return ret
        self.locked_vm += npages
        return [frame.id for frame in pinned]

    def _put_frames(self, frames) -> None:
        """put_pfn() without accounting: drop the pins, keep the pages in their file."""
        table = self.world.frames
        for frame in frames:
            frame.pins -= 1
            table.release(frame)

    def unpin_pages(self, frames) -> None:
        table = self.world.frames
        self.locked_vm -= len(frames)
        for frame_id in frames:
            frame = table.frames[frame_id]
            frame.pins -= 1
            table.release(frame)


class World:
    """One simulated VM.  Build it from a validated config; apply ops with ``apply``."""

    def __init__(self, config: WorldConfig, backend="cy", plan: FaultPlan | None = None):
        from rig.world.designs import make_design

        self.config = config
        self.core = core_backend(backend)
        self.backend = self.core.name
        self.design = make_design(config.design)
        wanted = getattr(self.design, "core_mutant", None)
        if wanted and wanted != CORE_MUTANT and self.backend != "model":
            # A core mutant (rig.world.mutants.core) is a build of the core: one per
            # process, chosen at import (rig.core.mutants), not per World.
            raise UsageError(
                f"design {config.design} needs the core built with mutant {wanted}, and "
                f"this process runs {CORE_MUTANT or 'the real core'}: run it as a `rig` "
                f"command (which re-executes on that core) or in a process started with "
                f"RIG_CORE_MUTANT={wanted} (and RIG_PUREPYTHON=1, or RIG_NATIVE_DIR from "
                f"rig.drive.native.env_for)")
        self.plan = plan if plan is not None else make_plan(
            config.faults, seed=config.seed, nth=config.fail_nth,
            p_activate=config.p_activate, p_fire=config.p_fire, sites=config.fault_sites)
        self.kvm = Kvm((r.gpa, r.size) for r in config.ram)
        self.frames = FrameTable()
        self.manager_calls: list = []   # ManagerCalls frames in progress
        self.order_violations: list[tuple] = []
        #: (op index, frame id, file name) of every frame a punch dropped while the IOMMU
        #: still pinned it (pin-leak: even if it is unpinned before the op ends).
        self.punched_pinned: list[tuple] = []
        self.blocks = [RamBlock(i, r.gpa, r.size, self) for i, r in enumerate(config.ram)]
        self.pinner = HostPinner(self)
        self.devices: dict[tuple[str, int], Device] = {}
        self.events: list[Event] = []
        self.listener_log: list[tuple] = []
        self.expected_data: dict[int, int] = {}  # gpa page -> tag a device wrote
        self.tag = 0
        self.op_index = -1
        #: (op, result) of the op ``apply`` ran last, its own result, not an interleaved
        #: op's (the oracle judges a failed conversion by it: spurious-failure)
        self.applied: tuple | None = None
        self.vm_stopped: int | None = None
        self.budget_check = (self.design.budget_check if config.budget_check == "auto"
                             else config.budget_check)
        # QEMU makes every guest_memfd memslot private when it creates it.
        for block in self.blocks:
            self.kvm.private.update(range(block.gpa // PAGE_SIZE, block.end // PAGE_SIZE))
        self._interleave = None
        self.interleaved_midway = False
        #: RAM pages (gpa) whose KVM attribute changed during the current op, nested and
        #: interleaved conversions included (data-integrity, check_after_stop).
        self.converted: set[int] = set()

    # -- lookups -------------------------------------------------------------------------
    def block_at(self, gpa: int) -> RamBlock | None:
        for block in self.blocks:
            if block.contains(gpa):
                return block
        return None

    def memory_region_find(self, start: int, size: int):
        """memory_region_find(): the lowest RAM block intersecting [start, start+size)
        and the offset of the intersection in it; None if the range hits no RAM."""
        for block in self.blocks:
            if block.gpa < start + size and start < block.end:
                return block, max(start, block.gpa) - block.gpa
        return None

    def block_from_vaddr(self, vaddr: int, size: int):
        index, offset = divmod(vaddr - HOST_VADDR_BASE, HOST_VADDR_STRIDE)
        if vaddr < HOST_VADDR_BASE or index >= len(self.blocks):
            return None, 0
        block = self.blocks[index]
        if offset + size > block.size:
            return None, 0
        return block, offset

    def block_offsets(self, section) -> range:
        bs = self.config.block_size
        return range(section.offset_within_region, section.offset_within_region + section.size, bs)

    def ram_pages(self):
        """Every (block, region offset) of guest RAM, page by page."""
        for block in self.blocks:
            for offset in range(0, block.size, PAGE_SIZE):
                yield block, offset

    def vfio_devices(self) -> list[Device]:
        return [d for (kind, _), d in sorted(self.devices.items()) if kind == "vfio"]

    def containers(self):
        """(device, container) of every plugged VFIO device, by device number."""
        return [(d, d.container) for d in self.vfio_devices()]

    # -- faults and events ---------------------------------------------------------------
    # The core IOMMU's sites: the container hits them by name inside the core (its .pyx,
    # the twin and the reference model alike call fault_hook("vfio.dma_map")), and the
    # fault_hook that new_container() installs answers from the plan.
    VFIO_DMA_MAP = fault_site(
        "vfio.dma_map", id=0, errnos=(ENOMEM, EFAULT, ENOSPC, EEXIST),
        where="VfioType1Container.map_dma (rig.core), through World.new_container's fault_hook",
        doc="VFIO_IOMMU_MAP_DMA (type1) fails before any change")
    VFIO_DMA_UNMAP = fault_site(
        "vfio.dma_unmap", id=1, errnos=(EINVAL, EBUSY),
        where="VfioType1Container.unmap_dma (rig.core), through World.new_container's "
              "fault_hook",
        doc="VFIO_IOMMU_UNMAP_DMA (type1) fails before any change")
    IOMMUFD_IOAS_MAP = fault_site(
        "iommufd.ioas_map", id=2, errnos=(ENOMEM, EFAULT, EEXIST),
        where="IommufdIoas.map_dma (rig.core), through World.new_container's fault_hook",
        doc="IOMMU_IOAS_MAP fails before any change")
    IOMMUFD_IOAS_UNMAP = fault_site(
        "iommufd.ioas_unmap", id=3, errnos=(ENOENT,), partial=True,
        where="IommufdIoas.unmap_dma (rig.core), through World.new_container's fault_hook",
        doc="IOMMU_IOAS_UNMAP fails with -ENOENT after removing the first k areas")

    def fault(self, site: str, units: int = 1) -> Injected | None:
        injected = self.plan.hit(site, units)
        if injected is not None:
            self.events.append(Fault(site, injected.errno, injected.partial))
        return injected

    def new_container(self):
        """A VFIO container (type1) or IOAS (iommufd) for one device, pinning through the
        host and consulting the fault plan at its sites."""
        cfg = self.config
        if cfg.iommu == "type1":
            container = self.core.VfioType1Container(cfg.dma_entry_limit, 0x1000, None, None)
        else:
            container = self.core.IommufdIoas(0x1000, None)
        container.pinner = self.pinner

        def fault_hook(site: str):
            units = container.count if site == self.IOMMUFD_IOAS_UNMAP.name else 1
            injected = self.fault(site, units)
            if injected is None:
                return 0
            if injected.partial is not None:
                return (injected.errno, injected.partial)
            return injected.errno

        container.fault_hook = fault_hook
        return container

    def release_container(self, device: Device) -> None:
        """Closing the container: the kernel unmaps and unpins whatever is left
        (vfio_iommu_type1_release); this cannot fail."""
        container = device.container
        container.fault_hook = None
        for mapping in container.mappings():
            container.unmap_dma(mapping.iova, mapping.size)

    def event(self, event: Event) -> None:
        self.events.append(event)

    def _stop_if_failed(self, op, result) -> None:
        """The VM-stop rule, the one place it is written: a conversion (the op's own, or
        an interleaved one) that fails stops the VM, on a design that stops it (QEMU:
        kvm_convert_memory's error ends kvm_cpu_exec; the vCPU thread stops the guest).
        The first stop is the one that counts."""
        if (op.name == "kvm_convert_memory" and isinstance(result, int) and result < 0
                and self.design.stops_vm and self.vm_stopped is None):
            self.vm_stopped = result
            self.event(VmStop(result))

    def notifying(self, rdl, kind: str, section) -> None:
        """Every listener notification starts here, before the listener acts: the
        interleaving point ``before N``."""
        pending = self._interleave
        if pending is not None:
            pending["started"] += 1
            if pending["kind"] == "before" and pending["started"] == pending["n"]:
                self._interleave_midway()

    def order_seen(self, rdl, kind: str, section, call: str, saw: str) -> None:
        """A listener was told ``kind`` of ``section`` during a ``call`` of the manager,
        and the manager contradicted it (the notify-order invariant)."""
        self.order_violations.append((self.op_index, rdl.name, kind, tuple(section), call, saw))

    def notified(self, rdl, kind: str, section, ret: int) -> None:
        """Every listener notification passes here: log it, then maybe interleave
        (the point ``N``: after the N-th notification)."""
        self.listener_log.append((self.op_index, rdl.name, kind, tuple(section), ret))
        pending = self._interleave
        if pending is not None:
            pending["count"] += 1
            if pending["kind"] == "after" and pending["count"] == pending["n"]:
                self._interleave_midway()

    def _attributes_set(self, ret: int) -> None:
        """After every KVM_SET_MEMORY_ATTRIBUTES of the world: the point ``attr`` is
        the op's first call, when it succeeded (the state manager comes next)."""
        pending = self._interleave
        if pending is not None:
            pending["attr_calls"] += 1
            if pending["kind"] == "attr" and pending["attr_calls"] == 1 and ret == 0:
                self._interleave_midway()

    def _interleave_midway(self) -> None:
        """The op reached its interleaving point: run the interleaved op now, unless the
        design serializes conversions with hot-plug (then it runs after the op)."""
        if not self.design.serialize_hotplug:
            self.interleaved_midway = True
            self._fire_interleave()

    def _fire_interleave(self) -> None:
        pending = self._interleave
        self._interleave = None
        nested = pending["op"]
        result = self.dispatch(nested)
        self.event(Interleave(pending["at"], nested, result))
        # The racing vCPU's conversion failed: QEMU stops the VM there too.
        self._stop_if_failed(nested, result)

    # -- the KVM and host edges (shared by every design) --------------------------------
    KVM_SET_MEMORY_ATTRIBUTES = fault_site(
        "kvm.set_memory_attributes", id=7, errnos=(ENOMEM, EAGAIN),
        where="World._kvm_set_memory_attributes",
        doc="KVM_SET_MEMORY_ATTRIBUTES fails before any change")

    def kvm_set_memory_attributes(self, start: int, size: int, private: bool) -> int:
        """KVM_SET_MEMORY_ATTRIBUTES(2): the site kvm.set_memory_attributes, the in-place
        -EAGAIN when a page to make private is still pinned."""
        ret = self._kvm_set_memory_attributes(start, size, private)
        self._attributes_set(ret)
        return ret

    def _kvm_set_memory_attributes(self, start: int, size: int, private: bool) -> int:
        ret = self.kvm.check_range(start, size)
        if ret:
            return ret
        if size > ATTRIBUTES_MAX:
            return -ENOMEM
        if self.kvm.has_attribute(start, size, private):
            return 0
        fault = self.fault(self.KVM_SET_MEMORY_ATTRIBUTES.name)
        pinned = self._pinned_at if self.design.inplace else None
        # The RAM pages whose attribute this call flips, by set algebra on gfns (this
        # runs on every conversion; a page-by-page is_private walk was a hot spot).
        gfns = set()
        for block in self.blocks:
            lo, hi = max(start, block.gpa), min(start + size, block.end)
            if lo < hi:
                gfns.update(range(lo // PAGE_SIZE, hi // PAGE_SIZE))
        flipping = gfns - self.kvm.private if private else gfns & self.kvm.private
        ret = self.kvm.set_memory_attributes(start, size, private,
                                             fault=fault.errno if fault else 0,
                                             pinned=pinned)
        if not ret and flipping:
            self.converted.update(g * PAGE_SIZE for g in flipping)
            self._forget_converted(flipping)
        return ret

    def _pinned_at(self, gpa: int) -> bool:
        block = self.block_at(gpa)
        if block is None:
            return False
        frame = block.gmem.frame_at(gpa - block.gpa)
        return frame is not None and frame.pins > 0

    def punch_hole(self, file: HostFile, site: FaultSite, offset: int, size: int) -> int:
        """fallocate(PUNCH_HOLE|KEEP_SIZE), with injected partial punches at ``site``."""
        pages = (size + file.page_size - 1) // file.page_size
        first, last = offset // file.page_size, (offset + size - 1) // file.page_size
        pinned = [f for f in map(file.pages.get, range(first, last + 1))
                  if f is not None and f.pins]
        fault = self.fault(site.name, pages)
        file.punch_hole(offset, size, limit_pages=(fault.partial or 0) if fault else None)
        self.punched_pinned += [(self.op_index, f.id, file.name) for f in pinned
                                if f.file is None]
        return fault.errno if fault else 0

    MEMFD_PUNCH_HOLE = fault_site(
        "memfd.punch_hole", id=5, errnos=(EINTR, ENOMEM, EIO), partial=True,
        where="World.ram_block_discard_range",
        doc="fallocate(PUNCH_HOLE) on the shared memfd: k pages punched, then the error")

    def ram_block_discard_range(self, block: RamBlock, offset: int, size: int) -> int:
        """ram_block_discard_range(): free the shared (memfd) backing."""
        if offset % block.memfd.page_size or size % block.memfd.page_size:
            return -EINVAL
        return self.punch_hole(block.memfd, self.MEMFD_PUNCH_HOLE, offset, size)

    GMEM_PUNCH_HOLE = fault_site(
        "gmem.punch_hole", id=6, errnos=(EINTR, ENOMEM, EIO), partial=True,
        where="World.ram_block_discard_guest_memfd_range",
        doc="fallocate(PUNCH_HOLE) on guest_memfd: k pages punched, then the error")

    def ram_block_discard_guest_memfd_range(self, block: RamBlock, offset: int, size: int) -> int:
        """ram_block_discard_guest_memfd_range(): free the private (guest_memfd) backing.
        QEMU calls fallocate() with no check of its own; kvm_gmem_fallocate() refuses an
        unaligned offset or length with -EINVAL before punching anything."""
        ret = kvm_gmem_fallocate(offset, size)
        if ret:
            return ret
        return self.punch_hole(block.gmem, self.GMEM_PUNCH_HOLE, offset, size)

    # -- VFIO plumbing ------------------------------------------------------------------
    def new_vfio_listener(self, device: Device, block: RamBlock):
        vfio_cls, _ = listener_classes(self.core)
        inner = self.core.VFIORamDiscardListener(device.container,
                                                 block.attr.get_min_granularity(), block.vaddr)
        return vfio_cls(self, f"vfio{device.dev}.{block.name}", inner, device.container)

    def new_generic_listener(self, dev: int, block: RamBlock):
        _, generic_cls = listener_classes(self.core)
        return generic_cls(self, f"rdl{dev}.{block.name}", block)

    def sections(self, gpa: int, size: int):
        """The (block, MemoryRegionSection) pieces of [gpa, gpa+size) that are RAM."""
        out = []
        for block in self.blocks:
            start = max(gpa, block.gpa)
            end = min(gpa + size, block.end)
            if start < end:
                out.append((block, MemoryRegionSection(start - block.gpa, end - start, start)))
        return out

    def vfio_budget_exceeded(self, device: Device) -> bool:
        """QEMU's dma_max_mappings check (type1 only; vfio_ram_discard_register_listener(),
        run after each section is registered, over every listener of the container so
        far): mappings the listeners could need (whole sections / granularity) +
        memslots - listeners > dma_max_mappings.  What an excess leads to (refusal of
        a new container's device, hw_error for an initialized one, a 10.1 warning) is
        the design's: Design.dma_max_mappings_check."""
        if self.config.iommu != "type1":
            return False
        count = mappings = 0
        for block, rdl in device.listeners:
            granularity = block.attr.get_min_granularity()
            section = rdl.section
            start = section.offset_within_address_space // granularity * granularity
            end = -(-(section.offset_within_address_space + section.size) // granularity) * granularity
            mappings += (end - start) // granularity
            count += 1
        return mappings + self.config.max_memslots - count > self.config.dma_entry_limit

    # -- ops ------------------------------------------------------------------------------
    def begin_op(self, index: int, op) -> None:
        self.op_index = index
        self.applied = None
        self.converted = set()
        self.plan.begin_op(index, op)
        interleave = op.prop("interleave") if op is not None else None
        self._interleave = None
        if interleave is not None:
            at, nested = interleave
            kind, n = interleave_point(at)
            # count: notifications done; started: notifications begun; attr_calls:
            # KVM_SET_MEMORY_ATTRIBUTES calls of the op (rig.world.ops.interleave_point).
            self._interleave = {"at": at, "kind": kind, "n": n, "op": nested, "count": 0,
                                "started": 0, "attr_calls": 0}

    def apply(self, op, on_done=None):
        """Apply one op; returns its result (an int for most ops).  An interleaved op
        whose point was not reached (or that a design serializes) runs after it, once
        ``on_done(result)`` has seen the state the op itself left."""
        self.interleaved_midway = False
        result = self.dispatch(op)
        self.applied = (op, result)
        if on_done is not None:
            on_done(result)
        if self._interleave is not None:
            self._fire_interleave()
        self._forget_private_data()
        self._stop_if_failed(op, result)
        return result

    def dispatch(self, op):
        """Apply ``op`` alone (no interleaving, no VM-stop rule): its registered method."""
        return OPS[op.name].impl(self, *op.args)

    # Each op is declared here, on the method that implements it (rig.world.ops.world_op):
    # its id (explicit, append-only: the fuzz inputs' byte encoding), doc, arguments and
    # drawing hints.  Nothing else needs an edit for a new op.

    @world_op(3, "hot-plug device DEV: a VFIO listener per RAM block of the section "
              "[gpa, gpa+size), replaying shared memory into the IOMMU",
              ("dev:dev", "gpa:addr", "size:size"), interleave=True, whole_blocks=True)
    def op_vfio_register(self, dev: int, gpa: int, size: int) -> int:
        if ("vfio", dev) in self.devices:
            return -EINVAL
        return self.design.vfio_device_add(self, dev, gpa, size)

    @world_op(4, "hot-unplug device DEV: unregister its listeners", ("dev:dev",),
              interleave=True)
    def op_vfio_unregister(self, dev: int) -> int:
        if ("vfio", dev) not in self.devices:
            return -ENOENT
        return self.design.vfio_device_remove(self, dev)

    @world_op(5, "register a generic (virtio-mem-like) RamDiscardListener DEV on each "
              "RAM block of the section [gpa, gpa+size)",
              ("dev:dev", "gpa:addr", "size:size"), interleave=True, whole_blocks=True)
    def op_listener_register(self, dev: int, gpa: int, size: int) -> int:
        if ("rdl", dev) in self.devices:
            return -EINVAL
        device = Device(dev, "rdl", gpa, size)
        for block, section in self.sections(gpa, size):
            rdl = self.new_generic_listener(dev, block)
            ret = block.attr.register_listener(rdl, section)
            device.listeners.append((block, rdl))
            if ret:
                # A refusing listener: unregister what was registered, refuse the user.
                for b, r in device.listeners:
                    b.attr.unregister_listener(r)
                return ret
        self.devices[("rdl", dev)] = device
        return 0

    @world_op(6, "unregister generic listener DEV", ("dev:dev",))
    def op_listener_unregister(self, dev: int) -> int:
        device = self.devices.pop(("rdl", dev), None)
        if device is None:
            return -ENOENT
        for block, rdl in device.listeners:
            block.attr.unregister_listener(rdl)
        return 0

    @world_op(0, "the guest converts [gpa, gpa+size) (KVM_EXIT_MEMORY_FAULT)",
              ("gpa:addr", "size:size", "to_private:enum:private|shared"),
              interleave=True, nested=True)
    def op_kvm_convert_memory(self, gpa: int, size: int, to_private: bool) -> int:
        return self.design.kvm_convert_memory(self, gpa, size, to_private)

    @world_op(1, "a vCPU writes the page at gpa (allocating it on first touch)",
              ("gpa:addr",), junk=True)
    def op_guest_touch(self, gpa: int) -> int:
        block = self.block_at(gpa)
        if block is None:
            return -EFAULT
        offset = (gpa - block.gpa) // PAGE_SIZE * PAGE_SIZE
        private = self.kvm.is_private(gpa)
        file = block.gmem if (private or self.design.inplace) else block.memfd
        self.tag += 1
        file.touch(offset).data = self.tag
        self.expected_data.pop(gpa // PAGE_SIZE * PAGE_SIZE, None)
        return 0

    @world_op(2, "device DEV reads or writes [iova, iova+size) through its IOMMU",
              ("dev:dev", "iova:addr", "size:size", "write:enum:write|read"), junk=True)
    def op_device_dma(self, dev: int, iova: int, size: int, write: bool) -> int:
        """Device DMA page by page through its IOMMU; returns the number of IOMMU faults
        (0: every page translated), or -ENOENT if no such device is plugged.

        Only mapped pages are translated one by one; a run of pages no mapping covers
        (past the top of the IOVA space included) faults as a whole, -EFAULT for each
        page, so the cost is the mappings the range meets, not its size.  A run of more
        than IOMMU_FAULT_RUN_MAX pages is one event (``IommuFaultRun``)."""
        device = self.devices.get(("vfio", dev))
        if device is None:
            return -ENOENT
        end = iova + size
        at = iova // PAGE_SIZE * PAGE_SIZE
        faults = 0
        mapped = [(m.iova, m.iova + m.size) for m in device.container.mappings()
                  if m.iova < end and at < m.iova + m.size]
        for lo, hi in mapped + [(end, end)]:
            if at < lo:  # unmapped: [at, lo) rounded out to whole pages
                pages = -(-(lo - at) // PAGE_SIZE)
                faults += pages
                self._iommu_faults(at, pages)
                at += pages * PAGE_SIZE
            for page in range(at, min(hi, end), PAGE_SIZE):
                frame_id = device.container.translate(page, write)
                if frame_id < 0:
                    faults += 1
                    self.event(IommuFault(page, frame_id))
                    continue
                if write:
                    self.tag += 1
                    self.frames.frames[frame_id].data = self.tag
                    if self.block_at(page) is not None and not self.kvm.is_private(page):
                        self.expected_data[page] = self.tag
            at = max(at, min(hi, end) + (-min(hi, end) % PAGE_SIZE))
        return faults

    #: Unmapped runs up to this many pages print an event per page, longer ones one event.
    IOMMU_FAULT_RUN_MAX = 64

    def _iommu_faults(self, iova: int, pages: int) -> None:
        """``pages`` pages from ``iova`` that no mapping covers: -EFAULT each."""
        if pages > self.IOMMU_FAULT_RUN_MAX:
            self.event(IommuFaultRun(iova, pages, -EFAULT))
            return
        for k in range(pages):
            self.event(IommuFault(iova + k * PAGE_SIZE, -EFAULT))

    @world_op(7, "walk the populated (or discarded) runs of [gpa, gpa+size) through "
              "ram_block_attributes_rdm_replay_populated/_discarded",
              ("gpa:addr", "size:size", "populated:enum:populated|discarded"))
    def op_replay(self, gpa: int, size: int, populated: bool):
        runs = []
        for block, section in self.sections(gpa, size):
            fn = (block.attr.replay_populated if populated else block.attr.replay_discarded)
            fn(section, lambda s: runs.append(tuple(s)) or 0)
        return tuple(runs)

    def _forget_converted(self, gfns: set) -> None:
        """Contents are not preserved across a conversion: a page whose KVM attribute
        changes loses what a device wrote to it, at that moment, whatever the page's
        attribute at the end of the op (a page made private and shared again inside one
        op, by a nested or an interleaved conversion, included).  What a device writes
        after the change is expected again.  ``gfns``: the pages, as frame numbers."""
        for page in [p for p in self.expected_data if p // PAGE_SIZE in gfns]:
            del self.expected_data[page]

    def _forget_private_data(self) -> None:
        # After the op: a page that is private now carries nothing a device wrote while
        # it was shared (every attribute change already forgot its pages, as it happened:
        # _forget_converted).
        for page in [p for p in self.expected_data if self.kvm.is_private(p)]:
            del self.expected_data[page]

    # -- reading the state ---------------------------------------------------------------
    def guest_frame(self, gpa: int):
        """The frame the guest sees at ``gpa`` (None: a hole, reads as zeroes)."""
        block = self.block_at(gpa)
        if block is None:
            return None
        offset = gpa - block.gpa
        if self.kvm.is_private(gpa) or self.design.inplace:
            return block.gmem.frame_at(offset)
        return block.memfd.frame_at(offset)

    def snapshot(self) -> dict:
        """Everything a failed conversion must leave untouched (atomic-failure)."""
        ram_gfns = set()
        for block in self.blocks:
            ram_gfns.update(range(block.gpa // PAGE_SIZE, block.end // PAGE_SIZE))
        files = {}
        for block in self.blocks:
            for file in (block.memfd, block.gmem):
                # A hole and an unpinned zero-filled frame read the same.
                files[file.name] = tuple(sorted(
                    (i, f.data) for i, f in file.pages.items() if f.data or f.pins))
        return {
            "kvm private": tuple(sorted(ram_gfns & self.kvm.private)),
            "bitmaps": tuple(tuple(b.attr.bitmap.set_bits()) for b in self.blocks),
            "mappings": tuple((d.dev, tuple(tuple(m) for m in c.mappings()))
                              for d, c in self.containers()),
            "pins": tuple(sorted((f.id, f.pins) for f in self.frames.frames.values() if f.pins)),
            "files": files,
        }
