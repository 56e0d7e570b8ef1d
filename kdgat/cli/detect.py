"""`kdgat detect`: a detector bundle on captures, a replay or a live bus (:mod:`kdgat.stages.detect`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from kdgat.cli.common import BadRows, FailOn, err, out, print_warning, user_errors
from kdgat.cli.tables import detect_metrics_table, detect_table

FAILED = 3  # --fail-on: what it names was seen (1 and 2 are errors)


def detect(
    captures: Annotated[
        Optional[list[Path]],
        typer.Argument(
            help="Capture files: every format `kdgat ingest` reads, and Vector ASC/BLF, PEAK TRC; - for standard "
            "input (a text format, e.g. `candump -L can0 | kdgat detect - ...`)."
        ),
    ] = None,
    detector: Annotated[Path, typer.Option("--detector", "-d", help="Detector bundle from `kdgat export`.")] = ...,
    out_path: Annotated[
        Optional[str],
        typer.Option(
            "--out",
            "-o",
            help="Verdicts per window: .parquet, .csv or .jsonl file, or - for JSON lines "
            "on stdout (default: - for --bus, --replay and standard input, else the summary only).",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Capture reader (see `kdgat formats`; asc, blf, trc), or auto.")
    ] = "auto",
    on_bad_rows: Annotated[
        BadRows,
        typer.Option(
            "--on-bad-rows",
            help="error: stop at the first malformed row; skip: drop malformed rows, count them in the summary "
            "(rows_skipped) and warn.",
        ),
    ] = BadRows.error,
    stride: Annotated[
        Optional[int], typer.Option("--stride", min=1, help="Frames between windows (default: the training stride).")
    ] = None,
    use: Annotated[
        Optional[str],
        typer.Option("--use", help="Which detector of the bundle gives the verdict (default: the first)."),
    ] = None,
    threads: Annotated[
        Optional[int],
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads (default: 1 on a live bus, where a few windows at a time gain nothing from more; "
            "otherwise $KDGAT_THREADS, else $OMP_NUM_THREADS, else every core).",
        ),
    ] = None,
    bus: Annotated[
        Optional[str],
        typer.Option("--bus", help="A live bus through python-can: INTERFACE:CHANNEL, e.g. socketcan:can0."),
    ] = None,
    bus_option: Annotated[
        list[str],
        typer.Option("--bus-option", help="KEY=VALUE passed to python-can's Bus (repeatable), e.g. bitrate=500000."),
    ] = [],
    replay: Annotated[bool, typer.Option("--replay", help="Feed the captures at their recorded timing.")] = False,
    speed: Annotated[float, typer.Option("--speed", help="Replay speed factor (2 = twice as fast).")] = 1.0,
    duration: Annotated[
        Optional[float], typer.Option("--duration", help="Stop a --bus, --replay or standard input after S seconds.")
    ] = None,
    compile_models: Annotated[
        bool, typer.Option("--compile", help="Score with torch.compile'd models (tens of seconds to compile).")
    ] = False,
    fail_on: Annotated[
        list[FailOn],
        typer.Option(
            "--fail-on",
            help=f"Exit {FAILED} (after writing everything) when a window alerted (alert) or a capture does not look "
            "like the training vehicle (ood); repeatable. For scripts and CI: 0 then means none of them.",
        ),
    ] = [],
) -> None:
    """Which windows are attacks: a verdict per window, with the CAN IDs behind each alert, and a summary."""
    from kdgat.stages import detect as stage

    target = out_path if out_path is not None else ("-" if stage.is_live(captures or [], replay, bus) else None)
    # the summary table goes to stderr when stdout carries the verdicts
    show = err if target == "-" else out
    with user_errors():
        summary = stage.run(
            captures or [], detector, out=target, fmt=fmt, on_bad_rows=on_bad_rows.value, stride=stride, use=use,
            threads=threads,
            replay=replay, speed=speed, bus=bus, bus_options=_options(bus_option), duration=duration,
            compile_models=compile_models,
        ).summary  # fmt: skip
    _report(show, summary)
    failed = failures(summary, {f.value for f in fail_on})
    if failed:
        err.print(Text(f"detect: exit {FAILED} (--fail-on): " + "; ".join(failed)), soft_wrap=True)
        raise typer.Exit(FAILED)


def failures(summary: dict, fail_on: set[str]) -> list[str]:
    """What of ``--fail-on`` the run showed, one phrase each (empty: exit 0)."""
    files = summary["files"]
    said = []
    if "alert" in fail_on and summary["alerts"]:
        alerted = sum(1 for f in files if f["alerts"])
        said.append(f"{summary['alerts']:,} alert window(s) in {alerted} of {len(files)} capture(s)")
    if "ood" in fail_on and summary["out_of_distribution"]:
        names = [f["file"] for f in files if f["out_of_distribution"]]
        said.append(f"out of distribution: {', '.join(names)}")
    return said


def _options(items: list[str]) -> dict:
    """KEY=VALUE strings -> keyword arguments (numbers and true/false converted)."""
    from kdgat.core.errors import UsageError

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--bus-option {item!r}: expected KEY=VALUE")
        for convert in (int, float):
            try:
                value = convert(value)
                break
            except ValueError:
                continue
        options[key] = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
    return options


def _report(console: Console, summary: dict) -> None:
    console.print(detect_table(summary))
    metrics = detect_metrics_table(summary)
    if metrics is not None:
        console.print(metrics)
    for f in summary["files"]:
        if f["frames"] == 0:  # e.g. a python-can `virtual` bus, which only this process could write to
            print_warning(f"{f['file']}: no frame arrived, nothing was scored")
        for warning in f.get("warnings", []):
            print_warning(f"{f['file']}: {warning}")
        if f["out_of_distribution"]:
            print_warning(f"{f['file']}: does not look like the training vehicle: " + "; ".join(f["ood_reasons"]))
        if "latency_ms" in f:
            lat = f["latency_ms"]
            console.print(f"{f['file']}: frame-to-verdict latency p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms; "
                          f"{f['frames_per_s']:,.0f} frames/s")  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("detect")(detect)
