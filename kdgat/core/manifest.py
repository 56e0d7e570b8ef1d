"""The stage manifest: the typed record every stage writes last into its output folder.

``manifest.json`` says what went in (with content hashes), the frozen config and its hash, package
versions, wall time and what came out. It is written last and removed first when a stage runs
again into the same folder (:func:`begin_output`), so its presence means the outputs it lists are
complete and belong together; the lake and the pipeline trust nothing else.
"""

from __future__ import annotations

import functools
import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from kdgat.core.atomic import atomic_write_text, clean_stale, ensure_folder
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.hashing import content_hash, sha256_file

MANIFEST_NAME = "manifest.json"
_PACKAGES = ("kdgat", "numpy", "pyarrow", "pydantic", "typer", "torch", "torch-geometric", "lightning")
Stage = Literal["ingest", "graphs", "train", "fuse", "evaluate", "lake", "report", "synth", "export", "detect"]


class FileEntry(BaseModel):
    """An input or output file. Stages may add fields (ingest: split, scenario, rows, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    path: str
    sha256: str | None = None


class Manifest(BaseModel):
    """What one stage run read, ran with and wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Stage
    created_at: str
    dataset: str | None = None
    inputs: list[FileEntry]
    config: dict[str, Any]
    config_hash: str
    versions: dict[str, str]
    wall_time_s: float
    outputs: list[FileEntry]
    summary: dict[str, Any] = {}

    def output_paths(self) -> list[str]:
        return [entry.path for entry in self.outputs]


def file_entry(
    path: str | Path, *, name: str | None = None, sha256: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An input or output record: ``name`` (default: the path as given) and the file's sha256 (``sha256``: the one
    of the bytes the stage read, where it read them earlier)."""
    return {"path": name or str(path), "sha256": sha256 or sha256_file(path), **fields}


def package_versions() -> dict[str, str]:
    """Python and the key packages' versions (a fresh dict; read once per process, ~10 ms)."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    versions = [("python", platform.python_version())]
    for name in _PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def refuse_other_output(outdir: str | Path, stage: Stage | Literal["pipeline"], option: str = "--out") -> None:
    """Before any work: a folder that holds another stage's output (its manifest says so) is not written into.

    The run would replace that manifest, and every later stage would refuse the output it vouched for (a
    training run, a graph store, a lake written over by a report)."""
    outdir = Path(outdir)
    previous = read_manifest(outdir) if outdir.is_dir() else None
    if previous is not None and previous.stage != stage:
        raise UsageError(
            f"{option} {outdir}: holds the output of `kdgat {previous.stage}`, which {stage} would overwrite; "
            "give another folder"
        )


def begin_output(outdir: str | Path) -> Path:
    """Prepare ``outdir`` for a stage run: create it, drop a dead writer's leftovers and the old manifest.

    The manifest goes first, so a run that dies half way never leaves an old manifest vouching for
    a mix of old and new files.
    """
    outdir = ensure_folder(outdir)
    clean_stale(outdir)
    (outdir / MANIFEST_NAME).unlink(missing_ok=True)
    return outdir


def write_manifest(
    outdir: str | Path,
    *,
    stage: Stage,
    inputs: list[dict[str, Any]],
    config: dict[str, Any],
    outputs: list[dict[str, Any]],
    wall_time_s: float,
    dataset: str | None = None,
    summary: dict[str, Any] | None = None,
) -> Manifest:
    """Write ``outdir/manifest.json`` (atomically); call it after every output is in place."""
    manifest = Manifest(
        stage=stage,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dataset=dataset,
        inputs=[FileEntry(**item) for item in inputs],
        config=config,
        config_hash=content_hash(config),
        versions=package_versions(),
        wall_time_s=round(wall_time_s, 3),
        outputs=[FileEntry(**item) for item in outputs],
        summary=summary or {},
    )
    atomic_write_text(Path(outdir) / MANIFEST_NAME, manifest.model_dump_json(indent=2) + "\n")
    return manifest


def require_finished(folder: str | Path, stages: Stage | tuple[Stage, ...], what: str) -> Manifest:
    """The manifest of a finished output of one of ``stages``, or one error line: a folder without one was left by a
    run that stopped half way (it may hold an earlier run's files beside the new run's), so nothing may read it as
    finished. ``what`` names the folder in the messages ("training run", "evaluation")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KdgatError(f"{folder}: no such {what} folder")
    manifest = read_manifest(folder)
    if manifest is None:
        raise KdgatError(
            f"{folder}: no {MANIFEST_NAME}, so the {what} did not finish (a stage writes it last); run it again"
        )
    if manifest.stage not in ((stages,) if isinstance(stages, str) else stages):
        raise KdgatError(f"{folder}: the output of a {manifest.stage} stage, not a {what}")
    return manifest


def read_manifest(outdir: str | Path) -> Manifest | None:
    """The folder's manifest, or None when there is none (the stage did not finish)."""
    path = Path(outdir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KdgatError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(data, dict):
        raise KdgatError(f"{path}: unreadable manifest: not a JSON object")
    # manifests of older versions kept stage-specific values at the top level
    known = set(Manifest.model_fields)
    summary = {**{k: v for k, v in data.items() if k not in known}, **(data.get("summary") or {})}
    try:
        return Manifest.model_validate({**{k: v for k, v in data.items() if k in known}, "summary": summary})
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise KdgatError(f"{path}: unreadable manifest: {where}: {problem['msg']}") from None
