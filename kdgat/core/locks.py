"""File locks (``flock``) that say what to do where the file system has none.

Lustre mounted without ``flock`` support (and some NFS setups) answer ``flock`` with "function not
implemented" or "no locks available"; the tracking store and the lake would fail with a bare OSError
in every task of a campaign. Here that becomes one line naming the file and the way out.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from kdgat.core.atomic import ensure_folder, removed_if_failed
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


WRITER_LOCK = ".kdgat.lock"  # in a folder a command writes in place (a training run, a campaign)


@contextmanager
def writing(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder`` for this process while it writes in it: a second kdgat writing the same folder at the same
    time is refused at once, naming the first (two trainings into one run folder interleaved their epoch logs, or one
    deleted the other's checkpoints; a second `kdgat pipeline` on a campaign took the first one's running step for an
    interrupted one and trained over it). The kernel's lock on a hidden file, so a killed writer holds nothing; on a
    file system without locks the command goes on unguarded. Creates ``folder``; a first run that fails leaves none.
    """
    folder = Path(folder)
    with removed_if_failed(folder):
        ensure_folder(folder)
        path = folder / WRITER_LOCK
        created = not path.exists()
        try:
            handle = open(path, "a+", encoding="utf-8")
        except PermissionError:  # another user's lock file in a folder both may write: held read-only, unsigned
            handle = open(path, encoding="utf-8")
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another kdgat process"
                raise KdgatError(
                    f"{folder}: {holder} is writing in this folder now; wait for it to end, or give another folder"
                ) from None
            except OSError as exc:
                if exc.errno not in _NO_LOCKS | {errno.EINVAL, errno.EBADF}:  # EINVAL: FUSE, CIFS; EBADF: NFS read-only
                    raise
            if handle.writable():
                handle.seek(0)
                handle.truncate()
                handle.write(f"`kdgat {command}` (pid {os.getpid()} on {socket.gethostname()})\n")
                handle.flush()
            try:
                yield
            except BaseException:
                if created and [p.name for p in folder.iterdir()] == [WRITER_LOCK]:
                    path.unlink(missing_ok=True)  # so that a folder this run made goes with it
                raise
