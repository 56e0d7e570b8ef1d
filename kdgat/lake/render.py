"""A query result (``pyarrow.Table``) as a rich table for people, or CSV / JSON / Markdown for scripts."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pyarrow as pa
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.rule import Rule
from rich.table import Table
from rich.text import Text


def cell_text(value, digits: int | None = 4, grouping: bool = False) -> str:
    """One value as table text: floats to ``digits`` decimals (None: full precision, empty for null; from
    1e6 up, ``digits`` significant digits in exponent form, as a VGAE threshold above a novel ID's 1e30
    would be 31 digits long), yes/no, ISO timestamps, lists joined by ``;``; ``grouping`` puts thousands
    separators in integers."""
    if value is None or (isinstance(value, float) and value != value and digits is not None):
        return "-" if digits is not None else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if digits is None:
            return repr(value)
        return f"{value:.{digits}e}" if abs(value) >= 1e6 else f"{value:.{digits}f}"
    if isinstance(value, int) and grouping:
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ";".join(cell_text(v, digits, grouping) for v in value)
    return str(value)


def is_numeric(field: pa.Field) -> bool:
    """Numbers are right-aligned, in the terminal and in the HTML report."""
    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type)


def _json_value(value):
    """A DuckDB value as JSON has it: any SQL type a query may return (a sum is a DECIMAL, a cast a DATE, a
    BLOB bytes), nested lists and structs too; NaN and infinities, which JSON lacks, as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, pa.MonthDayNano):  # an INTERVAL
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else _json_value(float(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (str, int)):
        return value
    return str(value)  # a UUID, an interval DuckDB hands over as another type


def rich_table(table: pa.Table, title: str | None = None, width: int | None = None) -> RenderableType:
    """A table for the terminal; when it would not fit ``width`` columns, one block per row instead.

    A wide table squeezed into a narrow terminal wraps numbers mid-digit; the vertical layout keeps
    every value whole (``name  value`` lines, one group per row).
    """
    shown = Table(title=title)
    for field in table.schema:
        numeric = is_numeric(field)
        shown.add_column(field.name, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric)
    rows = [[cell_text(v) for v in row.values()] for row in table.to_pylist()]
    for cells in rows:
        shown.add_row(*cells)
    if table.num_rows == 0:
        shown.caption = "no rows"
    if width is None or _natural_width(shown) <= width:
        return shown
    return _vertical(table.column_names, rows, title)


def _natural_width(table: Table) -> int:
    console = Console(width=100_000, file=io.StringIO())
    return Measurement.get(console, console.options, table).maximum


def _vertical(names: list[str], rows: list[list[str]], title: str | None) -> RenderableType:
    blocks: list[RenderableType] = [Text(title, style="bold")] if title else []
    for index, cells in enumerate(rows, 1):
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in zip(names, cells, strict=True):
            grid.add_row(name, value)
        blocks += [Rule(f"{index}/{len(rows)}", style="dim"), grid]
    if not rows:
        blocks.append(Text("no rows"))
    return Group(*blocks)


def to_text(table: pa.Table, fmt: str) -> str:
    """CSV (full precision), JSON (a list of records) or a GitHub Markdown table (4 decimals)."""
    rows = table.to_pylist()
    if fmt == "json":
        return json.dumps([{k: _json_value(v) for k, v in r.items()} for r in rows], indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([cell_text(v, None) for v in r.values()] for r in rows)
        return buffer.getvalue().rstrip("\n")
    if fmt == "markdown":

        def line(cells) -> str:
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        lines = [line(table.column_names), line("---" for _ in table.column_names)]
        lines += [line(cell_text(v) for v in r.values()) for r in rows]
        return "\n".join(lines)
    raise ValueError(f"unknown format {fmt!r}")
