"""How long `kdgat` takes before it does anything: `--version`, `--help` and a command's `--help`.

Every call of the tool pays this (a script looping over captures, a Nextflow task, a user typing
`--help`), so it is measured against the interpreter's own start (`python -c pass`) in the same run,
and the heavy libraries loaded by `import kdgat.cli` are listed (none is the goal: a command imports
what it runs). Median of ``--repeat`` runs each.

    python bench/startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ["torch", "sklearn", "scipy", "pandas", "mlflow", "duckdb", "lightning", "torch_geometric", "matplotlib"]


def median_seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    python = sys.executable
    kdgat = str(Path(python).with_name("kdgat"))
    baseline = median_seconds([python, "-c", "pass"], args.repeat)
    rows = [
        ("python -c pass (baseline)", [python, "-c", "pass"]),
        ("kdgat --version", [kdgat, "--version"]),
        ("kdgat --help", [kdgat, "--help"]),
        ("kdgat detect --help", [kdgat, "detect", "--help"]),
        ("python -c 'import sklearn.metrics'", [python, "-c", "import sklearn.metrics"]),
        ("python -c 'import torch'", [python, "-c", "import torch"]),
    ]
    print(f"start-up, median of {args.repeat} runs ({sys.platform}, one thread)")
    print(f"{'command':40s} {'seconds':>8s} {'x baseline':>10s}")
    for name, command in rows:
        seconds = baseline if command == [python, "-c", "pass"] else median_seconds(command, args.repeat)
        print(f"{name:40s} {seconds:8.3f} {seconds / baseline:10.1f}")
    probe = f"import sys, kdgat.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    print(f"heavy libraries loaded by `import kdgat.cli`: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
    main()
