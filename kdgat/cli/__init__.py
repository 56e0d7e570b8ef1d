"""The `kdgat` command line: thin Typer commands over the stage functions.

One module per stage or command group (``kdgat train`` lives in :mod:`kdgat.cli.train` and calls
:func:`kdgat.stages.train.run`). Each command parses options, resolves config, calls one function and
maps a :class:`~kdgat.core.errors.KdgatError` to a one-line message and a non-zero exit.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kdgat import __version__
from kdgat.cli import (
    catalog,
    config,
    detect,
    evaluate,
    export,
    fuse,
    graphs,
    ingest,
    lake,
    pipeline,
    report,
    synth,
    train,
)
from kdgat.cli.common import out

app = typer.Typer(
    name="kdgat",
    help="CAN-bus intrusion detection with graph neural networks (VGAE + GAT-JK + fusion, knowledge distillation).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"kdgat {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """CAN-bus intrusion detection with graph neural networks."""


for _module in (config, catalog, ingest, graphs, train, fuse, evaluate, export, detect, synth, pipeline, lake, report):
    _module.register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
