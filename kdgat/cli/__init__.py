"""The `kdgat` command line: thin Typer commands over the stage functions.

One module per stage or command group (``kdgat train`` lives in :mod:`kdgat.cli.train` and calls
:func:`kdgat.stages.train.run`). Each command parses options, resolves config, calls one function and
maps a :class:`~kdgat.core.errors.KdgatError` to a one-line message and a non-zero exit.
"""

from __future__ import annotations

import signal
import sys
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
from kdgat.cli.common import out, print_error
from kdgat.core.signals import StopSignal, raise_on_stop_signals

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


def _click_error(name: str) -> type[Exception]:
    """A click exception class by name, from Typer's public BadParameter (Typer may vendor its own click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def _stopped(signum: int) -> None:
    name = signal.Signals(signum).name
    print_error(f"stopped by {name} before the end; nothing is left half-written; run the command again")
    sys.exit(128 + signum)


def run() -> None:
    """The ``kdgat`` console script: the app, with click's command-line errors (an unknown option, a value out
    of range, a missing argument) as one ``error:`` line and exit 2, like every other error of the tool, and a
    stop signal (Ctrl-C, SIGTERM, SIGUSR2, SIGHUP) as one line and exit 128 + the signal, after every atomic
    write has unwound."""
    usage_error, click_exception = _click_error("UsageError"), _click_error("ClickException")
    raise_on_stop_signals()
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `kdgat` or `kdgat lake` alone: the help, as before
            exc.show()
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx is not None else "kdgat"
        print_error(f"{' '.join(exc.format_message().split())} (see {where} --help)")
        sys.exit(2)
    except StopSignal as exc:
        _stopped(exc.signum)
    except typer.Abort:
        print_error("aborted")
        sys.exit(130)
    except click_exception as exc:
        print_error(" ".join(exc.format_message().split()))
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    run()
