"""docs/your-design.md is run from the document itself: its code blocks, in order, in an
empty directory.  A ``python`` block whose first line is ``# FILE.py`` is written to
FILE.py; every line of a ``sh`` block is a command run with bash there (``# exits N`` at
the end of a line: it must exit N, else 0).  The walkthrough's design is a copy of
qemu-10.1 under another name, so the campaign it runs must report a real finding."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "your-design.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
EXITS = re.compile(r"\s+# exits (\d+)$")


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def steps(text: str) -> list[tuple[str, str, int | None]]:
    """("file", NAME, content) and ("sh", COMMAND, expected exit), in document order."""
    out = []
    for lang, body in blocks(text):
        if lang == "python":
            first = body.splitlines()[0]
            assert re.fullmatch(r"# [\w.-]+\.py", first), f"python block without a file: {first}"
            out.append(("file", first[2:], body))
        elif lang == "sh":
            for line in body.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    m = EXITS.search(line)
                    out.append(("sh", line[:m.start()] if m else line,
                                int(m.group(1)) if m else 0))
    return out


def test_the_document_has_a_walkthrough():
    kinds = [s[0] for s in steps(DOC.read_text())]
    assert kinds.count("file") >= 2 and kinds.count("sh") >= 6
    assert kinds[0] == "file", "the design is written before any command uses it"


def test_a_lying_block_fails_the_walk(tmp_path):
    """The walk checks exit codes: a command that does not exit as the document says is
    caught (the walk can fail)."""
    bad = steps("```sh\nfalse   # exits 0\n```\n")
    assert bad == [("sh", "false", 0)]
    proc = subprocess.run(["bash", "-c", bad[0][1]], cwd=tmp_path)
    assert proc.returncode != bad[0][2]


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIG_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    assert shutil.which("rig", path=env["PATH"]), "the rig command is not installed"
    log = []
    fuzz_output = None
    for kind, what, content in steps(DOC.read_text()):
        if kind == "file":
            (tmp_path / what).write_text(content)
            log.append(f"wrote {what}")
            continue
        proc = subprocess.run(["bash", "-c", what], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        log.append(f"$ {what}\n  exit {proc.returncode}\n{proc.stdout[-1500:]}"
                   f"{proc.stderr[-1500:]}")
        assert proc.returncode == content, "\n".join(log)
        if what.startswith("rig fuzz"):
            fuzz_output = proc.stdout + proc.stderr
        if content == 1:
            assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
                "\n".join(log)
    # The campaign reported qemu-10.1's populate-failure findings on the copy, with a
    # replay command that works as printed.
    assert fuzz_output is not None
    assert re.search(r"finding \[convert_explicit:my-qemu\] crash: violation "
                     r"(shared-unmapped|stale-mapping|attr-agree|atomic-failure)", fuzz_output)
    replay = re.search(r"replay: (rig replay --load \./mydesign\.py:MyQemu \S+\.trace)",
                       fuzz_output)
    assert replay, fuzz_output[-3000:]
    written = list((tmp_path / "regressions").glob("*-my-qemu-*.trace"))
    assert len(written) == 1 and "# expect: ok" in written[0].read_text()
