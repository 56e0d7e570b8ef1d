"""Per-window scores of trained models over a store part (inference only).

The same numbers serve evaluation (scores and thresholds) and fusion (the
15-value state per window: 8 from the VGAE, 7 from the GAT).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.utils import scatter

from kdgat.data.batching import assemble_batch
from kdgat.data.store import GraphPart
from kdgat.models.gat import on_batch

VGAE_STATE = ("recon", "nbr", "id", "z_mean", "z_std", "z_max", "z_min", "confidence")
GAT_STATE = ("p_benign", "p_attack", "emb_mean", "emb_std", "emb_max", "emb_min", "confidence")


def _batches(part: GraphPart, batch_size: int):
    """Batches of ``batch_size`` windows, starting again at each capture of the part: `kdgat detect` scores a
    capture in the same batches, and a batch's composition moves a score in its last bits (a batch across two
    captures gave 0.11360765 where detect gave 0.113607675)."""
    files = getattr(part, "file_index", None)  # None: windows of one capture (detect's GraphArrays)
    starts = [] if files is None else (np.flatnonzero(np.diff(np.asarray(files))) + 1).tolist()
    bounds = [0, *starts, part.num_graphs]
    for first, end in zip(bounds[:-1], bounds[1:], strict=True):
        for start in range(first, end, batch_size):
            yield assemble_batch(part, np.arange(start, min(start + batch_size, end)))


@torch.inference_mode()
def score_gat(model, part: GraphPart, batch_size: int = 1024, with_embedding: bool = False) -> dict[str, np.ndarray]:
    """p(attack) per window, the GAT half of the fusion state, optionally the pooled embeddings."""
    model.eval()
    out: dict[str, list] = {k: [] for k in GAT_STATE}
    embeddings = []
    for batch in _batches(part, batch_size):
        logits, emb = on_batch(model, batch, return_embedding=True)
        prob = F.softmax(logits, dim=1)
        entropy = -(prob * prob.clamp_min(1e-12).log()).sum(dim=1)
        out["p_benign"].append(prob[:, 0])
        out["p_attack"].append(prob[:, 1])
        out["emb_mean"].append(emb.mean(dim=1))
        out["emb_std"].append(emb.std(dim=1, unbiased=False))
        out["emb_max"].append(emb.max(dim=1).values)
        out["emb_min"].append(emb.min(dim=1).values)
        out["confidence"].append((1 - entropy / math.log(2)).clamp(0, 1))
        if with_embedding:
            embeddings.append(emb)
    result = {k: torch.cat(v).numpy() for k, v in out.items()}
    result["score"] = result["p_attack"]
    if with_embedding:
        result["embedding"] = torch.cat(embeddings).numpy()
    return result


@torch.inference_mode()
def score_vgae(model, part: GraphPart, batch_size: int = 1024, with_embedding: bool = False) -> dict[str, np.ndarray]:
    """Anomaly score per window (the model's window score), whether it holds a novel CAN ID (``novel``) and
    the VGAE half of the fusion state."""
    model.eval()
    out: dict[str, list] = {k: [] for k in VGAE_STATE}
    embeddings, anomaly, novel = [], [], []
    for batch in _batches(part, batch_size):
        result = model(batch.x, batch.edge_index, batch.batch)
        novel.append(model.novel_windows(batch.x, batch.batch, batch.num_graphs))
        scores = model.graph_scores(result, batch.x, batch.edge_index, batch.batch, num_graphs=batch.num_graphs)
        for key in VGAE_STATE[:-1]:
            out[key].append(scores[key])
        anomaly.append(scores["anomaly"])
        out["confidence"].append(1.0 / (1.0 + scores["recon"]))
        if with_embedding:
            embeddings.append(scatter(result["z"], batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean"))
    result = {k: torch.cat(v).numpy() for k, v in out.items()}
    result["score"] = torch.cat(anomaly).numpy() if anomaly else np.zeros(0, np.float32)
    result["novel"] = torch.cat(novel).numpy() if novel else np.zeros(0, bool)
    if with_embedding:
        result["embedding"] = torch.cat(embeddings).numpy()
    return result


def score_boosting(model, part: GraphPart, batch_size: int = 1024, with_embedding: bool = False):
    """p(attack) of the hgb yardstick per window (no embedding: it has none)."""
    return {"score": model.p_attack(part)}


def score_novelty(model, part: GraphPart, batch_size: int = 1024, with_embedding: bool = False):
    """Anomaly score of the benign-only yardstick per window (no embedding)."""
    return {"score": model.anomaly(part)}


def score_model(kind: str, model, part: GraphPart, batch_size: int = 1024, with_embedding: bool = False):
    scorer = {"gat": score_gat, "vgae": score_vgae, "hgb": score_boosting, "novelty": score_novelty}[kind]
    return scorer(model, part, batch_size, with_embedding)


def fusion_state(vgae: dict[str, np.ndarray], gat: dict[str, np.ndarray]) -> np.ndarray:
    """The 15-value state per window: VGAE (8) then GAT (7), as in the reference design."""
    columns = [vgae[k] for k in VGAE_STATE] + [gat[k] for k in GAT_STATE]
    return np.stack(columns, axis=1).astype(np.float32)
