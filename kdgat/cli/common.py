"""What every `kdgat` command module shares: the consoles, the error mapping, common options.

The command modules (one per stage or command group) import from here so that none imports another.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.text import Text

from kdgat.core.errors import KdgatError

# Messages and file names are printed literally: no markup, no emoji codes (a file named
# `train:fire:.csv` must not become an emoji), no highlighting. Styles come from Text objects.
# Pipes and CI logs get wide tables instead of rich's 80-column default.
_LITERAL = dict(markup=False, emoji=False, highlight=False)
out = Console(width=None if sys.stdout.isatty() else 160, **_LITERAL)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160, **_LITERAL)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


class ConfigFormat(str, Enum):
    yaml = "yaml"
    json = "json"


class BadRows(str, Enum):
    error = "error"
    skip = "skip"


class FailOn(str, Enum):
    alert = "alert"
    ood = "ood"


class SynthSize(str, Enum):
    small = "small"
    medium = "medium"
    large = "large"


class ModelKind(str, Enum):
    vgae = "vgae"
    gat = "gat"
    hgb = "hgb"
    novelty = "novelty"


class Scale(str, Enum):
    large = "large"
    small = "small"


class FusionMethod(str, Enum):
    dqn = "dqn"
    mlp = "mlp"
    weighted = "weighted"


def print_error(message: str) -> None:
    err.print(Text("error:", style="bold red"), Text(message), soft_wrap=True)


def print_warning(message: str) -> None:
    err.print(Text("warning:", style="bold yellow"), Text(message), soft_wrap=True)


def progress_line(step: str, message: str) -> None:
    """One plain progress line on stderr (``[2/8] message``): readable in a terminal and in a job log."""
    err.print(Text(step, style="dim"), Text(message), soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user-fixable errors into `error: ...` on stderr and a non-zero exit.

    An OSError that reaches here (a disk that fills up, a file removed under a running stage) is
    the environment's, not a bug: it is reported on one line with the file it names.
    """
    try:
        yield
    except KdgatError as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{where}{(exc.strerror or str(exc)).lower()}")
        raise typer.Exit(1) from None


DataRootOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data-root", help="Folder the catalog's dataset roots are relative to (default: $KDGAT_DATA_ROOT or ./data)."
    ),
]
TrackingUriOpt = Annotated[
    Optional[str],
    typer.Option(
        "--tracking-uri", help="MLflow store (default: sqlite in OUT); $MLFLOW_TRACKING_URI, when set, wins over it."
    ),
]
DatasetTagOpt = Annotated[Optional[str], typer.Option("--dataset", help="Dataset name for the MLflow tags.")]
AcceleratorOpt = Annotated[
    Optional[str],
    typer.Option(
        "--accelerator",
        help="Where the GNNs train: auto (a GPU if torch sees one), cpu, or gpu (stop at once, with the reason, "
        "when torch cannot use one). Default: $KDGAT_ACCELERATOR, else auto. Nextflow passes gpu where a task "
        "asks for a GPU.",
    ),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads for torch and the numeric libraries (default: $KDGAT_THREADS, else $OMP_NUM_THREADS, "
        "else every core this process may use). Nextflow passes the task's cpus.",
    ),
]
CatalogOpt = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--catalog", help="Extra dataset catalog YAML (repeatable); its entries add to or replace built-in ones."
    ),
]
