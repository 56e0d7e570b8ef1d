"""The Nextflow pipeline checked without Nextflow: modules, DAG, config, schema.

Reads main.nf, workflows/kdgat.nf, modules/local/*/main.nf and the configs as text (a small
bracket-aware scanner, not a Groovy parser) and checks them against the code they drive:

- every `kdgat` command line in a module names an existing command with existing options
  (introspecting the Typer app) and gives its required options;
- every process has a tag, resource labels, a publishDir and a stub that creates each output;
- the processes of workflows/kdgat.nf and the channel dependencies between them are the steps and
  `needs` of kdgat.pipeline.plan_steps(); the plan's per-seed steps read the seeded channels and
  publish under seed<k>, its GPU steps carry process_gpu, every stage gets `--threads ${task.cpus}`;
- the effective settings of every process under the profile combinations a campaign uses (test,
  slurm, slurm+apptainer, slurm+apptainer+gpu), merged as Nextflow merges the configs
  (tests/support/nfconfig.py);
- nextflow_schema.json is valid JSON Schema (draft 2020-12) and describes exactly the params;
- the strict-syntax rules `nextflow lint` enforces that a regular expression can see.

tests/test_nextflow_run.py runs the real thing when `nextflow` is on PATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import typer
from support import nfconfig

from kdgat.cli import app
from kdgat.pipeline.plan import plan_steps

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "modules" / "local").glob("*/main.nf"))
WORKFLOW = ROOT / "workflows" / "kdgat.nf"
MAIN = ROOT / "main.nf"
NEXTFLOW_CONFIG = ROOT / "nextflow.config"
CONFIGS = [NEXTFLOW_CONFIG, *sorted((ROOT / "conf").glob("*.config"))]
RESOLVER = ROOT / "bin" / "kdgat_resolve_datasets.py"
# Processes that only prepare INGEST's inputs; they are not stages of kdgat.pipeline's plan.
HELPERS = {"SYNTH", "DATASETS"}


# --------------------------------------------------------------------------------------------------
# A small scanner for Nextflow/Groovy text
# --------------------------------------------------------------------------------------------------


def segments(text: str):
    """``(kind, start, end)`` spans of ``text`` in order; kind is "code", "string" or "comment".

    Strings: '...', "..." and the triple-quoted forms, with backslash escapes. Comments: // to the
    end of the line (the newline stays code) and /* ... */.
    """
    i, n, code_start = 0, len(text), 0
    while i < n:
        if text.startswith(('"""', "'''"), i) or text[i] in "'\"":
            quote = text[i : i + 3] if text.startswith(('"""', "'''"), i) else text[i]
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if text[j] == "\\" else 1
            kind, end = "string", min(j + len(quote), n)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            kind, end = "comment", n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            kind, end = "comment", n if end < 0 else end + 2
        else:
            i += 1
            continue
        if code_start < i:
            yield "code", code_start, i
        yield kind, i, end
        i = code_start = end
    if code_start < n:
        yield "code", code_start, n


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments, keeping strings (and line numbers) intact."""
    return "".join("\n" * text.count("\n", a, b) if kind == "comment" else text[a:b] for kind, a, b in segments(text))


def matching(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at ``start`` (strings skipped)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for kind, a, b in segments(text[start:]):
        if kind != "code":
            continue
        for i in range(start + a, start + b):
            c = text[i]
            if c in pairs:
                stack.append(pairs[c])
            elif c in ")]}":
                assert stack and stack.pop() == c, f"unbalanced {c!r} at {i}"
                if not stack:
                    return i + 1
    raise AssertionError(f"no closing bracket for {text[start]!r} at {start}")


def statement_end(text: str, start: int) -> int:
    """End of the statement starting at ``start``: a newline outside brackets, not followed by `.`."""
    i = start
    while i < len(text):
        c = text[i]
        if c in "([{":
            i = matching(text, i)
            continue
        if c in "'\"":
            quote = text[i : i + 3] if text.startswith(c * 3, i) else c
            end = text.find(quote, i + len(quote))
            while end > 0 and text[end - 1] == "\\":
                end = text.find(quote, end + 1)
            assert end > 0, f"unterminated string at {i}"  # find's -1 would restart the scan: a hang
            i = end + len(quote)
            continue
        if c == "\n":
            rest = text[i + 1 :].lstrip()
            if not rest.startswith("."):
                return i
        i += 1
    return len(text)


def block(text: str, header: str) -> str:
    """The body of the first ``header {`` block (header is a regular expression)."""
    found = re.search(header + r"\s*\{", text)
    assert found, f"no block {header!r}"
    open_at = found.end() - 1
    return text[open_at + 1 : matching(text, open_at) - 1]


def without_blocks(text: str, header: str) -> str:
    """``text`` with every ``header {...}`` block cut out (header is a regular expression)."""
    while found := re.search(header + r"\s*\{", text):
        text = text[: found.start()] + text[matching(text, found.end() - 1) :]
    return text


def sections(body: str, names: tuple[str, ...]) -> dict[str, str]:
    """Split a process or workflow body at its `name:` labels."""
    pattern = re.compile(r"(?m)^\s*(" + "|".join(names) + r"):\s*$")
    marks = list(pattern.finditer(body))
    result = {"": body[: marks[0].start()] if marks else body}
    for mark, nxt in zip(marks, marks[1:] + [None], strict=True):
        result[mark.group(1)] = body[mark.end() : nxt.start() if nxt else len(body)]
    return result


PROCESS_SECTIONS = ("input", "output", "when", "script", "shell", "exec", "stub")


class Process:
    def __init__(self, path: Path):
        self.path = path
        text = strip_comments(path.read_text())
        names = re.findall(r"(?m)^process\s+(\w+)\s*\{", text)
        assert len(names) == 1, f"{path}: one process per module file, found {names}"
        self.name = names[0]
        self.body = block(text, r"(?m)^process\s+" + self.name)
        self.sections = sections(self.body, PROCESS_SECTIONS)
        self.directives = self.sections[""]

    @property
    def labels(self) -> list[str]:
        return re.findall(r"(?m)^\s*label\s+['\"]([\w-]+)['\"]", self.directives)

    @property
    def outputs(self) -> list[str]:
        """Declared output file names, as written (e.g. `frames`, `${meta.variant}`)."""
        return re.findall(r"path\s*\(?\s*['\"]([^'\"]+)['\"]", self.sections.get("output", ""))

    @property
    def script(self) -> str:
        return self.sections.get("script", "")

    @property
    def stub(self) -> str:
        return self.sections.get("stub", "")


@lru_cache
def processes() -> dict[str, Process]:
    found = {}
    for path in MODULES:
        proc = Process(path)
        found[proc.name] = proc
    return found


@lru_cache
def includes() -> dict[str, tuple[str, str]]:
    """alias -> (process name, module folder) from the include lines of workflows/kdgat.nf."""
    text = strip_comments(WORKFLOW.read_text())
    found = {}
    for name, alias, source in re.findall(r"include\s*\{\s*(\w+)(?:\s+as\s+(\w+))?\s*\}\s*from\s*'([^']+)'", text):
        found[alias or name] = (name, Path(source).parent.name)
    return found


@lru_cache
def modules_config() -> list[tuple[str, str]]:
    """(withName selector, block body) of conf/modules.config."""
    text = strip_comments((ROOT / "conf" / "modules.config").read_text())
    result = []
    for found in re.finditer(r"withName\s*:\s*['\"]([^'\"]+)['\"]\s*\{", text):
        open_at = found.end() - 1
        result.append((found.group(1), text[open_at + 1 : matching(text, open_at) - 1]))
    return result


def config_for(alias: str) -> list[str]:
    return [body for selector, body in modules_config() if re.fullmatch(selector, alias)]


def aliases_of(process: str) -> list[str]:
    return [alias for alias, (name, _module) in includes().items() if name == process]


# --------------------------------------------------------------------------------------------------
# Modules: kdgat command lines, conventions, stubs
# --------------------------------------------------------------------------------------------------

OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def quoted(text: str) -> str:
    """The contents of the string literals in ``text``."""
    return " ".join(a or b for a, b in re.findall(r"\"([^\"]*)\"|'([^']*)'", text))


def ext_args(alias: str) -> str:
    """The `ext.args = { ... }` closures that conf/modules.config gives ``alias``."""
    found = []
    for body in config_for(alias):
        for match in re.finditer(r"ext\.args\s*=\s*\{", body):
            found.append(body[match.end() - 1 : matching(body, match.end() - 1)])
    return " ".join(found)


def kdgat_invocations(proc: Process) -> list[tuple[list[str], set[str]]]:
    """Each `kdgat ...` line of the script: (command words, option names, also those in variables).

    `${name}` tokens are looked up in the script's `def name = ...` lines, and `${args}` in the
    ext.args of every alias of the process (conf/modules.config).
    """
    script = proc.script.replace("\\\\\n", " ")
    defs = dict(re.findall(r"(?m)^\s*def\s+(\w+)\s*=\s*(.*)$", script))
    extra = " ".join(ext_args(alias) for alias in aliases_of(proc.name))
    found = []
    for line in re.findall(r"(?m)^\s*kdgat\s+(.*)$", script):
        line = re.split(r"\s(?:\||&&|;|>)\s", line)[0]
        words, options = [], set()
        for token in line.split():
            variable = re.fullmatch(r"\$\{(\w+)\}", token)
            if variable:
                source = extra if variable.group(1) == "args" else defs.get(variable.group(1), "")
                options |= set(OPTION.findall(quoted(source)))
            elif token.startswith("-"):
                options.add(token.split("=")[0])
            elif not options and re.fullmatch(r"[a-z][\w-]*", token):
                words.append(token)
        found.append((words, options))
    return found


def is_group(command) -> bool:
    return hasattr(command, "commands")


def is_option(param) -> bool:
    return getattr(param, "param_type_name", None) == "option"


def cli_command(words: list[str]):
    """The (click) command that `kdgat WORDS...` runs, and the words that named it.

    Typer ships its own copy of click, so commands and options are recognised by their attributes.
    """
    command = typer.main.get_command(app)
    used = []
    for word in words:
        if is_group(command) and word in command.commands:
            command = command.commands[word]
            used.append(word)
        else:
            break
    return command, used


def option_names(command) -> set[str]:
    return {opt for p in command.params if is_option(p) for opt in (*p.opts, *p.secondary_opts)}


def test_there_is_one_module_per_stage():
    assert {p.name for p in processes().values()} == {
        "KDGAT_SYNTH",
        "KDGAT_DATASETS",
        "KDGAT_INGEST",
        "KDGAT_GRAPHS",
        "KDGAT_TRAIN",
        "KDGAT_TRAIN_CLASSICAL",
        "KDGAT_FUSE",
        "KDGAT_EVALUATE",
        "KDGAT_EXPORT",
        "KDGAT_LAKE",
        "KDGAT_REPORT",
    }
    for path in MODULES:  # nf-core layout: modules/local/<name>/main.nf holds process <NAME>
        assert Process(path).name == path.parent.name.upper()


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.parent.name)
def test_kdgat_invocations_name_existing_commands_and_options(module):
    proc = Process(module)
    invocations = kdgat_invocations(proc)
    assert invocations, f"{proc.name} calls no kdgat command"
    for words, options in invocations:
        command, used = cli_command(words)
        assert used == words, f"{proc.name}: `kdgat {' '.join(words)}` is not a command (known: {used})"
        assert not is_group(command), f"{proc.name}: `kdgat {' '.join(words)}` is a group"
        unknown = options - option_names(command)
        assert not unknown, f"{proc.name}: `kdgat {' '.join(words)}` has no option {sorted(unknown)}"
        required = [p for p in command.params if is_option(p) and p.required]
        for param in required:
            assert set(param.opts) & options, f"{proc.name}: `kdgat {' '.join(words)}` needs {param.opts[0]}"


def test_every_stage_command_is_called():
    called = {" ".join(words) for proc in processes().values() for words, _ in kdgat_invocations(proc)}
    assert called == {
        "synth",
        "datasets",
        "ingest",
        "graphs",
        "train",
        "fuse",
        "evaluate",
        "export",
        "lake append",
        "lake build",
        "report",
    }


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.parent.name)
def test_process_conventions(module):
    proc = Process(module)
    assert re.search(r"(?m)^\s*tag\s+\S", proc.directives), f"{proc.name}: no tag"
    resource = [label for label in proc.labels if re.fullmatch(r"process_(single|low|medium|high)", label)]
    assert len(resource) == 1, f"{proc.name}: one CPU/memory label expected, got {proc.labels}"
    assert proc.outputs, f"{proc.name}: no output"
    assert re.search(r"emit:\s*\w+", proc.sections["output"]), f"{proc.name}: outputs need emit: names"
    assert "script" in proc.sections and "stub" in proc.sections, f"{proc.name}: script: and stub: needed"
    assert "task.ext.args" in proc.script, f"{proc.name}: the script should read task.ext.args"
    steps = {step.process: step for step in plan_steps()}
    for alias in aliases_of(proc.name) or [proc.name]:
        gpu = steps[alias].gpu if alias in steps else False
        assert ("process_gpu" in proc.labels) == gpu, f"{alias}: process_gpu exactly on the plan's GPU steps"


# the kdgat commands that are stages (kdgat datasets only lists the catalog)
STAGE_COMMANDS = {
    "synth", "ingest", "graphs", "train", "fuse", "evaluate", "export", "lake append", "lake build", "report",
}  # fmt: skip


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.parent.name)
def test_every_stage_gets_the_tasks_cpus_as_threads(module):
    proc = Process(module)
    script = proc.script.replace("\\\n", " ")
    for line in re.findall(r"(?m)^\s*kdgat\s+(.*)$", script):
        words = " ".join(w for w in line.split()[:2] if re.fullmatch(r"[a-z][\w-]*", w))
        command = words if words in STAGE_COMMANDS else words.split()[0]
        if command in STAGE_COMMANDS:
            assert "--threads ${task.cpus}" in line, f"{proc.name}: kdgat {command} without --threads ${{task.cpus}}"


def test_training_keeps_durable_checkpoints_and_resumes():
    script = processes()["KDGAT_TRAIN"].script
    assert "--checkpoint-dir '${checkpoints}/${meta.id}'" in script
    assert "--no-resume" not in script  # the retry must continue from the checkpoint (resume is the default)
    main = strip_comments(MAIN.read_text())
    assert "outdir.resolve('checkpoints')" in main and "checkpoints.mkdirs()" in main


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.parent.name)
def test_stub_creates_every_declared_output(module):
    proc = Process(module)
    stub = proc.stub
    assert "kdgat " not in stub, f"{proc.name}: a stub must not need kdgat"
    for name in proc.outputs:
        escaped = re.escape(name)
        created = (
            re.search(rf"(?m)mkdir[ \t]+-p[ \t]+(\S+[ \t]+)*{escaped}(/\S*)?(\s|$)", stub)
            or re.search(rf"(?m)touch[ \t]+(\S+[ \t]+)*{escaped}(\s|$)", stub)
            or re.search(rf">>?[ \t]*{escaped}(\s|$)", stub)
        )
        assert created, f"{proc.name}: the stub does not create output {name!r}"


@pytest.mark.parametrize("alias", sorted(includes()))
def test_every_process_is_published_under_outdir(alias):
    bodies = [body for body in config_for(alias) if "publishDir" in body]
    assert len(bodies) == 1, f"{alias}: exactly one withName block with publishDir expected in conf/modules.config"
    assert "params.outdir" in bodies[0] and "params.publish_dir_mode" in bodies[0]


def test_publish_mode_defaults_to_copy():
    assert config_params(NEXTFLOW_CONFIG)["publish_dir_mode"] == "copy"


# --------------------------------------------------------------------------------------------------
# The DAG of workflows/kdgat.nf against kdgat.pipeline.plan_steps()
# --------------------------------------------------------------------------------------------------


@lru_cache
def workflow_uses() -> tuple[dict[str, set[str]], dict[str, str]]:
    """(process alias or "$channel" -> the aliases and "$names" its call or assignment mentions,
    process alias -> its call's text)."""
    text = strip_comments(WORKFLOW.read_text())
    body = sections(block(text, r"workflow\s+KDGAT"), ("take", "main", "emit"))["main"]
    aliases = set(includes())
    uses: dict[str, set[str]] = {}
    calls: dict[str, str] = {}

    def references(span: str) -> set[str]:
        found = {name for name in re.findall(r"\b([A-Z][A-Z0-9_]*)\.out\b", span) if name in aliases}
        return found | {"$" + name for name in re.findall(r"\b(\w+)\b", span)}

    for found in re.finditer(r"(?m)^\s*(\w+)\s*=(?!=)", body):
        end = statement_end(body, found.end())
        uses.setdefault("$" + found.group(1), set()).update(references(body[found.end() : end]))
    for found in re.finditer(r"(?m)^\s*([A-Z][A-Z0-9_]*)\s*\(", body):
        alias = found.group(1)
        assert alias in aliases, f"{alias} is called but not included"
        assert alias not in calls, f"{alias} is called twice"
        span = body[found.end() - 1 : matching(body, found.end() - 1)]
        calls[alias] = span
        uses.setdefault(alias, set()).update(references(span))
    return uses, calls


def _resolve(name: str, seen: frozenset = frozenset()) -> set[str]:
    """Everything ``name`` reads, through the channels assigned in between (each "$channel" kept too)."""
    uses, _ = workflow_uses()
    result = set()
    for ref in uses.get(name, set()):
        result.add(ref)
        if ref.startswith("$") and ref in uses and ref not in seen:
            result |= _resolve(ref, seen | {ref})
    return result


@lru_cache
def workflow_graph() -> tuple[dict[str, set[str]], dict[str, str]]:
    """(process alias -> processes whose outputs feed it, process alias -> its call's text)."""
    _, calls = workflow_uses()
    return {alias: {ref for ref in _resolve(alias) if not ref.startswith("$")} for alias in calls}, calls


def channels_read(alias: str) -> set[str]:
    """The channel variables a process call reads, directly or through other channels."""
    return {ref[1:] for ref in _resolve(alias) if ref.startswith("$ch_")}


def test_workflow_runs_the_processes_of_the_plan():
    graph, _ = workflow_graph()
    assert set(graph) == {step.process for step in plan_steps()} | HELPERS
    steps = {step.process: step for step in plan_steps()}
    for alias, (name, module) in includes().items():
        assert module == name.lower(), f"{alias}: {name} should live in modules/local/{name.lower()}"
        step = steps.get(alias)
        expected = "KDGAT_" + (step.stage.upper() if step else alias)
        if step and step.stage == "train" and not step.gpu:  # the CPU yardsticks share a process of their own
            expected += "_CLASSICAL"
        assert name == expected, f"{alias} is {name}, expected {expected}"


@pytest.mark.parametrize("step", plan_steps(), ids=lambda s: s.name)
def test_channel_dependencies_match_the_plan(step):
    graph, _ = workflow_graph()
    needs = {need.upper() for need in step.needs}
    assert graph[step.process] - HELPERS == needs, f"{step.process} reads {sorted(graph[step.process])}"


def test_only_ingest_reads_the_helpers():
    graph, _ = workflow_graph()
    assert graph["DATASETS"] <= {"SYNTH"} and graph["SYNTH"] == set()
    for alias, upstream in graph.items():
        if alias not in HELPERS | {"INGEST"}:
            assert not upstream & HELPERS, f"{alias} reads {upstream & HELPERS}"


@pytest.mark.parametrize("step", [s for s in plan_steps() if s.stage in ("train", "fuse")], ids=lambda s: s.name)
def test_runs_are_the_plans_variants(step):
    """Model, scale, KD and the run folder's name that each alias passes match the plan's step."""
    _, calls = workflow_graph()
    span = calls[step.process]
    if step.stage == "train":
        found = re.findall(r"trainMeta\(meta,\s*'(\w+)',\s*'(\w+)',\s*(true|false)\)", span)
        assert found == [(step.model, step.scale, "true" if step.kd else "false")], found
        assert "tracking_uri" in span
    else:
        found = re.findall(r"variant:\s*'(\w+)',\s*scale:\s*'(\w+)'", span)
        assert found == [(step.run_name, step.scale)], found
        assert "fusion_method" in span


def test_per_seed_steps_run_on_the_seeded_channels_and_publish_per_seed():
    """--seeds fans out everything after GRAPHS: one item per dataset and seed, joined on meta.key."""
    text = strip_comments(WORKFLOW.read_text())
    main = sections(block(text, r"workflow\s+KDGAT"), ("take", "main", "emit"))["main"]
    fan_out = re.search(
        r"ch_graphs = GRAPHS\.out\.graphs\s*(\.map \{[\s\S]*?\})?\s*\.combine\(channel\.fromList\(seeds\)\)", main
    )
    assert fan_out and 'key: "${meta.id}/seed${seed}"' in main
    assert "meta.id, run]" not in main and ".join(" in main  # joins on meta.key only
    _, calls = workflow_graph()
    for step in plan_steps():
        span = calls[step.process]
        if step.per_seed and step.per_dataset:
            assert "ch_graphs" in channels_read(step.process), f"{step.process} does not read the seeded graphs"
            publish = [body for body in config_for(step.process) if "publishDir" in body]
            assert "seed${meta.seed}" in publish[0], f"{step.process} is not published per seed"
        elif step.per_dataset:
            assert "ch_graphs" not in span, f"{step.process} is a data step: once per dataset"
    for name in ("KDGAT_TRAIN", "KDGAT_FUSE"):  # the stages whose config holds the seed get the item's own
        assert 'def seed = "-O seed=${meta.seed}"' in processes()[name].script and "${seed}" in processes()[name].script
    assert "params.seed" not in strip_comments((ROOT / "conf" / "modules.config").read_text())


def _assignment(name: str) -> str:
    """The text of ``name = ...`` in the workflow's main section."""
    text = strip_comments(WORKFLOW.read_text())
    main = sections(block(text, r"workflow\s+KDGAT"), ("take", "main", "emit"))["main"]
    found = re.search(rf"(?m)^\s*{name}\s*=(?!=)", main)
    assert found, f"no channel {name}"
    return main[found.end() : statement_end(main, found.end())]


def test_a_store_whose_fusions_cannot_be_fitted_stops_the_run_where_the_pipeline_stops():
    """fusionPartProblem reads the fields plan.fusion_part_problem reads and says the same; the graphs channel
    every training task reads raises it; the GRAPHS stub writes a store that passes it."""
    from kdgat.pipeline.plan import fusion_part_problem

    text = strip_comments(WORKFLOW.read_text())
    function = block(text, r"def\s+fusionPartProblem\(graphs\)")
    for field in ("parts.train.attack_graphs", "parts.fusion", "fusion.attack_graphs", "fusion.benign_graphs"):
        assert field in function, field
    assert "fusion.attack_share == null ||" in function  # an old manifest without a share: unknown, as in Python
    for fusion in ({"attack_graphs": 0, "benign_graphs": 5}, None, {"graphs": 0}):  # the messages, word for word
        problem = fusion_part_problem({"parts": {"train": {"attack_graphs": 1}, "fusion": fusion}})
        assert problem and f'"{problem}"' in function
    checked = _assignment("ch_graphs")
    assert "fusionPartProblem(graphs)" in checked and "error(" in checked
    assert checked.index("fusionPartProblem") < checked.index(".combine(")  # once per dataset, not per seed
    stub = processes()["KDGAT_GRAPHS"].stub
    manifest = json.loads(re.search(r"echo '(\{.*\})' > graphs/manifest.json", stub).group(1))
    assert fusion_part_problem(manifest["summary"]) is None


def test_steps_that_learn_from_attacks_read_only_the_supervised_graphs():
    """A dataset whose training part holds no attack window reaches only the steps that can learn
    without one (Step.supervised), and EVALUATE and EXPORT take the benign route's runs for it."""
    text = strip_comments(WORKFLOW.read_text())
    assert "manifest.summary.parts.train.attack_graphs" in text  # the field plan.trains_on_attacks reads
    assert "trainsOnAttacks" not in _assignment("ch_graphs")  # every dataset, meta unchanged (-resume keeps its tasks)
    assert re.search(r"\.filter \{ _meta, graphs -> trainsOnAttacks\(graphs\) \}", _assignment("ch_graphs_supervised"))
    benign = _assignment("ch_graphs_benign_by_key")
    assert re.search(r"\.filter \{ _meta, graphs -> !trainsOnAttacks\(graphs\) \}", benign) and "benign: true" in benign
    _, calls = workflow_graph()
    for step in plan_steps():
        if step.stage not in ("train", "fuse"):
            continue
        direct = calls[step.process]
        if step.supervised:
            assert "ch_graphs_supervised" in channels_read(step.process), step.process
            assert not re.search(r"\bch_graphs(_by_key)?\b", direct), f"{step.process} reads every dataset"
        else:
            assert "ch_graphs_supervised" not in channels_read(step.process), step.process
    # EVALUATE and EXPORT: one route per kind of dataset, each joined with exactly the plan's runs for it
    steps = {s.name: s for s in plan_steps()}
    for supervised, kind in ((True, "supervised"), (False, "benign")):
        evaluated = [s.run_name for s in plan_steps() if s.stage in ("train", "fuse") and s.runs_for(supervised)]
        exported = [steps[m].run_name for m in steps["export"].members_for(supervised)]
        for process, runs in (("EVALUATE", evaluated), ("EXPORT", [*exported, "evaluation"])):
            channel = f"ch_{process.lower()}_{kind}"
            route = _assignment(channel).lstrip()
            assert route.startswith(f"ch_graphs_{kind}_by_key"), channel
            assert re.findall(r"\.join\(ch_(\w+)\)", route) == runs, channel
            assert re.search(rf"\b{channel}\b", calls[process]), f"{process} does not read {channel}"
    # and EVALUATE thresholds them on benign validation windows
    (args,) = [body for body in config_for("EVALUATE") if "ext.args" in body]
    assert "meta.benign ? params.benign_threshold : params.threshold" in args


def test_the_default_thresholds_are_the_runners():
    from kdgat.evaluation.policies import BENIGN_POLICY, DEFAULT_POLICY

    params = config_params(NEXTFLOW_CONFIG)
    assert (params["threshold"], params["benign_threshold"]) == (DEFAULT_POLICY, BENIGN_POLICY)
    # main.nf refuses what the schema does: only fpr:<rate> for the attack-free datasets
    found = re.search(r"params\.benign_threshold\.toString\(\)\.matches\('([^']+)'\)", MAIN.read_text())
    assert found, "main.nf does not check --benign_threshold"
    groovy = found.group(1).replace("\\\\", "\\")  # the Groovy string's escaped backslashes
    assert f"^{groovy}$" == schema_properties()["benign_threshold"]["pattern"]
    for value, ok in (("fpr:0.01", True), ("fpr:1", True), ("margin", False), ("fpr:2", False)):
        assert bool(re.fullmatch(groovy, value)) is ok, value


def test_main_refuses_what_the_schema_refuses():
    """nf-schema is not used, so main.nf checks each enum and pattern of the schema before any task: a bad
    --precision or --accelerator failed every training task, a bad --threshold failed EVALUATE after training."""
    text, schema = MAIN.read_text(), schema_properties()
    for name in ("fusion_method", "precision", "accelerator", "synth_size", "publish_dir_mode"):
        found = re.search(rf"params\.{name}(?:\.toString\(\))? in (\[[^\]]*\])", text)
        assert found, f"main.nf does not check --{name}"
        assert set(re.findall(r"'([^']*)'", found.group(1))) == set(schema[name]["enum"]), name
    assert "move" not in schema["publish_dir_mode"]["enum"]  # later tasks read the published stores and runs
    found = re.search(r"params\.threshold\.toString\(\)\.matches\('([^']+)'\)", text)
    assert found, "main.nf does not check --threshold"
    groovy = found.group(1).replace("\\\\", "\\")
    assert f"^({groovy[1:-1]})$" == schema["threshold"]["pattern"]
    for value, ok in (("margin", True), ("fpr:0.05", True), ("youden", True), ("f1x", False), ("fpr:2", False)):
        assert bool(re.fullmatch(groovy, value)) is ok, value


def test_the_default_seed_is_the_presets():
    from kdgat.core.config import resolve_config

    assert config_params(NEXTFLOW_CONFIG)["seeds"] == str(resolve_config("gat", "large").seed)


def test_train_variant_names_are_the_plans_run_names():
    text = strip_comments(WORKFLOW.read_text())
    assert "\"${model}_${scale}${kd ? '_kd' : ''}\"" in text  # the run folder: vgae_small_kd, gat_large, ...
    trained = {step.run_name for step in plan_steps() if step.stage == "train"}
    assert trained == {
        "vgae_large",
        "gat_large",
        "vgae_small_kd",
        "gat_small_kd",
        "vgae_small",
        "gat_small",
        "hgb_large",
        "novelty_large",
    }


# --------------------------------------------------------------------------------------------------
# Config and params
# --------------------------------------------------------------------------------------------------

LITERAL = re.compile(
    r"""^(?:'(?P<s>[^']*)'|"(?P<d>[^"$]*)"|(?P<n>-?\d+(?:\.\d+)?)|(?P<b>true|false)|(?P<null>null))$"""
)
DYNAMIC = object()


def literal(value: str):
    found = LITERAL.match(value.strip())
    if not found:
        return DYNAMIC
    if found.group("s") is not None:
        return found.group("s")
    if found.group("d") is not None:
        return found.group("d")
    if found.group("n") is not None:
        return float(found.group("n")) if "." in found.group("n") else int(found.group("n"))
    if found.group("b") is not None:
        return found.group("b") == "true"
    return None


def config_params(path: Path) -> dict:
    """Name -> literal default (DYNAMIC for expressions) of the `params { }` block of a config file."""
    text = strip_comments(path.read_text())
    result = {}
    for found in re.finditer(r"(?m)^params\s*\{", text):
        body = text[found.end() : matching(text, found.end() - 1) - 1]
        for name, value in re.findall(r"(?m)^\s*(\w+)\s*=\s*(.+?)\s*$", body):
            result[name] = literal(value)
    for name, value in re.findall(r"(?m)^\s*params\.(\w+)\s*=\s*(.+?)\s*$", text):
        result.setdefault(name, literal(value))
    return result


@lru_cache
def schema() -> dict:
    return json.loads((ROOT / "nextflow_schema.json").read_text())


def schema_properties() -> dict[str, dict]:
    props = {}
    for group in schema()["$defs"].values():
        for name, prop in group["properties"].items():
            assert name not in props, f"{name} is described twice"
            props[name] = prop
    return props


def test_schema_is_valid_json_schema_2020_12():
    jsonschema = pytest.importorskip("jsonschema")
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema())
    refs = {ref["$ref"] for ref in schema()["allOf"]}
    assert refs == {f"#/$defs/{name}" for name in schema()["$defs"]}, "every group is referenced from allOf"
    for name, prop in schema_properties().items():
        assert prop.get("description"), f"{name}: no description"


def test_schema_describes_every_param_and_its_default():
    params = config_params(NEXTFLOW_CONFIG)
    props = schema_properties()
    assert set(props) == set(params), (
        f"schema only: {set(props) - set(params)}; config only: {set(params) - set(props)}"
    )
    for name, default in params.items():
        if default is DYNAMIC:
            continue
        if default is None:
            assert "default" not in props[name], f"{name}: the config default is null"
        else:
            assert props[name].get("default") == default, (
                f"{name}: schema {props[name].get('default')!r} vs {default!r}"
            )


def test_profile_and_config_params_are_declared():
    declared = set(config_params(NEXTFLOW_CONFIG))
    for path in CONFIGS[1:]:
        assert set(config_params(path)) <= declared, f"{path.name} sets undeclared params"
    used = set()
    for path in [MAIN, WORKFLOW, *MODULES, *CONFIGS]:
        # a name, not a method (params.containsKey('x'))
        used |= set(re.findall(r"\bparams\.(\w+)\b(?!\()", strip_comments(path.read_text())))
    assert used <= declared, f"used but not declared: {used - declared}"


def test_defaults_and_test_profile_validate_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema())
    defaults = {k: v for k, v in config_params(NEXTFLOW_CONFIG).items() if v is not DYNAMIC and v is not None}
    validator.validate({**defaults, "datasets": "set_01,set_02"})
    test = {k: v for k, v in config_params(ROOT / "conf" / "test.config").items() if v is not DYNAMIC}
    validator.validate({**defaults, **test})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**defaults, "datasets": "all", "fusion_method": "nope"})


def test_only_main_nf_reads_params():
    """Strict-syntax best practice: the entry workflow passes params to the workflow as inputs."""
    for path in [WORKFLOW, *MODULES]:
        assert "params." not in strip_comments(path.read_text()), f"{path.relative_to(ROOT)} reads params"


def test_profiles():
    text = strip_comments(NEXTFLOW_CONFIG.read_text())
    profiles = block(text, r"(?m)^profiles")
    for name in ("standard", "test", "slurm", "apptainer", "gpu"):
        assert re.search(rf"(?m)^\s*{name}\s*\{{", profiles), f"no {name} profile"
    apptainer = block(profiles, r"(?m)^\s*apptainer")
    assert "apptainer.enabled = true" in apptainer and "apptainer.autoMounts = true" in apptainer
    assert "process.container = params.container" in apptainer
    assert "singularity.enabled = false" in apptainer
    whitelist = re.search(r"apptainer\.envWhitelist = '([^']+)'", apptainer).group(1).split(",")
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_CPUS_PER_TASK", "SLURM_JOB_GPUS", "MLFLOW_TRACKING_URI",
                 "MLFLOW_TRACKING_TOKEN"):  # fmt: skip
        assert name in whitelist, f"{name} does not reach the container"
    binds = re.search(r"apptainer\.runOptions = '--bind ' \+ (.*)", apptainer).group(1)
    for bound in ("params.outdir", "params.lake", "params.apptainer_bind", '"${projectDir}/bin"'):
        assert bound in binds, f"the apptainer profile does not bind {bound}"
    # evaluated: outdir and lake made absolute, --apptainer_bind a comma list of which every path is made absolute
    # (taken whole, 'a, /b' became '<launchDir>/a, /b'), and bin/
    env = {"launchDir": "/launch", "projectDir": "/project"}
    given = {"outdir": "results", "lake": "/data/lake", "apptainer_bind": "a, /b,c:/mnt/c"}
    assert (
        nfconfig.evaluate(binds, {**env, "params": given, "System": {}})
        == "/launch/results,/data/lake,/launch/a,/b,/launch/c:/mnt/c,/project/bin"
    )
    bare = {"outdir": "/out", "lake": None, "apptainer_bind": None}
    assert nfconfig.evaluate(binds, {**env, "params": bare, "System": {}}) == "/out,/project/bin"
    # presets of one's own ($KDGAT_CONFIG_DIR) reach the tasks in the container as outside it (they were ignored)
    own = {"KDGAT_CONFIG_DIR": "presets"}
    assert nfconfig.evaluate(binds, {**env, "params": bare, "System": own}) == "/out,/launch/presets,/project/bin"
    assert {"KDGAT_CONFIG_DIR", "KDGAT_ACCELERATOR"} <= set(whitelist)
    slurm = strip_comments((ROOT / "conf" / "slurm.config").read_text())
    assert "executor = 'slurm'" in slurm and "queue = params.slurm_queue" in slurm
    assert "--account=${params.slurm_account}" in slurm
    assert "queueSize = params.slurm_queue_size" in slurm and "submitRateLimit = params.slurm_submit_rate" in slurm
    assert config_params(NEXTFLOW_CONFIG)["slurm_gres"] == "gpu:v100:1"


def test_each_selector_block_is_defined_once():
    """With Nextflow's config parser a later `withLabel: x { }` block replaces an earlier one as a whole
    (issue 12: the profiles' process_gpu blocks dropped the base block's 12 h), so every selector is
    written in exactly one place."""
    seen: dict[str, Path] = {}
    for path in CONFIGS:
        for selector in re.findall(r"(with(?:Label|Name)\s*:\s*['\"]?[\w|.*-]+)", strip_comments(path.read_text())):
            key = re.sub(r"\s|['\"]", "", selector)
            assert key not in seen, f"{key} is defined in {seen[key].name} and again in {path.name}"
            seen[key] = path
    test = strip_comments((ROOT / "conf" / "test.config").read_text())
    assert "resourceLimits" in test and "synthetic = true" in test and "datasets = 'synthetic'" in test


def test_resources_escalate_on_retry_within_limits():
    base = strip_comments((ROOT / "conf" / "base.config").read_text())
    strategy = re.search(r"errorStrategy\s*=\s*\{\s*task\.exitStatus in \[([\d,\s]+)\]\s*\?\s*'retry'", base)
    # the template's ((130..145) + 104 + 175), written out: OOM, SLURM limits, SIGTERM, SIGBUS, SIGSEGV, SIGABRT
    assert strategy and {int(code) for code in strategy.group(1).split(",")} == {*range(130, 146), 104, 175}
    # the process-wide setting, not a label's own (error_retry has one)
    assert re.search(r"maxRetries\s*=\s*[1-9]", without_blocks(base, r"withLabel:\s*\w+"))
    for label in ("process_single", "process_low", "process_medium", "process_high"):
        body = block(base, rf"withLabel:\s*{label}")
        assert re.search(r"memory\s*=\s*\{[^}]*task\.attempt", body), f"{label}: memory does not escalate"
        assert re.search(r"time\s*=\s*\{[^}]*task\.attempt", body), f"{label}: time does not escalate"
    assert re.search(r"resourceLimits\s*=\s*\[\s*cpus:\s*params\.max_cpus,\s*memory:\s*params\.max_memory,", base)


# --------------------------------------------------------------------------------------------------
# Effective settings per profile combination (tests/support/nfconfig.py merges the configs)
# --------------------------------------------------------------------------------------------------

COMBINATIONS = ["test", "slurm", "slurm,apptainer", "slurm,apptainer,gpu"]
GB = nfconfig.GB


def settings(profiles: str, alias: str, attempt: int = 1, environ: dict | None = None, **params) -> dict:
    names = profiles.split(",")
    config = nfconfig.read_config(NEXTFLOW_CONFIG, names)
    name, _module = includes().get(alias, (alias, None))
    labels = processes()[name if name.startswith("KDGAT_") else "KDGAT_" + alias].labels
    values = nfconfig.params_of(config, params)
    return nfconfig.effective(config, names, alias, labels, attempt, values, environ=environ) | {"params": values}


def _hours(q) -> float:
    return q.value / 3600


@pytest.mark.parametrize("profiles", COMBINATIONS)
def test_training_gets_the_intended_resources_in_every_profile_combination(profiles):
    names = profiles.split(",")
    train, evaluate = settings(profiles, "TRAIN_GAT_LARGE"), settings(profiles, "EVALUATE")
    retry = settings(profiles, "TRAIN_GAT_LARGE", attempt=2)
    if "test" in names:  # capped by the test profile's limits: 2 CPUs, 6 GB, 1 h
        assert (train["cpus"], train["memory"].value, _hours(train["time"])) == (2, 6 * GB, 1)
        assert train["executor"] == "local" and train["accelerator"] is None and not train["apptainer"]
        return
    assert train["executor"] == evaluate["executor"] == "slurm"
    # process_medium's CPUs and memory, process_gpu's 12 h (not process_medium's 8 h); doubled on retry
    assert (train["cpus"], train["memory"].value, _hours(train["time"])) == (6, 36 * GB, 12)
    assert (retry["cpus"], retry["memory"].value, _hours(retry["time"])) == (12, 72 * GB, 24)
    assert (evaluate["cpus"], evaluate["memory"].value, _hours(evaluate["time"])) == (6, 36 * GB, 8)
    assert train["clusterOptions"] == ["--gres=gpu:v100:1", "--signal=B:USR2@120"]
    assert evaluate["clusterOptions"] == []  # CPU stages ask for no GPU
    assert train["errorStrategy"] == "retry" and train["maxRetries"] == 1  # exit 143 after a stop signal
    assert train["accelerator"] == (1 if "gpu" in names else None)
    assert train["params"]["precision"] == ("16-mixed" if "gpu" in names else None)
    if "apptainer" in names:
        assert train["containerOptions"] == "--nv" and not evaluate["containerOptions"]  # --nv on GPU tasks only
        assert train["container"] == evaluate["container"] == train["params"]["container"]
        assert "CUDA_VISIBLE_DEVICES" in train["envWhitelist"].split(",")
    else:
        assert not train["containerOptions"] and train["container"] is None


@pytest.mark.parametrize(
    ("profiles", "environ", "accelerator", "warned"),
    [
        ("gpu", {}, None, True),  # a local executor that honours `accelerator` would stop every training
        ("gpu", {"CUDA_VISIBLE_DEVICES": "0"}, 1, False),  # one training at a time on GPU 0
        ("apptainer,gpu", {"CUDA_VISIBLE_DEVICES": "0,1"}, 1, False),
        ("slurm,apptainer,gpu", {}, 1, False),  # SLURM binds the GPU (--gres); the variable is its, not ours
        ("apptainer", {"CUDA_VISIBLE_DEVICES": "0"}, None, False),  # no gpu profile: no GPU asked for
    ],
)
def test_local_gpu_trainings_ask_for_a_gpu_only_where_nextflow_can_hand_one_out(profiles, environ, accelerator, warned):
    """Nextflow's local executor (in the versions after 25.04 that honour `accelerator`) hands each task asking
    for a GPU one of those CUDA_VISIBLE_DEVICES lists, and stops a task asking for more than are listed: with
    none listed, `-profile gpu` would stop every training. So the trainings ask for one only where the variable
    is set (then one training per GPU at a time), and main.nf warns where it is not (its condition, evaluated)."""
    train = settings(profiles, "TRAIN_GAT_LARGE", environ=environ)
    assert train["accelerator"] == accelerator and train["executor"] == ("slurm" if "slurm" in profiles else "local")
    text = strip_comments(MAIN.read_text())
    condition = re.search(r"if \((profiles\.contains\('gpu'\).+)\) \{", text).group(1)
    assert bool(nfconfig.evaluate(condition, {"profiles": profiles.split(","), "System": environ})) == warned
    assert "log.warn(" in text.split(condition)[1].split("}")[0]


def accelerator_option(profiles: str, **params) -> str:
    """What the training tasks' ext.args (conf/modules.config) say about --accelerator, evaluated."""
    text = ext_args("TRAIN_GAT_LARGE")
    start = i = text.index("params.accelerator ?")
    depth = 0
    while depth or text[i] != ",":  # the list item ends at the comma outside its parentheses
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    values = settings(profiles, "TRAIN_GAT_LARGE", **params)["params"]
    return nfconfig.evaluate(text[start:i], {"params": values, "workflow": {"profile": profiles}})


@pytest.mark.parametrize(
    ("profiles", "params", "expected"),
    [
        ("test", {}, ""),
        ("slurm", {}, "--accelerator gpu"),  # slurm_gres asks for a V100 by default
        ("slurm", {"slurm_gres": ""}, ""),
        ("slurm,apptainer,gpu", {}, "--accelerator gpu"),
        ("slurm,apptainer,gpu", {"accelerator": "cpu"}, "--accelerator cpu"),
        ("test", {"accelerator": "gpu"}, "--accelerator gpu"),
    ],
)
def test_a_training_task_that_asks_for_a_gpu_must_get_one(profiles, params, expected):
    """Without it, a task whose container lacks --nv or whose torch lacks the card's kernels trains on the CPU."""
    assert accelerator_option(profiles, **params) == expected


@pytest.mark.parametrize(
    ("profiles", "params", "refused"),
    [
        ("slurm,apptainer,gpu", {"slurm_gres": ""}, True),
        ("slurm", {"slurm_gres": "", "accelerator": "gpu"}, True),
        ("slurm,gpu", {"slurm_gres": "", "accelerator": "cpu"}, False),  # told to train on the CPU
        ("slurm,gpu", {}, False),
        ("slurm", {"slurm_gres": ""}, False),  # no GPU asked for: --accelerator stays unset (above)
        ("gpu", {"slurm_gres": ""}, False),  # the local executor: no --gres to ask for
    ],
)
def test_main_refuses_gpu_trainings_that_slurm_gives_no_gpu(profiles, params, refused):
    """The cases above where the trainings get --accelerator gpu while --slurm_gres is empty: every training job
    would fail at its start, so main.nf refuses them before any task (its condition, evaluated)."""
    text = strip_comments(MAIN.read_text())
    wants_gpu = re.search(r"def wants_gpu = (.+)", text).group(1)
    condition = re.search(r"if \((profiles\.contains\('slurm'\).+)\) \{", text).group(1)
    env = {"params": {"accelerator": None, "slurm_gres": "gpu:v100:1", **params}, "profiles": profiles.split(",")}
    env["wants_gpu"] = nfconfig.evaluate(wants_gpu, env)
    assert bool(nfconfig.evaluate(condition, env)) == refused
    option = accelerator_option(profiles, **params)
    assert refused == (option == "--accelerator gpu" and not env["params"]["slurm_gres"] and "slurm" in profiles)


def task_args(alias: str, meta: dict, profiles: str = "test", **params) -> str:
    """The ext.args a task of ``alias`` gets (conf/modules.config), evaluated with its ``meta``."""
    names = profiles.split(",")
    config = nfconfig.read_config(NEXTFLOW_CONFIG, names)
    name, _module = includes().get(alias, (alias, None))
    labels = processes()[name if name.startswith("KDGAT_") else "KDGAT_" + alias].labels
    values = nfconfig.params_of(config, params)
    return nfconfig.effective(config, names, alias, labels, 1, values, meta=meta)["ext.args"] or ""


def test_each_task_gets_the_overrides_it_depends_on():
    """As kdgat pipeline keys its steps: graphs on preprocessing, a training on its own model's section and the
    shared ones (a yardstick not on training.*), a fusion not on its members' sections. Else -resume re-runs every
    store and training after an override of one model (and the lake's store identities change)."""
    overrides = (
        "preprocessing.stride=50 gat.hidden=8 vgae.lr=0.01 hgb.max_iter=50 dqn.episodes=9 training.batch_size=64 seed=3"
        " fusion.epochs=4"
    )  # fusion.* is the fuse runs' (a training took it, and -resume trained every model again)
    given = lambda args: re.findall(r"-O '?([^' ]+)'?", args)  # noqa: E731
    assert given(task_args("GRAPHS", {"id": "d"}, overrides=overrides)) == ["preprocessing.stride=50"]
    shared = ["preprocessing.stride=50", "training.batch_size=64", "seed=3"]
    for alias, model, own in (
        ("TRAIN_GAT_SMALL_KD", "gat", "gat.hidden=8"),
        ("TRAIN_VGAE_LARGE", "vgae", "vgae.lr=0.01"),
    ):
        args = task_args(alias, {"id": "d", "model": model}, overrides=overrides, max_epochs=3)
        assert sorted(given(args)) == sorted([own, *shared, "training.max_epochs=3"]), alias
        assert given(args)[-1] == "training.max_epochs=3", alias  # after --overrides: the named param wins
    for alias, model, own in (("TRAIN_HGB_LARGE", "hgb", ["hgb.max_iter=50"]), ("TRAIN_NOVELTY_LARGE", "novelty", [])):
        args = task_args(
            alias, {"id": "d", "model": model}, "slurm", overrides=overrides, max_epochs=3, precision="16-mixed"
        )
        assert given(args) == ["preprocessing.stride=50", *own, "seed=3"] and "--accelerator" not in args, alias
    # kdgat pipeline gives each run the same ones (kdgat.core.config.own_overrides): the same recorded config
    from kdgat.core.config import own_overrides

    for alias, model in (("TRAIN_GAT_SMALL_KD", "gat"), ("TRAIN_VGAE_LARGE", "vgae"), ("TRAIN_HGB_LARGE", "hgb"),
                         ("TRAIN_NOVELTY_LARGE", "novelty"), ("FUSE_LARGE", "dqn")):  # fmt: skip
        meta = {"id": "d", "scale": "large"} if model == "dqn" else {"id": "d", "model": model}
        args = task_args(alias, meta, overrides=overrides, max_epochs=None, dqn_episodes=None)
        assert given(args) == own_overrides(model, overrides.split()), alias
    fuse = task_args("FUSE_LARGE", {"id": "d", "scale": "large"}, overrides=overrides, dqn_episodes=7)
    # no training.*: a fusion has no training loop (kdgat keeps that section out of its config hash too)
    assert given(fuse) == ["preprocessing.stride=50", "dqn.episodes=9", "seed=3", "fusion.epochs=4", "dqn.episodes=7"]


def test_a_seed_in_overrides_never_undoes_the_seed_fan_out():
    """`--seeds 0,1,2 --overrides seed=7` trained every seed<k> folder with seed 7: the module gave the task's own
    seed before ext.args, and a later -O wins. It comes last now, as `kdgat pipeline` appends its own."""
    for name in ("KDGAT_TRAIN", "KDGAT_FUSE", "KDGAT_TRAIN_CLASSICAL"):
        command = strip_comments(processes()[name].script)
        seed = command.index("${seed}") if "${seed}" in command else command.index("-O seed=${meta.seed}")
        assert command.index("${args}") < seed, name
    # a 0 reaches kdgat, which refuses it (it was falsy in Groovy and dropped: the preset's epochs trained instead)
    assert "-O training.max_epochs=0" in task_args("TRAIN_GAT_LARGE", {"id": "d", "model": "gat"}, max_epochs=0)
    assert "-O dqn.episodes=0" in task_args("FUSE_LARGE", {"id": "d", "scale": "large"}, dqn_episodes=0)
    assert "--${name} must be a whole number of at least 1" in MAIN.read_text()
    assert "--overrides: seed= has no effect in a campaign" in MAIN.read_text()  # refused, not silently ignored


def test_cluster_params_reach_the_training_jobs():
    train = settings("slurm,apptainer,gpu", "TRAIN_GAT_SMALL_KD", slurm_account="lab", slurm_queue="cpu",
                     slurm_gpu_queue="gpu", slurm_gres="gpu:a100:1", slurm_signal_seconds=300)  # fmt: skip
    assert train["queue"] == "gpu" and train["clusterOptions"] == [
        "--account=lab", "--gres=gpu:a100:1", "--signal=B:USR2@300"
    ]  # fmt: skip
    other = settings("slurm", "GRAPHS", slurm_account="lab", slurm_queue="cpu", slurm_gpu_queue="gpu")
    assert other["queue"] == "cpu" and other["clusterOptions"] == ["--account=lab"]
    cpu_only = settings("slurm", "TRAIN_GAT_LARGE", slurm_gres="", slurm_signal_seconds=0, slurm_queue="cpu")
    assert cpu_only["clusterOptions"] == [] and cpu_only["queue"] == "cpu"
    capped = settings("slurm", "TRAIN_GAT_LARGE", attempt=2, max_time="16.h", max_cpus=8)
    assert (capped["cpus"], _hours(capped["time"])) == (8, 16)


def test_the_config_reader_sees_a_profile_block_replace_the_base_block(tmp_path):
    """The merge rule the tests above rely on, on a config that breaks it the way issue 12 found."""
    (tmp_path / "base.config").write_text(
        "process {\n  withLabel: process_gpu {\n    time = { 12.h * task.attempt }\n  }\n}\n"
    )
    (tmp_path / "nextflow.config").write_text(
        "includeConfig 'base.config'\nprofiles {\n  gpu {\n    process {\n      withLabel: process_gpu {\n"
        "        accelerator = 1\n      }\n    }\n  }\n}\n"
    )
    config = nfconfig.read_config(tmp_path / "nextflow.config", ["gpu"])
    got = nfconfig.effective(config, ["gpu"], "TRAIN", ["process_gpu"], 1, {})
    assert got["accelerator"] == 1 and got["time"] is None  # the base block's time is gone
    assert nfconfig.effective(nfconfig.read_config(tmp_path / "nextflow.config", []), [], "T", ["process_gpu"], 1,
                              {})["time"].value == 12 * 3600  # fmt: skip


def test_reports_are_written_to_pipeline_info():
    text = strip_comments(NEXTFLOW_CONFIG.read_text())
    for scope in ("timeline", "report", "trace", "dag"):
        body = block(text, rf"(?m)^{scope}")
        assert "enabled = true" in body, f"{scope} not enabled"
        assert re.search(r'file = "\$\{params\.outdir\}/pipeline_info/\w+_\$\{params\.trace_report_suffix\}', body)
    assert re.search(r"nextflowVersion\s*=\s*'!>=25\.04", text)


# --------------------------------------------------------------------------------------------------
# Strict syntax (what `nextflow lint` rejects that a regular expression can see)
# --------------------------------------------------------------------------------------------------

NF_FILES = [MAIN, WORKFLOW, *MODULES]


def code_only(text: str) -> str:
    """Comments and string contents removed: what is left is Groovy/Nextflow code."""
    text = strip_comments(text)
    return re.sub(r'"""(?:.|\n)*?"""|\'\'\'(?:.|\n)*?\'\'\'|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', '""', text)


def top_level_lines(code: str) -> list[str]:
    """Lines that start outside any bracket (``code`` has its strings emptied)."""
    lines, depth = [], 0
    for line in code.splitlines():
        if depth == 0:
            lines.append(line)
        depth += sum(line.count(c) for c in "([{") - sum(line.count(c) for c in ")]}")
    return lines


@pytest.mark.parametrize("path", NF_FILES + CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_strict_syntax_patterns(path):
    code = code_only(path.read_text())
    assert not re.search(r"\bChannel\s*\.", code), "use the lower-case channel. factories"
    assert not re.search(r"(?m)^\s*import\s", code), "no import declarations"
    assert not re.search(r"\b(for|while|switch)\s*\(", code), "no for/while/switch"
    assert not re.search(r"\bit\b", code), "declare closure parameters (no implicit `it`)"
    assert "addParams" not in code and not re.search(r"(?m)^\s*shell:\s*$", code)
    assert not re.search(r"\bnextflow\.enable\.dsl", code), "DSL2 is the only dialect"
    if path.suffix == ".config":
        assert not re.search(r"(?m)^\s*def\s", code), "no def in config files"
        assert not re.search(r"(?m)^\s*(if|else)\b", code), "no if statements at config level"
    else:  # a script holds declarations only (no statements beside them)
        for line in top_level_lines(code):
            assert re.match(r"\s*($|#!|include\b|process\b|workflow\b|def\b)", line), f"top-level statement: {line}"


def test_main_nf_only_orchestrates():
    text = strip_comments(MAIN.read_text())
    assert re.search(r"include\s*\{\s*KDGAT\s*\}\s*from\s*'./workflows/kdgat'", text)
    assert not re.search(r"(?m)^process\s", text)
    entry = block(text, r"(?m)^workflow")
    assert re.search(r"(?m)^\s*main:\s*$", entry) and "workflow.onComplete = {" in entry
    assert re.search(r"(?m)^\s*KDGAT\s*\(", entry)


# --------------------------------------------------------------------------------------------------
# bin/: the dataset resolver DATASETS runs
# --------------------------------------------------------------------------------------------------

CATALOG = {
    "data_root": "data",
    "datasets": {
        "set_01": {"root": "data/can-train-and-test/set_01", "status": "ok", "missing_patterns": []},
        "road": {"root": "data/road", "status": "missing", "missing_patterns": ["train:train:*.csv*"]},
        "mine": {"root": "/abs/mine", "status": "ok", "missing_patterns": [], "one_trace": True},
    },
}


def resolve(tmp_path: Path, spec: str) -> subprocess.CompletedProcess:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    return subprocess.run(
        [sys.executable, str(RESOLVER), "--datasets", spec, "--data-root", "data", str(catalog)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def test_resolver_is_an_executable_script():
    assert os.access(RESOLVER, os.X_OK)
    assert RESOLVER.read_text().startswith("#!/usr/bin/env python3\n")
    assert "kdgat_resolve_datasets.py" in processes()["KDGAT_DATASETS"].script


def test_resolver_all_takes_the_complete_datasets(tmp_path):
    result = resolve(tmp_path, "all")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == ["name", "root", "path", "one_trace"]
    assert [row[:2] for row in rows[1:]] == [["set_01", "can-train-and-test/set_01"], ["mine", ""]]
    assert [row[3] for row in rows[1:]] == ["false", "true"]  # the catalog's flag, for the ingest key
    assert rows[1][2] == str((tmp_path / "data/can-train-and-test/set_01").resolve())
    assert "road" in result.stderr


def test_resolver_keeps_the_given_order_and_rejects_bad_names(tmp_path):
    result = resolve(tmp_path, "mine, set_01,mine")
    assert result.returncode == 0 and [line.split("\t")[0] for line in result.stdout.splitlines()[1:]] == [
        "mine",
        "set_01",
    ]
    unknown = resolve(tmp_path, "set_01,nope")
    assert unknown.returncode == 2 and "unknown dataset(s) nope" in unknown.stderr
    missing = resolve(tmp_path, "road")
    assert missing.returncode == 2 and "dataset road: captures missing" in missing.stderr


def test_a_users_catalog_is_staged_in_a_folder_of_its_own():
    """DATASETS writes catalog.json and INGEST data/ and frames/ in the task folder: a --catalog file of one of those
    names, staged beside them, was emptied by the redirect through its link (or clashed with the folder)."""
    for name in ("KDGAT_DATASETS", "KDGAT_INGEST"):
        inputs = processes()[name].sections["input"]
        assert re.search(r"path\(catalog, stageAs: '(\w+)/\*'\)", inputs), f"{name} stages the catalog beside its files"


def test_no_undeclared_param_is_read():
    """Nextflow warns on every run about `params.x` or `params['x']` of a param the config does not declare; the
    check for the retired --seed asks params.containsKey('seed') instead."""
    declared = set(config_params(NEXTFLOW_CONFIG))
    for path in [MAIN, WORKFLOW, *MODULES]:
        text = strip_comments(path.read_text())
        subscripted = set(re.findall(r"\bparams\[\s*['\"](\w+)['\"]\s*\]", text))
        assert subscripted <= declared, f"{path.name} reads undeclared params {subscripted - declared}"
    assert "params.containsKey('seed')" in strip_comments(MAIN.read_text())


def test_a_lake_deleted_since_the_last_run_is_filled_again_on_resume():
    """The lake is outside the work folder: -resume kept LAKE cached after the lake was deleted. Its key now holds
    whether the lake was filled when the run started."""
    inputs = processes()["KDGAT_LAKE"].sections["input"]
    assert re.search(r"(?m)^\s*val lake_stamp\b", inputs) and "${lake_stamp}" in processes()["KDGAT_LAKE"].script
    workflow = strip_comments(WORKFLOW.read_text())
    assert "LAKE(ch_lake_runs, lake, lakeStamp(lake))" in workflow
    stamp = re.search(r"def lakeStamp\(lake\) \{([\s\S]*?)\n\}", workflow).group(1)
    assert """file("${lake}/lake.json").exists() ? 'filled' : 'empty'""" in stamp
