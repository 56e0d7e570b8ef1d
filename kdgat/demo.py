"""The README's main command: every stage that exists, on a fresh synthetic dataset.

It deliberately goes through the same catalog entry and stage functions as a
real dataset (synth -> catalog `synthetic` -> ingest), so the demo exercises
the real code path, not a shortcut.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from kdgat.catalog import dataset_sources, get_dataset, load_catalog
from kdgat.config import config_hash, resolve_config
from kdgat.evaluate import run_evaluate
from kdgat.fuse_stage import run_fuse
from kdgat.graph_stage import run_graphs
from kdgat.ingest import IngestOptions, run_ingest
from kdgat.summary import frame_statistics
from kdgat.synth import generate
from kdgat.tables import evaluation_table, frames_table, store_table
from kdgat.train import run_train


def run_demo(
    out_dir: Path,
    *,
    seed: int = 0,
    size: str = "small",
    epochs: int = 15,
    episodes: int = 100,
    console: Console | None = None,
) -> dict:
    console = console or Console()
    out_dir = Path(out_dir)
    data_root = out_dir / "data"
    frames_dir = out_dir / "frames"
    timings = {}

    started = time.perf_counter()
    console.rule("[bold]1/6 synth[/]: synthetic vehicles with injected attacks")
    summary = generate(data_root / "synthetic", seed=seed, size=size).to_dict()
    timings["synth"] = time.perf_counter() - started
    console.print(f"{len(summary['files'])} capture files in {data_root / 'synthetic'}")

    started = time.perf_counter()
    console.rule("[bold]2/6 ingest[/]: captures -> canonical frame Parquet")
    sources = dataset_sources("synthetic", get_dataset(load_catalog(), "synthetic"), data_root)
    manifest = run_ingest(sources, frames_dir, IngestOptions(), dataset="synthetic")
    timings["ingest"] = time.perf_counter() - started
    console.print(f"{len(manifest['outputs'])} Parquet files, manifest: {frames_dir / 'manifest.json'}")

    started = time.perf_counter()
    console.rule("[bold]3/6 graphs[/]: windows -> graph store")
    cfg = resolve_config("gat", "large")
    store = run_graphs(frames_dir, out_dir / "graphs", cfg.preprocessing, config_hash=config_hash(cfg))
    timings["graphs"] = time.perf_counter() - started

    stats = frame_statistics(frames_dir)
    console.print(frames_table(stats, "Synthetic dataset: frames per split and scenario"))
    console.print(store_table(store, out_dir / "graphs"))

    started = time.perf_counter()
    console.rule("[bold]4/6 train[/]: teachers, students with KD, the no-KD ablation")
    runs = out_dir / "runs"
    uri = f"sqlite:///{(out_dir / 'mlruns.db').resolve()}"
    fast = [f"training.max_epochs={epochs}", "training.batch_size=128"]
    plan = [
        ("vgae", "large", "none", None),
        ("gat", "large", "none", None),
        ("vgae", "small", "kd_standard", "vgae_large"),
        ("gat", "small", "kd_standard", "gat_large"),
        ("gat", "small", "none", None),
    ]
    for model, scale, aux, teacher in plan:
        name = f"{model}_{scale}" + ("_kd" if aux != "none" else "")
        cfg = resolve_config(model, scale, aux, fast)
        metrics = run_train(
            cfg, out_dir / "graphs", runs / name, teacher_dir=runs / teacher if teacher else None,
            progress_bar=False, tracking_uri=uri, dataset="synthetic",
        )  # fmt: skip
        console.print(f"{name}: {metrics['parameters']:,} parameters, best val loss {metrics['best_val_loss']:.4f}")
    timings["train"] = time.perf_counter() - started

    started = time.perf_counter()
    console.rule("[bold]5/6 fuse[/]: DQN fusion of the students")
    fuse_cfg = resolve_config("dqn", "small", overrides=[f"dqn.episodes={episodes}"])
    run_fuse(
        fuse_cfg, "dqn", runs / "vgae_small_kd", runs / "gat_small_kd", out_dir / "graphs", runs / "fusion_dqn_small"
    )
    timings["fuse"] = time.perf_counter() - started

    started = time.perf_counter()
    console.rule("[bold]6/6 evaluate[/]: thresholds on validation, metrics per test scenario")
    evaluated = ["gat_large", "gat_small_kd", "gat_small", "vgae_large", "fusion_dqn_small"]
    document = run_evaluate([runs / name for name in evaluated], out_dir / "graphs", out_dir / "eval")
    timings["evaluate"] = time.perf_counter() - started
    console.print(evaluation_table(document))
    console.print(
        "stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + f"; outputs under {out_dir}"
    )
    return {"stats": stats, "timings": timings, "frames_dir": str(frames_dir), "store": store, "evaluation": document}
