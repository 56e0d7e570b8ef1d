"""The graphs stage: frame Parquet -> a sharded, memory-mappable graph store.

Windows are formed per source file (never across files). The CAN-ID
vocabulary and the attack-type table come from the training split only, or
from an existing store (``like``) so that trained models can score captures
they have never seen. Training files are split into train/validation by
contiguous time blocks, so overlapping windows never straddle the split.

The store is rebuilt when an input file or a parameter changes and reused
otherwise (a fingerprint in ``metadata.json``), and is written into a staging
folder that replaces the old store only when complete.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kdgat.core.atomic import atomic_write_text, check_output_folder, clean_stale, removed_if_failed, staged_folder
from kdgat.core.config import store_preprocessing
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.hashing import content_hash, sha256_file
from kdgat.core.manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest
from kdgat.core.schema import PreprocessingConfig
from kdgat.core.threads import set_threads
from kdgat.data.features import get_feature_set
from kdgat.data.frames import BENIGN_ATTACK_TYPE, MixedLabelsError, frame_arrays, payload_bytes
from kdgat.data.payload_runs import (
    HoldHistogram,
    fit_run_limits,
    held_frame_values,
    hold_histogram,
    limits_from_json,
    limits_to_json,
)
from kdgat.data.split import FUSION_PART, BlockSplit, TraceSplit, part_name
from kdgat.data.store import concat_parts, open_store, write_part
from kdgat.data.timing import inter_arrival, median_periods, timing_frame_values
from kdgat.data.vocab import Vocabulary, count_keys, id_keys
from kdgat.data.windows import build_graphs, window_starts
from kdgat.detection import ood

BUILDER_VERSION = "5"  # bump when the store layout, naming or fitting changes (5: held-out attacks, benign periods)
METADATA = "metadata.json"
STATS_BLOCK = 1 << 22  # values per block of the feature statistics (32 MB of float64)
SHARD_SLOTS = 1 << 20  # window frames per shard (~60 MB of graph arrays at W=100, DAGA): built, written, let go
VOCAB = "vocab.json"


@dataclass(frozen=True)
class FramesFile:
    path: Path  # the frame Parquet file
    relative: str  # its path inside the frames folder (stable name)
    split: str
    scenario: str
    source: str  # the capture it came from, as ingest was given it (for messages)
    sha256: str  # of the Parquet file
    capture: str  # its name wherever the data lives (what the store records: its metadata.json is its identity)


def frames_inputs(frames_dir: Path) -> list[FramesFile]:
    """The frame files listed by an ingest manifest, with content hashes."""
    manifest = read_manifest(frames_dir)
    if manifest is None or manifest.stage != "ingest":
        raise KdgatError(f"{frames_dir}: not an ingest output (no ingest manifest.json); run `kdgat ingest` first")
    files = []
    for item in manifest.outputs:
        path = frames_dir / item.path
        if not path.is_file():
            raise KdgatError(f"{path}: listed in {frames_dir / MANIFEST_NAME} but missing")
        sha256 = sha256_file(path)
        # cut short, overwritten: Parquet's own error is a traceback. Only where the entry holds the Parquet's hash:
        # an ingest of a version before source_sha256 recorded the capture's there (its frames are still read)
        parquet_hash = getattr(item, "source_sha256", None) is not None
        if parquet_hash and item.sha256 and sha256 != item.sha256:
            raise KdgatError(
                f"{path}: not the file ingest wrote (its sha256 differs from {frames_dir / MANIFEST_NAME}); "
                "run `kdgat ingest` again"
            )
        # an ingest before `capture`: the path it was given (two captures of one name in two folders stay two)
        capture = getattr(item, "capture", None) or item.source
        files.append(FramesFile(path, item.path, item.split, item.scenario, item.source, sha256, capture))
    return files


def _read_frames(path: Path):
    table = pq.read_table(path, columns=["timestamp", "can_id", "is_extended", "data", "label", "attack_type"])
    try:
        keys, data, labels, timestamps = frame_arrays(table)
    except MixedLabelsError as exc:
        raise KdgatError(f"{path}: {exc}; re-ingest the capture") from None
    return keys, data, labels, pc.cast(table["attack_type"], "string"), timestamps


@dataclass
class _Scan:
    """What the build needs to know before the first graph: one read of the columns it takes."""

    train_keys: list[np.ndarray]
    train_gaps: list[np.ndarray]  # inter-arrival times per training capture with timestamps
    train_gap_keys: list[np.ndarray]
    attack_names: set[str]
    splits: dict[str, BlockSplit]  # per training file (by its relative path): train, val and fusion blocks
    trace: TraceSplit | None = None  # a one-trace dataset's blocks (then ``splits`` has its test files too)
    holds: list[HoldHistogram] = field(default_factory=list)  # e4ts: the benign training frames' holds


def _trace_split(files: list[FramesFile], cfg: PreprocessingConfig) -> tuple[TraceSplit, list[np.ndarray]]:
    """The blocks of a one-trace dataset, from every file's timestamps (train and test: one recording)."""
    times, train_attacks, test_attacks = [], [], []
    for f in files:
        table = pq.read_table(f.path, columns=["timestamp", "label"])
        if table["timestamp"].null_count:
            raise KdgatError(f"{f.source}: a one-trace dataset is split on its time axis; this capture has no times")
        t = table["timestamp"].to_numpy().astype(np.float64)
        if len(t) and (np.diff(t) < 0).any():
            row = int(np.flatnonzero(np.diff(t) < 0)[0]) + 2
            raise KdgatError(f"{f.source}: frame {row:,}: timestamps go back in time (a one-trace split needs order)")
        times.append(t)
        attack = t[pc.fill_null(table["label"], 0).to_numpy() > 0]
        (train_attacks if f.split == "train" else test_attacks).append(attack)
    nonempty = [t for t in times if len(t)]
    if not nonempty:
        raise KdgatError("a one-trace dataset without frames: every capture is empty")
    start, end = min(t[0] for t in nonempty), max(t[-1] for t in nonempty)
    train = np.concatenate(train_attacks) if train_attacks else np.zeros(0)
    return TraceSplit.choose(start, end, cfg, train, test_attacks), times


def _scan_inputs(
    files: list[FramesFile],
    cfg: PreprocessingConfig,
    with_timing: bool,
    fitting: bool,
    with_runs: bool = False,
    one_trace: bool = False,
) -> _Scan:
    """Training ID keys (and arrival gaps, and with ``with_runs`` the held-byte runs of the benign training
    frames), the attack names of every file and the training files' splits.

    With ``fitting`` (a store of its own, not ``--like``), only the frames of the training blocks
    count, and a gap only when both of its frames lie in the same run of training blocks and, in a
    labelled capture, are both benign: the vocabulary and the normal periods are fitted on no frame
    a validation window will be scored on, and no attack flood sets an ID's "normal" period. In a one-trace
    dataset (``one_trace`` and ``fitting``) the blocks are the recording's (:class:`TraceSplit`), the same
    seconds in every file, and the test files get theirs too (scored in their test blocks only).
    """
    scan = _Scan([], [], [], set(), {})
    attack_to_val = True
    if one_trace and fitting:
        scan.trace, times = _trace_split(files, cfg)
        scan.splits.update({f.relative: scan.trace.of_file(t) for f, t in zip(files, times, strict=True)})
    for f in files:
        train = f.split == "train"
        columns = (
            ["attack_type"]
            + (["can_id", "is_extended", "label"] if train else [])
            + (["timestamp"] if train and with_timing else [])
            + (["data"] if train and with_runs else [])
        )
        table = pq.read_table(f.path, columns=columns)
        scan.attack_names.update(v for v in pc.unique(pc.cast(table["attack_type"], "string")).to_pylist() if v)
        if not train:
            continue
        keys = id_keys(table["can_id"].to_numpy(), table["is_extended"].to_numpy())
        n = len(keys)
        labels = None if table["label"].null_count == n else pc.fill_null(table["label"], 0).to_numpy()
        segment = np.zeros(n, np.int64)
        if scan.trace is not None:
            segment = scan.splits[f.relative].training_segments()
        elif fitting:
            n_windows = len(window_starts(n, cfg.window, cfg.stride))
            split = BlockSplit.of_file(n, n_windows, cfg, f.relative, labels, attack_to_val=attack_to_val)
            if len(split.held_out) and labels is not None and cfg.held_out_attacks:
                attack_to_val ^= bool(np.isin(split.block_of(np.flatnonzero(labels > 0)), split.held_out).any())
            scan.splits[f.relative] = split
            segment = split.training_segments()
        scan.train_keys.append(keys[segment >= 0])
        if with_runs:  # held bytes: benign frames only, each run of training blocks a stream of its own
            benign = (segment >= 0) if labels is None else (segment >= 0) & (labels == 0)
            data = payload_bytes(table["data"])
            scan.holds.append(hold_histogram(keys[benign], data[benign], streams=segment[benign]))
        if with_timing and table["timestamp"].null_count < n:
            timestamps = pc.fill_null(table["timestamp"], np.nan).to_numpy().astype(np.float64)
            gaps, previous = inter_arrival(timestamps, keys, with_previous=True)
            both = (segment >= 0) & (previous >= 0) & (segment[np.maximum(previous, 0)] == segment)
            if labels is not None:
                both &= (labels == 0) & (labels[np.maximum(previous, 0)] == 0)
            scan.train_gaps.append(gaps[both])
            scan.train_gap_keys.append(keys[both])
    return scan


def _training_vocabulary(scan: _Scan, min_count: int) -> Vocabulary:
    if not scan.train_keys:
        raise KdgatError(
            "no training frames: the frames folder has no file of split 'train' (use --like to score captures)"
        )
    return Vocabulary.from_counts(*count_keys(scan.train_keys), min_count)


def _attack_table(names: set[str], known: list[str] | None) -> list[str]:
    """Attack-type names -> codes; 'normal' is 0. An existing table keeps its codes and gains new names."""
    table = list(known or [BENIGN_ATTACK_TYPE])
    new = sorted(names - set(table))
    return table + new


def _codes(attack_names, table: list[str]) -> np.ndarray:
    codes = pc.index_in(attack_names, value_set=pa.array(table))
    return pc.fill_null(codes, 0).to_numpy().astype(np.int16)


def _fingerprint(files: list[FramesFile], cfg: PreprocessingConfig, like_meta: dict | None, one_trace: bool) -> str:
    return content_hash(
        {
            "builder": BUILDER_VERSION,
            "feature_set": get_feature_set(cfg.feature_set).tag,
            "preprocessing": cfg.model_dump(mode="json"),
            "inputs": sorted((f.relative, f.sha256, f.split, f.scenario) for f in files),
            "like": like_meta["fingerprint"] if like_meta else None,
            **({"one_trace": True} if one_trace and like_meta is None else {}),  # other stores keep their keys
        }
    )


def store_is_current(out_dir: Path, fingerprint: str) -> bool:
    meta_path = out_dir / METADATA
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    return meta.get("fingerprint") == fingerprint and all(
        (out_dir / "parts" / p).is_dir() for p in meta.get("parts", {})
    )


def _feature_stats(part_dir: Path) -> dict:
    """Mean and std of every node and edge feature on the training graphs (for optional scaling)."""
    x = np.load(part_dir / "x.npy", mmap_mode="r")
    e = np.load(part_dir / "edge_attr.npy", mmap_mode="r")

    def stats(a):
        """Two passes over blocks of rows (a float64 copy of a whole part, and its deviations, were the peak
        memory of a store built at a small stride)."""
        n, width = a.shape
        if n == 0:
            return {"mean": [0.0] * width, "std": [1.0] * width}
        rows = max(1, STATS_BLOCK // max(width, 1))
        blocks = [slice(i, i + rows) for i in range(0, n, rows)]
        mean = sum(np.asarray(a[b], np.float64).sum(axis=0) for b in blocks) / n
        spread = sum(((np.asarray(a[b], np.float64) - mean) ** 2).sum(axis=0) for b in blocks) / n
        return {"mean": mean.round(6).tolist(), "std": np.sqrt(spread).round(6).tolist()}

    return {"node": stats(x), "edge": stats(e)}


def run(
    frames_dir: str | Path,
    out_dir: str | Path,
    cfg: PreprocessingConfig,
    *,
    like: str | Path | None = None,
    force: bool = False,
    progress=None,
    threads: int | None = None,
) -> Manifest:
    """Build (or reuse) the graph store of a frames folder; its summary says what the store holds.

    A store that is already up to date is not rebuilt: its own manifest comes back, with
    ``summary["reused"]`` true.
    """
    set_threads(threads)
    started = time.perf_counter()
    frames_dir, out_dir = Path(frames_dir), Path(out_dir)
    feature_set = get_feature_set(cfg.feature_set)
    files = frames_inputs(frames_dir)
    like_meta = like_store = None
    if like is not None:
        like_store = open_store(Path(like))
        like_meta = like_store.metadata
        cfg = store_preprocessing(like_meta, cfg)  # new captures are cut and described as its models were trained
        feature_set = get_feature_set(cfg.feature_set)
        if like_meta["feature_set"]["tag"] != feature_set.tag:
            raise KdgatError(f"{like}: built with feature set {like_meta['feature_set']['tag']}, not {feature_set.tag}")
    if like is not None and Path(like).resolve() == out_dir.resolve():
        raise UsageError(f"--out {out_dir}: is the --like store; write the new store elsewhere (it would replace it)")
    if like is None and not any(f.split == "train" for f in files):  # said before the output folder is made
        raise KdgatError(
            f"{frames_dir}: no training frames (no file of split 'train'); use --like STORE to score captures"
        )
    frames_manifest = read_manifest(frames_dir)
    one_trace = bool((frames_manifest.config or {}).get("one_trace"))
    fingerprint = _fingerprint(files, cfg, like_meta, one_trace)
    if not force and store_is_current(out_dir, fingerprint) and (current := read_manifest(out_dir)) is not None:
        return current.model_copy(update={"summary": {**current.summary, "reused": True}})
    check_output_folder(out_dir)  # an unusable output path fails now, not after the work (nothing created)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / METADATA).is_file():
        raise UsageError(f"{out_dir}: exists and is not a graph store; refusing to replace it")

    scan = _scan_inputs(
        files, cfg, with_timing=feature_set.needs_timestamps and like_meta is None, fitting=like_meta is None,
        with_runs=feature_set.payload_runs and like_meta is None, one_trace=one_trace,
    )  # fmt: skip
    if like_meta is not None:
        vocab = Vocabulary.from_json(json.loads((Path(like) / VOCAB).read_text()))
        attack_types = _attack_table(scan.attack_names, like_meta["attack_types"])
    else:
        vocab = _training_vocabulary(scan, cfg.vocab_min_count)
        attack_types = _attack_table(scan.attack_names, None)
    periods = None
    if feature_set.needs_timestamps:
        if like_meta is not None:
            periods = np.array([np.nan if p is None else p for p in like_meta["timing"]["median_period"]])
        else:
            ids = [vocab.lookup(keys) for keys in scan.train_gap_keys]
            periods = median_periods(scan.train_gaps, ids, vocab.size)
    run_limits = None
    if feature_set.payload_runs:
        if like_meta is not None:
            run_limits = limits_from_json(like_meta["payload_runs"]["limit"])
        else:
            run_limits = fit_run_limits(scan.holds, vocab.lookup, vocab.size)
    no_timestamps: list[str] = []
    dataset = frames_manifest.dataset or frames_dir.name
    # captures scored by a trained store's models: do they look like its vehicle? The figures `kdgat detect` gives,
    # over each capture's frames and windows (None: not a --like store of a training store)
    reference = ood.reference_statistics(like_store) if like_store is not None and "train" in like_store.parts else None
    out_of_distribution: dict[str, dict] = {}

    clean_stale(out_dir.parent)
    with removed_if_failed(out_dir), staged_folder(out_dir) as staging:  # no empty parents left by a failed build
        shards = staging / "shards"
        shard_dirs: dict[str, list[Path]] = {}
        part_split: dict[str, tuple[str, str]] = {}
        dropped = outside = 0
        for index, f in enumerate(files):
            if progress:
                progress(index, len(files), f)
            keys, data, labels, names, timestamps = _read_frames(f.path)
            ids = vocab.lookup(keys)
            codes = None if labels is None else _codes(names, attack_types)
            frame_values = ()
            if periods is not None:
                frame_values = timing_frame_values(timestamps, keys, ids, periods)
                if timestamps is None:
                    no_timestamps.append(f.capture)
            if run_limits is not None:
                frame_values = [*frame_values, held_frame_values(keys, data, ids, run_limits)]
            starts = window_starts(len(ids), cfg.window, cfg.stride)
            if f.split == "train" and like_meta is None:
                train_mask, val_mask, fusion_mask, test_mask = scan.splits[f.relative].window_masks(starts, cfg.window)
                dropped += int((~(train_mask | val_mask | fusion_mask | test_mask)).sum())  # straddling two blocks
                selections = [
                    ("train", "train", "train", starts[train_mask]),
                    ("val", "val", "val", starts[val_mask]),
                    (FUSION_PART, "val", FUSION_PART, starts[fusion_mask]),
                ]
            elif scan.trace is not None:  # a one-trace dataset's test file: its test seconds only
                *_, in_test = scan.splits[f.relative].window_masks(starts, cfg.window)
                outside += int((~in_test).sum())
                selections = [(part_name(f.split, f.scenario), f.split, f.scenario, starts[in_test])]
            else:  # with --like every input is scored, so it is a test part (evaluate scores those only)
                split = "test" if like_meta is not None else f.split
                selections = [(part_name(split, f.scenario), split, f.scenario, starts)]
            profile = _ood_profile(reference, vocab, ids, frame_values, timestamps, periods)
            for name, split, scenario, chosen in selections:
                per_shard = max(1, SHARD_SLOTS // cfg.window)
                for piece, first in enumerate(range(0, max(len(chosen), 1), per_shard)):  # at least one, maybe empty
                    # built and written a shard at a time: a capture's graphs are never all held (nor twice)
                    graphs = build_graphs(ids, data, labels, codes, window=cfg.window, stride=cfg.stride,
                                          vocab_size=vocab.size, starts=chosen[first : first + per_shard],
                                          frame_values=frame_values)  # fmt: skip
                    shard = shards / name / f"{index:05d}-{piece:05d}"
                    write_part(
                        shard,
                        name=name,
                        split=split,
                        scenario=scenario,
                        files=[f.capture],
                        node_offsets=graphs.node_offsets,
                        edge_offsets=graphs.edge_offsets,
                        x=graphs.x,
                        node_y=graphs.node_y,
                        edge_index=graphs.edge_index,
                        edge_attr=graphs.edge_attr,
                        y=graphs.y,
                        attack_type=graphs.attack_type,
                        window_start=graphs.window_start,
                        file_index=np.zeros(graphs.num_graphs, np.int32),
                        fsync=False,  # shards live in the store's staging folder, flushed once at the swap
                    )
                    shard_dirs.setdefault(name, []).append(shard)
                    if profile is not None:
                        profile.add_windows(graphs.node_offsets, graphs.x, graphs.window_start, cfg.window)
                part_split[name] = (split, scenario)
                if profile is not None:  # --like: one selection, the file's test part
                    figures = profile.figures(len(ids) if timestamps is None else int(np.isnan(timestamps).sum()))
                    out_of_distribution[f.capture] = {"part": name, "reasons": ood.verdict(figures), "figures": figures}

        parts_meta = {}
        for name, dirs in shard_dirs.items():
            split, scenario = part_split[name]
            info = concat_parts(staging / "parts" / name, dirs, name=name, split=split, scenario=scenario, fsync=False)
            parts_meta[name] = _describe_part(staging / "parts" / name, info)
        shutil.rmtree(shards)

        if like_meta is not None:
            stats = like_meta["feature_stats"]
        elif "train" in parts_meta:
            stats = _feature_stats(staging / "parts" / "train")
        else:
            raise KdgatError("no training windows were produced (files shorter than one window?)")
        metadata = {
            "kind": "kdgat-graph-store",
            "dataset": dataset,
            "fingerprint": fingerprint,
            "window": cfg.window,
            "stride": cfg.stride,
            "preprocessing": cfg.model_dump(mode="json"),
            # of what built the store (its preprocessing section): an override of a model leaves it as it is
            "config_hash": content_hash(cfg.model_dump(mode="json")),
            "feature_set": {"name": feature_set.name, "version": feature_set.version, "tag": feature_set.tag},
            "node_features": list(feature_set.node_features),
            "edge_features": list(feature_set.edge_features),
            "vocab_size": vocab.size,
            "oov_index": vocab.oov_index,
            "attack_types": attack_types,
            "parts": parts_meta,
            "dropped_straddling_windows": dropped,
            "one_trace": None if scan.trace is None else _describe_trace(scan.trace, outside),
            "timing": None
            if periods is None
            else {"median_period": [None if np.isnan(p) else float(p) for p in periods]},  # exact: --like rereads them
            "payload_runs": None if run_limits is None else {"limit": limits_to_json(run_limits)},
            "timestamps_missing": no_timestamps,
            "feature_stats": stats,
            # the training store by its fingerprint (its path, as resolved, is in the manifest): no path in the identity
            "like": None if like is None else {"fingerprint": like_meta["fingerprint"]},
            # per scored capture (--like of a training store only): None where no check was made
            "out_of_distribution": out_of_distribution if reference is not None else None,
            "inputs": [{"path": f.relative, "sha256": f.sha256, "source": f.capture} for f in files],
        }
        atomic_write_text(staging / VOCAB, json.dumps(vocab.to_json()) + "\n")
        atomic_write_text(staging / METADATA, json.dumps(metadata, indent=2) + "\n")
        summary_keys = ("window", "stride", "vocab_size", "feature_set", "parts", "dropped_straddling_windows",
                        "one_trace", "timestamps_missing", "fingerprint", "out_of_distribution")  # fmt: skip
        manifest = write_manifest(
            staging,
            stage="graphs",
            inputs=[{"path": str(f.path.resolve()), "sha256": f.sha256} for f in files],
            config={"preprocessing": cfg.model_dump(mode="json"), "like": str(Path(like).resolve()) if like else None},
            outputs=[{"path": f"parts/{name}", **meta} for name, meta in parts_meta.items()],
            wall_time_s=time.perf_counter() - started,
            dataset=dataset,
            summary={**{k: metadata[k] for k in summary_keys}, "reused": False},
        )
    return manifest


def _ood_profile(reference: dict | None, vocab: Vocabulary, ids, frame_values, timestamps, periods):
    """The out-of-distribution profile of one capture against the training ``reference`` (None: no check), its
    frames added (their dt ratios, the first timing column, where the capture has timestamps); windows follow."""
    if reference is None:
        return None
    profile = ood.Profile(vocab.size, vocab.oov_index, reference, has_periods=periods is not None)
    profile.add_frames(ids, frame_values[0][0] if periods is not None and timestamps is not None else None)
    return profile


def _describe_trace(trace: TraceSplit, outside: int) -> dict:
    """Which seconds of the recording each part holds, and how many test-file windows lie outside test blocks."""

    def spans(blocks: np.ndarray) -> list[list[float]]:
        return [[round(float(trace.time_edges[b]), 6), round(float(trace.time_edges[b + 1]), 6)] for b in blocks]

    return {
        "val": spans(trace.val_blocks),
        FUSION_PART: spans(trace.fusion_blocks),
        "test": spans(trace.test_blocks),
        "test_windows_not_scored": outside,
    }


def _describe_part(part_dir: Path, info: dict) -> dict:
    y = np.load(part_dir / "y.npy", mmap_mode="r")
    graphs = int(info["num_graphs"])
    labelled = y >= 0
    return {
        "split": info["split"],
        "scenario": info["scenario"],
        "graphs": graphs,
        "nodes": int(info["num_nodes"]),
        "edges": int(info["num_edges"]),
        "mean_nodes": round(info["num_nodes"] / graphs, 2) if graphs else 0.0,
        "mean_edges": round(info["num_edges"] / graphs, 2) if graphs else 0.0,
        "attack_graphs": int((y == 1).sum()),
        "benign_graphs": int((y == 0).sum()),
        "attack_share": round(float((y == 1).sum() / labelled.sum()), 4) if labelled.any() else None,
        "files": len(info["files"]),
    }
