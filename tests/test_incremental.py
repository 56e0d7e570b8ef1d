"""The incremental window builder equals the batch builder, array for array, on a real capture.

This is the contract of kdgat.data.incremental: a detector fed frame by frame (a bus) or block by
block (a large file) sees the graphs `kdgat graphs` builds over the whole file, timing features
(each ID's previous timestamp carried across blocks) included.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdgat.data.capture import sources_from_files
from kdgat.data.incremental import FrameBlock, WindowStream
from kdgat.data.timing import inter_arrival, median_periods, timing_frame_values
from kdgat.data.vocab import Vocabulary, count_keys
from kdgat.data.windows import GraphArrays, build_graphs, window_starts
from kdgat.stages.graphs import _read_frames
from kdgat.stages.ingest import run as run_ingest

ARRAYS = ("node_offsets", "edge_offsets", "x", "node_y", "edge_index", "edge_attr", "y", "window_start")


@pytest.fixture(scope="module")
def capture(data_root, tmp_path_factory):
    """ROAD fuzzing_attack_1 (49,342 labelled frames with timestamps) as the graphs stage reads it."""
    out = tmp_path_factory.mktemp("inc") / "frames"
    path = data_root / "road/attacks/fuzzing_attack_1.csv.xz"
    manifest = run_ingest(sources_from_files([path]), out)
    keys, data, labels, _names, timestamps = _read_frames(out / manifest.outputs[0].path)
    # vocabulary and periods from the first half, so the second half has unknown IDs and real gaps
    half = len(keys) // 2
    vocab = Vocabulary.from_counts(*count_keys([keys[:half]]), min_count=5)
    periods = median_periods([inter_arrival(timestamps[:half], keys[:half])], [vocab.lookup(keys[:half])], vocab.size)
    return keys, data, labels, timestamps, vocab, periods


def batch_graphs(capture, window, stride, n=None):
    keys, data, labels, timestamps, vocab, periods = capture
    n = len(keys) if n is None else n
    ids = vocab.lookup(keys[:n])
    values = timing_frame_values(timestamps[:n], keys[:n], ids, periods)
    return build_graphs(ids, data[:n], labels[:n], None, window=window, stride=stride, vocab_size=vocab.size,
                        frame_values=values)  # fmt: skip


def stream_graphs(capture, window, stride, sizes, n=None, group=1):
    keys, data, labels, timestamps, vocab, periods = capture
    n = len(keys) if n is None else n
    stream = WindowStream(window=window, stride=stride, vocab=vocab, periods=periods, group=group, max_windows=777)
    batches, at, i = [], 0, 0
    while at < n:
        size = int(sizes[i % len(sizes)])
        i += 1
        block = slice(at, min(at + size, n))
        batches += list(stream.push(FrameBlock(keys[block], data[block], timestamps[block], labels[block])))
        at = block.stop
    batches += list(stream.finish())
    return batches


def assert_same(batch: GraphArrays, incremental: GraphArrays):
    for name in ARRAYS:
        a, b = getattr(batch, name), getattr(incremental, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), name


@pytest.mark.parametrize("window,stride", [(100, 100), (100, 10), (100, 1)])
def test_incremental_equals_batch_on_a_real_capture(capture, window, stride):
    expected = batch_graphs(capture, window, stride)
    assert expected.num_graphs == len(window_starts(len(capture[0]), window, stride))
    rng = np.random.default_rng(window + stride)
    # odd block sizes: windows close in the middle of blocks, blocks shorter than a stride, single frames
    sizes = np.concatenate([rng.integers(1, 3, 50), rng.integers(1, 400, 50), [4096, 1, 7, 9973]])
    batches = stream_graphs(capture, window, stride, sizes)
    got = GraphArrays.concat([b.graphs for b in batches])
    assert_same(expected, got)
    # the stream positions of the windows and their frames
    first = np.concatenate([b.graphs.window_start for b in batches])
    last = np.concatenate([b.last_frame for b in batches])
    assert np.array_equal(last, first + window - 1)
    timestamps = capture[3]
    assert np.array_equal(np.concatenate([b.first_time for b in batches]), timestamps[first])
    assert np.array_equal(np.concatenate([b.last_time for b in batches]), timestamps[last])
    vocab = capture[4]
    oov = vocab.lookup(capture[0]) == vocab.oov_index
    share = np.concatenate([b.unknown_share for b in batches])
    assert np.allclose(share, [oov[a : b + 1].mean() for a, b in zip(first, last, strict=True)])
    assert share.max() > 0  # the second half has IDs the first half did not have


def test_frame_by_frame_and_grouped_feeding(capture):
    n = 3_000
    expected = batch_graphs(capture, 100, 10, n)
    one_by_one = stream_graphs(capture, 100, 10, [1], n)
    assert all(len(b) == 1 for b in one_by_one)  # a window goes out as soon as it closes
    assert_same(expected, GraphArrays.concat([b.graphs for b in one_by_one]))
    grouped = stream_graphs(capture, 100, 10, [250], n, group=64)
    assert [len(b) for b in grouped[:-1]] == [64] * (len(grouped) - 1)  # whole groups until the end
    assert_same(expected, GraphArrays.concat([b.graphs for b in grouped]))


@pytest.mark.parametrize("n", [1, 57, 100, 101, 150])
def test_short_streams_match_short_files(capture, n):
    expected = batch_graphs(capture, 100, 30, n)
    got = stream_graphs(capture, 100, 30, [13], n)
    assert_same(expected, GraphArrays.concat([b.graphs for b in got]))


def test_unlabelled_and_untimed_streams(capture):
    keys, data, _labels, _timestamps, vocab, periods = capture
    n = 2_000
    ids = vocab.lookup(keys[:n])
    expected = build_graphs(ids, data[:n], None, None, window=100, stride=50, vocab_size=vocab.size,
                            frame_values=timing_frame_values(None, keys[:n], ids, periods))  # fmt: skip
    stream = WindowStream(window=100, stride=50, vocab=vocab, periods=periods)
    blocks = [slice(i, min(i + 300, n)) for i in range(0, n, 300)]
    batches = [b for block in blocks for b in stream.push(FrameBlock(keys[block], data[block]))]
    batches += list(stream.finish())
    got = GraphArrays.concat([b.graphs for b in batches])
    assert_same(expected, got)
    assert np.all(got.y == -1) and np.all(got.x[:, -1] == 0)  # unlabelled; has_timestamps = 0
    mixed = WindowStream(window=100, stride=50, vocab=vocab, periods=periods)
    list(mixed.push(FrameBlock(keys[:5], data[:5])))
    with pytest.raises(ValueError, match="labelled"):
        list(mixed.push(FrameBlock(keys[5:9], data[5:9], labels=np.zeros(4, np.int8))))


def test_held_byte_scores_incremental_equal_batch(capture):
    """e4ts: each ID's last payload and byte runs carried across blocks give the whole file's scores."""
    from kdgat.data.payload_runs import fit_run_limits, held_frame_values, hold_histogram

    keys, data, labels, timestamps, vocab, periods = capture
    half = len(keys) // 2
    benign = labels[:half] == 0
    limits = fit_run_limits([hold_histogram(keys[:half][benign], data[:half][benign])], vocab.lookup, vocab.size)
    assert np.isfinite(limits).any() and np.isinf(limits).any()  # bytes that move, and bytes that do not
    ids = vocab.lookup(keys)
    held = held_frame_values(keys, data, ids, limits)
    assert held[0].max() > 0
    values = [*timing_frame_values(timestamps, keys, ids, periods), held]
    expected = build_graphs(ids, data, labels, None, window=100, stride=10, vocab_size=vocab.size, frame_values=values)
    stream = WindowStream(window=100, stride=10, vocab=vocab, periods=periods, run_limits=limits, max_windows=777)
    rng = np.random.default_rng(7)
    batches, at = [], 0
    while at < len(keys):
        block = slice(at, min(at + int(rng.integers(1, 500)), len(keys)))
        batches += list(stream.push(FrameBlock(keys[block], data[block], timestamps[block], labels[block])))
        at = block.stop
    batches += list(stream.finish())
    assert_same(expected, GraphArrays.concat([b.graphs for b in batches]))


@pytest.mark.parametrize("stride", [1, 7, 100])
def test_each_window_names_the_ids_behind_its_unknown_node(stride):
    """The out-of-vocabulary node is one node for every unknown ID: each window also carries those IDs (distinct,
    most frames first), so that detect can say which IDs are behind an alert instead of 'unknown'."""
    rng = np.random.default_rng(stride)
    vocab = Vocabulary.from_counts(np.arange(10, dtype=np.uint64), np.ones(10, np.int64))
    keys = rng.choice(np.arange(16, dtype=np.uint64), 3_000)  # 10 to 15 are unknown
    stream = WindowStream(window=100, stride=stride, vocab=vocab, periods=None, max_windows=256)
    batches = []
    for i in range(0, len(keys), 777):
        batches += stream.push(FrameBlock(keys[i : i + 777], np.zeros((len(keys[i : i + 777]), 8), np.uint8)))
    batches += stream.finish()
    starts = np.concatenate([b.graphs.window_start for b in batches])
    named = [k for b in batches for k in b.unknown_keys]
    assert len(named) == len(starts) > 10
    for start, got in zip(starts.tolist(), named, strict=True):
        frames = keys[start : start + 100]
        unknown, counts = np.unique(frames[frames >= 10], return_counts=True)
        expected = unknown[np.lexsort((unknown, -counts))]
        assert np.array_equal(got, expected), start
