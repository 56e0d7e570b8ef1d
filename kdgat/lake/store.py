"""The lake on disk: one directory per committed run, compacted into one file per table.

Layout under the lake root::

    lake.json                      schema version + fingerprint (checked on every open)
    parts/<run_id>@<stamp>/        one commit of one run: <table>.parquet for each table it has rows in
    parts/.staging-<writer>.<name>  a commit being written (hidden, never read; kdgat.core.atomic)
    tables/<stamp>/<table>.parquet the compacted generation the views read
    analytics.duckdb               views only (kdgat.lake.views)

Writers never share a file (pitfall 10): a commit is written into a staging
directory and made visible by one atomic ``rename``, so a writer killed half
way leaves only a hidden staging directory (removed by the next build), and eight appenders at once
never touch each other's files. Stamps sort by time, so when a run is appended
again the newest commit wins at compaction and rows are replaced, never
duplicated. Compaction (one builder at a time, under ``flock``) merges new
commits into a new generation of one file per table (pitfall 11) and deletes
only the commits it read.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kdgat.core.atomic import atomic_write_text, clean_stale, ensure_folder, staged_folder
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.locks import flock
from kdgat.core.manifest import refuse_other_output
from kdgat.lake.schema import OWNER, SCHEMA_VERSION, TABLES, UNIQUE_KEY, check_schema, empty, fingerprint

LAKE_FILE = "lake.json"
PARTS = "parts"
GENERATIONS = "tables"
COMMITS = "_commits"  # per generation: which commit (stamp) of each run it holds
PAUSE_ENV = "KDGAT_LAKE_TEST_PAUSE"


def new_stamp() -> str:
    """Sortable by time, unique across processes and hosts."""
    return f"{time.time_ns():020d}-{os.getpid():07d}-{secrets.token_hex(3)}"


def _pause(point: str) -> None:
    """Test hook: ``KDGAT_LAKE_TEST_PAUSE=<point>:<flag file>`` stops a writer here so a test can kill it."""
    name, _, flag = os.environ.get(PAUSE_ENV, "").partition(":")
    if name == point and flag:
        Path(flag).touch()
        time.sleep(600)


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)


# --------------------------------------------------------------------------- the lake root


def refuse_non_lake(lake_dir: Path) -> None:
    """Before any work: a lake is written into an absent or empty folder, or a lake; never into a folder that
    holds something else (a graph store, a run), whose own manifest or files it would change."""
    refuse_other_output(lake_dir, "lake", option="--lake")
    if lake_dir.is_dir() and not (lake_dir / LAKE_FILE).is_file() and any(lake_dir.iterdir()):
        raise UsageError(f"--lake {lake_dir}: exists, is not empty and is not a kdgat lake (no {LAKE_FILE}); give "
                         "an empty or new folder")  # fmt: skip


def open_lake(lake_dir: Path, create: bool) -> Path:
    """The lake root, checked against this kdgat's schema (created when ``create`` and absent, and then checked
    writable)."""
    lake_dir = Path(lake_dir)
    meta_path = lake_dir / LAKE_FILE
    expected = {"format": "kdgat-lake", "schema_version": SCHEMA_VERSION, "fingerprint": fingerprint()}
    if not meta_path.is_file():
        if not create:
            raise KdgatError(f"{lake_dir}: not a kdgat lake (no {LAKE_FILE}); fill it with `kdgat lake append`")
        ensure_folder(lake_dir / PARTS)
        atomic_write_text(meta_path, json.dumps(expected, indent=2) + "\n")  # same content from every writer
        return lake_dir
    try:
        found = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSON or UTF-8 decoding
        raise KdgatError(f"{meta_path}: unreadable: {str(exc).splitlines()[0]}") from None
    if not isinstance(found, dict):
        raise KdgatError(f"{meta_path}: not a lake's description (a JSON {type(found).__name__}, not an object)")
    if found.get("schema_version") != SCHEMA_VERSION or found.get("fingerprint") != expected["fingerprint"]:
        raise KdgatError(
            f"{lake_dir}: written with lake schema v{found.get('schema_version')} "
            f"(fingerprint {found.get('fingerprint')}), this kdgat uses v{SCHEMA_VERSION} "
            f"(fingerprint {expected['fingerprint']}); append the run folders into a new --lake DIR"
        )
    if create:  # an appender writes; a reader of up-to-date views needs no write access (a shared, read-only lake)
        ensure_folder(lake_dir / PARTS)
    return lake_dir


# --------------------------------------------------------------------------- commits


def _publish(target: Path, tables: dict[str, pa.Table], pause: str) -> Path:
    """Write ``tables`` into the new folder ``target``, visible whole or not at all (a staged folder)."""
    with staged_folder(target) as staging:
        for name, table in tables.items():
            _write_parquet(table, staging / f"{name}.parquet")
            _pause(pause)
    return target


def commit_run(lake_dir: Path, run_id: str, tables: dict[str, pa.Table]) -> Path:
    """Write one run's tables as a new commit, made visible atomically; returns the commit directory."""
    stamp = new_stamp()
    name = f"{run_id}@{stamp}"
    return _publish(lake_dir / PARTS / name, tables, "append")


@dataclass(frozen=True)
class Commit:
    run_id: str
    stamp: str
    path: Path


def pending_commits(lake_dir: Path) -> list[Commit]:
    """Visible commits not yet compacted, in stamp order."""
    parts = Path(lake_dir) / PARTS
    if not parts.is_dir():
        return []
    found = []
    for entry in os.scandir(parts):
        if entry.name.startswith(".") or "@" not in entry.name:
            continue
        run_id, _, stamp = entry.name.partition("@")
        found.append(Commit(run_id, stamp, Path(entry.path)))
    return sorted(found, key=lambda c: c.stamp)


# --------------------------------------------------------------------------- generations


def generations(lake_dir: Path) -> list[Path]:
    root = Path(lake_dir) / GENERATIONS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def current_generation(lake_dir: Path) -> Path | None:
    found = generations(lake_dir)
    return found[-1] if found else None


def _read_checked(path: Path, name: str) -> pa.Table:
    try:
        table = pq.ParquetFile(path).read(use_threads=False)  # half the cost of pq.read_table on tiny parts
    except (OSError, pa.ArrowInvalid) as exc:
        raise KdgatError(f"{path}: unreadable Parquet: {exc}; {damaged_hint(path.parent)}") from None
    check_schema(table, name, path)
    return table


def damaged_hint(folder: Path) -> str:
    """The way out of a damaged file in a lake ``folder`` (a commit or a generation of tables): every later query
    reads it, so it stays in the way until removed."""
    if folder.parent.name == PARTS:  # a pending commit of one append
        return f"move {folder} out of the lake and append that run's folders again"
    return f"move {folder} out of the lake (the generation before it is read instead) and append the runs again"


def _load_generation(gen: Path | None) -> tuple[dict[str, pa.Table], dict[str, str]]:
    if gen is None:
        return {name: empty(name) for name in TABLES}, {}
    tables = {name: _read_checked(gen / f"{name}.parquet", name) for name in TABLES}
    commits = pq.read_table(gen / f"{COMMITS}.parquet").to_pydict()
    return tables, dict(zip(commits["run_id"], commits["stamp"], strict=True))


@contextmanager
def build_lock(lake_dir: Path) -> Iterator[None]:
    """One builder at a time per lake (appenders never take it)."""
    with open(Path(lake_dir) / ".build.lock", "a+") as handle:
        flock(handle, fcntl.LOCK_EX, hint="put the lake (--lake) on a file system with file locks")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _keep_latest_per_key(table: pa.Table, key: str, filled: str, order: pa.Array) -> pa.Table:
    """One row per ``key``: of those with ``filled`` not null if any, the one with the largest ``order`` (commit
    stamp)."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__filled", pc.is_valid(table.column(filled)))
    indexed = indexed.append_column("__order", order).append_column("__row", pa.array(range(table.num_rows)))
    ranked = indexed.sort_by([(key, "ascending"), ("__filled", "descending"), ("__order", "descending")])
    keys = ranked.column(key).to_pylist()
    first = [i for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]
    rows = sorted(ranked.column("__row").take(first).to_pylist())
    return table.take(rows)


def compact(lake_dir: Path) -> tuple[Path, list[Commit]]:
    """Merge pending commits into a new generation; returns it and the commits it consumed.

    The caller holds :func:`build_lock`, and deletes the consumed commits only
    once the views point at the new generation.
    """
    lake_dir = Path(lake_dir)
    base = current_generation(lake_dir)
    pending = pending_commits(lake_dir)
    if base is not None and not pending:
        return base, []
    tables, committed = _load_generation(base)
    winners: dict[str, Commit] = {}
    for commit in pending:  # stamp order: the newest commit of a run wins
        if commit.stamp > committed.get(commit.run_id, ""):
            winners[commit.run_id] = commit
    replaced = pa.array(sorted(winners), pa.string())

    fresh = [
        {p.stem: _read_checked(p, p.stem) for p in commit.path.glob("*.parquet") if p.stem in TABLES}
        for commit in winners.values()
    ]  # ~2 ms a file (bench/lake.py), Parquet footer decoding: fewer files help (pitfall 11)
    stamps = {run_id: commit.stamp for run_id, commit in winners.items()}
    merged = {}
    for name in TABLES:
        old = tables[name]
        old = old.filter(pc.invert(pc.is_in(old.column(OWNER[name]), value_set=replaced)))
        new = [t[name] for t in fresh if name in t and t[name].num_rows]
        table = pa.concat_tables([old, *new]) if new else old
        if name in UNIQUE_KEY:
            order = pa.array([stamps.get(r) or committed.get(r, "") for r in table.column(OWNER[name]).to_pylist()])
            table = _keep_latest_per_key(table, *UNIQUE_KEY[name], order)
        merged[name] = table.combine_chunks()
    committed.update(stamps)
    ids = sorted(committed)
    merged[COMMITS] = pa.table({"run_id": pa.array(ids, pa.string()), "stamp": [committed[i] for i in ids]})
    stamp = new_stamp()
    target = _publish(lake_dir / GENERATIONS / stamp, merged, "build")
    return target, pending


READER_GRACE_SECONDS = 3600  # a generation replaced less than this ago may still be read through older views


def clean_up(lake_dir: Path, consumed: list[Commit], keep: int = 2) -> None:
    """Delete consumed commits, generations older than the last ``keep`` that were replaced more than
    :data:`READER_GRACE_SECONDS` ago (a reader opened before two builds, e.g. a report, still reads its own
    tables), and stale staging leftovers."""
    for commit in consumed:
        shutil.rmtree(commit.path, ignore_errors=True)
    found = generations(lake_dir)
    for gen, successor in zip(found[:-keep], found[1:], strict=False):
        if time.time() - successor.stat().st_mtime > READER_GRACE_SECONDS:
            shutil.rmtree(gen, ignore_errors=True)
    for folder in (Path(lake_dir), Path(lake_dir) / PARTS, Path(lake_dir) / GENERATIONS):
        clean_stale(folder)  # what killed appenders and builders left
