"""YAML loading and Pydantic error formatting shared by config and catalog.

Both must name the offending key *and the file it came from*, so the loaders
here never let a raw ``yaml.YAMLError`` or ``ValidationError`` reach the user.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kdgat.core.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it would keep the last silently,
    so an edit to the first would do nothing)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _value in node.value:
            if key_node.tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):  # `<<: *base`, `=`
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class says what is wrong with it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """One YAML value (a file's text or an ``-O`` value), a key given twice in a mapping refused
    (``yaml.YAMLError``, for the caller to name where it came from)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def text_line_of(path: Path, offset: int) -> int:
    """The 1-based line of a byte ``offset`` of a file (where a decode error stopped)."""
    with open(path, "rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping (empty file -> {})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        line = text_line_of(path, err.start)
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{err.object[err.start]:02x})") from None
    try:
        data = load_yaml_text(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def describe_validation_error(err: ValidationError, source_of=None, prefix: str = "") -> str:
    """Every error on one line: 'FILE: dotted.key: message; other.key: message; OTHER_FILE: key: message'.

    ``source_of(dotted_key)`` returns where that key was set (a file path or a -O override); without
    it the location is omitted. Consecutive errors from the same place share it. ``prefix`` goes
    before every key (where the validated mapping sits in its file).
    """
    parts, previous = [], None
    for problem in err.errors():
        key = prefix + ".".join(str(p) for p in problem["loc"])
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = problem["msg"].removeprefix("Value error, ")  # a validator's own words
            named = re.match(r"([\w.]+): (.*)", message, re.DOTALL) if not problem["loc"] else None
            if named:  # a check across sections names the key it refuses ("training.monitor: ...")
                key, message = prefix + named.group(1), named.group(2)
            # the value given, unless it is a whole mapping or list (the key says where; its dump is a paragraph)
            if "input" in problem and problem["type"] != "missing" and not isinstance(problem["input"], dict | list):
                message += f" (got {problem['input']!r})"
        origin = source_of(key) if source_of else None
        where = f"{origin}: " if origin and origin != previous else ""
        parts.append(f"{where}{key}: {message}")
        previous = origin
    return "; ".join(parts)
