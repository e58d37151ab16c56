"""Fault injection: the registry of named sites, and deterministic plans.

A *site* is a stable string naming a place where the real system can fail
(``vfio.dma_map``), never a file and line.  Each site is declared once, with
``fault_site()``, next to the code that hits it (rig.world.world: the world's own sites
beside their hits, the core IOMMU's beside the ``fault_hook`` that serves them), with an
explicit append-only ``id`` for the byte decoder; ``SITES`` is the registry everything
else reads (trace parsing, plans, sweeps, the state machine, the fuzz dictionaries).
The world asks the plan at every hit of a site; the plan answers None (no fault) or an
``Injected`` fault.  Three plans:

``explicit``  per-op properties of a trace: ``vfio.dma_map=ENOSPC@2`` fails the 2nd hit of
              that site inside that op; ``memfd.punch_hole=EINTR@1/3`` fails the 1st hit
              after 3 pages were punched (a partial punch); ``kvm.set_memory_attributes=
              ENOMEM@2*8`` fails 8 hits in a row from the 2nd (a failure that outlasts
              a retry loop, as under memory pressure).
``fail_nth``  fail the n-th site hit of the whole run (Linux's iommufd_fail_nth); a sweep
              runs once counting hits, then n = 1, 2, ... until a run reaches no fault.
``seeded``    from a seed: each site is active for the run with probability p_activate,
              then fires on each hit with probability p_fire (FoundationDB's BUGGIFY);
              every site draws from its own sub-seed, so adding a site does not reshuffle
              the others, and faults never reshuffle the op stream.

Every plan counts, per site, how often it was reached and how often it fired.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from rig.errors import ERRNO_BY_NAME, errno_name


@dataclass(frozen=True)
class FaultSite:
    """One place where the real system can fail.

    ``name`` is what traces, plans and reports say; ``id`` is the small int the byte
    decoder picks the site by (rig.trace.decode): it is written in the declaration, never
    taken from a position, and is append-only, so a saved input or a dictionary token
    keeps its meaning when sites are added.  ``errnos`` are what the site can return (the
    first is the default, which fail_nth uses); a ``partial`` site fails after some
    progress (pages punched, areas unmapped).  ``where`` names the function that hits
    the site, ``doc`` what a failure there means."""

    name: str
    id: int
    errnos: tuple[int, ...]
    partial: bool = False
    where: str = ""
    doc: str = ""


#: name -> site, in id order: the one view of the registry the rest of the rig reads.
#: fault_site() fills it as the modules that hit the sites are imported; rig.world's
#: __init__ imports them, so every site is here before anything can read it.
SITES: dict[str, FaultSite] = {}


def fault_site(name: str, *, id: int, errnos: tuple[int, ...], partial: bool = False,
               where: str, doc: str) -> FaultSite:
    """Declare and register a fault site, once, next to the code that hits it; returns
    the site, which the hit passes by name to the plan (``world.fault(SITE.name)``).

    Refuses a name or an id that is already taken: ids are append-only, so a new site
    takes the next free id and an old one keeps its id for good."""
    if isinstance(id, bool) or not isinstance(id, int) or id < 0:
        raise ValueError(f"fault site {name!r}: id must be an int >= 0, not {id!r}")
    if not errnos or any(not isinstance(e, int) or e <= 0 for e in errnos):
        raise ValueError(f"fault site {name!r}: errnos must be positive errno values, "
                         f"at least one ({errnos!r})")
    if name in SITES:
        raise ValueError(f"fault site {name!r} is declared twice "
                         f"({SITES[name].where} and {where})")
    taken = {s.id: s for s in SITES.values()}
    if id in taken:
        free = max(taken) + 1
        raise ValueError(f"fault site {name!r}: id {id} is already {taken[id].name!r}'s "
                         f"(ids are append-only; the next free one is {free})")
    site = FaultSite(name, id, tuple(errnos), partial, where, doc)
    ordered = sorted([*SITES.values(), site], key=lambda s: s.id)
    SITES.clear()  # in place: modules that imported SITES see the new site too
    SITES.update((s.name, s) for s in ordered)
    return site


@dataclass(frozen=True)
class FaultSpec:
    """One explicit fault: the ``nth`` hit of ``site`` inside the op fails with ``errno``
    (negative), after ``partial`` units of progress for partial sites; so do the
    ``count - 1`` hits after it."""

    site: str
    errno: int
    nth: int = 1
    partial: int | None = None
    count: int = 1

    def __str__(self) -> str:
        text = f"{self.site}={errno_name(self.errno)}@{self.nth}"
        if self.count != 1:
            text += f"*{self.count}"
        return text if self.partial is None else f"{text}/{self.partial}"

    def fires_at(self, hit: int) -> bool:
        """Whether the ``hit``-th hit of the site inside the op fails."""
        return self.nth <= hit < self.nth + self.count

    @classmethod
    def parse(cls, text: str) -> "FaultSpec":
        """``site=ERRNO[@nth[*count]][/partial]``; raises ValueError naming the bad field."""
        if "=" not in text:
            raise ValueError(f"fault {text!r}: expected site=ERRNO[@nth[*count]][/partial]")
        site, rest = text.split("=", 1)
        if site not in SITES:
            raise ValueError(f"fault {text!r}: unknown site {site!r}")
        partial = None
        if "/" in rest:
            rest, partial_text = rest.split("/", 1)
            if not SITES[site].partial:
                raise ValueError(f"fault {text!r}: site {site} has no partial progress")
            partial = _parse_count(partial_text, text, "partial")
        nth, count = 1, 1
        if "@" in rest:
            rest, nth_text = rest.split("@", 1)
            if "*" in nth_text:
                nth_text, count_text = nth_text.split("*", 1)
                count = _parse_count(count_text, text, "count")
                if count < 1:
                    raise ValueError(f"fault {text!r}: count must be >= 1")
            nth = _parse_count(nth_text, text, "nth")
            if nth < 1:
                raise ValueError(f"fault {text!r}: nth must be >= 1")
        if rest not in ERRNO_BY_NAME:
            raise ValueError(f"fault {text!r}: unknown errno {rest!r}")
        errno = -ERRNO_BY_NAME[rest]
        if -errno not in SITES[site].errnos:
            allowed = ", ".join(errno_name(-e) for e in SITES[site].errnos)
            raise ValueError(f"fault {text!r}: {site} cannot fail with {rest} (only {allowed})")
        return cls(site, errno, nth, partial, count)


def longest_failing_run(specs, site: str) -> int:
    """The most hits of ``site`` in a row that ``specs`` (one op's) make fail."""
    hits = sorted({hit for s in specs if s.site == site for hit in range(s.nth, s.nth + s.count)})
    longest = run = 0
    for i, hit in enumerate(hits):
        run = run + 1 if i and hit == hits[i - 1] + 1 else 1
        longest = max(longest, run)
    return longest


def _parse_count(text: str, whole: str, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"fault {whole!r}: {what} {text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"fault {whole!r}: {what} must be >= 0")
    return value


@dataclass
class Injected:
    """A fault the plan fired.  ``partial``: units done before failing (partial sites)."""

    site: str
    errno: int
    partial: int | None = None
    injected: bool = True
    nth: int = 0  # which hit of the site inside its op (set by the plan)


@dataclass
class SiteStats:
    reached: int = 0
    fired: int = 0


class FaultPlan:
    """Base plan: never fires, but counts.  Subclasses decide in ``_decide``."""

    mode = "none"

    def __init__(self):
        self.stats: dict[str, SiteStats] = {name: SiteStats() for name in SITES}
        self.hits = 0
        self.op_index = -1
        self.op_hits: dict[str, int] = {}
        self.fired: list[tuple[int, Injected]] = []

    def begin_op(self, index: int, op) -> None:
        self.op_index = index
        self.op_hits = {}

    def hit(self, site: str, units: int = 1) -> Injected | None:
        """Called by the world at every hit of ``site``; ``units`` is the progress a partial
        site could make (pages to punch, areas to unmap)."""
        if site not in SITES:
            raise KeyError(f"unknown fault site {site!r}")
        self.hits += 1
        self.op_hits[site] = self.op_hits.get(site, 0) + 1
        self.stats[site].reached += 1
        fault = self._decide(site, units)
        if fault is not None:
            fault.nth = self.op_hits[site]
            self.stats[site].fired += 1
            self.fired.append((self.op_index, fault))
        return fault

    def _decide(self, site: str, units: int) -> Injected | None:
        return None

    def describe(self) -> str:
        return self.mode

    def coverage(self) -> dict[str, tuple[int, int]]:
        return {name: (s.reached, s.fired) for name, s in self.stats.items()}


class ExplicitPlan(FaultPlan):
    """Faults pinned by the ``fault`` property of each op."""

    mode = "explicit"

    def begin_op(self, index: int, op) -> None:
        super().begin_op(index, op)
        self.specs = tuple(op.prop("fault", ())) if op is not None else ()

    def _decide(self, site: str, units: int) -> Injected | None:
        for spec in self.specs:
            if spec.site == site and spec.fires_at(self.op_hits[site]):
                partial = None
                if SITES[site].partial:
                    partial = min(units, spec.partial if spec.partial is not None else 0)
                return Injected(site, spec.errno, partial)
        return None


class FailNthPlan(ExplicitPlan):
    """Fail the ``nth`` hit (1-based) of the run's eligible sites (``sites``, or every
    site) with the site's default errno; explicit per-op faults still apply.  Partial
    sites fail halfway.  ``nth_reached`` says whether the n-th hit came: a sweep ends at
    the first n whose hit never does (whatever the explicit faults fired).  Every
    eligible hit counts, one an explicit fault fails too (as before ``sites``)."""

    mode = "fail_nth"

    def __init__(self, nth: int, sites: tuple = ()):
        super().__init__()
        self.nth = nth
        self.sites = frozenset(sites)
        self.eligible = 0
        self.nth_reached = False

    def _decide(self, site: str, units: int) -> Injected | None:
        eligible = not self.sites or site in self.sites
        if eligible:
            self.eligible += 1
            if self.eligible == self.nth:
                self.nth_reached = True
        explicit = super()._decide(site, units)
        if explicit is not None:
            return explicit
        if not eligible or self.eligible != self.nth:
            return None
        partial = units // 2 if SITES[site].partial else None
        return Injected(site, -SITES[site].errnos[0], partial)

    def describe(self) -> str:
        only = f" sites={','.join(sorted(self.sites))}" if self.sites else ""
        return f"fail_nth={self.nth}{only}"


def sub_seed(seed: int, name: str) -> int:
    """A stable per-subsystem seed (no hash(): PYTHONHASHSEED must not matter)."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class SeededPlan(ExplicitPlan):
    """BUGGIFY: each site active with ``p_activate``, then firing with ``p_fire`` per hit."""

    mode = "seeded"

    def __init__(self, seed: int, p_activate: float = 0.25, p_fire: float = 0.1,
                 sites: tuple = ()):
        super().__init__()
        self.seed = seed
        #: Only these sites may fire (empty: every site); the others are still counted.
        self.sites = frozenset(sites)
        self.p_activate = p_activate
        self.p_fire = p_fire
        #: site -> (its generator, whether it is active), made at the site's first hit:
        #: each site draws from a generator of its own, so making it late changes no
        #: draw, and a world (three per input in a campaign) no longer seeds a generator
        #: for each of the sites it never reaches.
        self._sites: dict[str, tuple[random.Random, bool]] = {}

    def _site(self, name: str) -> tuple[random.Random, bool]:
        state = self._sites.get(name)
        if state is None:
            rng = random.Random(sub_seed(self.seed, f"fault/{name}"))
            state = self._sites[name] = (rng, rng.random() < self.p_activate)
        return state

    @property
    def active(self) -> dict[str, bool]:
        """site -> whether this plan's seed activates it (BUGGIFY's first draw)."""
        return {name: self._site(name)[1] for name in SITES}

    def _decide(self, site: str, units: int) -> Injected | None:
        explicit = super()._decide(site, units)
        if explicit is not None:
            return explicit
        if self.sites and site not in self.sites:
            return None
        rng, active = self._site(site)
        if not active or rng.random() >= self.p_fire:
            return None
        errnos = SITES[site].errnos
        errno = -errnos[rng.randrange(len(errnos))]
        partial = rng.randrange(units + 1) if SITES[site].partial else None
        return Injected(site, errno, partial)

    def describe(self) -> str:
        only = f" sites={','.join(sorted(self.sites))}" if self.sites else ""
        return (f"seeded seed={self.seed} p_activate={self.p_activate} "
                f"p_fire={self.p_fire}{only}")


def make_plan(mode: str, seed: int = 0, nth: int = 0, p_activate: float = 0.25,
              p_fire: float = 0.1, sites: tuple = ()) -> FaultPlan:
    if mode in ("none", "explicit"):
        return ExplicitPlan()
    if mode == "fail_nth":
        return FailNthPlan(nth, sites)
    if mode == "seeded":
        return SeededPlan(seed, p_activate, p_fire, sites)
    raise ValueError(f"unknown fault mode {mode!r} (explicit, fail_nth, seeded)")


__all__ = ["SITES", "FaultSite", "fault_site", "FaultSpec", "Injected", "FaultPlan", "ExplicitPlan",
           "FailNthPlan", "SeededPlan", "make_plan", "sub_seed", "longest_failing_run"]
