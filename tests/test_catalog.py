"""Dataset catalog: validation, data-root resolution, leakage guard, ingest of a catalog entry."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from kdgat.core.errors import ConfigError, KdgatError
from kdgat.data.catalog import dataset_sources, dataset_status, get_dataset, load_catalog, resolve_data_root
from kdgat.stages.ingest import run as run_ingest

STUDY = ["hcrl_ch", "hcrl_sa", "set_01", "set_02", "set_03", "set_04"]
REAL = [
    "daga_v40",
    "road",
    "road_masquerade",
    "crysys",
    "otids",
    "nissan_juke",
    "j1939_tsc1",
    "ciciov2024",
    "ctt_set_01_dos",
]


def test_builtin_catalog_has_the_study_datasets_synthetic_and_real_captures():
    catalog = load_catalog()
    assert set(STUDY + ["synthetic"] + REAL) <= set(catalog)
    assert set(catalog["set_01"].test) >= {
        "test_01_known_vehicle_known_attack",
        "test_05_suppress",
        "test_06_masquerade",
    }


def test_real_capture_entries_resolve_completely(data_root):
    catalog = load_catalog()
    for name in REAL:
        status = dataset_status(catalog[name], data_root, name)
        assert status["status"] == "ok", (name, status["missing_patterns"])


def test_daga_split_matches_the_issue(data_root):
    entry = load_catalog()["daga_v40"]
    sources = dataset_sources("daga_v40", entry, data_root)
    train = sorted(s.path.relative_to(data_root / "daga-v40").as_posix() for s in sources if s.split == "train")
    assert train == sorted(
        [
            "clean/V40_03.can.csv.xz",
            "infected/DenialOfService/lowestID_V40_03.can.csv.xz",
            "infected/MessageIDFuzzing/V40_03.can.csv.xz",
            "infected/PayloadFuzzing/ID_145_V40_03.can.csv.xz",
            "infected/SingleIDReplay/ID_145_V40_03.can.csv.xz",
        ]
    )
    assert {s.scenario for s in sources if s.split == "test"} == {"payload_fuzzing_id_1", "single_id_replay_id_1"}


def test_road_keeps_masquerade_twins_out(data_root):
    sources = dataset_sources("road", load_catalog()["road"], data_root)
    assert not any("masquerade" in s.path.name for s in sources)


def test_partial_dataset_needs_allow_missing(data_root):
    entry = load_catalog()["set_01"]
    with pytest.raises(KdgatError, match="no file matches test:test_01_known_vehicle_known_attack"):
        dataset_sources("set_01", entry, data_root)
    sources = dataset_sources("set_01", entry, data_root, allow_missing=True)
    assert [s.path.name for s in sources] == ["DoS-1.csv.xz"] and sources[0].attack_type == "dos"


def test_user_catalog_adds_a_dataset(tmp_path, data_root):
    user = tmp_path / "mine.yaml"
    user.write_text(
        "datasets:\n  my_road:\n    description: two ROAD files\n    root: road/attacks\n"
        "    train: [fuzzing_attack_1.csv*]\n"
        "    test:\n      fuzz2: [{path: fuzzing_attack_2.csv*, attack_type: fuzz}]\n"
    )
    catalog = load_catalog([user])
    assert "my_road" in catalog and "daga_v40" in catalog
    sources = dataset_sources("my_road", catalog["my_road"], data_root)
    manifest = run_ingest(sources, tmp_path / "frames", dataset="my_road")
    assert [o.path for o in manifest.outputs] == [
        "train/fuzzing_attack_1.parquet",
        "test/fuzz2/fuzzing_attack_2.parquet",
    ]
    assert manifest.summary["totals"] == {"rows": 49_342 + 32_351, "attack_rows": 592 + 352, "skipped_rows": 0}
    test_table = pq.read_table(tmp_path / "frames" / manifest.outputs[1].path)
    assert set(test_table["split"].to_pylist()) == {"test"} and set(test_table["scenario"].to_pylist()) == {"fuzz2"}


def test_unknown_key_names_key_and_file(tmp_path):
    user = tmp_path / "bad.yaml"
    user.write_text("datasets:\n  x:\n    description: d\n    root: r\n    train: [a.csv]\n    tset: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: datasets.x.tset: unknown key"):
        load_catalog([user])


def test_wrong_type_names_key_and_file(tmp_path):
    user = tmp_path / "bad.yaml"
    user.write_text("datasets:\n  x:\n    description: d\n    root: r\n    train: [{path: a.csv, benign: maybe}]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: datasets.x.train.0.benign: Input should be a valid boolean"):
        load_catalog([user])


def test_unsafe_scenario_name(tmp_path):
    user = tmp_path / "bad.yaml"
    user.write_text(
        "datasets:\n  x:\n    description: d\n    root: r\n    train: [a.csv]\n    test: {'../up': [b.csv]}\n"
    )
    with pytest.raises(ConfigError, match=r"bad.yaml: datasets.x"):
        load_catalog([user])


def test_same_file_in_train_and_test_is_leakage(tmp_path, data_root):
    user = tmp_path / "leak.yaml"
    user.write_text(
        "datasets:\n  leak:\n    description: d\n    root: road/attacks\n"
        "    train: ['fuzzing_attack_*.csv*']\n    test:\n      t: [fuzzing_attack_2.csv.xz]\n"
    )
    entry = load_catalog([user])["leak"]
    with pytest.raises(ConfigError, match="train/test leakage"):
        dataset_sources("leak", entry, data_root)


def test_datasets_says_invalid_for_a_file_in_train_and_test(tmp_path, data_root):
    """`kdgat datasets` said `ok` for a catalog whose ingest refuses it (train/test leakage)."""
    from typer.testing import CliRunner

    from kdgat.cli import app

    user = tmp_path / "leak.yaml"
    user.write_text(
        "datasets:\n  leak:\n    description: d\n    root: road/attacks\n"
        "    train: ['fuzzing_attack_*.csv*']\n    test:\n      t: [fuzzing_attack_2.csv.xz]\n"
    )
    status = dataset_status(load_catalog([user])["leak"], data_root, "leak")
    assert (
        status["status"] == "invalid"
        and "fuzzing_attack_2.csv.xz is in both train:train and test:t" in (status["problem"])
    )
    assert dataset_status(load_catalog()["road"], data_root, "road")["problem"] is None
    result = CliRunner().invoke(
        app, ["datasets", "--catalog", str(user), "--data-root", str(data_root), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["datasets"]["leak"]["status"] == "invalid"
    assert "warning: dataset leak:" in result.stderr and "(train/test leakage)" in result.stderr


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(KdgatError, match="unknown dataset 'nope'; known: .*daga_v40"):
        get_dataset(load_catalog(), "nope")


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("KDGAT_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("KDGAT_DATA_ROOT")
    assert str(resolve_data_root(None)) == "data"


def test_rerun_replaces_and_never_duplicates(tmp_path, data_root):
    user = tmp_path / "c.yaml"
    user.write_text(
        "datasets:\n  two:\n    description: d\n    root: road/attacks\n"
        "    train: [fuzzing_attack_2.csv*, max_engine_coolant_temp_attack.csv*]\n"
    )
    catalog = load_catalog([user])
    out = tmp_path / "frames"
    first = run_ingest(dataset_sources("two", catalog["two"], data_root), out, dataset="two")
    second = run_ingest(dataset_sources("two", catalog["two"], data_root), out, dataset="two")
    assert first.output_paths() == second.output_paths()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == sorted(second.output_paths())
    # drop one file from the dataset: its old output disappears
    user.write_text(
        "datasets:\n  two:\n    description: d\n    root: road/attacks\n    train: [fuzzing_attack_2.csv*]\n"
    )
    third = run_ingest(dataset_sources("two", load_catalog([user])["two"], data_root), out, dataset="two")
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.parquet")] == third.output_paths()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["sha256"] == first.inputs[0].sha256


def _entry(tmp_path, body: str) -> str:
    user = tmp_path / "mine.yaml"
    user.write_text("datasets:\n  x:\n    description: d\n    root: r\n" + body)
    return user


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("    format: candmp\n    train: [a.csv]\n", r"datasets.x.format: unknown format 'candmp'; choose from: auto,"),
        ("    train: [{path: a.log, format: candum}]\n", r"datasets.x.train.0.format: unknown format 'candum'"),
        ("    train: [a.csv]\n    test: {fuzzing: [b.csv], test__fuzzing: [c.csv]}\n",
         r"datasets.x.test: test scenarios 'fuzzing' and 'test__fuzzing' would be one part of the graph store"),
        ("    train: [a.csv]\n    test: {fuzzing: []}\n", r"datasets.x.test: test scenario 'fuzzing' lists no file"),
    ],
)  # fmt: skip
def test_a_catalog_mistake_is_refused_when_the_catalog_is_read(tmp_path, body, said):
    """A typo'd reader was found only when a campaign reached that dataset's ingest (after every dataset before it
    trained); two scenario names of one store part merged their windows; an empty scenario vanished."""
    with pytest.raises(ConfigError, match=r"mine.yaml: " + said):
        load_catalog([_entry(tmp_path, body)])


def test_absolute_globs_and_file_names_with_glob_characters_are_found(tmp_path):
    """An absolute glob raised NotImplementedError (a traceback); a file named 'drive[1].csv' was read as a glob
    matching nothing."""
    captures = tmp_path / "data" / "r"
    captures.mkdir(parents=True)
    for name in ("drive[1].csv", "fuzz-1.csv", "fuzz-2.csv"):
        (captures / name).write_text("timestamp,arbitration_id,data_field,attack\n0.0,100,00,0\n")
    user = _entry(tmp_path, f"    train: ['drive[1].csv']\n    test:\n      f: ['{captures}/fuzz-*.csv']\n")
    sources = dataset_sources("x", load_catalog([user])["x"], tmp_path / "data")
    assert [(s.split, s.path.name) for s in sources] == [("train", "drive[1].csv"), ("test", "fuzz-1.csv"),
                                                         ("test", "fuzz-2.csv")]  # fmt: skip


def test_two_captures_with_one_output_name_are_refused_before_any_ingest(tmp_path):
    """'a.csv' and 'a.csv.xz' both become train/a.parquet: refused when the sources are resolved (the pipeline's
    preflight), not when the dataset's ingest runs."""
    captures = tmp_path / "data" / "r"
    captures.mkdir(parents=True)
    for name in ("a.csv", "a.csv.gz"):
        (captures / name).write_bytes(b"")
    user = _entry(tmp_path, "    train: ['a.csv*', {path: b.log, format: auto}]\n")
    (captures / "b.log").write_bytes(b"")
    entry = load_catalog([user])["x"]  # a file's format may be auto (detected) in a dataset of one reader
    with pytest.raises(KdgatError, match=r"a.csv(.gz)? and .*a.csv(.gz)? would both be written to train/a.parquet"):
        dataset_sources("x", entry, tmp_path / "data")
    status = dataset_status(entry, tmp_path / "data", "x")  # kdgat datasets, and Nextflow's DATASETS task
    assert status["status"] == "invalid" and "would both be written to train/a.parquet" in status["problem"]


def test_a_capture_without_labels_and_not_marked_benign_is_named(tmp_path, data_root):
    """Its frames carry no label, so graphs leaves its windows out of training and evaluate out of the scores: it
    vanished without a word (a catalog entry without `benign: true`)."""
    from typer.testing import CliRunner

    from kdgat.cli import app

    capture = data_root / "otids" / "Attack_free_dataset_10k.txt.xz"
    said = f"warning: {capture}: no labels, and not marked attack-free: its windows are neither trained on nor scored"
    plain = CliRunner().invoke(app, ["ingest", str(capture), "-o", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert said in " ".join(plain.stderr.split())
    benign = CliRunner().invoke(app, ["ingest", str(capture), "--benign", "-o", str(tmp_path / "benign")])
    assert benign.exit_code == 0 and "warning" not in benign.stderr, benign.stderr
