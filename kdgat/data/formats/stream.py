"""Byte streams of capture files: transparent decompression, hashing, line blocks.

Captures are read in fixed-size blocks of whole lines so that a 10 GB file
needs only a few block-sized buffers of memory, and every line keeps its
physical line number for error messages.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import select
import threading
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa

from kdgat.core.errors import BadInputError

DEFAULT_BLOCK_SIZE = 16 << 20
# no capture format's line comes near this long (a CAN frame's is under 200 bytes): a longer one is refused with its
# line number; a file of one endless line (53 KB of zstd held 1.5 GB without a newline) grew a copy of it to 3.6 GB
MAX_LINE_BYTES = 1 << 20
# a UTF-8 byte-order mark (Notepad, PowerShell, Excel's "CSV UTF-8"): not part of the first line; the hash keeps it
UTF8_BOM = b"\xef\xbb\xbf"

_MAGIC = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
]


class _HashingReader:
    """File wrapper that hashes the raw (compressed) bytes as they are read."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self.sha256.update(chunk)
        self.bytes_read += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def finish(self) -> str:
        """Hash the rest of the file (bytes a reader did not need) and return the digest."""
        while self.read(1 << 20):
            pass
        return self.sha256.hexdigest()


def detect_compression(path: str | Path) -> str | None:
    """Compression from the file's magic bytes (not its name)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


class CaptureStream:
    """Decompressed read-only byte stream of one capture, hashing its raw bytes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.compression = detect_compression(self.path)
            raw = open(self.path, "rb")
        except FileNotFoundError:
            raise BadInputError(self.path, "file not found") from None
        except IsADirectoryError:
            raise BadInputError(self.path, "is a directory, not a capture file") from None
        except OSError as err:
            raise BadInputError(self.path, f"cannot open ({err.strerror})") from None
        self._hashing = _HashingReader(raw)
        if self.compression == "xz":
            self._stream = lzma.open(self._hashing)
        elif self.compression is not None:
            self._stream = pa.CompressedInputStream(pa.PythonFile(self._hashing, mode="r"), self.compression)
        else:
            self._stream = self._hashing
        self._at_start = True

    def read(self, size: int) -> bytes:
        try:
            data = self._stream.read(size)
        except (EOFError, lzma.LZMAError, OSError, pa.ArrowException) as err:
            kind = self.compression or "file"
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise BadInputError(self.path, f"corrupt or truncated {kind} data ({reason})") from None
        if self._at_start and data:
            self._at_start = False
            data = data.removeprefix(UTF8_BOM)
        return data

    def sha256(self) -> str:
        return self._hashing.finish()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._hashing.close()

    def __enter__(self) -> "CaptureStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def head_lines(head: bytes, last_is_whole: bool, count: int = 5) -> list[str]:
    """The first ``count`` non-blank lines of a capture's first bytes (for format detection); the last line only
    where it is whole (the bytes may end inside it)."""
    text = head.decode("utf-8", "replace").splitlines()
    if text and not last_is_whole and not head.endswith(b"\n"):
        text = text[:-1]
    return [line for line in text if line.strip()][:count]


STDIN = "-"  # the capture name that reads standard input
STDIN_NAME = "<stdin>"  # how it is named in messages and summaries


class PipeStream:
    """Standard input as a capture stream (``candump -L can0 | kdgat detect -``): a read returns the whole lines
    that have arrived, up to ``size`` bytes, so a live pipe's windows are scored as they close, not when a block
    fills. It waits in short steps so that ``stop`` (a signal, ``--duration``) is heard while the pipe is quiet;
    once stopped it reads as the end of the stream, and a line still arriving then is dropped (it never came
    whole). At the real end an unterminated last line is handed out, as from a file. The head read for format
    detection (:meth:`head`) is read again first. Compressed input is refused (``xz -dc FILE | ...``
    decompresses it into the pipe); the hash is of what was read."""

    compression = None

    def __init__(self, fd: int = 0, stop: threading.Event | None = None, wait: float = 0.2):
        self.path = Path(STDIN_NAME)
        self.fd, self.stop, self.wait = fd, stop or threading.Event(), wait
        # a bytearray: each 64 KiB read extends it in place (bytes += copied the whole pending block every read)
        self._sha256, self._pending, self.ended, self._started = hashlib.sha256(), bytearray(), False, False

    def _arrive(self, size: int, wait: bool = True) -> bool:
        """Read what has arrived, up to ``size`` more pending bytes (a pipe gives 64 KiB a read: a file piped in
        keeps it full, and reading on while bytes are ready makes blocks of the usual size instead of thousands
        of small ones, each a scoring call). ``wait``: for the first bytes, in short steps. False when nothing
        came: the pipe ended, a stop was asked, or (without ``wait``) nothing was ready."""
        came = False
        while len(self._pending) < size and not self.ended and not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], self.wait if wait and not came else 0)
            if not ready:
                if came or not wait:
                    break
                continue
            chunk = os.read(self.fd, size - len(self._pending))
            self.ended = not chunk
            self._sha256.update(chunk)
            self._pending += chunk
            if not self._started and (len(self._pending) >= len(UTF8_BOM) or not UTF8_BOM.startswith(self._pending)):
                self._started = True  # a mark may come in parts
                if self._pending.startswith(UTF8_BOM):
                    del self._pending[: len(UTF8_BOM)]
            came = came or bool(chunk)
        return came

    def head(self, limit: int = 1 << 16, lines: int = 5) -> bytes:
        """The first bytes (kept to be read again): ``lines`` non-blank whole lines, ``limit`` bytes, or all there
        is when the pipe ends or a stop is asked."""
        while len(self._pending) < limit and len(head_lines(self._pending, False, lines)) < lines:
            if not self._arrive(limit):
                break
        for magic, name in _MAGIC:
            if self._pending.startswith(magic):
                raise BadInputError(self.path, f"{name}-compressed input: decompress it into the pipe (e.g. xz -dc)")
        return bytes(self._pending)

    def _take(self, count: int) -> bytes:
        with memoryview(self._pending) as view:  # one copy (a slice of the bytearray would be a second)
            chunk = bytes(view[:count])
        del self._pending[:count]
        return chunk

    def read(self, size: int) -> bytes:
        while True:
            if self.ended:  # the rest, an unterminated last line included
                return self._take(size)
            if b"\n" in self._pending:  # whole lines only (a line longer than size: size bytes of it)
                cut = self._pending.rfind(b"\n", 0, size) + 1 or size
                return self._take(cut)
            if len(self._pending) > MAX_LINE_BYTES:  # a line no capture has: iter_line_blocks refuses it, by number
                return self._take(len(self._pending))
            if not self._arrive(len(self._pending) + max(size, 1)):  # a line longer than size: more of it
                if self.ended:
                    continue
                return b""  # stopped: a line still arriving is dropped

    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def close(self) -> None:
        pass  # standard input stays the caller's

    def __enter__(self) -> "PipeStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LineBlock:
    """A block of whole lines; line offsets are computed only if a reader asks for them."""

    def __init__(self, raw: bytes, first_line: int):
        self.raw = raw
        self.first_line = first_line  # 1-based physical line number of the first line
        self.buf = np.frombuffer(raw, dtype=np.uint8)
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None
        self.n_lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") or not raw else 1)
        # only a file's last block can end without a line end (iter_line_blocks cuts blocks after one)
        self.unterminated = bool(raw) and not raw.endswith(b"\n")

    def _compute_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self._bounds is None:
            buf = self.buf
            newlines = np.flatnonzero(buf == 10)
            starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
            ends = np.concatenate((newlines, [len(buf)])).astype(np.int64)
            if starts[-1] == len(buf):  # ends with a newline: no trailing partial line
                starts, ends = starts[:-1], ends[:-1]
            has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
            self._bounds = (starts, ends - has_cr)
        return self._bounds

    @property
    def starts(self) -> np.ndarray:
        return self._compute_bounds()[0]

    @property
    def ends(self) -> np.ndarray:
        """Exclusive end of each line, CR/LF excluded."""
        return self._compute_bounds()[1]

    def __len__(self) -> int:
        return self.n_lines

    @property
    def line_numbers(self) -> np.ndarray:
        return self.first_line + np.arange(len(self.starts), dtype=np.int64)

    def text(self, i: int) -> str:
        return self.raw[self.starts[i] : self.ends[i]].decode("utf-8", "replace")

    def strings(self, keep: np.ndarray | None = None) -> pa.Array:
        """Lines as an Arrow string array over the block's bytes (zero copy).

        Each string keeps its line terminator, so patterns end in ``\\s*$``.
        """
        offsets = np.concatenate((self.starts, [len(self.buf)])).astype(np.int32)
        arr = pa.StringArray.from_buffers(len(self.starts), pa.py_buffer(offsets), pa.py_buffer(self.raw))
        return arr if keep is None else arr.filter(pa.array(keep))


def iter_line_blocks(stream: CaptureStream, block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[LineBlock]:
    """Yield blocks of complete lines; the last line may lack a terminator."""
    carry = b""
    next_line = 1
    while True:
        chunk = stream.read(block_size)
        at_end = not chunk
        raw = carry + chunk
        if not raw:
            return
        if at_end:
            carry = b""
        else:  # whole lines go on; the line still arriving is carried (one longer than a block: read on)
            cut = raw.rfind(b"\n") + 1
            raw, carry = raw[:cut], raw[cut:]
        block = LineBlock(raw, next_line)
        if len(carry) > MAX_LINE_BYTES:  # held whole while more of it came: memory, not a row
            too_long = f"a line longer than {MAX_LINE_BYTES:,} bytes: no capture's"
            raise BadInputError(stream.path, too_long, next_line + block.n_lines)
        if not raw:
            continue
        yield block
        next_line += block.n_lines
        if at_end:
            return
