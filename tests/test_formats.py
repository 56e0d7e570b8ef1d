"""Readers on small hand-written files: each format's quirks, detection, compression."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from kdgat.core.errors import BadInputError
from kdgat.data.capture import IngestOptions, sources_from_files
from kdgat.data.formats import FORMATS, detect_format
from kdgat.data.formats.base import CUT_LINES
from kdgat.stages.ingest import run as run_ingest

from conftest import COMPRESSORS, write_capture


def detected_rows(name, text, tmp_path, expected_format):
    """Write ``text`` as ``name``, check the format it is recognised as, and ingest it."""
    path = write_capture(tmp_path / name, text)
    assert detect_format(path).name == expected_format
    return ingest_rows(path, tmp_path)


def ingest_rows(path, tmp_path, **options):
    out = tmp_path / "out"
    manifest = run_ingest(sources_from_files([path]), out, IngestOptions(**options))
    (item,) = [o.model_dump() for o in manifest.outputs]
    return item, pq.read_table(out / item["path"]).to_pylist()


# HCRL Car-Hacking: no header; for DLC < 8 the R/T flag sits at DATA[DLC] (ragged rows).
HCRL_CH = """\
1478198376.389427,0316,8,05,21,68,09,21,21,00,6f,R
1478198376.389636,018f,8,fe,5b,00,00,00,3c,00,00,R
1478198376.389864,0260,2,19,21,T
1478198376.390096,02a0,0,R
1478198376.390332,0329,5,40,bb,7f,14,11,T
"""


def test_hcrl_car_hacking_ragged_rows(tmp_path):
    path = write_capture(tmp_path / "ch.csv", HCRL_CH)
    assert detect_format(path).name == "hcrl-ch"
    item, rows = ingest_rows(path, tmp_path)
    assert [r["dlc"] for r in rows] == [8, 8, 2, 0, 5]
    assert [r["label"] for r in rows] == [0, 0, 1, 0, 1]
    assert rows[2]["data"] == bytes.fromhex("1921") + bytes(6)
    assert rows[4]["data"] == bytes.fromhex("40bb7f1411") + bytes(3)
    assert rows[3]["data"] == bytes(8)
    assert [r["can_id"] for r in rows] == [0x316, 0x18F, 0x260, 0x2A0, 0x329]
    assert rows[0]["timestamp"] == pytest.approx(1478198376.389427)


def test_hcrl_car_hacking_flag_in_wrong_place_is_an_error(tmp_path):
    # DLC says 2 but three bytes precede the flag: the flag is not at DATA[DLC].
    path = write_capture(tmp_path / "ch.csv", HCRL_CH.replace("0260,2,19,21,T", "0260,2,19,21,22,T"))
    with pytest.raises(Exception, match=r"ch.csv:3: payload longer than its DLC"):
        ingest_rows(path, tmp_path, format="hcrl-ch")


SURVIVAL = """\
Timestamp: 1513920045.473337        ID: 0130    000    DLC: 8    06 00 00 00 ff 7f 00 00 R
Timestamp: 1513920045.473526        ID: 0131    100    DLC: 0 R
Timestamp: 1513920045.473716        ID: 0140    000    DLC: 8    00 00 00 00 00 00 00 00 T
"""


def test_hcrl_survival_flags_and_remote_frames(tmp_path):
    path = write_capture(tmp_path / "sa.txt", SURVIVAL)
    assert detect_format(path).name == "hcrl-txt"
    _, rows = ingest_rows(path, tmp_path)
    assert [r["label"] for r in rows] == [0, 0, 1]
    assert [r["is_remote"] for r in rows] == [False, True, False]
    assert rows[0]["data"] == bytes.fromhex("06000000ff7f0000")


CANDUMP_L = """\
(1700000000.000100) can0 123#DEADBEEF
(1700000000.000200) can0 18FEF100#0102030405060708
(1700000000.000300) vcan1 7DF#R
(1700000000.000400) can0 100#
"""


def test_candump_l_forms(tmp_path):
    path = write_capture(tmp_path / "dump.log", CANDUMP_L)
    assert detect_format(path).name == "candump-l"
    _, rows = ingest_rows(path, tmp_path)
    assert [(r["can_id"], r["is_extended"], r["is_remote"], r["dlc"]) for r in rows] == [
        (0x123, False, False, 4),
        (0x18FEF100, True, False, 8),
        (0x7DF, False, True, 0),
        (0x100, False, False, 0),
    ]
    assert rows[0]["data"] == bytes.fromhex("DEADBEEF") + bytes(4)
    assert all(r["label"] is None for r in rows)


def test_candump_l_with_crysys_label_columns(tmp_path):
    text = "(0.000000) can0 110#02202e1300181300 False\tFalse\n(0.000177) can0 410#0003009000461501 1\tFalse\n"
    path = write_capture(tmp_path / "mal.log", text)
    _, rows = ingest_rows(path, tmp_path)
    assert [r["label"] for r in rows] == [0, 1]


def test_a_label_refused_is_said_as_written(tmp_path):
    """The value was printed lowercased ('r' for a file's 'R')."""
    path = write_capture(tmp_path / "flags.log", "(0.000000) can0 110#02202e13 R\n")
    with pytest.raises(BadInputError, match=r"flags.log:1: label must be 1/0 or True/False: 'R'"):
        ingest_rows(path, tmp_path)


def test_candump_l_error_frames_and_can_fd_frames(tmp_path):
    """Error frames (SocketCAN's bit 29 in the ID) and CAN FD frames beyond 8 bytes are left out and counted,
    with their labels; an FD frame of up to 8 bytes reads as a classic frame (as python-can hands it over)."""
    text = (
        "(0.1) can0 123#1122 0\n"
        "(0.2) can0 20000080#0000000000000000 0\n"  # bus off
        "(0.3) can0 456##1112233445566778899AABB 1\n"  # FD, 12 bytes
        "(0.4) can0 457##311223344 1\n"  # FD, 4 bytes
        "(0.5) can0 1FFFFFFF#00 0\n"  # the widest 29-bit ID: a data frame
    )
    path = write_capture(tmp_path / "bus.log", text)
    assert detect_format(path).name == "candump-l"
    item, rows = ingest_rows(path, tmp_path)
    assert [(r["can_id"], r["is_extended"], r["dlc"], r["label"]) for r in rows] == [
        (0x123, False, 2, 0), (0x457, False, 4, 1), (0x1FFFFFFF, True, 1, 0)
    ]  # fmt: skip
    assert rows[1]["data"] == bytes.fromhex("11223344") + bytes(4)
    assert item["left_out_frames"] == {"error frames": 1, "CAN FD frames over 8 bytes": 1}
    assert item["left_out_attack_rows"] == 1 and item["skipped_rows"] == 0 and item["attack_rows"] == 1


def test_candump_l_raw_dlc_suffix_and_remote_dlc(tmp_path):
    """candump -8 writes a classic 8-byte frame sent with a raw DLC of 9-F as '_<dlc>'; 'ID#R<d>' asks for d bytes."""
    text = "(0.1) can0 123#1122334455667788_9\n(0.2) can0 124#R8_A\n(0.3) can0 125#R3\n(0.4) can0 126#R\n"
    path = write_capture(tmp_path / "len8.log", text)
    _, rows = ingest_rows(path, tmp_path)
    assert [(r["can_id"], r["is_remote"], r["dlc"]) for r in rows] == [
        (0x123, False, 8), (0x124, True, 8), (0x125, True, 3), (0x126, True, 0)
    ]  # fmt: skip
    assert rows[0]["data"] == bytes.fromhex("1122334455667788")


@pytest.mark.parametrize(
    "line, problem",
    [
        ("(0.2) can0 124#11223344_9", "a raw DLC suffix is '_9' to '_F' after 8 data bytes: '_9'"),
        ("(0.2) can0 124#1122334455667788_8", "a raw DLC suffix is '_9' to '_F' after 8 data bytes: '_8'"),
        ("(0.2) can0 124#R9", "a remote frame's DLC is one digit 0-8: '9'"),
    ],
)
def test_candump_l_bad_raw_dlc_is_named(tmp_path, line, problem):
    path = write_capture(tmp_path / "bad.log", f"(0.1) can0 123#00\n{line}\n")
    with pytest.raises(Exception, match=re.escape(f"bad.log:2: {problem}")):
        ingest_rows(path, tmp_path)


@pytest.mark.parametrize("block_size", [16, 1 << 20], ids=["a block per line", "one block"])
def test_a_candump_last_line_cut_while_written_is_left_out(tmp_path, block_size):
    """candump ends every line, so a last line without a line end was cut mid-write: '124#1122' may have been
    '124#11223344'. It is left out and counted, whatever it reads as; with its line end it is a frame."""
    cut = write_capture(tmp_path / "cut.log", "(0.1) can0 123#11\n(0.2) can0 124#1122")
    item, rows = ingest_rows(cut, tmp_path / "a", block_size=block_size)
    assert [r["can_id"] for r in rows] == [0x123]
    assert item["left_out_frames"] == {CUT_LINES: 1} and item["skipped_rows"] == 0
    odd = write_capture(tmp_path / "odd.log", "(0.1) can0 123#11\n(0.2) can0 124#112")  # no error either
    assert ingest_rows(odd, tmp_path / "b", block_size=block_size)[0]["left_out_frames"] == {CUT_LINES: 1}
    whole = write_capture(tmp_path / "whole.log", "(0.1) can0 123#11\n(0.2) can0 124#1122\n")
    item, rows = ingest_rows(whole, tmp_path / "c", block_size=block_size)
    assert [r["dlc"] for r in rows] == [1, 2] and item["left_out_frames"] == {}
    # candump's default output ends every line too ('[8]' with two bytes would be a bad row, not a frame)
    columns = write_capture(tmp_path / "cut.txt", "  can0  123   [1]  11\n  can0  124   [8]  11 22")
    item, rows = ingest_rows(columns, tmp_path / "d", block_size=block_size)
    assert [r["can_id"] for r in rows] == [0x123] and item["left_out_frames"] == {CUT_LINES: 1}


def test_the_left_out_warning_gives_each_kind_its_own_reason():
    from kdgat.data.capture import left_out_warning

    said = left_out_warning({"error frames": 1, CUT_LINES: 1})
    assert said == (
        f"1 error frames left out: kdgat's models read classic CAN data frames (0-8 bytes); 1 {CUT_LINES} left out"
    )
    assert left_out_warning({CUT_LINES: 1}, attack_rows=0) == f"1 {CUT_LINES} left out"


@pytest.mark.parametrize("block_size", [64, 1 << 20], ids=["a block per line or two", "one block"])
def test_frames_earlier_than_the_frame_before_are_counted_across_blocks(tmp_path, block_size):
    text = "".join(f"({t}) can0 123#00\n" for t in (0.1, 0.3, 0.2, 0.4, 0.5, 0.45, 0.6))
    path = write_capture(tmp_path / "steps.log", "2020-11-24T042648\n" + text)  # a date line: lines count it
    item, rows = ingest_rows(path, tmp_path, block_size=block_size)
    assert [r["timestamp"] for r in rows] == pytest.approx([0.1, 0.3, 0.2, 0.4, 0.5, 0.45, 0.6])  # kept as recorded
    assert (item["backwards_timestamps"], item["first_backwards_line"]) == (2, 4)


def test_candump_columns_error_frames_and_can_fd_frames(tmp_path):
    """candump's default output: an error frame with its 'ERRORFRAME' text, even on the first line, says nothing
    of label columns; a CAN FD frame shows its length ('[12]')."""
    text = (
        "  can0  20000004   [8]  00 00 08 00 00 00 00 00   ERRORFRAME\n"
        "  can0  123   [2]  11 22\n"
        "  can0  456  [12]  11 22 33 44 55 66 77 88 99 AA BB CC\n"
        "  can0  124   [1]  01\n"
    )
    item, rows = detected_rows("bus.log", text, tmp_path, "candump")
    assert [(r["can_id"], r["dlc"], r["label"]) for r in rows] == [(0x123, 2, None), (0x124, 1, None)]
    assert item["left_out_frames"] == {"error frames": 1, "CAN FD frames over 8 bytes": 1}


def test_candump_columns_error_explanations_and_raw_dlc(tmp_path):
    """candump -e -8: the lines explaining an error frame hold no frame (even before the first frame, where the
    format is recognised); '{D}' is the DLC in hex, 9-F carrying 8 bytes."""
    text = (
        "  can0  20000004   [8]  00 00 08 00 00 00 00 00   ERRORFRAME\n"
        "\tcontroller-problem{rx-error-warning}\n"
        "\terror-counter-tx-rx{{96}{0}}\n"
        "  can0  123  {9}  11 22 33 44 55 66 77 88\n"
        "  can0  124  {2}  11 22\n"
    )
    item, rows = detected_rows("bus.log", text, tmp_path, "candump")
    assert [(r["can_id"], r["dlc"]) for r in rows] == [(0x123, 8), (0x124, 2)]
    assert item["left_out_frames"] == {"error frames": 1} and item["skipped_rows"] == 0
    stray = write_capture(tmp_path / "stray.log", text + "\tno-such-class{}\n")  # not candump's: still an error
    with pytest.raises(Exception, match=r"stray.log:6: malformed line"):
        ingest_rows(stray, tmp_path / "b")


@pytest.mark.parametrize(
    "text",
    [
        " (000.005001)  can0  18FEDF00   [8]  8A A0 28 7D 7D FF FF F5\n (000.005580)  can0  123   [2]  00 FF\n",
        "  can0  18FEDF00   [8]  8A A0 28 7D 7D FF FF F5\n  can0  123   [2]  00 FF\n",
    ],
    ids=["-ta timestamps", "no timestamps"],
)
def test_candump_column_forms(tmp_path, text):
    path = write_capture(tmp_path / "dump.log", text)
    assert detect_format(path).name == "candump"
    _, rows = ingest_rows(path, tmp_path)
    assert [(r["can_id"], r["is_extended"], r["dlc"]) for r in rows] == [(0x18FEDF00, True, 8), (0x123, False, 2)]
    assert rows[1]["data"] == bytes.fromhex("00FF") + bytes(6)
    has_ts = text.lstrip().startswith("(")
    assert (rows[0]["timestamp"] is not None) == has_ts


def test_candump_remote_request(tmp_path):
    path = write_capture(tmp_path / "dump.log", "  can0  123   [4]  remote request\n  can0  124   [1]  01\n")
    _, rows = ingest_rows(path, tmp_path)
    assert rows[0]["is_remote"] and rows[0]["dlc"] == 4 and rows[0]["data"] == bytes(8)


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_inputs_give_identical_frames(tmp_path, suffix):
    text = "timestamp,arbitration_id,data_field,attack\n1.0,1E5,460196E001FE6701,0\n1.5,000,0000000000000000,1\n"
    plain = write_capture(tmp_path / "plain.csv", text)
    packed = write_capture(tmp_path / "packed.csv", text, suffix)
    _, expected = ingest_rows(plain, tmp_path / "a")
    item, got = ingest_rows(packed, tmp_path / "b")

    def strip(rows):  # the names derived from the file name differ by design
        return [{k: v for k, v in r.items() if k not in ("source_file", "scenario", "attack_type")} for r in rows]

    assert strip(got) == strip(expected)


def test_detection_covers_every_format():
    samples = {
        "can-train-and-test": ["timestamp,arbitration_id,data_field,attack"],
        "daga": ["timestamp,CAN_ID,DLC,PAYLOAD_HEX,PAYLOAD_BIN,ANOMALY"],
        "road": ["Time,Id,Byte1,Byte2,Byte3,Byte4,Byte5,Byte6,Byte7,Byte8,Label"],
        "ciciov2024": ["ID,DATA_0,DATA_1,DATA_2,DATA_3,DATA_4,DATA_5,DATA_6,DATA_7,label,category,specific_class"],
        "j1939-csv": [
            "timestamp,iface,can_id,dlc,data,priority,pdu_format,pdu_specific,pdu_type,pgn,pgn_label,destination,"
            "source,label,rule_name,rule_type,semantics,rule_severity,rule_layer,rule_description,context_pgn,context_value"
        ],
        "candump-l": ["(0.000000) can0 110#02202e1300181300"],
        "candump": ["  can0  160   [7]  31 23 26 00 08 FF E8"],
        "hcrl-txt": ["Timestamp:          0.000000        ID: 0316    000    DLC: 8    05 20 ea 0a 20 1a 00 7f"],
        "hcrl-ch": ["1478198376.389427,0316,8,05,21,68,09,21,21,00,6f,R"],
        "crysys-txt": ["1618676990.693704        0110    000    8    02 20 2e 13 00 18 13 00"],
        "road-decimal": ["1760,0,0,0,0,0,0,0,0,0.0", "852,1,2,3,4,255,6,7,8,1.0"],
    }
    assert set(samples) == set(FORMATS)
    for name, lines in samples.items():
        matching = [fmt.name for fmt in FORMATS.values() if fmt.sniff(lines)]
        assert matching == [name], (name, matching)


@pytest.mark.parametrize(
    "name, text",
    [
        ("candump-l", "(0.000000) can0 110#02202e1300181300\n(0.000500) can0 1E5#460196E001FE6701\n"),
        ("candump", "  can0  160   [7]  31 23 26 00 08 FF E8\n  can0  1E5   [2]  46 01\n"),
        ("hcrl-txt", "Timestamp:          0.000000        ID: 0316    000    DLC: 8    05 20 ea 0a 20 1a 00 7f\n"),
        ("hcrl-ch", HCRL_CH),
        ("crysys-txt", "1618676990.693704        0110    000    8    02 20 2e 13 00 18 13 00\n"),
        ("can-train-and-test", "timestamp,arbitration_id,data_field,attack\n1.0,1E5,460196E001FE6701,0\n"),
    ],
)
@pytest.mark.parametrize("suffix", ["", ".xz"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_line(tmp_path, name, text, suffix):
    """Notepad, PowerShell and Excel's "CSV UTF-8" start a text file with a byte-order mark: the format is
    recognised and the frames read as without it (detection failed on every line format: "unknown format")."""
    plain = write_capture(tmp_path / "plain.log", text, suffix)
    marked = write_capture(tmp_path / "marked.log", "\ufeff" + text, suffix)  # the mark's UTF-8 bytes: EF BB BF
    assert detect_format(marked).name == detect_format(plain).name == name
    _, expected = ingest_rows(plain, tmp_path / "a")
    _, got = ingest_rows(marked, tmp_path / "b")
    names = ("source_file", "scenario", "attack_type")
    assert [{k: v for k, v in r.items() if k not in names} for r in got] == [
        {k: v for k, v in r.items() if k not in names} for r in expected
    ]


def test_blank_lines_are_ignored_and_line_numbers_stay_exact(tmp_path):
    text = "timestamp,arbitration_id,data_field,attack\n1.0,1E5,00,0\n\n2.0,1E6,01,0\n\n3.0,XYZ,02,0\n"
    path = write_capture(tmp_path / "gaps.csv", text)
    with pytest.raises(Exception, match=r"gaps.csv:6: CAN ID is not hexadecimal: 'XYZ'"):
        ingest_rows(path, tmp_path)
    item, rows = ingest_rows(path, tmp_path, on_bad_rows="skip")
    assert [r["can_id"] for r in rows] == [0x1E5, 0x1E6]
    assert item["ignored_lines"] == 2 and item["skipped_lines"] == [6]


def test_small_blocks_give_the_same_frames_as_one_block(data_root, tmp_path):
    """Streaming: a tiny block size (many carried partial lines) changes nothing."""
    path = data_root / "road/attacks/fuzzing_attack_2.csv.xz"
    _, whole = ingest_rows(path, tmp_path / "a")
    item, streamed = ingest_rows(path, tmp_path / "b", block_size=4096, row_group_rows=5000)
    assert streamed == whole
    meta = pq.ParquetFile(tmp_path / "b" / "out" / item["path"]).metadata
    assert meta.num_row_groups > 1


def test_attack_type_defaults_to_the_file_name(tmp_path):
    text = "timestamp,arbitration_id,data_field,attack\n1.0,000,00,1\n2.0,1E6,01,0\n"
    path = write_capture(tmp_path / "DoS-3.csv", text)
    _, rows = ingest_rows(path, tmp_path)
    assert [r["attack_type"] for r in rows] == ["dos", "normal"]


DAGA_FLOAT_IDS = """\
timestamp,CAN_ID,DLC,PAYLOAD_HEX,PAYLOAD_BIN,ANOMALY
0.100,1,64,0,0,FALSE
0.200,1.0,64,ff,11111111,TRUE
0.300,290.0,64,1122334455667788,0,True
0.400,290,64,1122334455667788,0,false
"""


def test_daga_ids_written_as_hex_digits_with_a_trailing_point_zero(tmp_path):
    path = write_capture(tmp_path / "ID_1_V40.can.csv", DAGA_FLOAT_IDS)
    item, rows = ingest_rows(path, tmp_path)
    assert [r["can_id"] for r in rows] == [0x1, 0x1, 0x290, 0x290]  # hex, like the rows without ".0"
    assert [r["label"] for r in rows] == [0, 1, 1, 0] and item["attack_rows"] == 2
    bad = write_capture(tmp_path / "bad.csv", DAGA_FLOAT_IDS.replace("290.0", "290.5"))
    with pytest.raises(Exception, match=r"bad.csv:4: CAN ID is not hexadecimal: '290.5'"):
        ingest_rows(bad, tmp_path / "b")


ROAD_DECIMAL = "1760,0,0,0,0,0,0,0,0,0.0\n852,1,2,3,4,255,6,7,8,1.0\n1760,0,0,0,0,0,0,0,9,0.0\n"


def test_headerless_decimal_road_without_timestamps(tmp_path):
    path = write_capture(tmp_path / "correlated_signal_attack_1.csv", ROAD_DECIMAL)
    assert detect_format(path).name == "road-decimal"
    item, rows = ingest_rows(path, tmp_path)
    assert [r["can_id"] for r in rows] == [1760, 852, 1760] and all(r["timestamp"] is None for r in rows)
    assert [r["label"] for r in rows] == [0, 1, 0] and [r["dlc"] for r in rows] == [8, 8, 8]
    assert rows[1]["data"] == bytes([1, 2, 3, 4, 255, 6, 7, 8])
    assert rows[1]["attack_type"] == "correlated_signal_attack" and rows[0]["attack_type"] == "normal"
    broken = write_capture(tmp_path / "b.csv", ROAD_DECIMAL + "852,1,2,3,4,256,6,7,8,1.0\n")
    with pytest.raises(Exception, match=r"b.csv:4: byte 4 must be a value 0..255"):
        ingest_rows(broken, tmp_path / "b")


def test_skipping_bad_rows_counts_the_attack_rows_it_drops_and_says_so(tmp_path):
    from typer.testing import CliRunner

    from kdgat.cli import app

    text = DAGA_FLOAT_IDS.replace("290.0", "2Z0").replace("1.0,64", "1.5,64")
    path = write_capture(tmp_path / "mixed.csv", text)
    item, rows = ingest_rows(path, tmp_path, on_bad_rows="skip")
    assert (item["skipped_rows"], item["skipped_attack_rows"], len(rows)) == (2, 2, 2)
    result = CliRunner().invoke(app, ["ingest", str(path), "--on-bad-rows", "skip", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "2 malformed rows dropped (2 of them labelled attack)" in warning and "lines 3, 4" in warning
