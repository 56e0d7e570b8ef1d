"""The single-machine runner: the Nextflow DAG as a plain loop over the plan.

`PipelineRunner` walks :func:`kdgat.pipeline.plan.plan_steps` in order for each dataset (the data
steps once, every other per-dataset step once per seed), calls the same stage functions as the CLI,
and skips a step whose key (its arguments, the keys of the steps it reads and, for ingest, the
SHA-256 of every capture) matches the one recorded when it last
finished and whose output is still there. That is this runner's `-resume`. A training step that was
interrupted resumes from its last checkpoint only when its key is the one it started with; any other
training step starts from an empty run folder.

A dataset whose graph store holds no attack window in its training part skips the steps that learn
from attack windows (:attr:`Step.supervised`): it is decided by the store, once its graphs step has
run, as in workflows/kdgat.nf.

Layout: ``OUT/<dataset>/{frames,graphs}`` per dataset, ``OUT/<dataset>/seed<k>/{runs/<run>,eval}``
per dataset and seed, ``OUT/lake`` and ``OUT/report`` for the campaign.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

from kdgat.core import tracking
from kdgat.core.accelerator import resolve_accelerator
from kdgat.core.atomic import atomic_write_text
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.hashing import content_hash, sha256_file
from kdgat.core.manifest import MANIFEST_NAME
from kdgat.core.threads import set_threads
from kdgat.evaluation.policies import BENIGN_POLICY, DEFAULT_POLICY, parse_policy
from kdgat.pipeline.plan import Step, fusion_part_problem, plan_steps, trains_on_attacks

STATE_DIR = ".pipeline"
RUN_STAGES = ("train", "fuse")  # steps whose output is a run folder that evaluate scores


@dataclass
class PipelineOptions:
    """Everything a campaign's results depend on besides the captures themselves."""

    data_root: Path | None = None
    catalog: list[Path] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # -O for every stage config (graphs, train, fuse)
    fusion_method: str = "dqn"
    lake_dir: Path | None = None  # default OUT/lake
    tracking_uri: str | None = None  # default sqlite:///OUT/mlruns.db
    explain: int = 0  # GNNExplainer graphs per GAT run: slow, so opt-in
    threshold_policy: str = DEFAULT_POLICY  # how evaluate chooses each model's threshold on validation
    benign_threshold_policy: str = BENIGN_POLICY  # the same, for a dataset whose training is attack-free
    force: bool = False
    lake: bool = True  # False stops after evaluate (no lake, no report)
    seeds: list[int] = field(default_factory=list)  # one run of every per-seed step each; [] = the config's seed
    threads: int | None = None  # CPU threads of every stage (None: $KDGAT_THREADS, else every core)
    accelerator: str | None = None  # where the GNNs train (kdgat.core.accelerator; None: $KDGAT_ACCELERATOR, else auto)


# One instance of a step: (dataset, seed); dataset is None for the campaign steps, seed None for the data steps.
Instance = tuple[str | None, int | None]


def seed_folder(seed: int) -> str:
    """``seed<k>``: the folder of one seed's runs and evaluation under a dataset (also Nextflow's)."""
    return f"seed{seed}"


class Layout:
    """Where each step writes under the campaign folder: per dataset, per dataset and seed, or once."""

    def __init__(self, out_dir: Path, options: PipelineOptions):
        self.out = Path(out_dir)
        self.lake = Path(options.lake_dir) if options.lake_dir else self.out / "lake"
        self.report = self.out / "report"

    def frames(self, dataset: str) -> Path:
        return self.out / dataset / "frames"

    def graphs(self, dataset: str) -> Path:
        return self.out / dataset / "graphs"

    def seed_dir(self, dataset: str, seed: int) -> Path:
        return self.out / dataset / seed_folder(seed)

    def run(self, dataset: str, seed: int, step: Step) -> Path:
        return self.seed_dir(dataset, seed) / "runs" / step.run_name

    def eval(self, dataset: str, seed: int) -> Path:
        return self.seed_dir(dataset, seed) / "eval"

    def detector(self, dataset: str, seed: int) -> Path:
        return self.seed_dir(dataset, seed) / "detector"

    def output(self, dataset: str | None, seed: int | None, step: Step) -> Path:
        """The folder a step instance writes."""
        if step.stage == "lake":
            return self.lake
        if step.stage == "report":
            return self.report
        if step.stage == "ingest":
            return self.frames(dataset)
        if step.stage == "graphs":
            return self.graphs(dataset)
        if step.stage == "evaluate":
            return self.eval(dataset, seed)
        if step.stage == "export":
            return self.detector(dataset, seed)
        return self.run(dataset, seed, step)  # train, fuse and any other per-seed step: a run folder

    def done_marker(self, dataset: str | None, seed: int | None, step: Step) -> Path:
        """The file that proves a step finished: its stage manifest, the lake's views, the report page."""
        if step.stage == "lake":
            from kdgat.lake import DB_NAME

            return self.lake / DB_NAME
        if step.stage == "report":
            return self.report / "index.html"
        return self.output(dataset, seed, step) / MANIFEST_NAME

    def state(self, dataset: str | None, seed: int | None, step: Step) -> Path:
        folder = self.out / STATE_DIR / (dataset or "_all")
        return (folder / seed_folder(seed) if seed is not None else folder) / f"{step.name}.json"


def _identity(step: Step) -> dict:
    """What a step is, for its key: as it reads a dataset that trains on attacks, the routing fields left
    out (the store decides the route, and its key is upstream already), so that adding the attack-free
    route kept every recorded step's key (tests/test_pipeline.py holds them)."""
    fields = {k: v for k, v in asdict(step).items() if k not in ("supervised", "benign_members")}
    return {**fields, "needs": step.reads(True)}


def _capture_stamp(sources) -> list:
    """(name, SHA-256) of every capture: what it holds, not where it lies or when it was copied.

    Keyed on path and mtime, a data folder that is re-mounted, copied or moved re-ran a whole campaign
    (hours of training) for byte-identical captures; hashing costs about a second per GB.
    """
    return [[src.output_name, sha256_file(src.path)] for src in sources]


def _reading_stamp(name: str, entry) -> dict:
    """How the catalog says to read a dataset's captures (readers, labels, attack names, benign flags), for the
    ingest key where it is not the built-in entry's: a user catalog changed from one run to the next (a capture
    marked benign, another reader) ingests again, while campaigns of built-in datasets keep their recorded keys.

    The paths are in the capture stamp already (output names); where the files lie (``root``) and the entry's
    descriptive fields do not change the frames.
    """
    from kdgat.data.catalog import load_catalog

    reading = {"format", "train", "test", "attack_types", "one_trace"}
    builtin = load_catalog().get(name)
    if builtin is not None and builtin.model_dump(include=reading) == entry.model_dump(include=reading):
        return {}
    return {"reading": content_hash(entry.model_dump(mode="json", include=reading))}


class PipelineRunner:
    """Runs the plan for some datasets; one object per campaign folder."""

    def __init__(
        self,
        datasets: list[str],
        out_dir: Path,
        options: PipelineOptions,
        console: Console | None = None,
    ):
        from kdgat.data.catalog import get_dataset, load_catalog, resolve_data_root

        if not datasets:
            raise KdgatError("no dataset given (--dataset NAME, repeatable)")
        self.datasets = list(dict.fromkeys(datasets))
        self.options = options
        self.layout = Layout(out_dir, options)
        self.console = console or Console(markup=False, emoji=False, highlight=False)
        self.catalog = load_catalog(options.catalog)
        self.entries = {name: get_dataset(self.catalog, name) for name in self.datasets}
        self.data_root = resolve_data_root(options.data_root)
        # the campaign's own store unless one is given; $MLFLOW_TRACKING_URI still wins in the stages
        self.tracking_uri = options.tracking_uri or f"sqlite:///{(self.layout.out / tracking.DB_NAME).resolve()}"
        self.steps = {s.name: s for s in plan_steps()}
        self.keys: dict[tuple[str | None, int | None, str], str] = {}
        self.record: list[dict] = []
        self._configs: dict[tuple, object] = {}
        self._captures: dict[str, list] = {}
        self._supervised: dict[str, bool] = {}  # dataset -> its training part holds attack windows
        self._progress = lambda message: None
        self.threads = set_threads(options.threads)  # every stage gets the same count (default: every core)
        self.accelerator = resolve_accelerator(options.accelerator)  # a GPU asked for and absent stops the run now
        self.seeds = self._resolve_seeds()

    # -- configuration ----------------------------------------------------------------------------
    def _config(self, model: str, scale: str, kd: bool = False, seed: int | None = None):
        """Resolved once per (model, scale, kd, seed): the step key and the stage call use the same object.

        ``seed`` (one of ``--seed``) comes after every other override; None leaves the presets' or -O's.
        """
        from kdgat.core.config import own_overrides, resolve_config

        if (model, scale, kd, seed) not in self._configs:
            aux = ["kd_standard"] if kd else ["none"]
            # each run takes its own model's overrides, as a Nextflow task (fusion.* trained every model again)
            given = own_overrides(model, self.options.overrides)
            overrides = [*given, *([f"seed={seed}"] if seed is not None else [])]
            self._configs[model, scale, kd, seed] = resolve_config(model, scale, aux, overrides)
        return self._configs[model, scale, kd, seed]

    def _resolve_seeds(self) -> list[int]:
        """``--seed`` values in the order given, or the one seed of the resolved config."""
        if self.options.seeds:
            return list(dict.fromkeys(int(s) for s in self.options.seeds))
        return [self._config("gat", "large").seed]

    def _policy(self, dataset: str) -> str:
        """Evaluate's threshold policy for a dataset: the benign-only one where training is attack-free."""
        return self.options.threshold_policy if self._supervised[dataset] else self.options.benign_threshold_policy

    def _route(self, dataset: str | None) -> bool:
        """Whether a dataset trains on attacks (known once its graphs step has run; a campaign step, or a
        data step before that, takes the attack-trained route, on which every step runs)."""
        return self._supervised.get(dataset, True)

    def runs(self, dataset: str | None, step: Step) -> bool:
        """Whether a step instance runs: a supervised step only for a dataset that trains on attacks."""
        return step.runs_for(self._route(dataset))

    def instances(self, step: Step) -> list[Instance]:
        """Every (dataset, seed) a step runs for."""
        if not step.per_dataset:
            return [(None, None)]
        if not step.per_seed:
            return [(d, None) for d in self.datasets]
        return [(d, s) for d in self.datasets for s in self.seeds]

    # -- keys ---------------------------------------------------------------------------------------
    def _key(self, dataset: str | None, seed: int | None, step: Step) -> str:
        """Arguments plus the keys of every instance of each needed step this instance reads.

        An instance reads the instances of a need that agree with it on dataset and seed wherever both
        have one: a seed's training reads its dataset's graphs, the lake reads every dataset and seed.
        """
        upstream = []
        for need in step.reads(self._route(dataset)):
            for d, s in self.instances(self.steps[need]):
                if not self.runs(d, self.steps[need]):
                    continue  # skipped for its dataset: nothing to read
                if (dataset is None or d is None or d == dataset) and (seed is None or s is None or s == seed):
                    upstream.append(self.keys[(d, s, need)])
        own = {"step": _identity(step), "upstream": upstream, **self._arguments(dataset, seed, step)}
        return content_hash(own)

    def _arguments(self, dataset: str | None, seed: int | None, step: Step) -> dict:
        """What the step's result depends on besides its upstream steps (the resolved config, not raw -O)."""
        from kdgat.core.config import model_config_hash

        if step.stage == "ingest":
            trace = {"one_trace": True} if self.entries[dataset].one_trace else {}  # other datasets keep their keys
            reading = _reading_stamp(dataset, self.entries[dataset])
            return {"captures": _capture_stamp(self._sources(dataset)), **trace, **reading}
        if step.stage == "graphs":
            return {"preprocessing": self._config("gat", "large").preprocessing.model_dump(mode="json")}
        if step.stage == "train":
            return {"config": model_config_hash(self._config(step.model, step.scale, step.kd, seed))}
        if step.stage == "fuse":
            from kdgat.stages.fuse import SELECTION

            return {
                "config": model_config_hash(self._config("dqn", step.scale, seed=seed)),
                "method": self.options.fusion_method,
                "selection": SELECTION,  # a campaign fused the earlier way fits its fusions again once
            }
        if step.stage == "evaluate":
            return {"explain": self.options.explain, "threshold": self._policy(dataset)}
        if step.stage == "export":
            return {}  # everything it packs comes from its upstream steps
        return {"datasets": self.datasets, "seeds": self.seeds, "lake": str(self.layout.lake.resolve())}

    def _previous(self, dataset: str | None, seed: int | None, step: Step) -> dict:
        """The step's recorded state: ``{"key", "finished", ...}``, or ``{}`` when there is none."""
        state = self.layout.state(dataset, seed, step)
        try:
            recorded = json.loads(state.read_text())
        except (OSError, ValueError):
            return {}
        # states written before "finished" existed were only ever written on success
        return {"finished": True, **recorded} if isinstance(recorded, dict) and "key" in recorded else {}

    def _output_hash(self, dataset: str | None, seed: int | None, step: Step) -> str | None:
        """The sha256 of a stage output's manifest (None for the lake and the report, whose markers their readers
        and later appends change)."""
        if step.stage in ("lake", "report"):
            return None
        marker = self.layout.done_marker(dataset, seed, step)
        return sha256_file(marker) if marker.is_file() else None

    def _output_as_left(self, dataset: str | None, seed: int | None, step: Step, previous: dict) -> bool:
        """The step's output is there and is the one it wrote: a run trained again by hand into a campaign's folder
        (another manifest) was taken as cached, and the campaign's lake and report described weights it never made.
        States of an earlier version hold no hash: their output is taken as it is."""
        if not self.layout.done_marker(dataset, seed, step).exists():
            return False
        recorded = previous.get("output_sha256")
        return recorded is None or recorded == self._output_hash(dataset, seed, step)

    def _record(self, dataset: str | None, seed: int | None, step: Step, **state) -> None:
        path = self.layout.state(dataset, seed, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(state) + "\n")

    # -- stages -------------------------------------------------------------------------------------
    def _sources(self, dataset: str):
        """The dataset's captures, resolved (globbed) once for the ingest key and the ingest itself."""
        from kdgat.data.catalog import dataset_sources

        if dataset not in self._captures:
            if dataset == "synthetic":
                self._ensure_synthetic()
            self._captures[dataset] = dataset_sources(dataset, self.entries[dataset], self.data_root)
        return self._captures[dataset]

    def _ensure_synthetic(self) -> None:
        """The synthetic dataset is generated (seed 0) the first time it is asked for, where its folder is empty."""
        from kdgat.data.catalog import dataset_root
        from kdgat.stages import synth

        root = dataset_root(self.entries["synthetic"], self.data_root)
        if not root.is_dir() or not any(root.iterdir()):  # an empty folder (made by hand, or by a mount) too
            self.console.print(f"synthetic captures not found: generating them in {root}")
            synth.run(root, seed=0, size="small", threads=self.threads)

    def _execute(self, dataset: str | None, seed: int | None, step: Step, resume: bool = False) -> str:
        """Run one step instance; returns a short summary for the progress line.

        ``resume``: the step was interrupted with the same key, so training may continue from its
        last checkpoint.
        """
        lay, opts, threads = self.layout, self.options, self.threads
        if step.stage == "ingest":
            from kdgat.stages import ingest

            manifest = ingest.run(
                self._sources(dataset),
                lay.frames(dataset),
                dataset=dataset,
                one_trace=self.entries[dataset].one_trace,
                threads=threads,
            )
            for doubt in ingest.doubts(manifest, lay.frames(dataset) / MANIFEST_NAME):
                self.console.print(Text.assemble(("warning: ", "bold yellow"), doubt), soft_wrap=True)
            return f"{manifest.summary['totals']['rows']:,} frames"
        if step.stage == "graphs":
            from kdgat.stages import graphs

            cfg = self._config("gat", "large")
            manifest = graphs.run(lay.frames(dataset), lay.graphs(dataset), cfg.preprocessing, threads=threads)
            return f"{sum(p['graphs'] for p in manifest.summary['parts'].values()):,} graphs"
        if step.stage == "train":
            from kdgat.stages import train
            from kdgat.training.progress import EpochProgress

            cfg = self._config(step.model, step.scale, step.kd, seed)
            out = lay.run(dataset, seed, step)
            if not resume:  # a checkpoint left there belongs to other inputs: never continue from it
                shutil.rmtree(out, ignore_errors=True)
            metrics = train.run(
                cfg, lay.graphs(dataset), out,
                teacher_dir=lay.run(dataset, seed, self.steps[step.teacher]) if step.teacher else None,
                progress_bar=False, tracking_uri=self.tracking_uri, dataset=dataset, resume=resume,
                callbacks=[EpochProgress(self._progress)], threads=threads, accelerator=self.accelerator,
                restart_on_other_inputs=True,
            ).summary  # fmt: skip
            from kdgat.training.runs import training_extent

            return f"{metrics['parameters']:,} parameters, {training_extent(metrics)}"
        if step.stage == "fuse":
            from kdgat.stages import fuse

            cfg = self._config("dqn", step.scale, seed=seed)
            vgae, gat = (lay.run(dataset, seed, self.steps[m]) for m in step.members)
            metrics = fuse.run(
                cfg, opts.fusion_method, vgae, gat, lay.graphs(dataset), lay.run(dataset, seed, step),
                tracking_uri=self.tracking_uri, dataset=dataset, threads=threads,
            ).summary  # fmt: skip
            rule_off = fuse.novel_alert_off(metrics)
            return (
                f"{opts.fusion_method} over {metrics['fusion_windows']:,} held-out windows"
                + ("" if metrics["out_of_sample_selection"] else " (one class in a half: chosen in-sample)")
                + (f"; {rule_off}" if rule_off else "")
            )
        if step.stage == "evaluate":
            from kdgat.stages import evaluate

            runs = [
                lay.run(dataset, seed, need)
                for need in (self.steps[n] for n in step.needs)
                if need.stage in RUN_STAGES and self.runs(dataset, need)
            ]
            manifest = evaluate.run(
                runs, lay.graphs(dataset), lay.eval(dataset, seed), explain=opts.explain, progress=self._progress,
                policy=self._policy(dataset), tracking_uri=self.tracking_uri, dataset=dataset, threads=threads,
            )  # fmt: skip
            return f"{len(manifest.summary['models'])} models"
        if step.stage == "export":
            from kdgat.stages import export

            members = step.members_for(self._supervised[dataset])
            manifest = export.run(
                [lay.run(dataset, seed, self.steps[m]) for m in members], lay.detector(dataset, seed),
                evaluation=lay.eval(dataset, seed), graphs_dir=lay.graphs(dataset), threads=threads,
            )  # fmt: skip
            summary = manifest.summary
            return f"{', '.join(summary['detectors'])}: {summary['bytes'] / 1e6:.1f} MB bundle"
        if step.stage == "lake":
            from kdgat.stages import lake

            dirs = [
                lay.output(d, s, self.steps[need])
                for need in step.needs
                for d, s in self.instances(self.steps[need])
                if self.runs(d, self.steps[need])
            ]
            dirs.sort(key=lambda path: str(path))  # dataset, seed, run: the same order on every re-run
            manifest = lake.run(dirs, lay.lake, threads=threads)
            return f"{len(manifest.summary['run_ids'])} runs in {lay.lake}"
        if step.stage == "report":
            from kdgat.stages import report

            return report.run(lay.lake, lay.report, threads=threads).summary["index"]
        raise KdgatError(f"unknown stage {step.stage!r}")  # pragma: no cover

    def preflight(self) -> None:
        """Everything a campaign can get wrong before its first step, checked before that step runs.

        Every override resolves in every stage config, every dataset's captures are found (the
        synthetic one is generated), and the campaign and lake folders are writable: a mistake in
        the last dataset no longer costs the first dataset's hours.
        """
        from kdgat.core.atomic import ensure_folder
        from kdgat.core.manifest import refuse_other_output
        from kdgat.lake.store import refuse_non_lake

        for step in self.steps.values():
            for seed in self.seeds:
                if step.stage == "train":
                    self._config(step.model, step.scale, step.kd, seed)
                elif step.stage == "fuse":
                    self._config("dqn", step.scale, seed=seed)
        self._config("gat", "large")  # the graphs step's preprocessing
        methods = {}
        for option, policy in (("--threshold", self.options.threshold_policy),
                               ("--benign-threshold", self.options.benign_threshold_policy)):  # fmt: skip
            try:
                methods[option], _ = parse_policy(policy)
            except ValueError as exc:
                raise UsageError(f"{option}: {exc}") from None
        if methods["--benign-threshold"] != "fpr":
            policy = self.options.benign_threshold_policy
            raise UsageError(
                f"--benign-threshold: {policy!r} needs attack windows in validation; an attack-free dataset's "
                "are all benign, so give fpr:<rate> (a false-alarm budget on them)"
            )
        for dataset in self.datasets:
            self._sources(dataset)  # every dataset's captures are found
        # a campaign folder is no stage's output: it would write its datasets' folders into a run or a store
        refuse_other_output(self.layout.out, "pipeline")
        if self.options.lake:
            refuse_non_lake(self.layout.lake)
        # last: a campaign refused for its inputs leaves no folder behind
        ensure_folder(self.layout.out)
        if self.options.lake:
            ensure_folder(self.layout.lake)

    def _reporter(self, label: str, status):
        """Where a running step's progress goes: the spinner line in a terminal, a log line otherwise."""
        if self.console.is_terminal:
            return lambda message: status.update(f"{label}: {message}")
        return lambda message: self.console.print(Text(f"{label}: {message}", style="dim"))

    def todo(self) -> list[tuple[str | None, int | None, Step]]:
        """Every step instance in run order: one dataset after the other (its data steps, then each seed's
        steps), then the campaign steps."""
        steps = list(self.steps.values())
        todo: list[tuple[str | None, int | None, Step]] = []
        for dataset in self.datasets:
            todo += [(dataset, None, s) for s in steps if s.per_dataset and not s.per_seed]
            todo += [(dataset, seed, s) for seed in self.seeds for s in steps if s.per_seed]
        todo += [(None, None, s) for s in steps if not s.per_dataset and self.options.lake]
        return todo

    def _learn(self, dataset: str | None, step: Step) -> None:
        """After a dataset's graphs step: whether its training part holds attack windows, and a stop now where
        its fusions could not be fitted (not hours later, once every member has trained)."""
        if step.stage == "graphs":
            from kdgat.core.manifest import read_manifest

            summary = read_manifest(self.layout.graphs(dataset)).summary
            problem = fusion_part_problem(summary)
            if problem is not None:
                raise KdgatError(f"{dataset}: graph store {self.layout.graphs(dataset)}: {problem}")
            self._supervised[dataset] = trains_on_attacks(summary)

    def run(self) -> list[dict]:
        """Every step instance in plan order; returns what ran and what was cached. The campaign folder is held
        for this process: a second pipeline on it is refused at once (it took the first one's running step for an
        interrupted one and trained over it)."""
        from kdgat.core.locks import writing

        self.preflight()
        with writing(self.layout.out, "pipeline"):
            return self._run_steps()

    def _run_steps(self) -> list[dict]:
        todo = self.todo()
        for i, (dataset, seed, step) in enumerate(todo, 1):
            where = ", ".join(x for x in (dataset, None if seed is None else seed_folder(seed)) if x)
            label = f"[{i}/{len(todo)}] {step.name}" + (f" ({where})" if where else "")
            entry = {"dataset": dataset, "seed": seed, "step": step.name}
            if not self.runs(dataset, step):
                self.console.print(Text.assemble(f"{label}: ", ("skipped (no attack window in training)", "dim")))
                self.record.append({**entry, "status": "skipped", "seconds": 0.0})
                continue
            key = self._key(dataset, seed, step)
            self.keys[(dataset, seed, step.name)] = key
            previous = {} if self.options.force else self._previous(dataset, seed, step)
            same_key = previous.get("key") == key
            if same_key and previous["finished"] and self._output_as_left(dataset, seed, step, previous):
                if "output_sha256" not in previous:  # a step an earlier version recorded: its output from now on
                    self._record(dataset, seed, step, **previous, output_sha256=self._output_hash(dataset, seed, step))
                self.console.print(Text.assemble(f"{label}: ", ("cached", "dim")))
                self.record.append({**entry, "status": "cached", "seconds": 0.0})
                self._learn(dataset, step)
                continue
            self._record(dataset, seed, step, key=key, finished=False)
            started = time.perf_counter()
            with self.console.status(f"{label} ...") as status:
                self._progress = self._reporter(label, status)
                summary = self._execute(dataset, seed, step, resume=same_key and not previous["finished"])
            seconds = time.perf_counter() - started
            output = self._output_hash(dataset, seed, step)
            self._record(dataset, seed, step, key=key, finished=True, seconds=round(seconds, 3), output_sha256=output)
            self._learn(dataset, step)
            self.console.print(Text.assemble(f"{label}: {summary} ", (f"({seconds:.1f} s)", "dim")))
            self.record.append({**entry, "status": "ran", "seconds": round(seconds, 3)})
        return self.record
