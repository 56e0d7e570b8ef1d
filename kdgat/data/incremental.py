"""Windows built as frames arrive: the batch builder's graphs, one block (or one frame) at a time.

Why: a live bus never ends and a 1 GB capture must not be held whole, yet a detector must see
exactly the graphs it was trained on. :class:`WindowStream` keeps only the frames that windows
still to come need (from the next window start on) and calls :func:`kdgat.data.windows.build_graphs`
on them for every window that has closed, so node, edge and timing features are the batch
builder's own code; ``tests/test_incremental.py`` checks the graphs are equal, array for array.

A window starting at frame ``s`` closes when frame ``s + W`` arrives: its last transition
(frame ``s + W - 1`` -> ``s + W``) points into it, as in the batch builder. At the end of the
stream (:meth:`WindowStream.finish`) the last full window closes without that transition, and a
stream shorter than one window gives one short window, as for a short file.

Timing features need each CAN ID's previous timestamp, over the whole stream: it is carried
across blocks (one dict entry per ID), so inter-arrival times equal those computed over the file.
The e4ts held-byte score carries each ID's last payload and byte runs the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from kdgat.data.payload_runs import HELD_AGGREGATION, RunState, held_frame_values
from kdgat.data.timing import as_frame_values, timing_columns
from kdgat.data.vocab import Vocabulary
from kdgat.data.windows import GraphArrays, build_graphs

__all__ = ["FrameBlock", "WindowBatch", "WindowStream"]


@dataclass
class FrameBlock:
    """Consecutive frames of one stream, as arrays (what a reader or a bus hands over)."""

    keys: np.ndarray  # uint64 ID keys (kdgat.data.vocab.id_keys: 11- and 29-bit IDs differ)
    data: np.ndarray  # (n, 8) uint8 payload, zero-padded
    timestamps: np.ndarray | None = None  # float64 seconds (NaN where unknown); None: no timestamps
    labels: np.ndarray | None = None  # int8 0/1 per frame; None: unlabelled
    arrival: np.ndarray | None = None  # float64 time.perf_counter() at receipt (live latency)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class WindowBatch:
    """Closed windows, in stream order: their graphs and where they lie in the stream."""

    graphs: GraphArrays  # window_start holds the stream position of each window's first frame
    last_frame: np.ndarray  # int64 stream position of each window's last frame
    first_time: np.ndarray  # float64 timestamp of the first / last frame (NaN without timestamps)
    last_time: np.ndarray
    unknown_share: np.ndarray  # float64 share of the window's frames whose ID is out of vocabulary
    closed_at: np.ndarray  # float64 arrival time of the frame that closed the window (NaN if not given)
    # per window, the distinct ID keys of its out-of-vocabulary frames (most frames first, then by key): which IDs
    # the "unknown" node stands for, for a user told which IDs are behind an alert
    unknown_keys: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return self.graphs.num_graphs


class _Columns:
    """Growable per-frame columns of the frames still needed, compacted in place (amortised O(1))."""

    def __init__(self, capacity: int, timing: bool, labelled: bool, held: bool = False):
        self.size = 0
        self.arrays: dict[str, np.ndarray] = {}
        specs = {"ids": (np.int64, ()), "keys": (np.uint64, ()), "data": (np.uint8, (8,)), "time": (np.float64, ()),
                 "arrival": (np.float64, ()), "oov": (np.int64, ())}  # fmt: skip
        if timing:
            specs |= {"ratio": (np.float64, ()), "early": (np.float64, ()), "has": (np.float64, ())}
        if held:
            specs["held"] = (np.float64, ())
        if labelled:
            specs["labels"] = (np.int8, ())
        self.specs = specs
        for name, (dtype, shape) in specs.items():
            self.arrays[name] = np.zeros((capacity, *shape), dtype)

    def drop_front(self, count: int) -> None:
        if count <= 0:
            return
        keep = self.size - count
        for arr in self.arrays.values():
            arr[:keep] = arr[count : self.size]
        self.size = keep

    def append(self, columns: dict[str, np.ndarray]) -> None:
        n = len(columns["ids"])
        capacity = len(self.arrays["ids"])
        if self.size + n > capacity:
            new = max(2 * capacity, self.size + n)
            for name, arr in self.arrays.items():
                grown = np.zeros((new, *arr.shape[1:]), arr.dtype)
                grown[: self.size] = arr[: self.size]
                self.arrays[name] = grown
        for name, values in columns.items():
            self.arrays[name][self.size : self.size + n] = values
        self.size += n

    def view(self, name: str) -> np.ndarray:
        return self.arrays[name][: self.size]


class WindowStream:
    """Incremental window -> graph builder over one stream (one capture file or one bus).

    ``push(block)`` and ``finish()`` yield :class:`WindowBatch` es of at most ``max_windows``
    windows. ``group`` > 1 holds windows back until a multiple of ``group`` has closed (until
    ``finish``), so that scoring batches line up with those of an offline pass over the same file.
    ``periods`` (median period per vocabulary index) switches the e4t timing features on,
    ``run_limits`` (per vocabulary index and byte) the e4ts held-byte score.
    """

    def __init__(
        self,
        *,
        window: int,
        stride: int,
        vocab: Vocabulary,
        periods: np.ndarray | None = None,
        run_limits: np.ndarray | None = None,
        group: int = 1,
        max_windows: int = 4096,
        observer=None,
    ):
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be positive, got {window} / {stride}")
        self.window, self.stride = int(window), int(stride)
        self.vocab = vocab
        self.periods = None if periods is None else np.asarray(periods, np.float64)
        self.run_limits = None if run_limits is None else np.asarray(run_limits, np.float64)
        self._runs = RunState()  # each ID key's last payload and byte runs, over the whole stream
        self.group = max(1, int(group))
        self.max_windows = max(self.group, (int(max_windows) // self.group) * self.group)
        self.frames_seen = 0
        self.windows_emitted = 0
        self._next_start = 0  # stream position of the next window to close
        self._base = 0  # stream position of the buffer's first frame
        self._buffer: _Columns | None = None
        self._labelled: bool | None = None
        self._last_time: dict[int, float] = {}  # ID key -> timestamp of its latest frame
        self._finished = False
        self._observer = observer  # observer(vocab_ids, dt_ratio or None) sees every pushed block

    # -- input ----------------------------------------------------------------------------------

    def _gaps(self, keys: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """Seconds since the previous frame of the same ID key, over the whole stream (NaN for the first)."""
        order = np.lexsort((np.arange(len(keys)), keys))
        sorted_keys, sorted_t = keys[order], timestamps[order]
        gaps = np.full(len(keys), np.nan)
        same = sorted_keys[1:] == sorted_keys[:-1]
        gaps[order[1:][same]] = (sorted_t[1:] - sorted_t[:-1])[same]
        first = np.concatenate(([True], ~same))
        last = np.concatenate((~same, [True]))
        carried = self._last_time
        first_pos = order[first]
        previous = np.array([carried.get(k, np.nan) for k in sorted_keys[first].tolist()], dtype=np.float64)
        gaps[first_pos] = timestamps[first_pos] - previous
        carried.update(zip(sorted_keys[last].tolist(), sorted_t[last].tolist(), strict=True))
        return gaps

    def push(self, block: FrameBlock) -> Iterator[WindowBatch]:
        """Add frames; yields the windows they close."""
        if self._finished:
            raise RuntimeError("push after finish")
        n = len(block)
        if n == 0:
            return
        labelled = block.labels is not None
        if self._labelled is None:
            self._labelled = labelled
            capacity = max(4 * (self.window + 1), 1024)
            self._buffer = _Columns(capacity, self.periods is not None, labelled, self.run_limits is not None)
        elif labelled != self._labelled:
            raise ValueError("some frames are labelled and some are not")
        keys = np.asarray(block.keys, np.uint64)
        ids = self.vocab.lookup(keys)
        columns = {
            "ids": ids,
            "keys": keys,
            "data": block.data,
            "time": np.full(n, np.nan) if block.timestamps is None else block.timestamps,
            "arrival": np.full(n, np.nan) if block.arrival is None else block.arrival,
            "oov": (ids == self.vocab.oov_index).astype(np.int64),
        }
        if self.periods is not None:
            gaps = None if block.timestamps is None else self._gaps(block.keys, block.timestamps)
            columns["ratio"], columns["early"], columns["has"] = timing_columns(gaps, ids, self.periods)
        if self.run_limits is not None:
            columns["held"], _ = held_frame_values(keys, np.asarray(block.data), ids, self.run_limits, self._runs)
        if labelled:
            columns["labels"] = block.labels
        if self._observer is not None:
            has_ratio = self.periods is not None and block.timestamps is not None
            self._observer(ids, columns["ratio"] if has_ratio else None)
        if self._buffer.size + n > len(self._buffer.arrays["ids"]):
            self._compact()  # only when full: moving the kept frames on every push would cost more
        self._buffer.append(columns)
        self.frames_seen += n
        yield from self._emit(final=False)

    def finish(self) -> Iterator[WindowBatch]:
        """End of stream: the windows still open close (the last one without its outgoing transition)."""
        if self._finished:
            return
        self._finished = True
        if self._buffer is not None:
            yield from self._emit(final=True)

    # -- output ---------------------------------------------------------------------------------

    def _closable(self, final: bool) -> int:
        total, w, s = self.frames_seen, self.window, self.stride
        if final:
            last = total - w if total >= w else (0 if self.windows_emitted == 0 and total > 0 else -1)
        else:
            last = total - w - 1
        if last < self._next_start:
            return 0
        count = (last - self._next_start) // s + 1
        return count if final else (count // self.group) * self.group

    def _emit(self, final: bool) -> Iterator[WindowBatch]:
        count = self._closable(final)
        while count > 0:
            take = min(count, self.max_windows)
            yield self._build(take)
            count -= take

    def _compact(self) -> None:
        """Forget the frames before the next window start (no window to come reads them)."""
        drop = self._next_start - self._base
        if drop > 0 and self._buffer is not None:
            drop = min(drop, self._buffer.size)
            self._buffer.drop_front(drop)
            self._base += drop

    def _build(self, count: int) -> WindowBatch:
        buf, w = self._buffer, self.window
        starts = self._next_start + np.arange(count, dtype=np.int64) * self.stride
        local = starts - self._base
        # frames from the first start to one past the last window (its outgoing transition), if here
        hi = min(int(local[-1]) + w + 1, buf.size)
        lo = int(local[0])
        view = {name: buf.view(name)[lo:hi] for name in buf.specs}
        frame_values = ()
        if self.periods is not None:
            frame_values = as_frame_values(view["ratio"], view["early"], view["has"])
        if self.run_limits is not None:
            frame_values = [*frame_values, (view["held"], HELD_AGGREGATION)]
        graphs = build_graphs(
            view["ids"],
            view["data"],
            view["labels"] if self._labelled else None,
            None,
            window=w,
            stride=self.stride,
            vocab_size=self.vocab.size,
            starts=local - lo,
            frame_values=frame_values,
        )
        graphs.window_start = starts
        size = hi - lo
        rel = local - lo
        stop = np.minimum(rel + w, size) - 1  # last source frame of each window, buffer-relative
        closing = np.minimum(rel + w, size - 1)  # the frame whose arrival closed the window
        oov = np.concatenate(([0], np.cumsum(view["oov"])))
        batch = WindowBatch(
            graphs=graphs,
            last_frame=stop + lo + self._base,
            first_time=view["time"][rel],
            last_time=view["time"][stop],
            unknown_share=(oov[stop + 1] - oov[rel]) / (stop + 1 - rel),
            closed_at=view["arrival"][closing],
            unknown_keys=_unknown_keys(view["keys"], view["oov"], rel, stop),
        )
        self._next_start = int(starts[-1]) + self.stride
        self.windows_emitted += count
        return batch


def _unknown_keys(keys: np.ndarray, oov: np.ndarray, first: np.ndarray, last: np.ndarray) -> list[np.ndarray]:
    """Per window (source frames ``first[j]..last[j]``, ascending starts): the distinct keys of its out-of-vocabulary
    frames, most frames first, then by key. Pairs (window, frame) are formed for those frames only."""
    where = np.flatnonzero(oov[: int(last[-1]) + 1])  # a batch holds one window or more
    if len(where) == 0:
        return [np.zeros(0, np.uint64)] * len(first)
    # the windows holding each such frame: those starting at or before it and ending at or after it
    lo = np.searchsorted(last, where, side="left")
    hi = np.searchsorted(first, where, side="right")
    spans = np.maximum(hi - lo, 0)
    window = np.repeat(lo, spans) + np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
    # one uint64 per (window, key): a key holds 33 bits (29-bit ID and the extended flag), windows a batch's count
    codes, counts = np.unique((window.astype(np.uint64) << _KEY_BITS) | np.repeat(keys[where], spans),
                              return_counts=True)  # fmt: skip
    windows, found = (codes >> _KEY_BITS).astype(np.int64), codes & _KEY_MASK
    order = np.lexsort((found, -counts, windows))
    bounds = np.searchsorted(windows[order], np.arange(len(first) + 1))
    found = found[order]
    return [found[bounds[j] : bounds[j + 1]] for j in range(len(first))]


_KEY_BITS = np.uint64(34)
_KEY_MASK = np.uint64((1 << 34) - 1)
