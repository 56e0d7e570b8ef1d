"""Held payload bytes: how long each byte of a CAN ID has kept its value, against its training runs.

An attack that holds a signal (CrySyS ``CONST`` modification: byte 2 of 0x410 kept at one value for
60 frames, where that benign byte changes on 86 % of the ID's frames) stays inside the byte's benign
range, and its ID sends one or two frames per window: no per-window statistic sees it. What is
abnormal is the *run*: over how many consecutive frames of its ID a byte kept its value, counted over
the whole stream (across windows). Per frame the score is the largest, over the 8 bytes, of
run / limit, clipped to [0, ``RUN_CLIP``]; the limit is the byte's ``RUN_QUANTILE`` run on the benign
frames of the training blocks. A byte that changed on fewer than ``MIN_CHANGES`` of those frames (a
constant, a slow counter's high byte) has no limit and scores 0: its runs say nothing.

:func:`byte_runs` carries each ID's last payload and runs across blocks (``RunState``), so the
incremental window builder computes the numbers of a whole-file pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RUN_CLIP = 10.0
RUN_QUANTILE = 0.999
MIN_CHANGES = 20
BYTES = 8


@dataclass
class RunState:
    """Per ID key: its latest payload and each byte's current run (what the next block continues)."""

    payload: dict[int, np.ndarray] = field(default_factory=dict)
    runs: dict[int, np.ndarray] = field(default_factory=dict)


def byte_runs(keys: np.ndarray, data: np.ndarray, state: RunState | None = None) -> np.ndarray:
    """``(n, 8)`` int64: per frame and byte, over how many consecutive earlier frames of the same ID key
    the byte held this value (0: it changed, or the ID's first frame). ``state`` (updated in place)
    carries the runs of an earlier block of the same stream; None: the block is the whole stream."""
    n = len(keys)
    runs = np.zeros((n, BYTES), np.int64)
    if n == 0:
        return runs
    order = np.lexsort((np.arange(n), keys))
    sorted_keys, sorted_data = keys[order], np.asarray(data)[order]
    same_key = np.zeros(n, bool)
    same_key[1:] = sorted_keys[1:] == sorted_keys[:-1]
    starts = np.flatnonzero(~same_key)  # each key's first frame in this block
    group_start = np.maximum.accumulate(np.where(~same_key, np.arange(n), 0))
    carried_payload = np.zeros((len(starts), BYTES), np.int64)
    carried_runs = np.full((len(starts), BYTES), -1, np.int64)  # -1: nothing carried
    if state is not None:
        for i, key in enumerate(sorted_keys[starts].tolist()):
            if key in state.payload:
                carried_payload[i], carried_runs[i] = state.payload[key], state.runs[key]
    position = np.arange(n)
    group = np.cumsum(~same_key) - 1  # which key group each sorted frame belongs to
    for j in range(BYTES):
        value = sorted_data[:, j].astype(np.int64)
        same = np.zeros(n, bool)
        same[1:] = same_key[1:] & (value[1:] == value[:-1])
        continues = (carried_runs[:, j] >= 0) & (carried_payload[:, j] == value[starts])
        same[starts] = continues
        last_reset = np.maximum.accumulate(np.where(same, -1, position))
        in_block = position - last_reset  # frames since the last change within this block
        carried = position - group_start + 1 + carried_runs[group, j]  # the run went on from the last block
        runs[order, j] = np.where(last_reset >= group_start, in_block, carried)
    if state is not None:
        last = np.r_[starts[1:] - 1, n - 1]
        for key, payload, run in zip(
            sorted_keys[last].tolist(), sorted_data[last].astype(np.int64), runs[order][last], strict=True
        ):
            state.payload[key], state.runs[key] = payload, run
    return runs


def fit_run_limits(runs: list[np.ndarray], vocab_ids: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """``(vocab_size, 8)`` limits: per vocabulary index and byte, the ``RUN_QUANTILE`` of the runs given
    (those of benign training frames), at least 1; ``inf`` where the byte changed on fewer than
    ``MIN_CHANGES`` of them (or the ID has none)."""
    limits = np.full((vocab_size, BYTES), np.inf)
    if not runs:
        return limits
    r = np.concatenate(runs)
    ids = np.concatenate(vocab_ids)
    for j in range(BYTES):
        order = np.lexsort((r[:, j], ids))
        values, groups = r[order, j], ids[order]
        firsts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        counts = np.diff(np.r_[firsts, len(groups)])
        changes = np.add.reduceat((values == 0).astype(np.int64), firsts)
        at = firsts + np.minimum(counts - 1, np.floor(RUN_QUANTILE * (counts - 1)).astype(np.int64))
        fitted = np.maximum(values[at], 1).astype(np.float64)
        limits[groups[firsts], j] = np.where(changes >= MIN_CHANGES, fitted, np.inf)
    return limits


def held_scores(runs: np.ndarray, vocab_ids: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Per frame: the largest, over the bytes, of run / the byte's limit, clipped to [0, RUN_CLIP]."""
    if len(runs) == 0:
        return np.zeros(0)
    return np.clip((runs / limits[vocab_ids]).max(axis=1), 0.0, RUN_CLIP)


def limits_to_json(limits: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isinf(v) else float(v) for v in row] for row in limits]


def limits_from_json(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.inf if v is None else v for v in row] for row in rows], np.float64).reshape(-1, BYTES)
