"""Where verdict rows go: Parquet, CSV or JSON lines (a file, or ``-`` for stdout), one row per window.

Files are written under a temporary name and renamed into place when the run ends without error
(:mod:`kdgat.core.atomic`), so a failed run never leaves half a file; the summary goes beside it
as ``<name>.summary.json``. JSON lines on stdout are flushed window by window (a live bus), and the
last line is ``{"summary": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kdgat.core.atomic import atomic_path
from kdgat.core.errors import UsageError
from kdgat.core.hashing import sha256_file
from kdgat.core.signals import uninterrupted

# not .json: the rows are JSON lines, which a reader of a .json file does not expect (nor one JSON document)
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def summary_path(out: Path) -> Path:
    return out.with_name(out.name.rsplit(".", 1)[0] + ".summary.json")


def summarised_output(summary: Path) -> str | None:
    """The name of the rows file an existing summary describes (None: no summary there, or not one of ours)."""
    try:
        outputs = json.loads(summary.read_text(encoding="utf-8")).get("outputs") or []
        return Path(outputs[0]["path"]).name if outputs else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError, IndexError):
        return None


class RowSink:
    """Takes verdict tables (one per batch of windows) and, at the end, the summary."""

    streams = False  # True: rows reach the reader as they are written

    def write(self, table: pa.Table) -> None: ...

    def close(self, summary: dict | None) -> None:
        """Finish (``summary``: the run's manifest as a dict) or abandon (None: an error stopped the run)."""


class _FileSink(RowSink):
    def __init__(self, path: Path):
        self.path = path
        self._stack = ExitStack()
        self.tmp = self._stack.enter_context(atomic_path(path))

    def _finish(self) -> None: ...

    def close(self, summary: dict | None) -> None:
        if summary is None:
            self._stack.__exit__(RuntimeError, RuntimeError("abandoned"), None)  # removes the temporary file
            return
        self._finish()
        # the summary names the rows it describes by their absolute path and sha256 (a Parquet file's embedded copy
        # was written before the file was whole, and has no hash)
        # (abspath, not resolve: a link given as --out is replaced by the file, not followed)
        summary = {**summary, "outputs": [{"path": os.path.abspath(self.path), "sha256": sha256_file(self.tmp)}]}
        # the summary written before the rows move into place: a failure keeps the earlier output whole, and a stop
        # signal waits for both renames (between them, new rows would sit beside the earlier run's summary)
        try:
            with uninterrupted(), atomic_path(summary_path(self.path)) as staged:
                Path(staged).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
                self._stack.close()  # the rows into place; then the summary
        except BaseException:
            self._stack.__exit__(RuntimeError, RuntimeError("abandoned"), None)
            raise


class ParquetSink(_FileSink):
    def __init__(self, path: Path):
        super().__init__(path)
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        self._writer.write_table(table)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            pq.write_table(pa.table({}), self.tmp)

    def close(self, summary: dict | None) -> None:
        if summary is not None and self._writer is not None:
            self._writer.add_key_value_metadata({"kdgat.summary": json.dumps(summary, default=str)})
        elif summary is None and self._writer is not None:
            self._writer.close()
        super().close(summary)


def _csv_ready(table: pa.Table) -> pa.Table:
    """Lists (``suspects``, ``novel_ids``) become space-separated strings (CSV has no lists)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_list(field.type):
            table = table.set_column(index, field.name, pc.binary_join(table[field.name], " "))
    return table


class CsvSink(_FileSink):
    def __init__(self, path: Path):
        super().__init__(path)
        self._writer: pacsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        table = _csv_ready(table)
        if self._writer is None:
            self._writer = pacsv.CSVWriter(self.tmp, table.schema)
        self._writer.write_table(table)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            self.tmp.write_text("")

    def close(self, summary: dict | None) -> None:
        if summary is None and self._writer is not None:
            self._writer.close()
        super().close(summary)


def _json_lines(table: pa.Table) -> str:
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in table.to_pylist())


class JsonLinesSink(_FileSink):
    def __init__(self, path: Path):
        super().__init__(path)
        self._handle: IO[str] | None = open(self.tmp, "w", encoding="utf-8")

    def write(self, table: pa.Table) -> None:
        self._handle.write(_json_lines(table))

    def _finish(self) -> None:
        self._handle.close()

    def close(self, summary: dict | None) -> None:
        if summary is None:
            self._handle.close()
        super().close(summary)


class StdoutSink(RowSink):
    """JSON lines on stdout, flushed per batch; the summary is the last line."""

    streams = True

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def write(self, table: pa.Table) -> None:
        self.stream.write(_json_lines(table))
        self.stream.flush()

    def close(self, summary: dict | None) -> None:
        if summary is not None:  # the run's manifest; its summary is what a reader of the stream wants
            self.stream.write(json.dumps({"summary": summary.get("summary", summary)}, default=str) + "\n")
        self.stream.flush()


def open_sink(out: str | Path | None) -> RowSink:
    """The sink for ``--out``: None (summary only), ``-`` (JSON lines on stdout) or a file named by its suffix."""
    if out is None:
        return RowSink()
    if str(out) == "-":
        return StdoutSink()
    path = Path(out)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(
            f"--out {out}: name a .parquet (.pq), .csv or .jsonl (.ndjson) file, or - for JSON lines on stdout"
        )
    return {"parquet": ParquetSink, "csv": CsvSink, "jsonl": JsonLinesSink}[kind](path)
