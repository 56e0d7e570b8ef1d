"""Questions people ask the lake, answered from the views of ``analytics.duckdb`` as ``pyarrow.Table``.

Each opens the database read-only (DuckDB allows one writer, pitfall 10); when
runs were appended since the last build, or there is no build yet, it builds
first, so an answer always includes everything appended.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from kdgat.core.errors import KdgatError
from kdgat.core.threads import current_threads
from kdgat.lake.store import current_generation, open_lake, pending_commits

_COMPARED_METRICS = ("f1", "accuracy", "auc", "mcc", "precision", "recall", "fpr", "pr_auc")
_RUN_FIELDS = ("dataset", "stage", "model", "scale", "has_kd", "seed", "config_hash", "parameters", "epochs",
               "best_val_loss", "created_at")  # fmt: skip


def connect(lake_dir: Path):
    """A read-only DuckDB connection to the lake's views (building them first if anything is pending)."""
    import duckdb

    from kdgat.lake.views import DB_NAME, build_lake

    lake_dir = open_lake(Path(lake_dir), create=False)
    db = lake_dir / DB_NAME
    generation = current_generation(lake_dir)
    if not db.is_file() or pending_commits(lake_dir) or generation is None or _stale_views(db, generation):
        build_lake(lake_dir)
    threads = current_threads()  # a stage's --threads (Nextflow's task.cpus); DuckDB's default is every core
    try:
        return duckdb.connect(str(db), read_only=True, config={"threads": threads} if threads else {})
    except duckdb.Error as exc:
        raise KdgatError(f"{db}: cannot open: {_first_line(exc)}") from None


def _stale_views(db: Path, generation: Path) -> bool:
    """The database's views were built by a kdgat with other view definitions, or over a generation at another
    path (the lake was moved or copied), or cannot be read."""
    import duckdb

    from kdgat.lake.views import views_fingerprint

    expected = [(views_fingerprint(), str(generation.resolve()))]
    try:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute("SELECT views_fingerprint, generation FROM lake_info").fetchall() != expected
    except duckdb.Error:
        return True


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def run_sql(con, sql: str, params: list | None = None) -> pa.Table:
    import duckdb

    try:
        relation = con.sql(sql, params=params) if params else con.sql(sql)
        return relation.to_arrow_table() if relation is not None else pa.table({})  # None: no result (e.g. SET)
    except duckdb.Error as exc:
        raise KdgatError(f"query failed: {_first_line(exc)}") from None


def query(lake_dir: Path, sql: str) -> pa.Table:
    """Any read-only SQL over the views (runs, metrics, configs, datasets, artifacts, training_curves, curves,
    policies, v_run_scores, v_leaderboard, v_leaderboard_scenarios, v_kd_impact)."""
    if not sql.strip():
        raise KdgatError("empty query")
    with connect(lake_dir) as con:
        return run_sql(con, sql)


def leaderboard(lake_dir: Path, dataset: str | None = None, *, scenarios: bool = False) -> pa.Table:
    """``v_leaderboard`` rows (all datasets, or one): per model and setup, seeds, validation and test figures as
    mean +- std over seeds, and the test figures of the run with the best validation F1.

    ``scenarios``: ``v_leaderboard_scenarios`` instead, the test figures per test scenario.
    """
    view = "v_leaderboard_scenarios" if scenarios else "v_leaderboard"
    with connect(lake_dir) as con:
        if dataset is None:
            return run_sql(con, f"SELECT * FROM {view}")
        table = run_sql(con, f"SELECT * FROM {view} WHERE dataset = ?", [dataset])
        if table.num_rows == 0:
            known = run_sql(con, "SELECT DISTINCT dataset FROM metrics ORDER BY 1").column(0).to_pylist()
            raise KdgatError(f"no evaluated runs of dataset {dataset!r} in the lake (has: {', '.join(known) or '-'})")
        return table


def kd_impact(lake_dir: Path) -> pa.Table:
    """``v_kd_impact``: the small model with KD minus without, paired by seed (mean +- std), per dataset and family."""
    with connect(lake_dir) as con:
        return run_sql(con, "SELECT * FROM v_kd_impact")


def resolve_run(con, text: str) -> str:
    """A run id from its full id or a unique prefix of it."""
    ids = run_sql(con, "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY 1", [text]).column(0).to_pylist()
    if text in ids:
        return text
    if not ids:
        raise KdgatError(f"no run {text!r} in the lake (list them with: kdgat lake query 'SELECT run_id FROM runs')")
    if len(ids) > 1:
        raise KdgatError(f"run {text!r} is ambiguous: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    return ids[0]


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        flat: dict[str, object] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):  # full precision (shortest round trip): CSV and JSON readers get the value itself
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _delta(a, b) -> float | None:
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(b) - float(a)
    return None


def compare_runs(lake_dir: Path, first: str, second: str) -> pa.Table:
    """Two runs side by side: run fields, the config keys that differ, and metric deltas (second minus first).

    Columns: section (run | config | metrics), key, a, b (as text), delta (numbers only). Metrics come from
    the latest evaluation of each run, per split/scenario.
    """
    rows: list[dict] = []
    with connect(lake_dir) as con:
        a_id, b_id = resolve_run(con, first), resolve_run(con, second)
        runs = {
            r["run_id"]: r for r in run_sql(con, "SELECT * FROM runs WHERE run_id IN (?, ?)", [a_id, b_id]).to_pylist()
        }
        for key in ("run_id", *_RUN_FIELDS):
            a, b = runs[a_id].get(key), runs[b_id].get(key)
            rows.append(dict(section="run", key=key, a=_text(a), b=_text(b), delta=_delta(a, b)))
        configs = {
            r["run_id"]: json.loads(r["full_config_json"] or "{}")
            for r in run_sql(
                con, "SELECT run_id, full_config_json FROM configs WHERE run_id IN (?, ?)", [a_id, b_id]
            ).to_pylist()
        }
        ca, cb = _flatten(configs.get(a_id, {})), _flatten(configs.get(b_id, {}))
        for key in sorted(set(ca) | set(cb)):
            if ca.get(key) != cb.get(key):
                rows.append(
                    dict(section="config", key=key, a=_text(ca.get(key)), b=_text(cb.get(key)),
                         delta=_delta(ca.get(key), cb.get(key)))
                )  # fmt: skip
        # one evaluation per run, the newest; created_at has whole seconds, so ties break as in the report
        latest = """
            SELECT * FROM metrics WHERE run_id = ? AND eval_run_id = (
                SELECT m.eval_run_id FROM metrics m JOIN runs e ON e.run_id = m.eval_run_id WHERE m.run_id = ?
                ORDER BY e.created_at DESC, e.appended_at DESC, e.run_id LIMIT 1
            )
        """
        values = {}
        for run_id in (a_id, b_id):
            for r in run_sql(con, latest, [run_id, run_id]).to_pylist():
                for metric in _COMPARED_METRICS:
                    values[(run_id, r["split"], r["scenario"], metric)] = r[metric]
        keys = sorted({k[1:] for k in values}, key=lambda k: (k[0] != "val", k[1], _COMPARED_METRICS.index(k[2])))
        for split, scenario, metric in keys:
            a, b = values.get((a_id, split, scenario, metric)), values.get((b_id, split, scenario, metric))
            rows.append(dict(section="metrics", key=f"{scenario}.{metric}", a=_text(a), b=_text(b), delta=_delta(a, b)))
    schema = pa.schema([("section", pa.string()), ("key", pa.string()), ("a", pa.string()), ("b", pa.string()),
                        ("delta", pa.float64())])  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)
