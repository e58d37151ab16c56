"""WorldConfig: everything that determines a world, and nothing else.

The trace header is this config, key for key; a config plus an op list is a complete,
replayable run.  ``validate()`` refuses impossible worlds with one line naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

PAGE_SIZE = 0x1000
U64 = 1 << 64
RAM_MAX = 1 << 32


@dataclass(frozen=True)
class RamSpec:
    """One RAM block laid out in guest-physical address space at ``gpa``."""

    gpa: int
    size: int

    def __str__(self) -> str:
        return f"0x{self.gpa:x}+0x{self.size:x}"

    @classmethod
    def parse(cls, text: str) -> "RamSpec":
        gpa, _, size = text.partition("+")
        try:
            if not size:
                raise ValueError
            return cls(int(gpa, 0), int(size, 0))
        except ValueError:
            raise ValueError(f"ram: block {text!r} is not GPA+SIZE (e.g. 0x0+0x10000)") from None


def parse_ram(text: str) -> tuple[RamSpec, ...]:
    return tuple(RamSpec.parse(part) for part in text.split(",") if part)


#: x86-like layout: RAM below the 32-bit PCI hole and above 4 GiB (scaled down).
X86_LAYOUT = (RamSpec(0x0, 0x8000), RamSpec(0x100000000, 0x8000))


@dataclass(frozen=True)
class WorldConfig:
    design: str = "hardened"
    iommu: str = "type1"                 # type1 | iommufd
    dma_entry_limit: int = 65535         # type1's module parameter
    max_memslots: int = 32764            # what KVM reports on x86 (QEMU's budget check)
    memlock_limit: int | None = None     # RLIMIT_MEMLOCK in bytes; None: unlimited
    block_size: int = 0x1000             # RamBlockAttributes granularity
    hugetlb: bool = False                # shared memory on 2 MiB hugetlb pages
    budget_check: str = "auto"           # auto (the design's) | refuse | warn
    ram: tuple = (RamSpec(0x0, 0x10000),)
    faults: str = "explicit"             # explicit | fail_nth | seeded
    fail_nth: int = 0
    seed: int = 0
    p_activate: float = 0.25
    p_fire: float = 0.1
    #: The sites the fail_nth and seeded plans may fail (empty: every site); a sweep's
    #: fault plan ("map errors") names them.  Explicit per-op faults are not limited.
    #: The header writes it only when set, so traces from before it keep their bytes.
    fault_sites: tuple = ()

    def with_(self, **changes) -> "WorldConfig":
        return replace(self, **changes)

    def validate(self) -> "WorldConfig":
        """Raise ValueError("<field>: <why>") for a world that cannot exist."""
        from rig.world.designs import DESIGNS, ensure

        def bad(name: str, why: str):
            raise ValueError(f"{name}: {why}")

        if not ensure(self.design):
            bad("design", f"unknown design {self.design!r} (one of {', '.join(DESIGNS)}; "
                "a design of your own: --load path/to/file.py:Class or RIG_DESIGNS)")
        if self.iommu not in ("type1", "iommufd"):
            bad("iommu", f"{self.iommu!r} is not type1 or iommufd")
        if not 0 <= self.dma_entry_limit < U64:
            bad("dma_entry_limit", "must be within 0..2^64-1")
        if self.max_memslots < 0:
            bad("max_memslots", "must be >= 0")
        if self.memlock_limit is not None and self.memlock_limit < 0:
            bad("memlock_limit", "must be >= 0")
        bs = self.block_size
        if bs < PAGE_SIZE or bs & (bs - 1) or bs > 0x200000:
            bad("block_size", f"0x{bs:x} is not a power of two in 0x1000..0x200000")
        if self.budget_check not in ("auto", "refuse", "warn"):
            bad("budget_check", f"{self.budget_check!r} is not auto, refuse or warn")
        if not self.ram:
            bad("ram", "at least one RAM block is needed")
        page = 0x200000 if self.hugetlb else PAGE_SIZE
        align = max(bs, page)
        last_end = 0
        for i, r in enumerate(self.ram):
            if r.size <= 0:
                bad("ram", f"block {i} ({r}) has size 0")
            if r.gpa % align or r.size % align:
                bad("ram", f"block {i} ({r}) is not aligned to 0x{align:x}")
            if r.gpa < last_end:
                bad("ram", f"block {i} ({r}) overlaps or precedes block {i - 1}")
            if r.gpa + r.size > U64:
                bad("ram", f"block {i} ({r}) ends past 2^64")
            last_end = r.gpa + r.size
        if sum(r.size for r in self.ram) > RAM_MAX:
            bad("ram", f"at most 0x{RAM_MAX:x} bytes of RAM in all (the world keeps "
                "per-page state in Python)")
        if self.faults not in ("explicit", "fail_nth", "seeded"):
            bad("faults", f"{self.faults!r} is not explicit, fail_nth or seeded")
        if self.faults == "fail_nth" and self.fail_nth < 1:
            bad("fail_nth", "must be >= 1 with faults=fail_nth")
        for name in ("p_activate", "p_fire"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "must be within 0..1")
        if self.fault_sites:
            from rig.world.faults import SITES

            unknown = [s for s in self.fault_sites if s not in SITES]
            if unknown:
                bad("fault_sites", f"unknown site {unknown[0]!r} (one of {', '.join(SITES)})")
            if len(set(self.fault_sites)) != len(self.fault_sites):
                bad("fault_sites", "a site is named twice")
        return self

    @property
    def ram_pages(self) -> int:
        return sum(r.size for r in self.ram) // PAGE_SIZE


CONFIG_FIELDS = tuple(f.name for f in fields(WorldConfig))
#: Fields a trace header writes only when they differ from the default: the ones added
#: after traces were first committed (corpora/ keeps its bytes).
OPTIONAL_FIELDS = ("fault_sites",)
