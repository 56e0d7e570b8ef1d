"""The fuse stage: learn how to weigh a frozen VGAE and a frozen GAT per window.

States come from both models on the store's training windows (fit) and
validation windows (model selection). The VGAE's reconstruction error is
squashed to [0, 1] as e / (e + m), with m the median error of benign training
windows: 0.5 at a typical benign window, towards 1 for unusual ones. The run
directory records the two member runs, so evaluation rebuilds the ensemble.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from kdgat.core.atomic import atomic_path, atomic_write_text, ensure_folder
from kdgat.core.config import config_hash, config_to_json
from kdgat.core.errors import KdgatError
from kdgat.core.manifest import Manifest, begin_output, file_entry, write_manifest
from kdgat.core.schema import PipelineConfig
from kdgat.core.stage_log import log_stage
from kdgat.core.threads import set_threads
from kdgat.data.store import open_store
from kdgat.fusion import make_fusion, trainable_parameters
from kdgat.fusion.ensemble import FUSION_FILE, MEMBERS_FILE, Ensemble
from kdgat.training.runs import CONFIG_FILE, METRICS_FILE, MODEL_FILE


def run(
    cfg: PipelineConfig,
    method: str,
    vgae_dir: str | Path,
    gat_dir: str | Path,
    graphs_dir: str | Path,
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    dataset: str | None = None,
    threads: int | None = None,
) -> Manifest:
    """Fit one fusion method on the training windows; the manifest's summary holds its metrics."""
    set_threads(threads)
    started = time.perf_counter()
    vgae_dir, gat_dir, graphs_dir, out_dir = map(Path, (vgae_dir, gat_dir, graphs_dir, out_dir))
    vgae_dir, gat_dir = vgae_dir.resolve(), gat_dir.resolve()  # recorded absolute: the lake finds them anywhere
    ensure_folder(out_dir)  # an unusable output path fails now, not after the work
    store = open_store(graphs_dir)
    dataset = dataset or store.dataset
    ensemble = Ensemble(vgae_dir, gat_dir, store)
    begin_output(out_dir)
    train, _ = ensemble.data(store.part("train"))
    val, _ = ensemble.data(store.part("val"))
    if len(np.unique(train.labels)) < 2:
        raise KdgatError(f"{graphs_dir}: fusion needs attack and benign training windows")
    fusion = make_fusion(method, cfg.dqn, cfg.fusion, seed=cfg.seed)
    history = fusion.fit(train, val)
    with atomic_path(out_dir / FUSION_FILE) as tmp:
        torch.save(fusion.state_dict(), tmp)
    members = {
        "method": method,
        "vgae": str(vgae_dir.resolve()),
        "gat": str(gat_dir.resolve()),
        "vgae_scale": ensemble.vgae_scale,
        "scale": ensemble.gat_cfg.scale,
        "kd": ensemble.gat_cfg.has_kd,
    }
    atomic_write_text(out_dir / MEMBERS_FILE, json.dumps(members, indent=2) + "\n")
    atomic_write_text(out_dir / CONFIG_FILE, config_to_json(cfg))
    policy = fusion.policy_summary(val) if hasattr(fusion, "policy_summary") else None
    policy_file = "dqn_policy.json" if method == "dqn" else "policy.json"
    if policy is not None:
        atomic_write_text(out_dir / policy_file, json.dumps(policy) + "\n")
    parameters = sum(p.numel() for p in ensemble.vgae.parameters()) + sum(p.numel() for p in ensemble.gat.parameters())
    fusion_parameters = trainable_parameters(fusion)
    metrics = {
        "model": "fusion",
        "method": method,
        "scale": ensemble.gat_cfg.scale,
        "config_hash": config_hash(cfg),
        "train_windows": len(train),
        "val_windows": len(val),
        "history": {k: v for k, v in history.items() if not isinstance(v, (list, dict))},
        "ensemble_parameters": parameters + fusion_parameters,
        "fusion_parameters": fusion_parameters,
    }
    metrics["mlflow"] = log_stage(
        stage="fuse",
        out_dir=out_dir,
        config={**json.loads(config_to_json(cfg)), "method": method, "members": members},
        tags={
            "dataset": dataset,
            "stage": "fuse",
            "model": f"fusion_{method}",
            "scale": members["scale"],
            "kd": members["kd"],
            "run_id": f"fusion_{method}_{members['scale']}_{config_hash(cfg)}",
        },
        summary={k: v for k, v in metrics["history"].items() if isinstance(v, (int, float))},
        artifacts=[out_dir / MEMBERS_FILE, out_dir / CONFIG_FILE],
        tracking_uri=tracking_uri,
    )
    atomic_write_text(out_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return write_manifest(
        out_dir,
        stage="fuse",
        inputs=[
            file_entry(graphs_dir / "metadata.json"),
            file_entry(vgae_dir / MODEL_FILE),
            file_entry(gat_dir / MODEL_FILE),
        ],
        config={**json.loads(config_to_json(cfg)), "method": method},
        outputs=[
            {"path": p}
            for p in (FUSION_FILE, MEMBERS_FILE, CONFIG_FILE, METRICS_FILE, *([policy_file] if policy else []))
        ],
        wall_time_s=time.perf_counter() - started,
        dataset=dataset,
        summary=metrics,
    )
