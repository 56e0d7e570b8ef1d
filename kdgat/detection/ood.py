"""Does a capture look like the vehicle the detector was trained on? Five figures and their limits.

A detector scoring another vehicle's traffic sees every CAN ID as unknown (one out-of-vocabulary
node per window) and its verdicts mean nothing; a user must be told, with the figure, instead of
reading a clean bill of health. The figures, accumulated while the capture streams by:

- ``unknown_id_share``: frames whose ID the training vocabulary lacks (limit 20%);
- ``training_id_coverage``: of the IDs present in at least half of the training windows, the share
  seen in the capture (limit: below 50%; only once the capture spans 20 windows);
- ``timing_mismatch``: of the known IDs with 20 or more frames, the share whose mean log2
  (inter-arrival / training period) is beyond +-1, i.e. a typical period off by more than 2x (limit 30%);
- ``payload_mismatch``: of the known IDs in 200 or more windows, the share whose mean payload
  bytes differ from training by more than 64 (of 255), or twice the byte's spread over the training
  windows where that is more, in some byte (limit 50%). A payload mean over a stretch of driving follows
  the moment's signals: the first 10,000 frames (100 windows) of two ROAD test captures of the training
  vehicle differed by over 64 on 52% and 55% of its IDs (read as another vehicle, when 5 windows
  sufficed), the first 20,000 on 34% and 45%; beyond twice their spread, on 10% and 7%. Bundles exported
  before the spread was recorded compare with 64 alone.
- ``untimed_share``: frames without a timestamp, for a detector trained on timed traffic (limit 50%): their
  timing features read the neutral value (ratio 1, ``has_timestamps`` 0) its training never had, and a
  benign capture written without timestamps alerted on every window.

Windows are counted as the capture's tiling (the first window starting in each stretch of ``window``
frames; at the default stride every window): the figures and the evidence they need are the same at
any stride that divides the window, where overlapping windows once counted each frame several times.

Attacks move these figures too (injected unknown IDs, early frames), but on a few IDs; the limits
are set for whole-vehicle differences, and the output always carries the figures themselves. An
ID-fuzzing attack on the training vehicle's bus can put a quarter of the frames on unknown IDs while
the vehicle's own traffic goes on: so the unknown-ID share speaks of another vehicle only where that
traffic cannot vouch for the vehicle, i.e. unless at least half of its regular IDs are there *and* the
known IDs arrive at their training periods (timing measured, within its limit): a frame or two of
some regular IDs among a flood of unknown ones vouches for nothing.
"""

from __future__ import annotations

import numpy as np

from kdgat.data.store import GraphStore

LIMITS = {
    "unknown_id_share": 0.2,
    "training_id_coverage": 0.5,
    "timing_mismatch": 0.3,
    "payload_mismatch": 0.5,
    "untimed_share": 0.5,
}
MIN_WINDOWS = 20
MIN_TIMING_FRAMES = 20
MIN_PAYLOAD_WINDOWS = 200
PAYLOAD_TOLERANCE = 64 / 255
REFERENCE_ROWS = 1 << 18  # training nodes read at a time for the reference statistics
PAYLOAD_SPREADS = 2.0  # a byte of a capture differs when its mean is this many training spreads away (or 64)


class Profile:
    """Running per-ID counts of one stream, compared with the training reference at the end."""

    def __init__(self, vocab_size: int, oov_index: int, reference: dict, has_periods: bool):
        self.vocab_size, self.oov = vocab_size, oov_index
        self.frames = np.zeros(vocab_size, np.int64)
        self.log_ratio = np.zeros(vocab_size)
        self.timed = np.zeros(vocab_size, np.int64)
        self.payload = np.zeros((vocab_size, 8))
        self.nodes = np.zeros(vocab_size, np.int64)
        self.windows = 0
        self._last_stretch = -1
        self.has_periods = has_periods
        ref_nodes = np.asarray(reference["nodes"], np.int64)
        self.frequent = ref_nodes >= 0.5 * max(int(reference.get("windows", 0)), 1)
        self.frequent[oov_index] = False
        self.ref_payload = np.array([[np.nan] * 8 if row is None else row for row in reference["payload_mean"]])
        spread = reference.get("payload_std")  # absent from bundles exported before it was recorded
        self.tolerance = np.full(self.ref_payload.shape, PAYLOAD_TOLERANCE)
        if spread is not None:
            spread = np.array([[0.0] * 8 if row is None else row for row in spread])
            self.tolerance = np.maximum(self.tolerance, PAYLOAD_SPREADS * spread)

    def add_frames(self, ids: np.ndarray, ratio: np.ndarray | None) -> None:
        self.frames += np.bincount(ids, minlength=self.vocab_size)
        if ratio is not None:
            timed = ratio != 1.0  # exactly 1: the ID's first frame, or no known period (neutral value)
            self.timed += np.bincount(ids[timed], minlength=self.vocab_size)
            logs = np.log2(np.maximum(ratio[timed], 1 / 64))
            self.log_ratio += np.bincount(ids[timed], weights=logs, minlength=self.vocab_size)

    def add_windows(self, node_offsets: np.ndarray, x: np.ndarray, window_start: np.ndarray, window: int) -> None:
        """The nodes of the windows that tile the stream: of each stretch of ``window`` frames, the first window
        starting in it (windows arrive in stream order)."""
        stretch = np.asarray(window_start, np.int64) // int(window)
        tiling = stretch != np.concatenate([[self._last_stretch], stretch[:-1]])
        if len(stretch):
            self._last_stretch = int(stretch[-1])
        nodes = np.repeat(tiling, np.diff(node_offsets))
        self.add_nodes(x[nodes], int(tiling.sum()))

    def add_nodes(self, x: np.ndarray, windows: int) -> None:
        ids = x[:, 0].astype(np.int64)
        self.nodes += np.bincount(ids, minlength=self.vocab_size)
        for byte in range(8):
            self.payload[:, byte] += np.bincount(ids, weights=x[:, 1 + byte], minlength=self.vocab_size)
        self.windows += windows

    def figures(self, untimed_frames: int = 0) -> dict:
        """The figures; ``untimed_frames``: how many of the stream's frames came without a timestamp."""
        total = int(self.frames.sum())
        known = np.arange(self.vocab_size) != self.oov
        out: dict = {"unknown_id_share": float(self.frames[self.oov] / total) if total else None}
        present = self.frames > 0
        frequent = int(self.frequent.sum())
        enough = self.windows >= MIN_WINDOWS and frequent > 0
        out["training_id_coverage"] = float((present & self.frequent).sum() / frequent) if enough else None
        timed = known & (self.timed >= MIN_TIMING_FRAMES)
        if self.has_periods and timed.any():
            mean_log = self.log_ratio[timed] / self.timed[timed]
            out["timing_mismatch"] = float((np.abs(mean_log) > 1).mean())
        else:
            out["timing_mismatch"] = None
        seen = known & (self.nodes >= MIN_PAYLOAD_WINDOWS) & ~np.isnan(self.ref_payload).any(axis=1)
        if seen.any():
            means = self.payload[seen] / self.nodes[seen, None]
            out["payload_mismatch"] = float(
                (np.abs(means - self.ref_payload[seen]) > self.tolerance[seen]).any(1).mean()
            )
        else:
            out["payload_mismatch"] = None
        out["untimed_share"] = float(untimed_frames / total) if self.has_periods and total else None
        return out


def verdict(figures: dict) -> list[str]:
    """One sentence per figure beyond its limit (empty: the capture looks like the training vehicle)."""
    reasons = []
    share = figures.get("unknown_id_share")
    coverage = figures.get("training_id_coverage")
    timing = figures.get("timing_mismatch")
    vouched = (  # the vehicle's own traffic goes on: the unknown IDs are injected, not another vehicle's
        coverage is not None
        and coverage >= LIMITS["training_id_coverage"]
        and timing is not None
        and timing <= LIMITS["timing_mismatch"]
    )
    if share is not None and share > LIMITS["unknown_id_share"] and not vouched:
        reasons.append(f"{100 * share:.1f}% of frames have CAN IDs the detector never saw in training "
                       f"(limit {100 * LIMITS['unknown_id_share']:.0f}%)")  # fmt: skip
    if coverage is not None and coverage < LIMITS["training_id_coverage"]:
        reasons.append(f"only {100 * coverage:.1f}% of the training vehicle's regular CAN IDs appear "
                       f"(limit {100 * LIMITS['training_id_coverage']:.0f}%)")  # fmt: skip
    if timing is not None and timing > LIMITS["timing_mismatch"]:
        reasons.append(f"{100 * timing:.1f}% of known CAN IDs arrive at more than 2x or under half their "
                       f"training period (limit {100 * LIMITS['timing_mismatch']:.0f}%)")  # fmt: skip
    untimed = figures.get("untimed_share")
    if untimed is not None and untimed > LIMITS["untimed_share"]:
        reasons.append(f"{100 * untimed:.1f}% of frames have no timestamp, and the detector was trained on timed "
                       "traffic: their timing features read a value its training never had "
                       f"(limit {100 * LIMITS['untimed_share']:.0f}%)")  # fmt: skip
    payload = figures.get("payload_mismatch")
    if payload is not None and payload > LIMITS["payload_mismatch"]:
        reasons.append(f"{100 * payload:.1f}% of known CAN IDs carry payloads unlike training "
                       f"(limit {100 * LIMITS['payload_mismatch']:.0f}%)")  # fmt: skip
    return reasons


def unlike_training(out_of_distribution: dict | None, models: str) -> list[str]:
    """One line per capture of a ``--like`` store (its ``out_of_distribution`` record) unlike the vehicle of
    ``models`` (words naming them): figures they give on it mean little, as detect says of its verdicts."""
    return [
        f"{source}: does not look like the vehicle of {models}: "
        + "; ".join(entry["reasons"])
        + f"; scores of its windows (part '{entry['part']}') mean little (figures: the store's metadata.json)"
        for source, entry in (out_of_distribution or {}).items()
        if entry["reasons"]
    ]


def reference_statistics(store: GraphStore) -> dict:
    """Mean payload byte (/255) per vocabulary index over the training windows' nodes, and its spread from
    window to window (the standard deviation of the nodes' values; None: never seen).

    The out-of-distribution check compares a capture's per-ID payload means with these: a byte whose value
    follows the driving (a speed) moves by its spread within one vehicle, a constant byte does not.
    """
    part = store.part("train")
    counts = np.zeros(store.vocab_size, np.int64)
    sums, squares = np.zeros((store.vocab_size, 8)), np.zeros((store.vocab_size, 8))
    for start in range(0, part.num_nodes, REFERENCE_ROWS):  # blocks of nodes: never a float64 copy of the whole part
        x = np.asarray(part.x[start : start + REFERENCE_ROWS], dtype=np.float64)
        ids = x[:, 0].astype(np.int64)
        counts += np.bincount(ids, minlength=store.vocab_size)
        for byte in range(8):
            sums[:, byte] += np.bincount(ids, weights=x[:, 1 + byte], minlength=store.vocab_size)
            squares[:, byte] += np.bincount(ids, weights=x[:, 1 + byte] ** 2, minlength=store.vocab_size)
    means = sums / np.maximum(counts, 1)[:, None]
    spreads = np.sqrt(np.maximum(squares / np.maximum(counts, 1)[:, None] - means**2, 0.0))

    def per_id(values: np.ndarray) -> list:
        return [None if c == 0 else [round(float(v), 6) for v in row] for row, c in zip(values, counts, strict=True)]

    return {
        "windows": int(part.num_graphs),
        "payload_mean": per_id(means),
        "payload_std": per_id(spreads),
        "nodes": counts.tolist(),
    }
