"""The dataset catalog: named datasets, their files per split and test scenario.

Entries live in ``config/datasets.yaml`` (plus any ``--catalog FILE`` of the
user's), are validated like the run config, and resolve against a data root,
so the same catalog works on a laptop and on a cluster.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kdgat.core.config import default_config_dir
from kdgat.core.errors import ConfigError, KdgatError, UsageError
from kdgat.core.yamlio import describe_validation_error, load_yaml_mapping
from kdgat.data.capture import IngestSource, attack_type_from_name, capture_stem
from kdgat.data.split import part_name

DATA_ROOT_ENV = "KDGAT_DATA_ROOT"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _known_format(value: str | None, *, auto: bool) -> str | None:
    """A reader's name as ``kdgat formats`` lists it: a typo is refused when the catalog is read, not when the
    campaign reaches that dataset's ingest (after every dataset before it trained)."""
    from kdgat.data.formats import FORMATS

    if value is None or value in FORMATS or (auto and value == "auto"):
        return value
    choices = (["auto"] if auto else []) + list(FORMATS)
    raise ValueError(f"unknown format {value!r}; choose from: {', '.join(choices)}")


class FileSpec(BaseModel):
    """A capture file (or glob) of a dataset; a bare string is shorthand for ``{path: ...}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    attack_type: str | None = None  # name of its attack frames; default: from the file name
    format: str | None = None  # force a reader; default: the dataset's format
    benign: bool = False  # known attack-free capture whose format carries no labels

    @field_validator("format")
    @classmethod
    def _format_is_known(cls, value: str | None) -> str | None:
        return _known_format(value, auto=True)  # auto: this file detected, in a dataset of one reader


def _as_specs(value: Any) -> Any:
    if isinstance(value, list):
        return [{"path": v} if isinstance(v, str) else v for v in value]
    return value


class DatasetEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    source: str = ""
    license: str = ""
    root: str
    format: str = "auto"
    domain: str = "automotive"
    protocol: str = "CAN"
    train: list[FileSpec]
    test: dict[str, list[FileSpec]] = Field(default_factory=dict)
    attack_types: list[str] = Field(default_factory=list)
    # every file is one recording with frames inserted or modified (DAGA, CrySyS): the graphs stage cuts its
    # time axis once for all files, and test files are scored in blocks no file trained on (kdgat.data.split)
    one_trace: bool = False
    notes: str = ""

    @field_validator("train", mode="before")
    @classmethod
    def _train_specs(cls, value: Any) -> Any:
        return _as_specs(value)

    @field_validator("test", mode="before")
    @classmethod
    def _test_specs(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _as_specs(v) for k, v in value.items()}
        return value

    @field_validator("format")
    @classmethod
    def _format_is_known(cls, value: str) -> str:
        return _known_format(value, auto=True)

    @field_validator("test", mode="after")
    @classmethod
    def _scenarios_are_distinct(cls, test: dict[str, list[FileSpec]]) -> dict[str, list[FileSpec]]:
        parts: dict[str, str] = {}
        for scenario, specs in test.items():
            if not _SAFE_NAME.match(scenario) or scenario == "train":
                raise ValueError(
                    f"test scenario name {scenario!r} must be letters, digits, '_', '.', '-' and not 'train'"
                )
            if not specs:
                raise ValueError(f"test scenario {scenario!r} lists no file")
            part = part_name("test", scenario)  # 'fuzzing' and 'test__fuzzing' are one part of the store
            if part in parts:
                raise ValueError(
                    f"test scenarios {parts[part]!r} and {scenario!r} would be one part of the graph store ({part}); "
                    "rename one"
                )
            parts[part] = scenario
        return test


@dataclass(frozen=True)
class ResolvedFile:
    spec: FileSpec
    path: Path
    split: str
    scenario: str


def builtin_catalog_path() -> Path:
    return default_config_dir() / "datasets.yaml"


def load_catalog(extra: list[Path] | None = None, *, include_builtin: bool = True) -> dict[str, DatasetEntry]:
    """Built-in entries, then each user catalog (a later file may redefine a name)."""
    files = ([builtin_catalog_path()] if include_builtin else []) + [Path(p) for p in extra or []]
    catalog: dict[str, DatasetEntry] = {}
    for file in files:
        raw = load_yaml_mapping(file)
        datasets = raw.get("datasets")
        unknown = set(raw) - {"datasets"}
        if unknown:
            raise ConfigError(f"{file}: {sorted(unknown)[0]}: unknown key (a catalog has one key, 'datasets')")
        if not isinstance(datasets, dict):
            raise ConfigError(f"{file}: datasets: must be a mapping of dataset name to entry")
        problems = []  # every mistake of the file at once, not one per attempt
        for name, body in datasets.items():
            if not _SAFE_NAME.match(str(name)):
                problems.append(f"datasets.{name}: dataset names are letters, digits, '_', '.', '-'")
                continue
            try:
                catalog[str(name)] = DatasetEntry.model_validate(body)
            except ValidationError as err:
                problems.append(describe_validation_error(err, prefix=f"datasets.{name}."))
        if problems:
            raise ConfigError(f"{file}: {'; '.join(problems)}")
    return catalog


def get_dataset(catalog: dict[str, DatasetEntry], name: str) -> DatasetEntry:
    if name not in catalog:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(sorted(catalog))} (kdgat datasets lists them)")
    return catalog[name]


def resolve_data_root(data_root: str | Path | None) -> Path:
    """--data-root, else $KDGAT_DATA_ROOT, else ./data."""
    chosen = data_root or os.environ.get(DATA_ROOT_ENV) or "data"
    return Path(chosen).expanduser()


def dataset_root(entry: DatasetEntry, data_root: Path) -> Path:
    root = Path(entry.root).expanduser()
    return root if root.is_absolute() else data_root / root


def _expand(root: Path, spec: FileSpec) -> list[Path]:
    """The files ``spec.path`` names under ``root``: a file of that exact name (which may hold '[' or '?'), else the
    files the glob matches, relative to ``root`` or absolute."""
    pattern = Path(spec.path).expanduser()
    path = root / pattern  # an absolute pattern replaces root
    if path.is_file() or not any(ch in spec.path for ch in "*?["):
        return [path] if path.is_file() else []
    base, relative = (Path(pattern.anchor), str(pattern.relative_to(pattern.anchor))) if pattern.is_absolute() else (
        root, str(pattern))  # fmt: skip
    return sorted(p for p in base.glob(relative) if p.is_file())


def resolve_files(entry: DatasetEntry, data_root: Path) -> tuple[list[ResolvedFile], list[str]]:
    """Files of every split (sorted, deterministic) and the patterns that matched nothing."""
    root = dataset_root(entry, data_root)
    groups = [("train", "train", entry.train)] + [("test", name, specs) for name, specs in entry.test.items()]
    files, missing = [], []
    for split, scenario, specs in groups:
        for spec in specs:
            found = _expand(root, spec)
            if not found:
                missing.append(f"{split}:{scenario}:{spec.path}")
            files.extend(ResolvedFile(spec, path, split, scenario) for path in found)
    return files, missing


def _check_no_leakage(name: str, files: list[ResolvedFile]) -> None:
    first: dict[Path, ResolvedFile] = {}
    for item in files:
        key = item.path.resolve()
        if key in first and (first[key].split, first[key].scenario) != (item.split, item.scenario):
            other = first[key]
            raise ConfigError(
                f"dataset {name}: {item.path} is in both {other.split}:{other.scenario} and "
                f"{item.split}:{item.scenario} (train/test leakage)"
            )
        first.setdefault(key, item)


def dataset_sources(
    name: str, entry: DatasetEntry, data_root: Path, *, allow_missing: bool = False
) -> list[IngestSource]:
    """Ingest sources for every file of a dataset; missing files are an error unless allowed."""
    files, missing = resolve_files(entry, data_root)
    if missing and not allow_missing:
        root = dataset_root(entry, data_root)
        raise KdgatError(
            f"dataset {name}: no file matches {missing[0]} under {root}"
            + (f" (and {len(missing) - 1} more patterns)" if len(missing) > 1 else "")
            + f"; set --data-root or ${DATA_ROOT_ENV}"
        )
    return _sources_of(name, entry, data_root, files)


def _sources_of(name: str, entry: DatasetEntry, data_root: Path, files: list[ResolvedFile]) -> list[IngestSource]:
    """The ingest sources of resolved files: refused where a file is in two splits or two would be one output."""
    _check_no_leakage(name, files)
    root = dataset_root(entry, data_root)
    sources: list[IngestSource] = []
    seen = set()
    for item in files:
        if (item.path, item.split, item.scenario) in seen:
            continue
        seen.add((item.path, item.split, item.scenario))
        relative = item.path.relative_to(root) if item.path.is_relative_to(root) else Path(item.path.name)
        flat = "__".join([*relative.parent.parts, capture_stem(relative.name)])
        prefix = "train" if item.split == "train" else f"test/{item.scenario}"
        sources.append(
            IngestSource(
                path=item.path,
                output_name=f"{prefix}/{flat}",
                split=item.split,
                scenario=item.scenario,
                attack_type=item.spec.attack_type or attack_type_from_name(item.path),
                format=item.spec.format or (None if entry.format == "auto" else entry.format),
                benign=item.spec.benign,
                name=relative.as_posix(),
            )
        )
    check_unique_outputs(sources)
    return sources


def check_unique_outputs(sources: list[IngestSource]) -> None:
    """Two captures whose output names are one (``a.csv`` and ``a.csv.xz``) would overwrite each other's frames."""
    seen: dict[str, Path] = {}
    for src in sources:
        if src.output_name in seen:
            raise KdgatError(
                f"{src.path} and {seen[src.output_name]} would both be written to {src.output_name}.parquet"
            )
        seen[src.output_name] = src.path


def dataset_status(entry: DatasetEntry, data_root: Path, name: str) -> dict[str, Any]:
    """Whether a dataset's files are there: ``ok``, ``partial``, ``missing``, or ``invalid`` when a file found is
    listed twice (a training and a test file, or in two test scenarios) or two files would be one output
    (``a.csv``, ``a.csv.gz``): ingest refuses both; ``problem`` says which."""
    files, missing = resolve_files(entry, data_root)
    total = len(entry.train) + sum(len(v) for v in entry.test.values())
    state = "missing" if len(missing) == total else ("partial" if missing else "ok")
    problem = None
    try:
        _sources_of(name, entry, data_root, files)
    except KdgatError as err:
        state, problem = "invalid", str(err)
    return {
        "problem": problem,
        "root": str(dataset_root(entry, data_root)),
        "files": len({f.path for f in files}),
        "bytes": sum(f.path.stat().st_size for f in {f.path: f for f in files}.values()),
        "missing_patterns": missing,
        "status": state,
        "test_scenarios": list(entry.test),
    }
