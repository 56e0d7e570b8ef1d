"""The pipeline under Nextflow itself; skipped unless `nextflow` is on PATH (an older one than 25.04 fails:
the manifest requires it).

- `nextflow lint .` reports no error;
- `nextflow config` shows, for every profile combination a campaign uses, one complete
  process_gpu block (time, queue, clusterOptions, containerOptions, accelerator: nothing replaced
  by a profile's partial block);
- `-profile test -stub-run --seeds 0,1` runs the whole DAG with the stubs, every per-seed process
  once per seed, and publishes every stage's outputs under <dataset>[/seed<k>];
- a real `-profile test` run (the installed kdgat on the synthetic dataset, a few minutes on 2
  CPUs) publishes metrics, the lake (every metric row linked to its run, every KD student to its
  teacher) and the report; `-resume` then runs nothing again.

Each run gets its own launch folder under pytest's tmp_path (its own .nextflow cache and work/).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdgat.pipeline.plan import plan_steps

ROOT = Path(__file__).resolve().parents[1]
NEXTFLOW = shutil.which("nextflow")
pytestmark = pytest.mark.skipif(NEXTFLOW is None, reason="nextflow is not on PATH")

RUNS = [s.run_name for s in plan_steps() if s.stage in ("train", "fuse")]


def nextflow(*args: str, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        # tasks call the kdgat of this environment (the standard/test profiles use the installed kdgat)
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "NXF_ANSI_LOG": "false",
        "NXF_DISABLE_CHECK_LATEST": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [NEXTFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def trace(outdir: Path, suffix: str) -> list[dict]:
    with open(outdir / "pipeline_info" / f"execution_trace_{suffix}.txt") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def process_of(row: dict) -> str:
    """The process alias of a trace row: 'KDGAT:TRAIN_VGAE_LARGE (synthetic:vgae_large)' -> TRAIN_VGAE_LARGE."""
    return row["name"].split(" (")[0].split(":")[-1]


def run_pipeline(launch: Path, suffix: str, *extra: str) -> subprocess.CompletedProcess:
    launch.mkdir(parents=True, exist_ok=True)
    return nextflow(
        "run",
        str(ROOT / "main.nf"),
        "-profile",
        "test",
        "--outdir",
        str(launch / "results"),
        "--trace_report_suffix",
        suffix,
        "-work-dir",
        str(launch / "work"),
        *extra,
        cwd=launch,
    )


def test_lint_is_clean():
    result = nextflow("lint", "-o", "concise", ".", cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profiles", ["test", "slurm", "slurm,apptainer", "slurm,apptainer,gpu"])
def test_config_keeps_one_complete_gpu_block(profiles):
    result = nextflow("config", "-profile", profiles, "-flat", str(ROOT), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    for key in ("time", "accelerator", "queue", "clusterOptions", "containerOptions"):
        assert re.search(rf"withLabel:process_gpu'?\.{key}\s*=", text), f"{profiles}: process_gpu has no {key}"
    assert re.search(r"withLabel:process_gpu'?\.time\s*=\s*\{\s*12\.h", text), "the 12 h were replaced"
    assert "slurm_gres" in text and "--nv" in text  # only the process_gpu block mentions them


def test_stub_run_covers_every_stage_and_seed(tmp_path):
    result = run_pipeline(tmp_path, "stub", "-stub-run", "--seeds", "0,1")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    outdir = tmp_path / "results"
    rows = trace(outdir, "stub")
    ran = [process_of(row) for row in rows]
    assert {step.process for step in plan_steps()} <= set(ran)
    for step in plan_steps():  # per-seed steps twice, the others once
        expected = 2 if step.per_seed and step.per_dataset else 1
        assert ran.count(step.process) == expected, (step.process, ran.count(step.process))
    for path in ("synthetic/frames", "synthetic/graphs", "synthetic/seed0/eval", "synthetic/seed1/eval",
                 "report/index.html"):  # fmt: skip
        assert (outdir / path).exists(), path
    for run in RUNS:
        for seed in (0, 1):
            assert (outdir / "synthetic" / f"seed{seed}" / "runs" / run).is_dir(), (seed, run)
    for report in ("execution_report_stub.html", "execution_timeline_stub.html", "pipeline_dag_stub.html"):
        assert (outdir / "pipeline_info" / report).is_file(), report


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    launch = tmp_path_factory.mktemp("nextflow-test")
    first = run_pipeline(launch, "first")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-6000:]
    return launch


def test_real_test_profile_run(real_run):
    outdir = real_run / "results"
    rows = trace(outdir, "first")
    assert {step.process for step in plan_steps()} <= {process_of(row) for row in rows}
    assert all(row["status"] == "COMPLETED" for row in rows), [(r["name"], r["status"]) for r in rows]
    assert (outdir / "synthetic" / "seed42" / "eval" / "metrics.json").is_file()
    for run in RUNS:
        assert (outdir / "synthetic" / "seed42" / "runs" / run / "manifest.json").is_file(), run
    assert (outdir / "lake" / "analytics.duckdb").is_file()
    assert (outdir / "report" / "index.html").is_file()
    assert (outdir / "mlruns.db").is_file()
    assert list((outdir / "checkpoints" / "synthetic").glob("gat_small_kd-*/checkpoints/last.ckpt"))
    from kdgat.lake import query

    lake = outdir / "lake"
    orphans = "SELECT count(*) FROM metrics m LEFT JOIN runs r USING (run_id) WHERE r.run_id IS NULL"
    assert query(lake, orphans).column(0)[0].as_py() == 0  # every metric row is linked to its run
    students = query(lake, "SELECT model, teacher_run_id FROM runs WHERE has_kd AND stage = 'train'").to_pylist()
    assert len(students) == 2 and all(s["teacher_run_id"] for s in students)


def test_resume_runs_nothing_again(real_run):
    again = run_pipeline(real_run, "resume", "-resume")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    rows = trace(real_run / "results", "resume")
    assert rows and all(row["status"] == "CACHED" for row in rows), [
        (row["name"], row["status"]) for row in rows if row["status"] != "CACHED"
    ]
