"""Harness trace_text: trace text, mutated at the op level.

Covers: the trace parser in lenient mode, and op sequences derived from the known
findings in corpora/regressions/ (insert, delete, swap, duplicate ops; change a size or
an offset; toggle a fault property or an interleaving), replayed against the target
design (RIG_FUZZ_DESIGN, else hardened) whatever the header says.

Does not cover: strict-mode parse errors (the parser's own tests do).

Masks: inputs that do not parse are dropped, so byte-level mutations mostly go to waste;
the custom mutator keeps inputs parseable.
"""

import os

import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("trace_text", os.environ.get("RIG_FUZZ_DESIGN") or None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput,
                  custom_mutator=HARNESS.mutate)
    atheris.Fuzz()
