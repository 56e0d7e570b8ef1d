"""The `kdgat` command line: thin Typer commands over the stage functions.

Each command parses options, resolves config, calls one function and maps a
:class:`~kdgat.core.errors.KdgatError` to a one-line message and a non-zero exit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from kdgat import __version__
from kdgat.cli.common import (
    BadRows,
    CatalogOpt,
    ConfigFormat,
    DataRootOpt,
    DatasetTagOpt,
    OutputFormat,
    SynthSize,
    TrackingUriOpt,
    err,
    out,
    user_errors,
)  # fmt: skip
from kdgat.cli.lake import register as register_lake
from kdgat.core.errors import KdgatError
from kdgat.cli.tables import evaluation_table, ingest_table, run_table, store_table

app = typer.Typer(
    name="kdgat",
    help="CAN-bus intrusion detection with graph neural networks (VGAE + GAT-JK + fusion, knowledge distillation).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the composed run configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


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


@config_app.command("show")
def config_show(
    model: Annotated[str, typer.Option("--model", "-m", help="vgae, gat or dqn.")] = "gat",
    scale: Annotated[str, typer.Option("--scale", "-s", help="large (teacher) or small (student).")] = "large",
    aux: Annotated[list[str], typer.Option("--aux", "-a", help="Auxiliary config, e.g. kd_standard (repeatable).")] = [
        "none"
    ],
    override: Annotated[
        list[str], typer.Option("--override", "-O", help="Override a key: -O section.key=value (repeatable).")
    ] = [],
    fmt: Annotated[ConfigFormat, typer.Option("--format", help="Output format.")] = ConfigFormat.yaml,
) -> None:
    """Print the resolved config (defaults -> model -> auxiliaries -> -O) and its content hash."""
    from kdgat.core.config import config_hash, config_to_json, config_to_yaml, resolve_config

    with user_errors():
        cfg = resolve_config(model, scale, aux, override)
    if fmt is ConfigFormat.json:
        typer.echo(json.dumps({"config_hash": config_hash(cfg), "config": json.loads(config_to_json(cfg))}, indent=2))
    else:
        typer.echo(f"# config_hash: {config_hash(cfg)}")
        typer.echo(config_to_yaml(cfg), nl=False)


@app.command("datasets")
def datasets(
    data_root: DataRootOpt = None,
    catalog: CatalogOpt = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
) -> None:
    """List the catalog's datasets and whether their files exist under the data root."""
    from kdgat.data.catalog import dataset_status, load_catalog, resolve_data_root

    with user_errors():
        entries = load_catalog(catalog)
        root = resolve_data_root(data_root)
        rows = {name: {**dataset_status(e, root), "description": e.description} for name, e in entries.items()}
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"data_root": str(root), "datasets": rows}, indent=2))
        return
    table = Table(title=f"Datasets (data root: {root})")
    for col in ("name", "status", "files", "MB", "test scenarios", "description"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "partial": "yellow", "missing": "red"}
    for name, row in rows.items():
        table.add_row(
            name,
            f"[{style[row['status']]}]{row['status']}[/]",
            str(row["files"]),
            f"{row['bytes'] / 1e6:.1f}",
            ", ".join(row["test_scenarios"]) or "-",
            row["description"],
        )
    out.print(table)


@app.command("formats")
def formats() -> None:
    """List the capture formats `kdgat ingest` reads (names for --format)."""
    from kdgat.data.formats import FORMATS

    table = Table(title="Capture formats (any of them may be .gz, .bz2, .xz or .zst compressed)")
    table.add_column("name")
    table.add_column("layout", overflow="fold")
    for name, fmt in FORMATS.items():
        table.add_row(name, fmt.description)
    out.print(table)


@app.command("ingest")
def ingest(
    files: Annotated[
        Optional[list[Path]], typer.Argument(help="Capture files (instead of --dataset).", show_default=False)
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the frame Parquet files.")] = ...,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Catalog dataset to ingest.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Reader to use (see `kdgat formats`), or auto-detect.")
    ] = "auto",
    on_bad_rows: Annotated[
        BadRows,
        typer.Option(
            "--on-bad-rows",
            help="error: stop at the first bad row; skip: drop bad rows and record them in the manifest.",
        ),
    ] = BadRows.error,
    split: Annotated[str, typer.Option("--split", help="Split recorded for FILE inputs.")] = "test",
    scenario: Annotated[
        Optional[str], typer.Option("--scenario", help="Scenario recorded for FILE inputs (default: each file's stem).")
    ] = None,
    attack_type: Annotated[
        Optional[str],
        typer.Option(
            "--attack-type",
            help="Name of attack frames for FILE inputs whose format has none (default: from the file name).",
        ),
    ] = None,
    benign: Annotated[
        bool, typer.Option("--benign", help="FILE inputs are attack-free: label unlabelled frames 0.")
    ] = False,
    data_root: DataRootOpt = None,
    catalog: CatalogOpt = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="With --dataset: ingest the files that exist even if some catalog patterns match nothing.",
        ),
    ] = False,
) -> None:
    """Convert raw captures to canonical frame Parquet (one file per capture) plus manifest.json."""
    from kdgat.data.catalog import dataset_sources, get_dataset, load_catalog, resolve_data_root
    from kdgat.stages.ingest import IngestOptions, run_ingest, sources_from_files

    with user_errors():
        if bool(files) == bool(dataset):
            raise KdgatError("give either capture FILEs or --dataset NAME (not both, not neither)")
        options = IngestOptions(format=fmt, on_bad_rows=on_bad_rows.value)
        if dataset:
            entry = get_dataset(load_catalog(catalog), dataset)
            sources = dataset_sources(dataset, entry, resolve_data_root(data_root), allow_missing=allow_missing)
            if fmt != "auto":
                sources = [replace(s, format=fmt) for s in sources]
        else:
            sources = sources_from_files(files, split=split, scenario=scenario, attack_type=attack_type, benign=benign)

        def progress(i: int, n: int, src) -> None:
            err.print(f"[dim][{i + 1}/{n}][/] {src.path}", highlight=False)

        show = progress if err.is_terminal else None  # keep logs and pipes to results and errors
        manifest = run_ingest(sources, out_dir, options, dataset=dataset, progress=show)
    out.print(ingest_table(manifest, out_dir))


@app.command("graphs")
def graphs(
    frames: Annotated[Path, typer.Option("--frames", help="An ingest output folder (frame Parquet + manifest).")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Graph store folder to write.")] = ...,
    like: Annotated[
        Optional[Path],
        typer.Option("--like", help="Existing store whose vocabulary, attack types, window and scaling to reuse."),
    ] = None,
    override: Annotated[
        list[str], typer.Option("--override", "-O", help="Override a key, e.g. -O preprocessing.stride=50.")
    ] = [],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the store is up to date.")] = False,
) -> None:
    """Cut frames into windows and build the graph store (train/val by time blocks, one part per test scenario)."""
    from kdgat.core.config import config_hash, resolve_config
    from kdgat.stages.graphs import run_graphs

    with user_errors():
        cfg = resolve_config("gat", "large", "none", override)

        def progress(i: int, n: int, item) -> None:
            err.print(f"[dim][{i + 1}/{n}][/] {item.relative}", highlight=False)

        meta = run_graphs(
            frames, out_dir, cfg.preprocessing, like=like, force=force, config_hash=config_hash(cfg),
            progress=progress if err.is_terminal else None,
        )  # fmt: skip
    out.print(store_table(meta, out_dir))
    if meta.get("timestamps_missing"):
        err.print(
            f"warning: {len(meta['timestamps_missing'])} capture(s) have no timestamps; their timing features "
            "are neutral and has_timestamps = 0: " + ", ".join(meta["timestamps_missing"]),
            highlight=False,
        )


class ModelKind(str, Enum):
    vgae = "vgae"
    gat = "gat"


class Scale(str, Enum):
    large = "large"
    small = "small"


@app.command("train")
def train(
    model: Annotated[ModelKind, typer.Option("--model", "-m", help="vgae (trained on benign graphs) or gat.")] = ...,
    scale: Annotated[Scale, typer.Option("--scale", "-s", help="large (teacher) or small (student).")] = ...,
    graphs_dir: Annotated[Path, typer.Option("--graphs", help="Graph store built by `kdgat graphs`.")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = ...,
    aux: Annotated[list[str], typer.Option("--aux", "-a", help="Auxiliary config, e.g. kd_standard.")] = ["none"],
    teacher: Annotated[
        Optional[Path], typer.Option("--teacher", help="Run directory of the large model to distil (with kd_standard).")
    ] = None,
    override: Annotated[list[str], typer.Option("--override", "-O", help="Override a key (repeatable).")] = [],
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue from OUT/checkpoints/last.ckpt if present.")
    ] = True,
    tracking_uri: TrackingUriOpt = None,
    dataset: DatasetTagOpt = None,
    curriculum: Annotated[
        Optional[Path],
        typer.Option("--curriculum", help="VGAE run whose difficulty scores drive the GAT's hard-sample curriculum."),
    ] = None,
) -> None:
    """Train one model on a graph store (Lightning; early stopping, best checkpoint, resumable)."""
    from kdgat.core.config import resolve_config
    from kdgat.stages.train import run_train

    with user_errors():
        cfg = resolve_config(model.value, scale.value, aux, override)
        metrics = run_train(
            cfg, graphs_dir, out_dir, teacher_dir=teacher, resume=resume, tracking_uri=tracking_uri, dataset=dataset,
            curriculum_vgae=curriculum,
        )  # fmt: skip
    out.print(run_table(metrics, out_dir))


class FusionMethod(str, Enum):
    dqn = "dqn"
    mlp = "mlp"
    weighted = "weighted"


@app.command("fuse")
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
) -> None:
    """Learn per-window fusion weights of a frozen VGAE and GAT (decision: fused score vs a validation threshold)."""
    from kdgat.core.config import resolve_config
    from kdgat.stages.fuse import run_fuse

    with user_errors():
        cfg = resolve_config("dqn", scale.value, "none", override)
        metrics = run_fuse(
            cfg, method.value, vgae, gat, graphs_dir, out_dir, tracking_uri=tracking_uri, dataset=dataset
        )
    out.print(
        f"fusion {metrics['method']} fitted on {metrics['train_windows']:,} windows "
        f"({metrics['fusion_parameters']:,} parameters; ensemble {metrics['ensemble_parameters']:,}) -> {out_dir}"
    )


class ThresholdMethod(str, Enum):
    f1 = "f1"
    youden = "youden"
    fpr = "fpr"


@app.command("evaluate")
def evaluate(
    runs: Annotated[list[Path], typer.Option("--runs", help="Run directories to evaluate (repeatable).")] = ...,
    graphs_dir: Annotated[Path, typer.Option("--graphs", help="Graph store with val and test parts.")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Evaluation output folder.")] = ...,
    method: Annotated[
        ThresholdMethod, typer.Option("--threshold", help="How the threshold is chosen on validation.")
    ] = ThresholdMethod.f1,
    explain: Annotated[
        int, typer.Option("--explain", min=0, help="Validation graphs explained per GAT run (GNNExplainer); 0 skips.")
    ] = 10,
    compile_models: Annotated[
        bool,
        typer.Option(
            "--compile", help="Score with torch.compile'd models: faster on large parts, tens of seconds to compile."
        ),
    ] = False,
    tracking_uri: TrackingUriOpt = None,
    dataset: DatasetTagOpt = None,
) -> None:
    """Metrics of every run on validation and every test scenario, thresholds chosen on validation."""
    from kdgat.stages.evaluate import run_evaluate

    with user_errors():
        document = run_evaluate(
            runs,
            graphs_dir,
            out_dir,
            method=method.value,
            explain=explain,
            compile_models=compile_models,
            tracking_uri=tracking_uri,
            dataset=dataset,
        )
    out.print(evaluation_table(document))


@app.command("synth")
def synth(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (can-train-and-test layout).")] = ...,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same files.")] = 0,
    size: Annotated[
        SynthSize, typer.Option("--size", help="small (seconds per file), medium or large.")
    ] = SynthSize.small,
    duration: Annotated[
        Optional[float], typer.Option("--duration", help="Seconds of traffic per file (overrides --size).")
    ] = None,
) -> None:
    """Generate synthetic CAN traffic with labelled attacks in the can-train-and-test layout."""
    from kdgat.data.synthetic import generate

    with user_errors():
        summary = generate(out_dir, seed=seed, size=size.value, duration_s=duration)
    data = summary.to_dict()
    table = Table(title=f"Synthetic dataset in {out_dir} (seed {seed})")
    for col, justify in (("file", "left"), ("attack kind", "left"), ("frames", "right"), ("attack frames", "right")):
        table.add_column(col, justify=justify)
    for item in data["files"]:
        table.add_row(item["path"], item["attack"], f"{item['rows']:,}", f"{item['attack_rows']:,}")
    out.print(table)


@app.command("pipeline")
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
    seed: Annotated[Optional[int], typer.Option("--seed", help="-O seed=N (training, fusion).")] = None,
    method: Annotated[FusionMethod, typer.Option("--fusion", help="Fusion of both ensembles.")] = FusionMethod.dqn,
    lake: Annotated[Optional[Path], typer.Option("--lake", help="Datalake folder (default: OUT/lake).")] = None,
    no_lake: Annotated[bool, typer.Option("--no-lake", help="Stop after evaluate (no lake, no report).")] = False,
    explain: Annotated[int, typer.Option("--explain", min=0, help="GNNExplainer graphs per GAT run.")] = 10,
    tracking_uri: TrackingUriOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Run every step, even cached ones.")] = False,
) -> None:
    """Run the whole chain on one machine (ingest -> graphs -> train x6 -> fuse x2 -> evaluate -> lake -> report).

    Steps whose inputs, arguments and upstream steps are unchanged since they last finished are skipped.
    """
    from kdgat.pipeline import PipelineOptions, PipelineRunner

    shorthand = {"training.max_epochs": epochs, "dqn.episodes": episodes, "seed": seed}
    overrides = [*override, *(f"{key}={value}" for key, value in shorthand.items() if value is not None)]
    options = PipelineOptions(
        data_root=data_root, catalog=catalog or [], overrides=overrides, fusion_method=method.value,
        lake_dir=lake, tracking_uri=tracking_uri, explain=explain, force=force, lake=not no_lake,
    )  # fmt: skip
    with user_errors():
        runner = PipelineRunner(datasets, out_dir, options, console=out)
        record = runner.run()
        for dataset in runner.datasets:
            out.print(evaluation_table(json.loads((runner.layout.eval(dataset) / "metrics.json").read_text())))
        if options.lake:
            from kdgat.lake import leaderboard
            from kdgat.lake.render import rich_table

            board = leaderboard(runner.layout.lake, dataset=None if len(runner.datasets) > 1 else runner.datasets[0])
            out.print(rich_table(board, title=f"Leaderboard ({runner.layout.lake})"))
            out.print(f"report: {runner.layout.report / 'index.html'}")
    ran = sum(r["status"] == "ran" for r in record)
    out.print(f"steps: {ran} ran, {len(record) - ran} cached; outputs under {out_dir}")


# Command groups that live in their own modules.
for _register in (register_lake,):
    _register(app)

if __name__ == "__main__":  # pragma: no cover
    app()
