"""Bad input: one line naming file, line and problem; non-zero exit; no partial output."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from kdgat.cli import app
from kdgat.core.manifest import write_manifest

from conftest import COMPRESSORS, write_capture

CTT_HEADER = "timestamp,arbitration_id,data_field,attack\n"
GOOD_ROWS = "1.0,1E5,460196E001FE6701,0\n1.1,0F9,01B3,0\n"
runner = CliRunner()


def run_ingest_cli(*args):
    return runner.invoke(app, ["ingest", *map(str, args)])


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_no_output(out):
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.parquet"))
    assert not list(out.glob(".staging-*"))


BAD_ROWS = [
    ("non-hex ID", CTT_HEADER + GOOD_ROWS + "1.2,0G9,00,0\n", 4, "CAN ID is not hexadecimal: '0G9'"),
    ("ID wider than 29 bits", CTT_HEADER + GOOD_ROWS + "1.2,3FFFFFFF,00,0\n", 4, "CAN ID wider than 29 bits"),
    ("ID with 9 digits", CTT_HEADER + "1.2,1FFFFFFF0,00,0\n", 2, "CAN ID wider than 29 bits"),
    (
        "payload over 8 bytes",
        CTT_HEADER + GOOD_ROWS + "1.2,0F9,000102030405060708,0\n",
        4,
        "payload longer than 8 bytes",
    ),
    ("odd payload digits", CTT_HEADER + "1.2,0F9,001,0\n", 2, "payload is not hexadecimal bytes"),
    ("missing field", CTT_HEADER + GOOD_ROWS + "1.2,0F9,0\n", 4, "expected 4 fields, found 3"),
    ("unparseable timestamp", CTT_HEADER + GOOD_ROWS + "12:00:01,0F9,00,0\n", 4, "unparseable timestamp: '12:00:01'"),
    ("bad label", CTT_HEADER + GOOD_ROWS + "1.2,0F9,00,yes\n", 4, "attack must be 0 or 1"),
    # a file cut after the last comma: the one-call parse read the empty label as 0 (benign)
    ("empty label at the end", CTT_HEADER + GOOD_ROWS + "1.2,0F9,00,", 4, "attack must be 0 or 1"),
    ("empty label", CTT_HEADER + GOOD_ROWS + "1.2,0F9,00,\n1.3,0F9,00,0\n", 4, "attack must be 0 or 1"),
    (
        "not UTF-8",
        CTT_HEADER + GOOD_ROWS + "1.2,0F9,00\udcff01,0\n",
        4,
        "unreadable CSV row (CSV conversion error to string: invalid UTF8 data)",
    ),
    (  # pyarrow decodes a ragged row before its handler sees it: a non-UTF-8 one printed a traceback first
        "ragged and not UTF-8",
        CTT_HEADER + GOOD_ROWS + "1.2,0F\udcff9,00\n1.3,0F9,00,0\n",
        4,
        "expected 4 fields, found 3",
    ),
    (
        "ROAD label cut short",
        "Time,Id,Byte1,Byte2,Byte3,Byte4,Byte5,Byte6,Byte7,Byte8,Label\n"
        "1.0,0D0,00,00,00,00,00,00,00,00,Benign\n1.1,0D0,00,00,00,00,00,00,00,00,Beni",
        3,
        "Label must be Benign, Fuzzing, Fabrication or Masquerade: 'Beni'",
    ),
    (
        "labelled candump cut short",
        "(0.1) can0 123#00 0\n(0.2) can0 123#01 1\n(0.3) can0 410#0003\n",
        3,
        "missing label column (the file's first line has one)",
    ),
    ("11-bit ID above 0x7FF", "(0.1) can0 123#00\n(0.2) can0 FFF#01\n", 2, "11-bit CAN ID above 0x7FF: 'FFF'"),
]


@pytest.mark.parametrize(("case", "text", "line", "problem"), BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # the CLI printed it: "Exception ignored"
def test_bad_row_is_one_line_with_file_and_line(tmp_path, case, text, line, problem):
    path = write_capture(tmp_path / "bad.csv", text)
    out = tmp_path / "out"
    result = run_ingest_cli(path, "--out", out)
    assert_one_line_error(result, f"bad.csv:{line}:", problem)
    assert_no_output(out)


def test_payload_longer_than_dlc_in_a_dlc_format(tmp_path):
    text = "Timestamp: 0.000000 ID: 0316 000 DLC: 2 05 20 ea\n"
    path = write_capture(tmp_path / "otids.txt", text)
    assert_one_line_error(run_ingest_cli(path, "--out", tmp_path / "o"), "otids.txt:1:", "payload longer than its DLC")


def test_candump_id_wider_than_29_bits(tmp_path):
    path = write_capture(tmp_path / "x.log", "(0.1) can0 123#00\n(0.2) can0 3FFFFFFF#00\n")
    assert_one_line_error(run_ingest_cli(path, "--out", tmp_path / "o"), "x.log:2:", "CAN ID wider than 29 bits")


def test_a_capture_of_error_frames_only(tmp_path):
    path = write_capture(tmp_path / "x.log", "(0.1) can0 20000080#00\n(0.2) can0 20000004#0000080000000000\n")
    result = run_ingest_cli(path, "--out", tmp_path / "o")
    assert_one_line_error(result, "x.log", "no frames in file (2 error frames left out)")
    assert_no_output(tmp_path / "o")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert_one_line_error(run_ingest_cli(path, "--out", tmp_path / "o"), "empty.csv", "empty file")


def test_empty_file_with_forced_format(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    result = run_ingest_cli(path, "--format", "can-train-and-test", "--out", tmp_path / "o")
    assert_one_line_error(result, "empty.csv", "empty file")


def test_header_only_file_has_no_frames(tmp_path):
    path = write_capture(tmp_path / "h.csv", CTT_HEADER)
    assert_one_line_error(run_ingest_cli(path, "--out", tmp_path / "o"), "h.csv", "no frames")


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_truncated_compressed_file(tmp_path, suffix):
    rows = "".join(f"{i / 1000:.6f},{i % 2048:03X},{i:016X},0\n" for i in range(50_000))
    path = write_capture(tmp_path / "big.csv", CTT_HEADER + rows, suffix)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o"
    result = run_ingest_cli(path, "--format", "can-train-and-test", "--out", out)
    assert_one_line_error(result, f"big.csv{suffix}", "corrupt or truncated")
    assert_no_output(out)


def test_unknown_format(tmp_path):
    path = write_capture(tmp_path / "notes.txt", "hello world\nthis is not a capture\n")
    assert_one_line_error(run_ingest_cli(path, "--out", tmp_path / "o"), "notes.txt:1:", "unknown format")


def test_unknown_format_name(tmp_path):
    path = write_capture(tmp_path / "a.csv", CTT_HEADER + GOOD_ROWS)
    assert_one_line_error(run_ingest_cli(path, "--format", "pcap", "--out", tmp_path / "o"), "unknown format 'pcap'")


def test_forced_format_with_wrong_header(tmp_path):
    path = write_capture(tmp_path / "a.csv", CTT_HEADER + GOOD_ROWS)
    assert_one_line_error(
        run_ingest_cli(path, "--format", "daga", "--out", tmp_path / "o"), "a.csv:1:", "expected the daga header"
    )


def test_missing_input_file(tmp_path):
    assert_one_line_error(run_ingest_cli(tmp_path / "nope.csv", "--out", tmp_path / "o"), "nope.csv", "file not found")


def test_a_stray_flag_is_blamed_on_its_own_line(tmp_path):
    """One line of an unlabelled HCRL text capture with an R/T flag: the first line was blamed, and skip mode kept
    that line and dropped every other."""
    lines = [f"Timestamp: {1.0 + i / 100:.6f} ID: 0{i % 9}a0 000 DLC: 2 00 0{i % 10}" for i in range(300)]
    lines[199] += " T"
    path = write_capture(tmp_path / "otids.txt", "\n".join(lines) + "\n")
    assert_one_line_error(run_ingest_cli(path, "--out", tmp_path / "o"), "otids.txt:200:", "a R/T flag, which the")
    result = run_ingest_cli(path, "--out", tmp_path / "o", "--on-bad-rows", "skip")
    assert result.exit_code == 0, result.stderr
    item = json.loads((tmp_path / "o" / "manifest.json").read_text())["outputs"][0]
    assert (item["rows"], item["skipped_lines"], item["unlabelled_rows"]) == (299, [200], 299)


def test_surrounding_spaces_read_alike_on_both_paths(tmp_path):
    """A timestamp with spaces parsed on the one-call path and was a traceback on the line-by-line one (which a
    blank line in the block selects)."""
    rows = " 1.0,1E5,00,0\n1.1 ,0F9,01, 1\n"
    for name, text in (("plain.csv", CTT_HEADER + rows), ("blank.csv", CTT_HEADER + rows + "\n")):
        result = run_ingest_cli(write_capture(tmp_path / name, text), "--out", tmp_path / name.split(".")[0])
        assert result.exit_code == 0, result.stderr
    import pyarrow.parquet as pq

    plain, blank = (pq.read_table(next((tmp_path / d).rglob("*.parquet"))) for d in ("plain", "blank"))
    assert plain.column("timestamp").to_pylist() == blank.column("timestamp").to_pylist() == [1.0, 1.1]
    assert plain.column("label").to_pylist() == blank.column("label").to_pylist() == [0, 1]


def test_a_date_stamp_before_the_first_frame_is_skipped_when_the_format_is_detected(tmp_path):
    """The Nissan Juke logs' bare date-time lines are skipped by the readers, but one on the first line made
    the capture 'unknown format'."""
    frames = "(1606192008.000000) can0 123#0011\n(1606192008.001000) can0 456#22\n"
    path = write_capture(tmp_path / "juke.log", "2020-11-24T042648\n" + frames)
    out = tmp_path / "out"
    assert run_ingest_cli(path, "--out", out).exit_code == 0
    item = json.loads((out / "manifest.json").read_text())["outputs"][0]
    assert (item["rows"], item["ignored_lines"]) == (2, 1)
    # only the line readers skip such lines: a CSV whose header comes after one is not taken for that CSV format
    # (whose reader would then stop at the date line), it is of no known format, said at its first line
    dated_csv = write_capture(tmp_path / "dated.csv", "2020-11-24T042648\n" + CTT_HEADER + GOOD_ROWS)
    result = run_ingest_cli(dated_csv, "--out", tmp_path / "csv")
    assert result.exit_code == 1 and "dated.csv:1: unknown format: first line '2020-11-24T042648'" in result.stderr


def test_a_byte_order_mark_before_the_header_is_read_past(tmp_path):
    """Spreadsheet programs save CSV with a UTF-8 BOM; it was 'unknown format'."""
    plain = write_capture(tmp_path / "plain.csv", CTT_HEADER + GOOD_ROWS)
    marked = write_capture(tmp_path / "marked.csv", "\ufeff" + CTT_HEADER + GOOD_ROWS)
    for path in (plain, marked):
        assert run_ingest_cli(path, "--out", tmp_path / path.stem).exit_code == 0
    import pyarrow.parquet as pq

    frames = ["timestamp", "can_id", "is_extended", "dlc", "data", "label"]
    tables = [pq.read_table(next((tmp_path / d).rglob("*.parquet")), columns=frames) for d in ("plain", "marked")]
    assert tables[0].num_rows == 2 and tables[0].equals(tables[1])


def test_ingest_never_writes_over_another_stages_output(tmp_path):
    """Ingest removed the outputs an earlier manifest listed, whatever stage wrote it."""
    out = tmp_path / "lake_like"
    kept = out / "part" / "frames-0.parquet"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"data")
    write_manifest(out, stage="graphs", inputs=[], config={}, outputs=[{"path": "part/frames-0.parquet"}],
                   wall_time_s=0.1)  # fmt: skip
    good = write_capture(tmp_path / "good.csv", CTT_HEADER + GOOD_ROWS)
    assert_one_line_error(run_ingest_cli(good, "--out", out), "holds the output of `kdgat graphs`")
    assert kept.read_bytes() == b"data" and json.loads((out / "manifest.json").read_text())["stage"] == "graphs"
    (out / "manifest.json").write_text('{"stage": "ingest", "outputs": 5')
    assert_one_line_error(run_ingest_cli(good, "--out", out), "manifest.json: unreadable manifest")


@pytest.mark.parametrize("option", ["--split", "--scenario"])
@pytest.mark.parametrize("value", ["../escaped", "/tmp/abs", "a/b"])
def test_split_and_scenario_name_a_folder_inside_out(tmp_path, option, value):
    good = write_capture(tmp_path / "good.csv", CTT_HEADER + GOOD_ROWS)
    assert_one_line_error(run_ingest_cli(good, option, value, "--out", tmp_path / "o"), f"{option} {value!r}")
    assert not list(tmp_path.rglob("*.parquet"))


def test_failure_keeps_earlier_outputs(tmp_path):
    good = write_capture(tmp_path / "good.csv", CTT_HEADER + GOOD_ROWS)
    out = tmp_path / "out"
    assert run_ingest_cli(good, "--out", out).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = write_capture(tmp_path / "bad.csv", CTT_HEADER + "1.0,XYZ,00,0\n")
    # the good file comes first: its new output must not replace the old one either
    assert run_ingest_cli(good, bad, "--out", out).exit_code != 0
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(out.glob(".staging-*"))


def test_skip_mode_records_bad_rows_in_the_manifest(tmp_path):
    text = CTT_HEADER + GOOD_ROWS + "1.2,0G9,00,0\n1.3,0F9,0\n1.4,100,00,1\n"
    path = write_capture(tmp_path / "some_bad.csv", text)
    out = tmp_path / "out"
    result = run_ingest_cli(path, "--on-bad-rows", "skip", "--out", out)
    assert result.exit_code == 0, result.stderr
    item = json.loads((out / "manifest.json").read_text())["outputs"][0]
    assert item["rows"] == 3 and item["attack_rows"] == 1
    assert item["skipped_rows"] == 2
    assert item["skipped_lines"] == [4, 5]
    assert item["skipped_by_problem"] == {"CAN ID is not hexadecimal": 1, "expected N fields, found N": 1}


def test_skip_mode_finds_every_unreadable_row_of_a_block(tmp_path):
    """Rows Arrow cannot read (not UTF-8) are found together, by halving (one at a time, a search each, took
    quadratic time: 43 s for 400 such rows in 100,000); each is named by its line, the rest kept."""
    rows = [f"{i / 100:.2f},0F9,{i % 256:02X},{int(i % 7 == 0)}\n" for i in range(2_000)]
    bad = [37, 38, 900, 1999]
    for i in bad:
        rows[i] = f"{i / 100:.2f},0F9,0\udcff,0\n"
    path = write_capture(tmp_path / "many_bad.csv", CTT_HEADER + "".join(rows))
    out = tmp_path / "out"
    result = run_ingest_cli(path, "--on-bad-rows", "skip", "--out", out)
    assert result.exit_code == 0, result.stderr
    item = json.loads((out / "manifest.json").read_text())["outputs"][0]
    assert item["rows"] == 2_000 - len(bad) and item["skipped_lines"] == [i + 2 for i in bad]  # line 1: the header
    assert item["skipped_by_problem"] == {"unreadable CSV row (CSV conversion error to string: invalid UTF8 data)": 4}


@pytest.mark.parametrize("mode", ["skip", "error"])
def test_lines_whose_quotes_fail_only_together_end_the_read(tmp_path, mode):
    """Two quoted lines that each read alone but not together (a quote opened on one runs into the next): the search
    for the unreadable lines found none and re-read the block forever; then dropped the good lines after them."""
    header = ("timestamp,iface,can_id,dlc,data,priority,pdu_format,pdu_specific,pdu_type,pgn,pgn_label,destination,"
              "source,label,rule_name,rule_type,semantics,rule_severity,rule_layer,rule_description,context_pgn,"
              "context_value\n")  # fmt: skip
    rows = [f"{i / 100:.3f},can0,256,8,0102030405060708,1,1,1,1,1,1,1,1,normal,1,1,1,1,1,1,1,1\n" for i in range(52)]
    for i in (20, 21):
        rows[i] = rows[i].replace(",1,1\n", ',"a"""a,"\n')
    path = write_capture(tmp_path / "quotes.csv", header + "".join(rows))
    result = run_ingest_cli(path, "--format", "j1939-csv", "--on-bad-rows", mode, "--out", tmp_path / "out")
    if mode == "error":
        assert_one_line_error(result, "quotes.csv:22: unreadable CSV row (a quoted field runs over the line end)")
        return
    assert result.exit_code == 0, result.stderr
    item = json.loads((tmp_path / "out" / "manifest.json").read_text())["outputs"][0]
    assert item["rows"] == 50 and item["skipped_lines"] == [22, 23]


def test_skip_mode_with_nothing_left_is_an_error(tmp_path):
    path = write_capture(tmp_path / "all_bad.csv", CTT_HEADER + "1.2,0G9,00,0\n")
    result = run_ingest_cli(path, "--on-bad-rows", "skip", "--out", tmp_path / "o")
    assert_one_line_error(result, "all_bad.csv", "no frames in file (1 bad rows skipped)")


def test_not_gzip_despite_the_name(tmp_path):
    """Compression is detected from content, not from the file name."""
    path = tmp_path / "plain.csv.gz"
    path.write_text(CTT_HEADER + GOOD_ROWS)
    assert run_ingest_cli(path, "--out", tmp_path / "o").exit_code == 0
    real = tmp_path / "real.csv"
    real.write_bytes(gzip.compress((CTT_HEADER + GOOD_ROWS).encode()))
    assert run_ingest_cli(real, "--out", tmp_path / "o2").exit_code == 0


@pytest.mark.parametrize(
    "command",
    [
        ["report", "--lake", "{empty}", "--out", "{folder}"],
        ["lake", "append", "--runs", "{empty}", "--lake", "{folder}"],
        ["evaluate", "--runs", "{empty}", "--graphs", "{empty}", "--out", "{folder}"],
        ["fuse", "--method", "mlp", "--vgae", "{empty}", "--gat", "{empty}", "--graphs", "{empty}", "-o", "{folder}"],
        ["train", "-m", "gat", "-s", "small", "--graphs", "{empty}", "--out", "{folder}"],
        ["ingest", "{capture}", "--out", "{folder}"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_no_stage_writes_into_another_stages_output(tmp_path, command):
    """A folder holding another stage's output (here a graph store's manifest and data) is refused before any
    work: the run would replace that manifest, and every later stage would refuse the store."""
    folder = tmp_path / "graphs"
    folder.mkdir()
    (folder / "metadata.json").write_text("{}\n")
    write_manifest(folder, stage="graphs", inputs=[], config={}, outputs=[], wall_time_s=0.0)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    empty = tmp_path / "empty"
    empty.mkdir()
    capture = write_capture(tmp_path / "c.csv", CTT_HEADER + GOOD_ROWS)
    names = {"{folder}": folder, "{empty}": empty, "{capture}": capture}
    result = runner.invoke(app, [str(names.get(arg, arg)) for arg in command])
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    option = "--lake" if command[0] == "lake" else "--out"
    assert_one_line_error(result, f"{option} {folder}: holds the output of `kdgat graphs`", "give another folder")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_folder_of_other_files_is_refused_as_an_output_with_exit_2(data_root, tmp_path):
    """A folder that holds something else is a usage problem (exit 2), whichever command is given it: as for a
    folder holding another stage's output."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine\n")
    frames = tmp_path / "frames"
    capture = data_root / "road/attacks/max_engine_coolant_temp_attack.csv.xz"
    assert runner.invoke(app, ["ingest", str(capture), "--split", "train", "--out", str(frames)]).exit_code == 0
    commands = {
        "--lake {folder}: exists, is not empty and is not a kdgat lake": ["lake", "append", "--runs", str(tmp_path),
                                                                           "--lake", str(folder)],
        f"{folder}: directory is not empty and has no synth.json": ["synth", "--out", str(folder)],
        f"{folder}: exists and is not a graph store": ["graphs", "--frames", str(frames), "--out", str(folder)],
    }  # fmt: skip
    for message, command in commands.items():
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.exit_code, result.stderr)
        assert_one_line_error(result, message.format(folder=folder))
        assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_reading_a_block_hears_only_its_own_handler(monkeypatch):
    """The hook that takes a block's non-UTF-8 complaint is process-wide while the block is read: an error of
    anything else (another thread's object, here a __del__ that raises) still reaches the hook it replaced, and
    that hook is back once no block is being read."""
    import gc
    import sys

    from kdgat.data.formats.csv_formats import _hearing

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    class Faulty:
        def __del__(self):
            raise RuntimeError("not the block's")

    def note(_row):
        return "skip"

    heard = []
    with _hearing(note, heard):
        Faulty()
        gc.collect()
        assert sys.unraisablehook is not reported.append
    assert [type(r.exc_value) for r in reported] == [RuntimeError] and heard == []
    assert sys.unraisablehook == reported.append


@pytest.mark.parametrize("suffix", ["", ".zst"])
def test_a_line_longer_than_any_capture_has_is_refused_by_its_number(tmp_path, suffix):
    """A capture whose line 4 never ends (53 KB of zstd held 1.5 GB without a newline) grew a copy of that line
    to 3.6 GB of memory before anything was said; it is refused in one line once past 1 MiB, its number given."""
    from kdgat.data.formats.stream import MAX_LINE_BYTES

    capture = write_capture(
        tmp_path / "endless.csv", CTT_HEADER + GOOD_ROWS + "1.2," + "A" * (2 * MAX_LINE_BYTES), suffix
    )
    out = tmp_path / "frames"
    result = run_ingest_cli(capture, "--out", out, "--on-bad-rows", "skip")
    assert_one_line_error(result, f"{capture}:4: a line longer than 1,048,576 bytes")
    assert_no_output(out)


def test_a_line_longer_than_any_capture_has_is_refused_on_a_pipe(tmp_path, monkeypatch):
    """Standard input held such a line whole, waiting for its end; past 1 MiB it is handed on and refused."""
    import os
    import threading

    from kdgat.core.errors import BadInputError
    from kdgat.data.formats.stream import MAX_LINE_BYTES
    from kdgat.detection import sources

    read, write = os.pipe()
    monkeypatch.setattr(sources, "STDIN_FD", read)
    lines = "(1.000000) can0 123#00\n(1.000100) can0 124#01\n"

    def writer():
        try:
            os.write(write, lines.encode())
            for _ in range(3):  # 3 MiB of one line, never ended: the reader must not wait for the rest
                os.write(write, b"7" * MAX_LINE_BYTES)
        except BrokenPipeError:
            pass
        finally:
            os.close(write)

    feeding = threading.Thread(target=writer)
    feeding.start()
    try:
        with pytest.raises(BadInputError, match=r"<stdin>:3: a line longer than 1,048,576 bytes"):
            sources.read_frames("-", lambda block: None)
    finally:
        os.close(read)
        feeding.join()
