"""The effective Nextflow process settings of this project's configs, computed without Nextflow.

A small reader for the subset of the config language the project uses (blocks, dotted assignments,
``includeConfig``, ``profiles``, ``withLabel``/``withName`` selectors) and an evaluator for the
subset of Groovy its values use (literals, ``params.x``, ``task.attempt``, ``workflow.profile`` and
``workflow.containerEngine``, memory and duration units, lists and maps, ``?:``, ``? :``, ``==``,
``+``, ``*``, GStrings, ``.toString()``, ``.tokenize()``, ``.contains()``, ``.startsWith()``, ``.join()``, ``[i]``, and
``.findAll`` / ``.collect`` with a one-parameter closure ``{ x -> expr }``).

Merging follows Nextflow's default config parser: files and active profiles are read in order (a
profile's block where the ``profiles`` block is, profiles in the order they are declared), a later
assignment replaces an earlier one, and a later selector block (``withLabel: x { }``) replaces the
earlier block of the same selector *as a whole*. A task's setting is then, in increasing priority:
the process-level value, its labels' blocks (in the order they were declared), its name's blocks.
``resourceLimits`` caps cpus, memory and time. Anything else in the text is an error here, so a
config the reader does not understand fails the test instead of being skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

GB = 1024**3
_UNITS = {"KB": 1024, "MB": 1024**2, "GB": GB, "TB": 1024**4, "s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}
_MEMORY = {"KB", "MB", "GB", "TB"}


@dataclass(frozen=True)
class Quantity:
    """A memory size (bytes) or a duration (seconds)."""

    value: float
    memory: bool

    def __mul__(self, other):
        return Quantity(self.value * other, self.memory)

    __rmul__ = __mul__

    def __lt__(self, other):
        return self.value < other.value

    def __str__(self):
        if self.memory:
            return f"{self.value / GB:g} GB"
        return f"{self.value / 3600:g} h"


def quantity(text: str) -> Quantity:
    """'128.GB', '6 GB', '48.h', '1h' -> Quantity."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*\.?\s*([KMGT]B|s|min|m|h|d)\s*", str(text))
    if not found:
        raise ValueError(f"not a memory or duration: {text!r}")
    unit = found.group(2)
    return Quantity(float(found.group(1)) * _UNITS[unit], unit in _MEMORY)


# --------------------------------------------------------------------------------------------------
# Groovy expressions
# --------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(?P<num>\d+(?:\.\d+)?(?![\w]))|(?P<str>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")|(?P<op>\?:|==|!=|&&|\|\||->|[-+*?:()\[\],.!{}<>])|(?P<name>[A-Za-z_]\w*))"""
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        found = _TOKEN.match(text, i)
        if not found or found.end() == i:
            raise ValueError(f"cannot read {text[i : i + 30]!r}")
        kind = found.lastgroup
        out.append((kind, found.group(kind)))
        i = found.end()
    return out


class Closure:
    """A ``{ expr }`` value: evaluated when a task asks for the setting; ``{ x -> expr }`` is called with ``x``
    (``.findAll``, ``.collect``), in the names of where it was written (``env``)."""

    def __init__(self, tokens: list[tuple[str, str]], source: str, env: dict | None = None):
        self.tokens, self.source, self.env = tokens, source, env

    def __call__(self, env: dict):
        return _Parser(self.tokens, env).whole()

    def apply(self, argument):
        if len(self.tokens) < 2 or self.tokens[1][1] != "->" or self.tokens[0][0] != "name":
            raise ValueError(f"{self!r}: a closure argument must name its parameter (x -> ...)")
        return _Parser(self.tokens[2:], {**(self.env or {}), self.tokens[0][1]: argument}).whole()

    def __repr__(self):
        return f"{{ {self.source} }}"


class _Parser:
    """Pratt parser over tokens; evaluates as it parses (closures keep their tokens)."""

    def __init__(self, tokens, env: dict | None):
        self.t, self.i, self.env = tokens, 0, env

    def peek(self, k: int = 0):
        return self.t[self.i + k] if self.i + k < len(self.t) else ("end", "")

    def take(self, value: str | None = None):
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ValueError(f"expected {value!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def whole(self):
        value = self.expr()
        if self.peek()[0] != "end":
            raise ValueError(f"unexpected {self.peek()[1]!r}")
        return value

    # precedence climbing: ternary/elvis < || < && < == != < + < * < unary < postfix
    def expr(self):
        cond = self.binary(0)
        if self.peek()[1] == "?:":
            self.take()
            other = self.expr()
            return cond if cond else other
        if self.peek()[1] == "?":
            self.take()
            yes = self.expr()
            self.take(":")
            no = self.expr()
            return yes if cond else no
        return cond

    _LEVELS = (("||",), ("&&",), ("==", "!=", "in"), ("+",), ("*",))

    def binary(self, level: int):
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[1] in self._LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = {
                "||": lambda a, b: bool(a or b), "&&": lambda a, b: bool(a and b), "==": lambda a, b: a == b,
                "!=": lambda a, b: a != b, "in": lambda a, b: a in b, "+": lambda a, b: a + b,
                "*": lambda a, b: a * b,
            }[op](left, right)  # fmt: skip
        return left

    def unary(self):
        if self.peek()[1] == "!":
            self.take()
            return not self.unary()
        return self.postfix(self.primary())

    def postfix(self, value):
        while self.peek()[1] in (".", "["):
            if self.take()[1] == "[":  # indexing: list[0]
                index = self.expr()
                self.take("]")
                value = value[index]
                continue
            name = self.take()[1]
            if name in _UNITS and isinstance(value, (int, float)):
                value = Quantity(value * _UNITS[name], name in _MEMORY)
            elif self.peek()[1] == "(":
                self.take("(")
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr())
                    if self.peek()[1] == ",":
                        self.take()
                self.take(")")
                value = _call(value, name, args)
            elif self.peek()[1] == "{":  # a closure argument without parentheses: .findAll { x -> ... }
                value = _call(value, name, [self.primary()])
            else:
                value = value.get(name) if isinstance(value, dict) else getattr(value, name)
        return value

    def primary(self):
        kind, text = self.take()
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "str":
            return self.gstring(text)
        if text == "(":
            value = self.expr()
            self.take(")")
            return value
        if text == "[":
            return self.collection()
        if text == "{":
            start, depth = self.i, 1
            while depth:
                tok = self.take()[1]
                depth += {"{": 1, "}": -1}.get(tok, 0)
            body = self.t[start : self.i - 1]
            return Closure(body, " ".join(v for _, v in body), self.env)
        if kind == "name":
            if text in ("true", "false"):
                return text == "true"
            if text == "null":
                return None
            if self.env is None or text not in self.env:
                raise ValueError(f"unknown name {text!r}")
            return self.env[text]
        raise ValueError(f"unexpected {text!r}")

    def collection(self):
        items, mapping = [], {}
        while self.peek()[1] != "]":
            if self.peek()[0] == "name" and self.peek(1)[1] == ":":
                key = self.take()[1]
                self.take(":")
                mapping[key] = self.expr()
            else:
                items.append(self.expr())
            if self.peek()[1] == ",":
                self.take()
        self.take("]")
        return mapping if mapping else items

    def gstring(self, text: str) -> str:
        body = text[1:-1]
        if text[0] == "'":
            return body.replace("\\'", "'")

        def interpolate(found: re.Match) -> str:
            value = _Parser(_tokens(found.group(1)), self.env).whole()
            return "null" if value is None else str(value)

        return re.sub(r"\$\{([^}]*)\}", interpolate, body).replace('\\"', '"')


def _call(value, name: str, args: list):
    if name == "toString":
        return str(value)
    if name == "trim":
        return value.strip()
    if name == "tokenize":
        return [p for p in re.split("[" + re.escape(args[0]) + "]", value) if p]
    if name == "contains":
        return args[0] in value
    if name == "startsWith":
        return value.startswith(args[0])
    if name == "join":
        return args[0].join(str(v) for v in value)
    if name == "findAll":
        return [v for v in value if args[0].apply(v)]
    if name == "collect":
        return [args[0].apply(v) for v in value]
    if name == "getenv":  # System.getenv('NAME'): the launch environment (a dict here), null when unset
        return value.get(args[0])
    raise ValueError(f"method {name}() is not understood here")


def evaluate(text: str, env: dict):
    return _Parser(_tokens(text), env).whole()


# --------------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] in "'\"":
            quote = text[i : i + 3] if text.startswith(text[i] * 3, i) else text[i]
            j = text.find(quote, i + len(quote))
            while j > 0 and text[j - 1] == "\\":
                j = text.find(quote, j + 1)
            out.append(text[i : j + len(quote)])
            i = j + len(quote)
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _statements(text: str) -> list[str]:
    """Top-level statements of a block body: a newline ends one outside brackets, unless the next line
    starts with an operator or the line ends with one."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            quote = text[i : i + 3] if text.startswith(c * 3, i) else c
            j = text.find(quote, i + len(quote))
            while j > 0 and text[j - 1] == "\\":
                j = text.find(quote, j + 1)
            i = j + len(quote)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "\n" and depth == 0:
            stmt = text[start:i].strip()
            rest = text[i + 1 :].lstrip()
            if stmt and not rest.startswith((".", "+", "?", ":")) and not stmt.endswith(("+", "?", ":", "=")):
                out.append(stmt)
                start = i + 1
        i += 1
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


@dataclass
class Config:
    """Assignments by scope path, in the order Nextflow keeps them (later replaces earlier)."""

    values: dict[tuple[str, ...], str] = field(default_factory=dict)  # (scope..., name) -> expression text
    selectors: list[tuple[str, str]] = field(default_factory=list)  # declaration order of process selectors

    def assign(self, path: tuple[str, ...], expr: str) -> None:
        self.values.pop(path, None)  # re-insert: the latest assignment is the last in order
        self.values[path] = expr

    def replace_selector(self, selector: str) -> None:
        """A new `withLabel: x { }` block: the earlier block of the same selector is dropped as a whole."""
        for path in [p for p in self.values if len(p) > 2 and p[0] == "process" and p[1] == selector]:
            del self.values[path]
        if selector not in [s for s, _ in self.selectors]:
            kind, _, name = selector.partition(":")
            self.selectors.append((selector, kind))


def read_config(path: Path, profiles: list[str], config: Config | None = None, scope: tuple = ()) -> Config:
    config = config if config is not None else Config()
    _read_block(_strip_comments(path.read_text()), path.parent, profiles, config, scope)
    return config


def _read_block(text: str, base: Path, profiles: list[str], config: Config, scope: tuple) -> None:
    for stmt in _statements(text):
        include = re.fullmatch(r"includeConfig\s+'([^']+)'", stmt)
        if include:
            # includeConfig paths are relative to the including file (or the launch/project dir)
            target = base / include.group(1) if (base / include.group(1)).exists() else base.parent / include.group(1)
            _read_block(_strip_comments(target.read_text()), base, profiles, config, scope)
            continue
        opened = re.match(r"(withLabel|withName)\s*:\s*([\w'|.*\"-]+)\s*\{", stmt) or re.match(r"(\w+)\s*\{", stmt)
        if opened and stmt.endswith("}") and "=" not in stmt[: opened.end()]:
            body = stmt[opened.end() : -1]
            if opened.re.groups == 2:
                selector = f"{opened.group(1)}:{opened.group(2).strip(chr(39)).strip(chr(34))}"
                if scope != ("process",):
                    raise ValueError(f"selector {selector} outside a process block")
                config.replace_selector(selector)
                _read_block(body, base, profiles, config, (*scope, selector))
            elif opened.group(1) == "profiles" and not scope:
                for prof in _statements(body):
                    name = re.match(r"(\w+)\s*\{", prof)
                    if name is None:
                        raise ValueError(f"cannot read profile {prof[:40]!r}")
                    if name.group(1) in profiles:  # declaration order, like Nextflow's default parser
                        _read_block(prof[name.end() : -1], base, profiles, config, scope)
            else:
                _read_block(body, base, profiles, config, (*scope, opened.group(1)))
            continue
        assigned = re.fullmatch(r"([\w.]+)\s*=\s*(.+)", stmt, flags=re.S)
        if assigned is None:
            raise ValueError(f"cannot read config statement {stmt[:60]!r}")
        config.assign((*scope, *assigned.group(1).split(".")), assigned.group(2).strip())


def params_of(config: Config, overrides: dict | None = None) -> dict:
    """params with their values (evaluated in order: a param may use an earlier one)."""
    params: dict = {}
    env = {"params": params, "projectDir": "/project", "launchDir": "/launch"}
    for path, expr in config.values.items():
        if path[0] == "params" and len(path) == 2:
            try:
                params[path[1]] = evaluate(expr, env)
            except ValueError:
                params[path[1]] = expr  # e.g. a Java call; not used by process settings
    params.update(overrides or {})
    return params


DIRECTIVES = ("executor", "queue", "cpus", "memory", "time", "accelerator", "clusterOptions", "containerOptions",
              "container", "errorStrategy", "maxRetries")  # fmt: skip


def effective(
    config: Config,
    profiles: list[str],
    name: str,
    labels: list[str],
    attempt: int = 1,
    params: dict | None = None,
    meta: dict | None = None,
    environ: dict | None = None,
) -> dict:
    """The settings a task named ``name`` with ``labels`` gets on its ``attempt``-th try (``ext.args`` too, given
    the task's ``meta``), Nextflow launched with the variables ``environ`` (System.getenv)."""
    params = params if params is not None else params_of(config)
    engine = "apptainer" if _value(config, ("apptainer", "enabled"), params) else None
    env = {
        "params": params,
        "task": {"attempt": attempt, "exitStatus": 143},
        "workflow": {"profile": ",".join(profiles), "containerEngine": engine},
        "meta": meta or {},
        "System": environ or {},
    }
    layers = [()]
    for selector, kind in config.selectors:
        target = selector.partition(":")[2]
        if kind == "withLabel" and any(re.fullmatch(target, label) for label in labels):
            layers.append((selector,))
    for selector, kind in config.selectors:
        if kind == "withName" and re.fullmatch(selector.partition(":")[2], name):
            layers.append((selector,))
    out = {}
    for directive in (*DIRECTIVES, "ext.args") if meta is not None else DIRECTIVES:
        value = None
        for layer in layers:
            expr = config.values.get(("process", *layer, *directive.split(".")))
            if expr is not None:
                value = evaluate(expr, env)
        out[directive] = value(env) if isinstance(value, Closure) else value
    out["executor"] = out["executor"] or "local"
    limits = evaluate(config.values.get(("process", "resourceLimits"), "[:]").replace("[:]", "[]"), env) or {}
    for key in ("cpus", "memory", "time"):
        if key in limits and out[key] is not None:
            cap = limits[key]
            cap = quantity(cap) if isinstance(cap, str) else cap
            value = quantity(out[key]) if isinstance(out[key], str) else out[key]
            out[key] = min(value, cap) if not isinstance(value, (int, float)) else min(value, int(cap))
    out["envWhitelist"] = _value(config, ("apptainer", "envWhitelist"), params)
    out["apptainer"] = bool(engine)
    return out


def _value(config: Config, path: tuple[str, ...], params: dict):
    expr = config.values.get(path)
    return None if expr is None else evaluate(expr, {"params": params})
