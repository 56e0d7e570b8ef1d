"""Ingest throughput per capture format, against a bare pyarrow baseline measured in the same run.

For each format, a real capture from ../shared/data is decompressed and its data
rows repeated until the file reaches --mb megabytes (uncompressed CSV/text),
then two things run in fresh subprocesses (so peak memory is per measurement):

  kdgat      : `kdgat ingest FILE --format NAME` (parse, validate, convert, write zstd Parquet)
  baseline   : pyarrow.csv.read_csv(FILE) + pyarrow.parquet.write_table(zstd) of the same file; for the
               line formats (no one-call pyarrow reader) the same with each line read as one text column,
               i.e. reading and storing the bytes without parsing them

It prints MB/s, rows/s, peak RSS and the ratio kdgat/baseline (time). Goals: >= 300 MB/s for
can-train-and-test and DAGA, and ratio <= 2.0.

    python bench/ingest.py [--mb 200] [--repeat 3] [--formats can-train-and-test,daga]
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLES = {
    "can-train-and-test": "can-train-and-test/set_01/train_01/DoS-1.csv.xz",
    "daga": "daga-v40/infected/DenialOfService/lowestID_V40_03.can.csv.xz",
    "road": "road/attacks/correlated_signal_attack_2.csv.xz",
    "ciciov2024": "ciciov2024/decimal_benign.csv.xz",
    "j1939-csv": "j1939/labeled_TSC1.csv.xz",
    "candump-l": "crysys/S-1-1-malicious-CONST-msg-mod-0x410-0.4-0.6.log.xz",
    "candump": "j1939/normal.log.xz",
    "hcrl-txt": "otids/Attack_free_dataset_10k.txt.xz",
    "crysys-txt": "crysys/S-1-1-orig.csv.xz",
}
CSV_WITH_HEADER = {"can-train-and-test", "daga", "road", "ciciov2024", "j1939-csv"}


def build_input(fmt: str, target_mb: float, workdir: Path) -> tuple[Path, int]:
    """Decompress the sample and repeat its data rows to about target_mb; returns path and row count."""
    raw = lzma.decompress((DATA / SAMPLES[fmt]).read_bytes())
    lines = raw.splitlines(keepends=True)
    header, body = (lines[:1], lines[1:]) if fmt in CSV_WITH_HEADER else ([], lines)
    body = [line for line in body if line.strip()]
    if not body[-1].endswith(b"\n"):
        body[-1] += b"\n"
    body_bytes = b"".join(body)
    copies = max(1, int(target_mb * 1e6 // len(body_bytes)))
    path = workdir / f"{fmt}.txt"
    with open(path, "wb") as handle:
        handle.writelines(header)
        for _ in range(copies):
            handle.write(body_bytes)
    return path, copies * len(body)


def _child(kind: str, fmt: str, path: str, out: str) -> None:
    """Runs in a fresh interpreter: one measurement, printed as JSON."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from kdgat.data.capture import IngestOptions, sources_from_files
    from kdgat.stages.ingest import run as run_ingest

    started = time.perf_counter()  # imports excluded: they are paid once per process
    if kind == "kdgat":
        run_ingest(sources_from_files([Path(path)]), out, IngestOptions(format=fmt))
    elif fmt in CSV_WITH_HEADER:
        table = pacsv.read_csv(path)
        pq.write_table(table, Path(out) / "baseline.parquet", compression="zstd")
    else:  # a line format: its lines read as one text column (a separator no line holds), stored as they are
        options = pacsv.ReadOptions(column_names=["line"], block_size=4 << 20)
        table = pacsv.read_csv(path, read_options=options, parse_options=pacsv.ParseOptions(delimiter="\x01",
                               quote_char=False))  # fmt: skip
        pq.write_table(table, Path(out) / "baseline.parquet", compression="zstd")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def measure(kind: str, fmt: str, path: Path, repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", kind, fmt, str(path), out],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="uncompressed input size per format (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    parser.add_argument("--formats", default=",".join(SAMPLES), help="comma list of formats")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    print(f"cpus={os.cpu_count()} input≈{args.mb:.0f} MB per format, best of {args.repeat}")
    columns = [("format", 20), ("MB", 7), ("rows", 11), ("kdgat MB/s", 10), ("rows/s", 11), ("peak MB", 8)]
    columns += [("base MB/s", 9), ("base peak", 9), ("ratio", 6)]
    header = " ".join(f"{name:{'<' if name == 'format' else '>'}{width}s}" for name, width in columns)
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            path, rows = build_input(fmt, args.mb, Path(tmp))
            size_mb = path.stat().st_size / 1e6
            ours = measure("kdgat", fmt, path, args.repeat)
            rate, row_rate = size_mb / ours["seconds"], rows / ours["seconds"]
            line = f"{fmt:20s} {size_mb:7.1f} {rows:11,d} {rate:10.1f} {row_rate:11,.0f} {ours['peak_mb']:8.0f}"
            base = measure("baseline", fmt, path, args.repeat)
            line += f" {size_mb / base['seconds']:9.1f} {base['peak_mb']:9.0f} {ours['seconds'] / base['seconds']:6.2f}"
            print(line, flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
