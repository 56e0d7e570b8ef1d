"""Datalake and analytics commands (`kdgat lake ...`, `leaderboard`, `kd-impact`, `compare`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from kdgat.cli.common import ThreadsOpt, out, user_errors

LAKE_ENV = "KDGAT_LAKE"

lake_app = typer.Typer(
    help="The datalake: record finished runs as Parquet, build the DuckDB views, query them.", no_args_is_help=True
)


class TableFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


LakeOpt = Annotated[
    Path,
    typer.Option("--lake", envvar=LAKE_ENV, help=f"Lake directory (default: ${LAKE_ENV}).", show_default=False),
]
FormatOpt = Annotated[
    TableFormat, typer.Option("--format", help="table for people; csv, json or markdown for scripts.")
]


def _show(table, fmt: TableFormat, title: str) -> None:
    from kdgat.lake.render import rich_table, to_text

    if fmt is TableFormat.table:
        out.print(rich_table(table, title, width=out.width))
    else:
        typer.echo(to_text(table, fmt.value))


@lake_app.command("append")
def lake_append(
    runs: Annotated[list[Path], typer.Option("--runs", help="A finished train, fuse or evaluate folder (repeatable).")],
    lake: LakeOpt,
    threads: ThreadsOpt = None,
) -> None:
    """Record finished runs; appending a run again replaces its rows."""
    from kdgat.core.threads import set_threads
    from kdgat.lake import append_runs

    with user_errors():
        set_threads(threads)
        ids = append_runs(runs, lake)
    for run_dir, run_id in zip(runs, ids, strict=True):
        out.print(f"{run_id}  <- {run_dir}", highlight=False)
    out.print(f"{len(ids)} run(s) appended to {lake}; `kdgat lake build --lake {lake}` updates the views")


@lake_app.command("build")
def lake_build(lake: LakeOpt, threads: ThreadsOpt = None) -> None:
    """Compact the appended runs into one Parquet file per table and recreate analytics.duckdb (views only)."""
    from kdgat.core.threads import set_threads
    from kdgat.lake import build_lake, query

    with user_errors():
        set_threads(threads)
        db = build_lake(lake)
        counts = query(lake, "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM metrics) AS metrics")
    row = counts.to_pylist()[0]
    out.print(f"{db}: {row['runs']} runs, {row['metrics']} metric rows", highlight=False)


@lake_app.command("query")
def lake_query(
    sql: Annotated[str, typer.Argument(help="SQL over the views (runs, metrics, ..., v_leaderboard, v_kd_impact).")],
    lake: LakeOpt,
    fmt: FormatOpt = TableFormat.table,
) -> None:
    """Run read-only SQL against the lake's views."""
    from kdgat.lake import query

    with user_errors():
        table = query(lake, sql)
    _show(table, fmt, "")


def leaderboard_command(
    lake: LakeOpt,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")] = None,
    scenarios: Annotated[
        bool, typer.Option("--scenarios", help="Test figures per test scenario (v_leaderboard_scenarios).")
    ] = False,
    fmt: FormatOpt = TableFormat.table,
) -> None:
    """Per dataset x model: seeds, validation and test F1 / PR-AUC / FPR (mean +- std over seeds), and the test
    figures of the run with the best validation F1 (nothing is selected on test)."""
    from kdgat.lake import leaderboard

    with user_errors():
        table = leaderboard(lake, dataset, scenarios=scenarios)
    what = "per test scenario" if scenarios else "test = mean over scenarios"
    _show(table, fmt, f"Leaderboard (mean and std over seeds; {what}; selected = best validation F1)")


def kd_impact_command(lake: LakeOpt, fmt: FormatOpt = TableFormat.table) -> None:
    """Small model with KD minus without KD, paired by seed (mean +- std), per dataset and model, teacher beside."""
    from kdgat.lake import kd_impact

    with user_errors():
        table = kd_impact(lake)
    _show(table, fmt, "Knowledge distillation impact (small + KD - small, paired by seed)")


def compare_command(
    first: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    second: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    lake: LakeOpt,
    fmt: FormatOpt = TableFormat.table,
) -> None:
    """Two runs side by side: run fields, config keys that differ, metric deltas (second - first)."""
    from kdgat.lake import compare_runs

    with user_errors():
        table = compare_runs(lake, first, second)
    _show(table, fmt, f"{first} (a) vs {second} (b)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.add_typer(lake_app, name="lake")
    app.command("leaderboard")(leaderboard_command)
    app.command("kd-impact")(kd_impact_command)
    app.command("compare")(compare_command)
