"""What a new user meets first: one-line errors, names printed as they are, early checks, readable tables.

Each test stands for one item of the list a fresh-clone trial produced (see the README's Commands
section for the exit codes promised).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from rich.console import Console
from support.lake_sample import write_run_set
from support.processes import only_error_line, run_kdgat_patched, signalled_at
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.atomic import clean_stale, temporary_name
from kdgat.core.config import resolve_config
from kdgat.core.errors import ConfigError
from kdgat.lake import append_runs, build_lake
from kdgat.lake.render import rich_table

READ_ONLY = Path("/sys/kdgat-test-output")  # mkdir there fails even for root


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments: str, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def capture(data_root) -> Path:
    return data_root / "crysys" / "S-1-1-orig.csv.xz"


@pytest.fixture(scope="module")
def frames(capture, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("frames") / "frames"
    assert invoke("ingest", capture, "--split", "train", "--scenario", "train", "--benign", "--out", out).exit_code == 0
    return out


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    runs = write_run_set(root / "runs")
    append_runs([runs[k] for k in ("gat_large", "gat_small", "eval")], root / "lake")
    build_lake(root / "lake")
    return root / "lake"


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


def test_every_output_path_problem_is_one_line(capture, frames, lake, a_file, tmp_path):
    nowhere = str(tmp_path / "none")
    commands = {
        "ingest": ["ingest", capture, "--out"],
        "graphs": ["graphs", "--frames", frames, "--out"],
        "train": ["train", "-m", "gat", "-s", "small", "--graphs", nowhere, "--out"],
        "fuse": ["fuse", "--method", "mlp", "--vgae", nowhere, "--gat", nowhere, "--graphs", nowhere, "--out"],
        "evaluate": ["evaluate", "--runs", nowhere, "--graphs", nowhere, "--out"],
        "synth": ["synth", "--out"],
        "report": ["report", "--lake", lake, "--out"],
        "pipeline": ["pipeline", "-d", "synthetic", "--data-root", tmp_path / "data", "--out"],
    }
    for name, args in commands.items():
        one_line_error(invoke(*args, a_file), str(a_file), "not a folder")  # a file where a folder goes
        one_line_error(invoke(*args, a_file / "sub"), "afile", "not a folder")  # a file on the way to it
        if name != "synth":  # synth swaps its folder in beside READ_ONLY, in /sys itself
            one_line_error(invoke(*args, READ_ONLY), str(READ_ONLY))  # a place nobody may write


def test_a_command_refused_on_its_inputs_creates_no_output_folder(synthetic_graphs, tmp_path):
    """The output folder was created as the check that it can be written, before the inputs were read: a
    missing capture, graph store or run, or a bad --threshold, left an empty folder (here two levels deep)."""
    store, nowhere = synthetic_graphs, tmp_path / "none"
    commands = {
        "ingest": (["ingest", nowhere / "capture.csv", "--out"], 1),
        "train": (["train", "-m", "gat", "-s", "small", "--graphs", nowhere, "--out"], 1),
        "fuse": (["fuse", "--method", "mlp", "--vgae", nowhere, "--gat", nowhere, "--graphs", store, "--out"], 1),
        "evaluate": (["evaluate", "--runs", nowhere, "--graphs", store, "--out"], 1),
        "evaluate, bad policy": (
            ["evaluate", "--runs", nowhere, "--graphs", store, "--threshold", "bogus", "--out"],
            2,
        ),
    }
    for name, (args, code) in commands.items():
        out = tmp_path / "new" / "out"
        one_line_error(invoke(*args, out), code=code)
        assert not (tmp_path / "new").exists(), name


def test_a_damaged_frames_file_is_one_line(frames, tmp_path):
    """A frame Parquet cut short after ingest: `kdgat graphs` ended in pyarrow's traceback ("Parquet magic bytes
    not found"). The ingest manifest holds every file's sha256; a file that differs is named."""
    import shutil

    copy = tmp_path / "frames"
    shutil.copytree(frames, copy)
    (damaged,) = sorted(copy.rglob("*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:3000])
    line = one_line_error(invoke("graphs", "--frames", copy, "--out", tmp_path / "g"), str(damaged), "sha256")
    assert "kdgat ingest" in line and not (tmp_path / "g").exists()


def test_frames_of_an_ingest_before_parquet_hashes_still_build(frames, tmp_path):
    """Before source_sha256, an ingest manifest's output sha256 was its capture's: every frames folder of that
    version (a campaign's cached ingest) was refused as 'not the file ingest wrote'."""
    import json
    import shutil

    copy = tmp_path / "frames"
    shutil.copytree(frames, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for entry in manifest["outputs"]:
        entry["sha256"] = entry.pop("source_sha256")  # the earlier layout
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("graphs", "--frames", copy, "--out", tmp_path / "g")
    assert result.exit_code == 0, result.output


def test_lake_commands_refuse_a_file_as_the_lake(a_file, tmp_path):
    runs = write_run_set(tmp_path / "runs")
    one_line_error(invoke("lake", "append", "--runs", runs["gat_large"], "--lake", a_file), "not a folder")


def test_names_and_messages_are_printed_literally(capture, tmp_path):
    odd = tmp_path / "[red]bad:fire:.csv.xz"
    odd.write_bytes(capture.read_bytes())
    result = invoke("ingest", odd, "--out", tmp_path / "frames")
    assert result.exit_code == 0, result.stderr
    assert "[red]bad:fire:" in result.stdout and "🔥" not in result.stdout
    missing = tmp_path / "train:train:fuzzing.csv"
    line = one_line_error(invoke("ingest", missing, "--out", tmp_path / "o"), str(missing), "file not found")
    assert "🚋" not in line


def test_pipeline_checks_every_dataset_and_override_before_the_first_step(data_root, tmp_path):
    result = invoke("pipeline", "-d", "road", "-d", "set_01", "--data-root", data_root, "--out", tmp_path / "c")
    one_line_error(result, "dataset set_01", "no file matches")
    assert not (tmp_path / "c").exists(), "nothing is created (road not started) before set_01's files are checked"
    result = invoke("pipeline", "-d", "road", "--data-root", data_root, "--out", tmp_path / "c", "-O", "gat.hiden=3")
    one_line_error(result, "gat.hiden: unknown key", code=2)
    assert not (tmp_path / "c" / "road").exists()


@pytest.mark.parametrize(
    ("window", "stride", "ok"), [(100, 100, True), (100, 10, True), (1, 100, False), (50, 51, False)]
)
def test_stride_may_not_exceed_the_window(window, stride, ok):
    overrides = [f"preprocessing.window={window}", f"preprocessing.stride={stride}"]
    if ok:
        assert resolve_config("gat", "large", overrides=overrides).preprocessing.stride == stride
    else:
        with pytest.raises(ConfigError, match="stride: .*must not exceed preprocessing.window"):
            resolve_config("gat", "large", overrides=overrides)


def test_a_smaller_window_alone_says_which_stride_to_give():
    """`-O preprocessing.window=50` alone meets the default stride (100): the error names the override to add,
    not only the layer (defaults.yaml) that set the stride."""
    with pytest.raises(ConfigError, match=r"defaults.yaml: preprocessing.stride: .*-O preprocessing.stride=50\)"):
        resolve_config("gat", "large", overrides=["preprocessing.window=50"])


def test_a_killed_ingest_leaves_nothing_the_next_run_keeps(capture, tmp_path):
    out = tmp_path / "frames"
    code = f"""
import os, signal
from pathlib import Path
import kdgat.data.capture as capture
from kdgat.data.capture import sources_from_files
from kdgat.stages import ingest
real = capture.read_capture
def dying(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # killed with every row read, before the files move into place
capture.read_capture = dying
ingest.run(sources_from_files([Path({str(capture)!r})]), Path({str(out)!r}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".staging-")]
    assert leftovers, "the killed run had started staging"
    assert invoke("ingest", capture, "--out", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_ends_a_command_with_one_line_and_no_leftover(capture, tmp_path, sig):
    """SIGTERM (a scheduler, Nextflow's wrapper) or SIGHUP (a closed terminal) in the middle of an ingest: one line,
    exit 128 + the signal, its temporary files gone, and the earlier output in that folder as it was (by default
    both signals ended the process at once: exit -15 with no word, the staging folder left behind)."""
    out = tmp_path / "frames"
    assert invoke("ingest", capture, "--out", out).exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    patch = signalled_at("kdgat.data.capture:read_capture", sig)  # before the files move into place
    proc = run_kdgat_patched(patch, "ingest", capture, "--split", "train", "--out", out)
    number = getattr(__import__("signal"), sig)
    assert proc.returncode == 128 + number, proc.stderr
    said = only_error_line(proc)
    assert said.startswith(f"error: stopped by {sig}") and "run the command again" in said
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folder, no temporary file
    fresh = tmp_path / "fresh"  # a first run stopped leaves no folder
    proc = run_kdgat_patched(patch, "ingest", capture, "--out", fresh)
    assert proc.returncode == 128 + number and not fresh.exists(), proc.stderr


def test_a_signal_the_process_was_started_to_ignore_stays_ignored(capture, tmp_path):
    """`nohup kdgat pipeline ... &` starts it with SIGHUP ignored, so that it outlives the terminal: a hang-up then
    changes nothing (a review found the stop-signal handlers replaced the ignore, and logging out stopped it)."""
    patch = "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"  # as nohup starts it
    patch += signalled_at("kdgat.data.capture:read_capture", "SIGHUP")
    out = tmp_path / "frames"
    proc = run_kdgat_patched(patch, "ingest", capture, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "manifest.json").is_file()


def test_every_stop_signal_handler_leaves_an_ignored_signal_ignored():
    """The installer the stages use (training's clean stop, live detect, held renames) skips an ignored signal too:
    the subprocess test above reaches only the command-wide handler."""
    import signal

    from kdgat.core.signals import stop_signals_handled_by, uninterrupted
    from kdgat.training.preemption import StopOnSignal

    earlier = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a process
    try:
        for block in (stop_signals_handled_by(lambda *_: None), StopOnSignal().installed(), uninterrupted()):
            with block:
                assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
                assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # the others are handled
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, earlier)


def test_a_stop_signal_waits_for_the_ingest_files_and_the_manifest_that_lists_them(capture, tmp_path):
    """A SIGTERM while an ingest moves its files into place (the earlier run's manifest already gone) is held until
    the new manifest is written: the folder then holds exactly the files its manifest lists, the earlier run's
    other file removed (cut in between, it held an earlier file no manifest listed, which no later run removed)."""
    import json

    out = tmp_path / "frames"
    assert invoke("ingest", capture, "--split", "test", "--out", out).exit_code == 0
    patch = signalled_at("kdgat.core.publish:publish_files")
    proc = run_kdgat_patched(patch, "ingest", capture, "--split", "train", "--out", out)
    assert proc.returncode == 143 and only_error_line(proc).startswith("error: stopped by SIGTERM"), proc.stderr
    listed = {o["path"] for o in json.loads((out / "manifest.json").read_text())["outputs"]}
    assert listed == {str(p.relative_to(out)) for p in out.rglob("*.parquet")} == {f"train/{capture.name[:-7]}.parquet"}


def test_a_stop_signal_while_the_ingest_files_are_flushed_is_not_held(capture, tmp_path):
    """Flushing the new files (seconds for gigabytes) comes before the held renames: a SIGTERM then stops the run at
    once, with the earlier output as it was, instead of waiting out the flush (a scheduler's SIGKILL follows a
    SIGTERM after a grace period, which a held flush could outlast)."""
    out = tmp_path / "frames"
    assert invoke("ingest", capture, "--split", "test", "--out", out).exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    patch = signalled_at("kdgat.core.publish:fsync_tree")
    proc = run_kdgat_patched(patch, "ingest", capture, "--split", "train", "--out", out)
    assert proc.returncode == 143 and only_error_line(proc).startswith("error: stopped by SIGTERM"), proc.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_uninterrupted_holds_a_signal_until_the_block_ends_and_then_delivers_it():
    import signal
    import time

    from kdgat.core.signals import StopSignal, uninterrupted

    def raising(signum, _frame):
        raise StopSignal(signum)

    previous = signal.signal(signal.SIGUSR2, raising)
    done = []
    try:
        with pytest.raises(StopSignal) as stopped:
            with uninterrupted():
                os.kill(os.getpid(), signal.SIGUSR2)
                time.sleep(0.05)  # the handler runs here, at the latest
                done.append("the rest of the block")
        assert stopped.value.signum == signal.SIGUSR2 and done == ["the rest of the block"]
        assert signal.getsignal(signal.SIGUSR2) is raising  # the handler in place before is back
        with uninterrupted():  # nothing received: nothing delivered
            done.append("again")
        with pytest.raises(ValueError):  # the block's own error wins over a held signal
            with uninterrupted():
                os.kill(os.getpid(), signal.SIGUSR2)
                time.sleep(0.05)
                raise ValueError("the block's own")
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_stale_leftovers_are_removed_only_when_their_writer_is_gone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_name = temporary_name("staging", "x").replace(f"-{os.getpid()}-", f"-{dead.stdout.strip()}-")
    (tmp_path / dead_name).mkdir()
    mine = tmp_path / temporary_name("tmp", "y")
    mine.write_text("being written")
    elsewhere = tmp_path / ".tmp-otherhost-12-0123abcd.z"
    elsewhere.write_text("another node's writer")
    old = tmp_path / ".staging-otherhost-13-0123abcd.w"
    old.mkdir()
    os.utime(old, (0, 0))
    removed = {p.name for p in clean_stale(tmp_path)}
    assert removed == {dead_name, old.name}
    assert mine.exists() and elsewhere.exists()


def test_explanations_are_opt_in():
    commands = typer.main.get_command(app).commands
    for name in ("pipeline", "evaluate"):
        (option,) = [p for p in commands[name].params if p.name == "explain"]
        assert option.default == 0 and "off by default" in option.help
    from kdgat.pipeline.runner import PipelineOptions

    assert PipelineOptions().explain == 0
    nextflow_config = (Path(__file__).resolve().parents[1] / "nextflow.config").read_text()
    assert "explain = 0" in nextflow_config


def test_a_wide_table_becomes_one_block_per_row_in_80_columns():
    board = pa.table(
        {
            "dataset": ["road", "daga_v40"],
            "model": ["gat_small_kd", "fusion_dqn_large"],
            **{f"metric_{i}": [0.987654 + i / 1000, 0.5] for i in range(8)},
        }
    )
    console = Console(width=80, file=io.StringIO(), markup=False)
    console.print(rich_table(board, "Leaderboard", width=80))
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    for i in range(8):
        assert f"{0.987654 + i / 1000:.4f}" in text  # every number whole, never wrapped mid-digit
    wide = Console(width=400, file=io.StringIO(), markup=False)
    wide.print(rich_table(board, "Leaderboard", width=400))
    assert "metric_7" in wide.file.getvalue().splitlines()[2]  # one header row when it fits


def test_usage_problems_exit_2_data_problems_exit_1(capture, tmp_path):
    one_line_error(invoke("ingest", capture, "--format", "pcap", "--out", tmp_path / "o"), "unknown format", code=2)
    one_line_error(invoke("ingest", "--out", tmp_path / "o"), "either capture FILEs or --dataset", code=2)
    one_line_error(invoke("ingest", "--dataset", "no_such", "--out", tmp_path / "o"), "unknown dataset", code=2)
    assert invoke("leaderboard", "--lake", tmp_path, "--format", "xml").exit_code == 2  # click's own usage error
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,arbitration_id,data_field,attack\n0.1,0G9,00,0\n")
    one_line_error(invoke("ingest", bad, "--out", tmp_path / "o"), "bad.csv:2:", code=1)


def test_command_line_mistakes_are_one_line_from_the_console_script():
    """The installed `kdgat` prints click's usage errors as one `error:` line with exit 2 (not a framed panel)."""
    script = str(Path(sys.executable).with_name("kdgat"))
    cases = {
        ("detect", "x.csv", "--stride", "0"): "Invalid value for '--stride'",
        ("detect", "x.csv", "--bogus"): "No such option: --bogus",
        ("nosuch",): "No such command 'nosuch'",
    }
    for args, said in cases.items():
        proc = subprocess.run([script, *args], capture_output=True, text=True, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.returncode, proc.stderr)
        assert lines[0].startswith("error: ") and said in lines[0] and "--help)" in lines[0], lines[0]
    shown = subprocess.run([script], capture_output=True, text=True, timeout=120)
    assert "Usage: kdgat" in shown.stdout + shown.stderr  # alone, it still shows the help


def test_every_catalog_mistake_is_listed(tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "datasets:\n  mine:\n    root: x\n    bogus: 1\n    train: 5\n"
        "  'bad name!':\n    root: y\n  theirs:\n    root: z\n    description: d\n"
    )
    line = one_line_error(invoke("datasets", "--catalog", catalog), code=2)
    for problem in (  # every entry's mistakes, not the first entry's only
        "datasets.mine.description: Field required",
        "datasets.mine.train:",
        "datasets.mine.bogus: unknown key",
        "datasets.bad name!: dataset names are",
        "datasets.theirs.train: Field required",
    ):
        assert problem in line
    assert "more error" not in line


def test_install_says_what_it_is_doing():
    root = Path(__file__).resolve().parents[1]
    recipe = subprocess.run(
        ["make", "-n", "-B", "install"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    lines = recipe.splitlines()
    first_pip = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert any(line.startswith("echo") and "minutes" in line for line in lines[:first_pip])


def test_evaluate_says_when_a_threshold_policy_had_nothing_to_balance():
    """An attack-free validation part (crysys) under the default `margin`: the threshold fell back to just above
    the highest benign score, recorded as `fallback` and said nowhere."""
    import numpy as np

    from kdgat.cli.evaluate import fallback_warnings
    from kdgat.evaluation.metrics import binary_metrics, choose_threshold

    scores, benign = np.linspace(0.1, 0.4, 50), np.zeros(50, np.int64)
    runs = {}
    for label, policy, y in (("vgae_large", "margin", benign), ("novelty_large", "fpr", benign),
                             ("gat_large", "margin", np.r_[benign[:25], np.ones(25, np.int64)])):  # fmt: skip
        threshold = choose_threshold(y, scores, policy, max_fpr=0.01)
        runs[label] = {"threshold": threshold, "validation": binary_metrics(y, scores, threshold["threshold"])}
    (said,) = fallback_warnings({"runs": runs})
    assert said.startswith("vgae_large: validation holds no attack window") and "fpr:<rate>" in said
    assert runs["vgae_large"]["threshold"]["threshold"] > scores.max()  # what the line says
    # the same threshold taken from that evaluation by `evaluate --thresholds` on a --like store (no validation):
    # said when it was chosen, not again
    recorded = {"threshold": {**runs["vgae_large"]["threshold"], "recorded": True}, "validation": None}
    assert fallback_warnings({"runs": {"vgae_large": recorded}}) == []
    # fpr:<rate> needs benign windows: without any it flags every validation window, said as for the other policies
    attacks = np.ones(50, np.int64)
    threshold = choose_threshold(attacks, scores, "fpr", max_fpr=0.01)
    only_attacks = {"threshold": threshold, "validation": binary_metrics(attacks, scores, threshold["threshold"])}
    (said,) = fallback_warnings({"runs": {"novelty_large": only_attacks}})
    assert said == "novelty_large: validation holds no benign window: the threshold flags every validation window"


def test_a_failed_graph_build_and_a_dangling_link_leave_nothing_behind(frames, tmp_path, monkeypatch):
    """The store is built beside --out and swapped in at the end, but its parents were made first: a build that
    failed half way (here a full disk, injected where the frames are read) left them. And a link to nothing
    passed the output check, to fail only when the folder was swapped in."""
    import errno

    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    one_line_error(invoke("graphs", "--frames", frames, "--out", link), str(link), "not a folder")
    monkeypatch.setattr("kdgat.stages.graphs._read_frames", full_disk)
    one_line_error(invoke("graphs", "--frames", frames, "--out", tmp_path / "new" / "deeper" / "store"), "no space")
    assert not (tmp_path / "new").exists()
