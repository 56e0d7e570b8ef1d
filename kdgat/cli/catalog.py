"""`kdgat datasets` and `kdgat formats`: what the catalog holds and which capture formats are read."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kdgat.cli.common import CatalogOpt, DataRootOpt, OutputFormat, out, print_warning, user_errors


def datasets(
    data_root: DataRootOpt = None,
    catalog: CatalogOpt = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
) -> None:
    """List the catalog's datasets and whether their files exist under the data root."""
    from kdgat.data.catalog import dataset_status, load_catalog, resolve_data_root

    with user_errors():
        entries = load_catalog(catalog)
        root = resolve_data_root(data_root)
        rows = {
            name: {**dataset_status(e, root, name), "description": e.description, "one_trace": e.one_trace}
            for name, e in entries.items()
        }
    if not root.is_dir():  # every dataset reads "missing": say why, once
        print_warning(f"data root {root}: {'is not a folder' if root.exists() else 'no such folder'}")
    for row in rows.values():
        if row["problem"]:
            print_warning(row["problem"])
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"data_root": str(root), "datasets": rows}, indent=2))
        return
    table = Table(title=f"Datasets (data root: {root})")
    for col in ("name", "status", "files", "MB", "test scenarios", "description"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "partial": "yellow", "missing": "red", "invalid": "red"}
    for name, row in rows.items():
        table.add_row(
            name,
            Text(row["status"], style=style[row["status"]]),
            str(row["files"]),
            f"{row['bytes'] / 1e6:.1f}",
            ", ".join(row["test_scenarios"]) or "-",
            row["description"],
        )
    out.print(table)


def formats() -> None:
    """List the capture formats `kdgat ingest` reads (names for --format)."""
    from kdgat.data.formats import FORMATS

    table = Table(title="Capture formats (any of them may be .gz, .bz2, .xz or .zst compressed)")
    table.add_column("name")
    table.add_column("layout", overflow="fold")
    for name, fmt in FORMATS.items():
        table.add_row(name, fmt.description)
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("datasets")(datasets)
    app.command("formats")(formats)
