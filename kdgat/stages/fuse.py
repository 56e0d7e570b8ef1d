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

from kdgat.core.config import PipelineConfig, config_hash, config_to_json
from kdgat.core.errors import KdgatError
from kdgat.fusion import FusionData, make_fusion
from kdgat.core.manifest import atomic_write_text, sha256_file, write_manifest
from kdgat.evaluation.scoring import fusion_state, score_gat, score_vgae
from kdgat.core.stage_log import log_stage
from kdgat.data.store import GraphPart, GraphStore, open_store
from kdgat.stages.train import CONFIG_FILE, METRICS_FILE, MODEL_FILE, load_run_model

FUSION_FILE = "fusion.pt"
MEMBERS_FILE = "members.json"


class Ensemble:
    """A frozen VGAE + GAT pair and the squashing of the VGAE score."""

    def __init__(self, vgae_dir: Path, gat_dir: Path, store: GraphStore, vgae_scale: float | None = None):
        self.vgae, self.vgae_cfg = load_run_model(vgae_dir, store)
        self.gat, self.gat_cfg = load_run_model(gat_dir, store)
        if self.vgae_cfg.model_type != "vgae" or self.gat_cfg.model_type != "gat":
            raise KdgatError(f"fusion needs a vgae run ({vgae_dir}) and a gat run ({gat_dir})")
        self.vgae_scale = vgae_scale

    def data(self, part: GraphPart, batch_size: int = 1024) -> tuple[FusionData, np.ndarray]:
        """Fusion inputs for the labelled windows of ``part`` (and which windows those are)."""
        vgae = score_vgae(self.vgae, part, batch_size)
        gat = score_gat(self.gat, part, batch_size)
        y = np.asarray(part.y)
        keep = y >= 0
        if self.vgae_scale is None:
            benign = vgae["recon"][y == 0]
            self.vgae_scale = float(np.median(benign)) if len(benign) else float(np.median(vgae["recon"]))
        error = vgae["recon"]
        squashed = error / (error + max(self.vgae_scale, 1e-12))
        data = FusionData(fusion_state(vgae, gat)[keep], squashed[keep], gat["p_attack"][keep], y[keep])
        return data, keep


def run_fuse(
    cfg: PipelineConfig,
    method: str,
    vgae_dir: str | Path,
    gat_dir: str | Path,
    graphs_dir: str | Path,
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    dataset: str | None = None,
) -> dict:
    """Fit one fusion method on the training windows; returns its metrics."""
    started = time.perf_counter()
    vgae_dir, gat_dir, graphs_dir, out_dir = map(Path, (vgae_dir, gat_dir, graphs_dir, out_dir))
    store = open_store(graphs_dir)
    dataset = dataset or store.dataset
    ensemble = Ensemble(vgae_dir, gat_dir, store)
    train, _ = ensemble.data(store.part("train"))
    val, _ = ensemble.data(store.part("val"))
    if len(np.unique(train.labels)) < 2:
        raise KdgatError(f"{graphs_dir}: fusion needs attack and benign training windows")
    fusion = make_fusion(method, cfg.dqn, cfg.fusion, seed=cfg.seed)
    history = fusion.fit(train, val)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{FUSION_FILE}.tmp"
    torch.save(fusion.state_dict(), tmp)
    tmp.replace(out_dir / FUSION_FILE)
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
    fusion_parameters = _trainable_parameters(fusion)
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
    write_manifest(
        out_dir,
        stage="fuse",
        inputs=[
            {"path": str(graphs_dir / "metadata.json"), "sha256": sha256_file(graphs_dir / "metadata.json")},
            {"path": str(vgae_dir / MODEL_FILE), "sha256": sha256_file(vgae_dir / MODEL_FILE)},
            {"path": str(gat_dir / MODEL_FILE), "sha256": sha256_file(gat_dir / MODEL_FILE)},
        ],
        config={**json.loads(config_to_json(cfg)), "method": method},
        outputs=[
            {"path": p}
            for p in (FUSION_FILE, MEMBERS_FILE, CONFIG_FILE, METRICS_FILE, *([policy_file] if policy else []))
        ],
        wall_time_s=time.perf_counter() - started,
        extra={"dataset": dataset},
    )
    return metrics


def _trainable_parameters(fusion) -> int:
    """Learned weights of a fusion method (its network, or the single weight), not its buffers."""
    for name in ("q_net", "net"):
        module = getattr(fusion, name, None)
        if isinstance(module, torch.nn.Module):
            return sum(p.numel() for p in module.parameters())
    weight = getattr(fusion, "w", None)
    return int(weight.numel()) if isinstance(weight, torch.Tensor) else 0


def load_fusion_run(run_dir: str | Path, store: GraphStore):
    """Rebuild (ensemble, fusion, method, members) from a fuse run directory."""
    run_dir = Path(run_dir)
    members = json.loads((run_dir / MEMBERS_FILE).read_text())
    from kdgat.core.config import load_frozen_config

    cfg = load_frozen_config(run_dir / CONFIG_FILE)
    ensemble = Ensemble(Path(members["vgae"]), Path(members["gat"]), store, vgae_scale=members["vgae_scale"])
    fusion = make_fusion(members["method"], cfg.dqn, cfg.fusion, seed=cfg.seed)
    fusion.load_state_dict(torch.load(run_dir / FUSION_FILE, map_location="cpu", weights_only=True))
    return ensemble, fusion, members


def is_fusion_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / MEMBERS_FILE).is_file()
