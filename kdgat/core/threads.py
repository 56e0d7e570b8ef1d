"""How many CPU threads a stage uses: torch's intra-op pool and the numeric libraries' (BLAS, OpenMP).

Left alone, torch and OpenBLAS each size their pools from the machine's cores, not from what a
scheduler gave the task; on a shared 2-core machine 2 threads under load were 4x slower than 1 for
GATConv steps. Every stage's ``run`` calls :func:`set_threads` with the count it was given
(``--threads``; Nextflow passes ``task.cpus``) before any numeric work, and DuckDB queries of the
lake use the same count (:func:`current_threads`).
"""

from __future__ import annotations

import os
import sys

from kdgat.core.errors import UsageError

THREADS_ENV = "KDGAT_THREADS"
_OMP_ENV = "OMP_NUM_THREADS"
_current: int | None = None


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which SLURM and containers set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _from_env(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"${name}={text!r}: expected a whole number of threads") from None


def resolve_threads(threads: int | None) -> int:
    """``threads``, else ``$KDGAT_THREADS``, else ``$OMP_NUM_THREADS``, else every core this process may use."""
    source = "--threads"
    if threads is None:
        for name in (THREADS_ENV, _OMP_ENV):
            threads = _from_env(name)
            if threads is not None:
                source = f"${name}"
                break
    if threads is None:
        return available_cores()
    if threads < 1:
        raise UsageError(f"{source} must be at least 1, got {threads}")
    return int(threads)


def set_threads(threads: int | None = None) -> int:
    """Size torch's and the numeric libraries' thread pools; returns the count used.

    torch is sized only when it is already imported (stages without models do not pay its import);
    ``$OMP_NUM_THREADS`` is set too, so a torch imported later starts with the same count.
    """
    global _current
    from threadpoolctl import threadpool_limits

    count = resolve_threads(threads)
    os.environ[_OMP_ENV] = str(count)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    threadpool_limits(limits=count)
    _current = count
    return count


def current_threads() -> int | None:
    """The count the last :func:`set_threads` chose in this process (None before any)."""
    return _current
