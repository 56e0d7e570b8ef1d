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
from kdgat.lake.store import build_lock, clean_up, compact, damaged_hint, open_lake

DB_NAME = "analytics.duckdb"

# Aggregates over seeds: mean and sample standard deviation (ddof 1; NULL for one value, which has no spread to
# measure, and for none), like kdgat.evaluation.metrics.summarize_seeds. NaN (a metric undefined for that run) counts
# as missing.


def _mean_std(expr: str, name: str) -> str:
    return f"avg({expr}) AS {name}_mean, CASE WHEN count({expr}) > 1 THEN stddev_samp({expr}) END AS {name}_std"


# The trained and fused runs, one per seed of a setup: a setup trained again for the same seed (e.g. after a change
# to another model's section: another config hash, the same setup) counts once, its latest run. Every view below
# reads runs through it.
_LATEST_RUNS = """
latest_runs AS (
    SELECT * FROM runs WHERE stage IN ('train', 'fuse')
    QUALIFY setup_hash IS NULL OR seed IS NULL OR row_number() OVER (
        PARTITION BY dataset, model, setup_hash, seed ORDER BY created_at DESC NULLS LAST, run_id) = 1
)"""

# v_run_scores: the latest evaluation of every evaluated run in `runs` on the graph store it was trained on (its
# validation and test parts; an evaluation on new captures, `graphs --like`, stays in `metrics`), one row per split x
# scenario, with the run's seed and the hashes that group seeds (runs.setup_hash) and pair a KD student with its
# no-KD twin (runs.pair_hash). F1 and MCC are NULL where the scenario holds no attack window (as PR-AUC is): there is
# nothing to find, a perfect detector scores 0 on them, and a mean over scenarios would count that as a miss (FPR
# is the figure of such a scenario).
RUN_SCORES_SQL = f"""
WITH {_LATEST_RUNS},
latest AS (
    SELECT m.run_id, m.eval_run_id
    FROM (SELECT DISTINCT run_id, eval_run_id FROM metrics) m JOIN runs e ON e.run_id = m.eval_run_id
    JOIN latest_runs r ON r.run_id = m.run_id  -- a run not appended (yet) has no seed or setup to group by
    WHERE e.store_sha256 IS NOT DISTINCT FROM r.store_sha256
    QUALIFY row_number() OVER (PARTITION BY m.run_id ORDER BY e.created_at DESC, e.appended_at DESC, e.run_id) = 1
)
SELECT m.dataset, m.model, m.model_type, m.family, m.scale, m.has_kd, r.seed, r.setup_hash, r.pair_hash,
       r.teacher_run_id, m.run_id, m.eval_run_id, m.split, m.scenario, m.threshold, m.threshold_method, m.positives,
       CASE WHEN m.positives IS DISTINCT FROM 0 THEN nullif(m.f1, 'NaN'::DOUBLE) END AS f1,
       nullif(m.pr_auc, 'NaN'::DOUBLE) AS pr_auc, nullif(m.fpr, 'NaN'::DOUBLE) AS fpr,
       nullif(m.auc, 'NaN'::DOUBLE) AS auc,
       CASE WHEN m.positives IS DISTINCT FROM 0 THEN nullif(m.mcc, 'NaN'::DOUBLE) END AS mcc
FROM metrics m JOIN latest l USING (run_id, eval_run_id) JOIN latest_runs r ON r.run_id = m.run_id
"""

# One row per evaluated run (one per seed of a setup: latest_runs): validation F1 / PR-AUC, and test F1 / PR-AUC /
# FPR averaged over its test scenarios; `pick` = 1 for the run a researcher would keep: the best validation F1 of
# its group (ties: lowest seed, run id).
# Validation F1 is NULL where validation holds no attack window (attack-free training captures): there is nothing
# to find, so it cannot tell runs apart, and the group has no selected run (the selected_* columns are NULL).
_PER_RUN = """
per_run AS (
    SELECT dataset, model, model_type, family, scale, has_kd, setup_hash, pair_hash, teacher_run_id, seed, run_id,
           max(f1) FILTER (WHERE split = 'val' AND positives > 0) AS val_f1,
           max(pr_auc) FILTER (WHERE split = 'val') AS val_pr_auc,
           avg(f1) FILTER (WHERE split = 'test') AS test_f1, avg(pr_auc) FILTER (WHERE split = 'test') AS test_pr_auc,
           avg(fpr) FILTER (WHERE split = 'test') AS test_fpr,
           string_agg(DISTINCT threshold_method, ', ' ORDER BY threshold_method) AS threshold_methods
    FROM v_run_scores GROUP BY ALL
),
picked AS (
    SELECT *, CASE WHEN val_f1 IS NOT NULL THEN row_number() OVER (PARTITION BY dataset, model, setup_hash
                                 ORDER BY val_f1 DESC NULLS LAST, seed NULLS LAST, run_id) END AS pick
    FROM per_run
)"""

# Per dataset x model x setup (one experiment over seeds): seeds, validation and mean-over-scenarios test figures as
# mean +- std over runs, and the test figures of the run with the best validation F1 (never chosen on test).
LEADERBOARD_SQL = f"""
WITH {_PER_RUN}
SELECT dataset, model, model_type, family, scale, has_kd, setup_hash AS setup,
       count(*) AS n_runs, count(DISTINCT seed) AS n_seeds,
       -- the threshold policies of its runs' evaluations: two where seeds were evaluated under different ones
       string_agg(DISTINCT threshold_methods, ', ' ORDER BY threshold_methods) AS threshold_methods,
       {_mean_std("val_f1", "val_f1")}, {_mean_std("val_pr_auc", "val_pr_auc")},
       {_mean_std("test_f1", "test_f1")}, {_mean_std("test_pr_auc", "test_pr_auc")},
       {_mean_std("test_fpr", "test_fpr")},
       any_value(seed) FILTER (WHERE pick = 1) AS selected_seed,
       any_value(run_id) FILTER (WHERE pick = 1) AS selected_run_id,
       any_value(val_f1) FILTER (WHERE pick = 1) AS selected_val_f1,
       any_value(test_f1) FILTER (WHERE pick = 1) AS selected_test_f1,
       any_value(test_pr_auc) FILTER (WHERE pick = 1) AS selected_test_pr_auc,
       any_value(test_fpr) FILTER (WHERE pick = 1) AS selected_test_fpr
FROM picked
GROUP BY ALL
ORDER BY dataset, val_f1_mean DESC NULLS LAST, model, setup
"""

# The same per test scenario; the selected run is the leaderboard's (best validation F1), not the scenario's best,
# and rows come in a fixed order (dataset, scenario, model), not ranked by test F1.
LEADERBOARD_SCENARIOS_SQL = f"""
WITH {_PER_RUN}
SELECT s.dataset, s.model, s.model_type, s.family, s.scale, s.has_kd, s.setup_hash AS setup, s.scenario,
       count(*) AS n_runs, count(DISTINCT s.seed) AS n_seeds,
       {_mean_std("s.f1", "test_f1")}, {_mean_std("s.pr_auc", "test_pr_auc")}, {_mean_std("s.fpr", "test_fpr")},
       any_value(s.seed) FILTER (WHERE p.pick = 1) AS selected_seed,
       any_value(s.f1) FILTER (WHERE p.pick = 1) AS selected_test_f1,
       any_value(s.pr_auc) FILTER (WHERE p.pick = 1) AS selected_test_pr_auc,
       any_value(s.fpr) FILTER (WHERE p.pick = 1) AS selected_test_fpr
FROM v_run_scores s JOIN picked p USING (run_id)
WHERE s.split = 'test'
GROUP BY ALL
ORDER BY s.dataset, s.scenario, s.model, setup  -- never ranked by a test figure
"""

# Small with KD minus small without KD, paired by seed (same dataset, model family and settings but KD), as
# mean +- std over the pairs, beside the means of the students and teachers over the same pairs (a pair missing a
# validation figure counts in neither the validation delta nor its means, so the means subtract to the delta), one
# row per KD setup (`setup`: the KD students' setup_hash, as in the leaderboard; two
# KD settings or teachers are two rows); the KD students' own teachers (runs.teacher_run_id) beside them. A KD
# student with no twin of its seed (e.g. a fusion of KD students) keeps its row with n_pairs 0.
KD_IMPACT_SQL = f"""
WITH {_PER_RUN},
kd AS (
    SELECT s.dataset, s.family, s.setup_hash, s.pair_hash, s.seed,
           avg(s.val_f1) AS val_f1, avg(s.test_f1) AS test_f1, avg(s.test_pr_auc) AS test_pr_auc,
           avg(t.val_f1) AS teacher_val_f1, avg(t.test_f1) AS teacher_test_f1
    FROM per_run s LEFT JOIN per_run t ON t.run_id = s.teacher_run_id
    WHERE s.scale = 'small' AND s.has_kd
    GROUP BY ALL
),
plain AS (
    SELECT dataset, family, pair_hash, seed, true AS paired,
           avg(val_f1) AS val_f1, avg(test_f1) AS test_f1, avg(test_pr_auc) AS test_pr_auc
    FROM per_run WHERE scale = 'small' AND NOT has_kd
    GROUP BY ALL
),
pairs AS (
    SELECT k.dataset, k.family, k.setup_hash, k.seed, coalesce(p.paired, false) AS paired,
           k.teacher_val_f1, k.teacher_test_f1,
           p.val_f1 AS student_val_f1, k.val_f1 AS student_kd_val_f1,
           p.test_f1 AS student_test_f1, k.test_f1 AS student_kd_test_f1,
           k.val_f1 - p.val_f1 AS val_f1_delta, k.test_f1 - p.test_f1 AS test_f1_delta,
           k.test_pr_auc - p.test_pr_auc AS test_pr_auc_delta
    FROM kd k LEFT JOIN plain p
      ON p.dataset = k.dataset AND p.family = k.family AND p.pair_hash = k.pair_hash AND p.seed = k.seed
)
SELECT dataset, family, setup_hash AS setup, count(*) FILTER (WHERE paired) AS n_pairs,
       avg(teacher_val_f1) FILTER (WHERE val_f1_delta IS NOT NULL) AS teacher_val_f1,
       avg(student_val_f1) FILTER (WHERE val_f1_delta IS NOT NULL) AS student_val_f1,
       avg(student_kd_val_f1) FILTER (WHERE val_f1_delta IS NOT NULL) AS student_kd_val_f1,
       {_mean_std("val_f1_delta", "val_f1_delta")},
       avg(teacher_test_f1) FILTER (WHERE test_f1_delta IS NOT NULL) AS teacher_test_f1,
       avg(student_test_f1) FILTER (WHERE test_f1_delta IS NOT NULL) AS student_test_f1,
       avg(student_kd_test_f1) FILTER (WHERE test_f1_delta IS NOT NULL) AS student_kd_test_f1,
       {_mean_std("test_f1_delta", "test_f1_delta")}, {_mean_std("test_pr_auc_delta", "test_pr_auc_delta")}
FROM pairs
GROUP BY ALL
ORDER BY dataset, family, setup
"""

# Per dataset x fusion model x setup (its seeds): how many fuse runs fell back to a member (and to which), how many
# DQNs gave almost every window to one member, and in how many the novel-ID rule is on, with the novel windows of
# their selection windows by class (the same in every seed of a store; NULL for runs made before the rule), and in
# how many those choices were made on windows the fusion did not fit (NULL for runs made before that).
FUSIONS_SQL = f"""
WITH {_LATEST_RUNS}
SELECT r.dataset, r.model, r.setup_hash AS setup, count(*) AS n_runs,
       count(*) FILTER (WHERE f.out_of_sample_selection) AS n_out_of_sample,
       count(f.fallback) AS n_fallback, string_agg(DISTINCT f.fallback, ', ' ORDER BY f.fallback) AS fallback_to,
       count(f.collapsed_to) AS n_collapsed,
       string_agg(DISTINCT f.collapsed_to, ', ' ORDER BY f.collapsed_to) AS collapsed_to,
       count(*) FILTER (WHERE f.novel_alert) AS n_novel_alert, max(f.novel_benign) AS novel_benign,
       max(f.novel_attack) AS novel_attack, avg(f.fusion_windows) AS fusion_windows,
       avg(f.selection_windows) AS selection_windows
FROM fusions f JOIN latest_runs r USING (run_id)
GROUP BY ALL
ORDER BY r.dataset, r.model, setup
"""

# Parameters per dataset x model x setup (the report's chart and bench/quality.py read this one definition): the
# count its trained runs recorded (a setup fixes the architecture, so its seeds agree; max if they ever did not).
PARAMETERS_SQL = f"""
WITH {_LATEST_RUNS}
SELECT dataset, model, family, scale, has_kd, setup_hash AS setup, max(parameters) AS parameters, count(*) AS n_runs
FROM latest_runs
WHERE parameters IS NOT NULL
GROUP BY ALL
ORDER BY dataset, family, scale, has_kd, setup
"""

# The views besides one per table, in creation order (later ones read earlier ones).
ANALYTIC_VIEWS = {
    "v_run_scores": RUN_SCORES_SQL,
    "v_leaderboard": LEADERBOARD_SQL,
    "v_leaderboard_scenarios": LEADERBOARD_SCENARIOS_SQL,
    "v_kd_impact": KD_IMPACT_SQL,
    "v_fusions": FUSIONS_SQL,
    "v_parameters": PARAMETERS_SQL,
}


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def view_statements(generation: Path) -> list[str]:
    """CREATE VIEW statements for every table of a generation, then the analytic views and ``lake_info``."""
    statements = [
        f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(generation.resolve() / f'{name}.parquet')})"
        for name in TABLES
    ]
    statements += [f"CREATE VIEW {name} AS {sql}" for name, sql in ANALYTIC_VIEWS.items()]
    # the views read the generation by its absolute path: a lake moved elsewhere is rebuilt before a query
    statements.append(
        f"CREATE VIEW lake_info AS SELECT '{views_fingerprint()}' AS views_fingerprint, "
        f"{_quote(generation.resolve())} AS generation"
    )
    return statements


def views_fingerprint() -> str:
    """Hash of the analytic views' SQL: a database built by another kdgat version is rebuilt before a query."""
    from kdgat.core.hashing import content_hash

    return content_hash(ANALYTIC_VIEWS)[:16]


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
            except duckdb.Error as exc:  # e.g. a table file cut short: its path is in DuckDB's first line
                said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                hint = f"; {damaged_hint(generation)}" if generation is not None and str(generation) in said else ""
                raise KdgatError(f"{lake_dir}: cannot build the views: {said}{hint}") from None
            finally:
                tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        clean_up(lake_dir, consumed)
    return target
