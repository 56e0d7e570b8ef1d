"""`kdgat detect` speed: live detection, scoring, window construction and memory, teacher vs student.

Models: trained for one epoch on DAGA V40 (speed does not depend on the weights), evaluated for
their thresholds and exported as two bundles: the teacher ensemble (large VGAE + large GAT + DQN
fusion) and the student ensemble (small VGAE + small GAT + DQN fusion).

  live        : the live path (incremental windows, every window scored as it closes, verdicts as
                JSON lines) fed by a replay of the DAGA clean capture paced at 9,000 frames/s (2x a
                saturated 500 kbit/s bus): frames/s achieved and frame-to-verdict latency p50 / p99
                (from the time a frame was due to the time its window's verdict was written)
  scoring     : Detector.score over a part's windows at batch 1024 (graphs/s), eager and compiled
  windows     : build_graphs (batch) vs WindowStream fed 64k-frame blocks vs WindowStream fed frame by
                frame, windows/s on one core, W=100 and S=100/10/1
  memory      : `kdgat detect` (student, file mode) on a ~1 GB capture; peak resident memory

Goals (issue 14): student ensemble >= 9k frames/s at stride 10 with p99 < 10 ms; student GAT >= 20k
graphs/s on 2 threads; >= 100k windows/s per core, incremental not slower per window than batch;
bounded memory. Ratios are measured in the same run; the 2-core machine is shared, so compare
within a run.

    python bench/detect.py [--seconds 10] [--no-compile] [--no-memory] [--gb 1.0]
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
CAPTURE = DATA / "daga-v40/clean/V40_03.can.csv.xz"
TARGET_RATE = 9_000


def prepare(root: Path, models: bool = True) -> dict[str, Path]:
    """DAGA store, one-epoch teacher and student ensembles, their evaluation, two bundles (``models`` False: the
    store alone, all the windows table reads)."""
    from kdgat.core.config import resolve_config
    from kdgat.data.catalog import dataset_sources, load_catalog
    from kdgat.stages.evaluate import run as run_evaluate
    from kdgat.stages.export import run as run_export
    from kdgat.stages.fuse import run as run_fuse
    from kdgat.stages.graphs import run as run_graphs
    from kdgat.stages.ingest import run as run_ingest
    from kdgat.stages.train import run as run_train

    uri = f"sqlite:///{root}/mlruns.db"
    run_ingest(dataset_sources("daga_v40", load_catalog()["daga_v40"], DATA), root / "frames", dataset="daga_v40")
    run_graphs(root / "frames", root / "graphs", resolve_config("gat", "large").preprocessing)
    bundles = {}
    for scale in ("large", "small") if models else ():
        runs = root / "runs" / scale
        for kind in ("vgae", "gat"):
            cfg = resolve_config(kind, scale, overrides=["training.max_epochs=1", "training.batch_size=256"])
            run_train(cfg, root / "graphs", runs / kind, progress_bar=False, tracking_uri=uri)
        cfg = resolve_config("dqn", scale, overrides=["dqn.episodes=5"])
        run_fuse(cfg, "dqn", runs / "vgae", runs / "gat", root / "graphs", runs / "fusion", tracking_uri=uri)
        run_evaluate([runs / "fusion", runs / "gat"], root / "graphs", runs / "eval", tracking_uri=uri)
        run_export([runs / "fusion", runs / "gat"], root / f"bundle_{scale}", evaluation=runs / "eval")
        run_export([runs / "fusion"], root / f"ensemble_{scale}", evaluation=runs / "eval")  # the ensemble alone
        bundles[scale] = root / f"bundle_{scale}"
        bundles[f"ensemble_{scale}"] = root / f"ensemble_{scale}"
    return bundles


class Lines:
    """A text sink that counts lines (the JSON lines of the live path are built and written as usual)."""

    def __init__(self):
        self.lines = 0

    def write(self, text: str) -> None:
        self.lines += text.count("\n")

    def flush(self) -> None:
        pass


def live(bundle: Path, stride: int, speed: float, seconds: float) -> dict:
    """One replay of the DAGA clean capture through the live path; the file summary."""
    from kdgat.detection.outputs import StdoutSink
    from kdgat.stages import detect as stage

    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        manifest = stage.run([CAPTURE], bundle, replay=True, speed=speed, stride=stride,
                             stop=stop, sink=StdoutSink(Lines()))  # fmt: skip
    finally:
        timer.cancel()
    return manifest.summary["files"][0]


def native_rate() -> float:
    from kdgat.detection.sources import read_frames

    blocks = []
    read_frames(CAPTURE, blocks.append)
    t = np.concatenate([b.timestamps for b in blocks])
    return len(t) / (t[-1] - t[0])


def live_table(bundles: dict[str, Path], seconds: float) -> None:
    rate = native_rate()
    print(f"\nlive path: {CAPTURE.name} (recorded at {rate:,.0f} frames/s) replayed at {TARGET_RATE:,} frames/s, "
          f"1 scoring thread (the live default), {seconds:.0f} s per row")  # fmt: skip
    print(
        "(frames/s counts from the detector's start; 'keeps up': frames/s within 5% of the target, so no "
        "backlog grew, and every verdict within 1 s)"
    )
    print(f"{'ensemble':9s} {'stride':>6s} {'frames/s':>9s} {'x target':>8s} {'windows/s':>10s} {'alerts':>7s} "
          f"{'p50 ms':>8s} {'p99 ms':>9s} {'max ms':>9s} {'keeps up':>8s}")  # fmt: skip
    for scale, name in (("small", "student"), ("large", "teacher")):
        for stride in (1, 10, 100):
            paced = live(bundles[f"ensemble_{scale}"], stride, TARGET_RATE / rate, seconds)
            lat = paced["latency_ms"]
            keeps = lat["max"] < 1000 and paced["frames_per_s"] >= 0.95 * TARGET_RATE
            print(f"{name:9s} {stride:6d} {paced['frames_per_s']:9,.0f} {paced['frames_per_s'] / TARGET_RATE:8.2f} "
                  f"{paced['windows'] / paced['seconds']:10,.0f} "
                  f"{100 * (paced['alert_rate'] or 0):6.1f}% {lat['p50']:8.2f} {lat['p99']:9.2f} {lat['max']:9.2f} "
                  f"{'yes' if keeps else 'no':>8s}")  # fmt: skip


def scoring_table(bundles: dict[str, Path], compile_models: bool, rounds: int = 5) -> None:
    import torch

    from kdgat.data.store import open_store
    from kdgat.detection.detector import load_detector

    torch.set_num_threads(2)
    from kdgat.data.windows import GraphArrays

    part = GraphArrays.of(open_store(bundles["root"] / "graphs").part("test__payload_fuzzing_id_1"))
    print(f"\nscoring: Detector.score over {part.num_graphs:,} windows at batch 1024, 2 threads, median of {rounds}")
    print(f"{'detector':24s} {'mode':>8s} {'graphs/s':>10s} {'range':>17s}")
    for scale in ("small", "large"):
        modes = [False, True] if compile_models else [False]
        for compiled in modes:
            detector = load_detector(bundles[scale], compile_models=compiled)
            mode = "compiled" if compiled else "eager"
            alone = []  # seconds per window of each detector scored on its own
            for label in [*detector.labels, None]:  # None: every detector in one call (what detect does)
                chosen = [label] if label else None
                detector.score(part, chosen)  # warm-up (and compilation)
                rates = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    detector.score(part, chosen)
                    rates.append(part.num_graphs / (time.perf_counter() - started))
                spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
                if label:
                    alone.append(1 / np.median(rates))
                    print(f"{label:24s} {mode:>8s} {np.median(rates):10,.0f} {spread:>17s}")
                else:  # the baseline: the detectors one by one, each scoring its own members
                    baseline = 1 / sum(alone)
                    print(f"{'all, one call':24s} {mode:>8s} {np.median(rates):10,.0f} {spread:>17s}  "
                          f"x{np.median(rates) / baseline:.2f} against one by one ({baseline:,.0f})")  # fmt: skip


def windows_table(repeat: int = 3) -> None:
    import torch

    from kdgat.core.config import resolve_config
    from kdgat.data.incremental import FrameBlock, WindowStream
    from kdgat.data.store import open_store
    from kdgat.data.timing import timing_frame_values
    from kdgat.data.vocab import Vocabulary
    from kdgat.data.windows import build_graphs
    from kdgat.detection.sources import read_frames

    torch.set_num_threads(1)
    blocks = []
    read_frames(CAPTURE, blocks.append)
    keys = np.concatenate([b.keys for b in blocks])
    data = np.concatenate([b.data for b in blocks])
    ts = np.concatenate([b.timestamps for b in blocks])
    labels = np.concatenate([b.labels for b in blocks])
    store = open_store(BUNDLE_ROOT / "graphs")
    vocab = Vocabulary.from_json(json.loads((BUNDLE_ROOT / "graphs/vocab.json").read_text()))
    periods = np.array([np.nan if p is None else p for p in store.metadata["timing"]["median_period"]])
    assert resolve_config("gat", "large").preprocessing.feature_set == "e4t"
    n = len(keys)
    print(f"\nwindows: {CAPTURE.name}, {n:,} frames, e4t features, one core; best of {repeat}")
    print(f"{'W/S':>8s} {'windows':>9s} {'batch win/s':>12s} {'stream 64k win/s':>17s} {'x batch':>8s} "
          f"{'per-frame win/s':>16s}")  # fmt: skip

    def best(fn):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            count = fn()
            times.append(time.perf_counter() - started)
        return count / min(times)

    for window, stride in ((100, 100), (100, 10), (100, 1)):

        def batch(window=window, stride=stride):
            ids = vocab.lookup(keys)
            values = timing_frame_values(ts, keys, ids, periods)
            g = build_graphs(ids, data, labels, None, window=window, stride=stride, vocab_size=vocab.size,
                             frame_values=values)  # fmt: skip
            return g.num_graphs

        def stream(size, limit=n, window=window, stride=stride):
            s = WindowStream(window=window, stride=stride, vocab=vocab, periods=periods, max_windows=8192)
            count = 0
            for i in range(0, limit, size):
                part = slice(i, min(i + size, limit))
                for b in s.push(FrameBlock(keys[part], data[part], ts[part], labels[part])):
                    count += len(b)
            return count + sum(len(b) for b in s.finish())

        rate_batch = best(batch)
        rate_stream = best(lambda: stream(1 << 16))
        per_frame = best(lambda: stream(1, 20_000))
        windows = batch()
        print(f"{window:>4d}/{stride:<3d} {windows:9,d} {rate_batch:12,.0f} {rate_stream:17,.0f} "
              f"{rate_stream / rate_batch:8.2f} {per_frame:16,.0f}")  # fmt: skip


def big_capture(path: Path, gb: float) -> int:
    """DAGA clean repeated (timestamps shifted) to ~gb GB of CSV text; returns the frame count."""
    text = lzma.decompress(CAPTURE.read_bytes()).decode()
    header, body = text.split("\n", 1)
    rows = body.strip("\n").split("\n")
    ts = np.array([float(r.split(",", 1)[0]) for r in rows])
    rest = [r.split(",", 1)[1] for r in rows]
    span = ts[-1] - ts[0] + 0.001
    copies = max(1, int(gb * 1e9 / len(text.encode())))
    with open(path, "w") as out:
        out.write(header + "\n")
        for k in range(copies):
            buf = io.StringIO()
            for t, r in zip(ts + k * span, rest, strict=True):
                buf.write(f"{t:.6f},{r}\n")
            out.write(buf.getvalue())
    return copies * len(rows)


def memory(bundle: Path, root: Path, gb: float) -> None:
    path = root / "big.csv"
    frames = big_capture(path, gb)
    size = path.stat().st_size
    code = ("import sys, time; from kdgat.stages.detect import run; t = time.perf_counter(); "
            f"m = run([{str(path)!r}], {str(bundle)!r}, out={str(root / 'big.parquet')!r}, threads=2); "
            # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the forking parent's peak
            "rss = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')); "
            "print(m.summary['windows'], time.perf_counter() - t, rss)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    windows, seconds, rss = result.stdout.split()
    print(f"\nmemory: `kdgat detect` (student, file mode, 2 threads) on a {size / 1e9:.2f} GB capture "
          f"({frames:,} frames, {int(windows):,} windows): {float(seconds):.1f} s, "
          f"{frames / float(seconds):,.0f} frames/s, peak RSS {int(rss) / 1024:,.0f} MB "
          f"({int(rss) * 1024 / size:.2f}x the capture)")  # fmt: skip
    path.unlink()


BUNDLE_ROOT = Path()


def main() -> None:
    global BUNDLE_ROOT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per live row")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled scoring rows")
    parser.add_argument("--no-memory", action="store_true", help="skip the 1 GB capture")
    parser.add_argument("--gb", type=float, default=1.0, help="size of the memory-test capture")
    parser.add_argument("--only", choices=["live", "scoring", "windows", "memory"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["live", "scoring", "windows", "memory"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        BUNDLE_ROOT = root
        started = time.perf_counter()
        models = bool(only - {"windows"})
        bundles = prepare(root, models)
        bundles["root"] = root
        what = ", teacher and student ensembles (1 epoch)" if models else ""
        print(f"prepared: DAGA V40 store{what}, {time.perf_counter() - started:.0f} s")
        for scale in ("large", "small") if models else ():
            parameters = json.loads((bundles[scale] / "manifest.json").read_text())["summary"]["parameters"]
            print(f"  {scale} bundle parameters: {parameters}")
        if "live" in only:
            live_table(bundles, args.seconds)
        if "scoring" in only:
            scoring_table(bundles, not args.no_compile)
        if "windows" in only:
            windows_table()
        if "memory" in only and not args.no_memory:
            memory(bundles["ensemble_small"], root, args.gb)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\nmax resident memory of this process: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
