"""What the lake's views keep when runs are evaluated on new captures, trained again for a seed, distilled
from another teacher or with other KD settings, and what an append of damaged run files leaves behind.
Hand-made run folders (tests/support/lake_sample.py), real DuckDB and Parquet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.lake_sample import EVALUATED, f1_of, write_eval_run, write_run_set, write_store, write_train_run
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.errors import KdgatError
from kdgat.core.hashing import content_hash, sha256_file
from kdgat.lake import append_runs, build_lake, kd_impact, leaderboard, query

LABELS = ("vgae_large", "gat_large", "vgae_small_kd", "gat_small_kd", "gat_small", "fusion_dqn_small_kd", "eval")


def folders(paths: dict[str, Path]) -> list[Path]:
    return [paths[k] for k in LABELS]


def value(lake: Path, sql: str):
    return query(lake, sql).column(0)[0].as_py()


def rewrite(run_dir: Path, *, config=None, created_at: str | None = None) -> Path:
    """Change a hand-made run's config (its manifest's config and hash with it) or its creation time."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if config is not None:
        cfg = json.loads((run_dir / "config.json").read_text())
        config(cfg)
        (run_dir / "config.json").write_text(json.dumps(cfg, indent=2))
        manifest.update(config=cfg, config_hash=content_hash(cfg))
    if created_at is not None:
        manifest["created_at"] = created_at
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run_dir


def test_an_evaluation_on_new_captures_is_kept_beside_the_own_store_figures(tmp_path):
    """`graphs --like` + `evaluate`: the same runs scored on another store are another evaluation (it was given
    the first one's id and replaced it), and the leaderboard keeps reading the runs' own store."""
    paths = write_run_set(tmp_path / "campaign", dataset="hand", seed=1)
    lake = tmp_path / "lake"
    append_runs(folders(paths), lake)
    before = leaderboard(lake, "hand").to_pylist()
    like = write_store(tmp_path / "new", "hand", ("test_09_new_capture",))
    counts = {label: {"test_09_new_capture": (5, 1, 90, 5)} for label in EVALUATED}
    other = write_eval_run(tmp_path / "new" / "eval", like, "hand", {k: paths[k] for k in EVALUATED}, counts)
    rewrite(other, created_at="2099-01-01T00:00:00+00:00")  # the newest evaluation of these runs
    append_runs([other], lake)
    assert value(lake, "SELECT count(DISTINCT eval_run_id) FROM metrics") == 2
    assert value(lake, "SELECT count(*) FROM metrics WHERE scenario = 'test_09_new_capture'") == len(EVALUATED)
    assert value(lake, "SELECT count(*) FROM v_run_scores WHERE scenario = 'test_09_new_capture'") == 0
    assert leaderboard(lake, "hand").to_pylist() == before
    from kdgat.stages.report import run as write_report

    page = Path(write_report(lake, tmp_path / "report").summary["index"]).read_text(encoding="utf-8")
    assert "test_01_known_vehicle_known_attack" in page and "test_09_new_capture" not in page  # curves beside it


def test_students_of_two_teachers_are_two_runs(tmp_path):
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    store = paths["graphs"]
    teacher = write_train_run(tmp_path / "b" / "gat_large", store, "hand", "gat", "large", False, 1)
    student = write_train_run(tmp_path / "b" / "gat_small_kd", store, "hand", "gat", "small", True, 1, teacher)
    lake = tmp_path / "lake"
    first_teacher, first, _, second = append_runs([paths["gat_large"], paths["gat_small_kd"], teacher, student], lake)
    assert first != second  # they shared an id: the lake kept one of them
    assert value(lake, "SELECT count(*) FROM runs WHERE model = 'gat_small_kd'") == 2
    assert first_teacher == value(lake, f"SELECT teacher_run_id FROM runs WHERE run_id = '{first}'")


def _student_with_alpha(paths: dict[str, Path], root: Path, alpha: float, counts) -> tuple[Path, Path]:
    """A copy of the KD student trained with another kd.alpha, and its evaluation."""
    student = root / "runs" / "gat_small_kd"
    shutil.copytree(paths["gat_small_kd"], student)

    def change(cfg):
        cfg["kd"]["alpha"] = alpha

    rewrite(student, config=change)
    evaluation = write_eval_run(root / "eval", paths["graphs"], "hand", {"gat_small_kd": student}, counts)
    return student, evaluation


def test_kd_impact_has_one_row_per_kd_setup_paired_with_the_same_no_kd_student(tmp_path):
    """Two KD settings over one seed: +0.10 and -0.10 F1 against the no-KD student were averaged into one row."""
    plain = (40, 10, 40, 10)  # F1 0.8 on validation and both tests
    better, worse = (45, 5, 45, 5), (35, 15, 35, 15)  # F1 0.9 and 0.7
    flat = {"validation": plain, **{s: plain for s in ("test_01_known_vehicle_known_attack",
                                                      "test_02_unknown_vehicle_known_attack")}}  # fmt: skip
    counts = {label: dict(flat) for label in EVALUATED}
    counts["gat_small_kd"] = {k: better for k in flat}
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1, counts=counts)
    other, evaluation = _student_with_alpha(paths, tmp_path / "b", 0.9, {"gat_small_kd": {k: worse for k in flat}})
    lake = tmp_path / "lake"
    append_runs([*folders(paths), other, evaluation], lake)
    setups = {r["setup"] for r in leaderboard(lake, "hand").to_pylist() if r["model"] == "gat_small_kd"}
    rows = [r for r in kd_impact(lake).to_pylist() if r["family"] == "gat"]
    assert len(rows) == 2 and {r["setup"] for r in rows} == setups
    assert sorted(r["val_f1_delta_mean"] for r in rows) == pytest.approx([-0.1, 0.1])
    assert all(r["n_pairs"] == 1 and r["student_val_f1"] == pytest.approx(0.8) for r in rows)


def test_a_setup_trained_again_for_a_seed_counts_once(tmp_path):
    """A VGAE trained again after a change to the GAT's section only (another config hash, the same setup) is
    the same seed of the same experiment: the leaderboard counts it once, with the latest run's figures (and the lake
    knows it by the first one's id: the GAT's section is not its config)."""
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    again = tmp_path / "b" / "runs" / "vgae_large"
    shutil.copytree(paths["vgae_large"], again)

    def change(cfg):
        cfg["gat"]["hidden"] += 1

    rewrite(again, config=change, created_at="2099-01-01T00:00:00+00:00")
    counts = {"vgae_large": {k: (50, 0, 50, 0) for k in ("validation", "test_01_known_vehicle_known_attack",
                                                         "test_02_unknown_vehicle_known_attack")}}  # fmt: skip
    evaluation = write_eval_run(tmp_path / "b" / "eval", paths["graphs"], "hand", {"vgae_large": again}, counts)
    rewrite(evaluation, created_at="2099-01-01T00:00:01+00:00")
    lake = tmp_path / "lake"
    append_runs([*folders(paths), again, evaluation], lake)
    # its own config is the first one's: one run id, the later folder's rows replace the first's
    assert value(lake, "SELECT count(*) FROM runs WHERE model = 'vgae_large'") == 1
    (row,) = [r for r in leaderboard(lake, "hand").to_pylist() if r["model"] == "vgae_large"]
    assert (row["n_runs"], row["n_seeds"]) == (1, 1)
    assert value(lake, "SELECT n_runs FROM v_parameters WHERE model = 'vgae_large'") == 1
    assert row["val_f1_mean"] == pytest.approx(1.0) and row["test_f1_std"] is None  # one run: no spread


def test_a_run_is_known_by_its_own_config_and_the_store_it_trained_on(tmp_path):
    """The lake's id of a trained run: one config on two graph stores of a dataset (another stride, other captures)
    was one id, and the second run's rows replaced the first's; two folders that differ only in another model's
    section (what `kdgat pipeline` and a Nextflow task hold for the same weights) were two runs."""
    from kdgat.lake.records import identify

    stores = [write_store(tmp_path / n, "hand", (f"test_{n}",)) for n in ("a", "b")]
    on_a, on_b = (write_train_run(s.parent / "runs/gat", s, "hand", "gat", "small", False, 1) for s in stores)
    twin = rewrite(shutil.copytree(on_a, tmp_path / "c" / "gat"), config=lambda cfg: cfg["vgae"].update(latent_dim=3))
    assert identify(on_a).run_id != identify(on_b).run_id
    assert identify(twin).run_id == identify(on_a).run_id
    lake = tmp_path / "lake"
    append_runs([on_a, on_b], lake)
    assert value(lake, "SELECT count(DISTINCT store_sha256) FROM runs WHERE model = 'gat_small'") == 2


def test_the_configs_table_holds_the_settings_each_run_learnt_with(tmp_path):
    """A GAT student learns with its section's batch size (64), not training's (256); a DQN fusion with the dqn
    section's learning rate and batch size, and no epochs or patience: the table said training's for both."""
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    lake = tmp_path / "lake"
    append_runs(folders(paths), lake)
    sql = "SELECT r.model, c.* FROM configs c JOIN runs r USING (run_id)"
    rows = {r["model"]: r for r in query(lake, sql).to_pylist()}
    student = json.loads((paths["gat_small"] / "config.json").read_text())
    assert rows["gat_small"]["batch_size"] == student["gat"]["batch_size"] != student["training"]["batch_size"]
    assert rows["gat_small"]["patience"] == student["gat"]["patience"]
    dqn = json.loads((paths["fusion_dqn_small_kd"] / "config.json").read_text())["dqn"]
    fusion = rows["fusion_dqn_small_kd"]
    assert (fusion["lr"], fusion["batch_size"], fusion["weight_decay"]) == (
        dqn["lr"],
        dqn["batch_size"],
        dqn["weight_decay"],
    )
    assert fusion["max_epochs"] is None and fusion["patience"] is None and fusion["dqn_episodes"] == dqn["episodes"]
    # the model columns of a run's own section only (a VGAE's row gave the dqn section's episodes)
    vgae = rows["vgae_large"]
    assert vgae["vgae_latent_dim"] is not None and vgae["dqn_episodes"] is None and vgae["gat_hidden"] is None
    assert rows["gat_small"]["vgae_latent_dim"] is None and rows["gat_small"]["gat_hidden"] == student["gat"]["hidden"]


def _damaged(paths: dict[str, Path], what: str) -> Path:
    run = paths["eval" if what == "eval" else "gat_small"]
    if what == "metrics":
        document = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**document, "epochs": "ten"}))
    elif what == "curves":
        log = run / "logs" / "metrics.csv"
        lines = log.read_text().splitlines()
        lines[2] = lines[2].replace("0.8", "abc", 1)
        log.write_text("\n".join(lines) + "\n")
    elif what == "outside":  # a manifest naming files outside its folder: they were hashed into `artifacts`
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["outputs"] += [{"path": "/etc/hostname"}, {"path": "../../../../../../etc/passwd"}]
        (run / "manifest.json").write_text(json.dumps(manifest))
    else:
        document = json.loads((run / "metrics.json").read_text())
        del document["runs"]["gat_large"]["test"]
        (run / "metrics.json").write_text(json.dumps(document))
    return run


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("metrics", "a value of its `runs` row is not recordable"),
        ("curves", "metrics.csv:3: not a training log row"),
        ("eval", "its files are not what its stage writes (missing 'test')"),
        ("outside", "lists '/etc/hostname', which is not in the run folder"),
    ],
)
def test_a_damaged_run_among_several_is_one_line_and_writes_nothing(tmp_path, what, said):
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    damaged = _damaged(paths, what)
    lake = tmp_path / "lake"
    with pytest.raises(KdgatError) as caught:
        append_runs(folders(paths), lake)
    assert said in str(caught.value) and str(damaged) in str(caught.value), caught.value
    assert not list(lake.rglob("*.parquet"))  # not one of the healthy runs before it was committed
    result = CliRunner().invoke(app, ["lake", "append", *[x for d in folders(paths) for x in ("--runs", str(d))],
                                      "--lake", str(lake)])  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and said in lines[0], result.stderr


def test_a_run_whose_files_are_links_is_appended(tmp_path):
    """git-annex and DVC keep a run's files as links into their stores: still the run's own files (a manifest
    naming a path outside the folder is refused: the damaged-run test above)."""
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    run = paths["gat_small"]
    store = tmp_path / "annex"
    store.mkdir()
    (run / "model.pt").rename(store / "model.pt")
    (run / "model.pt").symlink_to(store / "model.pt")
    append_runs(folders(paths), tmp_path / "lake")
    assert value(tmp_path / "lake", "SELECT count(*) FROM artifacts WHERE path LIKE '%gat_small/model.pt'") == 1


def test_a_moved_lake_answers_from_its_new_place(tmp_path):
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    lake = tmp_path / "lake"
    append_runs(folders(paths), lake)
    build_lake(lake)
    before = leaderboard(lake, "hand").to_pylist()
    moved = tmp_path / "elsewhere" / "lake"
    moved.parent.mkdir()
    shutil.move(lake, moved)
    assert leaderboard(moved, "hand").to_pylist() == before  # the views pointed at the old path


def test_the_report_and_the_results_table_give_each_setup_its_own_parameter_count(tmp_path):
    """Both read v_parameters: the report took the latest run per model, bench/quality.py the largest count."""
    import importlib.util

    from kdgat.stages.report import run as write_report

    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    wider = tmp_path / "b" / "runs" / "gat_small"
    shutil.copytree(paths["gat_small"], wider)

    def change(cfg):
        cfg["gat"]["hidden"] += 8

    rewrite(wider, config=change, created_at="2000-01-01T00:00:00+00:00")  # the older run of the two
    metrics = json.loads((wider / "metrics.json").read_text())
    (wider / "metrics.json").write_text(json.dumps({**metrics, "parameters": 240_000}))
    evaluation = write_eval_run(
        tmp_path / "b" / "eval",
        paths["graphs"],
        "hand",
        {"gat_small": wider},
        {"gat_small": {"validation": (40, 10, 40, 10), "test_x": (40, 10, 40, 10)}},
    )
    lake = tmp_path / "lake"
    append_runs([*folders(paths), wider, evaluation], lake)
    counts = sorted(r["parameters"] for r in query(lake, "SELECT * FROM v_parameters WHERE model = 'gat_small'")
                    .to_pylist())  # fmt: skip
    assert counts == [61_698, 240_000]
    spec = importlib.util.spec_from_file_location("quality", Path(__file__).parents[1] / "bench" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    lines = [line for line in quality.tables(lake, dataset="hand").splitlines() if "`gat_small`" in line]
    assert {"61,698", "240,000"} <= {cell.strip() for line in lines for cell in line.split("|")}, lines
    page = Path(write_report(lake, tmp_path / "report").summary["index"]).read_text(encoding="utf-8")
    assert all(any(f in page for f in (f"{n}", f"{n:,}")) for n in counts)


def test_a_reader_opened_before_two_builds_still_reads_its_tables(tmp_path):
    """Each build deleted every generation but the last two, also the one an open connection (a report being
    written while another campaign's LAKE task builds) was reading."""
    from kdgat.lake.queries import connect, run_sql

    first = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    lake = tmp_path / "lake"
    append_runs(folders(first), lake)
    with connect(lake) as reader:
        for seed in (2, 3):
            append_runs(folders(write_run_set(tmp_path / f"s{seed}", dataset="hand", seed=seed)), lake)
            build_lake(lake)
        assert run_sql(reader, "SELECT count(*) AS n FROM runs").column("n")[0].as_py() == len(LABELS)


def test_an_evaluation_appended_before_its_runs_waits_for_them(tmp_path):
    """Its rows had no seed and no setup: every model of it became one leaderboard row with n_seeds 0 and
    KD impact 0 pairs, until the runs were appended."""
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    lake = tmp_path / "lake"
    append_runs([paths["eval"]], lake)
    assert value(lake, "SELECT count(*) FROM metrics") > 0
    assert value(lake, "SELECT count(*) FROM v_leaderboard") == 0
    append_runs(folders(paths), lake)
    rows = leaderboard(lake, "hand").to_pylist()
    assert len(rows) == len(EVALUATED) and all(r["n_seeds"] == 1 and r["setup"] for r in rows)


def test_the_student_gap_pairs_a_teacher_fusion_with_each_student_setup_apart(tmp_path):
    """bench/quality.py's "F1 lost by the student fusion" joined every student fusion of a seed to the teacher's:
    with two student setups (e.g. two DQN widths) it printed one gap of their average."""
    import importlib.util

    from support.lake_sample import write_fuse_run

    lake, f1 = tmp_path / "lake", {}
    scenario = "test_01_known_vehicle_known_attack"
    counts = {"teacher": (40, 0, 50, 10), "student": (30, 0, 50, 20), "wider": (45, 0, 50, 5)}
    for seed in (1, 2):
        paths = write_run_set(tmp_path / f"s{seed}", dataset="hand", seed=seed)
        runs = {"teacher": write_fuse_run(paths["fusion_dqn_small_kd"].parent / "fusion_dqn_large", paths["graphs"],
                                          "hand", paths["vgae_large"], paths["gat_large"], False, seed, "large"),
                "student": paths["fusion_dqn_small_kd"]}  # fmt: skip
        wider = tmp_path / f"s{seed}" / "runs" / "fusion_dqn_small_wider"
        shutil.copytree(paths["fusion_dqn_small_kd"], wider)
        runs["wider"] = rewrite(wider, config=lambda cfg: cfg["dqn"].update(hidden=cfg["dqn"]["hidden"] + 8))
        label = {"teacher": "fusion_dqn_large", "student": "fusion_dqn_small_kd", "wider": "fusion_dqn_small_kd"}
        for name, run in runs.items():  # one evaluation per run: two student fusions would share a label in one
            evaluation = write_eval_run(tmp_path / f"s{seed}" / f"eval_{name}", paths["graphs"], "hand",
                                        {label[name]: run}, {label[name]: {"validation": (40, 1, 50, 9),
                                                                          scenario: counts[name]}})  # fmt: skip
            append_runs([run, evaluation], lake)
        append_runs(folders(paths)[:-2], lake)  # the members (not the set's own evaluation)
    for name, value in counts.items():
        f1[name] = f1_of(value)
    spec = importlib.util.spec_from_file_location("quality", Path(__file__).parents[1] / "bench" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    lines = [line for line in quality.student_gap(lake, "hand") if scenario in line]
    assert len(lines) == 2, lines  # one per student setup, each against the one teacher setup
    gaps = sorted(float(line.split(": ")[1].split(" ")[0]) for line in lines)
    assert gaps == pytest.approx(sorted(round(100 * (f1["teacher"] - f1[s]), 1) for s in ("student", "wider")))
    assert all("± 0.0 points" in line and "(2 seed(s))" in line for line in lines), lines


def test_a_damaged_table_file_is_one_line_when_the_views_are_built(tmp_path):
    """A table file of the lake cut short: `kdgat leaderboard` and `kdgat lake build` ended in DuckDB's
    traceback ("No magic bytes found")."""
    lake = tmp_path / "lake"
    append_runs(folders(write_run_set(tmp_path / "a", dataset="hand", seed=1)), lake)
    build_lake(lake)
    (lake / "analytics.duckdb").unlink()  # the views are built again on the next query
    table = sorted(lake.glob("tables/*/metrics.parquet"))[-1]
    table.write_bytes(table.read_bytes()[:100])
    for args in (["leaderboard"], ["lake", "build"]):
        result = CliRunner().invoke(app, [*args, "--lake", str(lake)])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("error: ") and str(table) in lines[0] and "Traceback" not in result.stderr
        assert f"move {table.parent} out of the lake" in " ".join(result.stderr.split()), result.stderr
    shutil.move(table.parent, tmp_path / "damaged")  # the way out the line gives works
    append_runs(folders(write_run_set(tmp_path / "a", dataset="hand", seed=1)), lake)
    assert CliRunner().invoke(app, ["leaderboard", "--lake", str(lake)]).exit_code == 0


def test_a_member_trained_again_since_is_named_as_such(tmp_path):
    """The folder is there, with other weights than the fusion read: "not found" sent the user looking for a
    folder that exists."""
    paths = write_run_set(tmp_path / "a", dataset="hand", seed=1)
    weights = paths["vgae_small_kd"] / "model.pt"
    weights.write_bytes(weights.read_bytes() + b"trained again")
    with pytest.raises(KdgatError) as caught:
        append_runs([paths["fusion_dqn_small_kd"]], tmp_path / "lake")
    said = str(caught.value)
    assert f"fusion member {paths['vgae_small_kd'].resolve()} holds other weights" in said, said
    shutil.rmtree(paths["vgae_small_kd"])
    with pytest.raises(KdgatError, match="vgae_small_kd not found"):
        append_runs([paths["fusion_dqn_small_kd"]], tmp_path / "lake")


def _same_weights_in_two_seeds(seeds: dict[int, dict[str, Path]], label: str) -> None:
    """Seed 1's `label` gets seed 0's weights, and seed 1's evaluation records their hash (a deterministic model)."""
    same = seeds[0][label] / "model.pt"
    (seeds[1][label] / "model.pt").write_bytes(same.read_bytes())
    manifest_file = seeds[1]["eval"] / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    (entry,) = [e for e in manifest["inputs"] if e["path"] == str(seeds[1][label] / "model.pt")]  # one, or no test
    entry["sha256"] = sha256_file(same)
    manifest_file.write_text(json.dumps(manifest, indent=2))


def _evaluated_by(lake: Path, model: str) -> list[tuple[str, str]]:
    """(evaluation folder, evaluated run folder) of every evaluation of ``model`` in the lake."""
    linked = query(
        lake,
        "SELECT e.run_dir AS eval_dir, r.run_dir AS evaluated FROM (SELECT DISTINCT run_id, eval_run_id FROM metrics "
        f"WHERE model = '{model}') m JOIN runs e ON e.run_id = m.eval_run_id JOIN runs r ON r.run_id = m.run_id",
    ).to_pylist()
    return sorted((row["eval_dir"], row["evaluated"]) for row in linked)


def test_published_copies_link_each_seed_to_its_own_run_when_two_seeds_trained_the_same_weights(tmp_path):
    """Nextflow's published results once the work folders are gone: the recorded path (a task folder) shares only
    the run's name with either seed's copy, so the copy beside the evaluation (its seed<k>) is the one."""
    seeds = {s: write_run_set(tmp_path / "work" / f"task{s}", dataset="hand", seed=s) for s in (0, 1)}
    _same_weights_in_two_seeds(seeds, "gat_small")
    published = {}
    for seed, paths in seeds.items():
        target = tmp_path / "results" / "hand" / f"seed{seed}"
        published[seed] = {k: target / v.relative_to(tmp_path / "work" / f"task{seed}") for k, v in paths.items()}
        shutil.copytree(tmp_path / "work" / f"task{seed}", target)
    shutil.rmtree(tmp_path / "work")
    lake = tmp_path / "lake"
    append_runs(folders(published[0]) + folders(published[1]), lake)
    assert _evaluated_by(lake, "gat_small") == [
        (str(published[s]["eval"].resolve()), str(published[s]["gat_small"].resolve())) for s in (0, 1)
    ]


def test_a_moved_campaign_links_each_seed_to_its_own_run_when_two_seeds_trained_the_same_weights(tmp_path):
    """A deterministic model (the novelty yardstick) writes byte-identical weights in every seed. After the campaign
    moved, the evaluated run is looked for by name among the folders appended together: the one of its own seed
    (the longest part of the recorded path it shares) is taken, not the first of that name (seed 0's)."""
    seeds = {s: write_run_set(tmp_path / "camp" / "hand" / f"seed{s}", dataset="hand", seed=s) for s in (0, 1)}
    _same_weights_in_two_seeds(seeds, "gat_small")
    shutil.move(tmp_path / "camp", tmp_path / "moved")
    moved = {
        seed: {k: tmp_path / "moved" / v.relative_to(tmp_path / "camp") for k, v in paths.items()}
        for seed, paths in seeds.items()
    }
    lake = tmp_path / "lake"
    append_runs(folders(moved[0]) + folders(moved[1]), lake)
    assert _evaluated_by(lake, "gat_small") == [
        (str(moved[s]["eval"].resolve()), str(moved[s]["gat_small"].resolve())) for s in (0, 1)
    ]
    assert value(lake, "SELECT max(n_seeds) FROM v_leaderboard WHERE model = 'gat_small'") == 2


def test_a_scenario_without_attacks_has_no_f1_and_test_means_run_over_the_same_scenarios(tmp_path):
    """A benign-only test capture: binary_metrics gives F1 0 (nothing found, nothing to find) and no PR-AUC. Counted
    as 0 in the mean test F1 it penalised a detector without a false alarm, over other scenarios than the PR-AUC's."""
    attacks = {"test_01_a": (40, 5, 50, 10), "test_02_b": (30, 0, 60, 20)}
    counts = {"validation": (45, 2, 50, 5), **attacks, "test_03_benign": (0, 3, 97, 0)}
    paths = write_run_set(
        tmp_path / "c", dataset="hand", seed=1, scenarios=("test_01_a", "test_02_b", "test_03_benign"),
        counts={label: counts for label in EVALUATED},
    )  # fmt: skip
    lake = tmp_path / "lake"
    append_runs(folders(paths), lake)
    rows = query(lake, "SELECT f1, pr_auc, mcc, fpr FROM v_run_scores WHERE scenario = 'test_03_benign'").to_pylist()
    assert len(rows) == len(EVALUATED)
    assert all(r["f1"] is None and r["pr_auc"] is None and r["mcc"] is None for r in rows)
    assert all(r["fpr"] == pytest.approx(0.03) for r in rows)
    (row,) = [r for r in leaderboard(lake, "hand").to_pylist() if r["model"] == "gat_large"]
    assert row["test_f1_mean"] == pytest.approx(sum(f1_of(c) for c in attacks.values()) / 2)
    assert row["test_fpr_mean"] == pytest.approx((5 / 55 + 0 + 0.03) / 3)  # every scenario has an FPR
    (benign,) = [
        r
        for r in leaderboard(lake, "hand", scenarios=True).to_pylist()
        if r["model"] == "gat_large" and r["scenario"] == "test_03_benign"
    ]
    assert benign["test_f1_mean"] is None and benign["test_fpr_mean"] == pytest.approx(0.03)


def test_one_value_has_no_spread_and_kd_means_run_over_the_pairs_of_their_delta(tmp_path):
    """Two seeds, the second no-KD student evaluated without validation figures: its validation mean is of one value
    (no std, not 0.000), and the KD validation means are over the one pair the validation delta has, so they subtract
    to it (over two seeds the KD student's mean did not)."""
    seeds = {}
    kd0 = (48, 1, 51, 2)  # seed 0's KD student validates better than its no-KD twin: a delta to subtract to
    for seed, val in ((0, (45, 2, 50, 5)), (1, (30, 10, 40, 20))):
        counts = {label: {"validation": val, "test_01_a": (40, 5, 50, 10)} for label in EVALUATED}
        if seed == 0:
            counts["gat_small_kd"]["validation"] = kd0
        seeds[seed] = write_run_set(tmp_path / f"s{seed}", dataset="hand", seed=seed, scenarios=("test_01_a",),
                                    counts=counts)  # fmt: skip
    metrics_file = seeds[1]["eval"] / "metrics.json"
    document = json.loads(metrics_file.read_text())
    document["runs"]["gat_small"]["validation"] = None
    metrics_file.write_text(json.dumps(document))
    lake = tmp_path / "lake"
    append_runs(folders(seeds[0]) + folders(seeds[1]), lake)
    board = {r["model"]: r for r in leaderboard(lake, "hand").to_pylist()}
    assert (board["gat_small"]["n_seeds"], board["gat_small"]["val_f1_std"]) == (2, None)
    assert board["gat_small"]["val_f1_mean"] == pytest.approx(f1_of((45, 2, 50, 5)))
    assert board["gat_small_kd"]["val_f1_std"] == pytest.approx(abs(f1_of(kd0) - f1_of((30, 10, 40, 20))) / 2**0.5)
    (kd,) = [r for r in kd_impact(lake).to_pylist() if r["family"] == "gat"]
    delta = f1_of(kd0) - f1_of((45, 2, 50, 5))  # the one pair with both validation figures
    assert kd["n_pairs"] == 2 and kd["val_f1_delta_mean"] == pytest.approx(delta) and kd["val_f1_delta_std"] is None
    # over the same pair: the KD student's mean of two seeds would not subtract to it
    assert kd["student_kd_val_f1"] == pytest.approx(f1_of(kd0)) and kd["student_val_f1"] == pytest.approx(
        f1_of((45, 2, 50, 5))
    )
    assert kd["student_kd_val_f1"] - kd["student_val_f1"] == pytest.approx(kd["val_f1_delta_mean"])
    assert kd["test_f1_delta_std"] == pytest.approx(0.0)  # two pairs, equal figures: a spread of 0, measured


def test_the_leaderboard_names_the_threshold_policies_its_seeds_were_evaluated_with(tmp_path):
    """Each run's latest evaluation counts: a seed evaluated again under another policy was averaged with the others
    and nothing said so."""
    seeds = {s: write_run_set(tmp_path / f"s{s}", dataset="hand", seed=s) for s in (0, 1)}
    metrics_file = seeds[1]["eval"] / "metrics.json"
    document = json.loads(metrics_file.read_text())
    for run in document["runs"].values():
        run["threshold"]["method"] = "margin"
    document["threshold_policy"] = "margin"
    metrics_file.write_text(json.dumps(document))
    lake = tmp_path / "lake"
    append_runs(folders(seeds[0]) + folders(seeds[1]), lake)
    board = {r["model"]: r for r in leaderboard(lake, "hand").to_pylist()}
    assert board["gat_large"]["n_seeds"] == 2 and board["gat_large"]["threshold_methods"] == "f1, margin"
    alone = tmp_path / "lake0"
    append_runs(folders(seeds[0]), alone)
    assert {r["threshold_methods"] for r in leaderboard(alone, "hand").to_pylist()} == {"f1"}
