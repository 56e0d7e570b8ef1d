"""Readers for the comma-separated capture families (header line + one frame per line).

The fast path is Arrow's multithreaded CSV parser over whole blocks. Before
handing a block to it, field counts are checked per line with numpy, so a
ragged row is reported with its exact line number (Arrow's streaming parser
does not know line numbers) and never reaches the parser.
"""

from __future__ import annotations

import re
import sys
import threading
from contextlib import contextmanager
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kdgat.core.errors import BadInputError
from kdgat.data.formats.base import (
    CaptureFormat,
    ParsedBlock,
    can_ids,
    decimal_can_ids,
    dlc_values,
    payload,
    timestamps,
)
from kdgat.data.formats.convert import RowChecks, hex_bytes_columns, in_set, lower, to_uint
from kdgat.data.formats.prefetch import prefetched
from kdgat.data.formats.stream import CaptureStream, LineBlock, iter_line_blocks
from kdgat.data.frames import FrameColumns

_COMMA, _QUOTE = 44, 34


def _field_counts(block: LineBlock, quoted: bool) -> np.ndarray:
    """Number of fields on every line (commas outside double quotes + 1)."""
    commas = np.flatnonzero(block.buf == _COMMA)
    if quoted:
        quotes = np.flatnonzero(block.buf == _QUOTE)
        if len(quotes):
            line_of = np.searchsorted(block.starts, commas, side="right") - 1
            before = np.searchsorted(quotes, commas) - np.searchsorted(quotes, block.starts)[line_of]
            commas = commas[before % 2 == 0]
    return np.searchsorted(commas, block.ends) - np.searchsorted(commas, block.starts) + 1


def _line_bytes(block: LineBlock, keep: np.ndarray) -> pa.Buffer:
    """The bytes of the kept lines (terminators included), zero-copy when all are kept."""
    if keep.all():
        return pa.py_buffer(block.raw)
    lines = np.flatnonzero(keep)
    lengths = np.diff(np.concatenate((block.starts, [len(block.buf)])))[lines]
    # each kept byte's place in the block: its line's start plus 0, 1, ...; work in the bytes kept, not the block's
    # (the search for unreadable lines parses many small sets of lines)
    shift = block.starts[lines] - np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return pa.py_buffer(block.buf[np.repeat(shift, lengths) + np.arange(lengths.sum())].tobytes())


# pyarrow decodes a ragged row as UTF-8 before it calls the invalid-row handler; a row that is not UTF-8 fails
# there, and Python prints that error as "Exception ignored in <handler>" with a traceback. While a block is read,
# one process-wide hook takes the errors of that block's own handler (the block then goes to the line-by-line
# checks, which reject the row with its line number) and hands every other one to the hook it replaced: another
# thread's error is never swallowed, and overlapping reads share the one hook.
_HEARD: dict[object, list] = {}  # the handler of each block being read -> what it heard
_HEARD_LOCK = threading.Lock()
_unheard = sys.unraisablehook  # the hook to pass everything else to (and to put back)


def _hook(args) -> None:
    heard = _HEARD.get(args.object)
    if heard is None:
        _unheard(args)
    else:
        heard.append(args.exc_type)


@contextmanager
def _hearing(handler, heard: list) -> Iterator[None]:
    global _unheard
    with _HEARD_LOCK:
        if not _HEARD:
            _unheard = sys.unraisablehook
            sys.unraisablehook = _hook
        _HEARD[handler] = heard
    try:
        yield
    finally:
        with _HEARD_LOCK:
            del _HEARD[handler]
            if not _HEARD and sys.unraisablehook is _hook:
                sys.unraisablehook = _unheard


class CsvFormat(CaptureFormat):
    """A CSV family with a fixed header; subclasses convert the columns they need."""

    header: ClassVar[list[str]]
    used: ClassVar[list[str]]
    quoted: ClassVar[bool] = False
    fast_types: ClassVar[dict[str, pa.DataType]] = {}  # parsed by Arrow directly on the fast path

    def sniff(self, lines: list[str]) -> bool:
        return bool(lines) and self._header_matches(lines[0])

    def _header_matches(self, line: str) -> bool:
        # a UTF-8 byte-order mark before the header: what spreadsheet programs write when saving CSV
        fields = [f.strip().strip('"').lower() for f in line.strip().lstrip("\ufeff").split(",")]
        return fields == [h.lower() for h in self.header]

    def convert(self, table: pa.Table, checks: RowChecks) -> FrameColumns:
        raise NotImplementedError

    def _read_table(self, data: pa.Buffer, typed: bool, on_invalid=None) -> pa.Table:
        types = {c: pa.string() for c in self.used}
        if typed:
            types.update(self.fast_types)
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=self.header, block_size=4 << 20),
            parse_options=pacsv.ParseOptions(quote_char='"' if self.quoted else False, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=self.used, strings_can_be_null=False
            ),
        )

    def _fast_table(self, body: bytes) -> pa.Table | None:
        """Parse a block in one Arrow call, or None if it needs the line-by-line checks.

        That is the case when it has ragged rows or blank lines (line numbers
        would shift; the caller compares the row count with the line count) or
        a typed column fails to convert (the row must be found).
        """
        ragged: list[int] = []

        def note(_row) -> str:
            ragged.append(1)
            return "skip"

        try:
            with _hearing(note, ragged):
                table = self._read_table(pa.py_buffer(body), typed=True, on_invalid=note)
        except pa.ArrowInvalid:
            return None
        return None if ragged else table

    def _checked_block(self, block: LineBlock, skip_line: int | None) -> ParsedBlock:
        """Slow path: per-line field counts, so every problem has its exact line number."""
        nonblank = block.ends > block.starts
        keep = nonblank.copy()
        if skip_line is not None:
            keep[skip_line] = False
        lines = block.line_numbers
        counts = _field_counts(block, self.quoted)
        ncols = len(self.header)
        rows = keep & (counts == ncols)
        ragged = np.flatnonzero(keep & ~rows)
        reasons = np.char.add(f"expected {ncols} fields, found ", counts[ragged].astype(str)).astype(object)
        unreadable: dict[int, str] = {}
        table = None
        while rows.any():
            try:
                table = self._read_lines(block, rows)
                break
            except pa.ArrowInvalid as failed:  # not UTF-8, quotes Arrow reads otherwise: find the lines, reject them
                for bad, exc in self._unreadable(block, np.flatnonzero(rows), failed):
                    rows[bad] = False
                    reason = re.sub(r"^In CSV column #\d+: ", "", str(exc).splitlines()[0])[:80]
                    unreadable[bad] = f"unreadable CSV row ({reason})"
        checks = RowChecks(int(rows.sum()))
        rejected = np.concatenate((ragged, np.fromiter(unreadable, np.int64, len(unreadable))))
        reasons = np.concatenate((reasons, np.array(list(unreadable.values()), dtype=object)))
        order = np.argsort(rejected, kind="stable")
        return ParsedBlock(
            cols=self.convert(table, checks) if table is not None else None,
            lines=lines[rows],
            checks=checks,
            rejected_lines=lines[rejected[order]],
            rejected_problems=reasons[order].tolist(),
            ignored_lines=int((~nonblank).sum()),
        )

    def _read_lines(self, block: LineBlock, keep: np.ndarray) -> pa.Table:
        """The kept lines as a table of strings, a row each: a quoted field that runs over a line end (Arrow reads
        the lines as one row) is unreadable too, as a failed parse is."""
        table = self._read_table(_line_bytes(block, keep), typed=False)
        if table.num_rows != int(keep.sum()):
            raise pa.ArrowInvalid("a quoted field runs over the line end")
        return table

    def _unreadable(
        self, block: LineBlock, candidates: np.ndarray, failed: pa.ArrowInvalid | None = None
    ) -> list[tuple[int, pa.ArrowInvalid]]:
        """Lines of ``candidates`` (line indices of ``block``, which fail to read together: ``failed``, or None to
        try) that Arrow cannot read, with their errors; at least one where they fail. By halving: a half that
        reads is cleared whole, so k such lines cost about log2(k) parses of the block (one at a time, a search
        each, was quadratic in a block of many). Where both halves read and the whole does not, the last line of
        the first half opens a quote that runs into the second (a half that reads has no quote running over
        inside it: that makes fewer rows than lines, :meth:`_read_lines`): it is the one rejected."""
        if failed is None:
            mask = np.zeros(block.n_lines, dtype=bool)
            mask[candidates] = True
            try:
                self._read_lines(block, mask)
                return []
            except pa.ArrowInvalid as exc:
                failed = exc
        if len(candidates) == 1:
            return [(int(candidates[0]), failed)]
        middle = len(candidates) // 2
        found = self._unreadable(block, candidates[:middle]) + self._unreadable(block, candidates[middle:])
        return found or [(int(candidates[middle - 1]), pa.ArrowInvalid("a quoted field runs over the line end"))]

    def _header_index(self, block: LineBlock, path) -> int | None:
        """Index of the header line in the first block with text (checked), or None if all blank."""
        nonblank = np.flatnonzero(block.ends > block.starts)
        if len(nonblank) == 0:
            return None
        first = int(nonblank[0])
        if not self._header_matches(block.text(first)):
            raise BadInputError(
                path,
                f"expected the {self.name} header '{','.join(self.header)}', found {block.text(first)[:80]!r}",
                line=block.first_line + first,
            )
        return first

    def parse(self, stream: CaptureStream, block_size: int) -> Iterator[ParsedBlock]:
        state = {"header_seen": False}

        def prepare(block: LineBlock):
            """Worker-thread half: header check and the one-call Arrow parse."""
            header_at = None
            if not state["header_seen"]:
                header_at = self._header_index(block, stream.path)
                if header_at is None:
                    return block, None, None, True
                state["header_seen"] = True
            table = None
            if header_at in (None, 0):
                body_line = 0 if header_at is None else 1
                body = (
                    block.raw
                    if header_at is None
                    else block.raw[int(block.starts[1]) :]
                    if len(block.starts) > 1
                    else b""
                )
                table = self._fast_table(body) if body else None
                if table is not None and table.num_rows != block.n_lines - body_line:
                    table = None
            return block, header_at, table, False

        for block, header_at, table, blank in prefetched(iter_line_blocks(stream, block_size), prepare):
            if blank:
                yield ParsedBlock(None, np.zeros(0, np.int64), RowChecks(0), ignored_lines=block.n_lines)
            elif table is not None:
                checks = RowChecks(table.num_rows)
                cols = self.convert(table, checks)
                first = block.first_line + (0 if header_at is None else 1)
                lines = first + np.arange(table.num_rows, dtype=np.int64)
                yield ParsedBlock(cols=cols, lines=lines, checks=checks)
            else:
                yield self._checked_block(block, header_at)
        if not state["header_seen"]:
            raise BadInputError(stream.path, "empty file (no header and no frames)")


def _labels_01(col: pa.Array, checks: RowChecks, what: str) -> np.ndarray:
    if pa.types.is_integer(col.type):  # parsed by Arrow on the fast path (an empty field is null there)
        values = pc.fill_null(col, 2).to_numpy()
        checks.flag(values > 1, f"{what} must be 0 or 1", pc.cast(col, pa.string()))
        return (values == 1).astype(np.uint8)
    text = pc.utf8_trim_whitespace(col)  # as Arrow's integer parse on the one-call path
    ok = in_set(text, ["0", "1"])
    checks.flag(~ok, f"{what} must be 0 or 1", col)
    return (in_set(text, ["1"])).astype(np.uint8)


class CanTrainAndTest(CsvFormat):
    name = "can-train-and-test"
    description = "can-train-and-test CSV: timestamp,arbitration_id,data_field,attack (hex ID and payload)"
    header = ["timestamp", "arbitration_id", "data_field", "attack"]
    used = header

    fast_types = {"timestamp": pa.float64(), "attack": pa.uint8()}

    def convert(self, t: pa.Table, checks: RowChecks) -> FrameColumns:
        ts = timestamps(t["timestamp"], checks)
        can_id, ext = can_ids(t["arbitration_id"], checks)
        data, dlc = payload(t["data_field"], checks)
        label = _labels_01(t["attack"], checks, "attack")
        n = len(can_id)
        return FrameColumns(ts, can_id, ext, np.zeros(n, bool), dlc, data, label)


def _left_pad_to_dlc(hex_text: pa.Array, dlc: np.ndarray) -> pa.Array:
    """DAGA prints the payload as a hex *number*: leading zeros are dropped
    (an all-zero payload of ID 0x1 appears as "0"). Right-align it to the DLC."""
    if isinstance(hex_text, pa.ChunkedArray):
        hex_text = hex_text.combine_chunks()
    short = pc.less(pc.utf8_length(hex_text), pa.array(2 * dlc.astype(np.int32)))
    if not pc.any(short).as_py():
        return hex_text
    out = hex_text
    for size in np.unique(dlc):
        rows = pc.and_(short, pa.array(dlc == size))
        out = pc.if_else(rows, pc.utf8_lpad(hex_text, width=int(2 * size), padding="0"), out)
    return out


class Daga(CsvFormat):
    name = "daga"
    description = "DAGA CSV: timestamp,CAN_ID,DLC (in bits),PAYLOAD_HEX,PAYLOAD_BIN,ANOMALY (TRUE/FALSE, any case)"
    header = ["timestamp", "CAN_ID", "DLC", "PAYLOAD_HEX", "PAYLOAD_BIN", "ANOMALY"]
    used = ["timestamp", "CAN_ID", "DLC", "PAYLOAD_HEX", "ANOMALY"]

    fast_types = {"timestamp": pa.float64()}

    def convert(self, t: pa.Table, checks: RowChecks) -> FrameColumns:
        ts = timestamps(t["timestamp"], checks)
        # some DAGA captures print injected rows' IDs as a float of the hex digits ("1.0", "290.0")
        can_id, ext = can_ids(pc.replace_substring_regex(t["CAN_ID"], pattern=r"\.0$", replacement=""), checks)
        bits, bad_bits = to_uint(t["DLC"], maximum=64)
        checks.flag(bad_bits | (bits % 8 != 0), "DLC must be a bit count from 0 to 64 in steps of 8", t["DLC"])
        data, dlc = payload(_left_pad_to_dlc(t["PAYLOAD_HEX"], bits // 8), checks, dlc=bits // 8)
        anomaly = lower(t["ANOMALY"])
        checks.flag(~in_set(anomaly, ["true", "false"]), "ANOMALY must be TRUE or FALSE", t["ANOMALY"])
        label = in_set(anomaly, ["true"]).astype(np.uint8)
        return FrameColumns(ts, can_id, ext, np.zeros(len(can_id), bool), dlc, data, label)


ROAD_LABELS = ["benign", "fuzzing", "fabrication", "masquerade"]


class Road(CsvFormat):
    name = "road"
    description = "ROAD CSV: Time,Id,Byte1..Byte8,Label (Benign, Fuzzing, Fabrication or Masquerade)"
    header = ["Time", "Id"] + [f"Byte{i}" for i in range(1, 9)] + ["Label"]
    used = header

    fast_types = {"Time": pa.float64()}

    def convert(self, t: pa.Table, checks: RowChecks) -> FrameColumns:
        ts = timestamps(t["Time"], checks)
        can_id, ext = can_ids(t["Id"], checks)
        data, bad = hex_bytes_columns([t[f"Byte{i}"] for i in range(1, 9)])
        checks.flag(bad, "payload byte is not two hex digits")
        text = lower(t["Label"])
        # another word (a line cut short: "Beni") was counted as an attack
        checks.flag(~in_set(text, ROAD_LABELS), "Label must be Benign, Fuzzing, Fabrication or Masquerade", t["Label"])
        label = (~in_set(text, ["benign"])).astype(np.uint8)
        n = len(can_id)
        return FrameColumns(ts, can_id, ext, np.zeros(n, bool), np.full(n, 8, np.uint8), data, label, text)


class CicIov2024(CsvFormat):
    name = "ciciov2024"
    description = "CICIoV2024 decimal CSV: ID,DATA_0..DATA_7,label,category,specific_class (no timestamp, no DLC)"
    header = ["ID"] + [f"DATA_{i}" for i in range(8)] + ["label", "category", "specific_class"]
    used = header

    def convert(self, t: pa.Table, checks: RowChecks) -> FrameColumns:
        can_id, ext = decimal_can_ids(t["ID"], checks)
        n = len(can_id)
        data = np.zeros((n, 8), np.uint8)
        for i in range(8):
            values, bad = to_uint(t[f"DATA_{i}"], maximum=255)
            checks.flag(bad, f"DATA_{i} must be a byte value 0..255", t[f"DATA_{i}"])
            data[:, i] = values
        text = lower(t["label"])
        checks.flag(~in_set(text, ["benign", "attack"]), "label must be BENIGN or ATTACK", t["label"])
        label = in_set(text, ["attack"]).astype(np.uint8)
        category, specific = lower(t["category"]), lower(t["specific_class"])
        same = pc.equal(category, specific)
        joined = pc.binary_join_element_wise(category, specific, "-")
        attack_type = pc.if_else(same, category, joined)
        return FrameColumns(None, can_id, ext, np.zeros(n, bool), np.full(n, 8, np.uint8), data, label, attack_type)


class J1939Labelled(CsvFormat):
    name = "j1939-csv"
    description = "J1939 labelled CSV: timestamp,iface,can_id (decimal),dlc,data (hex),...,label,..."
    header = [
        "timestamp", "iface", "can_id", "dlc", "data", "priority", "pdu_format", "pdu_specific",
        "pdu_type", "pgn", "pgn_label", "destination", "source", "label", "rule_name", "rule_type",
        "semantics", "rule_severity", "rule_layer", "rule_description", "context_pgn", "context_value",
    ]  # fmt: skip
    used = ["timestamp", "can_id", "dlc", "data", "label"]
    quoted = True

    fast_types = {"timestamp": pa.float64()}

    def convert(self, t: pa.Table, checks: RowChecks) -> FrameColumns:
        ts = timestamps(t["timestamp"], checks)
        can_id, ext = decimal_can_ids(t["can_id"], checks)
        dlc = dlc_values(t["dlc"], checks)
        data, dlc = payload(t["data"], checks, dlc=dlc)
        text = lower(t["label"])
        checks.flag(in_set(text, [""]), "empty label", t["label"])
        label = (~in_set(text, ["normal", "0"])).astype(np.uint8)
        return FrameColumns(ts, can_id, ext, np.zeros(len(can_id), bool), dlc, data, label, text)


CSV_FORMATS: list[CsvFormat] = [CanTrainAndTest(), Daga(), Road(), CicIov2024(), J1939Labelled()]
