"""The ``kdgat`` command in a fresh process, stopped at an exact point: what signal tests need."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def as_from_a_terminal() -> None:
    """``preexec_fn`` of a process a test sends Ctrl-C or a hang-up: their default dispositions, as a process
    started from a terminal has them. A test run in the background (``nohup make test &``, a CI runner without
    job control) passes SIGINT and SIGHUP on ignored, and kdgat keeps what its starter ignores."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def run_kdgat_patched(patch: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """The ``kdgat`` console script's function in a fresh process, after ``patch`` (Python run first: it makes the
    process send itself a signal at an exact point, which no timing can)."""
    code = f"import os, signal, sys\n{patch}\nsys.argv = ['kdgat', *{[str(a) for a in args]!r}]\n"
    code += "from kdgat.cli import run\nrun()\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=as_from_a_terminal)  # fmt: skip


def only_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def signalled_at(target: str, sig: str = "SIGTERM", *, after: bool = False) -> str:
    """Patch code for :func:`run_kdgat_patched`: the function (or method) ``target``, named by module and attribute
    path ("kdgat.stages.ingest:publish_files", "kdgat.detection.outputs:CsvSink.write"), sends the process ``sig``
    and then does its work (``after``: does its work, then sends it, so that what it wrote is there)."""
    module, _, attribute = target.partition(":")
    owner, _, name = attribute.rpartition(".")
    holder = f"_module.{owner}" if owner else "_module"
    body = (
        f"    done = _real(*args, **kwargs)\n    os.kill(os.getpid(), signal.{sig})\n    return done\n"
        if after
        else f"    os.kill(os.getpid(), signal.{sig})\n    return _real(*args, **kwargs)\n"
    )
    return (
        f"import {module} as _module\n"
        f"_real = {holder}.{name}\n"
        "def _signalled(*args, **kwargs):\n"
        f"{body}"
        f"{holder}.{name} = _signalled\n"
    )
