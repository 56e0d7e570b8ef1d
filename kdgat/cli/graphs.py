"""`kdgat graphs`: frames -> graph store (:mod:`kdgat.stages.graphs`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kdgat.cli.common import ThreadsOpt, err, out, print_warning, progress_line, user_errors
from kdgat.cli.tables import store_table


def graphs(
    frames: Annotated[Path, typer.Option("--frames", help="An ingest output folder (frame Parquet + manifest).")] = ...,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Graph store folder to write.")] = ...,
    like: Annotated[
        Optional[Path],
        typer.Option(
            "--like",
            help="Existing store whose vocabulary, attack types, preprocessing (window, features), scaling to reuse.",
        ),
    ] = None,
    override: Annotated[
        list[str], typer.Option("--override", "-O", help="Override a key, e.g. -O preprocessing.stride=50.")
    ] = [],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the store is up to date.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Cut frames into windows and build the graph store (train/val by time blocks, one part per test scenario)."""
    from kdgat.core.config import resolve_config
    from kdgat.stages import graphs as stage

    with user_errors():
        cfg = resolve_config("gat", "large", "none", override)
        if like is not None:
            refuse_other_preprocessing(like, cfg.preprocessing, override)

        def progress(i: int, n: int, item) -> None:
            progress_line(f"[{i + 1}/{n}]", item.relative)

        meta = stage.run(
            frames, out_dir, cfg.preprocessing, like=like, force=force,
            progress=progress if err.is_terminal else None, threads=threads,
        ).summary  # fmt: skip
    out.print(store_table(meta, out_dir))
    from kdgat.data.split import FUSION_PART, HELD_OUT_BLOCKS_ADVICE

    missing = [name for name in ("val", FUSION_PART) if not meta["parts"].get(name, {}).get("graphs")]
    if like is None and missing:
        print_warning(
            f"no {' and no '.join(repr(m) for m in missing)} windows: train, fuse and evaluate choose on them. The "
            f"held-out time blocks are round(val_blocks x val_fraction) = round({cfg.preprocessing.val_blocks} x "
            f"{cfg.preprocessing.val_fraction}) per training file (half of them, rounded down, for 'fusion'), and a "
            f"window ({meta['window']} frames) must fit inside one: {HELD_OUT_BLOCKS_ADVICE}"
        )
    if like is not None:
        from kdgat.detection.ood import unlike_training

        if "out_of_distribution" in meta and meta["out_of_distribution"] is None:  # absent: a store built before
            print_warning(f"{like} holds no training windows (built --like another): no out-of-distribution check")
        for warning in unlike_training(meta.get("out_of_distribution"), f"the models of {like}"):
            print_warning(warning)
    if meta.get("timestamps_missing"):
        print_warning(
            f"{len(meta['timestamps_missing'])} capture(s) have no timestamps; their timing features "
            "are neutral and has_timestamps = 0: " + ", ".join(meta["timestamps_missing"])
        )


def refuse_other_preprocessing(like: Path, preprocessing, overrides: list[str]) -> None:
    """``--like`` cuts new captures as the store's models were trained: an ``-O preprocessing.*`` that asks for
    another setting would be ignored, so it is refused (one naming the store's own value is accepted)."""
    from kdgat.core.config import parse_override, store_preprocessing
    from kdgat.core.errors import UsageError
    from kdgat.data.store import open_store

    stored = store_preprocessing(open_store(like).metadata, preprocessing)
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] != "preprocessing":
            continue
        # -O preprocessing.stride=50, or the section as a mapping: -O 'preprocessing={stride: 50}'
        names = parts[1:2] or (list(value) if isinstance(value, dict) else [])
        for name in names:
            if getattr(preprocessing, name, None) != getattr(stored, name, None):
                raise UsageError(
                    f"-O {text}: --like {like} takes every preprocessing setting from that store "
                    f"(preprocessing.{name} = {getattr(stored, name)!r} there); drop the override"
                )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
    app.command("graphs")(graphs)
