"""Stop signals as exceptions, and the few steps that a stop must not cut in two.

SIGTERM (a scheduler's kill, preemption, Nextflow's task wrapper), SIGUSR2 (SLURM's warning before the
time limit) and SIGHUP (a closed terminal) end a process at once by default: no ``finally`` runs, so a
temporary file stays behind and no line says why the command ended; Ctrl-C's KeyboardInterrupt unwinds,
but Typer turns it into a silent exit 130. :func:`raise_on_stop_signals` (the ``kdgat`` command installs
it) makes all four raise :class:`StopSignal` wherever the program is: atomic writes remove their temporary
files, staged folders put the earlier one back, and the command prints one line and exits 128 + the
signal. Stages that stop more gently (a training run at the end of its batch, a live detector closing its
windows) install their own handlers for as long as they run.

:func:`uninterrupted` holds those signals over a short run of renames that belong together (an ingest's
files and its manifest, a detector's rows and their summary) and delivers them after.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# those the platform has (Windows lacks SIGUSR2 and SIGHUP)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR2", "SIGHUP") if hasattr(signal, n))


class StopSignal(BaseException):
    """A stop signal, raised where the program was. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` of the data path mistakes it for a failure it can handle."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def _raise(signum, _frame) -> None:
    raise StopSignal(signum)


def heard_stop_signals() -> list[int]:
    """The stop signals this process does not ignore: ``nohup`` starts it with SIGHUP ignored (a campaign must
    outlive the terminal), a shell's background job with SIGINT ignored. Every handler of them skips those."""
    return [sig for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]


def raise_on_stop_signals() -> None:
    """SIGINT, SIGTERM, SIGUSR2 and SIGHUP raise :class:`StopSignal` in the main thread from now on (those not
    ignored)."""
    for sig in heard_stop_signals():
        signal.signal(sig, _raise)


@contextmanager
def stop_signals_handled_by(handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler(signum, frame)`` takes the stop signals not ignored while the block runs, and the handlers in place
    before are back after it. The one way every stage installs its own (a training run stopping at the end of its
    batch, a live detector closing its windows, :func:`uninterrupted`). Main thread only: elsewhere Python cannot
    install a handler, nor does it run one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in heard_stop_signals()}
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGINT, SIGTERM, SIGUSR2 and SIGHUP while the block runs; the first one received is delivered
    to the handlers in place before when the block ends (an exception of the block's own wins). SIGKILL cannot
    be held."""
    received: list[int] = []
    with stop_signals_handled_by(lambda signum, _frame: received.append(signum)):
        yield
    if received:
        signal.raise_signal(received[0])
