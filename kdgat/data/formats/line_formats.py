"""Readers for line-oriented text captures (candump logs, HCRL text, ragged CSV).

Each line is matched against one RE2 pattern with named groups, run by
Arrow over a whole block at once (``extract_regex``), so no Python code runs
per line. Groups are deliberately loose where that is unambiguous, so that a
bad field is reported by name ("CAN ID is not hexadecimal") rather than as a
line that "does not match".
"""

from __future__ import annotations

import re
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kdgat.core.errors import BadInputError
from kdgat.data.formats.base import (
    CUT_LINES,
    FD_FRAMES,
    CaptureFormat,
    ParsedBlock,
    can_ids,
    decimal_can_ids,
    dlc_values,
    matches_all,
    timestamps,
)
from kdgat.data.formats.convert import RowChecks, hex_to_payload, hex_to_uint, in_set, lower, to_uint
from kdgat.data.formats.stream import CaptureStream, iter_line_blocks
from kdgat.data.frames import FrameColumns

# Lines that are not frames but are known to occur: blank lines and bare
# date-time stamps such as "2020-11-24T042648" in the Nissan Juke logs.
IGNORABLE = r"^\s*$|^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:?\d{2}:?\d{2}(\.\d+)?\s*$"
# candump -e prints, under an error frame, one line per error class it decodes: '\tcontroller-problem{...}'
ERROR_EXPLANATION = (
    r"^\t(tx-timeout|lost-arbitration|controller-problem|protocol-violation|transceiver-status|"
    r"no-acknowledgement-on-tx|bus-off|bus-error|restarted-after-bus-off|error-counter-tx-rx)(\{.*\})?\s*$"
)
_TRUE, _FALSE = ["1", "true", "t", "attack"], ["0", "false", "f", "benign", "normal"]


def _payload_with_dlc(data_text: pa.Array, dlc: np.ndarray, remote: np.ndarray, checks: RowChecks):
    """Space/comma separated hex bytes checked against the DLC (remote frames carry none)."""
    compact = pc.replace_substring_regex(data_text, r"[\s,]+", "")
    data, nbytes, bad, too_long = hex_to_payload(compact)
    checks.flag(bad, "payload is not hexadecimal bytes", data_text)
    checks.flag(too_long, "payload longer than 8 bytes", data_text)
    expected = np.where(remote, 0, dlc)
    checks.flag(nbytes > expected, "payload longer than its DLC", data_text)
    checks.flag(nbytes < expected, "payload shorter than its DLC", data_text)
    return data


def _frame_with_rtr_field(g: pa.StructArray, checks: RowChecks):
    """Fields shared by the HCRL/CrySyS text lines: ts, ID, '000'/'100' remote flag, DLC, bytes."""
    ts = timestamps(g.field("ts"), checks)
    can_id, ext = can_ids(g.field("id"), checks)
    rtr = g.field("rtr")
    checks.flag(~in_set(rtr, ["000", "100"]), "remote-frame field must be 000 or 100", rtr)
    remote = in_set(rtr, ["100"])
    dlc = dlc_values(g.field("dlc"), checks)
    data = _payload_with_dlc(g.field("data"), dlc, remote, checks)
    return ts, can_id, ext, remote, dlc, data


def _optional_labels(text: pa.Array, checks: RowChecks):
    """Trailing label column (CrySyS-style flags): None when the file carries none (its first line decides)."""
    given, text = text, lower(text)
    if not checks.optional_column("labels", ~in_set(text, [""]), "label column"):
        return None
    checks.flag(~in_set(text, _TRUE + _FALSE), "label must be 1/0 or True/False", given)  # said as written
    return in_set(text, _TRUE).astype(np.uint8)


class LineFormat(CaptureFormat):
    """A text format with one frame per line, described by a sniff and a parse pattern."""

    sniff_pattern: ClassVar[str]
    pattern: ClassVar[str]
    layout: ClassVar[str]
    ignorable: ClassVar[str] = IGNORABLE  # lines known to hold no frame
    # the writer ends every line it writes, so a last line without a line end was cut while written: left out
    ends_every_line: ClassVar[bool] = False

    def sniff(self, lines: list[str]) -> bool:
        # the lines :meth:`parse` skips (a bare date-time stamp opens some candump logs) say nothing of the format
        ignorable = re.compile(self.ignorable)
        frames = [line for line in lines if not ignorable.match(line)]
        return bool(frames) and matches_all(re.compile(self.sniff_pattern), frames)

    def convert(self, groups: pa.StructArray, checks: RowChecks) -> FrameColumns:
        raise NotImplementedError

    def parse(self, stream: CaptureStream, block_size: int) -> Iterator[ParsedBlock]:
        seen_any = False
        file: dict = {}  # the optional columns the file's first frame line carries (RowChecks.optional_column)
        for block in iter_line_blocks(stream, block_size):
            strings = block.strings()
            try:
                ignorable = pc.match_substring_regex(strings, self.ignorable).to_numpy(zero_copy_only=False)
                groups = pc.extract_regex(strings, self.pattern)
            except pa.ArrowInvalid as err:
                raise BadInputError(stream.path, f"not readable as text ({err})") from None
            matched = groups.is_valid().to_numpy(zero_copy_only=False)
            cut = np.zeros(len(matched), dtype=bool)
            if self.ends_every_line and block.unterminated:
                cut[-1] = not ignorable[-1]  # whatever it reads as, it is not the frame that was written
            rows = matched & ~ignorable & ~cut
            rejected = ~matched & ~ignorable & ~cut
            lines = block.line_numbers
            checks = RowChecks(int(rows.sum()), file)
            checks.count_aside(CUT_LINES, int(cut.sum()))
            cols = self.convert(groups.filter(pa.array(rows)), checks) if rows.any() else None
            seen_any = seen_any or rows.any() or rejected.any() or cut.any()
            yield ParsedBlock(
                cols=cols,
                lines=lines[rows],
                checks=checks,
                rejected_lines=lines[rejected],
                rejected_problems=[f"malformed line: expected {self.layout}"] * int(rejected.sum()),
                ignored_lines=int(ignorable.sum()),
            )
        if not seen_any:
            raise BadInputError(stream.path, "empty file (no frames)")


class CandumpLog(LineFormat):
    name = "candump-l"
    description = (
        "candump -L log: '(ts) iface ID#DATA' (ID#R for remote, ID##F+DATA for CAN FD, _D for a raw DLC of 9-F), "
        "optional trailing label columns"
    )
    layout = "'(timestamp) iface ID#DATA [labels]'"
    sniff_pattern = r"^\s*\(\d+(\.\d+)?\)\s+\S+\s+[0-9A-Fa-f]{1,8}#"
    pattern = (
        r"^\s*\((?P<ts>[^)]*)\)\s+(?P<iface>\S+)\s+(?P<id>[^#\s]+)#(?:(?P<fd>#)[0-9A-Fa-f])?(?P<rtr>R)?"
        r"(?P<data>[^\s_]*)(?P<raw_dlc>_\S*)?(?:\s+(?P<lab>\S+))?(?:\s+\S+)*\s*$"
    )
    ends_every_line = True

    def convert(self, g: pa.StructArray, checks: RowChecks) -> FrameColumns:
        ts = timestamps(g.field("ts"), checks)
        can_id, ext = can_ids(g.field("id"), checks, extended_by_width=True)
        remote = ~in_set(g.field("rtr"), [""])
        data_text = pc.if_else(pa.array(remote), pa.scalar(""), g.field("data"))
        data, nbytes, bad, too_long = hex_to_payload(data_text)
        # 'ID##<flags><data>': a CAN FD frame; up to 8 bytes it reads as a classic frame (as from a bus)
        checks.set_aside(~in_set(g.field("fd"), [""]) & too_long, FD_FRAMES)
        checks.flag(bad, "payload is not hexadecimal bytes", g.field("data"))
        checks.flag(too_long, "payload longer than 8 bytes", g.field("data"))
        # 'ID#R<dlc>': a remote frame asks for <dlc> bytes and carries none
        asks = remote & ~in_set(g.field("data"), [""])
        asked, digits, not_hex = hex_to_uint(pc.if_else(pa.array(asks), g.field("data"), pa.scalar("0")), 1)
        bad_ask = remote & (not_hex | (digits > 1) | (asked > 8))
        checks.flag(bad_ask, "a remote frame's DLC is one digit 0-8", g.field("data"))
        dlc = np.where(remote, asked, nbytes)
        # candump -8 ('len8_dlc'): a classic 8-byte frame sent with a raw DLC of 9-F shows it as '_<dlc>'
        raw_dlc = g.field("raw_dlc")
        suffixed = ~in_set(raw_dlc, [""])
        checks.flag(
            suffixed & ~(in_set(lower(raw_dlc), [f"_{d:x}" for d in range(9, 16)]) & (dlc == 8)),
            "a raw DLC suffix is '_9' to '_F' after 8 data bytes",
            raw_dlc,
        )
        label = _optional_labels(g.field("lab"), checks)
        return FrameColumns(ts, can_id, ext, remote, dlc.astype(np.uint8), data, label)


class CandumpColumns(LineFormat):
    name = "candump"
    description = (
        "candump default/-ta output: '[(ts)] iface ID [DLC] B0 B1 ...' ({D}: candump -8's raw DLC), "
        "optional trailing label columns"
    )
    layout = "'[(timestamp)] iface ID [DLC] bytes'"
    sniff_pattern = r"^\s*(\(\S+\)\s+)?[A-Za-z]\S*\s+[0-9A-Fa-f]{1,8}\s+[\[{]\w{1,2}[\]}]"
    pattern = (
        r"^\s*(?:\((?P<ts>[^)]*)\)\s+)?(?P<iface>[A-Za-z]\S*)\s+(?P<id>\S+)\s+"
        r"(?:\[(?P<dlc>[^\]]*)\]|\{(?P<raw_dlc>[^}]*)\})"
        r"(?P<data>(?:\s+[0-9A-Fa-f]{2})*)(?P<rtr>\s+remote request)?(?:\s+(?P<lab>\S+))?(?:\s+\S+)*\s*$"
    )
    ignorable = f"{IGNORABLE}|{ERROR_EXPLANATION}"
    ends_every_line = True

    def convert(self, g: pa.StructArray, checks: RowChecks) -> FrameColumns:
        has_ts = checks.optional_column("timestamps", ~in_set(g.field("ts"), [""]), "timestamp")
        ts = timestamps(g.field("ts"), checks) if has_ts else None
        can_id, ext = can_ids(g.field("id"), checks, extended_by_width=True)
        # candump -8 shows a classic frame's DLC in hex as '{D}': 9-F carry 8 bytes, as 8 does
        braced = ~in_set(g.field("raw_dlc"), [""])
        raw, digits, not_hex = hex_to_uint(g.field("raw_dlc"), max_digits=1)
        checks.flag(braced & (not_hex | (digits != 1)), "a raw DLC ('{D}') is one hex digit", g.field("raw_dlc"))
        dlc_text = g.field("dlc")
        if braced.any():  # the rare -8 log only: numbers written back as text cost ~0.2 s per million rows
            dlc_text = pc.if_else(pa.array(braced), pc.cast(pa.array(np.minimum(raw, 8)), pa.string()), dlc_text)
        length, not_length = to_uint(dlc_text, maximum=64)  # a CAN FD frame shows its length: '[12]'
        checks.set_aside(~not_length & (length > 8), FD_FRAMES)
        dlc = dlc_values(dlc_text, checks)
        remote = ~in_set(g.field("rtr"), [""])
        data = _payload_with_dlc(g.field("data"), dlc, remote, checks)
        label = _optional_labels(g.field("lab"), checks)
        return FrameColumns(ts, can_id, ext, remote, dlc, data, label)


class HcrlText(LineFormat):
    name = "hcrl-txt"
    description = "HCRL OTIDS/Survival text: 'Timestamp: t ID: xxxx 000 DLC: n bytes [R|T]'"
    layout = "'Timestamp: t ID: id rtr DLC: n bytes [R|T]'"
    sniff_pattern = r"^\s*Timestamp:\s*\S+\s+ID:\s*[0-9A-Fa-f]+\s+[01]+\s+DLC:"
    pattern = (
        r"^\s*Timestamp:\s*(?P<ts>\S+)\s+ID:\s*(?P<id>\S+)\s+(?P<rtr>\S+)\s+DLC:\s*(?P<dlc>\S+)"
        r"(?P<data>(?:\s+[0-9A-Fa-f]{2})*)(?:\s+(?P<flag>\S+))?\s*$"
    )

    def convert(self, g: pa.StructArray, checks: RowChecks) -> FrameColumns:
        ts, can_id, ext, remote, dlc, data = _frame_with_rtr_field(g, checks)
        flag = g.field("flag")
        label = None
        if checks.optional_column("labels", ~in_set(flag, [""]), "R/T flag"):
            checks.flag(~in_set(flag, ["R", "T"]), "flag must be R or T", flag)
            label = in_set(flag, ["T"]).astype(np.uint8)
        return FrameColumns(ts, can_id, ext, remote, dlc, data, label)


class HcrlCarHacking(LineFormat):
    name = "hcrl-ch"
    description = "HCRL Car-Hacking CSV: 'Timestamp,CAN ID,DLC,DATA[0..DLC-1],Flag' (ragged rows, R/T flag)"
    layout = "'timestamp,id,dlc,bytes...,R|T'"
    sniff_pattern = r"^\d+(\.\d+)?,[0-9A-Fa-f]{1,8},\d,([0-9A-Fa-f]{2},){0,8}[RT]\s*$"
    pattern = r"^(?P<ts>[^,]*),(?P<id>[^,]*),(?P<dlc>[^,]*),(?P<data>(?:[^,]*,)*)(?P<flag>[^,]*?)\s*$"

    def convert(self, g: pa.StructArray, checks: RowChecks) -> FrameColumns:
        ts = timestamps(g.field("ts"), checks)
        can_id, ext = can_ids(g.field("id"), checks)
        dlc = dlc_values(g.field("dlc"), checks)
        remote = np.zeros(len(can_id), bool)
        flag = g.field("flag")
        # The flag sits right after the DLC-th byte; anything else means the row is ragged wrongly.
        checks.flag(~in_set(flag, ["R", "T"]), "flag must be R or T (after DLC data bytes)", flag)
        data = _payload_with_dlc(g.field("data"), dlc, remote, checks)
        label = in_set(flag, ["T"]).astype(np.uint8)
        return FrameColumns(ts, can_id, ext, remote, dlc, data, label)


class CrysysText(LineFormat):
    name = "crysys-txt"
    description = "CrySyS whitespace text: 'epoch_ts ID rtr DLC bytes...' (no labels)"
    layout = "'timestamp id rtr dlc bytes'"
    sniff_pattern = r"^\s*\d+\.\d+\s+[0-9A-Fa-f]{1,8}\s+[01]{3}\s+\d\s"
    pattern = r"^\s*(?P<ts>\S+)\s+(?P<id>\S+)\s+(?P<rtr>\S+)\s+(?P<dlc>\S+)(?P<data>(?:\s+[0-9A-Fa-f]{2})*)\s*$"

    def convert(self, g: pa.StructArray, checks: RowChecks) -> FrameColumns:
        ts, can_id, ext, remote, dlc, data = _frame_with_rtr_field(g, checks)
        return FrameColumns(ts, can_id, ext, remote, dlc, data, None)


class RoadDecimal(LineFormat):
    name = "road-decimal"
    description = "ROAD repackaged: 'ID,B0,...,B7,label', decimal, no header, no timestamps, label 0.0/1.0"
    layout = "'id,b0,b1,b2,b3,b4,b5,b6,b7,label' (decimal)"
    sniff_pattern = r"^\s*\d+(,\d{1,3}){8},[01](\.0)?\s*$"
    pattern = r"^\s*(?P<id>[^,]*)," + "".join(f"(?P<b{i}>[^,]*)," for i in range(8)) + r"(?P<label>[^,]*?)\s*$"

    def convert(self, g: pa.StructArray, checks: RowChecks) -> FrameColumns:
        can_id, ext = decimal_can_ids(g.field("id"), checks)
        n = len(can_id)
        data = np.zeros((n, 8), np.uint8)
        for i in range(8):
            values, bad = to_uint(g.field(f"b{i}"), maximum=255)
            checks.flag(bad, f"byte {i} must be a value 0..255", g.field(f"b{i}"))
            data[:, i] = values
        label = g.field("label")
        checks.flag(~in_set(label, ["0", "1", "0.0", "1.0"]), "label must be 0.0 or 1.0", label)
        attack = in_set(label, ["1", "1.0"]).astype(np.uint8)
        return FrameColumns(None, can_id, ext, np.zeros(n, bool), np.full(n, 8, np.uint8), data, attack)


LINE_FORMATS: list[LineFormat] = [
    CandumpLog(), CandumpColumns(), HcrlText(), HcrlCarHacking(), CrysysText(), RoadDecimal()
]  # fmt: skip
