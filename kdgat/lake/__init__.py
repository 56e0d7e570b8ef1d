"""The datalake: finished runs as Parquet tables, DuckDB views over them, and the queries people ask.

``append_runs`` records run folders (any process, any number at once);
``build_lake`` compacts and recreates ``analytics.duckdb``; ``leaderboard``,
``kd_impact``, ``compare_runs`` and ``query`` answer from its views and return
``pyarrow.Table``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from kdgat.core.errors import KdgatError, UsageError
from kdgat.lake.queries import compare_runs, kd_impact, leaderboard, query
from kdgat.lake.records import forget, read_run, remember_peers
from kdgat.lake.schema import from_rows
from kdgat.lake.store import commit_run, open_lake, refuse_non_lake
from kdgat.lake.views import DB_NAME, build_lake

__all__ = ["DB_NAME", "append_runs", "build_lake", "compare_runs", "kd_impact", "leaderboard", "query"]


def append_runs(run_dirs: list[Path], lake_dir: Path) -> list[str]:
    """Record finished train/fuse/evaluate folders in the lake; returns the run ids written.

    Every folder is read and checked before anything is written, so a bad
    folder leaves the lake untouched; each run is then one atomic commit.
    """
    if not run_dirs:
        raise UsageError("nothing to append: pass one or more --runs RUN_DIR")
    refuse_non_lake(Path(lake_dir))
    forget()
    remember_peers(run_dirs)
    appended_at = datetime.now(timezone.utc)
    records = [read_run(Path(d), appended_at) for d in run_dirs]
    tables = [_tables(record) for record in records]  # every value checked against the schema before a commit
    ids = []
    try:
        lake_dir = open_lake(Path(lake_dir), create=True)
        for record, record_tables in zip(records, tables, strict=True):
            commit_run(lake_dir, record.identity.run_id, record_tables)
            ids.append(record.identity.run_id)
    except OSError as exc:  # disk full, read-only lake ...: the commits made so far are whole
        done = f" after {len(ids)} of {len(records)} runs" if ids else ""
        raise KdgatError(f"{lake_dir}: cannot append{done}: {exc.strerror or exc}") from None
    return ids


def _tables(record) -> dict:
    """A run's rows as the lake's tables; a value of the wrong type is one line naming the run and the table."""
    import pyarrow as pa

    tables = {}
    for name, rows in record.rows.items():
        if not rows:
            continue
        try:
            tables[name] = from_rows(name, rows)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise KdgatError(f"{record.run_dir}: a value of its `{name}` row is not recordable ({problem})") from None
    return tables
