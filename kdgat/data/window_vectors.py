"""One fixed-length vector per window, from the same graph store the GNNs read: the classical yardstick's input.

A gradient-boosting model cannot read a graph, so each window becomes a row of named columns
derived from its graph's nodes (the per-ID features of the store, one node per CAN ID):

- per vocabulary ID: present (0/1), its count feature (``count_minmax``: scaled within the window),
  its smallest arrival-time ratio and, for feature sets with timing, its share of early frames (NaN
  where the ID is absent: the model learns "absent" apart from "zero");
- per vocabulary ID, for ``e4ts``: its held-byte score (how long a byte kept its value, against the
  training runs; kdgat/data/payload_runs.py);
- per vocabulary ID and payload byte: the ID's mean byte value in the window (per-ID payload
  models are what masquerade needs; detection notes, point 4) — only while the vocabulary is
  small enough that this stays under :data:`MAX_PAYLOAD_COLUMNS` columns;
- per window: node and edge counts, whether the unknown (OOV) node is there (0/1: every unknown ID
  shares it), and the minimum, mean and maximum over nodes of every node feature.

Everything is computed with ``np.add.at``/``np.minimum.at`` over the flat node arrays: no Python
loop over windows.
"""

from __future__ import annotations

import numpy as np

from kdgat.data.store import GraphPart

MAX_PAYLOAD_COLUMNS = 4096
_BYTES = slice(1, 9)  # node features 1..8: mean payload byte / 255
_COUNT = 9
_RATIO_MIN = 12  # e4t: dt_ratio_min
_EARLY = 14  # e4t: early_share


def window_vectors(part: GraphPart, vocab_size: int, node_features: list[str]) -> tuple[np.ndarray, list[str]]:
    """(G, D) float32 vectors of ``part``'s windows and their column names."""
    x = np.asarray(part.x, dtype=np.float64)
    node_offsets = np.asarray(part.node_offsets)
    edge_offsets = np.asarray(part.edge_offsets)
    graphs = part.num_graphs
    nodes_per_graph = np.diff(node_offsets)
    graph_of_node = np.repeat(np.arange(graphs), nodes_per_graph)
    ids = x[:, 0].astype(np.int64)
    cell = graph_of_node * vocab_size + ids
    timing = len(node_features) > _EARLY and node_features[_RATIO_MIN] == "dt_ratio_min"

    columns: list[np.ndarray] = []
    names: list[str] = []

    def per_id(values: np.ndarray, name: str, fill: float) -> None:
        grid = np.full(graphs * vocab_size, fill)
        grid[cell] = values
        columns.append(grid.reshape(graphs, vocab_size))
        names.extend(f"id{i}_{name}" for i in range(vocab_size))

    per_id(np.ones(len(ids)), "present", 0.0)
    per_id(x[:, _COUNT], "count", 0.0)
    if timing:
        per_id(x[:, _RATIO_MIN], "ratio_min", np.nan)
        per_id(x[:, _EARLY], "early", np.nan)
    if "held_max" in node_features:
        per_id(x[:, node_features.index("held_max")], "held", np.nan)
    if vocab_size * 8 <= MAX_PAYLOAD_COLUMNS:
        for b in range(8):
            per_id(x[:, _BYTES][:, b], f"byte{b}", np.nan)

    columns.append(
        np.stack([nodes_per_graph, np.diff(edge_offsets), _count(graph_of_node, ids == vocab_size - 1, graphs)], 1)
    )
    names += ["nodes", "edges", "unknown_ids"]  # unknown_ids: 0/1, the OOV node's presence
    for j in range(1, x.shape[1]):
        low = np.full(graphs, np.inf)
        high = np.full(graphs, -np.inf)
        np.minimum.at(low, graph_of_node, x[:, j])
        np.maximum.at(high, graph_of_node, x[:, j])
        mean = np.bincount(graph_of_node, weights=x[:, j], minlength=graphs) / np.maximum(nodes_per_graph, 1)
        columns.append(np.stack([low, mean, high], 1))
        names += [f"{node_features[j]}_{how}" for how in ("min", "mean", "max")]
    return np.concatenate(columns, axis=1).astype(np.float32), names


def _count(graph_of_node: np.ndarray, mask: np.ndarray, graphs: int) -> np.ndarray:
    return np.bincount(graph_of_node[mask], minlength=graphs).astype(np.float64)
