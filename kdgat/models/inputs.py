"""Inputs shared by the models: a CAN-ID embedding beside the numeric node features, and the
self-loops every GATConv layer attends over."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import add_self_loops, remove_self_loops


def check_sizes(num_ids: int, num_features: int) -> None:
    if num_ids < 1:
        raise ValueError(f"num_ids must be positive, got {num_ids}")
    if num_features < 2:
        raise ValueError(f"num_features must count the ID column and at least one numeric column, got {num_features}")


def embed_ids(embedding: nn.Embedding, x: Tensor) -> Tensor:
    """Column 0 of ``x`` is a vocabulary index: replace it by its embedding."""
    return torch.cat([embedding(x[:, 0].long()), x[:, 1:]], dim=-1)


def with_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """``edge_index`` with its self-loops replaced by exactly one per node.

    This is what ``GATConv(add_self_loops=True)`` does to its input on every call; the models do it
    once per forward pass and build their layers with ``add_self_loops=False``: the outputs are
    the same, each layer skips two edge-list rebuilds, and the only data-dependent shape of the
    forward pass sits here, outside the layers (which is what lets ``torch.compile`` fuse them).
    """
    edge_index, _ = remove_self_loops(edge_index)
    edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
    return edge_index
