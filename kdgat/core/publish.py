"""A stage's files written aside and put in place as one step, manifest last.

A stage that runs again into the folder of a finished output (another config, new captures) writes its files into
a hidden staging folder there, and only when every one is done: the old manifest goes, each file replaces its
namesake, the files the earlier run listed and this one does not write go, and the new manifest comes last, with
stop signals held. So a re-run that is refused, fails or is stopped leaves the finished output whole, manifest and
all ("the earlier output in its folder is as it was"); a first run that fails leaves no folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdgat.core.atomic import fsync_tree, publish_files, removed_if_failed, staging_area
from kdgat.core.manifest import Manifest, begin_output, read_manifest, write_manifest
from kdgat.core.signals import uninterrupted


@contextmanager
def staged_output(out_dir: Path, stage: str) -> Iterator[Path]:
    """The folder to write this run's files in (relative paths as in ``out_dir``); always removed at the end."""
    with removed_if_failed(out_dir), staging_area(out_dir, stage) as staging:
        yield staging


def publish_output(staging: Path, out_dir: Path, *, outputs: list[dict[str, Any]], **manifest: Any) -> Manifest:
    """Move the files ``outputs`` names from ``staging`` into ``out_dir`` and write the manifest (``manifest``: the
    other fields of :func:`~kdgat.core.manifest.write_manifest`). Only renames are left when signals are held."""
    previous = read_manifest(out_dir)
    paths = [entry["path"] for entry in outputs]
    fsync_tree(staging)
    with uninterrupted():
        begin_output(out_dir)  # from here on the folder changes: no manifest vouches for it until the new one
        publish_files(staging, out_dir, paths)
        remove_unlisted(out_dir, previous, set(paths))
        return write_manifest(out_dir, outputs=outputs, **manifest)


def remove_unlisted(out_dir: Path, previous: Manifest | None, current: set[str]) -> None:
    """Drop the files an earlier run listed that this run does not write (an old scores file, another model kind's
    weights), and the folders they leave empty; never anything outside ``out_dir``."""
    root = out_dir.resolve()
    for item in previous.outputs if previous else []:
        if item.path in current:
            continue
        stale = (out_dir / item.path).resolve()
        if root in stale.parents and stale.is_file():
            stale.unlink()
            for parent in stale.parents:
                if parent == root or any(parent.iterdir()):
                    break
                parent.rmdir()
