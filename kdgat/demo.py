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
from kdgat.graph_stage import run_graphs
from kdgat.ingest import IngestOptions, run_ingest
from kdgat.summary import frame_statistics
from kdgat.synth import generate
from kdgat.tables import frames_table, store_table


def run_demo(out_dir: Path, *, seed: int = 0, size: str = "small", console: Console | None = None) -> dict:
    console = console or Console()
    out_dir = Path(out_dir)
    data_root = out_dir / "data"
    frames_dir = out_dir / "frames"
    timings = {}

    started = time.perf_counter()
    console.rule("[bold]1/3 synth[/]: synthetic vehicles with injected attacks")
    summary = generate(data_root / "synthetic", seed=seed, size=size).to_dict()
    timings["synth"] = time.perf_counter() - started
    console.print(f"{len(summary['files'])} capture files in {data_root / 'synthetic'}")

    started = time.perf_counter()
    console.rule("[bold]2/3 ingest[/]: captures -> canonical frame Parquet")
    sources = dataset_sources("synthetic", get_dataset(load_catalog(), "synthetic"), data_root)
    manifest = run_ingest(sources, frames_dir, IngestOptions(), dataset="synthetic")
    timings["ingest"] = time.perf_counter() - started
    console.print(f"{len(manifest['outputs'])} Parquet files, manifest: {frames_dir / 'manifest.json'}")

    started = time.perf_counter()
    console.rule("[bold]3/3 graphs[/]: windows -> graph store")
    cfg = resolve_config("gat", "large")
    store = run_graphs(frames_dir, out_dir / "graphs", cfg.preprocessing, config_hash=config_hash(cfg))
    timings["graphs"] = time.perf_counter() - started

    stats = frame_statistics(frames_dir)
    console.print(frames_table(stats, "Synthetic dataset: frames per split and scenario"))
    console.print(store_table(store, out_dir / "graphs"))
    console.print(
        "stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + f"; outputs under {out_dir}"
    )
    return {"stats": stats, "timings": timings, "frames_dir": str(frames_dir), "store": store}
