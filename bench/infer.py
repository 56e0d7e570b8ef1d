"""Inference throughput, single-window latency and epoch time of teacher and student models.

  graphs/s   : GAT and VGAE forward passes over batches of 64 real DAGA windows (W=100), with
               2 CPU threads (the in-vehicle budget), large (teacher) vs small (student) presets;
               batch assembly from the store is included, as in deployment
  latency    : one window at a time (assembly + forward), p50 / p99 over --windows windows
  epoch      : one training epoch of each model on the DAGA training part (Lightning, CPU)

Each model runs eager and compiled (``kdgat.models.compiled``: torch.compile, dynamic shapes, as
``kdgat evaluate --compile`` uses it), timed in interleaved passes; the compile time and the
compiled / eager ratio of the medians are printed. Goal (issue 4): student GAT >= 20k graphs/s at batch 64. Weights are
untrained (speed does not depend on them). On a machine with CUDA the same figures are printed
for the GPU too.

    python bench/infer.py [--windows 2000] [--rounds 7] [--no-compile] [--no-epoch]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_store(tmp: Path) -> Path:
    from kdgat.core.config import resolve_config
    from kdgat.data.catalog import dataset_sources, load_catalog
    from kdgat.stages.graphs import run as run_graphs
    from kdgat.stages.ingest import run as run_ingest

    run_ingest(dataset_sources("daga_v40", load_catalog()["daga_v40"], DATA), tmp / "frames", dataset="daga_v40")
    run_graphs(tmp / "frames", tmp / "graphs", resolve_config("gat", "large").preprocessing)
    return tmp / "graphs"


def forward(kind, model, batch):
    from kdgat.models.gat import on_batch

    if kind == "gat":
        return on_batch(model, batch)
    return model(batch.x, batch.edge_index, batch.batch)["recon"]


@torch.inference_mode()
def warm_up(kind, model, part, device, batch_size=64) -> float:
    """Seconds of the first calls at batch ``batch_size`` and 1 (a compiled model compiles here)."""
    from kdgat.data.batching import assemble_batch

    model = model.to(device).eval()
    started = time.perf_counter()
    for indices in (np.arange(batch_size), np.arange(batch_size, 2 * batch_size), np.array([0]), np.array([1])):
        forward(kind, model, assemble_batch(part, indices).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


@torch.inference_mode()
def throughput(kind, runners: dict, part, device, batch_size=64, rounds=7) -> dict[str, list[float]]:
    """graphs/s of each runner per round; a round is one pass over the part per runner, in turn.

    The shared 2-core VM drifts by 2x within minutes, so the runners are timed interleaved, round
    after round, and compared by their medians: a baseline measured in the same run.
    """
    from kdgat.data.batching import assemble_batch

    starts = np.arange(0, part.num_graphs - batch_size + 1, batch_size)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, model in runners.items():
            started = time.perf_counter()
            for s in starts:
                forward(kind, model, assemble_batch(part, np.arange(s, s + batch_size)).to(device))
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates[name].append(len(starts) * batch_size / (time.perf_counter() - started))
    return rates


@torch.inference_mode()
def latency(kind, model, part, device, windows):
    from kdgat.data.batching import assemble_batch

    model = model.to(device).eval()
    times = []
    for i in range(min(windows, part.num_graphs)):
        started = time.perf_counter()
        batch = assemble_batch(part, np.array([i])).to(device)
        forward(kind, model, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    times = np.array(times[10:]) * 1e3  # the first calls warm caches
    return np.percentile(times, 50), np.percentile(times, 99)


def epoch_time(kind, scale, store_dir, out):
    from kdgat.core.config import resolve_config
    from kdgat.stages.train import run as run_train

    cfg = resolve_config(kind, scale, overrides=["training.max_epochs=1", "training.batch_size=256"])
    started = time.perf_counter()
    run_train(cfg, store_dir, out, progress_bar=False, tracking_uri=f"sqlite:///{out.parent / 'mlruns.db'}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2000, help="windows for the latency percentiles")
    parser.add_argument("--no-epoch", action="store_true", help="skip the training-epoch timing")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing passes per model (median)")
    args = parser.parse_args()
    from kdgat.core.config import resolve_config
    from kdgat.data.store import open_store
    from kdgat.models import build_model
    from kdgat.models.compiled import compile_for_inference
    from kdgat.training.kd import count_parameters

    torch.set_num_threads(2)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = build_store(Path(tmp))
        store = open_store(store_dir)
        part = store.part("test__payload_fuzzing_id_1")
        print(f"store: DAGA V40, {part.num_graphs:,} test windows, vocabulary {store.vocab_size}, threads 2")
        print(f"graphs/s at batch 64: median (and range) of {args.rounds} interleaved passes over the part")
        header = f"{'model':12s} {'params':>9s} {'device':>6s} {'mode':>8s} {'graphs/s':>10s} {'range':>15s}"
        print(header + f" {'p50 ms':>7s} {'p99 ms':>7s} {'compile s':>9s} {'vs eager':>8s}")
        for kind in ("gat", "vgae"):
            for scale in ("large", "small"):
                torch.manual_seed(0)
                section = getattr(resolve_config(kind, scale), kind)
                model = build_model(kind, store.vocab_size, section, num_features=store.num_node_features)
                label, params = f"{kind} {scale}", count_parameters(model)
                for device in devices:
                    runners = {"eager": model.to(device).eval()}
                    if not args.no_compile:
                        runners["compiled"] = compile_for_inference(runners["eager"])
                    first_calls = {name: warm_up(kind, runner, part, device) for name, runner in runners.items()}
                    rates = throughput(kind, runners, part, device, rounds=args.rounds)
                    eager_rate = float(np.median(rates["eager"]))
                    for mode, runner in runners.items():
                        rate = float(np.median(rates[mode]))
                        p50, p99 = latency(kind, runner, part, device, args.windows)
                        spread = f"{min(rates[mode]):,.0f}-{max(rates[mode]):,.0f}"
                        compiled = f"{first_calls[mode]:9.1f} {rate / eager_rate:7.2f}x" if mode == "compiled" else ""
                        print(
                            f"{label:12s} {params:9,d} {device.type:>6s} {mode:>8s} {rate:10,.0f} {spread:>15s}"
                            f" {p50:7.2f} {p99:7.2f} {compiled}"
                        )
        if not args.no_epoch:
            print("one training epoch on the DAGA training part (batch 256, CPU):")
            for kind in ("gat", "vgae"):
                for scale in ("large", "small"):
                    seconds = epoch_time(kind, scale, store_dir, Path(tmp) / "runs" / f"{kind}_{scale}")
                    print(f"  {kind} {scale}: {seconds:.1f} s (including start-up and validation)")


if __name__ == "__main__":
    main()
