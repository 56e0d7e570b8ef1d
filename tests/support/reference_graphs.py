"""Reference (slow, per-window, loop-based) window -> graph construction.

This is the executable specification that the vectorized implementation is
tested and benchmarked against. It follows the spec literally and shares no
code with the project's graph builder.

Spec ("E4" construction of the original study, chunking quirk fixed)
-------------------------------------------------------------------
Input is ONE source file (windows never cross files): ``ids`` int64 (n,)
vocabulary indices (the value is the node identity), ``data`` uint8 (n, 8)
payload bytes, ``labels`` int8 (n,) 0/1 or None, ``attack_codes`` int16 (n,)
(0 for benign) or None; window size W, stride S.

Windows
    n == 0 -> no windows. Otherwise K = max(1, (n - W) // S + 1); window k
    starts at s = k*S and covers source frames s .. min(s + W, n) - 1 (m frames;
    m < W only for the single short window when n < W). Trailing partial
    windows are discarded.
Transitions
    Frame j has successor j+1 within the FILE (not per chunk), except the
    file's last frame. Window transitions: (ids[j] -> ids[j+1]) for every
    source position j of the window with j + 1 < n, so the last transition may
    point into the next window. p = j - s is the in-window position (0..m-1).
Nodes
    Sorted unique vocab indices of transition sources U targets U the source of
    a successor-less frame (file's last frame, if in the window); local index =
    rank in that sorted list.
Edges
    Unique directed (src, dst) pairs of the transitions, sorted by
    (src local, dst local); self-loops kept; multiplicity is a feature only.
Node features x (num_nodes, 11), over the frames where the node is SOURCE
(all window frames with that ID, including the file's last frame):
    [0] vocab index; [1..8] mean(byte_b / 255);
    [9] source count c, min-max normalised over nodes with c >= 1:
        (c - min) / (max - min), raw c if max == min;
    [10] last source position p / (W - 1) (configured W; 0 if W == 1).
    Target-only nodes: only [0] set, all other columns 0.
Edge features edge_attr (num_edges, 11), p = source-frame positions of the
edge's occurrences, increasing:
    [0] count; [1] count / W; [2] mean of diff(p) (0 if count == 1);
    [3] population std of diff(p) (0 if count == 1);
    [4] 1 / (1 + std) if count >= 2 else 0;
    [5] first p / W; [6] last p / W; [7] (last p - first p) / W;
    [8] 1 if reverse edge (dst -> src) exists in the window (self-loop: 1);
    [9] deg(src) * deg(dst); [10] deg(src) / max(deg(dst), 1e-8), where
        deg(v) = occurrences of v in the transition source list + in the
        transition target list.
Labels
    y = 1 if any source frame has label 1 else 0 (-1 if labels is None);
    node_y[v] = 1 if any source frame of v has label 1 (all 0 if labels is None);
    attack_type = most frequent non-zero code among source frames with label 1
    (ties -> smallest code), 0 if none (so 0 when labels is None); -1 if
    attack_codes is None.
Output dict per window: x float32, edge_index int64 (2, E) local indices,
edge_attr float32 (E, 11), y int, node_y int8 (num_nodes,), attack_type int,
window_start int, node_ids int64 (num_nodes,).
"""

from __future__ import annotations

import math

import numpy as np

NODE_DIM = 11
EDGE_DIM = 11


def _window_starts(n: int, window: int, stride: int) -> list[int]:
    if n == 0:
        return []
    count = max(1, (n - window) // stride + 1)
    return [k * stride for k in range(count)]


def _one_window(ids, data, labels, attack_codes, n, s, window):
    W = window
    end = min(s + W, n)

    # --- transitions (positions p of the source frame) ---
    trans = []  # (src_vocab, dst_vocab, p)
    for j in range(s, end):
        if j + 1 < n:
            trans.append((int(ids[j]), int(ids[j + 1]), j - s))

    # --- nodes ---
    node_set = set()
    for src, dst, _ in trans:
        node_set.add(src)
        node_set.add(dst)
    for j in range(s, end):
        if j + 1 >= n:  # frame without successor (the file's last frame)
            node_set.add(int(ids[j]))
    node_ids = sorted(node_set)
    local = {v: i for i, v in enumerate(node_ids)}
    N = len(node_ids)

    # --- per-node source statistics ---
    src_frames = {v: [] for v in node_ids}  # source positions p per node
    for j in range(s, end):
        src_frames[int(ids[j])].append(j)

    x = np.zeros((N, NODE_DIM), dtype=np.float64)
    counts = {}
    for v in node_ids:
        x[local[v], 0] = float(v)
        frames = src_frames[v]
        if frames:
            counts[v] = len(frames)
            for b in range(8):
                total = 0.0
                for j in frames:
                    total += float(data[j, b]) / 255.0
                x[local[v], 1 + b] = total / len(frames)
            last_p = frames[-1] - s
            x[local[v], 10] = 0.0 if W == 1 else last_p / (W - 1)
    if counts:
        cmin = min(counts.values())
        cmax = max(counts.values())
        for v, c in counts.items():
            if cmax == cmin:
                x[local[v], 9] = float(c)
            else:
                x[local[v], 9] = (c - cmin) / (cmax - cmin)

    # --- degrees (occurrences in source list + target list) ---
    deg = {v: 0 for v in node_ids}
    for src, dst, _ in trans:
        deg[src] += 1
        deg[dst] += 1

    # --- edges ---
    edge_pos = {}  # (src_vocab, dst_vocab) -> list of p
    for src, dst, p in trans:
        edge_pos.setdefault((src, dst), []).append(p)
    edges = sorted(edge_pos.keys(), key=lambda e: (local[e[0]], local[e[1]]))
    E = len(edges)
    edge_index = np.zeros((2, E), dtype=np.int64)
    edge_attr = np.zeros((E, EDGE_DIM), dtype=np.float64)
    for e, (src, dst) in enumerate(edges):
        ps = edge_pos[(src, dst)]  # already increasing
        cnt = len(ps)
        edge_index[0, e] = local[src]
        edge_index[1, e] = local[dst]
        attr = edge_attr[e]
        attr[0] = cnt
        attr[1] = cnt / W
        if cnt >= 2:
            gaps = [ps[i + 1] - ps[i] for i in range(cnt - 1)]
            mean_gap = sum(gaps) / len(gaps)
            var = sum((g - mean_gap) ** 2 for g in gaps) / len(gaps)
            std = math.sqrt(var)
            attr[2] = mean_gap
            attr[3] = std
            attr[4] = 1.0 / (1.0 + std)
        attr[5] = ps[0] / W
        attr[6] = ps[-1] / W
        attr[7] = (ps[-1] - ps[0]) / W
        attr[8] = 1.0 if (dst, src) in edge_pos else 0.0
        attr[9] = deg[src] * deg[dst]
        attr[10] = deg[src] / max(deg[dst], 1e-8)

    # --- labels ---
    node_y = np.zeros(N, dtype=np.int8)
    if labels is None:
        y = -1
    else:
        y = 0
        for j in range(s, end):
            if int(labels[j]) == 1:
                y = 1
                node_y[local[int(ids[j])]] = 1
    if attack_codes is None:
        attack_type = -1
    else:
        freq = {}
        if labels is not None:
            for j in range(s, end):
                code = int(attack_codes[j])
                if int(labels[j]) == 1 and code != 0:
                    freq[code] = freq.get(code, 0) + 1
        attack_type = 0
        if freq:
            best = max(freq.values())
            attack_type = min(c for c, f in freq.items() if f == best)

    return {
        "x": x.astype(np.float32),
        "edge_index": edge_index,
        "edge_attr": edge_attr.astype(np.float32),
        "y": int(y),
        "node_y": node_y,
        "attack_type": int(attack_type),
        "window_start": int(s),
        "node_ids": np.asarray(node_ids, dtype=np.int64),
    }


def reference_graphs(
    ids: np.ndarray,
    data: np.ndarray,
    labels: np.ndarray | None,
    attack_codes: np.ndarray | None,
    window: int,
    stride: int,
) -> list[dict]:
    """Build one graph dict per window of a single source file (see module doc)."""
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be >= 1")
    ids = np.asarray(ids)
    data = np.asarray(data)
    n = int(ids.shape[0])
    return [_one_window(ids, data, labels, attack_codes, n, s, window) for s in _window_starts(n, window, stride)]


def _print_graphs(title: str, graphs: list[dict]) -> None:
    print(f"===== {title}")
    for g in graphs:
        print(
            f"--- window_start={g['window_start']} y={g['y']} attack_type={g['attack_type']} "
            f"node_ids={g['node_ids'].tolist()} node_y={g['node_y'].tolist()}"
        )
        print("x=\n", g["x"])
        print("edge_index=\n", g["edge_index"])
        print("edge_attr=\n", g["edge_attr"])


if __name__ == "__main__":
    np.set_printoptions(precision=4, suppress=True, linewidth=140)
    # payload of frame j, byte b = (8j + b) * 4 mod 256
    ex_data = (np.arange(8 * 8, dtype=np.int64).reshape(8, 8) * 4 % 256).astype(np.uint8)

    ex_ids = np.array([5, 7, 5, 5, 9, 7, 5, 9], dtype=np.int64)
    ex_labels = np.array([0, 0, 0, 1, 1, 0, 0, 1], dtype=np.int8)
    ex_codes = np.array([0, 0, 0, 2, 3, 0, 0, 3], dtype=np.int16)
    _print_graphs(
        f"example 1: ids={ex_ids.tolist()} labels={ex_labels.tolist()} codes={ex_codes.tolist()} W=4 S=2",
        reference_graphs(ex_ids, ex_data, ex_labels, ex_codes, window=4, stride=2),
    )

    # one 8-frame window with an edge repeated 3 times (non-zero gap std); unlabelled
    ex2_ids = np.array([5, 7, 5, 7, 7, 5, 7, 9], dtype=np.int64)
    _print_graphs(
        f"example 2: ids={ex2_ids.tolist()} unlabelled W=8 S=8",
        reference_graphs(ex2_ids, ex_data, None, None, window=8, stride=8),
    )
