"""Run configuration: frozen Pydantic models and YAML composition.

A run's config is built in layers, later layers winning::

    config/defaults.yaml
      -> config/models/{model}/{scale}.yaml      (only that model's section)
      -> config/auxiliaries/{aux}.yaml           (zero or more, in the order given)
      -> -O section.key=value overrides           (CLI, in the order given)
      -> validation -> frozen PipelineConfig

Mappings are deep-merged, everything else (lists included) is replaced.  While
merging we remember which layer set each dotted key, so that a bad value or an
unknown key is reported together with the file (or ``-O`` option) it came from
instead of as an anonymous Pydantic traceback.

The frozen object is what a stage runs with and what it writes beside its
outputs (``config.json``); :func:`config_hash` identifies it in manifests.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kdgat.core.errors import ConfigError
from kdgat.core.hashing import content_hash
from kdgat.core.schema import PipelineConfig, PreprocessingConfig
from kdgat.core.yamlio import describe_validation_error, load_yaml_mapping, load_yaml_text

MODELS: tuple[str, ...] = ("vgae", "gat", "dqn", "hgb", "novelty")
SCALES: tuple[str, ...] = ("large", "small")
NO_AUX = "none"
CONFIG_DIR_ENV = "KDGAT_CONFIG_DIR"

# Keys that resolve_config sets from its arguments; a config file or -O may not
# set them, or the file name and the content could disagree.
_RESERVED_KEYS = ("model_type", "scale", "auxiliaries")


# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------


def default_config_dir() -> Path:
    """$KDGAT_CONFIG_DIR, else the presets shipped inside the package (``kdgat/presets``)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "presets"


def list_models() -> list[str]:
    return list(MODELS)


def list_scales() -> list[str]:
    return list(SCALES)


def list_auxiliaries(config_dir: Path | str | None = None) -> list[str]:
    """Auxiliary names = the YAML files in config/auxiliaries/ (``none`` included)."""
    aux_dir = Path(config_dir or default_config_dir()) / "auxiliaries"
    if not aux_dir.is_dir():
        return []
    return sorted(p.stem for p in aux_dir.glob("*.yaml"))


# --------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------


def _display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _merge(
    base: dict[str, Any], layer: Mapping[str, Any], source: str, sources: dict[str, str], prefix: str = ""
) -> None:
    """Deep-merge ``layer`` into ``base`` in place, recording ``source`` for every key it sets."""
    for key, value in layer.items():
        key = str(key)
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            sources[path] = source
            _merge(base[key], value, source, sources, f"{path}.")
            continue
        # Replacing a whole subtree: what the old layers set below it no longer applies.
        for stale in [k for k in sources if k.startswith(f"{path}.")]:
            del sources[stale]
        base[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else copy.deepcopy(value)
        _record(base[key], path, source, sources)


def _record(value: Any, path: str, source: str, sources: dict[str, str]) -> None:
    sources[path] = source
    if isinstance(value, dict):
        for key, sub in value.items():
            _record(sub, f"{path}.{key}", source, sources)


def _source_lookup(sources: Mapping[str, str], fallback: str | None = None) -> Callable[[str], str | None]:
    """source_of(dotted_key) for describe_validation_error: the nearest key (or ancestor) some layer set."""

    def source_of(key: str) -> str | None:
        parts = key.split(".")
        while parts:
            found = sources.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return fallback

    return source_of


_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_OVERRIDE_FORM = "expected -O section.key=value (e.g. -O gat.heads=4)"


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into its key path and a YAML-parsed value (scalar or flow list/mapping)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY_RE.fullmatch(key):
        raise ConfigError(f"-O {text}: {_OVERRIDE_FORM}")
    try:
        # an alias (*a) in one value names nothing else: it only repeats an anchor, and nested ones (711 characters)
        # made the config's record of where each key was set walk billions of paths
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(raw, Loader=yaml.SafeLoader)):
            raise ConfigError(f"-O {text}: a YAML alias (*name) in an override: write the value out")
        value = load_yaml_text(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"-O {text}: invalid value: {problem}") from None
    return key.split("."), value


def _apply_override(data: dict[str, Any], text: str, sources: dict[str, str]) -> None:
    parts, value = parse_override(text)
    source = f"-O {text}"
    _reject_reserved({parts[0]: value}, source)
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and part not in node:
            child = node[part] = {}
            sources[".".join(parts[: depth + 1])] = source
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            hint = " (apply the kd_standard auxiliary to enable kd)" if where == "kd" else ""
            shown = "null" if child is None else repr(child)
            raise ConfigError(f"{source}: {where} is {shown} here, not a section{hint}")
        node = child
    _merge(node, {parts[-1]: value}, source, sources, prefix="".join(f"{p}." for p in parts[:-1]))


def _reject_reserved(layer: Mapping[str, Any], source: str) -> None:
    for key in _RESERVED_KEYS:
        if key in layer:
            raise ConfigError(f"{source}: {key}: set by the model/scale/auxiliary choice, not in a config layer")


def _validate(
    data: Mapping[str, Any], source_of: Callable[[str], str | None], missing_source: str | None = None
) -> PipelineConfig:
    """Validate into a PipelineConfig; a ValidationError becomes one 'SOURCE: key: problem' ConfigError.

    A missing key was set by no layer, so it is blamed on ``missing_source``
    (the defaults file, which should hold every key).
    """
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        if missing_source is not None and err.errors()[0]["type"] == "missing":
            source_of = lambda _key: missing_source  # noqa: E731
        raise ConfigError(describe_validation_error(err, source_of=source_of)) from None


def _aux_names(aux: str | Iterable[str] | None) -> list[str]:
    if aux is None:
        return []
    items = aux.split(",") if isinstance(aux, str) else list(aux)
    names: list[str] = []
    for item in items:
        name = str(item).strip()
        if name and name != NO_AUX and name not in names:
            names.append(name)
    return names


def _check_choice(kind: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"unknown {kind} {value!r} (choose from: {', '.join(choices)})")


def resolve_config(
    model: str,
    scale: str,
    aux: str | list[str] = NO_AUX,
    overrides: Iterable[str] = (),
    config_dir: Path | str | None = None,
) -> PipelineConfig:
    """Compose defaults -> model/scale -> auxiliaries -> -O overrides, validate, and freeze.

    ``aux`` is one name, a comma-separated string or a list; ``none`` means no
    auxiliary.  Raises ConfigError naming the key and the layer that set it.
    """
    config_dir = Path(config_dir) if config_dir is not None else default_config_dir()
    _check_choice("model", model, MODELS)
    _check_choice("scale", scale, SCALES)
    aux_names = _aux_names(aux)
    valid_aux = list_auxiliaries(config_dir)
    for name in aux_names:
        _check_choice("auxiliary", name, valid_aux)

    layers = [config_dir / "defaults.yaml", config_dir / "models" / model / f"{scale}.yaml"]
    layers += [config_dir / "auxiliaries" / f"{name}.yaml" for name in aux_names]

    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in layers:
        layer = load_yaml_mapping(path)
        shown = _display(path)
        _reject_reserved(layer, shown)
        _merge(data, layer, shown, sources)
    for text in overrides:
        _apply_override(data, text, sources)

    data.update(model_type=model, scale=scale, auxiliaries=aux_names)
    return _validate(data, _source_lookup(sources), missing_source=_display(layers[0]))


def load_frozen_config(path: str | Path) -> PipelineConfig:
    """Re-load a config.json / config.yaml written beside a checkpoint, validated like a fresh one."""
    path = Path(path)
    shown = _display(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{shown}: file not found") from None
        except OSError as err:
            raise ConfigError(f"{shown}: cannot read ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"{shown}:{err.lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{shown}: top level must be a mapping, got {type(data).__name__}")
    elif path.suffix.lower() in (".yaml", ".yml"):
        data = load_yaml_mapping(path)
    else:
        raise ConfigError(f"{shown}: expected a .json, .yaml or .yml config file")
    return _validate(data, lambda _key: shown)


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def config_hash(cfg: PipelineConfig) -> str:
    """First 16 hex chars of sha256 over canonical JSON: equal content <=> equal hash, in any process."""
    return content_hash(cfg.model_dump(mode="json"))


MODEL_SECTIONS = ("vgae", "gat", "dqn", "hgb", "novelty")
# the classical yardsticks (kdgat.training.window_models): fitted without Lightning, so `training` is not theirs
WINDOW_VECTOR_MODELS = ("hgb", "novelty")
# the models that learn from attack windows: training refuses a store without them, and the pipeline
# skips them for a dataset whose training part holds none
SUPERVISED_MODELS = ("gat", "hgb")


def not_its_own(model_type: str | None) -> set[str]:
    """The config sections a ``model_type`` run cannot depend on: the other models' (a changed GAT setting does not
    change a VGAE run) and, for a classical yardstick or a fusion (dqn: every fuse run), the training loop's, which
    they have not."""
    loopless = model_type in WINDOW_VECTOR_MODELS or model_type == "dqn"
    return {s for s in MODEL_SECTIONS if s != model_type} | ({"training"} if loopless else set())


def without_other_models(dumped: dict) -> dict:
    """A dumped config without the sections its ``model_type`` cannot depend on (:func:`not_its_own`)."""
    ignored = not_its_own(dumped.get("model_type"))
    return {k: v for k, v in dumped.items() if k not in ignored}


def own_overrides(model_type: str, overrides: list[str]) -> list[str]:
    """The ``-O`` overrides a ``model_type`` run's config takes, as Nextflow's tasks are given them
    (conf/modules.config): none of :func:`not_its_own`, nor ``fusion`` but for a fusion. So `kdgat pipeline` and
    Nextflow record the same config for the same run."""
    dropped = not_its_own(model_type) | (set() if model_type == "dqn" else {"fusion"})
    return [o for o in overrides if parse_override(o)[0][0] not in dropped]


# What a trained GNN's numbers depend on beyond its config. "frames only": per-ID statistics, the VGAE's
# percentiles and reconstruction read the nodes with a frame of their own only (kdgat.models.inputs.has_frame).
GNN_REVISION = "frames only"
# Of the GATs that read edge features (conv_type gatv2, transformer): a node's own loop keeps its features
# (kdgat.models.inputs.with_self_loops_and_attributes); the study's GATConv reads no edge feature and is as before.
EDGE_LOOPS_REVISION = "own loops kept"
# Of the VGAEs calibrated out of sample (vgae.calibration_fraction > 0): no training window shares a frame with a
# calibration window (a window uses frames s .. s+W; the first version kept those W frames away, which share one).
CALIBRATION_REVISION = "no frame shared"


def model_config_hash(cfg: PipelineConfig) -> str:
    """:func:`config_hash` of :func:`without_other_models`: the pipeline's step keys, the resume check and
    the checkpoint key, so that a changed GAT setting leaves the VGAE, hgb and fusion steps of a pipeline
    cached, and `--epochs` the yardsticks (a run's recorded ``config_hash`` covers its whole frozen config).
    A GAT's or VGAE's also holds :data:`GNN_REVISION` (and a GAT reading edge features
    :data:`EDGE_LOOPS_REVISION`, a VGAE calibrated out of sample :data:`CALIBRATION_REVISION`): a campaign
    trains them again, and a checkpoint of an earlier revision is never continued."""
    dumped = without_other_models(cfg.model_dump(mode="json"))
    if cfg.model_type not in ("gat", "vgae"):
        return content_hash(dumped)
    revision = GNN_REVISION
    if cfg.model_type == "gat" and cfg.gat.conv_type != "gat":
        revision = f"{GNN_REVISION}; {EDGE_LOOPS_REVISION}"
    if cfg.model_type == "vgae" and cfg.vgae.calibration_fraction > 0:
        revision = f"{GNN_REVISION}; {CALIBRATION_REVISION}"
    return content_hash({**dumped, "revision": revision})


def config_to_json(cfg: PipelineConfig) -> str:
    """Indented JSON in field order (what stages write as config.json), newline-terminated."""
    return json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n"


def config_to_yaml(cfg: PipelineConfig) -> str:
    """Block YAML in field order, for display (with every value in effect, also those dumps leave out)."""
    dumped = cfg.model_dump(mode="json")
    dumped["gat"].setdefault("id_input", cfg.gat.id_input)
    if cfg.model_type == "vgae":  # a VGAE run's setting, as novel_alert is a fuse run's
        dumped["vgae"].setdefault("calibration_fraction", cfg.vgae.calibration_fraction)
    if cfg.model_type == "dqn":  # a fuse run's setting: other runs leave it out (their config is as before it)
        dumped["fusion"].setdefault("novel_alert", cfg.fusion.novel_alert)
    return yaml.safe_dump(dumped, sort_keys=False, default_flow_style=False)


def store_preprocessing(store_meta: dict, cfg: PreprocessingConfig) -> PreprocessingConfig:
    """The preprocessing a graph store was built with (window, stride, feature set, ...), from its metadata.json:
    what a ``--like`` store cuts new captures with, and what a run trained on the store records as its own. ``cfg``
    fills only keys a store of an older kdgat did not record."""
    stored = {k: v for k, v in store_meta["preprocessing"].items() if k in PreprocessingConfig.model_fields}
    return PreprocessingConfig.model_validate({**cfg.model_dump(), **stored})


def trained_on(cfg: PipelineConfig, store_meta: dict) -> PipelineConfig:
    """``cfg`` with the preprocessing of the graph store a run reads (its metadata.json): what the run records and is
    known by. The command line's may differ (a Nextflow task is given only its own model's overrides)."""
    return cfg.model_copy(update={"preprocessing": store_preprocessing(store_meta, cfg.preprocessing)})
