"""`kdgat evaluate` speed: a fusion's members scored once, against scored again inside the fusion.

Evaluates every run of one dataset and seed of a campaign (``kdgat pipeline`` layout:
``<seed dir>/runs/*`` and the dataset's ``graphs``) in one call, twice in alternation, median of
``--repeat``:

  shared : as `kdgat evaluate` does: each member is scored once per part and its fusions are built
           from those scores
  again  : the same call with the sharing switched off (the bench empties the set of member runs to
           keep), so each fusion scores its members again, as every evaluation did before

Both write the same metrics (checked: every run's thresholds and test figures are equal). Both log to
one MLflow store in the temporary folder.

    python bench/evaluate.py work/campaign/road/seed0 [--graphs work/campaign/road/graphs] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _comparable(runs: dict) -> dict:
    return {label: {k: v for k, v in entry.items() if k not in ("mlflow", "run_dir")} for label, entry in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seed_dir", type=Path, help="<campaign>/<dataset>/seed<k> (holds runs/)")
    parser.add_argument("--graphs", type=Path, help="graph store (default: <seed_dir>/../graphs)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    import kdgat.stages.evaluate as stage
    from kdgat.core.threads import set_threads
    from kdgat.fusion.ensemble import is_fusion_run
    from kdgat.pipeline.plan import plan_steps

    set_threads(args.threads)
    graphs = args.graphs or args.seed_dir.parent / "graphs"
    order = [s.run_name for s in plan_steps() if s.stage in ("train", "fuse")]
    runs = [args.seed_dir / "runs" / name for name in order if (args.seed_dir / "runs" / name).is_dir()]
    fusions = [r for r in runs if is_fusion_run(r)]
    if not fusions:
        raise SystemExit(f"{args.seed_dir}: no fusion run to share members with")
    sharing = stage._fusion_members

    times: dict[str, list[float]] = {"shared": [], "again": []}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        uri = f"sqlite:///{out / 'mlruns.db'}"
        for i in range(args.repeat):
            for mode in ("shared", "again"):
                stage._fusion_members = sharing if mode == "shared" else (lambda run_dirs: set())
                started = time.perf_counter()
                stage.run(runs, graphs, out / f"{mode}{i}", threads=args.threads, tracking_uri=uri)
                times[mode].append(time.perf_counter() - started)
                results[mode] = stage.read_results(out / f"{mode}{i}")["runs"]
    same = _comparable(results["shared"]) == _comparable(results["again"])
    shared, again = statistics.median(times["shared"]), statistics.median(times["again"])
    print(f"store {graphs}: {len(runs)} runs ({len(fusions)} fusions), {args.threads} threads, median of {args.repeat}")
    print("| evaluate | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| members scored again in each fusion (before) | {again:.2f} | 1.00 |")
    print(f"| members scored once (now) | {shared:.2f} | x{again / shared:.2f} faster |")
    print(f"same metrics for every run: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
