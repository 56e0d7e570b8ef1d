"""`kdgat report`: a static HTML report from the lake (:mod:`kdgat.stages.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdgat.cli.common import ThreadsOpt, out, user_errors
from kdgat.cli.lake import LakeOpt


def report_command(
    lake: LakeOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for index.html and figures/.")],
    threads: ThreadsOpt = None,
) -> None:
    """Write a static HTML report with PNG figures from the lake."""
    from kdgat.stages import report

    with user_errors():
        manifest = report.run(lake, out_dir, threads=threads)
    out.print(f"report: {manifest.summary['index']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("report")(report_command)
