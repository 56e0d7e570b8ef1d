"""Table schemas of the datalake, and the check that a file still has them.

Every Parquet file of the lake is validated against these schemas before it is
compacted, so a lake written by another version of kdgat stops with a message
naming the file and the columns, not with an error deep in DuckDB.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from kdgat.core.errors import KdgatError
from kdgat.core.hashing import content_hash

# 2: runs.setup_hash and runs.pair_hash (runs grouped across seeds); 3: fusions; 4: runs.store_sha256, the ids of
# evaluations hold their graph store, those of KD students their teacher's weights, fusions.selection_windows and
# fusions.out_of_sample_selection
SCHEMA_VERSION = 4

_TYPES = {
    "str": pa.string(),
    "i64": pa.int64(),
    "f64": pa.float64(),
    "bool": pa.bool_(),
    "ts": pa.timestamp("us", tz="UTC"),
    "list": pa.list_(pa.string()),
}


def _schema(spec: str) -> pa.Schema:
    """``"name:type name:type ..."`` (types: str i64 f64 bool ts list) as an Arrow schema."""
    return pa.schema([(name, _TYPES[kind]) for name, kind in (item.split(":") for item in spec.split())])


_METRIC_VALUES = (
    "accuracy precision recall f1 specificity balanced_accuracy mcc fpr fnr auc pr_auc "
    "detection_rate_at_fpr_1pct detection_rate_at_fpr_0_1pct"
)

TABLES: dict[str, pa.Schema] = {
    "runs": _schema(
        "run_id:str dataset:str stage:str model_type:str model:str family:str scale:str auxiliaries:list "
        "has_kd:bool method:str seed:i64 config_hash:str setup_hash:str pair_hash:str parameters:i64 "
        "teacher_run_id:str teacher_parameters:i64 epochs:i64 best_val_loss:f64 evaluated_runs:list store_sha256:str "
        "success:bool created_at:ts duration_seconds:f64 "
        "run_dir:str kdgat_version:str appended_at:ts"
    ),
    "metrics": _schema(
        "run_id:str eval_run_id:str dataset:str model:str family:str model_type:str scale:str has_kd:bool "
        "split:str scenario:str threshold:f64 threshold_method:str n:i64 positives:i64 negatives:i64 tp:i64 fp:i64 "
        "tn:i64 fn:i64 " + " ".join(f"{name}:f64" for name in _METRIC_VALUES.split())
    ),
    "configs": _schema(
        "run_id:str model_type:str scale:str seed:i64 lr:f64 weight_decay:f64 batch_size:i64 max_epochs:i64 "
        "patience:i64 precision:str window:i64 stride:i64 feature_set:str vgae_latent_dim:i64 gat_hidden:i64 "
        "gat_layers:i64 gat_heads:i64 gat_fc_layers:i64 gat_jk_mode:str dqn_hidden:i64 dqn_episodes:i64 "
        "dqn_gamma:f64 kd_alpha:f64 kd_temperature:f64 full_config_json:str"
    ),
    "datasets": _schema(
        "name:str run_id:str domain:str protocol:str source:str description:str store_fingerprint:str "
        "feature_set:str window:i64 stride:i64 vocab_size:i64 n_train_graphs:i64 n_val_graphs:i64 "
        "n_test_scenarios:i64 n_test_graphs:i64 train_attack_share:f64 cache_size_bytes:i64 store_path:str"
    ),
    "artifacts": _schema("run_id:str artifact_type:str path:str size_bytes:i64 sha256:str"),
    "training_curves": _schema("run_id:str epoch:i64 step:i64 metric:str value:f64"),
    "curves": _schema(
        "run_id:str eval_run_id:str model:str scenario:str curve:str point:i64 x:f64 y:f64 threshold:f64"
    ),
    "policies": _schema("run_id:str eval_run_id:str model:str class:str mean_alpha:f64 n_windows:i64"),
    # what each fuse run chose on its held-out fusion windows: the fallback to a member, a DQN that gives
    # (almost) every window to one member, the novel-ID rule (its windows by class; NULL for runs made before it)
    "fusions": _schema(
        "run_id:str fusion_windows:i64 selection_windows:i64 out_of_sample_selection:bool pr_auc_fusion:f64 "
        "pr_auc_gat:f64 pr_auc_vgae:f64 fallback:str collapsed_to:str novel_alert:bool novel_benign:i64 "
        "novel_attack:i64"
    ),
}

# The column naming the run whose commit owns a row: a re-append of that run replaces exactly these rows.
OWNER = {name: "eval_run_id" if name in ("metrics", "curves", "policies") else "run_id" for name in TABLES}
# Tables whose rows describe something shared by many runs, kept once per key: the newest commit's row among those
# with the second column filled (a dataset's row from its store; a run appended once its store is gone knows less).
UNIQUE_KEY = {"datasets": ("name", "store_fingerprint")}


def fingerprint() -> str:
    """Hash of every table's schema: changes whenever a column is added, dropped, renamed or retyped."""
    return content_hash({name: str(schema) for name, schema in TABLES.items()})


def schema_difference(found: pa.Schema, expected: pa.Schema) -> str | None:
    """What differs between two schemas, in words; None when they are equal."""
    if found.equals(expected):
        return None
    have = {f.name: f.type for f in found}
    want = {f.name: f.type for f in expected}
    problems = []
    if missing := [n for n in want if n not in have]:
        problems.append("missing columns " + ", ".join(missing))
    if extra := [n for n in have if n not in want]:
        problems.append("unexpected columns " + ", ".join(extra))
    problems += [f"`{n}` is {have[n]}, expected {t}" for n, t in want.items() if n in have and have[n] != t]
    if not problems:
        problems.append("columns are in another order")
    return "; ".join(problems)


def check_schema(table: pa.Table | pa.Schema, name: str, path: Path) -> None:
    """Raise a one-line KdgatError when a file's schema is not this kdgat's schema of table ``name``."""
    schema = table.schema if isinstance(table, pa.Table) else table
    problem = schema_difference(schema, TABLES[name])
    if problem:
        raise KdgatError(
            f"{path}: not the `{name}` table of lake schema v{SCHEMA_VERSION} ({problem}); "
            "it was written by another kdgat version: rebuild the lake with `kdgat lake append` into a new --lake DIR"
        )


def empty(name: str) -> pa.Table:
    return TABLES[name].empty_table()


def from_rows(name: str, rows: list[dict]) -> pa.Table:
    """Rows (dicts keyed by column) as a table of ``name``'s schema; absent keys are null."""
    schema = TABLES[name]
    return pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema} for row in rows], schema=schema)
