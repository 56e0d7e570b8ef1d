"""Run the I/O-and-parse half of a reader one block ahead on a worker thread.

Decompression, file reads and Arrow's CSV parser release the GIL, and so do
the numpy conversions of the previous block, so on two cores the two halves
overlap instead of taking turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
_END = object()


def prefetched(items: Iterable[T], work: Callable[[T], R]) -> Iterator[R]:
    """Yield ``work(item)`` for each item, computing the next one while the caller handles this one.

    A single worker runs the steps in order, so ``work`` may keep state.
    """
    source = iter(items)

    def step():
        item = next(source, _END)
        return _END if item is _END else work(item)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-reader") as pool:
        pending = pool.submit(step)
        while True:
            result = pending.result()
            if result is _END:
                return
            pending = pool.submit(step)
            yield result
