"""The report stage: a static HTML page with figures, from the lake alone.

The figures are written into a staged folder that replaces ``figures/``, and ``index.html`` is
written last, atomically: an interrupted report never leaves a page pointing at half-written figures.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from kdgat.core.atomic import atomic_write_text, ensure_folder, staged_folder
from kdgat.core.errors import KdgatError
from kdgat.core.manifest import Manifest, begin_output, file_entry, refuse_other_output, write_manifest
from kdgat.core.threads import set_threads
from kdgat.lake.queries import connect
from kdgat.lake.store import current_generation
from kdgat.report import FIGURES, Figures, lake_counts, sections
from kdgat.report.page import esc, page

INDEX = "index.html"


def run(lake_dir: Path, out_dir: Path, *, threads: int | None = None) -> Manifest:
    """Write ``out_dir/index.html`` and ``out_dir/figures/*.png`` from the lake."""
    set_threads(threads)
    started = time.perf_counter()
    lake_dir, out_dir = Path(lake_dir), Path(out_dir)
    refuse_other_output(out_dir, "report")
    with connect(lake_dir) as con:
        counts = lake_counts(con)
        if counts["runs"] == 0:
            raise KdgatError(f"{lake_dir}: the lake has no runs; add some with `kdgat lake append`")
        ensure_folder(out_dir)  # only now: a lake that cannot be read leaves no empty folder behind
        with staged_folder(out_dir / FIGURES) as staging:
            content = sections(con, Figures(staging))
            begin_output(out_dir)  # only now, every figure drawn: a report that fails leaves the earlier one whole
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta = (f"Lake <code>{esc(lake_dir.resolve())}</code>: {counts['runs']} runs, {counts['evals']} evaluations, "
            f"{counts['datasets']} dataset(s). Generated {esc(generated)} by kdgat.")  # fmt: skip
    atomic_write_text(out_dir / INDEX, page("KD-GAT report", meta, content))
    figures = sorted((out_dir / FIGURES).glob("*.png"))
    generation = current_generation(lake_dir)
    return write_manifest(
        out_dir,
        stage="report",
        inputs=[file_entry(f) for f in sorted(generation.glob("*.parquet"))] if generation else [],
        config={},
        outputs=[{"path": INDEX}] + [{"path": f"{FIGURES}/{f.name}"} for f in figures],
        wall_time_s=time.perf_counter() - started,
        summary={"index": str(out_dir / INDEX), **counts},
    )
