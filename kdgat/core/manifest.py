"""Stage manifests and atomic writes (the stage contract's bookkeeping).

Every stage ends by writing ``manifest.json``: what went in (with content
hashes), the frozen config and its hash, package versions, wall time and what
came out. A manifest is written last, so its presence means the outputs it
lists are complete.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
_PACKAGES = ("kdgat", "numpy", "pyarrow", "pydantic", "typer", "torch", "torch-geometric", "lightning")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_hash(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (sorted keys, compact)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same directory, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(
    outdir: str | Path,
    *,
    stage: str,
    inputs: list[dict[str, Any]],
    config: dict[str, Any],
    outputs: list[dict[str, Any]],
    wall_time_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    manifest = {
        "stage": stage,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "config": config,
        "config_hash": content_hash(config),
        "versions": package_versions(),
        "wall_time_s": round(wall_time_s, 3),
        "outputs": outputs,
        **(extra or {}),
    }
    atomic_write_text(Path(outdir) / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(outdir: str | Path) -> dict[str, Any] | None:
    path = Path(outdir) / MANIFEST_NAME
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
