"""One errno table for the whole rig, and the exit codes of the ``rig`` command.

The core returns negative errno values, exactly like the QEMU and Linux functions it
mirrors, so that a path hardened here ports back to C unchanged; the rig never turns them
into exceptions.  Traces spell them by name (``-ENOSPC``), from ``ERRNO_NAMES``.
"""

from __future__ import annotations

import errno as _errno

EPERM = _errno.EPERM
ENOENT = _errno.ENOENT
EINTR = _errno.EINTR
EIO = _errno.EIO
EAGAIN = _errno.EAGAIN
ENOMEM = _errno.ENOMEM
EFAULT = _errno.EFAULT
EBUSY = _errno.EBUSY
EEXIST = _errno.EEXIST
EINVAL = _errno.EINVAL
ENOSPC = _errno.ENOSPC
EOVERFLOW = _errno.EOVERFLOW


#: Exit codes, the same for every ``rig`` subcommand: 0 ok, 1 usage or input error, 2 a
#: finding (a violation, a VM stop a trace does not expect, a core mismatch), 3 an
#: internal error of the rig itself (including a run that could not do its job), 130
#: interrupted.
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_FINDING = 2
EXIT_INTERNAL = 3
#: Interrupted (SIGINT, Ctrl-C): 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad flags or input: printed as one line by the CLI, exit 1."""


#: How the signature of an exception that is a bug of the rig itself begins (its
#: ``signature`` attribute, rig.drive.base.exception_signature): a campaign reports such
#: an input as an infrastructure failure (exit 3), never as a finding about the design.
RIG_BUG = "rig bug: "


#: Errno names as the trace format spells them (``ENOSPC``), and back.
ERRNO_NAMES: dict[int, str] = {
    number: name for name, number in (
        ("EPERM", EPERM), ("ENOENT", ENOENT), ("EINTR", EINTR), ("EIO", EIO),
        ("EAGAIN", EAGAIN), ("ENOMEM", ENOMEM), ("EFAULT", EFAULT), ("EBUSY", EBUSY),
        ("EEXIST", EEXIST), ("EINVAL", EINVAL), ("ENOSPC", ENOSPC), ("EOVERFLOW", EOVERFLOW),
    )
}
ERRNO_BY_NAME: dict[str, int] = {name: number for number, name in ERRNO_NAMES.items()}


def errno_name(ret: int) -> str:
    """``-28`` -> ``"ENOSPC"``; unknown values print as a number."""
    return ERRNO_NAMES.get(-ret, str(ret))
