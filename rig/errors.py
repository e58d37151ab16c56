"""One errno table for the whole rig (uvloop's single-table pattern).

The core returns negative errno values, exactly like the QEMU and Linux functions it
mirrors, so that a path hardened here ports back to C unchanged.  Python callers that want
exceptions convert at the boundary with :func:`check`, which raises one exception type per
errno, taken from :data:`ERRNO_EXCEPTIONS`.
"""

from __future__ import annotations

import errno as _errno
import os

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
#: internal error of the rig itself (including a run that could not do its job).
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_FINDING = 2
EXIT_INTERNAL = 3


class UsageError(Exception):
    """Bad flags or input: printed as one line by the CLI, exit 1."""


class RigError(Exception):
    """Base class of every error the rig raises for a negative errno."""

    errno = 0

    def __init__(self, message: str = ""):
        super().__init__(message or strerror(self.errno))


def _make(name: str, number: int) -> type[RigError]:
    return type(name, (RigError,), {"errno": number, "__doc__": f"-{name[:-5]}"})


EPERMError = _make("EPERMError", EPERM)
ENOENTError = _make("ENOENTError", ENOENT)
EINTRError = _make("EINTRError", EINTR)
EIOError = _make("EIOError", EIO)
EAGAINError = _make("EAGAINError", EAGAIN)
ENOMEMError = _make("ENOMEMError", ENOMEM)
EFAULTError = _make("EFAULTError", EFAULT)
EBUSYError = _make("EBUSYError", EBUSY)
EEXISTError = _make("EEXISTError", EEXIST)
EINVALError = _make("EINVALError", EINVAL)
ENOSPCError = _make("ENOSPCError", ENOSPC)
EOVERFLOWError = _make("EOVERFLOWError", EOVERFLOW)

#: The one table: errno -> exception type.
ERRNO_EXCEPTIONS: dict[int, type[RigError]] = {
    cls.errno: cls
    for cls in (
        EPERMError, ENOENTError, EINTRError, EIOError, EAGAINError, ENOMEMError,
        EFAULTError, EBUSYError, EEXISTError, EINVALError, ENOSPCError, EOVERFLOWError,
    )
}

#: Errno names as the trace format spells them (``ENOSPC``), and back.
ERRNO_NAMES: dict[int, str] = {number: cls.__name__[:-5] for number, cls in ERRNO_EXCEPTIONS.items()}
ERRNO_BY_NAME: dict[str, int] = {name: number for number, name in ERRNO_NAMES.items()}


def strerror(errnum: int) -> str:
    """``strerror`` that is the same on every machine (no locale)."""
    return os.strerror(errnum) if errnum in ERRNO_NAMES else f"Unknown error {errnum}"


def errno_name(ret: int) -> str:
    """``-28`` -> ``"ENOSPC"``; unknown values print as a number."""
    return ERRNO_NAMES.get(-ret, str(ret))


def check(ret: int, what: str = "") -> int:
    """Return ``ret`` when it is not negative, else raise the table's exception for it."""
    if ret >= 0:
        return ret
    cls = ERRNO_EXCEPTIONS.get(-ret)
    prefix = f"{what}: " if what else ""
    if cls is None:
        raise RigError(f"{prefix}{strerror(-ret)} ({ret})")
    raise cls(f"{prefix}{errno_name(ret)}: {strerror(-ret)}")
