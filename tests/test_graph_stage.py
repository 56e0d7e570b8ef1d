"""The graphs stage: counts on real captures, leakage-free split, store reuse and invalidation, --like."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.config import resolve_config
from kdgat.core.errors import KdgatError
from kdgat.core.manifest import write_manifest
from kdgat.data.capture import sources_from_files
from kdgat.data.catalog import dataset_sources, load_catalog
from kdgat.data.split import BlockSplit
from kdgat.data.store import open_store
from kdgat.data.windows import window_starts
from kdgat.stages.graphs import run as run_graphs
from kdgat.stages.ingest import run as run_ingest
from kdgat.stages.synth import run as run_synth


def prep(**overrides):
    """The study's preprocessing (E4 features, every training ID in the vocabulary) unless overridden."""
    overrides = {"feature_set": "e4", "vocab_min_count": 1, **overrides}
    return resolve_config(
        "gat", "large", overrides=[f"preprocessing.{k}={v}" for k, v in overrides.items()]
    ).preprocessing


@pytest.fixture(scope="module")
def synthetic_frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    run_synth(root / "data" / "synthetic", seed=5, duration_s=4)
    sources = dataset_sources("synthetic", load_catalog()["synthetic"], root / "data")
    run_ingest(sources, root / "frames", dataset="synthetic")
    return root / "frames"


@pytest.fixture(scope="module")
def daga_store(data_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("daga")
    entry = load_catalog()["daga_v40"]
    sources = dataset_sources("daga_v40", entry, data_root)
    assert entry.one_trace  # every file is the clean trace with frames inserted
    manifest = run_ingest(sources, root / "frames", dataset="daga_v40", one_trace=entry.one_trace)
    meta = run_graphs(root / "frames", root / "store", prep()).summary
    return root, manifest, meta


def test_daga_graph_counts(daga_store):
    """A one-trace dataset: 2 of 10 blocks are test seconds, 1 validation, 1 fusion, in every file."""
    root, manifest, meta = daga_store
    windows = {o.path: len(window_starts(o.rows, 100, 100)) for o in manifest.outputs}
    train_windows = sum(n for path, n in windows.items() if path.startswith("train/"))
    parts = meta["parts"]
    held_out = parts["val"]["graphs"] + parts["fusion"]["graphs"]
    trace = meta["one_trace"]
    assert [len(trace[name]) for name in ("val", "fusion", "test")] == [1, 1, 2]
    in_test_blocks = train_windows - parts["train"]["graphs"] - held_out - meta["dropped_straddling_windows"]
    assert 0.15 < in_test_blocks / train_windows < 0.25  # the training files' test seconds: trained on by none
    # a test file's windows scored: those whose first and last frame lie in one test span (counted here
    # from the frames' timestamps and the recorded spans, not by the split's own masks)
    for output in (o for o in manifest.outputs if o.path.startswith("test/")):
        t = pq.read_table(root / "frames" / output.path, columns=["timestamp"])["timestamp"].to_numpy()
        starts = window_starts(len(t), 100, 100)
        first, last = t[starts], t[np.minimum(starts + 100, len(t) - 1)]
        inside = sum(int(((lo <= first) & (last < hi)).sum()) for lo, hi in trace["test"])
        assert parts[f"test__{output.scenario}"]["graphs"] == inside and 0.15 < inside / len(starts) < 0.21
    assert 0 < parts["val"]["graphs"] / (parts["train"]["graphs"] + parts["val"]["graphs"]) < 0.3
    for name in ("train", "val", "fusion", "test__payload_fuzzing_id_1"):
        assert parts[name]["attack_graphs"] > 0  # both classes on every side
    store = open_store(root / "store")
    assert store.metadata["vocab_size"] == meta["vocab_size"]
    assert store.part("train").num_graphs == parts["train"]["graphs"]
    assert store.part("train").num_node_features == 11 and store.part("train").num_edge_features == 11


def test_split_has_no_shared_frames_with_overlapping_windows(synthetic_frames, tmp_path):
    window, stride = 100, 30
    meta = run_graphs(synthetic_frames, tmp_path / "store", prep(stride=stride, val_fraction=0.3)).summary
    store = open_store(tmp_path / "store")
    train, val = store.part("train"), store.part("val")
    assert meta["dropped_straddling_windows"] > 0 and val.num_graphs > 0

    def frames_of(part, source):
        index = part.files.index(source)
        starts = np.asarray(part.window_start)[np.asarray(part.file_index) == index]
        return set((starts[:, None] + np.arange(window + 1)).ravel().tolist())

    shared_files = set(train.files) & set(val.files)
    assert shared_files
    for source in shared_files:
        assert not frames_of(train, source) & frames_of(val, source), source


def test_store_is_reused_then_rebuilt_when_a_parameter_changes(synthetic_frames, tmp_path):
    out = tmp_path / "store"
    first = run_graphs(synthetic_frames, out, prep()).summary
    assert first["reused"] is False
    assert run_graphs(synthetic_frames, out, prep()).summary["reused"] is True
    for change in ({"window": 200}, {"stride": 50}, {"val_fraction": 0.3}):
        rebuilt = run_graphs(synthetic_frames, out, prep(**change)).summary
        assert rebuilt["reused"] is False and rebuilt["fingerprint"] != first["fingerprint"]
    assert run_graphs(synthetic_frames, out, prep(stride=50), force=True).summary["reused"] is False


def test_store_is_rebuilt_when_an_input_file_changes(data_root, tmp_path):
    frames = tmp_path / "frames"
    road = data_root / "road/attacks"
    run_ingest(sources_from_files([road / "fuzzing_attack_2.csv.xz"], split="train", scenario="train"), frames)
    first = run_graphs(frames, tmp_path / "store", prep())
    run_ingest(sources_from_files([road / "fuzzing_attack_1.csv.xz"], split="train", scenario="train"), frames)
    second = run_graphs(frames, tmp_path / "store", prep())
    assert second.summary["reused"] is False and second.inputs != first.inputs


def test_frames_of_an_earlier_ingest_keep_two_captures_of_one_name_apart(tmp_path):
    """An ingest before captures were named under the dataset root recorded only the path as given: the store names
    such a capture by that path (its file name alone made a/x.csv and b/x.csv one capture, one file_index)."""
    data = tmp_path / "data"
    for folder in ("a", "b"):
        run_synth(data / folder, seed=5, duration_s=2)
    sources = sources_from_files(sorted(data.glob("*/train_01_attack_free/attack-free-1.csv")), split="train")
    sources = [replace(s, output_name=f"train/{s.path.parts[-3]}") for s in sources]
    frames = tmp_path / "frames"
    run_ingest(sources, frames)
    manifest = json.loads((frames / "manifest.json").read_text())
    for output in manifest["outputs"]:
        del output["capture"]  # as an earlier kdgat wrote it
    (frames / "manifest.json").write_text(json.dumps(manifest))
    run_graphs(frames, tmp_path / "store", prep())
    files = json.loads((tmp_path / "store/parts/train/part.json").read_text())["files"]
    assert sorted(files) == sorted(str(s.path) for s in sources) and len(set(files)) == 2


def test_the_same_captures_reached_by_another_path_give_the_same_store(tmp_path, monkeypatch):
    """A store's metadata.json (by sha256) is its identity: evaluate, fuse and export check runs against it, the lake
    keys evaluations by it. A data folder given as a relative path, an absolute one or through a link (Nextflow
    stages `data` in each task's work folder) must give the same frames and the same store, byte for byte."""
    data = tmp_path / "data"
    run_synth(data / "synthetic", seed=5, duration_s=2)
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    built = {}
    for name, root in (("relative", Path("data")), ("absolute", data), ("link", tmp_path / "link")):
        sources = dataset_sources("synthetic", load_catalog()["synthetic"], root)
        frames = run_ingest(sources, tmp_path / name / "frames", dataset="synthetic")
        store = run_graphs(tmp_path / name / "frames", tmp_path / name / "store", prep())
        built[name] = (frames, store)
    sources = {name: sorted(o.source for o in frames.outputs) for name, (frames, _) in built.items()}
    assert len({tuple(s) for s in sources.values()}) == 3  # the paths as given differ (the manifests say so)
    for name, (frames, store) in built.items():
        assert [o.capture for o in frames.outputs] == [o.capture for o in built["relative"][0].outputs]
        assert [o.sha256 for o in frames.outputs] == [o.sha256 for o in built["relative"][0].outputs], name
        assert store.summary["fingerprint"] == built["relative"][1].summary["fingerprint"], name
        for file in ("metadata.json", "parts/train/part.json", "parts/val/part.json"):
            assert (tmp_path / name / "store" / file).read_bytes() == (tmp_path / "relative/store" / file).read_bytes()
    captures = {c for c in json.loads((tmp_path / "link/store/parts/train/part.json").read_text())["files"]}
    assert captures and all(not Path(c).is_absolute() and not c.startswith("data") for c in captures), captures
    assert {o.capture for o in built["link"][0].outputs} <= {
        p.relative_to(data / "synthetic").as_posix() for p in (data / "synthetic").rglob("*.csv")
    }


def test_builds_are_deterministic(synthetic_frames, tmp_path):
    run_graphs(synthetic_frames, tmp_path / "a", prep(stride=50))
    run_graphs(synthetic_frames, tmp_path / "b", prep(stride=50))
    for part in ("train", "val"):
        for name in ("x", "edge_index", "edge_attr", "y", "node_offsets", "window_start"):
            a = np.load(tmp_path / "a" / "parts" / part / f"{name}.npy")
            b = np.load(tmp_path / "b" / "parts" / part / f"{name}.npy")
            assert np.array_equal(a, b), (part, name)


def test_a_store_written_in_many_small_shards_is_the_same_store(synthetic_frames, tmp_path, monkeypatch):
    """The graphs of a capture are built and written a shard at a time (SHARD_SLOTS window frames), and the feature
    statistics computed over blocks of rows (STATS_BLOCK), so that a long capture at a small stride is never held
    whole: every array and every statistic is what one shard and one block give."""
    run_graphs(synthetic_frames, tmp_path / "whole", prep(stride=5))
    monkeypatch.setattr("kdgat.stages.graphs.SHARD_SLOTS", 100 * 64)  # 64 windows a shard
    monkeypatch.setattr("kdgat.stages.graphs.STATS_BLOCK", 1000)
    run_graphs(synthetic_frames, tmp_path / "pieces", prep(stride=5))
    whole, pieces = open_store(tmp_path / "whole"), open_store(tmp_path / "pieces")
    assert whole.parts["train"].num_graphs > 2_000  # dozens of shards of 64
    assert whole.metadata["feature_stats"] == pieces.metadata["feature_stats"]
    x = np.asarray(whole.part("train").x, np.float64)
    assert whole.metadata["feature_stats"]["node"]["std"] == pytest.approx(x.std(axis=0), abs=1e-6)
    for name in whole.parts:
        for array in ("x", "edge_index", "edge_attr", "y", "node_offsets", "edge_offsets", "window_start",
                      "file_index"):  # fmt: skip
            assert np.array_equal(getattr(whole.part(name), array), getattr(pieces.part(name), array)), (name, array)


def test_like_reuses_vocabulary_and_maps_unseen_ids_to_oov(synthetic_frames, data_root, tmp_path):
    run_graphs(synthetic_frames, tmp_path / "ref", prep())
    ref = open_store(tmp_path / "ref").metadata
    frames = tmp_path / "frames"
    run_ingest(sources_from_files([data_root / "j1939/normal.log.xz"], benign=True), frames)  # 29-bit IDs
    run_graphs(frames, tmp_path / "scored", prep(), like=tmp_path / "ref")
    meta = open_store(tmp_path / "scored").metadata
    assert (
        meta["vocab_size"] == ref["vocab_size"]
        and meta["attack_types"][: len(ref["attack_types"])] == ref["attack_types"]
    )
    part = open_store(tmp_path / "scored").part("test__normal")
    x = np.asarray(part.x)
    assert set(np.unique(x[:, 0]).tolist()) == {float(ref["oov_index"])}
    assert (tmp_path / "ref" / "vocab.json").read_text() == (tmp_path / "scored" / "vocab.json").read_text()


def test_like_makes_every_input_a_test_part_and_never_replaces_its_store(synthetic_frames, tmp_path):
    """With --like the training captures too are scored (evaluate scores test parts only); --out the --like
    store itself would replace it, and frames without a training file are said before any folder is made."""
    from kdgat.core.errors import UsageError

    run_graphs(synthetic_frames, tmp_path / "ref", prep())
    trained_on = sorted(open_store(tmp_path / "ref").parts)
    run_graphs(synthetic_frames, tmp_path / "scored", prep(), like=tmp_path / "ref")
    scored = open_store(tmp_path / "scored")
    assert all(name.startswith("test") for name in scored.parts), sorted(scored.parts)
    assert "test__train" in scored.parts and "train" in trained_on
    before = (tmp_path / "ref/metadata.json").read_bytes()
    with pytest.raises(UsageError, match="is the --like store"):
        run_graphs(synthetic_frames, tmp_path / "ref", prep(), like=tmp_path / "ref")
    assert sorted(open_store(tmp_path / "ref").parts) == trained_on
    assert (tmp_path / "ref/metadata.json").read_bytes() == before
    test_only = tmp_path / "test-frames"
    manifest = json.loads((synthetic_frames / "manifest.json").read_text())
    kept = [o for o in manifest["outputs"] if o["split"] == "test"]
    run_ingest(sources_from_files([Path(o["source"]) for o in kept[:1]]), test_only)
    with pytest.raises(KdgatError, match=f"{test_only}: no training frames"):
        run_graphs(test_only, tmp_path / "never", prep())
    assert not (tmp_path / "never").exists()


def test_a_failed_build_keeps_the_old_store(synthetic_frames, tmp_path):
    out = tmp_path / "store"
    run_graphs(synthetic_frames, out, prep())
    before = (out / "metadata.json").read_text()
    manifest = json.loads((synthetic_frames / "manifest.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest["outputs"][0]["path"] = "missing.parquet"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KdgatError, match="missing"):
        run_graphs(broken, out, prep())
    assert (out / "metadata.json").read_text() == before
    assert not list(tmp_path.glob(".staging-*"))


def test_refuses_to_replace_a_folder_that_is_not_a_store(synthetic_frames, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(KdgatError, match="not a graph store"):
        run_graphs(synthetic_frames, out, prep())


def test_frames_without_training_split_need_like(data_root, tmp_path):
    run_ingest(sources_from_files([data_root / "otids/Attack_free_dataset_10k.txt.xz"]), tmp_path / "frames")
    with pytest.raises(KdgatError, match="--like"):
        run_graphs(tmp_path / "frames", tmp_path / "store", prep())


def test_cli_graphs(synthetic_frames, tmp_path):
    runner = CliRunner()
    args = ["graphs", "--frames", str(synthetic_frames), "--out", str(tmp_path / "s")]
    args += ["-O", "preprocessing.window=50", "-O", "preprocessing.stride=50"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "window 50" in result.output and "train" in result.output
    assert "reused" in runner.invoke(app, args).output
    bad = runner.invoke(app, ["graphs", "--frames", str(tmp_path), "--out", str(tmp_path / "t")])
    assert bad.exit_code != 0 and "not an ingest output" in bad.stderr


def test_a_store_is_the_same_whatever_a_models_override(synthetic_frames, tmp_path):
    """The store records the hash of what built it (its preprocessing section), so `kdgat graphs -O gat.hidden=8`
    (Nextflow passes the overrides) writes the metadata.json of a plain build: no training after it looks changed."""
    from kdgat.core.hashing import content_hash

    runner, meta = CliRunner(), {}
    for name, extra in (("plain", []), ("model", ["-O", "gat.hidden=8", "-O", "training.batch_size=64"])):
        args = [
            "graphs",
            "--frames",
            str(synthetic_frames),
            "--out",
            str(tmp_path / name),
            "-O",
            "preprocessing.stride=50",
        ]
        assert runner.invoke(app, args + extra).exit_code == 0
        meta[name] = json.loads((tmp_path / name / "metadata.json").read_text())
    expected = content_hash(
        resolve_config("gat", "large", overrides=["preprocessing.stride=50"]).preprocessing.model_dump(mode="json")
    )
    assert meta["plain"]["config_hash"] == meta["model"]["config_hash"] == expected


def test_vocabulary_and_periods_come_from_training_blocks_only(data_root, tmp_path):
    """An ID that appears only in validation blocks changes neither the vocabulary nor the periods."""
    source = pq.read_table(_road_train_frames(data_root, tmp_path))
    n = source.num_rows
    cfg = prep(feature_set="e4t", vocab_min_count=1)
    labels = source["label"].to_numpy()
    split = BlockSplit.of_file(n, len(window_starts(n, cfg.window, cfg.stride)), cfg, "train/fuzzing.parquet", labels)
    val_block = int(split.val_blocks[0])
    inside = np.arange(split.edges[val_block] + 50, split.edges[val_block + 1] - 50, 7)  # away from the edges
    can_id = source["can_id"].to_numpy().copy()
    can_id[inside] = 0x7AB  # an ID the training blocks never carry
    changed = source.set_column(source.schema.get_field_index("can_id"), "can_id", pa.array(can_id, pa.uint32()))
    stores = {}
    for name, table in (("plain", source), ("val_only_id", changed)):
        frames = tmp_path / name / "frames"
        (frames / "train").mkdir(parents=True)
        pq.write_table(table, frames / "train" / "fuzzing.parquet")
        write_manifest(frames, stage="ingest", inputs=[], config={}, wall_time_s=0.0, dataset="road", outputs=[
            {"path": "train/fuzzing.parquet", "split": "train", "scenario": "train", "source": "fuzzing"}
        ])  # fmt: skip
        run_graphs(frames, tmp_path / name / "store", cfg)
        stores[name] = open_store(tmp_path / name / "store")
    assert (tmp_path / "plain/store/vocab.json").read_text() == (tmp_path / "val_only_id/store/vocab.json").read_text()
    plain, other = (s.metadata["timing"]["median_period"] for s in stores.values())
    assert plain == other
    val_ids = np.asarray(stores["val_only_id"].part("val").x)[:, 0]
    assert (val_ids == stores["val_only_id"].metadata["oov_index"]).any()  # the new ID is scored as unknown


def _road_train_frames(data_root, tmp_path):
    frames = tmp_path / "road_frames"
    run_ingest(sources_from_files([data_root / "road/attacks/fuzzing_attack_2.csv.xz"], split="train"), frames)
    return next(frames.rglob("*.parquet"))


def test_training_validation_and_fusion_windows_share_no_frame(daga_store):
    """What the members train on, what the fusion is fitted on and what thresholds are chosen on are disjoint."""
    root, _, _ = daga_store
    store = open_store(root / "store")
    frames: dict[str, dict[str, np.ndarray]] = {}
    for name in ("train", "val", "fusion"):
        part = store.part(name)
        files = np.asarray(part.files)[np.asarray(part.file_index)]
        for source in np.unique(files):
            starts = np.asarray(part.window_start)[files == source]
            used = np.unique((starts[:, None] + np.arange(store.metadata["window"] + 1)).ravel())
            frames.setdefault(source, {})[name] = used
    compared = 0
    for source, sides in frames.items():
        for a, b in (("train", "val"), ("train", "fusion"), ("val", "fusion")):
            if a in sides and b in sides:
                assert not np.intersect1d(sides[a], sides[b]).size, (source, a, b)
                compared += 1
    # every file feeds all three parts, so every pair of every file was compared
    assert compared == 3 * len(frames) and len(frames) > 1


def test_a_one_trace_dataset_scores_no_second_any_file_trained_on(daga_store, data_root):
    """DAGA's files are one recording: a test window's benign frames must not be frames some training file
    trains on (with per-file blocks 80 % of them were), and validation / fusion windows neither."""
    root, manifest, meta = daga_store
    store = open_store(root / "store")
    paths = {o.capture: root / "frames" / o.path for o in manifest.outputs}

    def frames_of(part: str, benign_only: bool = False) -> np.ndarray:
        p = store.part(part)
        files = np.asarray(p.files)[np.asarray(p.file_index)]
        keys = []
        for source in np.unique(files):
            table = pq.read_table(paths[source], columns=["timestamp", "can_id", "label"])
            starts = np.asarray(p.window_start)[files == source]
            used = np.unique(np.minimum((starts[:, None] + np.arange(101)).ravel(), table.num_rows - 1))
            if benign_only:
                used = used[table["label"].to_numpy()[used] == 0]
            t = table["timestamp"].to_numpy()[used]
            keys.append(np.round(t * 1e6).astype(np.int64) * 4096 + table["can_id"].to_numpy()[used])
        return np.unique(np.concatenate(keys))

    trained = frames_of("train")
    for part in ("val", "fusion", "test__payload_fuzzing_id_1", "test__single_id_replay_id_1"):
        held = frames_of(part, benign_only=True)
        assert len(held) > 10_000 and not np.intersect1d(held, trained).size, part
    # the per-file split of the same files would have trained on most test seconds
    test_table = pq.read_table(paths[next(s for s in paths if "SingleIDReplay/ID_1" in s)], columns=["timestamp"])
    clean = next(s for s in paths if "clean" in s)
    n = pq.read_metadata(paths[clean]).num_rows
    per_file = BlockSplit.of_file(n, len(window_starts(n, 100, 100)), prep(), "train/clean__V40_03.can")
    clean_times = pq.read_table(paths[clean], columns=["timestamp"])["timestamp"].to_numpy()
    trained_seconds = clean_times[per_file.training_segments() >= 0]
    shared = np.isin(np.round(test_table["timestamp"].to_numpy(), 6), np.round(trained_seconds, 6)).mean()
    assert shared > 0.7


def test_a_one_trace_split_takes_test_seconds_where_the_few_test_attacks_are():
    """CrySyS-like: the test capture's attack lies in 2 of 10 blocks; test blocks hold one of them and a clean
    one, validation and fusion come from the rest, and a file with inserted frames gets the same seconds."""
    from kdgat.data.split import TraceSplit

    cfg = prep()
    trace = TraceSplit.choose(0.0, 100.0, cfg, np.zeros(0), [np.linspace(41.0, 59.0, 60)])
    test = set(trace.test_blocks.tolist())
    assert len(test) == 2 and len(test & {4, 5}) == 1
    held = [set(b.tolist()) for b in (trace.val_blocks, trace.fusion_blocks, trace.test_blocks)]
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1 :]) and [len(h) for h in held] == [1, 1, 2]
    times = np.arange(0.0, 100.0, 0.01)
    inserted = np.sort(np.concatenate((times, np.arange(0.005, 100.0, 0.5))))
    for t in (times, inserted):
        split = trace.of_file(t)
        seconds = t[np.flatnonzero(split.training_segments() < 0)]
        blocks = np.unique(np.floor(seconds / 10).astype(int))
        assert set(blocks.tolist()) == set().union(*held)  # the held-out seconds are the same in both files
    again = TraceSplit.choose(0.0, 100.0, cfg, np.zeros(0), [np.linspace(41.0, 59.0, 60)])
    assert np.array_equal(again.test_blocks, trace.test_blocks)  # seeded by split_seed only


@pytest.mark.parametrize("seed", range(10))
def test_a_one_trace_split_keeps_attacks_for_every_scenario_and_for_training(seed):
    """Two test scenarios whose attacks lie in different blocks (2 and 7) both keep attack windows; a test
    attack block that also holds the only training attacks (4) stays for training when another one can go."""
    from kdgat.data.split import TraceSplit

    cfg = prep(split_seed=seed)
    two = TraceSplit.choose(0.0, 100.0, cfg, np.zeros(0), [np.array([21.0, 25.0]), np.array([71.0, 78.0])])
    assert {2, 7} <= set(two.test_blocks.tolist())
    shared = TraceSplit.choose(0.0, 100.0, cfg, np.array([45.0]), [np.array([45.0, 55.0])])
    assert 4 not in shared.test_blocks and 5 in shared.test_blocks


def test_a_one_trace_split_needs_blocks_for_every_part():
    from kdgat.core.errors import ConfigError
    from kdgat.data.split import TraceSplit

    with pytest.raises(ConfigError, match="val_blocks=3"):
        TraceSplit.choose(0.0, 100.0, prep(val_blocks=3), np.zeros(0), [])
    small = TraceSplit.choose(0.0, 100.0, prep(val_blocks=4), np.zeros(0), [])
    assert [len(b) for b in (small.val_blocks, small.fusion_blocks, small.test_blocks)] == [1, 1, 1]


def test_a_file_whose_attacks_sit_in_few_blocks_still_validates_them(data_root, tmp_path):
    """ROAD fuzzing_attack_1 has its attacks in 2 of 10 blocks: one is trained on, one is held out."""
    frames = tmp_path / "frames"
    run_ingest(sources_from_files([data_root / "road/attacks/fuzzing_attack_1.csv.xz"], split="train"), frames)
    run_graphs(frames, tmp_path / "store", prep(feature_set="e4t"))
    store = open_store(tmp_path / "store")
    attacks = {name: int((np.asarray(store.part(name).y) == 1).sum()) for name in ("train", "val", "fusion")}
    assert attacks["train"] > 0 and attacks["val"] + attacks["fusion"] > 0, attacks
    source = pq.read_table(next(frames.rglob("*.parquet")), columns=["label"])["label"].to_numpy()
    n = len(source)
    split = BlockSplit.of_file(n, len(window_starts(n, 100, 100)), prep(), "x", source)
    blocks_with_attacks = set(np.unique(split.block_of(np.flatnonzero(source == 1))).tolist())
    held = set(split.held_out.tolist())
    assert blocks_with_attacks & held and blocks_with_attacks - held  # some held out, some trained on


def test_frame_arrays_of_a_real_capture_and_a_table_with_mixed_labels(data_root, tmp_path):
    """The one reader of frame tables behind the graph stage and `kdgat detect`."""
    from kdgat.data.frames import MixedLabelsError, frame_arrays
    from kdgat.data.vocab import id_keys

    full = pq.read_table(_road_train_frames(data_root, tmp_path))
    for table in (full, full.combine_chunks().slice(7)):  # one chunk sliced: its payload starts at an offset
        keys, data, labels, timestamps = frame_arrays(table)
        n = table.num_rows
        assert np.array_equal(keys, id_keys(table["can_id"].to_numpy(), table["is_extended"].to_numpy()))
        assert data.dtype == np.uint8
        assert np.array_equal(data, np.frombuffer(b"".join(table["data"].to_pylist()), np.uint8).reshape(n, 8))
        assert np.array_equal(labels, table["label"].to_numpy()) and 0 < labels.sum() < n
        assert np.array_equal(timestamps, table["timestamp"].to_numpy())

    unlabelled = full.set_column(
        full.schema.get_field_index("label"), "label", pa.nulls(full.num_rows, full.schema.field("label").type)
    )
    assert frame_arrays(unlabelled)[2] is None
    table = full

    mixed = table.set_column(
        table.schema.get_field_index("label"), "label",
        pa.array([None] + table["label"].to_pylist()[1:], table.schema.field("label").type),
    )  # fmt: skip
    with pytest.raises(MixedLabelsError, match="some frames are labelled and some are not"):
        frame_arrays(mixed)


def test_cli_like_takes_the_stores_preprocessing_and_refuses_another(synthetic_frames, tmp_path):
    """`graphs --like` cuts new captures as the store's models were trained: its window and feature set (not the
    defaults) without any -O, an -O naming the store's own value is accepted, another value is refused (it would
    be ignored and recorded)."""
    run_graphs(synthetic_frames, tmp_path / "ref", prep(window=50, stride=25))  # e4, not the default e4t
    runner = CliRunner()
    base = ["graphs", "--frames", str(synthetic_frames), "--like", str(tmp_path / "ref")]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "plain")])
    assert result.exit_code == 0, result.output
    meta = open_store(tmp_path / "plain").metadata
    ref = open_store(tmp_path / "ref").metadata
    assert meta["preprocessing"] == ref["preprocessing"] and meta["feature_set"] == ref["feature_set"]
    same = runner.invoke(app, [*base, "--out", str(tmp_path / "same"), "-O", "preprocessing.feature_set=e4"])
    assert same.exit_code == 0, same.output
    other = runner.invoke(app, [*base, "--out", str(tmp_path / "other"), "-O", "preprocessing.vocab_min_count=5"])
    assert other.exit_code == 2
    assert "preprocessing.vocab_min_count = 1 there" in other.stderr and "drop the override" in other.stderr
    assert not (tmp_path / "other").exists()
    mapping = runner.invoke(app, [*base, "--out", str(tmp_path / "map"), "-O", "preprocessing={stride: 50}"])
    assert mapping.exit_code == 2 and "preprocessing.stride = 25 there" in mapping.stderr, mapping.output


def test_cli_warns_when_no_window_fits_a_held_out_block(synthetic_frames, tmp_path):
    """A window longer than every held-out time block leaves no validation or fusion window: said at once,
    not when train fails on the store."""
    runner = CliRunner()
    args = ["graphs", "--frames", str(synthetic_frames), "--out", str(tmp_path / "s")]
    result = runner.invoke(app, [*args, "-O", "preprocessing.window=3000", "-O", "preprocessing.stride=3000"])
    assert result.exit_code == 0, result.output
    parts = open_store(tmp_path / "s").parts
    assert parts["val"].num_graphs == parts["fusion"].num_graphs == 0 < parts["train"].num_graphs
    said = " ".join(result.stderr.split())  # the warning wraps
    assert "warning: no 'val' and no 'fusion' windows" in said and "a window (3000 frames) must fit inside one" in said
    assert "round(10 x 0.2)" in said  # the held-out blocks: the other way to lose every window (too few)
    fine = runner.invoke(app, ["graphs", "--frames", str(synthetic_frames), "--out", str(tmp_path / "t")])
    assert fine.exit_code == 0 and "held-out time blocks" not in fine.stderr
    # training on it (the pipeline does not print the graphs warning) names the empty part and why
    from kdgat.training.datamodule import GraphDataModule

    with pytest.raises(KdgatError, match=r"no labelled graphs in its val part to learn from \(no window fits"):
        GraphDataModule(open_store(tmp_path / "s"), batch_size=8)


def test_a_like_store_of_the_training_frames_has_their_features_exactly(data_root, tmp_path):
    """The timing periods were stored rounded to 9 digits while the training store used them whole: a --like
    store (and a detector bundle) of the same captures differed by an ulp in the timing ratios, and a VGAE's score
    by up to 0.0136 on ROAD."""
    user = tmp_path / "mine.yaml"
    user.write_text(
        "datasets:\n  my_road:\n    description: two ROAD files\n    root: road/attacks\n"
        "    train: [fuzzing_attack_1.csv*]\n    test:\n      fuzz2: [fuzzing_attack_2.csv*]\n"
    )
    sources = dataset_sources("my_road", load_catalog([user])["my_road"], data_root)
    run_ingest(sources, tmp_path / "frames", dataset="my_road")
    run_graphs(tmp_path / "frames", tmp_path / "ref", prep(feature_set="e4t"))
    run_graphs(tmp_path / "frames", tmp_path / "like", prep(feature_set="e4t"), like=tmp_path / "ref")
    ref, like = open_store(tmp_path / "ref").part("test__fuzz2"), open_store(tmp_path / "like").part("test__fuzz2")
    assert np.array_equal(np.asarray(ref.x), np.asarray(like.x))
