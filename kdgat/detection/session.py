"""One stream through a detector: frames in, a verdict row per window out, the figures of its summary.

A :class:`Session` is the ``consume`` callback of a source (:mod:`kdgat.detection.sources`): frames go
into an incremental window builder, every batch of windows that closes is scored by every detector
of the bundle at once, the chosen detector's score is compared with its validation threshold
(``score >= threshold``, in float64 as ``kdgat evaluate`` does), alert windows get their suspect
CAN IDs, and the rows go to the sink right away.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kdgat.data.incremental import WindowBatch, WindowStream
from kdgat.data.timing import ClockSteps
from kdgat.detection import ood
from kdgat.detection.detector import Detector, name_unknown
from kdgat.detection.outputs import RowSink
from kdgat.evaluation.metrics import binary_metrics

TOP_IDS = 5


def verdict_schema(others: list[str]) -> pa.Schema:
    """The columns of a verdict row (README, `kdgat detect`), ``score_<label>`` for every other detector.

    One schema for every batch, and for a stream too short for one window: its file still gets the
    columns (a CSV header, a typed empty Parquet), so a reader of the output never meets a table without them.
    """
    names = pa.list_(pa.string())
    fields = [("file", pa.string()), ("window", pa.int64()), ("first_frame", pa.int64()), ("last_frame", pa.int64()),
              ("first_time", pa.float64()), ("last_time", pa.float64()), ("score", pa.float32()),
              ("alert", pa.bool_()), ("suspects", names), ("unknown_ids", pa.float32()), ("novel_ids", names),
              ("label", pa.int8())]  # fmt: skip
    return pa.schema(fields + [(f"score_{label}", pa.float32()) for label in others])


def _floats(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, np.float64)
    return pa.array(values, pa.float64(), mask=np.isnan(values))


class Session:
    """Scores one stream (a file, a replay, a bus) with ``detector``; ``rows`` go to ``sink``.

    ``group`` (> 1 for files) scores windows in the batches ``kdgat evaluate`` uses, so the scores
    are the same numbers; a live stream scores every window as soon as it closes (``group`` 1).
    """

    def __init__(self, detector: Detector, name: str, sink: RowSink, *, stride: int, use: str | None = None,
                 group: int = 1, live: bool = False):  # fmt: skip
        self.detector, self.name, self.sink = detector, name, sink
        self.label = detector.spec.detector(use).label
        self.others = [label for label in detector.labels if label != self.label]
        self.schema = verdict_schema(self.others)
        self.threshold = detector.thresholds[self.label]
        self.live = live
        spec = detector.spec
        timing = detector.periods is not None
        self.profile = ood.Profile(spec.vocab_size, detector.vocab.oov_index, detector.reference, timing)
        self.stream = WindowStream(
            window=spec.window,
            stride=stride,
            vocab=detector.vocab,
            periods=detector.periods,
            run_limits=detector.run_limits,
            group=group,
            max_windows=max(4096, group),
            observer=self.profile.add_frames,
        )
        self.windows = 0
        self.alerts = 0
        self.last_start = -1  # stream position of the last scored window's first frame
        self.first_alert: dict | None = None
        self.suspects: Counter = Counter()
        self.novel: Counter = Counter()  # windows per novel CAN ID
        self.novel_windows = 0
        self.labels: list[np.ndarray] = []
        self.scores: dict[str, list[np.ndarray]] = {label: [] for label in detector.labels}
        self.latency: list[np.ndarray] = []
        self.started = time.perf_counter()
        self.start_time: float | None = None  # timestamp of the stream's first frame
        self.untimed_frames = 0  # frames that came without a timestamp (neutral timing features)
        self.clock = ClockSteps()  # frames earlier than the frame before them

    # -- the consume callback -----------------------------------------------------------------------

    def __call__(self, block) -> None:
        times = block.timestamps
        self.untimed_frames += len(block) if times is None else int(np.isnan(times).sum())
        self.clock.add(times, self.stream.frames_seen)
        for batch in self.stream.push(block):
            self._score(batch)

    def finish(self) -> None:
        for batch in self.stream.finish():
            self._score(batch)
        if self.windows == 0:  # no frame (a silent bus; a short capture gives one short window): still the columns
            self.sink.write(self.schema.empty_table())

    def _score(self, batch: WindowBatch) -> None:
        graphs = batch.graphs
        scores = self.detector.score(graphs)
        primary = scores[self.label]
        alert = np.asarray(primary, np.float64) >= self.threshold
        alert_windows = np.flatnonzero(alert)
        suspects: list[list[str]] = [[] for _ in range(len(batch))]
        for i, names in zip(alert_windows, self.detector.suspects(self.label, graphs, alert_windows), strict=True):
            suspects[i] = name_unknown(names, batch.unknown_keys[i], most=1)  # one name a node
        novel = self.detector.novel_ids(self.label, graphs)
        if novel is not None and any(len(keys) for keys in batch.unknown_keys):  # which IDs "unknown" stands for
            lists = [name_unknown(names, keys) for names, keys in zip(novel.to_pylist(), batch.unknown_keys,
                                                                        strict=True)]  # fmt: skip
            novel = pa.array(lists, pa.list_(pa.string()))
        n = len(batch)
        index = np.arange(self.windows, self.windows + n, dtype=np.int64)
        columns = {
            "file": pa.array([self.name] * n, pa.string()),
            "window": pa.array(index),
            "first_frame": pa.array(graphs.window_start, pa.int64()),
            "last_frame": pa.array(batch.last_frame, pa.int64()),
            "first_time": _floats(batch.first_time),
            "last_time": _floats(batch.last_time),
            "score": pa.array(np.asarray(primary, np.float32), pa.float32()),
            "alert": pa.array(alert),
            "suspects": pa.array(suspects, pa.list_(pa.string())),
            "unknown_ids": pa.array(np.asarray(batch.unknown_share, np.float32)),
            "novel_ids": novel if novel is not None else pa.nulls(n, pa.list_(pa.string())),
        }
        labelled = bool((graphs.y >= 0).any())
        columns["label"] = pa.array(graphs.y, pa.int8(), mask=graphs.y < 0)  # null: the capture has no labels
        for label in self.others:
            columns[f"score_{label}"] = pa.array(np.asarray(scores[label], np.float32))
        self.sink.write(pa.Table.from_pydict(columns, schema=self.schema))
        if self.live and not np.isnan(batch.closed_at).all():
            self.latency.append(time.perf_counter() - batch.closed_at)
        # figures for the summary
        if self.start_time is None and not np.isnan(batch.first_time[0]):
            self.start_time = float(batch.first_time[0])
        self.profile.add_windows(graphs.node_offsets, graphs.x, graphs.window_start, self.stream.window)
        if len(alert_windows):
            if self.first_alert is None:
                k = int(alert_windows[0])
                time_ = float(batch.last_time[k])
                known = not np.isnan(time_) and self.start_time is not None
                self.first_alert = {"window": int(index[k]), "frame": int(batch.last_frame[k]),
                                    "time": time_ if known else None,
                                    "after_s": round(time_ - self.start_time, 6) if known else None}  # fmt: skip
            for i in alert_windows:
                self.suspects.update(suspects[i])
        if novel is not None:  # an ID is one node of a window: its names count windows
            self.novel_windows += int(pc.sum(pc.greater(pc.list_value_length(novel), 0)).as_py() or 0)
            names, counts = np.unique(novel.flatten().to_numpy(zero_copy_only=False), return_counts=True)
            self.novel.update(dict(zip(names.tolist(), counts.tolist(), strict=True)))
        if labelled:
            self.labels.append(graphs.y.copy())
            for label, values in scores.items():
                self.scores[label].append(np.asarray(values))
        self.windows += n
        self.alerts += int(alert.sum())
        if n:
            self.last_start = int(graphs.window_start[-1])

    # -- the summary ------------------------------------------------------------------------------

    def _warnings(self, frames: int) -> list[str]:
        """What makes this stream's verdicts less trustworthy than the evaluation's figures (said, not hidden)."""
        found = []
        window = self.stream.window
        if 0 < frames < window:
            found.append(
                f"its {frames} frames are fewer than a window ({window}): its one window is shorter than any the "
                "models trained on, so its verdict is unreliable"
            )
        if self.untimed_frames and self.detector.periods is not None:
            found.append(
                f"{self.untimed_frames:,} frames have no timestamp: their timing features are neutral (ratio 1, "
                "not early; has_timestamps 0 where the capture has none at all), so attacks seen only in timing go "
                "unseen"
            )
        clock = self.clock.warning("frame") if self.detector.periods is not None else None
        if clock:
            found.append(clock)
        return found

    def summary(self) -> dict:
        """What the stream showed: counts, first alert, top suspects, the OOD figures, metrics if labelled."""
        seconds = time.perf_counter() - self.started
        frames = self.stream.frames_seen
        figures = self.profile.figures(self.untimed_frames)
        reasons = ood.verdict(figures)
        out = {
            "file": self.name,
            "detector": self.label,
            "threshold": self.threshold,
            "frames": frames,
            "windows": self.windows,
            # frames after the last window that fits (fewer than a stride): no window holds them, as in evaluate
            "unscored_tail_frames": max(0, frames - (self.last_start + self.stream.window)) if self.windows else 0,
            "alerts": self.alerts,
            "alert_rate": self.alerts / self.windows if self.windows else None,
            "first_alert": self.first_alert,
            "top_suspects": [
                {"id": name, "alert_windows": count} for name, count in self.suspects.most_common(TOP_IDS)
            ],
            "novel_alert": self.detector.novel_alert(self.label),
            "novel_windows": self.novel_windows if self.detector.marks_novel_ids(self.label) else None,
            "top_novel_ids": [  # most windows first, then by name
                {"id": name, "windows": count}
                for name, count in sorted(self.novel.items(), key=lambda item: (-item[1], item[0]))[:TOP_IDS]
            ],
            "out_of_distribution": bool(reasons),
            "ood_reasons": reasons,
            "ood_figures": figures,
            "seconds": round(seconds, 3),
            "frames_per_s": round(frames / seconds, 1) if seconds > 0 else None,
            "warnings": self._warnings(frames),
        }
        if self.latency:
            latency = np.concatenate(self.latency) * 1e3
            out["latency_ms"] = {"p50": round(float(np.percentile(latency, 50)), 3),
                                 "p99": round(float(np.percentile(latency, 99)), 3),
                                 "max": round(float(latency.max()), 3)}  # fmt: skip
        if self.labels:
            y = np.concatenate(self.labels).astype(np.int64)
            keep = y >= 0
            out["metrics"] = {
                label: binary_metrics(y[keep], np.concatenate(values)[keep], self.detector.thresholds[label])
                for label, values in self.scores.items()
            }
        return out
