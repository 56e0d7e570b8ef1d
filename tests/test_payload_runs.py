"""The e4ts held-byte score: byte runs (whole stream = any split into blocks), limits fitted on benign
training runs only, the store, and a detector bundle that scores as evaluate does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.data.payload_runs import (
    MIN_CHANGE_SHARE,
    MIN_CHANGES,
    RUN_CLIP,
    RunState,
    byte_runs,
    fit_run_limits,
    held_scores,
    hold_histogram,
)

MODIFIED = "crysys/S-1-1-malicious-CONST-msg-mod-0x410-0.4-0.6.log.xz"


def _runs_by_hand(keys: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The definition, frame by frame: a byte's run grows while its ID's frames repeat its value."""
    last: dict[int, np.ndarray] = {}
    run: dict[int, np.ndarray] = {}
    out = np.zeros((len(keys), 8), np.int64)
    for i, (key, payload) in enumerate(zip(keys.tolist(), data, strict=True)):
        out[i] = np.where(payload == last[key], run[key] + 1, 0) if key in last else 0
        last[key], run[key] = payload, out[i]
    return out


def test_byte_runs_are_the_definition_in_one_pass_and_in_any_blocks():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 300))
        keys = rng.integers(0, 5, n).astype(np.uint64)
        data = rng.integers(0, 3, (n, 8)).astype(np.uint8)  # 3 values: long runs and changes both
        expected = _runs_by_hand(keys, data)
        assert np.array_equal(byte_runs(keys, data), expected)
        cuts = [0, *sorted(set(rng.integers(0, n, int(rng.integers(1, 8))).tolist())), n]
        state = RunState()
        blocks = [byte_runs(keys[a:b], data[a:b], state) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        assert np.array_equal(np.concatenate(blocks), expected)


def test_limits_count_each_hold_once_need_moving_bytes_and_never_span_streams():
    # ID 7, 101 frames: byte 0 holds 25 times for 2 frames, then for 26 (the stream's end cuts it);
    # byte 1 never changes; byte 2 changes on every frame; byte 3 changes 3 times
    n = 101
    data = np.zeros((n, 8), np.uint8)
    data[:50, 0] = np.repeat(np.arange(25) % 2 + 1, 2)
    data[50:, 0] = 9
    data[:, 2] = np.arange(n) % 2
    data[:, 3] = np.repeat(np.arange(4), 26)[:n]
    keys = np.full(n, 7, np.uint64)
    histogram = hold_histogram(keys, data)
    assert histogram.frames.tolist() == [100]  # the first frame has no earlier one: no change
    assert histogram.changes[0, :4].tolist() == [25, 0, 100, 3]
    lookup = {7: 0}.get
    limits = fit_run_limits([histogram], lambda k: np.array([lookup(int(v), 1) for v in k]), vocab_size=2)
    # byte 0: 26 holds, longest runs 1 (x25) and 25; rank floor(0.999 * 25) = 24 -> 1. One long hold
    # does not set the limit, as its 26 frames would if every frame counted
    assert limits[0, 0] == 1.0
    assert np.isinf(limits[0, 1]) and np.isinf(limits[0, 3])  # constant; 3 changes < MIN_CHANGES
    assert limits[0, 2] == 1.0  # changes on every frame: the limit is at least 1
    assert np.isinf(limits[1]).all()  # an ID without training frames

    # at the edges: MIN_CHANGES - 1 and MIN_CHANGES changes on 100 frames (a share above MIN_CHANGE_SHARE),
    # and MIN_CHANGES + 5 changes over so many frames that the share falls just under it
    def limit(changes: int, frames: int) -> float:
        held = np.zeros((frames, 8), np.uint8)
        held[:, 0] = np.minimum(np.arange(frames) * (changes + 1) // frames, changes)  # changes + 1 holds
        fitted = fit_run_limits(
            [hold_histogram(np.full(frames, 7, np.uint64), held)], lambda k: np.zeros(len(k), int), 1
        )
        return fitted[0, 0]

    assert np.isinf(limit(MIN_CHANGES - 1, 100)) and np.isfinite(limit(MIN_CHANGES, 100))
    share_edge = int((MIN_CHANGES + 5) / MIN_CHANGE_SHARE)  # frames at which MIN_CHANGES + 5 changes are the share
    assert np.isfinite(limit(MIN_CHANGES + 5, share_edge)) and np.isinf(limit(MIN_CHANGES + 5, share_edge + 40))
    # two streams (runs of training blocks) of the same ID: no hold spans the validation block between
    same = np.zeros((6, 8), np.uint8)
    split = hold_histogram(np.full(6, 7, np.uint64), same, streams=np.array([0, 0, 0, 1, 1, 1]))
    assert split.codes[0].tolist() == [(7 << 24) | 2] and split.counts[0].tolist() == [2]
    nothing = fit_run_limits([], None, 3)
    assert nothing.shape == (3, 8) and np.isinf(nothing).all()  # nothing to fit on: no limit anywhere
    empty = hold_histogram(np.zeros(0, np.uint64), np.zeros((0, 8), np.uint8))
    assert np.isinf(fit_run_limits([empty], None, 2)).all()


def test_held_scores_take_the_largest_byte_and_clip():
    limits = np.array([[2.0, np.inf, 1, 1, 1, 1, 1, 1]])
    runs = np.array([[4, 100, 0, 0, 0, 0, 0, 0], [50, 0, 0, 0, 0, 0, 0, 0]])
    assert held_scores(runs, np.array([0, 0]), limits).tolist() == [2.0, RUN_CLIP]  # byte 1 (no limit) never counts


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def crysys_e4ts(data_root, tmp_path_factory) -> Path:
    """crysys (attack-free training) with the e4ts store, a student VGAE, its evaluation and bundle."""
    root = tmp_path_factory.mktemp("e4ts")
    steps = [
        ("ingest", "-d", "crysys", "--data-root", data_root, "-o", root / "frames"),
        ("graphs", "--frames", root / "frames", "-o", root / "graphs", "-O", "preprocessing.feature_set=e4ts"),
        ("train", "-m", "vgae", "-s", "small", "--graphs", root / "graphs", "-o", root / "vgae",
         "-O", "training.max_epochs=2", "--threads", "2"),
        ("evaluate", "--runs", root / "vgae", "--graphs", root / "graphs", "-o", root / "eval",
         "--threshold", "fpr:0.01", "--scores", "--threads", "2"),
        ("export", "--run", root / "vgae", "--eval", root / "eval", "-o", root / "detector"),
    ]  # fmt: skip
    for step in steps:
        result = invoke(*step)
        assert result.exit_code == 0, (step[0], result.output, result.exception)
    return root


def test_the_store_holds_the_held_byte_score_and_limits_fitted_on_training(crysys_e4ts, data_root):
    from kdgat.data.store import open_store
    from kdgat.data.vocab import Vocabulary

    store = open_store(crysys_e4ts / "graphs")
    meta = store.metadata
    assert meta["feature_set"]["tag"] == "e4ts@2" and meta["node_features"][-1] == "held_max"
    limits = meta["payload_runs"]["limit"]
    assert len(limits) == store.vocab_size and all(len(row) == 8 for row in limits)
    vocab = Vocabulary.from_json(json.loads((crysys_e4ts / "graphs/vocab.json").read_text()))
    index = int(vocab.lookup(np.array([0x410], np.uint64))[0])
    assert limits[index][2] is not None and limits[index][2] < 10  # the byte the attack holds moves in training
    # the attack holds byte 2 of 0x410 for 60 frames: the test windows with the modified frames score it
    part = store.part("test__msg_mod_0x410")
    x, y = np.asarray(part.x), np.asarray(part.y)
    graph = np.repeat(np.arange(part.num_graphs), np.diff(np.asarray(part.node_offsets)))
    node = x[:, 0].astype(int) == index
    held = np.zeros(part.num_graphs)
    held[graph[node]] = x[node, -1]
    # (benign windows reach about their limit, 1; validation blocks were not fitted on, so a little over)
    assert np.median(held[y == 1]) > 4 and held[y == 0].max() < 1.5


def test_graphs_like_scores_new_captures_with_the_training_limits(crysys_e4ts, tmp_path):
    """A store built --like the e4ts store takes its limits (none are fitted on the new captures): the
    modified capture's windows get the same held_max as in the training store's test part."""
    from kdgat.data.store import open_store

    result = invoke("graphs", "--frames", crysys_e4ts / "frames", "-o", tmp_path / "like", "--like",
                    crysys_e4ts / "graphs", "-O", "preprocessing.feature_set=e4ts")  # fmt: skip
    assert result.exit_code == 0, result.output
    like, store = open_store(tmp_path / "like"), open_store(crysys_e4ts / "graphs")
    assert like.metadata["payload_runs"] == store.metadata["payload_runs"]
    ours, theirs = like.part("test__msg_mod_0x410"), store.part("test__msg_mod_0x410")
    # the --like store scores the whole capture; the training store (crysys is one trace) its test seconds only
    kept = np.flatnonzero(np.isin(np.asarray(ours.window_start), np.asarray(theirs.window_start)))
    assert len(kept) == theirs.num_graphs < ours.num_graphs
    offsets = np.asarray(ours.node_offsets)
    held = np.concatenate([np.asarray(ours.x)[offsets[i] : offsets[i + 1], -1] for i in kept])
    assert np.array_equal(held, np.asarray(theirs.x)[:, -1])


def test_a_bundle_scores_the_held_byte_windows_as_evaluate_did(crysys_e4ts, data_root, tmp_path):
    capture = data_root / MODIFIED
    result = invoke("detect", "-d", crysys_e4ts / "detector", capture, "-o", tmp_path / "v.parquet", "--threads", "2")
    assert result.exit_code == 0, result.output
    verdicts = pq.read_table(tmp_path / "v.parquet").to_pandas()
    scores = pq.read_table(crysys_e4ts / "eval/scores.parquet").to_pandas()
    theirs = scores[scores.part == "test__msg_mod_0x410"]
    assert len(verdicts) == 179 and 0 < len(theirs) < 179  # detect: every window; the store: the test seconds
    mine = verdicts.set_index("first_frame").loc[theirs.window_start.to_numpy()]
    assert np.array_equal(mine.score.to_numpy(), theirs.score.to_numpy())
    # and the live path (frames pushed as they arrive) gives the same scores
    live = invoke("detect", "-d", crysys_e4ts / "detector", capture, "--replay", "--speed", "1000",
                  "-o", tmp_path / "live.parquet", "--threads", "1")  # fmt: skip
    assert live.exit_code == 0, live.output
    replayed = pq.read_table(tmp_path / "live.parquet").column("score").to_numpy()
    assert np.array_equal(replayed, verdicts.score.to_numpy())


def test_an_evaluations_scores_are_a_scores_artifact_in_the_lake(crysys_e4ts, tmp_path):
    """`evaluate --scores` writes scores.parquet: the lake's artifacts table names it `scores` (it said `other`)."""
    import duckdb

    result = invoke("lake", "append", "--runs", crysys_e4ts / "vgae", "--runs", crysys_e4ts / "eval",
                    "--lake", tmp_path / "lake")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = duckdb.sql(
        f"select artifact_type, path from read_parquet('{tmp_path}/lake/**/*.parquet', union_by_name=true) "
        "where artifact_type is not null"
    ).fetchall()
    kinds = {Path(path).name: kind for kind, path in rows}
    assert kinds["scores.parquet"] == "scores" and kinds["metrics.json"] == "metrics"
    assert "other" not in kinds.values(), kinds
