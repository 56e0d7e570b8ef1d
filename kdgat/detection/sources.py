"""Where a detector's frames come from: capture files, a live bus, a capture replayed at its own pace.

Every source hands :class:`~kdgat.data.incremental.FrameBlock` s to a ``consume`` callback, so the
detection session does not care where frames come from:

- files in every format ``kdgat ingest`` reads go through the ingest's own streaming readers
  (:func:`kdgat.data.capture.read_capture`: compressed or not, one-line errors with file and line);
- kdgat's own frame Parquet (``kdgat ingest`` output, e.g. after ``--on-bad-rows skip``);
- Vector ASC and BLF and PEAK TRC logs, which kdgat has no reader for, go through python-can's
  (recognised by content, also inside .gz/.xz/.bz2/.zst, which python-can alone cannot do for BLF);
- a bus is any python-can interface (``socketcan:can0``, ``virtual:test``, ``udp_multicast:...``);
- :class:`Pacer` releases a capture's frames at their recorded times (``--replay``).
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from kdgat.core.errors import BadInputError, KdgatError, UsageError
from kdgat.core.hashing import sha256_file
from kdgat.data.capture import (
    IngestOptions,
    IngestSource,
    NoFramesError,
    capture_stem,
    read_capture,
    skipped_rows_warning,
)
from kdgat.data.formats import detect_format, format_of_lines, get_format
from kdgat.data.formats.base import ERROR_FRAMES, FD_FRAMES
from kdgat.data.formats.stream import STDIN, STDIN_NAME, CaptureStream, PipeStream, head_lines
from kdgat.data.frames import FRAME_SCHEMA, MixedLabelsError, frame_arrays
from kdgat.data.incremental import FrameBlock
from kdgat.data.vocab import id_keys

Consume = Callable[[FrameBlock], None]
FRAME_VERSION_KEY = next(iter(FRAME_SCHEMA.metadata))  # b"kdgat.frame_schema_version"
CAN_LOG_FORMATS = ("asc", "blf", "trc")  # read with python-can
MESSAGE_CHUNK = 1 << 15
STDIN_FD = 0  # the descriptor `-` reads (tests give it a pipe of their own)
ASC_TAIL_BYTES = 256


class StopStream(Exception):
    """Raised inside a source when the user asked to stop (SIGINT/SIGTERM, --duration)."""


@dataclass
class CaptureInfo:
    path: str
    format: str
    sha256: str | None
    frames: int
    left_out: dict[str, int] = field(default_factory=dict)  # frames no model reads (error, CAN FD > 8 bytes)
    warnings: list[str] = field(default_factory=list)  # doubts about the file that do not stop the run
    # malformed rows dropped under on_bad_rows="skip": rows, by problem, the first line numbers (text captures)
    skipped: dict | None = None


SKIPPED_WHERE = "the summary's rows_skipped"


def _skipped(rows: int, by_problem: dict[str, int], lines: list[int], attack: int, labelled: bool):
    """``(CaptureInfo.skipped, its warning)`` for the rows a capture's reader dropped (None, None: none)."""
    if not rows:
        return None, None
    said = skipped_rows_warning(rows, attack, labelled, lines, SKIPPED_WHERE)
    return {"rows": rows, "attack_rows": attack, "by_problem": by_problem, "first_lines": lines[:20]}, said


# -- files --------------------------------------------------------------------------------------


def sniff_can_log(path: Path) -> str | None:
    """'blf', 'asc' or 'trc' when the (decompressed) file is a python-can log kdgat has no reader for."""
    with CaptureStream(path) as stream:
        head = stream.read(4096)
    return "blf" if head.startswith(b"LOGG") else _python_can_text(head)


def _python_can_text(head: bytes) -> str | None:
    """'asc' or 'trc' when a file's first bytes are those of a Vector ASC or PEAK TRC log."""
    lines = [line.strip() for line in head[:4096].decode("latin-1").splitlines() if line.strip()]
    if lines and re.match(r"^(date|base)\s", lines[0], re.IGNORECASE):
        return "asc"
    if lines and lines[0].startswith(";$FILEVERSION"):
        return "trc"
    return None


def table_block(table: pa.Table, path: Path) -> FrameBlock:
    """A block of the canonical frame table (ingest's reader output) as arrays."""
    try:
        keys, data, labels, timestamps = frame_arrays(table)
    except MixedLabelsError as exc:
        raise BadInputError(path, str(exc)) from None
    return FrameBlock(keys=keys, data=data, timestamps=timestamps, labels=labels)


def check_format(fmt: str) -> None:
    """``--format``: auto, a capture format of ingest's or a python-can log (said before any capture is read)."""
    if fmt not in ("auto", *CAN_LOG_FORMATS):
        get_format(fmt, also=CAN_LOG_FORMATS)


def read_frames(
    path: Path | str,
    consume: Consume,
    fmt: str = "auto",
    block_size: int | None = None,
    on_bad_rows: str = "error",
    stop: threading.Event | None = None,
) -> CaptureInfo:
    """Stream one capture file through ``consume``; its format is recognised by content unless ``fmt`` names it.
    ``on_bad_rows``: "error" stops at the first malformed row (one line: file, line, problem); "skip" drops them,
    counted and warned about, as ``kdgat ingest --on-bad-rows skip`` does. ``-`` reads standard input until it
    ends or ``stop`` is set."""
    if str(path) == STDIN:
        return _read_stdin(consume, fmt, on_bad_rows, stop)
    path = Path(path)
    if fmt == "auto" and _is_parquet(path):
        return _read_frame_parquet(path, consume, block_size)
    kind = fmt if fmt in CAN_LOG_FORMATS else (sniff_can_log(path) if fmt == "auto" else None)
    if kind is not None:
        return _read_can_log(path, kind, consume, skip=on_bad_rows == "skip")
    capture_format = detect_format(path) if fmt == "auto" else get_format(fmt)
    return _read_text(path, capture_format, consume, on_bad_rows, block_size)


def _read_text(
    path: Path,
    capture_format,
    consume: Consume,
    on_bad_rows: str,
    block_size: int | None = None,
    stream: PipeStream | None = None,
) -> CaptureInfo:
    """A capture in a format of kdgat's own readers (ingest's), from its file or an open ``stream``."""
    sizes = {"block_size": block_size} if block_size else {}
    options = IngestOptions(format=capture_format.name, on_bad_rows=on_bad_rows, **sizes)
    source = IngestSource(path=path, output_name=capture_stem(path.name), scenario=capture_stem(path.name))
    report, digest = read_capture(
        source, capture_format, options, lambda table: consume(table_block(table, path)), stream=stream
    )
    labelled = report.unlabelled_rows < report.rows
    skipped, said = _skipped(report.skipped_rows, report.skipped_by_problem, report.skipped_lines,
                             report.skipped_attack_rows, labelled)  # fmt: skip
    return CaptureInfo(str(path), capture_format.name, digest, report.rows, report.left_out, [said] if said else [],
                       skipped)  # fmt: skip


def _read_stdin(consume: Consume, fmt: str, on_bad_rows: str, stop: threading.Event | None) -> CaptureInfo:
    """Standard input, in one of the text formats kdgat reads itself (a python-can log or a Parquet file has to
    be given as a file: their readers need the whole file). Stopped (a signal, ``--duration``) before a frame
    came, it is a silent bus: no frame, no error."""
    stream = PipeStream(STDIN_FD, stop=stop)
    head = stream.head()
    if fmt in CAN_LOG_FORMATS or head.startswith((b"LOGG", b"PAR1")) or _python_can_text(head) is not None:
        raise BadInputError(STDIN_NAME, "ASC, BLF and TRC logs and Parquet files are read from a file, not a pipe")
    lines = head_lines(head, stream.ended)  # a line still arriving is not read yet
    silent = CaptureInfo(STDIN_NAME, fmt, None, 0)
    if not lines and stream.stop.is_set():
        return silent
    capture_format = format_of_lines(lines, STDIN_NAME) if fmt == "auto" else get_format(fmt)
    try:
        return _read_text(Path(STDIN_NAME), capture_format, consume, on_bad_rows, stream=stream)
    except NoFramesError:
        if stream.stop.is_set() and not stream.ended:  # stopped before a frame came
            return silent
        raise


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


def _read_frame_parquet(path: Path, consume: Consume, block_size: int | None) -> CaptureInfo:
    """A frame file of ``kdgat ingest`` (e.g. one ingested with ``--on-bad-rows skip``), read by row batches."""
    import pyarrow.parquet as pq

    try:
        frames = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(path, f"unreadable Parquet ({exc})") from None
    version = (frames.schema_arrow.metadata or {}).get(FRAME_VERSION_KEY)
    if version is None:
        raise BadInputError(path, "a Parquet file that is not kdgat frames (kdgat ingest writes those)")
    timed = _has_timestamps(frames)
    rows = 0
    for batch in frames.iter_batches(batch_size=block_size or IngestOptions().block_size):
        block = table_block(pa.Table.from_batches([batch]), path)
        if timed and block.timestamps is None:  # a block of frames without times in a timed capture: NaN times
            block.timestamps = np.full(len(block), np.nan)  # (None: the capture has none, as `graphs` reads it)
        consume(block)
        rows += batch.num_rows
    return CaptureInfo(str(path), "kdgat-frames", sha256_file(path), rows)


def _has_timestamps(frames) -> bool:
    """Whether any frame of a frame Parquet file has a timestamp (its row groups' null counts, else the column)."""
    meta = frames.metadata
    column = frames.schema_arrow.get_field_index("timestamp")
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    stats = [g.column(column).statistics for g in groups]
    if all(s is not None and s.has_null_count for s in stats):
        return any(s.null_count < g.num_rows for s, g in zip(stats, groups, strict=True))
    timestamps = frames.read(columns=["timestamp"]).column(0)
    return timestamps.null_count < len(timestamps)


class _RawStream(io.RawIOBase):
    """A :class:`CaptureStream` (decompressed, hashed) as a file object python-can's readers accept."""

    def __init__(self, stream: CaptureStream):
        self.stream = stream
        self.bytes_read = 0
        self.tail = b""  # the last bytes read: an ASC log ends with its "End TriggerBlock" line

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.stream.read(len(buffer))
        buffer[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        self.tail = (self.tail + chunk)[-ASC_TAIL_BYTES:]
        return len(chunk)


def messages_block(messages, arrival: np.ndarray | None = None) -> FrameBlock:
    """python-can messages -> a frame block (payloads beyond 8 bytes are the caller's to refuse)."""
    n = len(messages)
    can_id = np.fromiter((m.arbitration_id for m in messages), np.uint64, n)
    extended = np.fromiter((m.is_extended_id for m in messages), bool, n)
    timestamps = np.fromiter((m.timestamp for m in messages), np.float64, n)
    payload = b"".join(bytes(m.data).ljust(8, b"\0") for m in messages)
    data = np.frombuffer(payload, np.uint8).reshape(n, 8)
    return FrameBlock(keys=id_keys(can_id, extended), data=data, timestamps=timestamps, arrival=arrival)


class _Complaints(logging.Handler):
    """python-can's readers log a line they cannot parse and go on: the TRC reader without it (a line cut short),
    the ASC reader with the frame it read anyway (a DLC that disagrees with its data). kdgat refuses the file
    instead, as ingest refuses a bad row, or drops that line's frame under ``--on-bad-rows skip``.

    The TRC reader notes a record of a type it does not read at INFO level, and goes on: an error frame (``ER``)
    is left out and counted (``left_out``), as in every other format; status, error-counter and event records
    are no traffic; any other type is a line it could not read (``D`` of a ``DT`` record cut short)."""

    LOGGERS = ("can.io.trc", "can.io.asc")
    _UNSUPPORTED = re.compile(r"TRCReader: Unsupported type '(?P<kind>.*)'")
    TRC_ERROR_FRAMES = ("ER", "Error")  # version 2 and version 1 names
    TRC_NOT_TRAFFIC = ("ST", "EC", "EV", "Warng")  # hardware status, error counters, events; version 1 warnings

    def __init__(self, left_out: Counter) -> None:
        super().__init__(logging.INFO)
        self.left_out = left_out
        self.messages: list[str] = []
        self.loggers: list[str] = []  # who said each: an ASC complaint is about the frame it yields next

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno < logging.WARNING:
            unsupported = self._UNSUPPORTED.fullmatch(message)
            if unsupported is None:  # the reader's notes: no version line, a bus-information line
                return
            kind = unsupported["kind"]
            if kind in self.TRC_ERROR_FRAMES:
                self.left_out[ERROR_FRAMES] += 1
                return
            if kind in self.TRC_NOT_TRAFFIC:
                return
            message = f"a record of unknown type {kind!r} (a line cut short?)"
        self.messages.append(message)
        self.loggers.append(record.name)

    @contextmanager
    def listening(self):
        """Hear the readers' notes and warnings whatever the caller's logging set-up (a level of ERROR on ``can``
        would silence them, and a damaged line would go unseen), and give the loggers back as they were."""
        loggers = [logging.getLogger(name) for name in self.LOGGERS]
        levels = [logger.level for logger in loggers]
        disabled = logging.root.manager.disable
        logging.disable(logging.NOTSET)
        for logger in loggers:
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addHandler(self)
        try:
            yield self
        finally:
            logging.disable(disabled)
            for logger, level in zip(loggers, levels, strict=True):
                logger.removeHandler(self)
                logger.setLevel(level)


def _read_can_log(path: Path, kind: str, consume: Consume, skip: bool = False) -> CaptureInfo:
    """A python-can log; with ``skip`` the lines its reader cannot parse and frames cut short are dropped and
    counted (python-can gives no line numbers: the problems are counted by kind)."""
    import can

    frames, chunk, left_out, dropped = 0, [], Counter(), Counter()
    complaints = _Complaints(left_out)

    def heard_complaints() -> bool:
        """What python-can complained about since the last frame: refused, or under ``skip`` counted; True when
        the frame just read is the bad line's (ASC yields it anyway), so it is dropped too."""
        if complaints.messages and skip:
            dropped.update(f"unreadable {kind.upper()} line" for _ in complaints.messages)
            frame_was_bad = "can.io.asc" in complaints.loggers
            complaints.messages.clear()
            complaints.loggers.clear()
            return frame_was_bad
        if complaints.messages:
            first = complaints.messages[0].replace("\n", " ")[:120]
            raise BadInputError(path, f"unreadable {kind.upper()} line after {frames + len(chunk)} frames: {first}")

    with CaptureStream(path) as stream, complaints.listening():
        raw = _RawStream(stream)
        try:
            if kind == "blf":
                reader = can.BLFReader(io.BufferedReader(raw))
            else:
                text = io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors="replace")
                reader = can.ASCReader(text) if kind == "asc" else can.TRCReader(text)
            for message in reader:
                if heard_complaints() or _left_out(message, left_out):
                    continue
                position = frames + len(chunk) + 1
                if not message.is_remote_frame and len(message.data) < min(message.dlc, 8):
                    # python-can reads a line cut short (a log still being written, a partial copy) as a
                    # frame with fewer bytes than its DLC says; kdgat would score it padded with zeros
                    if skip:
                        dropped["frame with fewer data bytes than its DLC"] += 1
                        continue
                    where = f"frame {position} (0x{message.arbitration_id:X} at {message.timestamp:.6f} s)"
                    problem = f"{where}: DLC {message.dlc} but {len(message.data)} data bytes; the line is cut short"
                    raise BadInputError(path, problem)
                chunk.append(message)
                if len(chunk) == MESSAGE_CHUNK:
                    consume(messages_block(chunk))
                    frames, chunk = frames + len(chunk), []
        except (can.CanError, ValueError, EOFError, OSError, UnicodeError) as exc:
            if isinstance(exc, BadInputError):
                raise
            raise BadInputError(
                path, f"unreadable {kind.upper()} log after {frames + len(chunk)} frames: {exc}"
            ) from None
        except Exception as exc:  # python-can's parsers raise struct / zlib errors on damaged files
            if type(exc).__module__.split(".")[0] not in ("struct", "zlib", "can"):
                raise
            raise BadInputError(path, f"corrupt {kind.upper()} log after {frames + len(chunk)} frames: {exc}") from None
        heard_complaints()  # the last line
        if chunk:
            consume(messages_block(chunk))
            frames += len(chunk)
        if kind == "blf" and 0 < raw.bytes_read < getattr(reader, "file_size", 0):
            raise BadInputError(path, f"truncated BLF log: {raw.bytes_read:,} of {reader.file_size:,} bytes")
        digest = stream.sha256()
    if frames == 0:
        raise BadInputError(path, f"no frames in file (read as {kind.upper()} with python-can)")
    skipped, said = _skipped(sum(dropped.values()), dict(dropped), [], 0, False)
    warnings = [said] if said else []
    if kind == "asc" and b"end triggerblock" not in raw.tail.lower():
        warnings.append("no 'End TriggerBlock' line at the end: the log may be cut short (still being written?)")
    return CaptureInfo(str(path), f"{kind} (python-can)", digest, frames, dict(left_out), warnings, skipped)


def _left_out(message, counts: Counter) -> bool:
    """Whether a python-can message is one no model reads (counted by kind): as ingest's readers leave them out."""
    kind = ERROR_FRAMES if message.is_error_frame else FD_FRAMES if len(message.data) > 8 else None
    if kind is not None:
        counts[kind] += 1
    return kind is not None


# -- replay ----------------------------------------------------------------------------------------


class Pacer:
    """Releases frames at their recorded times divided by ``speed``, in batches of the frames that are due.

    A frame's arrival time is when it was due, not when it was released: if the detector falls
    behind, its latency shows it.
    """

    def __init__(self, consume: Consume, speed: float, stop: threading.Event, path: Path, max_batch: int = 256):
        if speed <= 0:
            raise UsageError(f"--speed must be positive, got {speed}")
        self.consume, self.speed, self.stop, self.path = consume, float(speed), stop, path
        self.max_batch = max_batch  # frames per hand-over at most, as from a bus (a stop is seen between them)
        self.t0: float | None = None  # first frame's recorded time
        self.start = 0.0  # wall clock (perf_counter) at the first frame

    def __call__(self, block: FrameBlock) -> None:
        if block.timestamps is None:
            raise UsageError(f"{self.path}: has no timestamps; --replay needs them")
        if self.t0 is None:  # the first frame with a time starts the clock (frames before it are due at once)
            timed = block.timestamps[np.isfinite(block.timestamps)]
            if len(timed):
                self.t0, self.start = float(timed[0]), time.perf_counter()
        if self.t0 is None:
            due = np.full(len(block), time.perf_counter())
        else:
            due = self.start + (block.timestamps - self.t0) / self.speed
        due = np.maximum.accumulate(np.nan_to_num(due, nan=-np.inf))  # never earlier than the frame before
        due[np.isneginf(due)] = self.start  # frames without a time before the first timed one of the block
        i, n = 0, len(block)
        while i < n:
            if self.stop.is_set():
                raise StopStream
            now = time.perf_counter()
            j = min(int(np.searchsorted(due, now, side="right")), i + self.max_batch)
            if j <= i:
                time.sleep(min(due[i] - now, 0.05))
                continue
            part = slice(i, j)
            self.consume(FrameBlock(block.keys[part], block.data[part], block.timestamps[part],
                                    None if block.labels is None else block.labels[part], due[part]))  # fmt: skip
            i = j


# -- a live bus ---------------------------------------------------------------------------------------


def open_bus(spec: str, **kwargs):
    """``INTERFACE:CHANNEL`` (python-can) -> an open bus; a one-line error when it cannot be opened."""
    import can

    interface, sep, channel = spec.partition(":")
    if not sep or not interface or not channel:
        raise UsageError(f"--bus {spec!r}: expected INTERFACE:CHANNEL, e.g. socketcan:can0 or virtual:test")
    try:
        return can.Bus(interface=interface, channel=channel, **kwargs)
    except (can.CanError, ImportError, OSError, ValueError, NotImplementedError) as exc:
        raise KdgatError(
            f"--bus {spec}: cannot open the bus: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None


def read_bus(
    bus, consume: Consume, stop: threading.Event, *, max_batch: int = 256, poll: float = 0.05
) -> tuple[int, dict[str, int]]:
    """Receive until ``stop``; each wake-up hands over every frame already waiting (up to ``max_batch``).

    Batching what has arrived keeps the per-frame cost low under load and adds no delay when the
    bus is quiet. Error frames and CAN FD frames beyond 8 bytes are left out. Returns the frame count
    and the left-out frames by kind.
    """
    frames, left_out = 0, Counter()
    while not stop.is_set():
        message = bus.recv(timeout=poll)
        if message is None:
            continue
        messages, arrival = [], []
        while message is not None:
            if not _left_out(message, left_out):
                messages.append(message)
                arrival.append(time.perf_counter())
            if len(messages) >= max_batch:
                break
            message = bus.recv(timeout=0)
        if messages:
            consume(messages_block(messages, np.array(arrival)))
            frames += len(messages)
    return frames, dict(left_out)
