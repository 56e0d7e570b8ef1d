"""`kdgat train`: one model on a graph store (:mod:`kdgat.stages.train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kdgat.cli.common import (
    AcceleratorOpt,
    DatasetTagOpt,
    ModelKind,
    Scale,
    ThreadsOpt,
    TrackingUriOpt,
    out,
    user_errors,
)
from kdgat.cli.tables import run_table
from kdgat.core.errors import UsageError


def train(
    model: Annotated[
        ModelKind,
        typer.Option(
            "--model",
            "-m",
            help="vgae (trained on benign graphs), gat, hgb (the classical yardstick) or novelty (the classical "
            "yardstick trained on benign windows only, read beside the VGAE).",
        ),
    ] = ...,
    scale: Annotated[
        Optional[Scale],
        typer.Option("--scale", "-s", help="large (teacher) or small (student); hgb and novelty have one size."),
    ] = None,
    graphs_dir: Annotated[Path, typer.Option("--graphs", help="Graph store built by `kdgat graphs`.")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = ...,
    aux: Annotated[list[str], typer.Option("--aux", "-a", help="Auxiliary config, e.g. kd_standard.")] = ["none"],
    teacher: Annotated[
        Optional[Path], typer.Option("--teacher", help="Run directory of the large model to distil (with kd_standard).")
    ] = None,
    override: Annotated[list[str], typer.Option("--override", "-O", help="Override a key (repeatable).")] = [],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Continue from the last checkpoint if present (OUT/checkpoints, or the --checkpoint-dir run key's).",
        ),
    ] = True,
    tracking_uri: TrackingUriOpt = None,
    dataset: DatasetTagOpt = None,
    threads: ThreadsOpt = None,
    accelerator: AcceleratorOpt = None,
    checkpoint_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint-dir",
            help="Keep checkpoints and the epoch log in DIR/<run key> (durable storage; the key is made of the "
            "dataset, config, graph store and teacher) instead of OUT/checkpoints, so that a retry in another "
            "OUT resumes from them.",
        ),
    ] = None,
) -> None:
    """Train one model on a graph store (Lightning; early stopping, best checkpoint, resumable)."""
    from kdgat.core.config import resolve_config
    from kdgat.stages import train as stage

    with user_errors():
        if scale is None and model not in (ModelKind.hgb, ModelKind.novelty):
            raise UsageError(f"--scale large|small is needed for a {model.value}")
        cfg = resolve_config(model.value, scale.value if scale else "large", aux, override)
        metrics = stage.run(
            cfg, graphs_dir, out_dir, teacher_dir=teacher, resume=resume, tracking_uri=tracking_uri, dataset=dataset,
            threads=threads, checkpoint_dir=checkpoint_dir, accelerator=accelerator,
        ).summary  # fmt: skip
    out.print(run_table(metrics, out_dir))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("train")(train)
