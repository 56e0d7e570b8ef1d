"""Sliding windows of one capture -> flat graph arrays (the E4 construction), vectorized.

A window of W source frames becomes one graph: nodes are the distinct CAN IDs
among the window's transitions (frame j -> frame j+1, computed over the whole
file, so the last transition may point into the next window), edges are the
distinct transitions with their multiplicity and timing-by-position as
features. The exact definition is spelled out, per window and in plain loops,
in ``tests/support/reference_graphs.py``; the tests check this module against it.

Everything here works on whole chunks of windows at once: a window's frames
form one row of a (windows x W) matrix, so per-node and per-edge statistics are
bincounts and segment reductions, never a Python loop over windows or frames.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

NODE_FEATURES = 11
EDGE_FEATURES = 11
# Windows per chunk: small enough that the per-slot arrays stay in cache (measured:
# ~6.5e4 slots per chunk is ~2x faster than 5e6), and the (windows x vocabulary) node
# lookup table stays small for large vocabularies.
_CHUNK_SLOTS = 1 << 16
_CHUNK_CELLS = 1 << 22


@dataclass
class GraphArrays:
    """Flat arrays of many graphs (the layout of a store part)."""

    node_offsets: np.ndarray  # int64 (G+1,)
    edge_offsets: np.ndarray  # int64 (G+1,)
    x: np.ndarray  # float32 (N, 11)
    node_y: np.ndarray  # int8 (N,)
    edge_index: np.ndarray  # int32 (2, E), local node indices
    edge_attr: np.ndarray  # float32 (E, 11)
    y: np.ndarray  # int8 (G,)
    attack_type: np.ndarray  # int16 (G,)
    window_start: np.ndarray  # int64 (G,)

    @property
    def num_graphs(self) -> int:
        return len(self.y)

    @classmethod
    def of(cls, part) -> "GraphArrays":
        """A store part's arrays (memory-mapped there) in memory, as the window builder hands them over."""
        return cls(**{f.name: np.array(getattr(part, f.name)) for f in fields(cls)})

    @staticmethod
    def concat(parts: list["GraphArrays"]) -> "GraphArrays":
        if not parts:
            return empty_graphs()
        node_base = np.cumsum([0] + [p.node_offsets[-1] for p in parts[:-1]])
        edge_base = np.cumsum([0] + [p.edge_offsets[-1] for p in parts[:-1]])
        return GraphArrays(
            node_offsets=np.concatenate(
                [[0]] + [p.node_offsets[1:] + b for p, b in zip(parts, node_base, strict=True)]
            ),
            edge_offsets=np.concatenate(
                [[0]] + [p.edge_offsets[1:] + b for p, b in zip(parts, edge_base, strict=True)]
            ),
            x=np.concatenate([p.x for p in parts]),
            node_y=np.concatenate([p.node_y for p in parts]),
            edge_index=np.concatenate([p.edge_index for p in parts], axis=1),
            edge_attr=np.concatenate([p.edge_attr for p in parts]),
            y=np.concatenate([p.y for p in parts]),
            attack_type=np.concatenate([p.attack_type for p in parts]),
            window_start=np.concatenate([p.window_start for p in parts]),
        )


def empty_graphs(node_features: int = NODE_FEATURES) -> GraphArrays:
    return GraphArrays(
        node_offsets=np.zeros(1, np.int64),
        edge_offsets=np.zeros(1, np.int64),
        x=np.zeros((0, node_features), np.float32),
        node_y=np.zeros(0, np.int8),
        edge_index=np.zeros((2, 0), np.int32),
        edge_attr=np.zeros((0, EDGE_FEATURES), np.float32),
        y=np.zeros(0, np.int8),
        attack_type=np.zeros(0, np.int16),
        window_start=np.zeros(0, np.int64),
    )


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def window_starts(n: int, window: int, stride: int) -> np.ndarray:
    """Start positions: max(1, (n - W) // S + 1) windows; a file shorter than W gives one short window."""
    if n == 0:
        return np.zeros(0, np.int64)
    count = max(1, (n - window) // stride + 1)
    return np.arange(count, dtype=np.int64) * stride


def build_graphs(
    ids: np.ndarray,
    data: np.ndarray,
    labels: np.ndarray | None,
    attack_codes: np.ndarray | None,
    *,
    window: int,
    stride: int,
    vocab_size: int,
    starts: np.ndarray | None = None,
    frame_values: list[tuple[np.ndarray, tuple[str, ...]]] = (),
) -> GraphArrays:
    """Graphs of every window of one capture.

    ``ids`` are vocabulary indices (< vocab_size), ``data`` the (n, 8) payload
    bytes, ``labels`` 0/1 per frame (None: unlabelled -> y = -1),
    ``attack_codes`` the attack-type code per frame (0 benign). ``starts``
    restricts the build to the given window starts (default: all).
    ``frame_values`` adds node features beyond the 11 of E4: for each
    (per-frame values, aggregations) pair, the aggregations ("mean", "min",
    "max") of the values over the node's source frames, in that order
    (0 for nodes that are only targets). Richer feature sets use this.
    """
    n = len(ids)
    starts = window_starts(n, window, stride) if starts is None else np.asarray(starts, np.int64)
    if len(starts) == 0:
        return empty_graphs(NODE_FEATURES + sum(len(hows) for _, hows in frame_values))
    chunk = max(16, min(_CHUNK_SLOTS // window, _CHUNK_CELLS // max(vocab_size, 1)))
    parts = [
        _build_chunk(ids, data, labels, attack_codes, starts[i : i + chunk], window, vocab_size, frame_values)
        for i in range(0, len(starts), chunk)
    ]
    return parts[0] if len(parts) == 1 else GraphArrays.concat(parts)


def _segment_minmax(values: np.ndarray, offsets: np.ndarray, present: np.ndarray):
    """Per-segment min and max of ``values`` over the entries where ``present`` is True."""
    lo = np.where(present, values, np.inf)
    hi = np.where(present, values, -np.inf)
    seg = offsets[:-1]
    return np.minimum.reduceat(lo, seg), np.maximum.reduceat(hi, seg)


def _reverse_exists(u_row, u_src, u_tgt, u_key, width, c) -> np.ndarray:
    """For each unique edge, whether its reverse is an edge of the same window."""
    if c * width * width <= _CHUNK_CELLS * 16:  # dense adjacency per window: two O(E) passes
        adjacency = np.zeros(c * width * width, dtype=bool)
        base = u_row * (width * width)
        adjacency[base + u_key] = True
        return adjacency[base + u_tgt * width + u_src]
    global_key = u_row * (width * width) + u_key  # sorted: rows ascend, keys ascend within a row
    reverse_key = u_row * (width * width) + u_tgt * width + u_src
    found = np.minimum(np.searchsorted(global_key, reverse_key), max(len(global_key) - 1, 0))
    return (len(global_key) > 0) & (global_key[found] == reverse_key)


def _aggregate(values, src_node, num_nodes, count, is_src, how):
    """Mean, min or max of per-slot values per node (0 where the node has no source frame)."""
    if how == "mean":
        return np.bincount(src_node, weights=values, minlength=num_nodes) / np.maximum(count, 1)
    out = np.full(num_nodes, np.inf if how == "min" else -np.inf)
    (np.minimum if how == "min" else np.maximum).at(out, src_node, values)
    return np.where(is_src, out, 0.0)


def _build_chunk(ids, data, labels, attack_codes, starts, window, vocab_size, frame_values=()) -> GraphArrays:
    n = len(ids)
    c = len(starts)
    cols = np.arange(window, dtype=np.int64)
    pos = starts[:, None] + cols  # (c, W) frame index of each source slot
    valid = pos < n  # only a file shorter than W has a short window
    succ = valid & (pos + 1 < n)  # slots with a transition to the next frame
    frame = np.where(valid, pos, 0)
    row = np.broadcast_to(np.arange(c, dtype=np.int64)[:, None], pos.shape)

    src_id = ids[frame]
    tgt_id = ids[np.where(succ, frame + 1, 0)]
    v = np.int64(vocab_size)
    src_key = row * v + src_id
    tgt_key = row * v + tgt_id

    # Nodes: distinct (window, id) among sources and targets, ordered by (window, id).
    present = np.zeros(c * vocab_size, dtype=bool)
    present[src_key[valid]] = True
    present[tgt_key[succ]] = True
    node_key = np.flatnonzero(present)
    num_nodes = len(node_key)
    lut = np.zeros(c * vocab_size, dtype=np.int64)
    lut[node_key] = np.arange(num_nodes)
    node_win = node_key // v
    node_offsets = _offsets(np.bincount(node_win, minlength=c))

    src_node = lut[src_key[valid]]  # global node of every source slot (row-major: window, position)
    slot_pos = np.broadcast_to(cols, pos.shape)[valid]
    slot_frame = frame[valid]

    # Node features over the frames where the node is the source.
    count = np.bincount(src_node, minlength=num_nodes).astype(np.float64)
    is_src = count > 0
    extra = sum(len(hows) for _, hows in frame_values)
    x = np.zeros((num_nodes, NODE_FEATURES + extra), dtype=np.float32)
    x[:, 0] = node_key % v
    safe = np.maximum(count, 1)
    payload = data[slot_frame].T.astype(np.float64)  # (8, slots): contiguous weights per byte
    for b in range(8):
        x[:, 1 + b] = np.bincount(src_node, weights=payload[b], minlength=num_nodes) / safe / 255.0
    lo, hi = _segment_minmax(count, node_offsets, is_src)
    lo, hi = np.repeat(lo, np.diff(node_offsets)), np.repeat(hi, np.diff(node_offsets))
    span = hi - lo
    normalised = np.where(span > 0, (count - lo) / np.where(span > 0, span, 1), count)
    x[:, 9] = np.where(is_src, normalised, 0)
    last = np.full(num_nodes, -1, dtype=np.int64)
    np.maximum.at(last, src_node, slot_pos)
    x[:, 10] = np.where(is_src, last / max(window - 1, 1), 0) if window > 1 else 0
    column = NODE_FEATURES
    for values, hows in frame_values:
        slot_values = values[slot_frame].astype(np.float64)
        for how in hows:
            x[:, column] = _aggregate(slot_values, src_node, num_nodes, count, is_src, how)
            column += 1

    # Edges: distinct (window, src, dst) transitions, sorted within each window.
    local_src = lut[src_key] - node_offsets[:-1][:, None]
    local_tgt = lut[np.where(succ, tgt_key, src_key)] - node_offsets[:-1][:, None]
    width = int(np.diff(node_offsets).max()) if c else 1
    sentinel = width * width
    local_key = np.where(succ, local_src * width + local_tgt, sentinel)
    order = np.argsort(local_key, axis=1, kind="stable")  # keeps positions increasing within an edge
    sorted_key = np.take_along_axis(local_key, order, axis=1)
    sorted_pos = order  # a slot's column is its position in the window
    keep = sorted_key != sentinel
    e_row = row[keep]
    e_key = sorted_key[keep]
    e_pos = sorted_pos[keep].astype(np.float64)
    new_edge = np.ones(len(e_key), dtype=bool)
    new_edge[1:] = (e_key[1:] != e_key[:-1]) | (e_row[1:] != e_row[:-1])
    edge_id = np.cumsum(new_edge) - 1
    num_edges = int(edge_id[-1] + 1) if len(edge_id) else 0
    first_idx = np.flatnonzero(new_edge)
    last_idx = np.append(first_idx[1:], len(e_key)) - 1 if len(first_idx) else first_idx
    u_key = e_key[first_idx]
    u_row = e_row[first_idx]
    e_count = (last_idx - first_idx + 1).astype(np.float64)
    first_pos, last_pos = e_pos[first_idx], e_pos[last_idx]
    gaps = np.diff(e_pos, prepend=0.0)
    repeat = ~new_edge
    gap_sq = np.bincount(edge_id[repeat], weights=gaps[repeat] ** 2, minlength=num_edges)
    multi = e_count >= 2
    n_gaps = np.maximum(e_count - 1, 1)
    gap_mean = np.where(multi, (last_pos - first_pos) / n_gaps, 0.0)
    gap_std = np.where(multi, np.sqrt(np.maximum(gap_sq / n_gaps - gap_mean**2, 0.0)), 0.0)

    u_src, u_tgt = u_key // width, u_key % width
    reverse = _reverse_exists(u_row, u_src, u_tgt, u_key, width, c)

    degree = np.bincount(lut[src_key[succ]], minlength=num_nodes) + np.bincount(lut[tgt_key[succ]], minlength=num_nodes)
    base = node_offsets[:-1][u_row]
    deg_src = degree[base + u_src].astype(np.float64)
    deg_dst = degree[base + u_tgt].astype(np.float64)

    edge_attr = np.empty((num_edges, EDGE_FEATURES), dtype=np.float32)
    edge_attr[:, 0] = e_count
    edge_attr[:, 1] = e_count / window
    edge_attr[:, 2] = gap_mean
    edge_attr[:, 3] = gap_std
    edge_attr[:, 4] = np.where(multi, 1.0 / (1.0 + gap_std), 0.0)
    edge_attr[:, 5] = first_pos / window
    edge_attr[:, 6] = last_pos / window
    edge_attr[:, 7] = (last_pos - first_pos) / window
    edge_attr[:, 8] = reverse
    edge_attr[:, 9] = deg_src * deg_dst
    edge_attr[:, 10] = deg_src / np.maximum(deg_dst, 1e-8)
    edge_offsets = _offsets(np.bincount(u_row, minlength=c))
    edge_index = np.empty((2, num_edges), dtype=np.int32)
    edge_index[0], edge_index[1] = u_src, u_tgt

    # Labels.
    if labels is None:
        y = np.full(c, -1, np.int8)
        node_y = np.full(num_nodes, -1, np.int8)
    else:
        window_labels = np.where(valid, labels[frame], 0)
        y = window_labels.max(axis=1).astype(np.int8)
        node_y = np.zeros(num_nodes, np.int8)
        attacked_slots = window_labels[valid] == 1
        node_y[src_node[attacked_slots]] = 1
    if attack_codes is None:
        attack_type = np.full(c, -1, np.int16)
    else:
        codes = attack_codes[slot_frame].astype(np.int64)
        attacked = codes > 0 if labels is None else (codes > 0) & (labels[slot_frame] == 1)
        n_codes = int(codes.max()) + 1 if len(codes) else 1
        table = np.bincount(row[valid][attacked] * n_codes + codes[attacked], minlength=c * n_codes)
        table = table.reshape(c, n_codes)
        attack_type = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), 0).astype(np.int16)

    return GraphArrays(
        node_offsets=node_offsets,
        edge_offsets=edge_offsets,
        x=x,
        node_y=node_y,
        edge_index=edge_index,
        edge_attr=edge_attr,
        y=y,
        attack_type=attack_type,
        window_start=starts.copy(),
    )
