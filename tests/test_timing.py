"""Timing features (feature set e4t): inter-arrival ratios, explicit degradation without timestamps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kdgat.core.config import resolve_config
from kdgat.data.capture import sources_from_files
from kdgat.data.catalog import dataset_sources, load_catalog
from kdgat.data.store import open_store
from kdgat.data.timing import inter_arrival, median_periods, timing_frame_values
from kdgat.data.windows import build_graphs
from kdgat.stages.graphs import run as run_graphs
from kdgat.stages.ingest import run as run_ingest


def e4t(**overrides):
    items = ["preprocessing.feature_set=e4t"] + [f"preprocessing.{k}={v}" for k, v in overrides.items()]
    return resolve_config("gat", "large", overrides=items).preprocessing


def test_inter_arrival_follows_each_id():
    t = np.array([0.0, 0.1, 0.2, 0.25, 0.4, 0.5])
    ids = np.array([1, 2, 1, 1, 2, 1])
    gaps = inter_arrival(t, ids)
    # ID 1 at 0.0, 0.2, 0.25, 0.5 -> -, 0.2, 0.05, 0.25; ID 2 at 0.1, 0.4 -> -, 0.3
    np.testing.assert_allclose(gaps, [np.nan, np.nan, 0.2, 0.05, 0.3, 0.25])


def test_median_periods_per_vocabulary_index():
    gaps = [np.array([np.nan, 0.1, 0.3, 0.2]), np.array([0.5, np.nan])]
    ids = [np.array([0, 0, 0, 0]), np.array([2, 2])]
    periods = median_periods(gaps, ids, vocab_size=4)
    assert periods[0] == pytest.approx(0.2) and periods[2] == pytest.approx(0.5)
    assert np.isnan(periods[1]) and np.isnan(periods[3])


def test_early_frames_raise_the_node_features():
    # ID 0 with period 0.1; frame 3 is injected 0.01 s after frame 2 (ratio 0.1: early)
    t = np.array([0.0, 0.1, 0.2, 0.21, 0.3])
    keys = np.zeros(5, np.int64)
    values = timing_frame_values(t, keys, keys, np.array([0.1]))
    g = build_graphs(
        keys, np.zeros((5, 8), np.uint8), None, None, window=5, stride=5, vocab_size=1, frame_values=values
    )
    x = g.x[0]
    # ratios: first frame neutral 1, then 1, 1, 0.1, 0.9 -> mean 0.8, min 0.1, max 1; one early frame of five
    assert x[11] == pytest.approx(0.8) and x[12] == pytest.approx(0.1) and x[13] == pytest.approx(1.0)
    assert x[14] == pytest.approx(0.2) and x[15] == 1.0


def test_daga_early_share_separates_attack_windows(data_root, tmp_path):
    sources = dataset_sources("daga_v40", load_catalog()["daga_v40"], data_root)
    run_ingest(sources, tmp_path / "frames", dataset="daga_v40")
    run_graphs(tmp_path / "frames", tmp_path / "store", e4t())
    meta = open_store(tmp_path / "store").metadata
    assert meta["node_features"][11:] == [
        "dt_ratio_mean",
        "dt_ratio_min",
        "dt_ratio_max",
        "early_share",
        "has_timestamps",
    ]
    # Attacks on an ID never attacked in training: frames arrive early. One statistic alone
    # (the window's largest early share) already ranks attack windows well above benign ones.
    for name in ("test__single_id_replay_id_1", "test__payload_fuzzing_id_1"):
        part = open_store(tmp_path / "store").part(name)
        x, y, offsets = np.asarray(part.x), np.asarray(part.y), np.asarray(part.node_offsets)
        graph_of_node = np.repeat(np.arange(len(y)), np.diff(offsets))
        max_early = np.zeros(len(y))
        np.maximum.at(max_early, graph_of_node, x[:, 14])
        assert roc_auc_score(y, max_early) > 0.8, name
        has_ts = np.zeros(len(y))
        np.maximum.at(has_ts, graph_of_node, x[:, 15])  # 1 on every source node (target-only nodes keep 0)
        assert np.all(has_ts == 1.0)


def test_without_timestamps_timing_degrades_explicitly(data_root, tmp_path):
    frames = tmp_path / "frames"
    run_ingest(
        sources_from_files([data_root / "road/attacks/fuzzing_attack_2.csv.xz"], split="train", scenario="train"),
        frames,
    )
    run_graphs(frames, tmp_path / "ref", e4t())
    scored = tmp_path / "scored"
    run_ingest(sources_from_files([data_root / "nissan-juke/2020-11-24T042548.log.xz"], benign=True), scored)
    meta = run_graphs(scored, tmp_path / "new", e4t(), like=tmp_path / "ref").summary
    assert meta["timestamps_missing"] == ["2020-11-24T042548.log.xz"]
    x = np.asarray(open_store(tmp_path / "new").part("test__2020-11-24T042548").x)
    # a node that only receives the window's last transition has no frame of its own: every feature 0,
    # with or without timestamps; every other node is neutral: ratio mean/min/max 1, nothing early
    sources = np.any(x[:, 11:14] != 0.0, axis=1)
    assert sources.mean() > 0.99 and np.all(x[sources, 11:14] == 1.0)
    assert np.all(x[:, 14] == 0.0) and np.all(x[:, 15] == 0.0)  # no early frames; has_timestamps = 0
    stored = json.loads((tmp_path / "ref" / "metadata.json").read_text())["timing"]["median_period"]
    assert stored == open_store(tmp_path / "new").metadata["timing"]["median_period"]  # --like reuses them
