"""`kdgat pipeline`: the plan's shape, a full run on synthetic data, and its own -resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.hashing import sha256_file
from kdgat.pipeline.plan import TRAIN_VARIANTS, plan_steps

STEPS = {s.name: s for s in plan_steps()}


def test_plan_is_in_dependency_order_and_names_only_its_own_steps():
    seen = set()
    for step in plan_steps():
        assert set(step.needs) <= seen, f"{step.name} needs a later or unknown step"
        seen.add(step.name)
    assert len(seen) == len(STEPS)


def test_plan_wires_teachers_members_and_collectors():
    assert STEPS["train_gat_small_kd"].needs == ("graphs", "train_gat_large")
    assert STEPS["train_vgae_small_kd"].teacher == "train_vgae_large"
    assert STEPS["train_gat_small"].needs == ("graphs",) and not STEPS["train_gat_small"].kd
    assert STEPS["fuse_small_kd"].members == ("train_vgae_small_kd", "train_gat_small_kd")
    runs = {s.name for s in plan_steps() if s.stage in ("train", "fuse")}
    assert len(runs) == len(TRAIN_VARIANTS) + 2 + 2  # the GNNs, the hgb and novelty yardsticks, two fusions
    for yardstick in ("train_hgb_large", "train_novelty_large"):
        assert STEPS[yardstick].needs == ("graphs",) and not STEPS[yardstick].gpu
    assert runs | {"graphs"} == set(STEPS["evaluate"].needs)
    assert runs | {"evaluate"} == set(STEPS["lake"].needs)
    assert [s.name for s in plan_steps() if not s.per_dataset] == ["lake", "report"]
    # the in-vehicle detector: the student ensemble first (the default verdict), then its GAT
    assert STEPS["export"].members == ("fuse_small_kd", "train_gat_small_kd")
    # where training is attack-free: the distilled student VGAE
    assert STEPS["export"].members_for(False) == ("train_vgae_small_kd",)
    assert set(STEPS["export"].needs) == {
        "graphs", "fuse_small_kd", "train_gat_small_kd", "train_vgae_small_kd", "evaluate"
    }  # fmt: skip
    assert STEPS["export"].per_seed and "export" not in STEPS["lake"].needs
    assert STEPS["train_gat_small_kd"].process == "TRAIN_GAT_SMALL_KD"


def test_the_steps_that_learn_from_attacks_are_the_supervised_ones():
    """An attack-free training part skips exactly the GATs, hgb and the fusions; everything else runs."""
    skipped = {s.name for s in plan_steps() if not s.runs_for(False)}
    assert skipped == {"train_gat_large", "train_gat_small_kd", "train_gat_small", "train_hgb_large",
                       "fuse_large", "fuse_small_kd"}  # fmt: skip
    # nothing that runs without attacks reads a step that is skipped, except through its benign route
    for step in plan_steps():
        if step.runs_for(False) and step.stage not in ("evaluate", "lake", "export"):
            assert not set(step.needs) & skipped, step.name
    assert not set(STEPS["export"].members_for(False)) & skipped


# content_hash(asdict(step)) of every step at 277153a, before the attack-free route: a campaign of that
# version must find these parts of its recorded keys (the plan's shape re-runs nothing on upgrade; a changed
# default of a step's config, such as fusion.novel_alert for the fuse steps, does)
IDENTITIES_277153A = {
    "ingest": "449e939ddbcb6209", "graphs": "6f7f3d8f5e464b62", "train_vgae_large": "5dcf652ff8daa020",
    "train_gat_large": "86776b1a337b6d68", "train_vgae_small_kd": "2c7823c2190aedd2",
    "train_gat_small_kd": "3f640cdf8d984c78", "train_vgae_small": "ac5d2d4fea063c23",
    "train_gat_small": "f373532314a66600", "train_hgb_large": "ca52040910d9de4c",
    "train_novelty_large": "072a4da80b852bfc", "fuse_large": "ef4caf7da841da6b", "fuse_small_kd": "ed564c4ca95167ae",
    "evaluate": "b18402a185a5d3fd", "export": "c6af173fdd12b5b6", "lake": "d791a3cb3b847f0f",
    "report": "aac387f8727dbe6c",
}  # fmt: skip


def test_step_identities_are_those_campaigns_recorded_before_the_attack_free_route():
    from kdgat.core.hashing import content_hash
    from kdgat.pipeline.runner import _identity

    assert {s.name: content_hash(_identity(s)) for s in plan_steps()} == IDENTITIES_277153A
    # and the attack-trained route reads what it read then: export its fusion and GAT, not the student VGAE
    assert STEPS["export"].reads(True) == ("graphs", "fuse_small_kd", "train_gat_small_kd", "evaluate")
    assert STEPS["export"].reads(False) == ("graphs", "train_vgae_small_kd", "evaluate")


def _pipeline(tmp_path, *extra):
    args = ["pipeline", "-d", "synthetic", "--data-root", tmp_path / "data", "-o", tmp_path / "out",
            "--epochs", "1", "--episodes", "2", "--explain", "0", *extra]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.output


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("campaign")
    return tmp_path, _pipeline(tmp_path)


def test_pipeline_runs_every_step_and_prints_the_tables(campaign):
    tmp_path, output = campaign
    out = tmp_path / "out"
    assert "steps: 16 ran, 0 cached" in output
    # each training run says how long it trained in its own unit
    assert "parameters, 1 epoch (" in output and "parameters, 300 boosting iterations" in output
    assert "parameters, one pass" in output
    assert "Evaluation of synthetic, seed 42 (thresholds chosen on validation" in output and "fuse_small_kd" in output
    # one seed, the presets' (42): ingest and graphs per dataset, runs and evaluation per seed
    for path in ("synthetic/frames/manifest.json", "synthetic/graphs/metadata.json",
                 "synthetic/seed42/runs/gat_small_kd/model.pt", "synthetic/seed42/runs/fuse_large/fusion.pt",
                 "synthetic/seed42/eval/metrics.json", "lake/analytics.duckdb", "report/index.html"):  # fmt: skip
        assert (out / path).exists(), path
    student = json.loads((out / "synthetic/seed42/runs/gat_small_kd/metrics.json").read_text())
    assert student["teacher"] == str((out / "synthetic/seed42/runs/gat_large").resolve())
    evaluated = json.loads((out / "synthetic/seed42/eval/metrics.json").read_text())["runs"]
    assert len(evaluated) == 10 and {"hgb_large", "novelty_large"} <= set(evaluated)
    runs = out.resolve() / "synthetic/seed42/runs"
    assert {run["run_dir"] for run in evaluated.values()} == {
        str(runs / s.run_name) for s in plan_steps() if s.stage in ("train", "fuse")
    }  # absolute, resolved: the lake finds them from anywhere
    assert (tmp_path / "data/synthetic").is_dir()  # generated on first use

    from kdgat.detection.bundle import load_spec

    spec = load_spec(out / "synthetic/seed42/detector")  # checks every file's sha256
    assert [d.label for d in spec.detectors] == ["fusion_dqn_small_kd", "gat_small_kd"]  # evaluate's labels
    for det in spec.detectors:  # the thresholds evaluate chose on validation, not new ones
        assert det.threshold.value == evaluated[det.label]["threshold"]["threshold"]


def test_fusion_part_problem_reads_the_graph_manifest():
    """Each case says which problem, or none: the fields of this version, a manifest written before
    benign_graphs (its rounded attack_share; none recorded: unknown, left to `kdgat fuse`), no fusion part."""
    from kdgat.data.split import EMPTY_FUSION_PART, NO_FUSION_PART, ONE_CLASS_FUSION_PART
    from kdgat.pipeline.plan import fusion_part_problem

    train = {"attack_graphs": 10, "attack_share": 0.3}
    cases = [
        ({"attack_graphs": 3, "benign_graphs": 12, "attack_share": 0.2}, None),
        ({"attack_graphs": 40000, "benign_graphs": 1, "attack_share": 1.0}, None),  # 2.5e-5 benign rounds to 1.0
        ({"attack_graphs": 0, "benign_graphs": 9, "attack_share": 0.0}, ONE_CLASS_FUSION_PART),
        ({"attack_graphs": 40, "benign_graphs": 0, "attack_share": 1.0}, ONE_CLASS_FUSION_PART),
        ({"attack_graphs": 40, "attack_share": 1.0}, ONE_CLASS_FUSION_PART),  # before benign_graphs
        ({"attack_graphs": 40, "attack_share": 0.9}, None),
        ({"attack_graphs": 40, "attack_share": None}, None),
        (None, NO_FUSION_PART),
        # no window in the held-out blocks (too few of them, or shorter than a window): its own way out
        ({"graphs": 0, "attack_graphs": 0, "benign_graphs": 0, "attack_share": 0.0}, EMPTY_FUSION_PART),
    ]
    for fusion, expected in cases:
        parts = {"train": train, **({} if fusion is None else {"fusion": fusion})}
        assert fusion_part_problem({"parts": parts}) == expected, fusion
    none = {"attack_graphs": 0, "attack_share": 0.0}
    assert fusion_part_problem({"parts": {"train": none, "fusion": none}}) is None  # no fusion is planned there


def test_pipeline_stops_after_graphs_when_the_fusions_could_not_be_fitted(campaign, tmp_path):
    """A store whose training part holds attacks but whose fusion part holds one class would fail at
    `kdgat fuse`, once every member had trained: the pipeline says so right after the graphs step."""
    source, _ = campaign
    out = tmp_path / "out"
    shutil.copytree(source / "out", out, symlinks=True)
    manifest_path = out / "synthetic/graphs/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["summary"]["parts"]["fusion"].update(attack_graphs=0, attack_share=0.0)
    manifest_path.write_text(json.dumps(manifest))
    state_path = out / ".pipeline/synthetic/graphs.json"  # as if the pipeline had built the store so
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "output_sha256": sha256_file(manifest_path)}))
    args = ["pipeline", "-d", "synthetic", "--data-root", source / "data", "-o", out,
            "--epochs", "1", "--episodes", "2", "--explain", "0"]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code != 0
    assert "graphs (synthetic): cached" in result.output  # the store as recorded, not rebuilt
    assert "lacks attack or benign windows, so the fusions cannot be fitted" in result.output
    assert "train_vgae_large" not in result.output  # nothing after the graphs step


def test_pipeline_reruns_exactly_the_steps_whose_key_changed(campaign, monkeypatch):
    # one test, in order: every call below starts from the state the previous one left
    tmp_path, _ = campaign
    runs = tmp_path / "out/synthetic/seed42/runs"
    assert "steps: 0 ran, 16 cached" in _pipeline(tmp_path)
    before = (runs / "gat_large/model.pt").stat().st_mtime_ns

    # the same captures copied elsewhere with new modification times (a re-mounted or moved data
    # folder) are the same inputs: nothing re-runs
    moved = tmp_path / "moved-data"
    shutil.copytree(tmp_path / "data", moved, copy_function=shutil.copyfile)
    assert "steps: 0 ran, 16 cached" in _pipeline(tmp_path, "--data-root", moved)
    output = _pipeline(tmp_path, "--fusion", "weighted")
    # fusion changes: both fuse steps, then evaluate, export, lake and report; training is reused
    assert "steps: 6 ran, 10 cached" in output
    assert "fuse_large (synthetic, seed42): weighted" in output
    assert (runs / "gat_large/model.pt").stat().st_mtime_ns == before

    # a removed output re-runs its step alone
    (tmp_path / "out/report/index.html").unlink()
    output = _pipeline(tmp_path, "--fusion", "weighted")
    assert "steps: 1 ran, 15 cached" in output and (tmp_path / "out/report/index.html").exists()

    # a changed training config retrains from an empty run folder; it used to stop on the old
    # run's checkpoint ("holds a run with another config")
    output = _pipeline(tmp_path, "--fusion", "weighted", "--epochs", "2")
    # 6 trainings (not the yardsticks: no training loop), 2 fusions, evaluate, export, lake, report
    assert "steps: 12 ran, 4 cached" in output
    for model, scale, kd in TRAIN_VARIANTS:
        run = runs / f"{model}_{scale}{'_kd' if kd else ''}"
        assert json.loads((run / "config.json").read_text())["training"]["max_epochs"] == 2, run.name
        assert json.loads((run / "metrics.json").read_text())["epochs"] == 2, run.name

    # a change in what the GNNs compute (kdgat.core.config.GNN_REVISION) trains them again, not the yardsticks
    # (on a copy of the campaign: the tests after this one start from the state above)
    from kdgat.core import config

    other = tmp_path / "revision"
    shutil.copytree(tmp_path / "out", other / "out", symlinks=True)
    (other / "data").symlink_to(tmp_path / "data", target_is_directory=True)
    monkeypatch.setattr(config, "GNN_REVISION", "a later one")
    assert "steps: 12 ran, 4 cached" in _pipeline(other, "--fusion", "weighted", "--epochs", "2")


def test_pipeline_refuses_a_stage_output_as_its_campaign_or_lake_folder(tmp_path):
    """A campaign into a training run (or its lake into a graph store) would write folders into that output."""
    from kdgat.core.manifest import write_manifest

    run = tmp_path / "run"
    run.mkdir()
    write_manifest(run, stage="train", inputs=[], config={}, outputs=[], wall_time_s=0.0)
    before = sorted(p.name for p in run.iterdir())
    # a one-file dataset whose capture is unreadable: were the folder not refused, its ingest fails at once
    (tmp_path / "data/tiny").mkdir(parents=True)
    for name in ("a.log", "b.log"):
        (tmp_path / "data/tiny" / name).write_text("(0.1) can0 123#0\n")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  tiny:\n    description: one line\n    root: tiny\n    format: candump-l\n"
        "    train: [a.log]\n    test:\n      x: [b.log]\n"
    )
    common = ["pipeline", "-d", "tiny", "--catalog", str(catalog), "--data-root", str(tmp_path / "data"), "-o"]
    for args, says in (([str(run)], f"--out {run}: holds the output of `kdgat train`"),
                       ([str(tmp_path / "camp"), "--lake", str(run)], f"--lake {run}: holds the output")):  # fmt: skip
        result = CliRunner().invoke(app, [*common, *args])
        assert result.exit_code == 2 and says in result.stderr, result.stderr
        assert sorted(p.name for p in run.iterdir()) == before and not (tmp_path / "camp").exists()


def test_a_second_pipeline_on_a_campaign_in_use_is_refused_at_once(tmp_path):
    """A second `kdgat pipeline` on a running campaign took the first one's running step for an interrupted one,
    trained over it, and the first failed; it is refused at once now, naming the holder."""
    from kdgat.core.locks import WRITER_LOCK, writing

    (tmp_path / "data/tiny").mkdir(parents=True)
    for name in ("a.log", "b.log"):  # unreadable: a pipeline let through fails in its ingest instead
        (tmp_path / "data/tiny" / name).write_text("(0.1) can0 123#0\n")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  tiny:\n    description: one line\n    root: tiny\n    format: candump-l\n"
        "    train: [a.log]\n    test:\n      x: [b.log]\n"
    )
    args = ["pipeline", "-d", "tiny", "--catalog", catalog, "--data-root", tmp_path / "data", "-o", tmp_path / "camp"]
    with writing(tmp_path / "camp", "pipeline"):
        result = CliRunner().invoke(app, [str(a) for a in args])
    (line,) = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and line.startswith(f"error: {tmp_path / 'camp'}: `kdgat pipeline` (pid "), line
    assert "is writing in this folder now; wait for it to end, or give another folder" in line
    assert (tmp_path / "camp" / WRITER_LOCK).is_file() and not (tmp_path / "camp" / "tiny").exists()  # no step ran


def test_pipeline_unknown_dataset_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["pipeline", "-d", "nope", "-o", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "unknown dataset 'nope'" in result.output + (result.stderr if result.stderr_bytes else "")
    assert not (tmp_path / "o").exists()


def test_pipeline_on_attack_free_training_runs_the_benign_steps_and_exports_the_student_vgae(data_root, tmp_path):
    """crysys trains on attack-free captures only (as a user's own vehicle would): the GATs, hgb and the
    fusions are skipped, the VGAEs and the novelty yardstick are trained and evaluated at a threshold
    set on benign validation windows, the student VGAE is exported, and `kdgat detect` runs it. The
    synthetic dataset, which trains on attacks, runs its whole plan in the same campaign."""
    from kdgat.detection.bundle import load_spec
    from kdgat.lake import leaderboard

    root = tmp_path / "data"  # crysys from the shared captures (read only), synthetic generated beside it
    root.mkdir()
    (root / "crysys").symlink_to(data_root / "crysys", target_is_directory=True)
    out = tmp_path / "o"
    args = ["pipeline", "-d", "crysys", "-d", "synthetic", "--data-root", str(root), "-o", str(out), "--epochs", "1",
            "--episodes", "2", "--threads", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + str(result.exception)
    # crysys: 8 of its 14 steps (6 skipped); synthetic: all 14; lake and report
    assert "steps: 24 ran, 0 cached, 6 skipped (no attack window in training)" in result.output
    assert "train_gat_large (crysys, seed42): skipped (no attack window in training)" in result.output
    seed_dir = out / "crysys/seed42"
    assert sorted(p.name for p in (seed_dir / "runs").iterdir()) == [
        "novelty_large", "vgae_large", "vgae_small", "vgae_small_kd"
    ]  # fmt: skip
    evaluated = json.loads((seed_dir / "eval/metrics.json").read_text())
    assert evaluated["threshold_policy"] == "fpr:0.01" and len(evaluated["runs"]) == 4
    for entry in evaluated["runs"].values():
        assert entry["threshold"]["policy"] == "fpr:0.01"
    spec = load_spec(seed_dir / "detector")
    assert [d.label for d in spec.detectors] == ["vgae_small_kd"]
    assert spec.detectors[0].threshold.value == evaluated["runs"]["vgae_small_kd"]["threshold"]["threshold"]
    synthetic = json.loads((out / "synthetic/seed42/eval/metrics.json").read_text())
    assert synthetic["threshold_policy"] == "margin" and len(synthetic["runs"]) == 10
    assert [d.label for d in load_spec(out / "synthetic/seed42/detector").detectors] == [
        "fusion_dqn_small_kd", "gat_small_kd"
    ]  # fmt: skip
    board = leaderboard(out / "lake").to_pylist()
    assert {r["model"] for r in board if r["dataset"] == "crysys"} == {
        "vgae_large", "vgae_small", "vgae_small_kd", "novelty_large"
    }  # fmt: skip
    assert len([r for r in board if r["dataset"] == "synthetic"]) == 10

    rerun = CliRunner().invoke(app, args)
    assert "steps: 0 ran, 24 cached, 6 skipped" in rerun.output, rerun.output
    # another benign policy re-evaluates crysys (and re-exports, re-appends) without retraining
    rerun = CliRunner().invoke(app, [*args, "--benign-threshold", "fpr:0.05"])
    assert "steps: 4 ran, 20 cached, 6 skipped" in rerun.output, rerun.output
    assert json.loads((seed_dir / "eval/metrics.json").read_text())["threshold_policy"] == "fpr:0.05"

    # the exported detector on the capture with the attack
    verdicts = tmp_path / "verdicts.jsonl"
    capture = data_root / "crysys/S-1-1-malicious-CONST-msg-mod-0x410-0.4-0.6.log.xz"
    detected = CliRunner().invoke(app, ["detect", "-d", str(seed_dir / "detector"), str(capture), "-o", str(verdicts),
                                        "--threads", "2"])  # fmt: skip
    assert detected.exit_code == 0, detected.output + str(detected.exception)
    rows = [json.loads(line) for line in verdicts.read_text().splitlines()]
    threshold = load_spec(seed_dir / "detector").detectors[0].threshold.value
    assert len(rows) == 179 and any(row["label"] == 1 for row in rows)  # the modified 0x410 frames
    assert all(row["alert"] == (row["score"] >= threshold) for row in rows)  # the bundle's threshold decides


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("fpr:2", "--benign-threshold: threshold policy 'fpr:2'"),
        ("margin", "--benign-threshold: 'margin' needs attack"),
    ],
)
def test_pipeline_refuses_a_bad_benign_threshold_before_any_step(data_root, tmp_path, policy, says):
    """Only a false-alarm budget can set a threshold on validation windows that are all benign."""
    args = ["pipeline", "-d", "crysys", "--data-root", str(data_root), "-o", str(tmp_path / "o"),
            "--benign-threshold", policy]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    message = result.stderr if result.stderr_bytes else result.output
    assert says in message and len(message.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_more_seeds_run_only_the_new_seeds_steps_and_the_lake_aggregates_them(campaign):
    # after the ordered test above: same options plus a second seed
    from kdgat.lake import kd_impact, leaderboard

    tmp_path, _ = campaign
    out = tmp_path / "out"
    output = _pipeline(tmp_path, "--fusion", "weighted", "--epochs", "2", "--seed", "42", "--seed", "7")
    # seed 42's runs are reused; seed 7 trains, fuses, evaluates and exports; lake and report see both seeds
    assert "steps: 14 ran, 14 cached" in output
    assert "train_gat_large (synthetic, seed7)" in output and "Evaluation of synthetic, seed 7" in output
    for seed in (42, 7):
        cfg = json.loads((out / f"synthetic/seed{seed}/runs/gat_small/config.json").read_text())
        assert cfg["seed"] == seed
    # the lake also holds the first campaign's runs (1 epoch, dqn): another setup, so another row
    board = leaderboard(out / "lake", "synthetic").to_pylist()
    for model in ("gat_small_kd", "fusion_weighted_large"):
        assert sorted(r["n_seeds"] for r in board if r["model"] == model)[-1] == 2, model
    assert max(r["n_pairs"] for r in kd_impact(out / "lake").to_pylist() if r["family"] == "gat") == 2

    # then a GAT-only setting retrains the GATs and what reads them, in both seeds; the VGAEs and yardsticks stay
    # cached (a training step is keyed by its own model's config section, not by every model's)
    runs = out / "synthetic/seed42/runs"
    vgae_before = (runs / "vgae_large/model.pt").stat().st_mtime_ns
    args = ("--fusion", "weighted", "--epochs", "2", "--seed", "42", "--seed", "7", "-O", "gat.dropout=0.3")
    output = _pipeline(tmp_path, *args)
    assert "steps: 16 ran, 12 cached" in output  # per seed 3 GATs, 2 fusions, evaluate, export; lake, report
    assert (runs / "vgae_large/model.pt").stat().st_mtime_ns == vgae_before
    assert json.loads((runs / "gat_small/config.json").read_text())["gat"]["dropout"] == 0.3


def test_ingest_key_follows_capture_content_not_its_path_or_time(data_root, tmp_path):
    """A re-mounted or copied capture keeps its key; one changed byte changes it."""
    from types import SimpleNamespace

    from kdgat.data.catalog import dataset_sources, load_catalog
    from kdgat.pipeline.runner import _capture_stamp

    sources = dataset_sources("road", load_catalog()["road"], data_root)
    copies = []
    for src in sources:
        copy = tmp_path / Path(src.path).name
        copy.write_bytes(Path(src.path).read_bytes())
        copies.append(SimpleNamespace(path=copy, output_name=src.output_name))
    assert _capture_stamp(copies) == _capture_stamp(sources)

    raw = bytearray(copies[0].path.read_bytes())
    raw[len(raw) // 2] ^= 1
    copies[0].path.write_bytes(bytes(raw))
    assert _capture_stamp(copies) != _capture_stamp(sources)


def test_an_empty_synthetic_folder_is_generated(tmp_path):
    """The synthetic captures are generated where their folder is missing or empty (a folder made ahead, by hand
    or by a container's bind mount), not only where it is missing."""
    from kdgat.pipeline.runner import PipelineOptions, PipelineRunner

    (tmp_path / "data/synthetic").mkdir(parents=True)
    runner = PipelineRunner(["synthetic"], tmp_path / "out", PipelineOptions(data_root=tmp_path / "data"))
    sources = runner._sources("synthetic")
    assert sources and all(
        s.path.is_file() and s.path.parent.is_relative_to(tmp_path / "data/synthetic") for s in sources
    )


def test_a_changed_catalog_entry_ingests_again(tmp_path, data_root):
    """Marking a capture benign, naming another reader or attack type changes the frames: the ingest key changes
    (it held only output names and file hashes, so the old store was reused silently). A built-in dataset keeps
    the key campaigns recorded; a description or a moved root is not a reason to ingest again."""
    from kdgat.pipeline.runner import PipelineOptions, PipelineRunner

    def ingest_key(entry: str) -> str:
        user = tmp_path / "mine.yaml"
        user.write_text("datasets:\n  mine:\n" + entry)
        runner = PipelineRunner(["mine"], tmp_path / "out", PipelineOptions(data_root=data_root, catalog=[user]))
        return runner._key("mine", None, STEPS["ingest"])

    first = "    description: d\n    root: road/attacks\n    train: [fuzzing_attack_1.csv*]\n"
    base = ingest_key(first)
    assert ingest_key(first.replace("description: d", "description: other words")) == base
    assert ingest_key(first.replace("root: road/attacks", f"root: {data_root.resolve()}/road/attacks")) == base
    for changed in ("[{path: fuzzing_attack_1.csv*, attack_type: spoof}]", "[{path: fuzzing_attack_1.csv*, "
                    "format: road}]", "[{path: fuzzing_attack_1.csv*, benign: true}]"):  # fmt: skip
        assert ingest_key(first.replace("[fuzzing_attack_1.csv*]", changed)) != base, changed
    assert ingest_key(first + "    format: road\n") != base
    # a built-in dataset's ingest key is what campaigns recorded: the key of `road` in the campaign of commit
    # 5c98467 (its .pipeline/road/ingest.json), over the same captures of ../shared/data
    builtin = PipelineRunner(["road"], tmp_path / "out2", PipelineOptions(data_root=data_root))
    assert builtin._key("road", None, STEPS["ingest"]) == "d761114edb780275"


def test_a_fusion_setting_changes_the_fuse_steps_only(tmp_path):
    """-O fusion.epochs=3 trained every model of a cached campaign again: the training steps' keys held the fusion
    section (the fuse runs' own, read through their dqn config), now given to the fuse steps only."""
    from kdgat.pipeline.runner import PipelineOptions, PipelineRunner

    def arguments(*overrides: str) -> dict[str, dict]:
        runner = PipelineRunner(["synthetic"], tmp_path / "out", PipelineOptions(overrides=list(overrides)))
        return {s.name: runner._arguments("synthetic", 0, s) for s in plan_steps() if s.stage in ("train", "fuse")}

    base, changed = arguments(), arguments("fusion.epochs=3", "fusion.mlp_lr=0.002")
    for name, args in base.items():
        assert (changed[name] != args) is name.startswith("fuse_"), name


def test_a_step_whose_output_was_made_again_by_hand_runs_again(campaign, tmp_path):
    """A run trained again by hand into a campaign's folder (another manifest) was taken as cached: the campaign's
    evaluation, lake and report then described a model it never made. Its step runs again; the others stay cached
    (their keys hold no output of it), and the pipeline's own run is back. On a copy of the campaign."""
    from kdgat.core.config import resolve_config
    from kdgat.stages.train import run as run_train

    source, _ = campaign
    shutil.copytree(source / "out", tmp_path / "out", symlinks=True)
    (tmp_path / "data").symlink_to(source / "data", target_is_directory=True)
    args = ("--fusion", "weighted", "--epochs", "2")  # the campaign's options after the ordered test above
    _pipeline(tmp_path, *args)  # (run alone, this test trains them first)
    state = tmp_path / "out/.pipeline/synthetic/seed42/train_hgb_large.json"  # as an earlier version left it
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items() if k != "output_sha256"}))
    assert "steps: 0 ran, 16 cached" in _pipeline(tmp_path, *args)
    assert "output_sha256" in json.loads(state.read_text())  # recorded on its cached pass
    hgb = tmp_path / "out/synthetic/seed42/runs/hgb_large"
    ours = json.loads((hgb / "config.json").read_text())["hgb"]["max_iter"]
    run_train(
        resolve_config("hgb", "large", overrides=[f"hgb.max_iter={ours + 1}"]), hgb.parent.parent.parent / "graphs", hgb
    )
    output = _pipeline(tmp_path, *args)
    assert "steps: 1 ran, 15 cached" in output and "train_hgb_large (synthetic, seed42): cached" not in output
    assert json.loads((hgb / "config.json").read_text())["hgb"]["max_iter"] == ours
    assert "steps: 0 ran, 16 cached" in _pipeline(tmp_path, *args)
