"""Reading standard input (`kdgat detect -`): PipeStream's blocks against a bare read of the same pipe.

A real capture (bench/ingest.py's DAGA sample, repeated to --mb megabytes) is written into a pipe
by `cat`; both sides read it in 64 KiB pipe reads and hand out blocks of --block-mb:

  kdgat      : PipeStream.head() then read(block) until the end (whole lines per block, the hash)
  baseline   : os.read(64 KiB) collected in a list and joined once per block

It prints MB/s and the ratio kdgat/baseline (time), median of --repeat runs each. PipeStream once
extended one bytes object per read, copying the whole pending block each time: 6.1x the baseline
on 81 MB (`--mb 100`), 1.3-2.8x since on the shared 2-core machine; the goal is a ratio under 2.

    python bench/pipe.py [--mb 200] [--block-mb 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import build_input  # noqa: E402

from kdgat.data.formats.stream import PipeStream  # noqa: E402


def read_pipe(path: Path, block: int, kind: str) -> tuple[float, int]:
    """Seconds to read ``path`` through a pipe, and the bytes handed out."""
    read_end, write_end = os.pipe()
    writer = subprocess.Popen(["cat", str(path)], stdout=write_end)
    os.close(write_end)
    started, total = time.perf_counter(), 0
    if kind == "kdgat":
        stream = PipeStream(read_end)
        stream.head()
        while chunk := stream.read(block):
            total += len(chunk)
    else:
        digest, pending, size = hashlib.sha256(), [], 0  # the hash PipeStream keeps too
        while chunk := os.read(read_end, 1 << 16):
            digest.update(chunk)
            pending.append(chunk)
            size += len(chunk)
            if size >= block:
                total += len(b"".join(pending))
                pending, size = [], 0
        total += len(b"".join(pending))
    seconds = time.perf_counter() - started
    writer.wait()
    os.close(read_end)
    return seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--block-mb", type=float, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    block = int(args.block_mb * (1 << 20))
    with tempfile.TemporaryDirectory() as tmp:
        path, rows = build_input("daga", args.mb, Path(tmp))
        size = path.stat().st_size
        seconds = {}
        for kind in ("baseline", "kdgat"):
            runs = [read_pipe(path, block, kind) for _ in range(args.repeat)]
            assert all(total == size for _, total in runs), (kind, [t for _, t in runs], size)
            seconds[kind] = statistics.median(s for s, _ in runs)
    print(f"pipe read of {size / 1e6:.0f} MB ({rows:,} rows), blocks of {args.block_mb:g} MB, median of {args.repeat}")
    print(f"{'reader':10s} {'seconds':>8s} {'MB/s':>8s} {'x baseline':>10s}")
    for kind, value in seconds.items():
        print(f"{kind:10s} {value:8.3f} {size / 1e6 / value:8.0f} {value / seconds['baseline']:10.2f}")


if __name__ == "__main__":
    main()
