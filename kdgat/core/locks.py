"""File locks (``flock``) that say what to do where the file system has none.

Lustre mounted without ``flock`` support (and some NFS setups) answer ``flock`` with "function not
implemented" or "no locks available"; the tracking store and the lake would fail with a bare OSError
in every task of a campaign. Here that becomes one line naming the file and the way out.
"""

from __future__ import annotations

import errno
import fcntl
from typing import IO

from kdgat.core.errors import KdgatError

_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP}


def flock(handle: IO, operation: int, *, hint: str) -> None:
    """``fcntl.flock(handle, operation)``; BlockingIOError passes through (a held lock, for LOCK_NB callers)."""
    try:
        fcntl.flock(handle, operation)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        raise KdgatError(f"{handle.name}: this file system has no file locks ({exc.strerror}); {hint}") from None
