"""`kdgat evaluate`: every run on validation and every test scenario (:mod:`kdgat.stages.evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kdgat.cli.common import DatasetTagOpt, ThreadsOpt, TrackingUriOpt, out, print_warning, progress_line, user_errors
from kdgat.cli.tables import evaluation_table
from kdgat.evaluation.policies import DEFAULT_POLICY


def evaluate(
    runs: Annotated[list[Path], typer.Option("--runs", help="Run directories to evaluate (repeatable).")] = ...,
    graphs_dir: Annotated[Path, typer.Option("--graphs", help="Graph store with val and test parts.")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Evaluation output folder.")] = ...,
    policy: Annotated[
        str,
        typer.Option(
            "--threshold",
            help="Validation threshold policy: margin (middle of the F1-optimal range), f1 (its upper edge), "
            "youden, or fpr:<rate> (the most sensitive threshold with benign FPR <= rate).",
        ),
    ] = DEFAULT_POLICY,
    explain: Annotated[
        int,
        typer.Option(
            "--explain", min=0, help="Validation graphs explained per GAT run with GNNExplainer (slow; off by default)."
        ),
    ] = 0,
    compile_models: Annotated[
        bool,
        typer.Option(
            "--compile", help="Score with torch.compile'd models: faster on large parts, tens of seconds to compile."
        ),
    ] = False,
    thresholds: Annotated[
        Optional[Path],
        typer.Option(
            "--thresholds",
            help="An earlier evaluation (folder or metrics.json) of the same runs: use its recorded thresholds "
            "(needed for a store built with --like, which has no validation part).",
        ),
    ] = None,
    scores: Annotated[
        bool, typer.Option("--scores", help="Also write scores.parquet: one row per scored window and run.")
    ] = False,
    tracking_uri: TrackingUriOpt = None,
    dataset: DatasetTagOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Metrics of every run on validation and every test scenario, thresholds chosen on validation."""
    from kdgat.stages import evaluate as stage

    with user_errors():
        manifest = stage.run(
            runs,
            graphs_dir,
            out_dir,
            policy=policy,
            explain=explain,
            compile_models=compile_models,
            tracking_uri=tracking_uri,
            dataset=dataset,
            progress=lambda message: progress_line("evaluate", message),
            threads=threads,
            thresholds=thresholds,
            scores=scores,
        )
    results = stage.read_results(out_dir)
    out.print(evaluation_table(results))
    for warning in fallback_warnings(results):
        print_warning(warning)
    for name in manifest.summary.get("unlabelled_parts", []):
        print_warning(f"{name}: no window of this part has a label, so none was scored (its captures carry no labels)")
    from kdgat.detection.ood import unlike_training

    for warning in unlike_training(manifest.summary.get("out_of_distribution"), "these runs"):
        print_warning(warning)


def fallback_warnings(results: dict) -> list[str]:
    """One line per run whose validation part held one class, so its policy had nothing to balance."""
    said = []
    for label, run in results["runs"].items():
        threshold, validation = run["threshold"], run.get("validation") or {}
        # fpr:<rate> is anchored on benign windows alone (it needs no attack window, but benign ones); a threshold
        # recorded by an earlier evaluation (--thresholds) was said there, and this store's validation did not choose it
        if not threshold.get("fallback") or threshold.get("recorded"):
            continue
        if validation.get("positives") == 0 and threshold.get("method") != "fpr":
            said.append(
                f"{label}: validation holds no attack window, so `{threshold['method']}` had nothing to balance: "
                "the threshold is just above the highest benign validation score; --threshold fpr:<rate> sets "
                "the false-alarm budget explicitly"
            )
        elif validation.get("negatives") == 0:
            said.append(f"{label}: validation holds no benign window: the threshold flags every validation window")
    return said


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("evaluate")(evaluate)
