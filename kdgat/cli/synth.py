"""`kdgat synth`: a synthetic dataset with labelled attacks (:mod:`kdgat.stages.synth`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kdgat.cli.common import SynthSize, ThreadsOpt, out, user_errors


def synth(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (can-train-and-test layout).")] = ...,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same files.")] = 0,
    size: Annotated[
        SynthSize, typer.Option("--size", help="small (seconds per file), medium or large.")
    ] = SynthSize.small,
    duration: Annotated[
        Optional[float], typer.Option("--duration", help="Seconds of traffic per file (overrides --size).")
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Generate synthetic CAN traffic with labelled attacks in the can-train-and-test layout."""
    from kdgat.data.synthetic import SynthSummary
    from kdgat.stages import synth as stage

    with user_errors():
        manifest = stage.run(out_dir, seed=seed, size=size.value, duration_s=duration, threads=threads)
        summary = SynthSummary.from_dict(manifest.summary)
    data = summary.to_dict()
    table = Table(title=f"Synthetic dataset in {out_dir} (seed {seed})")
    for col, justify in (("file", "left"), ("attack kind", "left"), ("frames", "right"), ("attack frames", "right")):
        table.add_column(col, justify=justify)
    for item in data["files"]:
        table.add_row(item["path"], item["attack"], f"{item['rows']:,}", f"{item['attack_rows']:,}")
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("synth")(synth)
