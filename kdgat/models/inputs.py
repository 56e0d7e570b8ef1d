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


def has_frame(x: Tensor) -> Tensor:
    """Nodes ``(N,)`` with a frame of their own. A node that only receives the window's last transition (the
    next window's first frame) has every numeric feature 0: nothing of its ID's traffic is in it, so no
    statistic of an ID's nodes, no reconstruction error and no standardised input may read it as one."""
    return (x[:, 1:] != 0).any(dim=1)


EDGE_CLIP = 10.0  # standardised edge features are clipped here (a new capture's outliers stay finite)


def standardize(values: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(values - mean) / std with the store's training statistics, clipped to +-EDGE_CLIP."""
    return ((values - mean) / std).clamp(-EDGE_CLIP, EDGE_CLIP)


def stat_buffers(stats: dict | None, key: str, width: int, skip: int = 0) -> tuple[Tensor, Tensor]:
    """The store's training mean and std of ``feature_stats[key]`` (std 0 -> 1), or 0 / 1 without stats."""
    if stats is None:
        return torch.zeros(width), torch.ones(width)
    mean = torch.tensor(stats[key]["mean"][skip:], dtype=torch.float32)
    std = torch.tensor(stats[key]["std"][skip:], dtype=torch.float32)
    return mean, torch.where(std < 1e-6, torch.ones_like(std), std)


def with_self_loops_and_attributes(edge_index: Tensor, edge_attr: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """A self-loop on every node, for layers that read edge features.

    A loop of the data (an ID's frame followed by one of the same ID) is a transition like any other and
    keeps its features (how often, how fast: a flood of one ID shows there); a node without one gets a
    loop carrying the mean of its incoming edges' features. (Replacing every loop, as :func:`with_self_loops`
    does for layers without edge features, where a loop is a loop, threw those features away.)
    """
    own = edge_index[0] == edge_index[1]
    looped = torch.zeros(num_nodes, dtype=torch.bool, device=edge_index.device)
    looped[edge_index[0, own]] = True
    every_index, every_attr = add_self_loops(edge_index, edge_attr, fill_value="mean", num_nodes=num_nodes)
    # add_self_loops appends one loop per node, in node order, after the edges it was given
    keep = torch.cat((torch.ones(edge_index.size(1), dtype=torch.bool, device=edge_index.device), ~looped))
    return every_index[:, keep], every_attr[keep]


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
