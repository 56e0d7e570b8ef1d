"""Atomic files and folders: the one way every stage writes, so a crash never leaves half an output.

- :func:`atomic_path` / :func:`atomic_write_text` / :func:`atomic_write_bytes`: a file is written
  under a unique hidden name beside its target, fsynced, renamed over the target, and the folder
  entry fsynced. Readers see the old file or the new one, never a mix.
- :func:`staged_folder`: a whole folder is built under a unique hidden name beside its target, every
  file in it fsynced, and swapped in with renames (the previous folder is removed only once the new
  one is in place).
- :func:`clean_stale`: temporary names carry the writer's host and pid
  (``.tmp-<host>-<pid>-<rand>.<name>``, ``.staging-...``, ``.old-...``), so the next run into a
  folder removes what a killed writer left there, and never what a live one is still writing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kdgat.core.errors import KdgatError

_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
_LEFTOVER = re.compile(r"^\.(tmp|staging|old)-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[0-9a-f]{8}\.")
STALE_AFTER_S = 24 * 3600.0  # a leftover of another host is removed once it is this old


def temporary_name(kind: str, name: str) -> str:
    """``.<kind>-<host>-<pid>-<rand>.<name>``: unique, hidden, and traceable to its writer."""
    return f".{kind}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.{name}"


def ensure_folder(path: str | Path) -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it.

    Every output-path problem becomes one :class:`KdgatError` line before any work is done: a file
    where a folder should be, a read-only place, a path that cannot be created.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise KdgatError(f"{path}: exists and is not a folder; give a folder for the output") from None
    except OSError as exc:
        raise KdgatError(f"{path}: cannot create the output folder: {_why_not(path, exc)}") from None
    _probe(path, f"{path}: cannot write in the output folder")
    return path


def check_output_folder(path: str | Path) -> Path:
    """:func:`ensure_folder`'s checks without creating anything: a stage says what is wrong with its output
    path before any work, and a command that then fails on its inputs leaves no empty folder behind."""
    path = Path(path)
    if path.is_dir():
        _probe(path, f"{path}: cannot write in the output folder")
    elif path.exists() or path.is_symlink():  # a file, or a link to nothing (mkdir would fail on it)
        raise KdgatError(f"{path}: exists and is not a folder; give a folder for the output")
    else:
        blocker = _file_on_the_way(path)
        if blocker is not None:
            raise KdgatError(f"{path}: cannot create the output folder: {blocker} is not a folder (it is a file)")
        nearest = next(p for p in path.parents if p.exists())  # the folder it would be created in
        _probe(nearest, f"{path}: cannot create the output folder")
    return path


@contextmanager
def removed_if_failed(path: str | Path) -> Iterator[None]:
    """On an exception, remove ``path`` and the parents created with it, where they are empty: a stage that
    must create its output folder before it can check its inputs leaves no empty folder behind when they fail."""
    path = Path(path)
    new = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        yield
    except BaseException:
        for folder in new:
            if not folder.exists():  # never made (the output itself, where the stage swaps it in at the end)
                continue
            try:
                folder.rmdir()  # only an empty folder
            except OSError:
                break
        raise


def _file_on_the_way(path: Path) -> Path | None:
    """A parent of ``path`` that is a file, which no folder can be created under."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def _why_not(path: Path, exc: OSError) -> str:
    blocker = _file_on_the_way(path)
    return f"{blocker} is not a folder (it is a file)" if blocker else (exc.strerror or str(exc)).lower()


def _probe(folder: Path, said: str) -> None:
    """Write and remove a hidden file in ``folder``: one error line (``said: why``) where that fails."""
    probe = folder / temporary_name("tmp", "probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise KdgatError(f"{said}: {(exc.strerror or str(exc)).lower()}") from None


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            _fsync_file(Path(folder) / name)
        fsync_dir(Path(folder))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` on success.

    The temporary name ends with the target's name, so writers that add a suffix when it is
    missing (``np.savez``) keep it. On an exception the temporary file is removed.
    """
    path = Path(path)
    ensure_folder(path.parent)
    tmp = path.parent / temporary_name("tmp", path.name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def staged_folder(final: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``final`` when the block ends without error.

    An existing ``final`` is renamed aside first and removed only after the new folder is in
    place; on an exception the staging folder is removed and ``final`` is untouched. ``fsync``
    False skips flushing the files, for folders built inside another staged folder (which
    flushes them all once).
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise KdgatError(f"{final}: exists and is not a folder; give a folder for the output")
    ensure_folder(final.parent)
    staging = final.parent / temporary_name("staging", final.name)
    staging.mkdir()
    old = None
    try:
        yield staging
        if fsync:
            fsync_tree(staging)
        if final.exists() or final.is_symlink():
            old = final.parent / temporary_name("old", final.name)
            os.replace(final, old)
        os.replace(staging, final)
        if fsync:
            fsync_dir(final.parent)
        if old is not None:
            _remove(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and old.exists() and not (final.exists() or final.is_symlink()):
            os.replace(old, final)  # stopped between the two renames: the earlier folder goes back
        raise


@contextmanager
def staging_area(folder: str | Path, name: str) -> Iterator[Path]:
    """A hidden scratch folder inside ``folder`` for files that :func:`publish_files` moves out; always removed."""
    folder = ensure_folder(folder)
    staging = folder / temporary_name("staging", name)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_files(staging: Path, folder: Path, relative_paths: list[str]) -> None:
    """Move finished files from ``staging`` to the same relative paths in ``folder``, durably: the caller has
    flushed them (:func:`fsync_tree`) first, so that renames alone are left, which a held stop signal waits for.

    Each file replaces its target with one rename, so a reader never sees a partial file.
    """
    touched = set()
    for relative in relative_paths:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / relative, target)
        touched.add(target.parent)
    for parent in touched:
        fsync_dir(parent)


def _writer_alive(host: str, pid: int) -> bool | None:
    """True/False for a writer on this host; None when it ran elsewhere (cannot tell)."""
    if host != _HOST:
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: str | Path, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files and folders that dead writers left in ``folder``; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for entry in folder.iterdir():
        match = _LEFTOVER.match(entry.name)
        if match is None:
            continue
        alive = _writer_alive(match["host"], int(match["pid"]))
        if alive is None:
            try:
                alive = now - entry.lstat().st_mtime < STALE_AFTER_S
            except FileNotFoundError:
                continue
        if not alive:
            target = folder / entry.name[match.end() :]
            if match.group(1) == "old" and not (target.exists() or target.is_symlink()):
                # killed between moving the earlier output aside and moving the new one in: the earlier one is
                # the only complete output there is, so it goes back instead of away
                os.replace(entry, target)
                continue
            _remove(entry)
            removed.append(entry)
    return removed
