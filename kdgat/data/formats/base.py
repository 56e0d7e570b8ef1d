"""What every capture reader provides, and the column helpers they share."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa

from kdgat.data.formats.convert import RowChecks, hex_to_payload, hex_to_uint, to_float, to_uint
from kdgat.data.formats.stream import CaptureStream, head_lines
from kdgat.data.frames import MAX_EXTENDED_ID, MAX_STANDARD_ID


@dataclass
class ParsedBlock:
    """Frames parsed from one block of lines.

    ``lines`` holds the physical line number of every row of ``cols``;
    ``checks`` marks rows whose fields are malformed; ``rejected_lines`` are
    lines that could not be split into fields at all (with their problems);
    ``ignored_lines`` are known non-frame lines (blank lines, date stamps).
    """

    cols: object  # FrameColumns
    lines: np.ndarray
    checks: RowChecks
    rejected_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rejected_problems: list[str] = field(default_factory=list)
    ignored_lines: int = 0


class CaptureFormat:
    """A capture family: how to recognise it and how to parse it into frames."""

    name: ClassVar[str]
    description: ClassVar[str]
    has_labels: ClassVar[bool] = True

    def sniff(self, lines: list[str]) -> bool:
        """True if the first non-blank lines of a file look like this format."""
        raise NotImplementedError

    def parse(self, stream: CaptureStream, block_size: int) -> Iterator[ParsedBlock]:
        raise NotImplementedError


# SocketCAN's error-frame flag (bit 29 of the ID word): candump prints an error frame's ID with it, in 8 digits,
# beside the error classes (bits 0-9 today, 0x001-0x200); any other bit above 28 makes no CAN ID nor error frame
CAN_ERR_FLAG = 0x20000000
CAN_ERR_CLASSES = 0x00000FFF
ERROR_FRAMES = "error frames"
FD_FRAMES = "CAN FD frames over 8 bytes"
# a writer that ends every line (candump) left the file's last line without one: it stopped mid-line
CUT_LINES = "unfinished last line (no line end: cut while written)"
NOT_CLASSIC = (ERROR_FRAMES, FD_FRAMES)


def can_ids(col: pa.Array, checks: RowChecks, *, extended_by_width: bool = False):
    """Hex CAN IDs -> (can_id, is_extended), flagging non-hex and >29-bit IDs.

    ``extended_by_width``: candump prints 8 digits for 29-bit IDs, so width
    (not value) decides there; elsewhere an ID above 0x7FF is extended. candump's
    error frames (8 digits with :data:`CAN_ERR_FLAG` set) are set aside, not flagged.
    """
    values, digits, nonhex = hex_to_uint(col, max_digits=8)
    if extended_by_width:
        error = (values & ~np.uint32(CAN_ERR_CLASSES)) == CAN_ERR_FLAG
        checks.set_aside((digits == 8) & ~nonhex & error, ERROR_FRAMES)
    checks.flag(nonhex, "CAN ID is not hexadecimal", col)
    checks.flag((digits > 8) | (values > MAX_EXTENDED_ID), "CAN ID wider than 29 bits", col)
    if extended_by_width:  # 3 digits is an 11-bit ID: 800-FFF is no CAN ID (it was read as a 29-bit one)
        checks.flag((digits <= 3) & (values > MAX_STANDARD_ID), "11-bit CAN ID above 0x7FF", col)
    extended = (digits > 3) if extended_by_width else (values > MAX_STANDARD_ID)
    return values, extended | (values > MAX_STANDARD_ID)


def decimal_can_ids(col: pa.Array, checks: RowChecks):
    values, bad = to_uint(col, maximum=2**40)
    checks.flag(bad, "CAN ID is not a decimal integer", col)
    checks.flag(values > MAX_EXTENDED_ID, "CAN ID wider than 29 bits", col)
    return values.astype(np.uint32), values > MAX_STANDARD_ID


def timestamps(col: pa.Array, checks: RowChecks) -> np.ndarray:
    values, bad = to_float(col)
    checks.flag(bad, "unparseable timestamp", col)
    return values


def payload(col: pa.Array, checks: RowChecks, dlc: np.ndarray | None = None):
    """Hex payload -> (data, dlc); with an explicit DLC, the byte count must match it."""
    data, nbytes, bad, too_long = hex_to_payload(col)
    checks.flag(bad, "payload is not hexadecimal bytes", col)
    checks.flag(too_long, "payload longer than 8 bytes", col)
    if dlc is None:
        return data, np.minimum(nbytes, 8).astype(np.uint8)
    checks.flag(nbytes > dlc, "payload longer than its DLC", col)
    checks.flag(nbytes < dlc, "payload shorter than its DLC", col)
    return data, dlc.astype(np.uint8)


def dlc_values(col: pa.Array, checks: RowChecks) -> np.ndarray:
    values, bad = to_uint(col, maximum=8)
    checks.flag(bad, "DLC must be an integer from 0 to 8", col)
    return values.astype(np.uint8)


def first_lines(stream: CaptureStream, count: int = 5, limit: int = 1 << 16) -> list[str]:
    """The first ``count`` non-blank lines (for format detection)."""
    head = stream.read(limit)
    return head_lines(head, len(head) < limit, count)  # a full read may end mid-line


def matches_all(pattern: re.Pattern, lines: list[str]) -> bool:
    return bool(lines) and all(pattern.search(line) for line in lines)
