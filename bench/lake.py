"""Datalake: append, build and leaderboard over ~1,000 hand-made runs, against baselines from the same run.

Runs are hand-made folders shaped like real train/fuse/evaluate outputs
(tests/support/lake_sample.py: 5 trainings, 1 DQN fusion and 1 evaluation per set), so no
training happens. Measured:

  append          : kdgat.lake.append_runs over every folder (one process)
  build (bulk)    : build_lake with every run pending: merge ~1,000 commits into one file per table + views
  build (+7 runs) : the everyday build: one pipeline's 7 new runs merged into the ~1,000 compacted ones
  build (views)   : build_lake again, nothing pending: recreate analytics.duckdb only
  leaderboard     : kdgat.lake.leaderboard(lake) (opens the views read-only, runs v_leaderboard)
  baselines       : pyarrow reading + concatenating the same uncompacted part files (the floor of
                    compaction), and the leaderboard SQL run by DuckDB directly over the uncompacted
                    part files (what every query would cost without compaction)

It prints seconds and ratios; it asserts nothing about time. Goal: the everyday build over ~1,000 runs
well under a second. The bulk build's cost grows with the number of part files (Parquet footer
decoding, pitfall 11): ~2 ms a file here.

    python bench/lake.py [--runs 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.lake_sample import write_run_set  # noqa: E402

from kdgat.lake import append_runs, build_lake, leaderboard  # noqa: E402
from kdgat.lake.store import pending_commits
from kdgat.lake.views import ANALYTIC_VIEWS, LEADERBOARD_SQL

LABELS = ("vgae_large", "gat_large", "vgae_small_kd", "gat_small_kd", "gat_small", "fusion_dqn_small_kd", "eval")
PER_SET = len(LABELS)  # 5 trainings, 1 fusion, 1 evaluation


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kdgat-bench-lake-") as tmp:
        root = Path(tmp)
        sets = math.ceil(args.runs / PER_SET)
        start = time.perf_counter()
        dirs = []
        for i in range(sets):
            paths = write_run_set(root / f"set{i:04d}", dataset=f"d{i % 12:02d}", seed=i)
            dirs += [paths[k] for k in LABELS]
        made = time.perf_counter() - start
        lake = root / "lake"

        t_append, _ = timed(lambda: append_runs(dirs, lake))
        commits = pending_commits(lake)
        files = [p for c in commits for p in c.path.glob("*.parquet")]
        by_table: dict[str, list[str]] = {}
        for path in files:
            by_table.setdefault(path.stem, []).append(str(path))

        t_concat, _ = timed(lambda: {t: pa.concat_tables([pq.read_table(f) for f in fs]) for t, fs in by_table.items()})
        with duckdb.connect() as con:  # the same views over the appended parts, uncompacted
            for table, paths in by_table.items():
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sorted(paths)!r})")
            for name, sql in ANALYTIC_VIEWS.items():
                con.execute(f"CREATE VIEW {name} AS {sql}")
            t_raw_board, raw = timed(lambda: con.sql(LEADERBOARD_SQL).to_arrow_table(), args.repeat)

        t_build, _ = timed(lambda: build_lake(lake))
        t_views, _ = timed(lambda: build_lake(lake), args.repeat)
        t_board, board = timed(lambda: leaderboard(lake), args.repeat)
        extra = write_run_set(root / "extra", dataset="d00", seed=10_000)
        extra_dirs = [extra[k] for k in LABELS]
        t_incremental = []
        for _ in range(args.repeat):  # the everyday build: one more pipeline's runs on top of ~1,000 compacted
            append_runs(extra_dirs, lake)
            t_incremental.append(timed(lambda: build_lake(lake))[0])
        assert board.num_rows == raw.num_rows  # same answer both ways (a correctness check, not a timing)
        size = sum(p.stat().st_size for p in (lake / "tables").rglob("*.parquet"))

    print(f"cpus={os.cpu_count()} runs={len(dirs)} ({sets} sets of {PER_SET}) commits={len(commits)} "
          f"part files={len(files)}; run folders written in {made:.2f} s")  # fmt: skip
    print(f"{'step':<52}{'seconds':>9}")
    print("-" * 61)
    rows = [
        ("append_runs (all folders, one process)", t_append),
        ("build_lake, all pending (compact + views)", t_build),
        (f"build_lake, {PER_SET} new runs on top (median of {args.repeat})", statistics.median(t_incremental)),
        (f"build_lake, nothing pending (median of {args.repeat})", t_views),
        (f"leaderboard() over views (median of {args.repeat})", t_board),
        ("baseline: pyarrow read + concat of the parts", t_concat),
        (f"baseline: leaderboard SQL over parts (median of {args.repeat})", t_raw_board),
    ]
    for name, seconds in rows:
        print(f"{name:<52}{seconds:>9.3f}")
    print(f"compacted tables: {size / 1e6:.2f} MB; leaderboard rows: {board.num_rows}")
    print(f"ratio bulk build / pyarrow read+concat baseline: {t_build / t_concat:.2f}")
    print(f"ratio leaderboard over raw parts / over compacted views: {t_raw_board / t_board:.2f}")


if __name__ == "__main__":
    main()
