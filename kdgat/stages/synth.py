"""The synth stage: a synthetic dataset in the can-train-and-test layout, swapped in whole.

The captures are written into a staging folder beside the target and swapped in, so the target is
either the old dataset or the complete new one; an existing target is replaced only when it is empty
or carries the generator's marker (the user's files are never deleted).
"""

from __future__ import annotations

import time
from pathlib import Path

from kdgat.core.atomic import clean_stale, staged_folder
from kdgat.core.manifest import Manifest, file_entry, write_manifest
from kdgat.core.threads import set_threads
from kdgat.data.synthetic import MARKER, check_parameters, check_target, write_captures


def run(
    out: str | Path, seed: int = 0, size: str = "small", duration_s: float | None = None, *, threads: int | None = None
) -> Manifest:
    """Write the synthetic dataset under ``out``; the manifest's summary is the dataset's description."""
    set_threads(threads)
    started = time.perf_counter()
    check_parameters(seed, size, duration_s)
    out = Path(out).expanduser().absolute()
    check_target(out)
    clean_stale(out.parent)
    with staged_folder(out) as staging:
        summary = write_captures(staging, int(seed), size, duration_s)
        check_target(out)  # re-check: something may have appeared while we were generating
        manifest = write_manifest(
            staging,
            stage="synth",
            inputs=[],
            config={"seed": int(seed), "size": size, "duration_s": summary.duration_s},
            outputs=[file_entry(staging / f.path, name=f.path) for f in summary.files] + [{"path": MARKER}],
            wall_time_s=time.perf_counter() - started,
            dataset="synthetic",
            summary=summary.to_dict(),
        )
    return manifest
