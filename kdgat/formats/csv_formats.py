"""Readers for the comma-separated capture families (header line + one frame per line).

The fast path is Arrow's multithreaded CSV parser over whole blocks. Before
handing a block to it, field counts are checked per line with numpy, so a
ragged row is reported with its exact line number (Arrow's streaming parser
does not know line numbers) and never reaches the parser.
"""

from __future__ import annotations

from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kdgat.errors import BadInputError
from kdgat.formats.base import (
    CaptureFormat,
    ParsedBlock,
    block_iter,
    can_ids,
    decimal_can_ids,
    dlc_values,
    payload,
    timestamps,
)
from kdgat.formats.convert import RowChecks, hex_bytes_columns, in_set, lower, to_uint
from kdgat.formats.stream import CaptureStream, LineBlock
from kdgat.frames import FrameColumns

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
    spans = np.diff(np.concatenate((block.starts, [len(block.buf)])))
    return pa.py_buffer(block.buf[np.repeat(keep, spans)].tobytes())


class CsvFormat(CaptureFormat):
    """A CSV family with a fixed header; subclasses convert the columns they need."""

    header: ClassVar[list[str]]
    used: ClassVar[list[str]]
    quoted: ClassVar[bool] = False

    def sniff(self, lines: list[str]) -> bool:
        return bool(lines) and self._header_matches(lines[0])

    def _header_matches(self, line: str) -> bool:
        fields = [f.strip().strip('"').lower() for f in line.strip().split(",")]
        return fields == [h.lower() for h in self.header]

    def convert(self, table: pa.Table, checks: RowChecks) -> FrameColumns:
        raise NotImplementedError

    def _read_table(self, data: pa.Buffer) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=self.header, block_size=4 << 20),
            parse_options=pacsv.ParseOptions(quote_char='"' if self.quoted else False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in self.used},
                include_columns=self.used,
                strings_can_be_null=False,
            ),
        )

    def parse(self, stream: CaptureStream, block_size: int) -> Iterator[ParsedBlock]:
        header_seen = False
        ncols = len(self.header)
        for block in block_iter(stream, block_size):
            nonblank = block.ends > block.starts
            keep = nonblank.copy()
            lines = block.line_numbers
            if not header_seen:
                candidates = np.flatnonzero(nonblank)
                if len(candidates) == 0:
                    continue
                first = candidates[0]
                if not self._header_matches(block.text(first)):
                    raise BadInputError(
                        stream.path,
                        f"expected the {self.name} header '{','.join(self.header)}', "
                        f"found {block.text(first)[:80]!r}",
                        line=int(lines[first]),
                    )
                keep[first] = False
                header_seen = True
            counts = _field_counts(block, self.quoted)
            shape_ok = counts == ncols
            rows = keep & shape_ok
            rejected = keep & ~shape_ok
            table = self._read_table(_line_bytes(block, rows)) if rows.any() else None
            checks = RowChecks(int(rows.sum()))
            cols = self.convert(table, checks) if table is not None else None
            yield ParsedBlock(
                cols=cols,
                lines=lines[rows],
                checks=checks,
                rejected_lines=lines[rejected],
                rejected_problems=[f"expected {ncols} fields, found {c}" for c in counts[rejected]],
                ignored_lines=int((~nonblank).sum()),
            )
        if not header_seen:
            raise BadInputError(stream.path, "empty file (no header and no frames)")


def _labels_01(col: pa.Array, checks: RowChecks, what: str) -> np.ndarray:
    ok = in_set(col, ["0", "1"])
    checks.flag(~ok, f"{what} must be 0 or 1", col)
    return (in_set(col, ["1"])).astype(np.uint8)


class CanTrainAndTest(CsvFormat):
    name = "can-train-and-test"
    description = "can-train-and-test CSV: timestamp,arbitration_id,data_field,attack (hex ID and payload)"
    header = ["timestamp", "arbitration_id", "data_field", "attack"]
    used = header

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

    def convert(self, t: pa.Table, checks: RowChecks) -> FrameColumns:
        ts = timestamps(t["timestamp"], checks)
        can_id, ext = can_ids(t["CAN_ID"], checks)
        bits, bad_bits = to_uint(t["DLC"], maximum=64)
        checks.flag(bad_bits | (bits % 8 != 0), "DLC must be a bit count from 0 to 64 in steps of 8", t["DLC"])
        data, dlc = payload(_left_pad_to_dlc(t["PAYLOAD_HEX"], bits // 8), checks, dlc=bits // 8)
        anomaly = lower(t["ANOMALY"])
        checks.flag(~in_set(anomaly, ["true", "false"]), "ANOMALY must be TRUE or FALSE", t["ANOMALY"])
        label = in_set(anomaly, ["true"]).astype(np.uint8)
        return FrameColumns(ts, can_id, ext, np.zeros(len(can_id), bool), dlc, data, label)


class Road(CsvFormat):
    name = "road"
    description = "ROAD CSV: Time,Id,Byte1..Byte8,Label (Benign or the attack name)"
    header = ["Time", "Id"] + [f"Byte{i}" for i in range(1, 9)] + ["Label"]
    used = header

    def convert(self, t: pa.Table, checks: RowChecks) -> FrameColumns:
        ts = timestamps(t["Time"], checks)
        can_id, ext = can_ids(t["Id"], checks)
        data, bad = hex_bytes_columns([t[f"Byte{i}"] for i in range(1, 9)])
        checks.flag(bad, "payload byte is not two hex digits")
        text = lower(t["Label"])
        checks.flag(in_set(text, [""]), "empty Label", t["Label"])
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
