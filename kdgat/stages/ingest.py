"""The ingest stage: raw captures -> canonical frame Parquet, one file per source.

All outputs of a run are written into a staging folder inside ``outdir`` and
moved into place only when every input has been read, so a bad input leaves
earlier results untouched and no partial file behind. The manifest is written
last.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from kdgat.core.atomic import check_output_folder, clean_stale
from kdgat.core.errors import UsageError
from kdgat.core.manifest import Manifest, refuse_other_output
from kdgat.core.publish import publish_output, staged_output
from kdgat.core.threads import set_threads
from kdgat.data.capture import IngestOptions, IngestSource, ingest_one
from kdgat.data.catalog import check_unique_outputs
from kdgat.data.frames import FRAME_SCHEMA


def run(
    sources: list[IngestSource],
    outdir: str | Path,
    options: IngestOptions | None = None,
    *,
    dataset: str | None = None,
    one_trace: bool = False,
    progress: Callable[[int, int, IngestSource], None] | None = None,
    threads: int | None = None,
) -> Manifest:
    """Ingest every source into ``outdir``; all-or-nothing, manifest written last. ``one_trace`` (the catalog's
    flag: every capture is one recording) is recorded for the graphs stage, which then splits on time."""
    set_threads(threads)
    options = options or IngestOptions()
    if not sources:
        raise UsageError("nothing to ingest: no input files")
    check_unique_outputs(sources)
    # before any work: the outputs an earlier ingest listed are replaced or removed, another stage's never
    refuse_other_output(outdir, "ingest")
    outdir = check_output_folder(outdir)
    started = time.perf_counter()
    with staged_output(outdir, "ingest") as staging:  # a failed first run leaves no folder
        clean_stale(outdir)
        outputs = []
        for i, src in enumerate(sources):
            if progress:
                progress(i, len(sources), src)
            relative = f"{src.output_name}.parquet"
            outputs.append({"path": relative, **ingest_one(src, staging / relative, options)})
        totals = {
            "rows": sum(o["rows"] for o in outputs),
            "attack_rows": sum(o["attack_rows"] for o in outputs),
            "skipped_rows": sum(o["skipped_rows"] for o in outputs),
        }
        # the files and the manifest that lists them go in place as one step no stop signal cuts: cut in between,
        # the folder would hold files no manifest lists, which the next run (reading the manifest) would not remove
        return publish_output(
            staging,
            outdir,
            stage="ingest",
            inputs=[{"path": o["source"], "sha256": o["source_sha256"]} for o in outputs],
            config={
                **options.model_dump(exclude={"block_size", "row_group_rows"}),
                "dataset": dataset,
                **({"one_trace": True} if one_trace else {}),
            },
            outputs=outputs,
            wall_time_s=time.perf_counter() - started,
            dataset=dataset,
            summary={
                "totals": totals,
                "frame_schema": FRAME_SCHEMA.metadata[b"kdgat.frame_schema_version"].decode(),
            },
        )


UNLABELLED = (
    "no labels, and not marked attack-free: its windows are neither trained on nor scored (if it is attack-free, "
    "mark it benign: true in the catalog, or pass --benign; else read it with a format that carries labels)"
)


def doubts(manifest: Manifest, manifest_path: Path) -> list[str]:
    """What reading each capture left out or found odd, one line each, named by its capture (the manifest holds the
    details): rows skipped, frames left out, clock steps back, and a capture whose frames carry no label at all."""
    from kdgat.data.capture import left_out_warning, skipped_rows_warning
    from kdgat.data.timing import clock_step_warning

    lines = []
    for item in manifest.outputs:
        labelled = item.unlabelled_rows < item.rows
        found = [
            skipped_rows_warning(
                item.skipped_rows, item.skipped_attack_rows, labelled, item.skipped_lines, str(manifest_path)
            ),
            left_out_warning(getattr(item, "left_out_frames", {}), getattr(item, "left_out_attack_rows", 0)),
            clock_step_warning(
                getattr(item, "backwards_timestamps", 0), getattr(item, "first_backwards_line", None), "line"
            ),
            UNLABELLED if item.rows and not labelled else None,
        ]
        lines += [f"{item.source}: {line}" for line in found if line]
    return lines
