"""Fitting the classical yardsticks on a graph store: hgb (supervised) and novelty (benign windows only).

Both are :class:`kdgat.models.window_model.WindowVectorModel` s, kept as ``model.joblib``. hgb learns
from the same labelled training windows as the GAT and reports its validation log-loss where the GNN
runs report their best validation loss; novelty learns from the benign training windows, as the VGAE
does, and has no loss to report.
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
from kdgat.core.run_files import WINDOW_MODEL_FILE
from kdgat.core.schema import PipelineConfig
from kdgat.core.threads import current_threads
from kdgat.data.store import GraphStore
from kdgat.models.boosting import WindowBoosting
from kdgat.models.novelty import WindowNovelty
from kdgat.models.window_model import WindowVectorModel

# one class per name of kdgat.core.config.WINDOW_VECTOR_MODELS (a test holds the two equal)
WINDOW_MODELS = {"hgb": WindowBoosting, "novelty": WindowNovelty}


def fit_window_model(cfg: PipelineConfig, store: GraphStore, out_dir: Path) -> dict:
    """Fit on the training windows, write ``model.joblib`` atomically; returns the run's metrics."""
    started = time.perf_counter()
    train, val = store.part("train"), store.parts.get("val")
    supervised = cfg.model_type == "hgb"
    train_y = np.asarray(train.y)
    val_y = np.asarray(val.y) if val is not None else np.zeros(0, np.int64)
    train_idx = np.flatnonzero(train_y >= 0 if supervised else train_y == 0)
    val_idx = np.flatnonzero(val_y >= 0 if supervised else val_y == 0)
    if len(train_idx) == 0:
        what = "labelled" if supervised else "benign"
        raise KdgatError(f"{store.path}: no {what} training window to fit the {cfg.model_type} yardstick on")
    model = WINDOW_MODELS[cfg.model_type](
        cfg.model_section, store.vocab_size, store.metadata["node_features"], seed=cfg.seed
    )
    with joblib.parallel_config(n_jobs=current_threads() or 1):  # the isolation forest's trees, on --threads
        model.fit(train, train_idx)
    with atomic_path(out_dir / WINDOW_MODEL_FILE) as tmp:
        joblib.dump(model, tmp)
    val_loss = None
    if supervised and len(val_idx):
        val_loss = float(log_loss(val_y[val_idx], model.p_attack(val)[val_idx], labels=[0, 1]))
    return {
        "model": cfg.model_type,
        "scale": cfg.scale,
        "auxiliaries": list(cfg.auxiliaries),
        "config_hash": config_hash(cfg),
        "best_val_loss": val_loss,
        "epochs": int(model.estimator.n_iter_) if supervised else None,  # boosting iterations
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


def load_window_model(run_dir: Path, model_type: str) -> WindowVectorModel:
    model = joblib.load(Path(run_dir) / WINDOW_MODEL_FILE)
    if not isinstance(model, WINDOW_MODELS[model_type]):
        raise KdgatError(f"{run_dir / WINDOW_MODEL_FILE}: not a kdgat {model_type} model")
    return model
