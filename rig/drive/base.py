"""What every fuzz harness is: the ``Harness`` base, the ``Finding`` it raises, and the
signature a campaign uses to tell one finding from another.  Harness definitions
(rig.drive.harnesses, rig.drive.stateful) import this module; nothing here imports them.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from contextlib import contextmanager
from dataclasses import dataclass

from rig.trace.format import Trace, serialize

#: The design world harnesses use unless the caller picks one (RIG_FUZZ_DESIGN, --design,
#: NAME:DESIGN).  Never decoded from the input: a standalone fuzz/ script or a
#: ClusterFuzzLite bundle would otherwise report the known bugs of the known-bad designs
#: on its first inputs, and `rig replay --harness convert` would need the same rule.
DEFAULT_DESIGN = "hardened"


class Finding(AssertionError):
    """A harness found a broken invariant (or, for the canary, what it plants).
    ``signature`` names the kind of finding ("violation stale-mapping"): a campaign
    tells its harnesses which signatures it already has, so they stop re-reporting."""

    def __init__(self, harness: str, summary: str, trace: Trace | None = None,
                 signature: str | None = None):
        super().__init__(f"[{harness}] {summary}")
        self.harness = harness
        self.summary = summary
        self.trace = trace
        self.signature = signature or summary


def _known_signatures() -> frozenset:
    """Signatures the running campaign already has (RIG_FUZZ_KNOWN: a file, one a line)."""
    path = os.environ.get("RIG_FUZZ_KNOWN")
    if not path or not os.path.exists(path):
        return frozenset()
    with open(path, encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip())


#: What the campaign (rig.drive.campaign) told this process it already has: the
#: signatures of the regression corpus for this harness' design (or the core traces, for
#: a core harness) and of the campaign's earlier findings.  Every harness skips an input
#: whose finding has one of them (``is_known``) instead of crashing on it again.
KNOWN = _known_signatures()
#: The signatures this process skipped, each written once to RIG_FUZZ_SEEN (a file the
#: campaign names, appended to) so that its summary can say which known findings its
#: harnesses ran into.
_SEEN: set = set()


def is_known(signature: str) -> bool:
    """Whether the campaign already has ``signature``; a known one is noted as seen."""
    if signature not in KNOWN:
        return False
    if signature not in _SEEN:
        _SEEN.add(signature)
        path = os.environ.get("RIG_FUZZ_SEEN")
        if path:
            # One short O_APPEND write per signature: the workers of a harness share the
            # file, and such a write is not interleaved with theirs.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{signature}\n".encode())
            finally:
                os.close(fd)
    return True


def exception_signature(exc: BaseException) -> str:
    """The signature of what a harness raised: its own ``signature`` when it has one (a
    Finding: "violation stale-mapping in ..."; a core DifferentialMismatch: "core
    mismatch order in state_change", never the op index or arguments), else the
    exception type and the first line of its message (a bug of the rig)."""
    signature = getattr(exc, "signature", None)
    if isinstance(signature, str) and signature:
        return signature
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:80] if lines else ''}"


@contextmanager
def skipping_known():
    """Run a harness input; an exception whose signature the campaign already has is
    swallowed (the input is then uninteresting), any other goes on to libFuzzer."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless known
        if not is_known(exception_signature(exc)):
            raise


def violation_signature(outcome, steps) -> str:
    """"violation shared-unmapped in kvm_convert_memory after vfio.dma_map": the invariant,
    the op kind that broke it and the sites that fired there.  Fine enough that one known
    bug does not mask another with the same invariant, coarse enough that a campaign does
    not report the same bug once per input."""
    signature = f"violation {outcome.invariant}"
    if steps and outcome.op_index is not None and outcome.op_index < len(steps):
        step = steps[outcome.op_index]
        sites = sorted({fault.site for fault in step.faults})
        signature += f" in {step.op.name}" + (f" after {'+'.join(sites)}" if sites else "")
    return signature


def report_violation(harness: str, outcome, trace, steps=None) -> None:
    """Raise a Finding for a violation outcome, unless the campaign already has it."""
    if outcome.kind != "violation":
        return
    signature = violation_signature(outcome, steps)
    if is_known(signature):
        return
    raise Finding(harness, f"{signature} at op {outcome.op_index}: {outcome.detail}", trace,
                  signature)


#: What a harness' inputs run on, and so what its findings are.
KINDS = {
    "world": "a whole World: every input is a world trace (rig replay, rig minimize)",
    "core": "the core alone: the Cython core, its twin and the reference model in lockstep",
    "canary": "fails on purpose, to prove failures are reported: never shipped, and "
              "`rig fuzz --smoke` fails if it does not crash",
}


@dataclass(frozen=True)
class Harness:
    """One entry of the registry (rig.drive.harnesses.HARNESSES), declared once: the
    campaign's default list (``in_default``), the world harnesses (``kind``), the
    canaries, the shipped fuzzers and the generated fuzz/<name>.py are derived from it.

    ``doc`` is the generated fuzz/<name>.py's docstring: a summary (its first
    paragraph, which ``rig list`` prints), then what it covers, what it does not and
    which known bugs it masks."""

    name: str
    kind: str          # KINDS
    in_default: bool   # in the default `rig fuzz` campaign
    doc: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"harness {self.name!r}: kind {self.kind!r} is not one of "
                             f"{', '.join(KINDS)}")
        object.__setattr__(self, "doc", inspect.cleandoc(self.doc))

    @property
    def base(self) -> str:
        """The registry name, without a fixed design (``convert:qemu-10.1`` -> convert)."""
        return self.name.split(":")[0]

    @property
    def script(self) -> str:
        """fuzz/<script>.py, the generated atheris script (rig.drive.target)."""
        return self.base

    @property
    def expect_crash(self) -> bool:
        return self.kind == "canary"

    @property
    def summary(self) -> str:
        """The first paragraph of ``doc``, on one line."""
        return " ".join(self.doc.split("\n\n")[0].split())

    def one_input(self, data: bytes) -> None:
        raise NotImplementedError

    def to_trace(self, data: bytes) -> Trace | None:
        """The input as a trace, for reports and minimization (None: not a world run)."""
        return None

    def explain(self, data: bytes) -> list[str]:
        """The input in text, for harnesses that do not decode to a trace."""
        trace = self.to_trace(data)
        return serialize(trace).splitlines() if trace is not None else [repr(data[:64])]

    def seeds(self) -> list[bytes]:
        """Deterministic seed inputs for an empty corpus."""
        return [hashlib.sha256(f"{self.name}/{i}".encode()).digest() * (1 + i % 4)
                for i in range(8)]

    def for_design(self, design: str | None) -> "Harness":
        return self
