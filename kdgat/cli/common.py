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

from kdgat.core.errors import KdgatError

# Pipes and CI logs get wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


class ConfigFormat(str, Enum):
    yaml = "yaml"
    json = "json"


class BadRows(str, Enum):
    error = "error"
    skip = "skip"


class SynthSize(str, Enum):
    small = "small"
    medium = "medium"
    large = "large"


class ModelKind(str, Enum):
    vgae = "vgae"
    gat = "gat"


class Scale(str, Enum):
    large = "large"
    small = "small"


class FusionMethod(str, Enum):
    dqn = "dqn"
    mlp = "mlp"
    weighted = "weighted"


class ThresholdMethod(str, Enum):
    f1 = "f1"
    youden = "youden"
    fpr = "fpr"


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user-fixable errors into `error: ...` on stderr and a non-zero exit."""
    try:
        yield
    except KdgatError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


DataRootOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--data-root", help="Folder the catalog's dataset roots are relative to (default: $KDGAT_DATA_ROOT or ./data)."
    ),
]
TrackingUriOpt = Annotated[
    Optional[str],
    typer.Option("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite in OUT)."),
]
DatasetTagOpt = Annotated[Optional[str], typer.Option("--dataset", help="Dataset name for the MLflow tags.")]
CatalogOpt = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--catalog", help="Extra dataset catalog YAML (repeatable); its entries add to or replace built-in ones."
    ),
]
