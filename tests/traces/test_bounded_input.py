"""Bad input is refused or cheap: no op costs what its arguments claim rather than what
the world holds (a 1 TiB DMA, a conversion far larger than RAM), a trace line is split at
"\\n" only so every error names the line an editor shows, and mutated traces through
`rig replay` give clean errors, never a traceback, an exit 3 or a hang."""

import random
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rig.check.differential import CORE_OPS
from rig.cli.main import main
from rig.errors import EFAULT, ENOENT, ENOMEM, ERRNO_BY_NAME
from rig.trace import core as core_trace
from rig.trace.format import TraceError, parse
from rig.world.config import RamSpec, WorldConfig
from rig.world.designs import DESIGNS
from rig.world.events import IommuFault, IommuFaultRun
from rig.world.faults import SITES
from rig.world.kvm import Kvm
from rig.world.ops import OPS, op
from rig.world.world import World

from tests.conftest import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
MAGIC = "# gmem-rig trace v1"
PAGE = 0x1000
U64 = 1 << 64
#: What str.splitlines() breaks at besides "\n" and "\r\n".
STRAY_BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def rig(*args, timeout=60, **kwargs):
    """`rig ...` in a fresh process; a hang fails the test (TimeoutExpired)."""
    return subprocess.run([sys.executable, "-m", "rig.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


# -- ops cost what the world holds ----------------------------------------------------------

def test_a_1_tib_dma_finishes_with_one_line_per_run(tmp_path):
    """device_dma(0, 0x0, 0x10000000000, write) used to walk 2^28 pages (it never
    finished); now it translates the mapped pages and faults the rest as runs."""
    trace = tmp_path / "dma.trace"
    trace.write_text(f"{MAGIC}\n# design=hardened\nvfio_register(0, 0x0, 0x10000)\n"
                     "kvm_convert_memory(0x2000, 0x1000, shared)\n"
                     "device_dma(0, 0x0, 0x10000000000, write)\n")
    proc = rig("replay", str(trace))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    dma = lines.index("#2   device_dma(0, 0x0, 0x10000000000, write) = 268435455")
    assert lines[dma + 1:dma + 4] == [
        "       IOMMU fault at iova 0x0 (-EFAULT)",
        "       IOMMU fault at iova 0x1000 (-EFAULT)",
        "       IOMMU fault at iova 0x3000+0xffffffd000: 268435453 pages (-EFAULT)"]


def test_every_op_at_its_largest_arguments_finishes(tmp_path):
    """Each world op with the largest addresses and sizes a trace can hold, on every
    design, and each core op likewise: every file replays (exit 0 or 2) in one process
    well inside the timeout."""
    top, huge = "0xfffffffffffff000", "0xfffffffffffff000"
    files = []
    for design in DESIGNS:
        lines = [MAGIC, f"# design={design} iommu=iommufd ram=0x0+0x10000,0x100000000+0x10000",
                 f"vfio_register(0, 0x0, {huge})", f"listener_register(1, 0x0, {huge})",
                 "kvm_convert_memory(0x0, 0x1000, shared)",
                 f"device_dma(0, 0x0, {huge}, write)", f"device_dma(0, {top}, {huge}, read)",
                 f"replay(0x0, {huge}, populated)", f"replay({top}, {huge}, discarded)",
                 f"guest_touch({top})", f"kvm_convert_memory(0x200000000, 0x1000000000, shared)",
                 "kvm_convert_memory(0x1000000000, 0x1000000000, private)",
                 f"kvm_convert_memory(0x0, {huge}, shared)", f"kvm_convert_memory({top}, {huge}, private)",
                 "vfio_unregister(0)", "listener_unregister(1)"]
        path = tmp_path / f"world-{design}.trace"
        path.write_text("\n".join(lines) + "\n")
        files.append(str(path))
    core = [MAGIC, "# core nblocks=4096 iommu=iommufd",
            f"register_listener(V0, 0x0, {huge}, 0x0)",
            "register_listener(V1, 0x0, 0x1000000, 0xffffffffff000000)",
            "state_change(0x0, 0x1000000, populate)", f"state_change(0x0, {huge}, discard)",
            f"replay_populated(0x0, {huge}, 0)", f"replay_discarded({top}, {huge}, 1)",
            f"is_populated({top}, {huge})",
            f"map_dma(E, 0x0, {huge}, 0x0, rw)", f"map_dma(D, {top}, {huge}, {top}, ro)",
            f"unmap_dma(E, 0x0, {huge})", f"translate(D, {top}, write)",
            f"bitmap_set(0x0, {huge})", f"bitmap_clear({top}, {huge})",
            f"find_next_bit({huge}, 0x0)", f"find_next_zero_bit({huge}, {top})",
            "unregister_listener(V1)"]
    # Every op that takes an address or a size (arm and nest take neither).
    assert {line.split("(")[0] for line in core[2:]} == set(CORE_OPS) - {"arm", "nest"}
    assert {line.split("(")[0] for line in lines[2:]} == set(OPS)
    path = tmp_path / "core.trace"
    path.write_text("\n".join(core) + "\n")
    files.append(str(path))
    proc = rig("replay", "--quiet", *files, timeout=120)
    assert proc.returncode in (0, 2), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stdout.splitlines()) == len(files)


def test_kvm_attributes_outside_ram_cost_runs_not_pages():
    """A KVM_SET_MEMORY_ATTRIBUTES call over 64 GiB used to add 2^24 page numbers to a
    set (2 GB, seconds); sixteen of them, far outside RAM, now fit in a small process."""
    script = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from rig.world.config import WorldConfig
        from rig.world.world import World
        world = World(WorldConfig(design="qemu-10.1"), "pure")
        world.begin_op(0, None)
        step = 1 << 36
        for i in range(1, 17):
            assert world.kvm_set_memory_attributes(i * step, step, True) == 0
        assert world.kvm_set_memory_attributes(step, 16 * step, True) == -12  # > 64 GiB
        assert world.kvm.has_attribute(step, step, True)
        assert world.kvm_set_memory_attributes(5 * step + 0x1000, 0x1000, False) == 0
        assert not world.kvm.is_private(5 * step + 0x1000)
        assert world.kvm.is_private(5 * step) and world.kvm.is_private(5 * step + 0x2000)
        assert world.kvm_set_memory_attributes(0x0, step, False) == 0  # RAM too
        assert not any(world.kvm.is_private(g * 0x1000) for g in range(16))
        assert len(world.kvm.private) == 0
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr[-2000:]


def test_a_core_dma_entry_limit_past_64_bits_is_an_input_error(tmp_path, capsys):
    """The Cython core's type1 container takes an unsigned long: a larger limit in a core
    header was an OverflowError, exit 3."""
    path = tmp_path / "limit.trace"
    for limit, code in ((U64 - 1, 0), (U64, 1), (10 ** 30, 1)):
        path.write_text(f"{MAGIC}\n# core nblocks=8 dma_entry_limit={limit}\n"
                        "map_dma(D, 0x0, 0x1000, 0x0, rw)\n")
        assert main(["replay", str(path)]) == code
        _, err = capsys.readouterr()
        if code:
            assert err == f"rig replay: {path}:2: dma_entry_limit: {limit} is not within " \
                          "0..2^64-1\n"


class _NaiveKvm:
    """The attributes as one set of page numbers for every gfn (what Kvm was)."""

    def __init__(self, private=()):
        self.private = set(private)

    def set(self, start, size, private, fault=0, pinned=None):
        probe = Kvm()
        ret = probe.check_range(start, size)
        if ret:
            return ret
        gfns = range(start // PAGE, (start + size) // PAGE)
        if all((g in self.private) == private for g in gfns):
            return 0
        if fault:
            return fault
        if private and pinned is not None and any(pinned(g * PAGE) for g in gfns):
            return -11
        (self.private.update if private else self.private.difference_update)(gfns)
        return 0


def test_kvm_attributes_mean_what_they_meant():
    """Kvm keeps RAM's bits page by page and the rest as runs; on random calls over a
    small address space it answers as one set of pages did, bit for bit."""
    ram = [(4 * PAGE, 8 * PAGE), (20 * PAGE, 4 * PAGE), (40 * PAGE, PAGE)]
    space = 64
    for seed in range(40):
        rng = random.Random(seed)
        kvm = Kvm(ram)
        for gpa, size in ram:
            kvm.private.update(range(gpa // PAGE, (gpa + size) // PAGE))
        naive = _NaiveKvm(kvm.private)
        pinned_pages = {rng.randrange(space) for _ in range(3)}

        def pinned(gpa):
            gfn = gpa // PAGE
            return gfn in pinned_pages and any(a <= gpa < a + s for a, s in ram)

        for _ in range(60):
            start = rng.randrange(space) * PAGE + (rng.random() < 0.05) * 0x800
            size = rng.randrange(0, space - start // PAGE + 2) * PAGE
            private = rng.random() < 0.5
            fault = -ENOMEM if rng.random() < 0.1 else 0
            pin = pinned if rng.random() < 0.3 else None
            assert kvm.has_attribute(start, max(size, PAGE), private) == all(
                (g in naive.private) == private
                for g in range(start // PAGE, (start + max(size, PAGE)) // PAGE))
            assert kvm.set_memory_attributes(start, size, private, fault, pin) == \
                naive.set(start, size, private, fault, pin), (seed, start, size, private)
            assert [kvm.is_private(g * PAGE) for g in range(space + 2)] == \
                [g in naive.private for g in range(space + 2)]
            assert kvm.private == {g for g in naive.private
                                   if any(a // PAGE <= g < (a + s) // PAGE for a, s in ram)}


def _reference_dma(world, dev, iova, size, write):
    """device_dma as it was: every page of the range translated, one event a fault."""
    device = world.devices.get(("vfio", dev))
    if device is None:
        return -ENOENT
    faults = 0
    for page in range(iova // PAGE * PAGE, iova + size, PAGE):
        frame_id = device.container.translate(page, write) if page < U64 else -EFAULT
        if frame_id < 0:
            faults += 1
            world.event(IommuFault(page, frame_id))
            continue
        if write:
            world.tag += 1
            world.frames.frames[frame_id].data = world.tag
            if world.block_at(page) is not None and not world.kvm.is_private(page):
                world.expected_data[page] = world.tag
    return faults


def _expanded(events):
    out = []
    for e in events:
        if isinstance(e, IommuFaultRun):
            assert e.pages > World.IOMMU_FAULT_RUN_MAX
            out += [IommuFault(e.iova + k * PAGE, e.ret) for k in range(e.pages)]
        else:
            out.append(e)
    return out


@pytest.mark.parametrize("iommu", ["type1", "iommufd"])
def test_device_dma_does_what_a_page_by_page_walk_did(backend, iommu):
    """On random small DMAs over mapped and unmapped memory (unaligned ones too), the
    op returns what the page-by-page walk returned and leaves the same frames, tags
    and expected data; its events are the walk's, a run of more than
    IOMMU_FAULT_RUN_MAX faults folded into one."""
    cfg = WorldConfig(design="hardened", iommu=iommu,
                      ram=(RamSpec(0x0, 0x40000), RamSpec(0x100000, 0x20000))).validate()
    rng = random.Random(f"dma/{iommu}")
    setup = [op("vfio_register", 0, 0x0, 0x200000)]
    for _ in range(12):
        block = rng.choice(cfg.ram)
        gpa = block.gpa + rng.randrange(block.size // PAGE - 4) * PAGE
        setup.append(op("kvm_convert_memory", gpa, rng.randrange(1, 4) * PAGE,
                        rng.random() < 0.3))
    worlds = []
    for _ in range(2):
        world = World(cfg, backend)
        for i, o in enumerate(setup):
            world.begin_op(i, o)
            world.apply(o)
        worlds.append(world)
    new, old = worlds
    assert new.containers()[0][1].count > 0
    folded = 0
    for n in range(150):
        iova = rng.randrange(0x130000 // PAGE) * PAGE + rng.choice((0, 0, 0, 0x10, 0xfff))
        size = rng.choice((0, 0x10, PAGE, 3 * PAGE, 0x48000, 0x100000 + 0x801))
        write = rng.random() < 0.5
        for world in worlds:
            world.begin_op(100 + n, None)
            world.events = []
        got = new.op_device_dma(0, iova, size, write)
        want = _reference_dma(old, 0, iova, size, write)
        assert got == want, (iova, size)
        assert _expanded(new.events) == old.events, (iova, size)
        folded += sum(isinstance(e, IommuFaultRun) for e in new.events)
        assert new.tag == old.tag and new.expected_data == old.expected_data
        assert new.snapshot() == old.snapshot()
    assert folded  # some DMA had a long unmapped run


def test_a_long_unmapped_run_is_one_event_and_a_short_one_a_line_a_page(backend):
    world = World(WorldConfig(design="hardened").validate(), backend)
    world.begin_op(0, None)
    world.apply(op("vfio_register", 0, 0x0, 0x10000))
    limit = World.IOMMU_FAULT_RUN_MAX
    assert world.op_device_dma(0, 0x0, limit * PAGE, True) == limit
    assert world.events[-limit:] == [IommuFault(k * PAGE, -EFAULT) for k in range(limit)]
    world.events = []
    assert world.op_device_dma(0, 0x0, (limit + 1) * PAGE, False) == limit + 1
    assert world.events == [IommuFaultRun(0x0, limit + 1, -EFAULT)]
    assert str(world.events[0]) == \
        f"IOMMU fault at iova 0x0+0x{(limit + 1) * PAGE:x}: {limit + 1} pages (-EFAULT)"


# -- lines end at "\n" only ---------------------------------------------------------------------

def _repr(ch: str) -> str:
    return f"U+{ord(ch):04X}"


@pytest.mark.parametrize("ch", STRAY_BREAKS, ids=[_repr(c) for c in STRAY_BREAKS])
def test_a_stray_line_break_is_an_error_on_its_own_line(ch):
    """str.splitlines() splits at these too, so the error named the line after; now the
    line is the one holding the character (world traces and core traces)."""
    world = f"{MAGIC}\n# design=hardened\nguest_touch(0x0)\nguest_touch(0x0)  # a{ch}b\n" \
            "no_such_op()\n"
    with pytest.raises(TraceError) as exc:
        parse(world, "w.trace")
    assert exc.value.line == 4 and _repr(ch) in exc.value.message, str(exc.value)
    core = f"{MAGIC}\n# core nblocks=8\nis_populated(0x0, 0x1000)\n# x{ch}y\nno_such_op()\n"
    with pytest.raises(TraceError) as exc:
        core_trace.parse(core, "c.trace")
    assert exc.value.line == 4 and _repr(ch) in exc.value.message, str(exc.value)
    # In an op line and in the header too, and in the magic line ("\r" before "\n" is
    # a CRLF line end, which is read as "\n").
    cases = [(f"{MAGIC}\n# design=hardened\nguest_touch(0x0{ch})\n", 3),
             (f"{MAGIC}\n# design=hardened{ch}x\nguest_touch(0x0)\n", 2),
             (f"{MAGIC}{ch} \n# design=hardened\n", 1)]
    for text, line in cases:
        with pytest.raises(TraceError) as exc:
            parse(text, "w.trace")
        assert exc.value.line == line, (repr(text), str(exc.value))


@pytest.mark.parametrize("ch", STRAY_BREAKS, ids=[_repr(c) for c in STRAY_BREAKS])
def test_rig_replay_names_the_line_and_lenient_skips_it(tmp_path, capsys, ch):
    path = tmp_path / "t.trace"
    path.write_text(f"{MAGIC}\n# design=hardened\nguest_touch(0x0)\n# a{ch}b\n"
                    "guest_touch(0x1000)\n", encoding="utf-8", newline="")
    assert main(["replay", str(path)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"rig replay: {path}:4: {_repr(ch)} ") and err.count("\n") == 1
    assert main(["replay", "--lenient", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert f"warning: {path}:4: {_repr(ch)}" in out
    assert "#1   guest_touch(0x1000) = 0" in out


def test_load_reads_the_file_as_written(tmp_path):
    """load() opened the file with universal newlines, which turn a lone "\\r" into a
    line break before the parser sees it."""
    from rig.trace.format import load

    path = tmp_path / "cr.trace"
    path.write_bytes(f"{MAGIC}\r\n# design=hardened\r\n# a\rb\r\nguest_touch(0x0)\r\n".encode())
    with pytest.raises(TraceError) as exc:
        load(str(path))
    assert exc.value.line == 3 and "U+000D" in exc.value.message
    core = tmp_path / "cr-core.trace"
    core.write_bytes(f"{MAGIC}\n# core nblocks=8\n# a\rb\n".encode())
    with pytest.raises(TraceError) as exc:
        core_trace.load(str(core))
    assert exc.value.line == 3
    path.write_bytes(path.read_bytes().replace(b"# a\rb\r\n", b""))
    assert len(load(str(path)).ops) == 1


def test_crlf_text_reads_as_lf():
    lf = (ROOT / "corpora" / "scenarios" / "seed.trace").read_text()
    assert parse(lf.replace("\n", "\r\n")) == parse(lf)
    core = (ROOT / "corpora" / "core" / "ok-every-op.trace").read_text()
    assert core_trace.parse(core.replace("\n", "\r\n")) == core_trace.parse(core)
    assert core_trace.is_core_trace(core.replace("\n", "\r\n"))


# -- mutated traces through rig replay ------------------------------------------------------

class _Hang(BaseException):
    """An input ran past its deadline (BaseException: the CLI's handler lets it by)."""


NUMBERS = ["0x0", "0x1", "0xfff", "0x1000", "0x200000", "0x10000000000", "0xfffffffffffff000",
           "0xffffffffffffffff", "0x10000000000000000", "0x1" + "0" * 40, "-0x1000", "0x"]
COUNTS = ["0", "1", "65535", "4096", "4097", "99999999999999999999", "-1", ""]
WORDS = (list(OPS) + list(CORE_OPS) + list(DESIGNS) + list(SITES) + list(ERRNO_BY_NAME)
         + ["private", "shared", "populate", "discard", "write", "read", "R0", "V1", "D",
            "E", "fault:", "interleave:", "before", "attr", "nested:", "core", "expect:",
            "violation", "mismatch", "ok", "vm_stopped", "ram=", "design=", "iommu="])
CHARS = STRAY_BREAKS + ["(", ")", ",", "#", "=", ":", "@", "*", "/", " ", "\t", "\x00",
                        "\ufeff", "é", "\U0001F600", "\\", '"', "+", "\n", "\n\n"]


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        if kind == 8:  # a header value pushed to a limit
            values = list(re.finditer(r"(?<==)[^\s=]*", text))
            if values:
                m = rng.choice(values)
                new = rng.choice(NUMBERS + COUNTS + ["none", "yes", "no", "0x0+0x0",
                                                     "0x0+0x100000000", "0x0+0x1000,0x0+0x1000"])
                text = text[:m.start()] + new + text[m.end():]
            continue
        numbers = list(re.finditer(r"0x[0-9a-fA-F]+|\b\d+\b", text))
        words = list(re.finditer(r"[A-Za-z_][\w.-]*:?", text))
        lines = text.split("\n")
        if kind == 0 and numbers:
            m = rng.choice(numbers)
            new = rng.choice(NUMBERS if m.group().startswith("0x") else COUNTS)
            text = text[:m.start()] + new + text[m.end():]
        elif kind == 1 and words:
            m = rng.choice(words)
            text = text[:m.start()] + rng.choice(WORDS) + text[m.end():]
        elif kind == 2:
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(CHARS) + text[at:]
        elif kind == 3 and text:
            at = rng.randrange(len(text))
            text = text[:at] + text[at + rng.randint(1, 12):]
        elif kind == 4 and len(lines) > 2:
            i = rng.randrange(1, len(lines))
            lines.insert(rng.randrange(1, len(lines)), lines[i])
            text = "\n".join(lines)
        elif kind == 5 and len(lines) > 2:
            i, j = rng.randrange(1, len(lines)), rng.randrange(1, len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == 6:
            text = text[:rng.randrange(len(text) + 1)]
        else:
            bad = rng.choice(["device_dma(0, 0x0, 0x10000000000, write)",
                              "kvm_convert_memory(0x0, 0x1000000000, private)",
                              "replay(0x0, 0xfffffffffffff000, discarded)",
                              "vfio_register(3, 0x0, 0xfffffffffffff000)",
                              "map_dma(E, 0x0, 0xfffffffffffff000, 0x0, rw)",
                              "bitmap_set(0x0, 0xffffffffffff)"])
            lines.insert(rng.randrange(1, len(lines) + 1), bad)
            text = "\n".join(lines)
    return text


def test_mutated_traces_give_clean_errors(tmp_path, capsys):
    """A few hundred seeded mutations of the shipped traces (numbers pushed to their
    limits, words swapped, stray characters, lines moved and cut, huge ops inserted)
    through `rig replay` in-process: exit 0, 1 or 2, never a traceback, an exit 3 or an
    input that runs past its deadline."""
    sources = sorted((ROOT / "corpora").glob("*/*.trace"))
    assert len(sources) > 20
    texts = [p.read_text() for p in sources]
    rng = random.Random(11)

    def deadline(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, deadline)
    codes: dict[int, int] = {}
    try:
        for n in range(500):
            text = _mutate(rng.choice(texts), rng)
            path = tmp_path / f"m{n}.trace"
            path.write_bytes(text.encode("utf-8", "surrogatepass"))
            flags = rng.choice([[], [], ["--lenient"], ["--json"], ["--backend", "pure"]])
            signal.setitimer(signal.ITIMER_REAL, 30)
            try:
                code = main(["replay", *flags, str(path)])
            except _Hang:
                pytest.fail(f"input {n} ran past 30 s:\n{text}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            _, err = capsys.readouterr()
            assert code in (0, 1, 2) and "Traceback" not in err, f"input {n}: {code}\n{err}\n{text}"
            if code == 1:
                assert err.count("\n") == 1 and err.startswith("rig replay: "), err
            codes[code] = codes.get(code, 0) + 1
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert codes.get(1, 0) > 50 and codes.get(0, 0) + codes.get(2, 0) > 50, codes
