"""Readable statistics of a frames folder (what the demo and users look at first)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from kdgat.errors import KdgatError
from kdgat.manifest import read_manifest


def frame_statistics(frames_dir: str | Path) -> list[dict]:
    """Per split and scenario: files, frames, attack frames, attack share, distinct IDs, seconds."""
    frames_dir = Path(frames_dir)
    manifest = read_manifest(frames_dir)
    if manifest is None:
        raise KdgatError(f"{frames_dir}: no manifest.json (not an ingest output folder)")
    paths = [str(frames_dir / item["path"]) for item in manifest["outputs"]]
    table = ds.dataset(paths, format="parquet").to_table(
        columns=["split", "scenario", "can_id", "label", "timestamp", "source_file"]
    )
    table = table.set_column(0, "split", pc.cast(table["split"], pa.string()))
    table = table.set_column(1, "scenario", pc.cast(table["scenario"], pa.string()))
    table = table.set_column(5, "source_file", pc.cast(table["source_file"], pa.string()))
    grouped = table.group_by(["split", "scenario"]).aggregate(
        [
            ("source_file", "count_distinct"),
            ("can_id", "count"),
            ("label", "sum"),
            ("label", "count"),
            ("can_id", "count_distinct"),
            ("timestamp", "min"),
            ("timestamp", "max"),
        ]
    )
    rows = []
    for r in grouped.to_pylist():
        frames = r["can_id_count"]
        attack = r["label_sum"] or 0
        rows.append(
            {
                "split": r["split"],
                "scenario": r["scenario"],
                "files": r["source_file_count_distinct"],
                "frames": frames,
                "attack_frames": attack,
                "attack_share": attack / frames if frames and r["label_count"] else None,
                "labelled_frames": r["label_count"],
                "distinct_ids": r["can_id_count_distinct"],
            }
        )
    order = {"train": 0, "val": 1, "test": 2}
    return sorted(rows, key=lambda r: (order.get(r["split"], 3), r["scenario"]))
