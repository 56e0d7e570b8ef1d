"""Held payload bytes: how long each byte of a CAN ID has kept its value, against its training runs.

An attack that holds a signal (CrySyS ``CONST`` modification: byte 2 of 0x410 kept at one value for
60 frames, where that benign byte changes on 86 % of the ID's frames) stays inside the byte's benign
range, and its ID sends one or two frames per window: no per-window statistic sees it. What is
abnormal is the *run*: over how many consecutive frames of its ID a byte kept its value, counted over
the whole stream (across windows). Per frame the score is the largest, over the 8 bytes, of
run / limit, clipped to [0, ``RUN_CLIP``]; the limit is the byte's ``RUN_QUANTILE`` hold on the benign
frames of the training blocks (one sample per hold; runs cut at validation blocks, attack frames
taken out). A byte that changed fewer than ``MIN_CHANGES`` times or on less than
``MIN_CHANGE_SHARE`` of its ID's frames (a constant, a slow counter's high byte, a temperature) has no
limit and scores 0: how long it holds depends on how long the capture lasts.

:func:`byte_runs` carries each ID's last payload and runs across blocks (``RunState``), so the
incremental window builder computes the numbers of a whole-file pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# a change to these or to the fitting changes every e4ts store: bump E4TS.version (kdgat/data/features.py)
RUN_CLIP = 10.0
RUN_QUANTILE = 0.999
MIN_CHANGES = 20
MIN_CHANGE_SHARE = 0.05
BYTES = 8
HELD_AGGREGATION = ("max",)  # the node feature held_max


@dataclass
class RunState:
    """Per ID key: its latest payload and each byte's current run (what the next block continues)."""

    payload: dict[int, np.ndarray] = field(default_factory=dict)
    runs: dict[int, np.ndarray] = field(default_factory=dict)


def byte_runs(keys: np.ndarray, data: np.ndarray, state: RunState | None = None) -> np.ndarray:
    """``(n, 8)`` int32: per frame and byte, over how many consecutive earlier frames of the same ID key
    the byte held this value (0: it changed, or the ID's first frame). ``state`` (updated in place)
    carries the runs of an earlier block of the same stream; None: the block is the whole stream."""
    order, _sorted_keys, sorted_runs = _sorted_runs(keys, data, state)
    runs = np.empty_like(sorted_runs)
    runs[order] = sorted_runs
    return runs


def _sorted_runs(keys: np.ndarray, data: np.ndarray, state: RunState | None):
    """:func:`byte_runs` in key order: ``(order, sorted keys, runs of the sorted frames)``."""
    n = len(keys)
    runs = np.zeros((n, BYTES), np.int32)
    if n == 0:
        return np.zeros(0, np.int64), keys[:0], runs
    position = np.arange(n)
    order = np.lexsort((position, keys))
    sorted_keys, sorted_data = keys[order], np.asarray(data)[order]
    same_key = np.zeros(n, bool)
    same_key[1:] = sorted_keys[1:] == sorted_keys[:-1]
    starts = np.flatnonzero(~same_key)  # each key's first frame in this block
    group = np.cumsum(~same_key) - 1  # which key group each sorted frame belongs to
    group_start = starts[group]
    carried_payload = np.zeros((len(starts), BYTES), np.uint8)
    carried_runs = np.full((len(starts), BYTES), -1, np.int64)  # -1: nothing carried
    if state is not None:
        for i, key in enumerate(sorted_keys[starts].tolist()):
            if key in state.payload:
                carried_payload[i], carried_runs[i] = state.payload[key], state.runs[key]
    for j in range(BYTES):
        value = sorted_data[:, j]
        same = np.zeros(n, bool)
        same[1:] = same_key[1:] & (value[1:] == value[:-1])
        continues = (carried_runs[:, j] >= 0) & (carried_payload[:, j] == value[starts])
        same[starts] = continues
        last_reset = np.maximum.accumulate(np.where(same, -1, position))
        in_block = position - last_reset  # frames since the last change within this block
        carried = position - group_start + 1 + carried_runs[group, j]  # the run went on from the last block
        runs[:, j] = np.where(last_reset >= group_start, in_block, carried)
    if state is not None:
        last = np.r_[starts[1:] - 1, n - 1]
        for key, payload, run in zip(sorted_keys[last].tolist(), sorted_data[last], runs[last], strict=True):
            state.payload[key], state.runs[key] = payload, run
    return order, sorted_keys, runs


@dataclass
class HoldHistogram:
    """The holds of benign frames, one sample per hold and byte (so that long holds are not weighted by
    their length): per ID key and byte, how many holds reached each longest run, how many of them ended
    in a change, and how many frames the ID has. What :func:`fit_run_limits` needs, a few rows per
    ID and byte instead of one per frame."""

    codes: list[np.ndarray]  # per byte: key << LENGTH_BITS | longest run, unique
    counts: list[np.ndarray]  # per byte: holds with that code
    keys: np.ndarray  # the ID keys seen
    changes: np.ndarray  # (keys, 8): holds that ended in a change of the byte
    frames: np.ndarray  # (keys,): frames of the ID that had an earlier one


LENGTH_BITS = 24  # runs are capped at 2**24 - 1 frames in the histogram (hours of one ID)
STREAM_SHIFT = 40  # stream index above the ID key (keys are below 2**33)


def hold_histogram(keys: np.ndarray, data: np.ndarray, streams: np.ndarray | None = None) -> HoldHistogram:
    """The :class:`HoldHistogram` of benign frames. ``streams`` (per frame, >= 0) cuts them into
    separate streams (the runs of consecutive training blocks of a file), so that no hold spans a
    validation block. A frame with no earlier frame of its ID in its stream starts a hold and is no
    change; a hold its stream's end cuts short counts with its length so far."""
    keys = np.asarray(keys, np.uint64)
    stream_keys = keys if streams is None else keys | (np.asarray(streams, np.uint64) << np.uint64(STREAM_SHIFT))
    n = len(keys)
    if n == 0:
        nothing = [np.zeros(0, np.uint64)] * BYTES
        return HoldHistogram(nothing, [np.zeros(0, np.int64)] * BYTES, np.zeros(0, np.uint64),
                             np.zeros((0, BYTES), np.int64), np.zeros(0, np.int64))  # fmt: skip
    _order, sorted_keys, sorted_runs = _sorted_runs(stream_keys, data, None)
    real = sorted_keys & np.uint64((1 << STREAM_SHIFT) - 1)
    later = np.r_[sorted_keys[1:] == sorted_keys[:-1], False]  # a next frame of the same ID and stream
    earlier = np.r_[False, later[:-1]]
    unique_keys, key_index = np.unique(real, return_inverse=True)
    changes = np.zeros((len(unique_keys), BYTES), np.int64)
    codes, counts = [], []
    cap = np.int64((1 << LENGTH_BITS) - 1)
    for j in range(BYTES):
        following = np.r_[sorted_runs[1:, j], 0]
        changed = later & (following == 0)
        end = changed | ~later
        np.add.at(changes[:, j], key_index[changed], 1)
        code = (real[end] << np.uint64(LENGTH_BITS)) | np.minimum(sorted_runs[end, j], cap).astype(np.uint64)
        unique, count = np.unique(code, return_counts=True)
        codes.append(unique)
        counts.append(count)
    frames = np.bincount(key_index[earlier], minlength=len(unique_keys)).astype(np.int64)
    return HoldHistogram(codes, counts, unique_keys, changes, frames)


def fit_run_limits(histograms: list[HoldHistogram], lookup, vocab_size: int) -> np.ndarray:
    """``(vocab_size, 8)`` limits from the benign training frames' holds: per vocabulary index and byte,
    the ``RUN_QUANTILE`` of the holds' longest runs (each hold counted once), at least 1. ``inf`` where
    the byte changed fewer than ``MIN_CHANGES`` times or on less than ``MIN_CHANGE_SHARE`` of the ID's
    frames: a byte that hardly moves holds for as long as the capture lasts, and a longer drive would
    hold it longer. ``lookup`` maps ID keys to vocabulary indices."""
    limits = np.full((vocab_size, BYTES), np.inf)
    histograms = [h for h in histograms if len(h.keys)]
    if not histograms:
        return limits
    ids = lookup(np.concatenate([h.keys for h in histograms]))
    changes = np.zeros((vocab_size, BYTES), np.int64)
    frames = np.zeros(vocab_size, np.int64)
    np.add.at(changes, ids, np.concatenate([h.changes for h in histograms]))
    np.add.at(frames, ids, np.concatenate([h.frames for h in histograms]))
    moving = (changes >= MIN_CHANGES) & (changes >= MIN_CHANGE_SHARE * frames[:, None])
    mask = np.uint64((1 << LENGTH_BITS) - 1)
    for j in range(BYTES):
        code = np.concatenate([h.codes[j] for h in histograms])
        count = np.concatenate([h.counts[j] for h in histograms])
        vid = lookup(code >> np.uint64(LENGTH_BITS)).astype(np.int64)
        length = (code & mask).astype(np.int64)
        order = np.lexsort((length, vid))
        vid, length, count = vid[order], length[order], count[order]
        firsts = np.flatnonzero(np.r_[True, vid[1:] != vid[:-1]])
        cumulative = np.cumsum(count)
        before = np.r_[0, cumulative[firsts[1:] - 1]]  # holds of the earlier IDs
        total = np.diff(np.r_[before, cumulative[-1]])
        # the first hold at or above the quantile's rank within each ID (ranks 0 .. total - 1)
        rank = before + np.floor(RUN_QUANTILE * (total - 1)).astype(np.int64)
        at = np.searchsorted(cumulative, rank, side="right")
        fitted = np.maximum(length[at], 1).astype(np.float64)
        group = vid[firsts]
        limits[group, j] = np.where(moving[group, j], fitted, np.inf)
    return limits


def held_scores(runs: np.ndarray, vocab_ids: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Per frame: the largest, over the bytes, of run / the byte's limit, clipped to [0, RUN_CLIP]."""
    score = np.zeros(len(runs))
    for j in range(BYTES):  # one byte at a time: no (n, 8) float array for a long capture
        np.maximum(score, runs[:, j] / limits[vocab_ids, j], out=score)
    return np.minimum(score, RUN_CLIP)


def held_frame_values(keys: np.ndarray, data: np.ndarray, vocab_ids: np.ndarray, limits: np.ndarray,
                      state: RunState | None = None) -> tuple[np.ndarray, tuple[str, ...]]:  # fmt: skip
    """The ``held_max`` entry of ``windows.build_graphs``' ``frame_values``: per-frame held scores, max per
    node. The graphs stage passes a whole capture, the incremental builder each block with its ``state``."""
    return held_scores(byte_runs(keys, data, state), vocab_ids, limits), HELD_AGGREGATION


def limits_to_json(limits: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isinf(v) else float(v) for v in row] for row in limits]


def limits_from_json(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.inf if v is None else v for v in row] for row in rows], np.float64).reshape(-1, BYTES)
