"""The datalake: idempotent appends, concurrent and killed writers, the views' numbers, schema checks, the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.lake_sample import SCENARIOS, f1_of, write_run_set
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.errors import KdgatError
from kdgat.core.manifest import write_manifest
from kdgat.evaluation.metrics import summarize_seeds
from kdgat.lake import append_runs, build_lake, compare_runs, kd_impact, leaderboard, query
from kdgat.lake.schema import SCHEMA_VERSION
from kdgat.lake.store import LAKE_FILE, PARTS, PAUSE_ENV, generations, pending_commits

RUN_LABELS = ("vgae_large", "gat_large", "vgae_small_kd", "gat_small_kd", "gat_small", "fusion_dqn_small_kd", "eval")
SCENARIO_ROWS = 1 + len(SCENARIOS)  # validation + test scenarios per evaluated model


def run_dirs(paths: dict[str, Path]) -> list[Path]:
    return [paths[k] for k in RUN_LABELS]


def count(lake: Path, sql: str) -> int:
    return query(lake, sql).column(0)[0].as_py()


@pytest.fixture(scope="module")
def run_set(tmp_path_factory) -> dict[str, Path]:
    return write_run_set(tmp_path_factory.mktemp("runs"), seed=1)


# --------------------------------------------------------------------------- idempotence and identity


def test_re_append_replaces_rows_never_duplicates(run_set, tmp_path, monkeypatch):
    monkeypatch.setattr("kdgat.lake.store.READER_GRACE_SECONDS", 0)  # replaced generations go at once
    lake = tmp_path / "lake"
    first = append_runs(run_dirs(run_set), lake)
    again = append_runs(run_dirs(run_set), lake)  # before a build: two commits per run
    assert first == again and len(set(first)) == len(RUN_LABELS)
    build_lake(lake)
    counts = {t: count(lake, f"SELECT count(*) FROM {t}") for t in ("runs", "metrics", "configs", "training_curves")}
    assert counts["runs"] == len(RUN_LABELS) and counts["configs"] == len(RUN_LABELS)
    assert counts["metrics"] == 5 * SCENARIO_ROWS
    append_runs(run_dirs(run_set)[:3], lake)  # after a build: replaces compacted rows
    build_lake(lake)
    assert {t: count(lake, f"SELECT count(*) FROM {t}") for t in counts} == counts
    assert count(lake, "SELECT count(*) - count(DISTINCT run_id) FROM runs") == 0
    assert count(lake, "SELECT count(*) FROM datasets") == 1
    assert pending_commits(lake) == [] and len(generations(lake)) <= 2


def test_run_id_is_deterministic_and_made_of_what_defines_the_run(run_set, tmp_path):
    written = write_run_set(tmp_path / "orig", seed=1)
    lake = tmp_path / "lake"
    ids = append_runs(run_dirs(written), lake)
    shutil.move(tmp_path / "orig", tmp_path / "moved")  # members and evaluated runs are found beside the move
    moved = {k: tmp_path / "moved" / v.relative_to(tmp_path / "orig") for k, v in written.items()}
    other_seed = write_run_set(tmp_path / "seed2", seed=2)
    assert append_runs(run_dirs(moved), lake) == ids
    # the same configs and seed elsewhere: the same ids, but for the KD students, whose teachers' weights (placeholders
    # made of the folder's path here) differ, and the evaluation and the fusion of them
    same = dict(zip(RUN_LABELS, append_runs(run_dirs(run_set), tmp_path / "lake_same"), strict=True))
    differs = {label for label, run_id in zip(RUN_LABELS, ids, strict=True) if same[label] != run_id}
    assert differs == {"vgae_small_kd", "gat_small_kd", "fusion_dqn_small_kd", "eval"}, differs
    moved_only = tmp_path / "lake_moved"
    append_runs(run_dirs(moved), moved_only)
    teacher = "SELECT teacher_run_id FROM runs WHERE run_id = '{}'"
    student = ids[RUN_LABELS.index("gat_small_kd")]
    assert count(moved_only, teacher.format(student)) == ids[RUN_LABELS.index("gat_large")]  # found after the move
    changed = append_runs(run_dirs(other_seed), lake)
    assert not set(changed) & set(ids)
    assert ids[RUN_LABELS.index("gat_small_kd")].startswith("gat_small_kd-")
    assert count(lake, "SELECT count(DISTINCT run_id) FROM metrics") == 5 * 2  # metrics join the evaluated runs
    joined = count(lake, "SELECT count(*) FROM metrics m JOIN runs r USING (run_id) WHERE r.stage <> 'evaluate'")
    assert joined == count(lake, "SELECT count(*) FROM metrics")
    shutil.rmtree(tmp_path / "moved" / "runs" / "gat_large")
    with pytest.raises(KdgatError, match="evaluated run .*gat_large not found"):
        append_runs([moved["eval"]], lake)


def test_the_datasets_row_describes_the_store_the_runs_trained_on(tmp_path):
    """An evaluation of new captures (a store built --like, of the same dataset name) and a run appended after its
    store was deleted are newer commits, but their rows would say less or something else: the training store's stays."""
    from support.lake_sample import default_counts, write_eval_run

    written = write_run_set(tmp_path / "runs", seed=1)
    lake = tmp_path / "lake"
    append_runs(run_dirs(written), lake)
    described = "SELECT n_train_graphs, n_test_scenarios, store_fingerprint IS NOT NULL FROM datasets"
    assert query(lake, described).to_pylist() == [
        {"n_train_graphs": 400, "n_test_scenarios": len(SCENARIOS), "(store_fingerprint IS NOT NULL)": True}
    ]
    (dataset,) = query(lake, "SELECT name FROM datasets").column(0).to_pylist()
    like = tmp_path / "new" / "graphs"
    like.mkdir(parents=True)
    (like / "metadata.json").write_text(json.dumps({
        "kind": "kdgat-graph-store", "dataset": dataset, "fingerprint": "f" * 16, "window": 100, "stride": 100,
        "vocab_size": 64, "parts": {"test__drive": {"split": "test", "scenario": "drive", "graphs": 30}},
        "like": {"path": str(written["graphs"]), "fingerprint": "0" * 16},
    }))  # fmt: skip
    counts = default_counts(np.random.default_rng(0), ("drive",))
    evaluation = write_eval_run(tmp_path / "new" / "eval", like, dataset, {"gat_large": written["gat_large"]},
                                {"gat_large": {"drive": counts["drive"]}})  # fmt: skip
    append_runs([evaluation], lake)
    build_lake(lake)
    assert query(lake, described).to_pylist()[0]["n_train_graphs"] == 400
    shutil.rmtree(like.parent)
    shutil.rmtree(written["graphs"])
    append_runs([written["gat_large"]], lake)  # re-appended once its store is gone
    build_lake(lake)
    assert query(lake, described).to_pylist()[0]["n_train_graphs"] == 400


def _nextflow_tasks(work: Path, monkeypatch, seed: int = 1) -> dict[str, Path]:
    """Run folders made the way Nextflow makes them: each task in its own folder (its working
    directory), inputs staged there as links under their own names, paths recorded as staged
    (relative), as `kdgat` versions before absolute recorded paths did. Returns label -> task output."""
    from support.lake_sample import default_counts, write_eval_run, write_fuse_run, write_store, write_train_run

    def task(name: str, staged: dict[str, Path]) -> Path:
        folder = work / f"{seed}-{name}"
        folder.mkdir(parents=True)
        for link, target in staged.items():
            (folder / link).parent.mkdir(parents=True, exist_ok=True)
            (folder / link).symlink_to(target)
        monkeypatch.chdir(folder)
        return folder

    task("graphs", {})
    store = write_store(work / f"{seed}-graphs", "nf", SCENARIOS)
    out: dict[str, Path] = {}
    for label, (model, scale, kd) in {"vgae_large": ("vgae", "large", False), "gat_large": ("gat", "large", False),
                                      "vgae_small_kd": ("vgae", "small", True), "gat_small_kd": ("gat", "small", True),
                                      "gat_small": ("gat", "small", False)}.items():  # fmt: skip
        teacher = f"{model}_large" if kd else None
        folder = task(label, {"graphs": store, **({teacher: out[teacher]} if teacher else {})})
        write_train_run(Path(label), Path("graphs"), "nf", model, scale, kd, seed, Path(teacher) if teacher else None)
        out[label] = folder / label
    folder = task("fuse", {"graphs": store, "vgae_small_kd": out["vgae_small_kd"], "gat_small_kd": out["gat_small_kd"]})
    write_fuse_run(
        Path("fusion_dqn_small"), Path("graphs"), "nf", Path("vgae_small_kd"), Path("gat_small_kd"), True, seed
    )
    out["fusion_dqn_small_kd"] = folder / "fusion_dqn_small"
    evaluated = ("gat_large", "gat_small_kd", "gat_small", "vgae_large", "fusion_dqn_small_kd")
    folder = task("evaluate", {"graphs": store, **{f"runs/{out[k].name}": out[k] for k in evaluated}})  # runs/*
    rng = np.random.default_rng(seed)
    counts = {k: default_counts(rng, SCENARIOS) for k in evaluated}
    write_eval_run(Path("eval"), Path("graphs"), "nf", {k: Path("runs") / out[k].name for k in evaluated}, counts)
    out["eval"] = folder / "eval"
    return out


def _lake_task(work: Path, outputs: list[Path], monkeypatch, copy: bool) -> list[Path]:
    """LAKE's own folder: every input staged as runs/<n>/<name> (links, or copies as with stageInMode 'copy')."""
    folder = work / f"lake-{'copy' if copy else 'link'}"
    staged = []
    for n, output in enumerate(outputs, 1):
        target = folder / "runs" / str(n) / output.name
        target.parent.mkdir(parents=True)
        if copy:
            shutil.copytree(output, target, symlinks=False)
        else:
            target.symlink_to(output)
        staged.append(Path("runs") / str(n) / output.name)
    monkeypatch.chdir(folder)
    return staged


@pytest.mark.parametrize("copy", [False, True], ids=["linked", "copied"])
def test_runs_staged_like_nextflows_lake_task_keep_their_links(tmp_path, monkeypatch, copy):
    """Issue 12: LAKE stages its inputs as runs/<n>/<name>, and evaluations and students recorded their
    runs as staged (`runs/vgae_large`, `vgae_large`): every metric row and teacher link still resolves."""
    work = tmp_path / "work"
    outputs = _nextflow_tasks(work, monkeypatch)
    labels = list(RUN_LABELS)
    recorded = json.loads((outputs["eval"] / "metrics.json").read_text())["runs"]["vgae_large"]["run_dir"]
    assert recorded == "runs/vgae_large"  # the case that broke
    expected = append_runs([outputs[k] for k in labels], tmp_path / "direct")  # from the task folders themselves
    staged = _lake_task(work, [outputs[k] for k in labels], monkeypatch, copy)
    lake = tmp_path / f"lake-{copy}"
    assert append_runs(staged, lake) == expected
    by_model = {r["model"]: r for r in query(lake, "SELECT * FROM runs").to_pylist()}
    for student in ("gat_small_kd", "vgae_small_kd"):
        teacher = student.replace("small_kd", "large")
        assert by_model[student]["teacher_run_id"] == by_model[teacher]["run_id"], student
    assert by_model["gat_small"]["teacher_run_id"] is None
    assert count(lake, "SELECT count(*) FROM metrics m JOIN runs r USING (run_id) WHERE r.stage <> 'evaluate'") == (
        5 * SCENARIO_ROWS
    )


def test_published_results_without_work_folders_keep_their_links(tmp_path, monkeypatch):
    """The copies publishDir makes (<dataset>/seed<k>/runs/<run>, <dataset>/seed<k>/eval) once work/ is gone."""
    work = tmp_path / "work"
    outputs = _nextflow_tasks(work, monkeypatch)
    published = tmp_path / "results" / "nf" / "seed1"
    for label in RUN_LABELS:
        dest = published / ("eval" if label == "eval" else f"runs/{outputs[label].name}")
        shutil.copytree(outputs[label], dest, symlinks=False)
    expected = append_runs([outputs[k] for k in RUN_LABELS], tmp_path / "direct")
    shutil.rmtree(work)
    monkeypatch.chdir(tmp_path)
    lake = tmp_path / "lake"
    assert append_runs([published / "eval"], lake) == [expected[-1]]  # found beside it: runs/ next to eval/
    ids = append_runs([published / "runs" / outputs[k].name for k in RUN_LABELS[:-1]], lake)
    assert ids == expected[:-1]
    (teacher,) = query(lake, "SELECT teacher_run_id FROM runs WHERE model = 'gat_small_kd'").column(0).to_pylist()
    assert teacher == expected[RUN_LABELS.index("gat_large")]


def test_a_run_of_another_seed_with_the_same_name_is_never_taken(tmp_path, monkeypatch):
    """The fallback looks for moved folders by name, and accepts one only with the weights the stage read."""
    one = _nextflow_tasks(tmp_path / "work", monkeypatch, seed=1)
    two = _nextflow_tasks(tmp_path / "work", monkeypatch, seed=2)
    staged = _lake_task(tmp_path / "work", [two[k] for k in RUN_LABELS[:-1]] + [one["eval"]], monkeypatch, copy=True)
    with pytest.raises(KdgatError, match="evaluated run runs/gat_large not found"):
        append_runs(staged, tmp_path / "lake")


def test_a_runs_setup_does_not_change_with_another_models_settings(run_set, tmp_path):
    """A pipeline keeps a VGAE cached when only the GAT's settings change, so seeds of one experiment may
    carry different gat sections: they must still be one setup (seeds are counted per setup)."""
    from kdgat.lake.records import identify

    before = identify(run_set["vgae_large"])
    for section, key, value in (("gat", "dropout", 0.33), ("vgae", "dropout", 0.33)):
        copy = tmp_path / f"vgae_large_{section}"
        shutil.copytree(run_set["vgae_large"], copy)
        cfg = json.loads((copy / "config.json").read_text())
        cfg[section][key] = value
        (copy / "config.json").write_text(json.dumps(cfg))
        same = identify(copy).setup_hash == before.setup_hash
        assert same is (section == "gat"), section


def test_unfinished_run_is_a_clear_error_and_writes_nothing(run_set, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_set["gat_large"], unfinished)
    (unfinished / "manifest.json").unlink()
    lake = tmp_path / "lake"
    with pytest.raises(KdgatError, match="no manifest.json, so the run did not finish"):
        append_runs([run_set["gat_large"], unfinished], lake)
    assert not lake.exists()
    graphs = tmp_path / "graphs"
    shutil.copytree(run_set["graphs"], graphs)
    write_manifest(graphs, stage="graphs", inputs=[], config={}, outputs=[], wall_time_s=0.1, dataset="synthetic")
    with pytest.raises(KdgatError, match="the output of a graphs stage, not a"):
        append_runs([graphs], lake)


# --------------------------------------------------------------------------- concurrency and faults

_APPENDER = """
import sys, time
from pathlib import Path
from kdgat.lake import append_runs
go = Path(sys.argv[1])
(go.parent / f"ready-{sys.argv[3].replace('/', '_')}").touch()  # imports done: waiting at the gate
while not go.exists():
    time.sleep(0.01)
append_runs([Path(p) for p in sys.argv[3:]], Path(sys.argv[2]))
"""


def _python(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", *args], env={**os.environ, **(env or {})})


def test_eight_concurrent_appender_processes_lose_and_duplicate_nothing(run_set, tmp_path):
    lake, go = tmp_path / "lake", tmp_path / "go"
    own = [write_run_set(tmp_path / f"own{i}", dataset=f"fleet{i}", seed=i) for i in range(8)]
    shared = run_dirs(run_set)
    procs = [
        _python(_APPENDER, str(go), str(lake), *map(str, run_dirs(mine)[::-1] + shared)) for mine in own
    ]  # every process appends its own runs and the same shared runs, at the same moment
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(procs):  # open the gate once all eight wait at it
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "an appender never got ready"
        time.sleep(0.02)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    assert len(pending_commits(lake)) == 8 * 2 * len(RUN_LABELS)
    build_lake(lake)
    assert count(lake, "SELECT count(*) FROM runs") == 9 * len(RUN_LABELS)
    assert count(lake, "SELECT count(DISTINCT run_id) FROM runs") == 9 * len(RUN_LABELS)
    assert count(lake, "SELECT count(*) FROM metrics") == 9 * 5 * SCENARIO_ROWS
    assert count(lake, "SELECT count(*) FROM datasets") == 9
    assert not list((lake / PARTS).glob(".staging-*"))


def _killed_while_paused(point: str, code: str, tmp_path: Path) -> None:
    flag = tmp_path / f"paused-{point}"
    proc = _python(code, env={PAUSE_ENV: f"{point}:{flag}"})
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the writer never reached its pause point"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _all_visible_parquet_reads(lake: Path) -> int:
    files = [p for p in lake.rglob("*.parquet") if not any(part.startswith(".") for part in p.relative_to(lake).parts)]
    for file in files:
        pq.read_table(file)
    return len(files)


def test_writer_killed_mid_commit_leaves_nothing_visible(run_set, tmp_path):
    lake = tmp_path / "lake"
    append_runs(run_dirs(run_set), lake)
    build_lake(lake)
    other = write_run_set(tmp_path / "other", dataset="other", seed=5)
    code = f"from kdgat.lake import append_runs; append_runs([{str(other['gat_large'])!r}], {str(lake)!r})"
    _killed_while_paused("append", code, tmp_path)
    assert list((lake / PARTS).glob(".staging-*")), "the killed writer had started a commit"
    assert pending_commits(lake) == []
    assert _all_visible_parquet_reads(lake) > 0
    build_lake(lake)
    assert not list((lake / PARTS).glob(".staging-*")), "the next build removes what the dead writer left"
    assert count(lake, "SELECT count(*) FROM runs WHERE dataset = 'other'") == 0
    assert count(lake, "SELECT count(*) FROM runs") == len(RUN_LABELS)
    append_runs([other["gat_large"]], lake)  # the same run appended again goes through
    assert count(lake, "SELECT count(*) FROM runs WHERE dataset = 'other'") == 1


def test_builder_killed_mid_build_keeps_the_previous_views(run_set, tmp_path):
    lake = tmp_path / "lake"
    append_runs(run_dirs(run_set)[:2], lake)
    db = build_lake(lake)
    append_runs(run_dirs(run_set)[2:], lake)
    _killed_while_paused("build", f"from kdgat.lake import build_lake; build_lake({str(lake)!r})", tmp_path)
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:  # the old views, whole
        assert con.sql("SELECT count(*) FROM runs").fetchall() == [(2,)]
    assert _all_visible_parquet_reads(lake) > 0
    build_lake(lake)
    assert count(lake, "SELECT count(*) FROM runs") == len(RUN_LABELS)


# --------------------------------------------------------------------------- the views' numbers


def _accuracy(tp, fp, tn, fn):
    return (tp + tn) / (tp + fp + tn + fn)


def _mcc(tp, fp, tn, fn):
    return (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))


def _auc(tp, fp, tn, fn):  # 0/1 scores: one ROC point, area = (TPR + TNR) / 2
    return (tp / (tp + fn) + tn / (tn + fp)) / 2


# (tp, fp, tn, fn) for validation and the two test scenarios, per seed. Seed 3 has the best test figures of
# gat_large and gat_small_kd but not their best validation F1 (seed 1 and seed 2): a leaderboard that picked on
# test would show seed 3.
HAND = {
    1: {"gat_large": [(40, 2, 56, 2), (30, 10, 50, 10), (20, 5, 60, 15)],
        "gat_small_kd": [(36, 4, 54, 6), (25, 5, 55, 15), (18, 2, 63, 17)],
        "gat_small": [(30, 2, 56, 12), (20, 20, 40, 20), (10, 10, 55, 25)]},
    2: {"gat_large": [(39, 1, 57, 3), (32, 8, 52, 8), (25, 5, 60, 10)],
        "gat_small_kd": [(38, 2, 56, 4), (28, 2, 58, 12), (19, 1, 64, 16)],
        "gat_small": [(34, 10, 48, 8), (22, 18, 42, 18), (12, 8, 57, 23)]},
    3: {"gat_large": [(38, 4, 54, 4), (35, 5, 55, 5), (30, 5, 60, 5)],
        "gat_small_kd": [(30, 10, 48, 10), (35, 3, 57, 5), (30, 2, 63, 5)],
        "gat_small": [(32, 6, 52, 10), (25, 15, 45, 15), (15, 5, 60, 20)]},
}  # fmt: skip
SEEDS = sorted(HAND)


def _fpr(counts):
    _tp, fp, tn, _fn = counts
    return fp / (fp + tn)


def _pr_auc(counts):
    from support.lake_sample import scored

    from kdgat.evaluation.metrics import binary_metrics

    return binary_metrics(*scored(counts), 0.5)["pr_auc"]


def _mean_std(values):  # by hand: mean, and the sample standard deviation (n - 1)
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _per_seed(model, metric):
    """{seed: (validation value, mean over the test scenarios, [value per test scenario])}"""
    out = {}
    for seed in SEEDS:
        val, *tests = HAND[seed][model]
        per_test = [metric(c) for c in tests]  # every metric of confusion counts: f1_of, _pr_auc, _fpr
        out[seed] = (metric(val), sum(per_test) / len(per_test), per_test)
    return out


@pytest.fixture(scope="module")
def hand_lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hand")
    lake = root / "lake"
    for seed, labels in HAND.items():
        counts = {k: dict(zip(("validation", *SCENARIOS), v, strict=True)) for k, v in labels.items()}
        append_runs(run_dirs(write_run_set(root / f"s{seed}", dataset="hand", seed=seed, counts=counts)), lake)
    append_runs(run_dirs(write_run_set(root / "x", dataset="other", seed=3)), lake)
    build_lake(lake)
    return lake


def test_leaderboard_is_mean_and_std_over_seeds_and_selects_on_validation_only(hand_lake):
    """Issue 13: 3 hand-made seeds, every figure computed by hand; the selected run is the best on validation
    even where another seed is better on test."""
    rows = {r["model"]: r for r in leaderboard(hand_lake, "hand").to_pylist()}
    assert set(rows) == {"gat_large", "gat_small_kd", "gat_small", "vgae_large", "fusion_dqn_small_kd"}
    for model in ("gat_large", "gat_small_kd", "gat_small"):
        row, f1, pr, fpr = rows[model], _per_seed(model, f1_of), _per_seed(model, _pr_auc), _per_seed(model, _fpr)
        assert row["n_seeds"] == row["n_runs"] == 3
        for name, values in (("val_f1", [f1[s][0] for s in SEEDS]), ("val_pr_auc", [pr[s][0] for s in SEEDS]),
                             ("test_f1", [f1[s][1] for s in SEEDS]), ("test_pr_auc", [pr[s][1] for s in SEEDS]),
                             ("test_fpr", [fpr[s][1] for s in SEEDS])):  # fmt: skip
            mean, std = _mean_std(values)
            assert row[f"{name}_mean"] == pytest.approx(mean), (model, name)
            assert row[f"{name}_std"] == pytest.approx(std), (model, name)
            assert summarize_seeds(values) == {"mean": pytest.approx(mean), "std": pytest.approx(std), "n": 3}
        chosen = max(SEEDS, key=lambda s: f1[s][0])
        assert row["selected_seed"] == chosen and row["selected_val_f1"] == pytest.approx(f1[chosen][0])
        assert row["selected_test_f1"] == pytest.approx(f1[chosen][1])
        assert row["selected_test_pr_auc"] == pytest.approx(pr[chosen][1])
        assert row["selected_test_fpr"] == pytest.approx(fpr[chosen][1])
    # the case the issue names: the best-test seed is not the best-validation seed, and the table shows the latter
    assert (
        rows["gat_large"]["selected_seed"] == 1 and max(SEEDS, key=lambda s: _per_seed("gat_large", f1_of)[s][1]) == 3
    )
    assert rows["gat_small_kd"]["selected_seed"] == 2
    assert rows["gat_large"]["selected_test_f1"] < max(v[1] for v in _per_seed("gat_large", f1_of).values())
    assert rows["gat_large"]["val_f1_mean"] == pytest.approx((80 / 84 + 78 / 82 + 76 / 84) / 3)
    assert (rows["gat_small_kd"]["scale"], rows["gat_small_kd"]["has_kd"]) == ("small", True)
    assert rows["fusion_dqn_small_kd"]["family"] == "fusion_dqn"
    assert len({r["setup"] for r in rows.values()}) == 5  # one setup per model: the three seeds share it
    assert {r["dataset"] for r in leaderboard(hand_lake).to_pylist()} == {"hand", "other"}
    with pytest.raises(KdgatError, match="no evaluated runs of dataset 'nope'.*has: hand, other"):
        leaderboard(hand_lake, "nope")


def test_leaderboard_per_scenario_keeps_the_validation_choice(hand_lake):
    rows = leaderboard(hand_lake, "hand", scenarios=True).to_pylist()
    assert {r["scenario"] for r in rows} == set(SCENARIOS)
    for model, chosen in (("gat_large", 1), ("gat_small_kd", 2)):
        f1, fpr = _per_seed(model, f1_of), _per_seed(model, _fpr)
        for i, scenario in enumerate(SCENARIOS):
            (row,) = [r for r in rows if r["model"] == model and r["scenario"] == scenario]
            mean, std = _mean_std([f1[s][2][i] for s in SEEDS])
            assert row["n_seeds"] == 3
            assert (row["test_f1_mean"], row["test_f1_std"]) == (pytest.approx(mean), pytest.approx(std))
            assert row["test_fpr_mean"] == pytest.approx(_mean_std([fpr[s][2][i] for s in SEEDS])[0])
            assert row["selected_seed"] == chosen and row["selected_test_f1"] == pytest.approx(f1[chosen][2][i])


def test_validation_without_attacks_selects_no_run(tmp_path):
    """Attack-free training captures give a validation part without attack windows: its F1 is 0 for every
    run (nothing to find), so it cannot tell seeds apart; the leaderboard shows no validation F1 and no
    selected run, and still the test figures over seeds."""
    lake = tmp_path / "lake"
    tests = {1: [(5, 1, 90, 5), (2, 0, 95, 8)], 2: [(9, 3, 88, 1), (8, 2, 93, 2)]}  # seed 2 is better on test
    for seed, test_counts in tests.items():
        counts = {
            "gat_large": dict(zip(("validation", *SCENARIOS), [(0, seed, 100 - seed, 0), *test_counts], strict=True))
        }
        append_runs(run_dirs(write_run_set(tmp_path / f"s{seed}", dataset="benign", seed=seed, counts=counts)), lake)
    build_lake(lake)
    (row,) = [r for r in leaderboard(lake, "benign").to_pylist() if r["model"] == "gat_large"]
    assert row["n_seeds"] == 2 and row["val_f1_mean"] is None and row["val_pr_auc_mean"] is None
    assert all(row[k] is None for k in row if k.startswith("selected_")), row
    test_f1 = [sum(f1_of(c) for c in tests[seed]) / 2 for seed in (1, 2)]
    assert row["test_f1_mean"] == pytest.approx(sum(test_f1) / 2)
    scenario_rows = [r for r in leaderboard(lake, "benign", scenarios=True).to_pylist() if r["model"] == "gat_large"]
    assert len(scenario_rows) == 2 and all(r["selected_seed"] is None for r in scenario_rows)


def test_kd_impact_is_paired_by_seed(hand_lake):
    rows = {(r["dataset"], r["family"]): r for r in kd_impact(hand_lake).to_pylist()}
    gat = rows[("hand", "gat")]
    kd, plain, teacher = _per_seed("gat_small_kd", f1_of), _per_seed("gat_small", f1_of), _per_seed("gat_large", f1_of)
    kd_pr, plain_pr = _per_seed("gat_small_kd", _pr_auc), _per_seed("gat_small", _pr_auc)
    assert gat["n_pairs"] == 3
    for name, pairs in (("val_f1_delta", [kd[s][0] - plain[s][0] for s in SEEDS]),
                        ("test_f1_delta", [kd[s][1] - plain[s][1] for s in SEEDS]),
                        ("test_pr_auc_delta", [kd_pr[s][1] - plain_pr[s][1] for s in SEEDS])):  # fmt: skip
        mean, std = _mean_std(pairs)
        assert (gat[f"{name}_mean"], gat[f"{name}_std"]) == (pytest.approx(mean), pytest.approx(std)), name
    # a difference of maxima would be something else: max over seeds of KD minus max without
    assert gat["val_f1_delta_mean"] != pytest.approx(max(v[0] for v in kd.values()) - max(v[0] for v in plain.values()))
    assert gat["student_kd_val_f1"] == pytest.approx(sum(kd[s][0] for s in SEEDS) / 3)
    assert gat["student_test_f1"] == pytest.approx(sum(plain[s][1] for s in SEEDS) / 3)
    assert gat["teacher_val_f1"] == pytest.approx(sum(teacher[s][0] for s in SEEDS) / 3)  # each seed's own teacher
    assert gat["teacher_test_f1"] == pytest.approx(sum(teacher[s][1] for s in SEEDS) / 3)
    fusion = rows[("hand", "fusion_dqn")]  # no fusion of no-KD students: nothing to pair with
    assert fusion["n_pairs"] == 0 and fusion["student_val_f1"] is None and fusion["val_f1_delta_mean"] is None


def test_the_report_and_the_results_table_show_the_views_numbers(hand_lake, tmp_path):
    """One definition: the report's tables and bench/quality.py print the views' values."""
    import importlib.util

    from kdgat.evaluation.metrics import format_mean_std
    from kdgat.stages.report import run as write_report

    row = {r["model"]: r for r in leaderboard(hand_lake, "hand").to_pylist()}["gat_large"]
    page = Path(write_report(hand_lake, tmp_path / "report").summary["index"]).read_text(encoding="utf-8")
    assert format_mean_std({"mean": row["val_f1_mean"], "std": row["val_f1_std"]}) in page
    assert format_mean_std({"mean": row["test_f1_mean"], "std": row["test_f1_std"]}) in page
    gat = {r["family"]: r for r in kd_impact(hand_lake).to_pylist() if r["dataset"] == "hand"}["gat"]
    assert format_mean_std({"mean": gat["val_f1_delta_mean"], "std": gat["val_f1_delta_std"]}) in page
    spec = importlib.util.spec_from_file_location("quality", Path(__file__).parents[1] / "bench" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    text = quality.tables(hand_lake, dataset="hand")
    assert format_mean_std({"mean": row["test_f1_mean"], "std": row["test_f1_std"]}) in text
    assert format_mean_std({"mean": gat["test_f1_delta_mean"], "std": gat["test_f1_delta_std"]}) in text


def test_compare_shows_config_diff_and_metric_deltas(hand_lake):
    ids = query(hand_lake, "SELECT model, run_id FROM runs WHERE dataset = 'hand' AND seed = 1").to_pylist()
    by_model = {r["model"]: r["run_id"] for r in ids}
    table = compare_runs(hand_lake, by_model["gat_small"], by_model["gat_small_kd"][:16])
    rows = {(r["section"], r["key"]): r for r in table.to_pylist()}
    assert rows[("config", "kd.alpha")]["a"] is None and rows[("config", "kd.alpha")]["b"] == "0.7"
    assert ("config", "seed") not in rows  # equal keys are not listed
    f1 = rows[("metrics", "validation.f1")]
    assert f1["delta"] == pytest.approx(f1_of((36, 4, 54, 6)) - f1_of((30, 2, 56, 12)))
    assert float(f1["a"]) == f1_of((30, 2, 56, 12)) and float(f1["b"]) == f1_of(
        (36, 4, 54, 6)
    )  # not rounded to 6 digits
    with pytest.raises(KdgatError, match="ambiguous"):
        compare_runs(hand_lake, "gat_small", by_model["gat_small"])
    with pytest.raises(KdgatError, match="no run 'nothing'"):
        compare_runs(hand_lake, "nothing", by_model["gat_small"])


# --------------------------------------------------------------------------- schema changes


def test_fusions_say_per_run_what_the_fit_chose_and_v_fusions_counts_it_over_seeds(tmp_path):
    """A fuse run's fallback, collapse and novel-ID rule (its metrics.json) become a `fusions` row; one made
    before the rule (no novel keys, as the sample writes) has the rule off and no counts. v_fusions groups a
    setup's seeds: here seed 2 fell back to its GAT and kept the rule over 48 novel attack windows."""
    lake = tmp_path / "lake"
    runs = {seed: write_run_set(tmp_path / f"s{seed}", seed=seed) for seed in (1, 2)}
    fuse_metrics = runs[2]["fusion_dqn_small_kd"] / "metrics.json"
    metrics = json.loads(fuse_metrics.read_text())
    ranking = {"fusion": 0.9, "gat": 0.95, "vgae": 0.8, "with_novel_alert": 0.95}
    metrics.update(fallback="gat", novel_alert=True, novel_windows={"benign": 0, "attack": 48})
    metrics.update(pr_auc_on_fusion_windows=ranking, selection_windows=50, out_of_sample_selection=True)
    fuse_metrics.write_text(json.dumps(metrics))
    for paths in runs.values():
        append_runs(run_dirs(paths), lake)
    build_lake(lake)
    rows = query(lake, """SELECT r.seed, f.* EXCLUDE (run_id) FROM fusions f JOIN runs r USING (run_id)
                          ORDER BY r.seed""").to_pylist()  # fmt: skip
    assert rows == [
        dict(seed=1, fusion_windows=100, selection_windows=None, out_of_sample_selection=None, pr_auc_fusion=None,
             pr_auc_gat=None, pr_auc_vgae=None, fallback=None, collapsed_to=None, novel_alert=False,
             novel_benign=None, novel_attack=None),
        dict(seed=2, fusion_windows=100, selection_windows=50, out_of_sample_selection=True, pr_auc_fusion=0.9,
             pr_auc_gat=0.95, pr_auc_vgae=0.8, fallback="gat", collapsed_to=None, novel_alert=True, novel_benign=0,
             novel_attack=48),
    ]  # fmt: skip
    (summary,) = query(lake, "SELECT * EXCLUDE (setup) FROM v_fusions").to_pylist()
    assert summary == dict(dataset="synthetic", model="fusion_dqn_small_kd", n_runs=2, n_out_of_sample=1, n_fallback=1,
                           fallback_to="gat", n_collapsed=0, collapsed_to=None, n_novel_alert=1, novel_benign=0,
                           novel_attack=48, fusion_windows=100.0, selection_windows=50.0)  # fmt: skip
    assert (
        count(lake, "SELECT count(*) FROM fusions")
        == 2
        == count(lake, "SELECT count(*) FROM runs WHERE stage = 'fuse'")
    )


def test_lake_of_another_schema_version_is_refused_with_a_clear_message(run_set, tmp_path):
    lake = tmp_path / "lake"
    append_runs(run_dirs(run_set)[:1], lake)
    meta = json.loads((lake / LAKE_FILE).read_text())
    (lake / LAKE_FILE).write_text(json.dumps({**meta, "schema_version": 0}))
    with pytest.raises(KdgatError, match=rf"written with lake schema v0 .* this kdgat uses v{SCHEMA_VERSION}"):
        append_runs(run_dirs(run_set)[:1], lake)
    result = CliRunner().invoke(app, ["leaderboard", "--lake", str(lake)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"[]", b'"lake"', b"\xff\xfe{}"])
def test_a_lake_file_that_is_not_a_lakes_description_is_one_line(run_set, tmp_path, content):
    lake = tmp_path / "lake"
    append_runs(run_dirs(run_set)[:1], lake)
    (lake / LAKE_FILE).write_bytes(content)
    result = CliRunner().invoke(app, ["leaderboard", "--lake", str(lake)])
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith(f"error: {lake / LAKE_FILE}: ") and len(result.stderr.strip().splitlines()) == 1


def test_a_lake_without_write_access_is_read_while_its_views_are_current(run_set, tmp_path, monkeypatch):
    """A lake shared read-only (another user's, a published one): queries need no write; a build that is due says
    it cannot write."""
    lake = tmp_path / "lake"
    append_runs(run_dirs(run_set), lake)
    build_lake(lake)

    def read_only(folder, said):
        raise KdgatError(f"{said}: permission denied")

    monkeypatch.setattr("kdgat.core.atomic._probe", read_only)
    assert count(lake, "SELECT count(*) FROM runs") == len(RUN_LABELS)
    for command in (["leaderboard", "--lake", str(lake)], ["kd-impact", "--lake", str(lake)],
                    ["lake", "query", "SELECT 1", "--lake", str(lake)]):  # fmt: skip
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, (command, result.stderr)


def test_part_with_another_schema_is_named_not_crashed_on(run_set, tmp_path):
    lake = tmp_path / "lake"
    append_runs(run_dirs(run_set)[:2], lake)
    (commit,) = [c for c in pending_commits(lake) if c.run_id.startswith("gat_large")]
    runs = pq.read_table(commit.path / "runs.parquet")
    changed = runs.drop_columns(["seed"]).append_column("seed_text", pa.array(["1"]))
    pq.write_table(changed, commit.path / "runs.parquet")
    with pytest.raises(KdgatError) as info:
        build_lake(lake)
    message = str(info.value)
    assert str(commit.path / "runs.parquet") in message
    assert "missing columns seed" in message and "unexpected columns seed_text" in message


# --------------------------------------------------------------------------- CLI


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_cli_append_build_and_output_formats(run_set, tmp_path):
    lake = tmp_path / "lake"
    runs = [x for d in run_dirs(run_set) for x in ("--runs", d)]
    result = invoke("lake", "append", *runs, "--lake", lake)
    assert result.exit_code == 0, result.output
    assert "7 run(s) appended" in result.output
    result = invoke("lake", "build", "--lake", lake)
    assert result.exit_code == 0 and "analytics.duckdb: 7 runs, 15 metric rows" in result.output

    as_csv = invoke("leaderboard", "--lake", lake, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert len(rows) == 5 and rows[0]["dataset"] == "synthetic" and float(rows[0]["val_f1_mean"]) > 0
    as_json = json.loads(invoke("leaderboard", "--lake", lake, "--dataset", "synthetic", "--format", "json").output)
    assert [r["val_f1_mean"] for r in as_json] == pytest.approx([float(r["val_f1_mean"]) for r in rows])
    scenarios = list(csv.DictReader(io.StringIO(invoke("leaderboard", "--scenarios", "--lake", lake, "--format",
                                                       "csv").output)))  # fmt: skip
    assert len(scenarios) == 5 * len(SCENARIOS) and {r["scenario"] for r in scenarios} == set(SCENARIOS)
    markdown = invoke("kd-impact", "--lake", lake, "--format", "markdown").output.splitlines()
    assert markdown[0].startswith("| dataset | family | setup | n_pairs |") and set(markdown[1]) <= set("|- ")
    assert len(markdown) == 2 + 2  # gat and fusion_dqn
    table = invoke("leaderboard", "--lake", lake)
    assert table.exit_code == 0 and "Leaderboard" in table.output and "gat_small_kd" in table.output

    env = {"KDGAT_LAKE": str(lake)}  # --lake from the environment
    assert invoke("lake", "query", "SELECT count(*) AS n FROM runs", "--format", "csv", env=env).output == "n\n7\n"
    ids = json.loads(invoke("lake", "query", "SELECT run_id, model FROM runs", "--format", "json", env=env).output)
    pair = sorted(r["run_id"] for r in ids if r["model"] in ("gat_small", "gat_small_kd"))
    compared = json.loads(invoke("compare", *pair, "--format", "json", env=env).output)
    assert {r["section"] for r in compared} == {"run", "config", "metrics"}
    typed = ("SELECT sum(parameters) AS total, created_at::DATE AS day, '1 hour'::INTERVAL AS span, "
             "'ab'::BLOB AS raw, 1::HUGEINT AS big, 'NaN'::DOUBLE AS nan, [1.5, 'inf'::DOUBLE] AS xs, "
             "{'a': 2.5::DECIMAL(4, 2)} AS s FROM runs GROUP BY ALL LIMIT 1")  # fmt: skip
    (record,) = json.loads(invoke("lake", "query", typed, "--format", "json", env=env).output)
    assert record["total"] > 0 and isinstance(record["total"], int) and len(record["day"]) == 10
    assert {k: record[k] for k in ("span", "raw", "big", "nan", "xs", "s")} == {
        "span": {"months": 0, "days": 0, "nanoseconds": 3_600_000_000_000},
        "raw": "6162",
        "big": 1,
        "nan": None,
        "xs": [1.5, None],
        "s": {"a": 2.5},
    }

    bad = invoke("lake", "query", "SELECT * FROM nowhere", env=env)
    assert bad.exit_code == 1 and bad.stderr.startswith("error: query failed: ")
    readonly = invoke("lake", "query", "DROP VIEW runs", env=env)
    assert readonly.exit_code == 1 and "read-only" in readonly.stderr
    missing = invoke("lake", "append", "--runs", tmp_path / "nope", "--lake", lake)
    assert missing.exit_code == 1 and "no such run folder" in missing.stderr


def test_cell_text_is_shared_by_the_terminal_and_the_report():
    from kdgat.lake.render import cell_text
    from kdgat.report.page import table_html

    assert [cell_text(v) for v in (None, float("nan"), True, 0.123456, 1234, [1, 2])] == [
        "-", "-", "yes", "0.1235", "1234", "1;2",
    ]  # fmt: skip
    assert cell_text(None, None) == "" and cell_text(0.1, None) == "0.1"  # CSV: full precision, empty null
    assert cell_text(4.47e15) == "4.4700e+15" and cell_text(999999.5) == "999999.5000"  # a VGAE threshold
    html = table_html(pa.table({"model": ["gat_small"], "parameters": [49858], "f1": [float("nan")]}))
    assert "<td>gat_small</td>" in html and '<td class="num">49,858</td>' in html and '<td class="num">-</td>' in html
