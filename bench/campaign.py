"""A model of a `kdgat pipeline` campaign read back for the analysis scripts (errors.py, calibration.py).

The threshold is the one `kdgat evaluate` chose on validation and recorded in ``eval/metrics.json``,
not chosen again, so an analysis always matches the reported tables.
"""

from __future__ import annotations

import json
from pathlib import Path


def load_evaluated_run(dataset_dir: Path, run: str):
    """``(store, model, cfg, threshold)`` of ``runs/<run>`` in a campaign's dataset folder."""
    from kdgat.data.store import open_store
    from kdgat.stages.evaluate import run_label
    from kdgat.training.runs import load_run_model

    store = open_store(dataset_dir / "graphs")
    model, cfg = load_run_model(dataset_dir / "runs" / run, store)
    evaluated = json.loads((dataset_dir / "eval" / "metrics.json").read_text())["runs"]
    label = run_label(cfg)
    if label not in evaluated:
        raise SystemExit(f"{dataset_dir}/eval/metrics.json has no {label} (evaluated: {', '.join(evaluated)})")
    return store, model, cfg, evaluated[label]["threshold"]
