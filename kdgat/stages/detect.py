"""The detect stage: a detector bundle on capture files, a replay, or a live bus -> a verdict per window.

Files are read block by block (memory stays bounded whatever their size) through the ingest's
readers or python-can's, windows are built incrementally and scored in the batches ``kdgat
evaluate`` uses, so a labelled capture gets the metrics evaluate would give on the same windows.
A replay (``replay=True``) releases a capture's frames at their recorded times and a bus
(``bus="socketcan:can0"``) is read as frames arrive; both emit each window's verdict the moment
it closes and stop cleanly on a stop signal (SIGINT, SIGTERM, SIGUSR2, SIGHUP) or after ``duration`` seconds,
with the summary.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from kdgat.core.atomic import clean_stale
from kdgat.core.errors import BadInputError, KdgatError, UsageError
from kdgat.core.hashing import content_hash, sha256_file
from kdgat.core.manifest import Manifest, package_versions
from kdgat.core.signals import stop_signals_handled_by
from kdgat.core.threads import set_threads
from kdgat.data.capture import left_out_warning
from kdgat.data.formats.stream import STDIN, STDIN_NAME
from kdgat.detection.detector import load_detector
from kdgat.detection.outputs import RowSink, open_sink, summarised_output, summary_path
from kdgat.detection.session import Session
from kdgat.detection.sources import Pacer, StopStream, check_format, open_bus, read_bus, read_frames


def _timer(stop: threading.Event, duration: float | None) -> None:
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()


def _check_out(out, captures: list, detector_dir) -> None:
    """``--out`` (and the summary beside it) can be written, and is not a capture being read or a file of the
    bundle: found before any scoring, not when the rows are moved into place (an earlier output stays whole)."""
    if out is None or str(out) == "-":
        return
    rows, summary = Path(out).resolve(), summary_path(Path(out)).resolve()
    bundle = Path(detector_dir).resolve()
    read = {Path(c).resolve() for c in captures if str(c) != STDIN}
    for path in (rows, summary):
        if path in read:
            raise UsageError(f"--out {out}: would overwrite {path}, a capture this run reads; write elsewhere")
        if path.is_relative_to(bundle):
            raise UsageError(f"--out {out}: would write {path} into the detector bundle {bundle}; write elsewhere")
        if path.is_dir():
            raise KdgatError(f"--out {out}: {path} is a folder; name a file")
    # a.csv and a.parquet share a.summary.json: the second run would leave a.csv described by another run's summary
    described = summarised_output(summary)
    if described is not None and described != rows.name and (rows.parent / described).exists():
        raise UsageError(
            f"--out {out}: its summary {summary} describes {rows.parent / described} (an earlier run); "
            "name this output otherwise, or remove those two files"
        )


def is_live(captures: list, replay: bool, bus: str | None) -> bool:
    """A stream read as it comes (a replay, a bus, standard input): verdicts go to stdout by default, windows are
    scored as they close, on one thread unless told otherwise."""
    return bool(replay or bus is not None or any(str(c) == STDIN for c in captures))


def run(
    captures: list[str | Path],
    detector_dir: str | Path,
    *,
    out: str | Path | None = None,
    fmt: str = "auto",
    on_bad_rows: str = "error",
    stride: int | None = None,
    use: str | None = None,
    threads: int | None = None,
    replay: bool = False,
    speed: float = 1.0,
    bus: str | None = None,
    bus_options: dict | None = None,
    duration: float | None = None,
    compile_models: bool = False,
    batch_size: int = 1024,
    stop: threading.Event | None = None,
    sink: RowSink | None = None,
    on_file=None,
) -> Manifest:
    """Score ``captures`` (or ``bus``) with the bundle at ``detector_dir``; the manifest's summary is the summary.

    ``out``: None (summary only), ``-`` (JSON lines on stdout) or a .parquet/.csv/.jsonl file. ``on_bad_rows``:
    "error" (a malformed row stops the run) or "skip" (dropped, counted in the file's ``rows_skipped``, warned).
    ``bus_options`` go to ``can.Bus`` (e.g. ``bitrate``). ``stride`` defaults to the one the models were
    trained with. ``on_file(summary)`` hears about
    each finished file. ``stop`` (an Event) ends a replay or a bus from another thread.
    """
    started = time.perf_counter()
    if bool(captures) == bool(bus):
        raise UsageError("give capture files or --bus INTERFACE:CHANNEL (not both, not neither)")
    if replay and bus:
        raise UsageError("--replay replays capture files; a --bus is live already")
    piped = [c for c in captures if str(c) == STDIN]
    if len(piped) > 1:
        raise UsageError("standard input (-) can be read once")
    if piped and replay:
        raise UsageError("--replay replays capture files; standard input (-) arrives at its own pace")
    live = is_live(captures, replay, bus)
    if duration is not None and not live:
        raise UsageError("--duration limits a --replay, a --bus or standard input (-)")
    if duration is not None and duration <= 0:
        raise UsageError(f"--duration must be positive seconds, got {duration:g}")
    if speed != 1.0 and not replay:
        raise UsageError("--speed sets the pace of a --replay")
    if speed <= 0:
        raise UsageError(f"--speed must be positive, got {speed:g}")
    if bus_options and not bus:
        raise UsageError("--bus-option configures a --bus")
    # a live stream scores a few windows at a time: intra-op threads only add hand-offs (measured on the
    # shared 2-core machine: one window took 4 ms on 1 thread, 30 ms on 2), so it defaults to one
    threads = set_threads(1 if threads is None and live else threads)
    detector = load_detector(detector_dir, compile_models=compile_models, batch_size=batch_size)
    stride = detector.spec.stride if stride is None else int(stride)
    if not 1 <= stride <= detector.spec.window:
        raise UsageError(f"--stride must be from 1 to the window ({detector.spec.window}), got {stride}")
    label = detector.spec.detector(use).label
    for capture in captures:
        if str(capture) != STDIN and not Path(capture).is_file():
            raise BadInputError(capture, "file not found" if not Path(capture).exists() else "not a file")
    check_format(fmt)
    if on_bad_rows not in ("error", "skip"):
        raise UsageError(f"--on-bad-rows must be error or skip, not {on_bad_rows!r}")
    _check_out(out, captures, detector_dir)
    if out is not None and str(out) != "-":
        clean_stale(Path(out).resolve().parent)  # temporary files of a run killed while writing there
    sink = open_sink(out) if sink is None else sink
    stop = stop or threading.Event()
    files, inputs = [], []
    ok = False
    try:
        # live: a stop signal ends the stream cleanly (open windows close, the summary follows) instead of at once
        with stop_signals_handled_by(lambda *_: stop.set()) if live else nullcontext():
            _timer(stop, duration)
            if bus is not None:
                session = Session(detector, bus, sink, stride=stride, use=use, live=True)
                handle = open_bus(bus, **(bus_options or {}))
                try:
                    frames, left_out = read_bus(handle, session, stop)
                finally:
                    handle.shutdown()
                session.finish()
                files.append(_with_source(session.summary(), {"format": "bus", "frames": frames}, left_out, []))
            for capture in captures:
                if stop.is_set():
                    break
                pipe = str(capture) == STDIN  # live: each window scored as it closes, as on a bus
                name = STDIN_NAME if pipe else str(capture)
                group = 1 if replay or pipe else batch_size
                session = Session(detector, name, sink, stride=stride, use=use, group=group, live=replay or pipe)
                consume = Pacer(session, speed, stop, Path(capture)) if replay else session
                try:
                    info = read_frames(capture, consume, fmt, on_bad_rows=on_bad_rows, stop=stop)
                    details = {"format": info.format, "sha256": info.sha256}
                    if pipe and stop.is_set():  # a signal or --duration ended it, not the end of the input
                        details["stopped"] = True
                    if info.skipped is not None:
                        details["rows_skipped"] = info.skipped
                    left_out, warnings = info.left_out, info.warnings
                except StopStream:
                    details, left_out, warnings = {"format": fmt, "stopped": True}, {}, []
                except ValueError as exc:  # the window builder refuses a mix of labelled and unlabelled frames
                    raise BadInputError(capture, str(exc)) from None
                session.finish()
                summary = _with_source(session.summary(), details, left_out, warnings)
                files.append(summary)
                inputs.append({"path": name if pipe else str(Path(capture).resolve()), "sha256": details.get("sha256")})
                if on_file is not None:
                    on_file(summary)
        summary = _summary(detector, label, stride, files, threads, live)
        bundle_sha256 = sha256_file(Path(detector_dir) / "detector.json")
        settings = {"stride": stride, "use": label, "format": fmt, "on_bad_rows": on_bad_rows, "replay": replay,
                    "speed": speed, "bus": bus}  # fmt: skip
        manifest = Manifest(
            stage="detect",
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            dataset=detector.spec.dataset,
            inputs=[{"path": str(Path(detector_dir).resolve() / "detector.json"), "sha256": bundle_sha256}, *inputs],
            config={
                "detector": str(Path(detector_dir).resolve()),
                **settings,
                "out": None if out is None else str(out),
            },  # fmt: skip
            # what decides the verdicts: the bundle (by its content, wherever it lies) and the settings, not --out
            config_hash=content_hash({**settings, "detector_sha256": bundle_sha256}),
            versions=package_versions(),
            wall_time_s=round(time.perf_counter() - started, 3),
            outputs=[] if out in (None, "-") else [{"path": os.path.abspath(out)}],  # the sink adds its sha256
            summary=summary,
        )
        sink.close(manifest.model_dump(mode="json"))
        ok = True
        return manifest
    finally:
        if not ok:
            sink.close(None)


def _with_source(summary: dict, details: dict, left_out: dict[str, int], warnings: list[str]) -> dict:
    """A stream's summary with what its source said: the frames it left out (and a warning for them, first) and
    the reader's own warnings after the session's."""
    said = left_out_warning(left_out)
    extra = {"frames_left_out": left_out} if left_out else {}
    return {**summary, **details, **extra, "warnings": ([said] if said else []) + summary["warnings"] + warnings}


def _summary(detector, label: str, stride: int, files: list[dict], threads: int, live: bool) -> dict:
    spec = detector.spec
    chosen = spec.detector(label)
    windows = sum(f["windows"] for f in files)
    alerts = sum(f["alerts"] for f in files)
    return {
        "detector": label,
        "threshold": chosen.threshold.value,
        "threshold_policy": chosen.threshold.policy,
        "parameters": detector.parameters(label),
        "feature_set": spec.feature_set,
        "window": spec.window,
        "stride": stride,
        "threads": threads,
        "live": live,
        "windows": windows,
        "alerts": alerts,
        "alert_rate": alerts / windows if windows else None,
        "out_of_distribution": any(f["out_of_distribution"] for f in files),
        "files": files,
    }
