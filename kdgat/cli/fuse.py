"""`kdgat fuse`: learn per-window weights of a frozen VGAE and GAT (:mod:`kdgat.stages.fuse`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdgat.cli.common import (
    DatasetTagOpt,
    FusionMethod,
    Scale,
    ThreadsOpt,
    TrackingUriOpt,
    out,
    print_warning,
    user_errors,
)


def fuse(
    method: Annotated[FusionMethod, typer.Option("--method", help="dqn agent, or the mlp / weighted baselines.")] = ...,
    vgae: Annotated[Path, typer.Option("--vgae", help="Run directory of the VGAE.")] = ...,
    gat: Annotated[Path, typer.Option("--gat", help="Run directory of the GAT.")] = ...,
    graphs_dir: Annotated[Path, typer.Option("--graphs", help="Graph store both were trained on.")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = ...,
    scale: Annotated[Scale, typer.Option("--scale", "-s", help="DQN preset (large or small).")] = Scale.small,
    override: Annotated[list[str], typer.Option("--override", "-O", help="Override a key (repeatable).")] = [],
    tracking_uri: TrackingUriOpt = None,
    dataset: DatasetTagOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Learn per-window fusion weights of a frozen VGAE and GAT (decision: fused score vs a validation threshold)."""
    from kdgat.core.config import resolve_config
    from kdgat.stages import fuse as stage

    with user_errors():
        cfg = resolve_config("dqn", scale.value, "none", override)
        metrics = stage.run(
            cfg, method.value, vgae, gat, graphs_dir, out_dir, tracking_uri=tracking_uri, dataset=dataset,
            threads=threads,
        ).summary  # fmt: skip
    where = (
        f"fitted on {metrics['fit_windows']:,} of {metrics['fusion_windows']:,} held-out windows, chosen on the "
        f"other {metrics['selection_windows']:,}"
        if metrics["out_of_sample_selection"]
        else f"fitted and chosen on {metrics['fusion_windows']:,} held-out windows"
    )
    out.print(
        f"fusion {metrics['method']} {where} ({metrics['fusion_parameters']:,} parameters; "
        f"ensemble {metrics['ensemble_parameters']:,}) -> {out_dir}"
    )
    if not metrics["out_of_sample_selection"]:
        print_warning("half of the held-out windows holds one class only: the fusion was fitted and chosen on the "
                      "same windows, so its check against its members is in-sample")  # fmt: skip
    ranking = ", ".join(f"{k} {v:.4f}" for k, v in metrics["pr_auc_on_fusion_windows"].items())
    if metrics["fallback"]:
        print_warning(f"the fusion ranked the selection windows worse than its {metrics['fallback']} ({ranking}, "
                      f"PR-AUC): the ensemble scores with the {metrics['fallback']} alone")  # fmt: skip
    elif metrics["collapsed_to"]:
        print_warning(f"the fusion gives almost every window to the {metrics['collapsed_to']} ({ranking}, PR-AUC)")
    if note := stage.novel_alert_off(metrics):
        print_warning(note)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("fuse")(fuse)
