"""Fitting the classical yardstick (:class:`kdgat.models.boosting.WindowBoosting`) on a graph store.

It learns from the same labelled training windows as the GAT and reports its validation log-loss
where the GNN runs report their best validation loss, so the two read the same in the lake.
"""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import log_loss

from kdgat.core.atomic import atomic_path
from kdgat.core.config import config_hash
from kdgat.core.errors import KdgatError
from kdgat.core.schema import PipelineConfig
from kdgat.data.store import GraphStore
from kdgat.models.boosting import WindowBoosting

BOOSTING_FILE = "model.joblib"


def fit_boosting(cfg: PipelineConfig, store: GraphStore, out_dir: Path) -> dict:
    """Fit on the labelled training windows, write ``model.joblib`` atomically; returns the run's metrics."""
    started = time.perf_counter()
    train, val = store.part("train"), store.part("val")
    train_idx = np.flatnonzero(np.asarray(train.y) >= 0)
    val_idx = np.flatnonzero(np.asarray(val.y) >= 0)
    model = WindowBoosting(cfg.hgb, store.vocab_size, store.metadata["node_features"], seed=cfg.seed)
    model.fit(train, train_idx)
    with atomic_path(out_dir / BOOSTING_FILE) as tmp:
        joblib.dump(model, tmp)
    val_loss = None
    if len(val_idx):
        y_val = np.asarray(val.y)[val_idx]
        val_loss = float(log_loss(y_val, model.p_attack(val)[val_idx], labels=[0, 1]))
    return {
        "model": "hgb",
        "scale": cfg.scale,
        "auxiliaries": list(cfg.auxiliaries),
        "config_hash": config_hash(cfg),
        "best_val_loss": val_loss,
        "epochs": int(model.estimator.n_iter_),  # boosting iterations
        "stopped_early": False,
        "parameters": model.parameters,
        "features": len(model.columns),
        "num_node_features": store.num_node_features,
        "vocab_size": store.vocab_size,
        "train_graphs": len(train_idx),
        "val_graphs": len(val_idx),
        "teacher": None,
        "teacher_parameters": None,
        "device": "cpu",
        "fit_seconds": round(time.perf_counter() - started, 3),
    }


def load_boosting(run_dir: Path) -> WindowBoosting:
    model = joblib.load(Path(run_dir) / BOOSTING_FILE)
    if not isinstance(model, WindowBoosting):
        raise KdgatError(f"{run_dir / BOOSTING_FILE}: not a kdgat hgb model")
    return model
