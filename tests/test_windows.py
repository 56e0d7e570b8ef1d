"""Window -> graph construction: hand-computed features, the reference implementation, labels."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from support.reference_graphs import reference_graphs

from kdgat.data.capture import sources_from_files
from kdgat.data.vocab import Vocabulary, id_keys
from kdgat.data.windows import build_graphs, window_starts
from kdgat.stages.ingest import run as run_ingest

# 8 frames: IDs 5 7 5 5 9 7 5 9; window 4, stride 2 -> windows at 0, 2, 4.
IDS = np.array([5, 7, 5, 5, 9, 7, 5, 9])
DATA = np.zeros((8, 8), np.uint8)
DATA[:, 0] = [10, 20, 30, 40, 50, 60, 70, 80]  # byte 0 only, the rest zero
LABELS = np.array([0, 0, 0, 1, 1, 0, 0, 1], np.int8)
CODES = np.array([0, 0, 0, 2, 3, 0, 0, 3], np.int16)


def graphs_of(ids=IDS, data=DATA, labels=LABELS, codes=CODES, window=4, stride=2, vocab=12):
    return build_graphs(ids, data, labels, codes, window=window, stride=stride, vocab_size=vocab)


def graph(g, k):
    n0, n1 = g.node_offsets[k], g.node_offsets[k + 1]
    e0, e1 = g.edge_offsets[k], g.edge_offsets[k + 1]
    return g.x[n0:n1], g.edge_index[:, e0:e1], g.edge_attr[e0:e1], g.node_y[n0:n1]


def test_first_window_by_hand():
    """Window 0 = frames 0..3 (5 7 5 5); transitions 5>7, 7>5, 5>5, 5>9 (the last into the next window)."""
    g = graphs_of()
    assert len(g.y) == 3
    x, edge_index, edge_attr, node_y = graph(g, 0)
    # nodes sorted by vocabulary index: 5, 7, 9 (9 only as the target of the last transition)
    assert x[:, 0].tolist() == [5, 7, 9]
    # byte 0 mean / 255: ID 5 at frames 0, 2, 3 -> (10+30+40)/3; ID 7 at frame 1 -> 20; 9 never a source
    assert x[:, 1] == pytest.approx([80 / 3 / 255, 20 / 255, 0], abs=1e-6)
    assert np.all(x[:, 2:9] == 0)
    # counts as source: 5 -> 3, 7 -> 1 (9 excluded): min-max -> 1, 0
    assert x[:, 9].tolist() == [1, 0, 0]
    # last position / (W - 1): 5 at 3 -> 1, 7 at 1 -> 1/3
    assert x[:, 10] == pytest.approx([1, 1 / 3, 0])
    # edges sorted by (src, dst) local: 5>5, 5>7, 5>9, 7>5
    assert edge_index.tolist() == [[0, 0, 0, 1], [0, 1, 2, 0]]
    # every edge occurs once: count 1, count/W 0.25, no gaps, regularity 0
    assert edge_attr[:, 0].tolist() == [1, 1, 1, 1]
    assert edge_attr[:, 1].tolist() == [0.25] * 4
    assert np.all(edge_attr[:, 2:5] == 0)
    # positions of the source frame: 5>5 at 2, 5>7 at 0, 5>9 at 3, 7>5 at 1 (first = last, span 0)
    assert edge_attr[:, 5].tolist() == [0.5, 0.0, 0.75, 0.25]
    assert edge_attr[:, 6].tolist() == edge_attr[:, 5].tolist()
    assert np.all(edge_attr[:, 7] == 0)
    # reverse edge exists: self-loop yes, 5>7 and 7>5 yes, 5>9 no
    assert edge_attr[:, 8].tolist() == [1, 1, 0, 1]
    # degree = appearances in source list (5,7,5,5) + target list (7,5,5,9): 5 -> 3+2, 7 -> 1+1, 9 -> 0+1
    assert edge_attr[:, 9].tolist() == [25, 10, 5, 10]
    assert edge_attr[:, 10] == pytest.approx([1, 2.5, 5, 0.4])
    # frame 3 (ID 5) is an attack frame: graph label 1, node 5 labelled, attack code 2
    assert g.y[0] == 1 and g.attack_type[0] == 2
    assert node_y.tolist() == [1, 0, 0]


def test_repeated_edge_gaps_by_hand():
    """One window 5 7 5 7 7 5 7 9: edge 5>7 at positions 0, 2, 5 -> gaps 2, 3."""
    ids = np.array([5, 7, 5, 7, 7, 5, 7, 9])
    g = build_graphs(ids, np.zeros((8, 8), np.uint8), None, None, window=8, stride=8, vocab_size=12)
    _, edge_index, edge_attr, _ = graph(g, 0)
    first = edge_index.T.tolist().index([0, 1])
    assert edge_attr[first, 0] == 3
    assert edge_attr[first, 2] == pytest.approx(2.5)  # mean gap
    assert edge_attr[first, 3] == pytest.approx(0.5)  # population std of (2, 3)
    assert edge_attr[first, 4] == pytest.approx(1 / 1.5)  # regularity
    assert edge_attr[first, 7] == pytest.approx(5 / 8)  # span
    assert g.y.tolist() == [-1] and g.attack_type.tolist() == [-1]


def test_label_rule_any_attack_frame_makes_the_window_an_attack():
    labels = np.zeros(8, np.int8)
    labels[6] = 1  # only in the last window (frames 4..7)
    g = graphs_of(labels=labels, codes=labels.astype(np.int16) * 4)
    assert g.y.tolist() == [0, 0, 1]
    assert g.attack_type.tolist() == [0, 0, 4]


def test_window_counts():
    assert window_starts(0, 100, 100).tolist() == []
    assert window_starts(50, 100, 100).tolist() == [0]  # a short file: one short window
    assert len(window_starts(245_144, 100, 100)) == 2_451
    assert len(window_starts(245_144, 100, 50)) == 4_901


def compare_with_reference(ids, data, labels, codes, window, stride, vocab):
    fast = build_graphs(ids, data, labels, codes, window=window, stride=stride, vocab_size=vocab)
    ref = reference_graphs(ids, data, labels, codes, window, stride)
    assert fast.num_graphs == len(ref)
    for k, r in enumerate(ref):
        x, edge_index, edge_attr, node_y = graph(fast, k)
        assert x[:, 0].tolist() == r["node_ids"].tolist()
        np.testing.assert_allclose(x, r["x"], rtol=1e-5, atol=1e-6)
        assert edge_index.tolist() == r["edge_index"].tolist()
        np.testing.assert_allclose(edge_attr, r["edge_attr"], rtol=1e-5, atol=1e-5)
        assert fast.window_start[k] == r["window_start"]
        if labels is not None:
            assert fast.y[k] == r["y"] and node_y.tolist() == r["node_y"].tolist()
            assert fast.attack_type[k] == r["attack_type"]


@pytest.fixture(scope="module")
def daga_frames(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("daga")
    path = data_root / "daga-v40/infected/DenialOfService/lowestID_V40_03.can.csv.xz"
    manifest = run_ingest(sources_from_files([path], attack_type="dos"), out)
    table = pq.read_table(out / manifest.outputs[0].path).slice(20_000, 6_000)  # includes DoS bursts
    keys = id_keys(table["can_id"].to_numpy(), table["is_extended"].to_numpy())
    uniq, counts = np.unique(keys, return_counts=True)
    vocab = Vocabulary.from_counts(uniq, counts)
    data = np.frombuffer(table["data"].combine_chunks().buffers()[1], np.uint8).reshape(-1, 8)
    labels = table["label"].to_numpy().astype(np.int8)
    return vocab.lookup(keys), data[: len(keys)], labels, vocab.size


@pytest.mark.parametrize(("window", "stride"), [(100, 100), (100, 50), (50, 7), (13, 20)])
def test_matches_reference_on_a_real_capture(daga_frames, window, stride):
    ids, data, labels, vocab = daga_frames
    assert labels.sum() > 0
    compare_with_reference(ids, data, labels, labels.astype(np.int16), window, stride, vocab)


def test_matches_reference_for_short_and_tiny_files(daga_frames):
    ids, data, labels, vocab = daga_frames
    for n in (1, 2, 37):
        compare_with_reference(ids[:n], data[:n], labels[:n], labels[:n].astype(np.int16), 100, 100, vocab)


def test_oov_ids_never_crash():
    vocab = Vocabulary.from_counts(np.array([0x100, 0x200], np.uint64), np.array([5, 1]), min_count=2)
    assert vocab.size == 2 and vocab.oov_index == 1  # 0x200 seen once -> OOV
    keys = id_keys(np.array([0x100, 0x200, 0x7FF, 0x18FEF100], np.uint32), np.array([False, False, False, True]))
    ids = vocab.lookup(keys)
    assert ids.tolist() == [0, 1, 1, 1]
    g = build_graphs(ids, np.zeros((4, 8), np.uint8), None, None, window=4, stride=4, vocab_size=vocab.size)
    assert g.x[:, 0].tolist() == [0, 1]


def test_standard_and_extended_ids_are_different_keys():
    keys = id_keys(np.array([0x100, 0x100], np.uint32), np.array([False, True]))
    assert keys[0] != keys[1]
    vocab = Vocabulary.from_counts(keys[:1], np.array([3]))
    assert vocab.lookup(keys).tolist() == [0, vocab.oov_index]
    assert Vocabulary.from_json(vocab.to_json()).keys.tolist() == vocab.keys.tolist()


def test_deterministic(daga_frames):
    ids, data, labels, vocab = daga_frames
    a = build_graphs(ids, data, labels, None, window=100, stride=30, vocab_size=vocab)
    b = build_graphs(ids, data, labels, None, window=100, stride=30, vocab_size=vocab)
    for field in ("node_offsets", "edge_offsets", "x", "edge_index", "edge_attr", "y", "node_y"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
