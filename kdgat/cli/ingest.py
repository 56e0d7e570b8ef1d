"""`kdgat ingest`: raw captures -> canonical frame Parquet (:mod:`kdgat.stages.ingest`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from kdgat.cli.common import (
    BadRows,
    CatalogOpt,
    DataRootOpt,
    ThreadsOpt,
    err,
    out,
    print_warning,
    progress_line,
    user_errors,
)
from kdgat.cli.tables import ingest_table
from kdgat.core.errors import UsageError


def ingest(
    files: Annotated[
        Optional[list[Path]], typer.Argument(help="Capture files (instead of --dataset).", show_default=False)
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the frame Parquet files.")] = ...,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Catalog dataset to ingest.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Reader to use (see `kdgat formats`), or auto-detect.")
    ] = "auto",
    on_bad_rows: Annotated[
        BadRows,
        typer.Option(
            "--on-bad-rows",
            help="error: stop at the first bad row; skip: drop bad rows and record them in the manifest.",
        ),
    ] = BadRows.error,
    split: Annotated[str, typer.Option("--split", help="Split recorded for FILE inputs.")] = "test",
    scenario: Annotated[
        Optional[str], typer.Option("--scenario", help="Scenario recorded for FILE inputs (default: each file's stem).")
    ] = None,
    attack_type: Annotated[
        Optional[str],
        typer.Option(
            "--attack-type",
            help="Name of attack frames for FILE inputs whose format has none (default: from the file name).",
        ),
    ] = None,
    benign: Annotated[
        bool, typer.Option("--benign", help="FILE inputs are attack-free: label unlabelled frames 0.")
    ] = False,
    data_root: DataRootOpt = None,
    catalog: CatalogOpt = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="With --dataset: ingest the files that exist even if some catalog patterns match nothing.",
        ),
    ] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Convert raw captures to canonical frame Parquet (one file per capture) plus manifest.json."""
    from kdgat.data.capture import IngestOptions, sources_from_files
    from kdgat.data.catalog import dataset_sources, get_dataset, load_catalog, resolve_data_root
    from kdgat.stages import ingest as stage

    with user_errors():
        if bool(files) == bool(dataset):
            raise UsageError("give either capture FILEs or --dataset NAME (not both, not neither)")
        options = IngestOptions(format=fmt, on_bad_rows=on_bad_rows.value)
        one_trace = False
        if dataset:
            entry = get_dataset(load_catalog(catalog), dataset)
            sources = dataset_sources(dataset, entry, resolve_data_root(data_root), allow_missing=allow_missing)
            one_trace = entry.one_trace
            if fmt != "auto":
                sources = [replace(s, format=fmt) for s in sources]
        else:
            sources = sources_from_files(files, split=split, scenario=scenario, attack_type=attack_type, benign=benign)

        def progress(i: int, n: int, src) -> None:
            progress_line(f"[{i + 1}/{n}]", str(src.path))

        show = progress if err.is_terminal else None  # keep logs and pipes to results and errors
        manifest = stage.run(
            sources, out_dir, options, dataset=dataset, one_trace=one_trace, progress=show, threads=threads
        )
    out.print(ingest_table(manifest, out_dir))
    for warning in stage.doubts(manifest, out_dir / "manifest.json"):
        print_warning(warning)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("ingest")(ingest)
