"""The cheap benchmarks still run against the code they measure (a bench that crashes measures nothing: bench/lake.py's
baseline once read a view the leaderboard no longer used). Their figures are printed, never asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize(
    ("script", "args", "last_line"),
    [
        ("lake.py", ["--runs", "14", "--repeat", "1"], "ratio leaderboard over raw parts / over compacted views:"),
        ("pipe.py", ["--mb", "2", "--block-mb", "0.5", "--repeat", "1"], "kdgat "),
    ],
)
def test_a_bench_runs_and_prints_its_ratio(script, args, last_line):
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(last_line), done.stdout
