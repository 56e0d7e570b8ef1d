"""A query result (``pyarrow.Table``) as a rich table for people, or CSV / JSON / Markdown for scripts."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pyarrow as pa
from rich.table import Table

FORMATS = ("table", "csv", "json", "markdown")


def _cell(value, digits: int | None = 4) -> str:
    if value is None:
        return "-" if digits is not None else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if digits is not None else repr(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ";".join(_cell(v, digits) for v in value)
    return str(value)


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def rich_table(table: pa.Table, title: str | None = None) -> Table:
    shown = Table(title=title)
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]
    for field, right in zip(table.schema, numeric, strict=True):
        shown.add_column(field.name, justify="right" if right else "left", overflow="fold")
    for row in table.to_pylist():
        shown.add_row(*(_cell(v) for v in row.values()))
    if table.num_rows == 0:
        shown.caption = "no rows"
    return shown


def to_text(table: pa.Table, fmt: str) -> str:
    """CSV (full precision), JSON (a list of records) or a GitHub Markdown table (4 decimals)."""
    rows = table.to_pylist()
    if fmt == "json":
        return json.dumps([{k: _json_value(v) for k, v in r.items()} for r in rows], indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([_cell(v, None) for v in r.values()] for r in rows)
        return buffer.getvalue().rstrip("\n")
    if fmt == "markdown":

        def line(cells) -> str:
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        lines = [line(table.column_names), line("---" for _ in table.column_names)]
        lines += [line(_cell(v) for v in r.values()) for r in rows]
        return "\n".join(lines)
    raise ValueError(f"unknown format {fmt!r}")
