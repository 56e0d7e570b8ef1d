"""Reading one capture into canonical frame Parquet: sources, the streaming reader, the Parquet sink.

:class:`IngestSource` says what a capture is and where it belongs (split, scenario); :func:`ingest_one`
streams it through its format's reader (:mod:`kdgat.data.formats`) into a Parquet file, block by
block, so memory stays bounded whatever the capture's size. The ingest stage decides where the
files go and makes them visible atomically.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from kdgat.core.errors import BadInputError, UsageError
from kdgat.core.hashing import sha256_file
from kdgat.data.formats import detect_format, get_format
from kdgat.data.formats.base import NOT_CLASSIC, CaptureFormat, ParsedBlock
from kdgat.data.formats.stream import DEFAULT_BLOCK_SIZE, CaptureStream
from kdgat.data.frames import FRAME_SCHEMA, build_frame_table
from kdgat.data.timing import ClockSteps

MAX_RECORDED_LINES = 100
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zstd"}
_CAPTURE_SUFFIXES = {".csv", ".log", ".txt", ".can"}


class IngestOptions(BaseModel):
    """How to read captures; recorded in the manifest and hashed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = "auto"
    on_bad_rows: Literal["error", "skip"] = "error"
    block_size: int = DEFAULT_BLOCK_SIZE
    row_group_rows: int = 1 << 19


@dataclass(frozen=True)
class IngestSource:
    """One capture to ingest and where it belongs."""

    path: Path
    output_name: str  # relative output path without suffix, e.g. "clean/V40_03"
    split: str = "test"
    scenario: str = "test"
    attack_type: str | None = None  # name for attack frames when the format has none
    format: str | None = None  # overrides IngestOptions.format for this file
    benign: bool = False  # capture known to be attack-free: unlabelled frames get label 0
    # what the frames and the graph store call it: its path under the dataset's root, or its file name, never the
    # path as given (a data folder reached another way, or staged by Nextflow, must give the same store)
    name: str | None = None

    @property
    def capture(self) -> str:
        return self.name or self.path.name


@dataclass
class FileReport:
    """What reading one capture found (goes into the manifest)."""

    rows: int = 0
    attack_rows: int = 0
    unlabelled_rows: int = 0
    ignored_lines: int = 0
    skipped_rows: int = 0
    skipped_attack_rows: int = 0  # skipped rows whose own label column said "attack"
    skipped_by_problem: dict[str, int] = field(default_factory=dict)
    skipped_lines: list[int] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)  # well-formed frames no model reads, by kind
    left_out_attack_rows: int = 0
    clock: ClockSteps = field(default_factory=ClockSteps)  # frames earlier than the one before (line numbers)


def attack_type_from_name(path: str | Path) -> str:
    """'DoS-1.csv.xz' -> 'dos': the capture's stem without suffixes and capture number."""
    name = capture_stem(Path(path).name)
    return re.sub(r"[-_ ]?\d+$", "", name).lower() or "attack"


def capture_stem(name: str) -> str:
    """File name without compression and capture suffixes ('a.can.csv.xz' -> 'a')."""
    path = Path(name)
    while path.suffix.lower() in _COMPRESSION_SUFFIXES | _CAPTURE_SUFFIXES:
        path = path.with_suffix("")
    return path.name


def _first_problem(block: ParsedBlock) -> tuple[int, str] | None:
    candidates = []
    if len(block.rejected_lines):
        candidates.append((int(block.rejected_lines[0]), block.rejected_problems[0]))
    if block.checks.bad.any():
        row = int(np.flatnonzero(block.checks.bad)[0])
        candidates.append((int(block.lines[row]), block.checks.describe(row)))
    return min(candidates) if candidates else None


def _record_skips(report: FileReport, block: ParsedBlock) -> None:
    bad = block.checks.bad
    counts = Counter(block.rejected_problems)  # counted in C; each distinct text is then read once
    counts.update(block.checks.problem_counts())
    lines = np.concatenate((block.rejected_lines, block.lines[bad])).astype(np.int64)
    report.skipped_rows += len(lines)
    for problem, n in counts.items():
        key = re.sub(r"\d+", "N", problem) if problem.startswith("expected") else problem
        report.skipped_by_problem[key] = report.skipped_by_problem.get(key, 0) + n
    room = MAX_RECORDED_LINES - len(report.skipped_lines)
    if room > 0 and len(lines):
        report.skipped_lines.extend(int(x) for x in np.sort(lines)[:room])


class NoFramesError(BadInputError):
    """A capture that held no frame a model reads (a stopped live pipe may end so without a fault)."""


def read_capture(
    source: IngestSource,
    fmt: CaptureFormat,
    options: IngestOptions,
    sink: Callable[[pa.Table], None],
    stream: CaptureStream | None = None,
) -> tuple[FileReport, str]:
    """Stream one capture through its reader into ``sink``; returns the report and the file's sha256. ``stream``:
    an open one to read instead of the file (standard input)."""
    report = FileReport()
    attack_default = source.attack_type or attack_type_from_name(source.path)
    with stream if stream is not None else CaptureStream(source.path) as stream:
        for block in fmt.parse(stream, options.block_size):
            report.ignored_lines += block.ignored_lines
            problem = _first_problem(block)
            if problem is not None:
                if options.on_bad_rows == "error":
                    raise BadInputError(source.path, problem[1], line=problem[0])
                _record_skips(report, block)
            checks, lines = block.checks, block.lines
            for kind, n in checks.aside_counts.items():
                report.left_out[kind] = report.left_out.get(kind, 0) + n
            cols = block.cols
            if cols is None:
                continue
            if checks.bad.any() or checks.aside.any():
                if cols.label is not None:
                    report.skipped_attack_rows += int(cols.label[checks.bad].sum())
                    report.left_out_attack_rows += int(cols.label[checks.aside].sum())
                keep = ~(checks.bad | checks.aside)
                cols, lines = cols.take(keep), lines[keep]
            report.clock.add(cols.timestamp, lines)
            if len(cols) == 0:
                continue
            if cols.label is None and source.benign:
                cols.label = np.zeros(len(cols), np.uint8)
            table = build_frame_table(
                cols,
                source_file=source.capture,
                first_position=report.rows,
                split=source.split,
                scenario=source.scenario,
                attack_type_default=attack_default,
            )
            report.rows += len(cols)
            if cols.label is None:
                report.unlabelled_rows += len(cols)
            else:
                report.attack_rows += int(cols.label.sum())
            sink(table)
        digest = stream.sha256()
    if report.rows == 0:
        left_out = [f"{n} {kind} left out" for kind, n in report.left_out.items()]
        skipped = [f"{report.skipped_rows} bad rows skipped"] if report.skipped_rows else []
        detail = f" ({'; '.join(left_out + skipped)})" if left_out or skipped else ""
        raise NoFramesError(source.path, f"no frames in file{detail}")
    return report, digest


def skipped_rows_warning(skipped: int, attack: int, labelled: bool, lines: list[int], details: str) -> str | None:
    """What ``--on-bad-rows skip`` dropped, said loudly: how many rows, how many of them labelled attack, the first
    lines, and where every problem is recorded (``details``)."""
    if not skipped:
        return None
    which = f"{attack:,} of them labelled attack" if labelled else "the capture has no labels"
    first = f"; the first are on lines {', '.join(map(str, lines[:5]))}" if lines else ""
    return f"{skipped:,} malformed rows dropped ({which}){first} (every problem is in {details})"


def left_out_warning(left_out: dict[str, int], attack_rows: int = 0) -> str | None:
    """What a capture held that no model reads (error frames, CAN FD beyond 8 bytes, a line cut while written),
    said once per file."""
    if not left_out:
        return None
    frames = {kind: n for kind, n in left_out.items() if kind in NOT_CLASSIC}
    others = {kind: n for kind, n in left_out.items() if kind not in NOT_CLASSIC}
    attack = f" ({attack_rows:,} of them labelled attack)" if attack_rows else ""
    said = []
    if frames:
        kinds = " and ".join(f"{n:,} {kind}" for kind, n in frames.items())
        said.append(f"{kinds} left out{attack}: kdgat's models read classic CAN data frames (0-8 bytes)")
    if others:
        kinds = " and ".join(f"{n:,} {kind}" for kind, n in others.items())
        said.append(f"{kinds} left out{'' if frames else attack}")
    return "; ".join(said)


# Tuned for frame tables: dictionaries only where values repeat, byte-stream-split
# for timestamps, delta encoding for the running position (half the write time
# of the defaults, and a smaller file).
PARQUET_OPTIONS = dict(
    compression="zstd",
    compression_level=1,
    use_dictionary=[
        "can_id",
        "is_extended",
        "is_remote",
        "dlc",
        "label",
        "attack_type",
        "source_file",
        "split",
        "scenario",
    ],
    column_encoding={"timestamp": "BYTE_STREAM_SPLIT", "position": "DELTA_BINARY_PACKED"},
    write_statistics=["timestamp", "can_id", "label", "position"],
)


class _ParquetSink:
    """Buffers tables into large row groups and writes them on a background thread.

    Parsing (numpy, Arrow) and Parquet encoding both release the GIL, so on a
    2-core machine writing group k while parsing group k+1 nearly hides the
    write. At most one group is in flight, which bounds memory.
    """

    def __init__(self, path: Path, row_group_rows: int, metadata: dict[str, str]):
        extra = {k.encode(): v.encode() for k, v in metadata.items()}
        schema = FRAME_SCHEMA.with_metadata({**FRAME_SCHEMA.metadata, **extra})
        self._writer = pq.ParquetWriter(path, schema, **PARQUET_OPTIONS)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        self._in_flight: Future | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._group = row_group_rows

    def __call__(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self._group:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending).unify_dictionaries()
        self._pending, self._pending_rows = [], 0
        self._wait()
        self._in_flight = self._pool.submit(
            self._writer.write_table, table, row_group_size=max(self._group, table.num_rows)
        )

    def _wait(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            future.result()

    def close(self, *, flush: bool = True) -> None:
        try:
            if flush:
                self._flush()
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def ingest_one(source: IngestSource, out_path: Path, options: IngestOptions) -> dict:
    """Read one capture into ``out_path`` (which the caller makes visible atomically)."""
    fmt_name = source.format or options.format
    fmt = detect_format(source.path) if fmt_name == "auto" else get_format(fmt_name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sink = _ParquetSink(
        out_path,
        options.row_group_rows,
        {
            "kdgat.source": source.capture,
            "kdgat.format": fmt.name,
            "kdgat.split": source.split,
            "kdgat.scenario": source.scenario,
        },
    )
    started = time.perf_counter()
    try:
        report, digest = read_capture(source, fmt, options, sink)
    except BaseException:
        sink.close(flush=False)
        raise
    sink.close()
    return {
        "source": str(source.path),  # as given: for the reader of the manifest
        "capture": source.capture,
        "sha256": sha256_file(out_path),  # of the Parquet file the entry names, as every manifest entry's
        "source_sha256": digest,
        "format": fmt.name,
        "split": source.split,
        "scenario": source.scenario,
        "rows": report.rows,
        "attack_rows": report.attack_rows,
        "unlabelled_rows": report.unlabelled_rows,
        "ignored_lines": report.ignored_lines,
        "skipped_rows": report.skipped_rows,
        "skipped_attack_rows": report.skipped_attack_rows,
        "skipped_by_problem": report.skipped_by_problem,
        "skipped_lines": report.skipped_lines,
        "left_out_frames": report.left_out,
        "left_out_attack_rows": report.left_out_attack_rows,
        "backwards_timestamps": report.clock.count,
        "first_backwards_line": report.clock.first,
        "seconds": round(time.perf_counter() - started, 3),
    }


def sources_from_files(
    paths: list[Path],
    *,
    split: str = "test",
    scenario: str | None = None,
    attack_type: str | None = None,
    format: str | None = None,
    benign: bool = False,
) -> list[IngestSource]:
    """Sources for `kdgat ingest FILE...`: one output per file, named after its stem."""
    for option, value in (("--split", split), ("--scenario", scenario)):
        # a folder name under --out: "../x" or "/x" would write outside it, past the all-or-nothing staging
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise UsageError(f"{option} {value!r}: a name of letters, digits, '.', '_' and '-' (it names a folder)")
    sources = []
    for path in paths:
        stem = capture_stem(path.name)
        scen = scenario or stem
        sources.append(
            IngestSource(
                path=path,
                output_name=f"{split}/{scen}/{stem}" if scen != stem else f"{split}/{stem}",
                split=split,
                scenario=scen,
                attack_type=attack_type,
                format=format,
                benign=benign,
            )
        )
    return sources
