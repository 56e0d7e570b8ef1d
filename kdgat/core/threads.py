"""How many CPU threads a stage uses: torch's intra-op pool and the numeric libraries' (BLAS, OpenMP).

Left alone, torch and OpenBLAS each size their pools from the machine's cores, not from what a
scheduler gave the task; on a shared 2-core machine 2 threads under load were 4x slower than 1 for
GATConv steps. Every stage calls :func:`set_threads` with the count it was given (``--threads``,
Nextflow's ``task.cpus``) before any numeric work.
"""

from __future__ import annotations

import os

from kdgat.core.errors import UsageError

THREADS_ENV = "KDGAT_THREADS"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which SLURM and containers set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """``threads``, else ``$KDGAT_THREADS``, else every core this process may use."""
    if threads is None:
        env = os.environ.get(THREADS_ENV)
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise UsageError(f"${THREADS_ENV}={env!r}: expected a whole number of threads") from None
    if threads is None:
        return available_cores()
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    return int(threads)


def set_threads(threads: int | None = None) -> int:
    """Size torch's and the numeric libraries' thread pools; returns the count used."""
    import torch
    from threadpoolctl import threadpool_limits

    count = resolve_threads(threads)
    torch.set_num_threads(count)
    threadpool_limits(limits=count)
    return count
