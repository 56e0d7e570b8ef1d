"""Timing features from timestamps: how early or late each ID's frames arrive.

Injection and replay show up as frames of an ID arriving much sooner after the
previous frame of that ID than its normal period (detection notes, point 1).
The normal period of each CAN ID is the median inter-arrival time of that ID
in the training captures. A capture without timestamps gets neutral values and
a ``has_timestamps`` feature of 0, so models see the degradation explicitly.
"""

from __future__ import annotations

import numpy as np

RATIO_CLIP = 10.0
EARLY_RATIO = 0.5


class ClockSteps:
    """Counts frames timestamped earlier than the frame before them, across a stream's blocks.

    Merged logs of several interfaces or a clock step put frames out of time order; a per-ID gap can
    then be negative, which the timing features read as an early arrival (ratio 0), like an injection.
    Nothing is reordered (the capture's order is the bus's); the reader is told instead.
    """

    def __init__(self) -> None:
        self.count = 0
        self.first: int | None = None  # the first such frame's position, in the caller's numbering
        self._last = np.nan

    def add(self, timestamps: np.ndarray | None, positions: np.ndarray | int) -> None:
        """One block in stream order; ``positions``: each frame's line or frame number, or the first one's."""
        if timestamps is None or not len(timestamps):
            return
        back = timestamps < np.r_[self._last, timestamps[:-1]]  # NaN compares False: untimed frames never count
        if back.any():
            self.count += int(back.sum())
            if self.first is None:
                i = int(np.argmax(back))
                self.first = i + positions if isinstance(positions, int) else int(positions[i])
        self._last = timestamps[-1]

    def warning(self, unit: str) -> str | None:
        return clock_step_warning(self.count, self.first, unit)


def clock_step_warning(count: int, first: int | None, unit: str) -> str | None:
    """What :class:`ClockSteps` found, in one line (None when nothing): ``unit`` says how ``first`` counts."""
    if not count:
        return None
    return (
        f"{count:,} frames are timestamped earlier than the frame before them (the first at {unit} {first}; "
        "merged logs or a clock step?): a per-ID gap that is negative reads as an early arrival, as an injection does"
    )


def inter_arrival(timestamps: np.ndarray, ids: np.ndarray, with_previous: bool = False):
    """Seconds since the previous frame with the same ID in this capture (NaN for the first).

    ``with_previous`` also returns that previous frame's index (-1 for an ID's first frame).
    """
    order = np.lexsort((np.arange(len(ids)), ids))
    sorted_ids = ids[order]
    sorted_t = timestamps[order]
    gaps = np.full(len(ids), np.nan)
    same = sorted_ids[1:] == sorted_ids[:-1]
    gaps[order[1:][same]] = (sorted_t[1:] - sorted_t[:-1])[same]
    if not with_previous:
        return gaps
    previous = np.full(len(ids), -1, np.int64)
    previous[order[1:][same]] = order[:-1][same]
    return gaps, previous


def median_periods(gaps: list[np.ndarray], ids: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """Median inter-arrival time per vocabulary index over the given captures (NaN if never seen twice)."""
    periods = np.full(vocab_size, np.nan)
    if not gaps:
        return periods
    g = np.concatenate(gaps)
    i = np.concatenate(ids)
    keep = np.isfinite(g)
    g, i = g[keep], i[keep]
    if len(g) == 0:
        return periods
    order = np.lexsort((g, i))
    g, i = g[order], i[order]
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    counts = np.diff(np.r_[starts, len(i)])
    low = starts + (counts - 1) // 2
    high = starts + counts // 2
    periods[i[starts]] = (g[low] + g[high]) / 2
    return periods


def timing_frame_values(timestamps: np.ndarray | None, id_keys: np.ndarray, vocab_ids: np.ndarray, periods: np.ndarray):
    """Per-frame values and their per-node aggregations for ``windows.build_graphs``.

    Inter-arrival times follow the real identifiers (``id_keys``), so IDs
    sharing the OOV index do not mix; the period comes from the vocabulary
    index. dt ratio = inter-arrival / period, clipped to [0, 10]; 1 (neutral)
    for an ID's first frame or an ID without a known period.
    """
    if timestamps is None:
        return as_frame_values(*timing_columns(None, vocab_ids, periods))
    return as_frame_values(*timing_columns(inter_arrival(timestamps, id_keys), vocab_ids, periods))


def timing_columns(gaps: np.ndarray | None, vocab_ids: np.ndarray, periods: np.ndarray):
    """Per-frame (dt ratio, early, has_timestamps) from inter-arrival times (None: no timestamps).

    Split from :func:`timing_frame_values` so that the incremental window builder, which carries
    each ID's previous timestamp across blocks, computes the very same numbers. Without timestamps
    the values are neutral: every frame on time (ratio 1), none early, and the model is told why.
    """
    n = len(vocab_ids)
    if gaps is None:
        return np.ones(n), np.zeros(n), np.zeros(n)
    period = periods[vocab_ids]
    ratio = gaps / np.where(period > 0, period, np.nan)
    ratio = np.clip(np.nan_to_num(ratio, nan=1.0), 0.0, RATIO_CLIP)
    early = (ratio < EARLY_RATIO).astype(np.float64)
    return ratio, early, np.ones(n)


def as_frame_values(ratio: np.ndarray, early: np.ndarray, has_timestamps: np.ndarray):
    """The ``frame_values`` argument of ``windows.build_graphs`` for the e4t timing node features."""
    return [(ratio, ("mean", "min", "max")), (early, ("mean",)), (has_timestamps, ("mean",))]
