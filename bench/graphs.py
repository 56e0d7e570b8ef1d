"""Graph construction and batch assembly speed, against straightforward baselines in the same run.

  windows/s  : kdgat.data.windows.build_graphs on the DAGA clean capture (W=100, S=100 and S=50), one
               core (numpy runs single-threaded here), versus tests/support/reference_graphs.py, a
               per-window Python implementation of the same definition, on a slice of it
  peak MB    : resident memory of the process after building all windows of the capture
  stage      : `kdgat graphs` of the capture at stride 5 (20 windows per 100 frames) in a fresh process: its peak
               resident memory against the store it writes (on disk), the baseline no build can go under. A build
               that held a capture's graphs whole, twice, and a float64 copy of the training part for the feature
               statistics, peaked at 3.46x its store here (1,011 MB; 2.64x, 770 MB since; on 400k frames its
               anonymous memory went from 1,255 MB to 382 MB)
  batch      : kdgat.data.batching.assemble_batch of 64 shuffled graphs from a store part, versus
               torch_geometric Batch.from_data_list of the same graphs (as Data objects)

Goals: >= 100k windows/s per core; >= 50k graphs/s batch assembly.

    python bench/graphs.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from support.reference_graphs import reference_graphs  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"
CAPTURE = DATA / "daga-v40/clean/V40_03.can.csv.xz"


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def load_capture(tmp: Path):
    import pyarrow.parquet as pq

    from kdgat.data.capture import sources_from_files
    from kdgat.data.frames import frame_arrays
    from kdgat.data.vocab import Vocabulary, count_keys
    from kdgat.stages.ingest import run as run_ingest

    manifest = run_ingest(sources_from_files([CAPTURE], split="train", scenario="train"), tmp / "frames")
    keys, data, labels, _ = frame_arrays(pq.read_table(tmp / "frames" / manifest.outputs[0].path))
    vocab = Vocabulary.from_counts(*count_keys([keys]))
    return tmp / "frames", vocab.lookup(keys), data, labels, vocab.size


def stage_memory(frames: Path, out: Path) -> None:
    """Peak resident memory of `kdgat graphs` at stride 5 against the size of the store it writes."""
    import os
    import subprocess

    kdgat = str(Path(sys.executable).with_name("kdgat"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    command = [kdgat, "graphs", "--frames", str(frames), "--out", str(out), "-O", "preprocessing.stride=5",
               "--threads", "1"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - started
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    store = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(
        f"kdgat graphs, stride 5: {seconds:.1f} s, peak resident {peak:.0f} MB, store {store:.0f} MB on disk, "
        f"ratio {peak / store:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch
    from torch_geometric.data import Batch

    from kdgat.core.config import resolve_config
    from kdgat.data.batching import assemble_batch
    from kdgat.data.store import open_store
    from kdgat.data.windows import build_graphs
    from kdgat.stages.graphs import run as run_graphs

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        frames, ids, data, labels, vocab = load_capture(Path(tmp))
        print(f"capture: {CAPTURE.name}, {len(ids):,} frames, vocabulary {vocab}")
        print(f"{'W/S':>8s} {'windows':>9s} {'kdgat win/s':>12s} {'reference win/s':>16s} {'speed-up':>9s}")
        n_ref = 20_000  # frames given to the slow reference
        for window, stride in ((100, 100), (100, 50)):
            seconds, graphs = best(
                lambda w=window, s=stride: build_graphs(ids, data, labels, None, window=w, stride=s, vocab_size=vocab),
                args.repeat,
            )
            ref_seconds, ref = best(
                lambda w=window, s=stride, n=n_ref: reference_graphs(ids[:n], data[:n], labels[:n], None, w, s), 1
            )
            ours, theirs = graphs.num_graphs / seconds, len(ref) / ref_seconds
            print(f"{window}/{stride:<4d} {graphs.num_graphs:9,d} {ours:12,.0f} {theirs:16,.0f} {ours / theirs:8.1f}x")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak resident memory: {peak:.0f} MB")

        stage_memory(frames, Path(tmp) / "store5")

        cfg = resolve_config("gat", "large").preprocessing
        run_graphs(frames, Path(tmp) / "store", cfg)
        part = open_store(Path(tmp) / "store").part("train")
        rng = np.random.default_rng(0)
        batches = [rng.choice(part.num_graphs, 64, replace=False) for _ in range(200)]
        seconds, _ = best(lambda: [assemble_batch(part, b) for b in batches], args.repeat)
        data_lists = [[part.graph(int(i)) for i in b] for b in batches]
        base_seconds, _ = best(lambda: [Batch.from_data_list(d) for d in data_lists], args.repeat)
        graphs_total = 64 * len(batches)
        ours, theirs = graphs_total / seconds, graphs_total / base_seconds
        print(f"batch assembly (batch 64, {part.num_graphs:,} graphs in part): kdgat {ours:,.0f} graphs/s, "
              f"Batch.from_data_list {theirs:,.0f} graphs/s, ratio {ours / theirs:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
