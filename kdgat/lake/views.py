"""``analytics.duckdb``: views over the compacted Parquet generation, and nothing else.

The database holds no rows, so it is rebuilt from scratch on every build: it
is written under a temporary name and renamed over the old one, so a reader
either opens the previous views (whose generation is kept) or the new ones.
"""

from __future__ import annotations

from pathlib import Path

from kdgat.core.atomic import atomic_path
from kdgat.core.errors import KdgatError
from kdgat.lake.schema import TABLES
from kdgat.lake.store import build_lock, clean_up, compact, open_lake

DB_NAME = "analytics.duckdb"

# Best validation F1/accuracy/AUC/MCC over runs (seeds), per dataset x model type x scale x KD x evaluated model;
# best_test_f1 is the best over runs of the mean F1 across test scenarios.
LEADERBOARD_SQL = """
WITH per_eval AS (
    SELECT dataset, model, family, model_type, scale, has_kd, run_id, eval_run_id,
           max(f1) FILTER (WHERE split = 'val') AS f1,
           max(accuracy) FILTER (WHERE split = 'val') AS accuracy,
           max(auc) FILTER (WHERE split = 'val') AS auc,
           max(mcc) FILTER (WHERE split = 'val') AS mcc,
           avg(f1) FILTER (WHERE split = 'test') AS test_f1
    FROM metrics
    GROUP BY ALL
)
SELECT dataset, model, model_type, family, scale, has_kd,
       count(DISTINCT run_id) AS n_runs,
       max(f1) AS best_f1, max(accuracy) AS best_accuracy, max(auc) AS best_auc, max(mcc) AS best_mcc,
       max(test_f1) AS best_test_f1
FROM per_eval
GROUP BY ALL
ORDER BY dataset, best_f1 DESC NULLS LAST, model
"""

# Small with KD minus small without KD, per dataset and model family, with the (large, no-KD) teacher beside it.
KD_IMPACT_SQL = """
SELECT s.dataset, s.family,
       t.best_f1 AS teacher_f1, n.best_f1 AS student_f1, s.best_f1 AS student_kd_f1,
       s.best_f1 - n.best_f1 AS f1_delta,
       t.best_test_f1 AS teacher_test_f1, n.best_test_f1 AS student_test_f1, s.best_test_f1 AS student_kd_test_f1,
       s.best_test_f1 - n.best_test_f1 AS test_f1_delta
FROM v_leaderboard s
LEFT JOIN v_leaderboard n ON n.dataset = s.dataset AND n.family = s.family AND n.scale = 'small' AND NOT n.has_kd
LEFT JOIN v_leaderboard t ON t.dataset = s.dataset AND t.family = s.family AND t.scale = 'large' AND NOT t.has_kd
WHERE s.scale = 'small' AND s.has_kd
ORDER BY s.dataset, s.family
"""


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def view_statements(generation: Path) -> list[str]:
    """CREATE VIEW statements for every table of a generation, then the two analytic views."""
    statements = [
        f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(generation.resolve() / f'{name}.parquet')})"
        for name in TABLES
    ]
    statements.append(f"CREATE VIEW v_leaderboard AS {LEADERBOARD_SQL}")
    statements.append(f"CREATE VIEW v_kd_impact AS {KD_IMPACT_SQL}")
    return statements


def build_lake(lake_dir: Path) -> Path:
    """Compact pending commits and (re)create ``lake_dir/analytics.duckdb``; returns its path."""
    lake_dir = open_lake(Path(lake_dir), create=False)
    try:
        return _build(lake_dir)
    except OSError as exc:  # disk full, read-only lake ...: the previous views stay as they were
        raise KdgatError(f"{lake_dir}: cannot build: {exc.strerror or exc}") from None


def _build(lake_dir: Path) -> Path:
    import duckdb

    target = lake_dir / DB_NAME
    with build_lock(lake_dir):
        generation, consumed = compact(lake_dir)
        with atomic_path(target) as tmp:
            try:
                with duckdb.connect(str(tmp)) as con:
                    for statement in view_statements(generation):
                        con.execute(statement)
            finally:
                tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        clean_up(lake_dir, consumed)
    return target
