"""Explanations of GAT decisions with torch-geometric's explain module (GNNExplainer).

The CAN-ID column is an embedding index, which a feature mask must not scale,
so the explainer sees the numeric node features only and the IDs of the graph
being explained are held fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch_geometric.explain import Explainer, GNNExplainer

from kdgat.data.batching import assemble_batch
from kdgat.data.store import GraphPart


class _NumericInput(nn.Module):
    """The GAT as a function of the numeric node features, IDs fixed per explained graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.ids: torch.Tensor | None = None

    def forward(self, x_numeric, edge_index, batch=None, edge_attr=None):
        x = torch.cat([self.ids.unsqueeze(1), x_numeric], dim=1)
        batch = torch.zeros(x.size(0), dtype=torch.long) if batch is None else batch
        return self.model(x, edge_index, batch, edge_attr=edge_attr)


def explain_gat(
    model: nn.Module,
    part: GraphPart,
    graphs: np.ndarray,
    epochs: int = 50,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Node-feature and edge masks of each graph in ``graphs``, flat with offsets (no pickled objects).

    ``progress(i, n)`` is called before graph i of n (each takes ``epochs`` optimisation steps).
    """
    torch.manual_seed(seed)
    wrapper = _NumericInput(model.eval())
    explainer = Explainer(
        model=wrapper,
        algorithm=GNNExplainer(epochs=epochs),
        explanation_type="model",
        node_mask_type="attributes",
        edge_mask_type="object",
        model_config={"mode": "multiclass_classification", "task_level": "graph", "return_type": "raw"},
    )
    node_masks, edge_masks, predictions = [], [], []
    for position, index in enumerate(graphs, 1):
        if progress:
            progress(position, len(graphs))
        batch = assemble_batch(part, np.array([index]))
        wrapper.ids = batch.x[:, 0]
        explanation = explainer(batch.x[:, 1:], batch.edge_index, batch=batch.batch, edge_attr=batch.edge_attr)
        node_masks.append(explanation.node_mask.detach().numpy())
        edge_masks.append(explanation.edge_mask.detach().numpy())
        with torch.no_grad():
            logits = wrapper(batch.x[:, 1:], batch.edge_index, batch.batch, edge_attr=batch.edge_attr)
            predictions.append(int(logits.argmax(dim=1)))
    labels = np.asarray(part.y)[graphs]
    return {
        "graph_indices": np.asarray(graphs),
        "labels": labels,
        "predictions": np.asarray(predictions),
        "node_mask": np.concatenate(node_masks) if node_masks else np.zeros((0, 0), np.float32),
        "node_offsets": np.concatenate(([0], np.cumsum([len(m) for m in node_masks]))).astype(np.int64),
        "edge_mask": np.concatenate(edge_masks) if edge_masks else np.zeros(0, np.float32),
        "edge_offsets": np.concatenate(([0], np.cumsum([len(m) for m in edge_masks]))).astype(np.int64),
    }


def sample_graphs(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Up to ``count`` graph indices, half attack and half benign where possible (seeded)."""
    rng = np.random.default_rng(seed)
    attack, benign = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_attack = min(len(attack), count // 2)
    n_benign = min(len(benign), count - n_attack)
    chosen = np.concatenate((rng.choice(attack, n_attack, replace=False), rng.choice(benign, n_benign, replace=False)))
    return np.sort(chosen)
