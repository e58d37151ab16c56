"""The `rig` command keeps the conventions of command-line tools: output cut short by a
closed pipe ends it quietly (SIGPIPE's default action), Ctrl-C is exit 130 with one line,
and `--help` helps: every subcommand and option described, the names an enumeration
takes shown, no markup, and an epilog per subcommand with the exit codes and two
examples."""

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rig import errors
from rig.cli import listing
from rig.cli.main import build_parser, main
from rig.drive.harnesses import HARNESSES
from rig.trace.corpus import scenarios
from rig.world.designs import DESIGNS

ROOT = Path(__file__).resolve().parents[1]
REGRESSION = ROOT / "corpora" / "regressions" / "ok-hardened-7d9d8015.trace"
CODES = (errors.EXIT_OK, errors.EXIT_USAGE, errors.EXIT_FINDING, errors.EXIT_INTERNAL,
         errors.EXIT_INTERRUPTED)


def _rig_command(*args):
    return [sys.executable, "-u", "-m", "rig.cli.main", *args]


# -- SIGPIPE and SIGINT -------------------------------------------------------------------

@pytest.mark.parametrize("args", [["designs"], ["list"], ["replay", str(REGRESSION)],
                                  ["--help"]],
                         ids=["designs", "list", "replay", "help"])
def test_a_closed_pipe_ends_the_command_quietly(args):
    """`rig designs | head`: the reader is gone before the rig writes.  The rig dies of
    SIGPIPE as any tool does (or had finished): no traceback, never exit 3."""
    proc = subprocess.Popen(_rig_command(*args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    code = proc.wait(timeout=300)
    assert err == "", err[-2000:]
    assert code in (0, -signal.SIGPIPE), code


def test_ctrl_c_exits_130_with_one_line():
    """SIGINT outside the campaign (which handles its own): exit 130, one line on
    stderr, no traceback (it used to be exit 3, "internal error")."""
    proc = subprocess.Popen(_rig_command("selftest", "--ops", "200000"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()  # it is running: the banner is out
    assert first.startswith("selftest: seed=0"), first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == errors.EXIT_INTERRUPTED == 130
    lines = [line for line in err.splitlines() if not line.startswith("selftest: Cython core")]
    assert lines == ["rig selftest: interrupted"], err


def test_keyboard_interrupt_in_any_command_is_130(monkeypatch, capsys):
    def interrupted(sections):
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "registries", interrupted)
    assert main(["list"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == "rig list: interrupted\n"


# -- help ---------------------------------------------------------------------------------

def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _walk(parser, path=("rig",)):
    """(command path, parser) of the top level and every subcommand, nested ones too."""
    yield path, parser
    sub = _subparsers(parser)
    if sub is not None:
        for name, child in sub.choices.items():
            yield from _walk(child, path + (name,))


PARSERS = list(_walk(build_parser()))
COMMANDS = [p for p in PARSERS if len(p[0]) > 1]

#: Options whose value is one of a fixed list: shown as argparse choices, or every value
#: named in the help (a registry that also takes a spec or NAME:DESIGN).
ENUMERATIONS = {
    "backend": ("cy", "pure"),
    "iommu": ("type1", "iommufd"),
    "design": tuple(DESIGNS),
    "designs": tuple(DESIGNS),
    "harness": tuple(HARNESSES),
    "scenario": tuple(scenarios()),
    "section": listing.SECTIONS,
}
#: Options whose values are argparse choices, whatever they are.
CHOICES = ("native",)
MARKUP = re.compile(r"``|:[a-z]+:`|`[^`\s]+`_")


def _name(path) -> str:
    return " ".join(path)


@pytest.mark.parametrize("path,parser", PARSERS, ids=[_name(p) for p, _ in PARSERS])
def test_every_option_has_help_and_enumerations_show_their_values(path, parser):
    missing, blind = [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(label)
        if action.dest in CHOICES and not action.choices:
            blind.append(f"{label} (no choices)")
        values = ENUMERATIONS.get(action.dest)
        if values is not None:
            text = parser._get_formatter()._expand_help(action) if action.help else ""
            shown = set(action.choices or ()) | set(re.findall(r"[\w.:-]+", text))
            if not set(values) <= shown:
                blind.append(f"{label} (not shown: {', '.join(sorted(set(values) - shown))})")
    assert not missing, f"{_name(path)}: options without help: {', '.join(missing)}"
    assert not blind, f"{_name(path)}: enumerations that hide their values: {', '.join(blind)}"


@pytest.mark.parametrize("path,parser", PARSERS, ids=[_name(p) for p, _ in PARSERS])
def test_help_has_no_markup_and_ends_with_exit_codes_and_examples(path, parser):
    text = parser.format_help()
    assert not MARKUP.search(text), f"{_name(path)}: markup in --help: {MARKUP.search(text)}"
    assert parser.description, f"{_name(path)}: no description"
    assert isinstance(parser.formatter_class, type) and issubclass(
        parser.formatter_class, argparse.RawDescriptionHelpFormatter), \
        f"{_name(path)}: the epilog's lines would be re-wrapped"
    epilog = parser.epilog or ""
    assert "exit codes:" in epilog, f"{_name(path)}: no exit codes in the epilog"
    table = epilog.split("exit codes:", 1)[1].split("examples:", 1)[0]
    codes = [int(line.split()[0]) for line in table.splitlines() if line.strip()]
    assert codes == list(CODES), f"{_name(path)}: exit codes {codes}, not {list(CODES)}"
    examples = epilog.split("examples:", 1)[1] if "examples:" in epilog else ""
    runs = [line.strip() for line in examples.splitlines()
            if line.startswith("  rig ") and not line.startswith("   ")]
    prefix = _name(path) if len(path) > 1 else "rig"
    assert len(runs) >= 2 and all(r.startswith(prefix) for r in runs), \
        f"{_name(path)}: examples {runs}: two or more `{prefix} ...` lines expected"
    assert epilog in text  # printed as written


def test_rig_help_lists_every_subcommand_with_a_summary():
    parser = build_parser()
    text = parser.format_help()
    sub = _subparsers(parser)
    summaries = {a.dest: a.help for a in sub._choices_actions}
    assert set(summaries) == set(sub.choices)
    for name, summary in summaries.items():
        assert summary, f"rig {name}: no summary for rig --help"
        first = " ".join(summary.split())[:30]
        assert re.search(rf"^\s+{re.escape(name)}\s+", text, re.M), f"{name} not in rig --help"
        assert first.split()[0] in text


def test_help_exits_0_and_bad_flags_exit_1(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--backend", "nope", "x.trace"])
    assert exc.value.code == errors.EXIT_USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_1(capsys):
    assert main([]) == errors.EXIT_USAGE
    assert "commands:" in capsys.readouterr().out


def test_run_as_the_command_sigpipe_takes_its_default_action(monkeypatch, capsys):
    """main() with no argv is the command (the console script, python -m rig.cli.main):
    it restores SIGPIPE's default; a caller that passes argv keeps its own handling."""
    before = signal.getsignal(signal.SIGPIPE)
    try:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        assert main(["list", "ops"]) == 0
        assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
        monkeypatch.setattr(sys, "argv", ["rig", "list", "ops"])
        assert main() == 0
        assert signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGPIPE, before)
    capsys.readouterr()
