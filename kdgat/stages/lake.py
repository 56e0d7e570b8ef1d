"""The lake stage: append finished runs to the Parquet datalake and rebuild the DuckDB views.

This is what the pipeline's last step runs. ``kdgat lake append`` and ``kdgat lake build`` call the
two halves separately (any number of appenders may run at once; one build compacts them all).
"""

from __future__ import annotations

import time
from pathlib import Path

from kdgat.core.manifest import MANIFEST_NAME, Manifest, begin_output, file_entry, write_manifest
from kdgat.core.threads import set_threads
from kdgat.lake import DB_NAME, append_runs, build_lake
from kdgat.lake.store import current_generation


def run(run_dirs: list[Path], lake_dir: Path, *, threads: int | None = None) -> Manifest:
    """Append ``run_dirs`` (train, fuse and evaluate folders) to the lake and rebuild its views."""
    set_threads(threads)
    started = time.perf_counter()
    lake_dir = Path(lake_dir)
    inputs = [file_entry(Path(d) / MANIFEST_NAME) for d in run_dirs]
    run_ids = append_runs([Path(d) for d in run_dirs], lake_dir)
    begin_output(lake_dir)
    build_lake(lake_dir)
    generation = current_generation(lake_dir)
    outputs = [file_entry(f, name=str(f.relative_to(lake_dir))) for f in sorted(generation.glob("*.parquet"))]
    return write_manifest(
        lake_dir,
        stage="lake",
        inputs=inputs,
        config={},
        outputs=[*outputs, {"path": DB_NAME}],
        wall_time_s=time.perf_counter() - started,
        summary={"run_ids": run_ids},
    )
