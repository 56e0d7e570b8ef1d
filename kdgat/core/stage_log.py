"""Recording a finished stage in MLflow: params, per-epoch curves, tags, artifacts.

Stages call :func:`log_stage` once their outputs are written, so a tracking
problem never costs a trained model; the run id goes into the stage's
``metrics.json``. The tracking URI comes from ``$MLFLOW_TRACKING_URI``, else
``--tracking-uri``, else a SQLite store in the stage's output directory.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from kdgat.core.tracking import StageRun, flatten_params, resolve_tracking_uri

OUT_DIR_TAG = "kdgat.out_dir"  # the stage's output folder (absolute): a run again into it replaces its MLflow run


def _curves(path: Path) -> dict[int, dict[str, float]]:
    """Per-epoch values from Lightning's metrics.csv (train and validation rows merged)."""
    epochs: dict[int, dict[str, float]] = {}
    if not path.is_file():
        return epochs
    with open(path) as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            values = epochs.setdefault(int(row["epoch"]), {})
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                number = float(value)
                if math.isfinite(number):
                    values[key] = number
    return epochs


def log_stage(
    *,
    stage: str,
    out_dir: Path,
    config: dict[str, Any],
    tags: dict[str, Any],
    summary: dict[str, float],
    artifacts: list[Path],
    tracking_uri: str | None = None,
    curves: Path | None = None,
) -> dict[str, str]:
    """Log one MLflow run for a finished stage; returns {tracking_uri, run_id}."""
    uri = resolve_tracking_uri(tracking_uri, out_dir)
    model = str(tags.get("model", ""))
    if stage != "evaluate":  # an evaluation's model is its label already (gat_small_kd)
        model += f"_{tags.get('scale', '')}" + ("_kd" if str(tags.get("kd")) == "True" else "")
    run_name = f"{tags.get('dataset') or 'dataset'}/{stage}/{model}"
    tags = {**tags, OUT_DIR_TAG: Path(out_dir).resolve()}
    # the result this run records: the stage's folder, and in it the model (an evaluation logs one run per model)
    replaces = {k: tags[k] for k in (OUT_DIR_TAG, "dataset", "stage", "model") if k in tags}
    with StageRun(
        uri,
        run_name=run_name,
        tags={k: str(v) for k, v in tags.items()},
        params=flatten_params(config),
        replaces=replaces,
    ) as run:
        for epoch, values in sorted(_curves(curves).items()) if curves else []:
            run.log_metrics(values, step=epoch)
        numbers = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            run.log_metrics(numbers)
        for path in artifacts:
            if path.is_file():
                run.log_artifact(path)
        return {"tracking_uri": uri, "run_id": run.run_id}
