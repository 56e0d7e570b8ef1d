"""`kdgat pipeline`: the whole chain on one machine (:mod:`kdgat.pipeline`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kdgat.cli.common import (
    AcceleratorOpt,
    CatalogOpt,
    DataRootOpt,
    FusionMethod,
    ThreadsOpt,
    TrackingUriOpt,
    out,
    user_errors,
)
from kdgat.cli.tables import evaluation_table
from kdgat.evaluation.policies import BENIGN_POLICY, DEFAULT_POLICY


def pipeline(
    datasets: Annotated[list[str], typer.Option("--dataset", "-d", help="Catalog dataset (repeatable).")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Campaign folder (one subfolder per dataset).")] = ...,
    data_root: DataRootOpt = None,
    catalog: CatalogOpt = None,
    override: Annotated[
        list[str], typer.Option("--override", "-O", help="Override a key for every stage (repeatable).")
    ] = [],
    epochs: Annotated[
        Optional[int], typer.Option("--epochs", min=1, help="Shorthand for -O training.max_epochs=N.")
    ] = None,
    episodes: Annotated[Optional[int], typer.Option("--episodes", min=1, help="-O dqn.episodes=N.")] = None,
    seeds: Annotated[
        Optional[list[int]],
        typer.Option(
            "--seed",
            min=0,
            help="Seed of training, fusion and evaluation (repeatable: every seed gets its own runs under "
            "OUT/<dataset>/seed<N>; default: the presets' seed).",
        ),
    ] = None,
    method: Annotated[FusionMethod, typer.Option("--fusion", help="Fusion of both ensembles.")] = FusionMethod.dqn,
    lake: Annotated[Optional[Path], typer.Option("--lake", help="Datalake folder (default: OUT/lake).")] = None,
    no_lake: Annotated[
        bool, typer.Option("--no-lake", help="No lake and no report (evaluate and the detector export still run).")
    ] = False,
    explain: Annotated[
        int,
        typer.Option("--explain", min=0, help="GNNExplainer graphs per GAT run in evaluate (slow; off by default)."),
    ] = 0,
    policy: Annotated[
        str,
        typer.Option("--threshold", help="Validation threshold policy of evaluate: margin, f1, youden, fpr:<rate>."),
    ] = DEFAULT_POLICY,
    benign_policy: Annotated[
        str,
        typer.Option(
            "--benign-threshold",
            help="The policy for a dataset whose training captures hold no attack (its validation windows are all "
            "benign): fpr:<rate> on them.",
        ),
    ] = BENIGN_POLICY,
    tracking_uri: TrackingUriOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Run every step, even cached ones.")] = False,
    threads: ThreadsOpt = None,
    accelerator: AcceleratorOpt = None,
) -> None:
    """Run the whole chain on one machine (ingest -> graphs -> train x8 -> fuse x2 -> evaluate -> export -> lake ->
    report).

    Training, fusion and evaluation run once per --seed. Steps whose inputs, arguments and upstream
    steps are unchanged since they last finished are skipped. A dataset whose training captures hold no
    attack (your own vehicle's traffic) trains the VGAEs and the novelty yardstick only, and exports the
    student VGAE.
    """
    from kdgat.pipeline.runner import PipelineOptions, PipelineRunner
    from kdgat.stages.evaluate import read_results

    shorthand = {"training.max_epochs": epochs, "dqn.episodes": episodes}
    overrides = [*override, *(f"{key}={value}" for key, value in shorthand.items() if value is not None)]
    options = PipelineOptions(
        data_root=data_root, catalog=catalog or [], overrides=overrides, fusion_method=method.value,
        lake_dir=lake, tracking_uri=tracking_uri, explain=explain, threshold_policy=policy,
        benign_threshold_policy=benign_policy, force=force,
        lake=not no_lake, seeds=list(seeds or []), threads=threads, accelerator=accelerator,
    )  # fmt: skip
    with user_errors():
        runner = PipelineRunner(datasets, out_dir, options, console=out)
        record = runner.run()
        for dataset in runner.datasets:
            for seed in runner.seeds:
                where = f"{dataset}, seed {seed}"
                out.print(evaluation_table(read_results(runner.layout.eval(dataset, seed)), where))
        if options.lake:
            from kdgat.lake import leaderboard
            from kdgat.lake.render import rich_table

            board = leaderboard(runner.layout.lake, dataset=None if len(runner.datasets) > 1 else runner.datasets[0])
            out.print(rich_table(board, title=f"Leaderboard ({runner.layout.lake})", width=out.width))
            out.print(f"report: {runner.layout.report / 'index.html'}")
    counts = {status: sum(r["status"] == status for r in record) for status in ("ran", "cached", "skipped")}
    skipped = f", {counts['skipped']} skipped (no attack window in training)" if counts["skipped"] else ""
    out.print(f"steps: {counts['ran']} ran, {counts['cached']} cached{skipped}; outputs under {out_dir}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("pipeline")(pipeline)
