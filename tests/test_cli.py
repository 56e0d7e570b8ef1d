"""The CLI through Typer's CliRunner (in-process)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from kdgat.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_every_command_is_registered_and_in_the_help():
    import typer

    commands = {"config", "datasets", "formats", "ingest", "graphs", "train", "fuse", "evaluate", "synth", "pipeline"}
    commands |= {"export", "detect"}
    commands |= {"lake", "leaderboard", "kd-impact", "compare", "report"}
    # the registered names, not words in the help text (the pipeline's own line names most stages)
    assert set(typer.main.get_command(app).commands) == commands
    result = invoke("--help")
    assert result.exit_code == 0


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("kdgat ")


def test_the_command_line_loads_without_the_heavy_libraries():
    """`kdgat --help`, `--version` and every command's option parsing load none of torch, scikit-learn, MLflow,
    DuckDB (a command imports what it runs): the threshold policies' names once pulled scikit-learn in through
    the evaluation metrics, 2.4 s of every `kdgat ...` call, 0.5 s without (measured in the closing note)."""
    import subprocess
    import sys

    heavy = ["torch", "sklearn", "scipy", "pandas", "mlflow", "duckdb", "lightning", "torch_geometric", "matplotlib"]
    code = f"import sys, kdgat.cli; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_config_show_resolves_kd_and_prints_hash():
    result = invoke("config", "show", "--model", "gat", "--scale", "small", "--aux", "kd_standard")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# config_hash: ")
    assert "temperature: 4.0" in result.output and "alpha: 0.7" in result.output


def test_config_show_json_with_override_changes_hash():
    base = json.loads(invoke("config", "show", "-m", "gat", "-s", "small", "--format", "json").output)
    changed = json.loads(
        invoke("config", "show", "-m", "gat", "-s", "small", "-O", "gat.heads=2", "--format", "json").output
    )
    assert changed["config"]["gat"]["heads"] == 2
    assert base["config_hash"] != changed["config_hash"]


def test_config_show_bad_override_is_one_line():
    result = invoke("config", "show", "-m", "gat", "-O", "gat.lr=abc")
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "gat.lr" in result.stderr


def test_datasets_json(data_root):
    result = invoke("datasets", "--data-root", data_root, "--format", "json")
    assert result.exit_code == 0
    listing = json.loads(result.output)["datasets"]
    assert listing["daga_v40"]["status"] == "ok" and listing["daga_v40"]["files"] == 7
    assert listing["set_02"]["status"] == "missing"
    assert listing["set_01"]["status"] == "partial"


def test_datasets_says_when_the_data_root_is_not_there(tmp_path):
    result = invoke("datasets", "--data-root", tmp_path / "nowhere", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["datasets"]["daga_v40"]["status"] == "missing"
    assert result.stderr.strip() == f"warning: data root {tmp_path / 'nowhere'}: no such folder"
    assert invoke("datasets", "--data-root", tmp_path).stderr == ""  # a folder: nothing to say


def test_datasets_table_uses_env_data_root(data_root, monkeypatch):
    monkeypatch.setenv("KDGAT_DATA_ROOT", str(data_root))
    result = invoke("datasets")
    assert result.exit_code == 0 and "daga_v40" in result.output and str(data_root) in result.output


def test_formats_lists_every_reader():
    result = invoke("formats")
    assert result.exit_code == 0
    for name in ("can-train-and-test", "daga", "road", "candump-l", "hcrl-ch", "ciciov2024", "j1939-csv"):
        assert name in result.output


def test_ingest_dataset(data_root, tmp_path):
    out = tmp_path / "frames"
    result = invoke("ingest", "--dataset", "road_masquerade", "--data-root", data_root, "--out", out)
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"] == "road_masquerade" and manifest["stage"] == "ingest"
    assert manifest["summary"]["totals"]["rows"] == 67_517 + 61_881 + 67_230
    assert {o["scenario"] for o in manifest["outputs"]} == {"train", "masquerade"}
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert "versions" in manifest and manifest["config_hash"]
    # every entry's sha256 is of the file it names: the Parquet for an output, the capture for an input
    from kdgat.core.hashing import sha256_file

    captures = {i["path"]: i["sha256"] for i in manifest["inputs"]}
    for o in manifest["outputs"]:
        assert o["sha256"] == sha256_file(out / o["path"]) != o["source_sha256"] == captures[o["source"]]
        assert o["source_sha256"] == sha256_file(o["source"])


def test_ingest_needs_files_or_dataset(tmp_path):
    result = invoke("ingest", "--out", tmp_path)
    assert result.exit_code != 0 and "either capture FILEs or --dataset" in result.stderr


def test_ingest_files_with_split_scenario_and_benign(data_root, tmp_path):
    out = tmp_path / "frames"
    result = invoke(
        "ingest", data_root / "otids/Attack_free_dataset_10k.txt.xz", "--split", "train", "--scenario", "kia",
        "--benign", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (item,) = json.loads((out / "manifest.json").read_text())["outputs"]
    assert item["path"] == "train/kia/Attack_free_dataset_10k.parquet"
    assert item["attack_rows"] == 0 and item["unlabelled_rows"] == 0


def test_ingest_names_attack_frames_after_the_file_or_attack_type(data_root, tmp_path):
    """A FILE whose format carries no attack names: its attack frames are named after the file (`DoS-1.csv` ->
    `dos`) or by --attack-type; benign frames stay `normal`."""
    import pyarrow.parquet as pq

    capture = data_root / "can-train-and-test/set_01/train_01/DoS-1.csv.xz"
    for extra, name in (([], "dos"), (["--attack-type", "flood"], "flood")):
        out = tmp_path / name
        assert invoke("ingest", capture, "--out", out, *extra).exit_code == 0
        (item,) = json.loads((out / "manifest.json").read_text())["outputs"]
        table = pq.read_table(out / item["path"], columns=["label", "attack_type"])
        labels, names = table["label"].to_numpy(), table["attack_type"].to_pylist()
        assert {n for n, y in zip(names, labels, strict=True) if y == 1} == {name}
        assert {n for n, y in zip(names, labels, strict=True) if y == 0} == {"normal"}
        assert int(labels.sum()) == item["attack_rows"] == 9_139  # the data README's count


def test_synth_then_ingest_synthetic_dataset(tmp_path):
    data = tmp_path / "data"
    result = invoke("synth", "--out", data / "synthetic", "--seed", 3, "--duration", 2)
    assert result.exit_code == 0, result.stderr
    result = invoke("ingest", "--dataset", "synthetic", "--data-root", data, "--out", tmp_path / "frames")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "frames" / "manifest.json").read_text())
    scenarios = {o["scenario"] for o in manifest["outputs"]}
    assert scenarios == {"train", "test_01_known_vehicle_known_attack", "test_02_unknown_vehicle_known_attack",
                         "test_03_known_vehicle_unknown_attack", "test_04_unknown_vehicle_unknown_attack"}  # fmt: skip
    assert manifest["summary"]["totals"]["attack_rows"] > 0
