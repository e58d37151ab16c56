"""The pieces of ``rig ... --help`` that every subcommand shares: the exit-code table
(from rig.errors, the one place the codes are defined), the examples block, and the
lists of names an option takes (read from the registries, so a new design or harness
shows in the help with no edit here).

Help text is plain text: argparse prints it as it is (``RawDescriptionHelpFormatter``
keeps the epilog's lines), so no reStructuredText markup goes in it.
"""

from __future__ import annotations

import argparse
import textwrap

from rig.errors import EXIT_FINDING, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

#: What a core backend option takes, and what each is.
BACKENDS = ("cy", "pure")
BACKEND_HELP = "core backend: cy (the Cython core, the default) or pure (its pure-Python twin)"
IOMMUS = ("type1", "iommufd")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks; option help is wrapped, never
    inside a name (``rdm-rollback``)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _expand_help(self, action) -> str:
        text = super()._expand_help(action)
        names = getattr(action, "names", None)
        return f"{text}: {one_of(names())}" if names is not None else text


def listed(action: argparse.Action, names) -> argparse.Action:
    """The help of ``action`` ends with ``one of: ...``, the names ``names()`` gives when
    the help is printed (a list read from files, which no other command needs)."""
    action.names = names
    return action


def epilog(examples: list[tuple[str, str]], ok: str = "done",
           finding: str | None = None) -> str:
    """The exit codes (``ok``: what 0 means for this command; ``finding``: what 2 means,
    None if the command never returns it) and the examples, each a command line and
    what it does."""
    lines = ["exit codes:",
             f"  {EXIT_OK:<4} {ok}",
             f"  {EXIT_USAGE:<4} usage or input error: one line on stderr naming the file, "
             "line and field",
             f"  {EXIT_FINDING:<4} {finding or 'not returned by this command'}",
             f"  {EXIT_INTERNAL:<4} internal error of the rig itself (a bug to report)",
             f"  {EXIT_INTERRUPTED:<4} interrupted (Ctrl-C)",
             "",
             "examples:"]
    for command, what in examples:
        lines.append(f"  {command}")
        lines += textwrap.wrap(what, 84, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def one_of(names) -> str:
    return "one of: " + ", ".join(names)


def design_names() -> list[str]:
    from rig.world.designs import DESIGNS

    return list(DESIGNS)


def harness_names() -> list[str]:
    from rig.drive.harnesses import HARNESSES

    return list(HARNESSES)
