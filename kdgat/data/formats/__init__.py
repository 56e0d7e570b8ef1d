"""Capture readers: one per capture family, all producing the canonical frame schema."""

from __future__ import annotations

from pathlib import Path

from kdgat.core.errors import BadInputError, UsageError
from kdgat.data.formats.base import CaptureFormat, first_lines
from kdgat.data.formats.csv_formats import CSV_FORMATS
from kdgat.data.formats.line_formats import LINE_FORMATS
from kdgat.data.formats.stream import CaptureStream

FORMATS: dict[str, CaptureFormat] = {f.name: f for f in [*CSV_FORMATS, *LINE_FORMATS]}


def get_format(name: str, also: tuple[str, ...] = ()) -> CaptureFormat:
    """The reader of ``name``; an unknown one is a usage error listing every choice (``also``: names a caller reads
    with other readers, e.g. detect's python-can logs)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown format {name!r}; choose from: auto, {', '.join([*FORMATS, *also])}") from None


def detect_format(path: str | Path) -> CaptureFormat:
    """Recognise the format from the first non-blank lines (after decompression)."""
    with CaptureStream(path) as stream:
        lines = first_lines(stream)
    return format_of_lines(lines, path)


def format_of_lines(lines: list[str], path: str | Path) -> CaptureFormat:
    """The format whose sniffer takes ``lines`` (a capture's first non-blank lines; ``path`` names it in errors)."""
    if not lines:
        raise BadInputError(path, "empty file (nothing to detect a format from)")
    for fmt in FORMATS.values():
        if fmt.sniff(lines):
            return fmt
    raise BadInputError(
        path, f"unknown format: first line {lines[0][:80]!r} matches none of {', '.join(FORMATS)}", line=1
    )


__all__ = ["FORMATS", "CaptureFormat", "detect_format", "format_of_lines", "get_format"]
