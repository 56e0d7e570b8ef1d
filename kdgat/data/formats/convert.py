"""Vectorized text-to-number conversion over Arrow string buffers, with row checks.

Captures carry IDs and payloads as hex text. Converting them cell by cell in
Python is the classic ingest bottleneck, so everything here works on the raw
bytes of an Arrow string column with numpy (one gather + table lookup), and
reports *which rows* are malformed instead of raising on the first one, so
the caller can either fail with the exact line or skip the bad rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"abcdef"):
    _HEX[_c] = 10 + _i
    _HEX[ord(chr(_c).upper())] = 10 + _i

_HIGH_BITS = np.uint64(0x8080808080808080)

_FLOAT_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_UINT_RE = r"^\s*\d+\s*$"


class RowChecks:
    """Collects per-row problems for one block; the first problem of a row wins.

    Rows *set aside* are well-formed lines that are not classic CAN data frames (error frames, CAN FD
    frames beyond 8 bytes): they are left out and counted by kind, never reported as problems.
    """

    def __init__(self, n: int, file: dict | None = None):
        self.bad = np.zeros(n, dtype=bool)
        self.aside = np.zeros(n, dtype=bool)
        self.aside_counts: dict[str, int] = {}
        self._code = np.full(n, -1, dtype=np.int16)
        self._problems: list[tuple[str, object]] = []
        # what the file's first frame line decided for every later block (whether it carries labels, timestamps)
        self.file = {} if file is None else file

    def optional_column(self, name: str, present: np.ndarray, what: str) -> bool:
        """Whether the file carries optional column ``name``: decided by its first frame line, once per file; the
        rows of this block that disagree are flagged (a stray label on one line, a line cut short before it)."""
        present = np.asarray(present, dtype=bool)
        frames = np.flatnonzero(~self.aside)  # an error frame's trailing text ("ERRORFRAME") decides nothing
        if name not in self.file and len(frames):
            self.file[name] = bool(present[frames[0]])
        carried = self.file.get(name, False)
        if carried:
            self.flag(~present, f"missing {what} (the file's first line has one)")
        else:
            self.flag(present, f"a {what}, which the file's first line has not")
        return carried

    def set_aside(self, mask: np.ndarray, kind: str) -> None:
        """Leave out the rows where ``mask`` is True as frames of ``kind``; a row already flagged stays a problem,
        and a row set aside is never flagged later (an error frame's ID is wider than 29 bits by design)."""
        new = np.asarray(mask, dtype=bool) & ~self.aside & ~self.bad
        if new.any():
            self.aside |= new
            self.aside_counts[kind] = self.aside_counts.get(kind, 0) + int(new.sum())

    def count_aside(self, kind: str, n: int) -> None:
        """Count ``n`` lines of ``kind`` left out before they became rows (a line cut while written)."""
        if n:
            self.aside_counts[kind] = self.aside_counts.get(kind, 0) + n

    def flag(self, mask: np.ndarray, problem: str, values=None) -> None:
        """Mark rows where ``mask`` is True with ``problem``; ``values`` shows the offending text."""
        mask = np.asarray(mask, dtype=bool)
        new = mask & ~self.bad & ~self.aside
        if new.any():
            self._code[new] = len(self._problems)
            self._problems.append((problem, values))
            self.bad |= new

    def describe(self, row: int) -> str:
        problem, values = self._problems[self._code[row]]
        if values is not None:
            value = values[row]
            value = value.as_py() if isinstance(value, pa.Scalar) else value
            if value is not None:
                return f"{problem}: {str(value)[:60]!r}"
        return problem

    def problem_counts(self) -> dict[str, int]:
        """Bad rows per problem text (without values), counted in numpy: skip mode may meet millions."""
        counts = np.bincount(self._code[self.bad], minlength=len(self._problems))
        found: dict[str, int] = {}
        for (problem, _), n in zip(self._problems, counts.tolist(), strict=True):
            if n:
                found[problem] = found.get(problem, 0) + n
        return found


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw bytes, start offsets, lengths and validity of a string array (no copy of the data)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type == pa.large_string():
        arr = arr.cast(pa.string())
    n = len(arr)
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int32, count=arr.offset + n + 1)[arr.offset :]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    valid = np.ones(n, dtype=bool) if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    starts = offsets[:-1].astype(np.int64)
    lengths = np.diff(offsets).astype(np.int64)
    return data, starts, lengths, valid


def _fixed_width_chars(arr: pa.Array, lengths: np.ndarray, width: int, right: bool) -> np.ndarray:
    """(n, width) character matrix of the strings padded with '0' to ``width``.

    Arrow pads in C++ (utf8_lpad/rpad), after which every value has the same
    length, so the data buffer *is* the matrix: no per-character index arrays.
    Values longer than ``width`` must have been replaced by the caller.
    """
    n = len(arr)
    if not (lengths.min() == width and lengths.max() == width):
        pad = pc.utf8_lpad if right else pc.utf8_rpad
        arr = pad(arr, width=width, padding="0")
    data, starts, _, _ = _string_parts(arr)
    first = int(starts[0]) if n else 0
    return data[first : first + n * width].reshape(n, width)


def _short_enough(arr: pa.Array, lengths: np.ndarray, width: int) -> pa.Array:
    """Blank out nulls and values longer than ``width`` (they are flagged separately)."""
    too_long = lengths > width
    if too_long.any() or arr.null_count:
        arr = pc.if_else(pa.array(~too_long), arr, pa.scalar(""))
        arr = pc.fill_null(arr, "")
    return arr


def hex_to_uint(arr: pa.Array, max_digits: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse hex text (no 0x) to uint32; returns values, digit counts, and a non-hex mask.

    Text longer than ``max_digits`` is not flagged here (callers report it as
    too wide); it converts to 0.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, bool)
    _, _, lengths, valid = _string_parts(arr)
    width = int(min(max(lengths.max(), 1), max_digits))
    chars = _fixed_width_chars(
        _short_enough(arr, lengths, width), np.minimum(lengths, width) * (lengths <= width), width, right=True
    )
    nib = _HEX[chars]
    bad = (nib == 255).any(axis=1) | (lengths == 0) | ~valid
    nib = np.where(nib == 255, 0, nib).astype(np.uint32)
    values = nib[:, 0].copy()
    for k in range(1, width):
        values <<= 4
        values |= nib[:, k]
    values[lengths > max_digits] = 0
    return values, lengths, bad


def hex_to_payload(arr: pa.Array, max_bytes: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse a contiguous hex payload ("0A1B...") to (n, 8) bytes.

    Returns bytes, byte counts, a mask of rows with non-hex text or an odd
    number of digits, and a mask of rows longer than ``max_bytes``.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    out = np.zeros((n, 8), dtype=np.uint8)
    if n == 0:
        return out, np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool)
    _, _, lengths, valid = _string_parts(arr)
    width = 2 * max_bytes
    too_long = lengths > width
    chars = _fixed_width_chars(_short_enough(arr, lengths, width), np.where(too_long, 0, lengths), width, right=False)
    nib = _HEX[chars]  # (n, 16): 0..15, or 255 for a non-hex character
    words = nib.view(np.uint64)  # 8 characters per word: test the high bits of all at once
    bad = (np.bitwise_or.reduce(words, axis=1) & _HIGH_BITS) != 0
    bad |= (lengths % 2 == 1) | ~valid
    pairs = nib.view(np.uint16)  # (hi, lo) nibble pairs, little-endian: hi | lo << 8
    out[:, :max_bytes] = (((pairs & 0x0F) << 4) | ((pairs >> 8) & 0x0F)).astype(np.uint8)
    return out, lengths // 2, bad, too_long


def hex_bytes_columns(columns: list[pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """One hex byte per column (as in ROAD's Byte1..Byte8) to (n, 8) bytes and a bad mask."""
    n = len(columns[0])
    out = np.zeros((n, 8), dtype=np.uint8)
    bad = np.zeros(n, dtype=bool)
    for k, col in enumerate(columns):
        values, digits, col_bad = hex_to_uint(col, max_digits=2)
        out[:, k] = values
        bad |= col_bad | (digits > 2)
    return out, bad


def to_float(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Decimal text to float64; bad = unparseable, empty or non-finite."""
    try:
        values = pc.cast(arr, pa.float64())
        bad = np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok = pc.fill_null(pc.match_substring_regex(arr, _FLOAT_RE), False)
        bad = ~ok.to_numpy(zero_copy_only=False)
        # the regex admits surrounding spaces, as Arrow's own cast on the one-call path does: trim them
        values = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, arr, pa.scalar(None, pa.string()))), pa.float64())
    out = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    bad = bad | ~np.isfinite(out)
    return np.where(bad, 0.0, out), bad


def to_uint(arr: pa.Array, maximum: int) -> tuple[np.ndarray, np.ndarray]:
    """Decimal text to int64 in [0, maximum]; bad = not an unsigned integer or out of range."""
    try:
        values = pc.cast(arr, pa.int64())
        bad = np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok = pc.fill_null(pc.match_substring_regex(arr, _UINT_RE), False)
        ok = pc.and_(ok, pc.less_equal(pc.utf8_length(pc.utf8_trim_whitespace(arr)), 18))
        bad = ~ok.to_numpy(zero_copy_only=False)
        values = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, arr, pa.scalar("0"))), pa.int64())
    out = values.to_numpy(zero_copy_only=False)
    if values.null_count:
        nulls = values.is_null().to_numpy(zero_copy_only=False)
        bad |= nulls
        out = np.where(nulls, 0, out)
    bad |= (out < 0) | (out > maximum)
    return np.where(bad, 0, out).astype(np.int64), bad


def lower(arr: pa.Array) -> pa.Array:
    return pc.utf8_lower(pc.utf8_trim_whitespace(arr))


def in_set(arr: pa.Array, values: list[str]) -> np.ndarray:
    return pc.fill_null(pc.is_in(arr, value_set=pa.array(values)), False).to_numpy(zero_copy_only=False)
