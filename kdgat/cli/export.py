"""`kdgat export`: trained runs + their evaluation -> a detector bundle (:mod:`kdgat.stages.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kdgat.cli.common import ThreadsOpt, out, user_errors
from kdgat.cli.tables import export_table


def export(
    runs: Annotated[
        list[Path],
        typer.Option("--run", help="Training or fusion run folder (repeatable; the first is the default detector)."),
    ] = ...,
    evaluation: Annotated[
        Path, typer.Option("--eval", help="The evaluation of these runs (folder or metrics.json): their thresholds.")
    ] = ...,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Bundle folder to write (replaced when complete).")
    ] = ...,
    graphs_dir: Annotated[
        Optional[Path],
        typer.Option("--graphs", help="The training store (default: the one in the first run's manifest)."),
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Pack trained runs into one self-describing detector bundle for `kdgat detect` (no store needed)."""
    from kdgat.stages import export as stage

    with user_errors():
        summary = stage.run(runs, out_dir, evaluation=evaluation, graphs_dir=graphs_dir, threads=threads).summary
    out.print(export_table(summary, out_dir))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("export")(export)
