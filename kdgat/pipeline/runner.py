"""The single-machine runner: the Nextflow DAG as a plain loop over the plan.

`PipelineRunner` walks :func:`kdgat.pipeline.plan.plan_steps` in order for each dataset, calls the
same stage functions as the CLI, and skips a step whose key (its arguments, the keys of the steps it
reads and, for ingest, the size and mtime of every capture — Nextflow's own cache rule) matches the
one recorded when it last finished and whose output is still there. That is this runner's
`-resume`. A training step that was interrupted resumes from its last checkpoint only when its key
is the one it started with; any other training step starts from an empty run folder.
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
from kdgat.core.atomic import atomic_write_text
from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.hashing import content_hash
from kdgat.core.manifest import MANIFEST_NAME
from kdgat.evaluation.metrics import DEFAULT_POLICY, parse_policy
from kdgat.pipeline.plan import Step, plan_steps

STATE_DIR = ".pipeline"


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
    force: bool = False
    lake: bool = True  # False stops after evaluate (no lake, no report)


class Layout:
    """Where each step of each dataset writes under the campaign folder."""

    def __init__(self, out_dir: Path, options: PipelineOptions):
        self.out = Path(out_dir)
        self.lake = Path(options.lake_dir) if options.lake_dir else self.out / "lake"
        self.report = self.out / "report"

    def frames(self, dataset: str) -> Path:
        return self.out / dataset / "frames"

    def graphs(self, dataset: str) -> Path:
        return self.out / dataset / "graphs"

    def run(self, dataset: str, step: Step) -> Path:
        return self.out / dataset / "runs" / step.run_name

    def eval(self, dataset: str) -> Path:
        return self.out / dataset / "eval"

    def done_marker(self, dataset: str | None, step: Step) -> Path:
        """The file that proves a step finished: its stage manifest, the lake's views, the report page."""
        if step.stage == "lake":
            from kdgat.lake import DB_NAME

            return self.lake / DB_NAME
        if step.stage == "report":
            return self.report / "index.html"
        folder = {"ingest": self.frames, "graphs": self.graphs, "evaluate": self.eval}.get(step.stage)
        return (folder(dataset) if folder else self.run(dataset, step)) / MANIFEST_NAME

    def state(self, dataset: str | None, step: Step) -> Path:
        return self.out / STATE_DIR / (dataset or "_all") / f"{step.name}.json"


def _capture_stamp(sources) -> list:
    """(path, size, mtime) of every capture: what Nextflow's default cache looks at."""
    stamp = []
    for src in sources:
        st = Path(src.path).stat()
        stamp.append([str(src.path), st.st_size, st.st_mtime_ns, src.output_name])
    return stamp


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
        self.keys: dict[tuple[str | None, str], str] = {}
        self.record: list[dict] = []
        self._configs: dict[tuple, object] = {}
        self._captures: dict[str, list] = {}
        self._progress = lambda message: None

    # -- configuration ----------------------------------------------------------------------------
    def _config(self, model: str, scale: str, kd: bool = False):
        """Resolved once per (model, scale, kd): the step key and the stage call use the same object."""
        from kdgat.core.config import resolve_config

        if (model, scale, kd) not in self._configs:
            aux = ["kd_standard"] if kd else ["none"]
            self._configs[model, scale, kd] = resolve_config(model, scale, aux, self.options.overrides)
        return self._configs[model, scale, kd]

    # -- keys ---------------------------------------------------------------------------------------
    def _key(self, dataset: str | None, step: Step) -> str:
        upstream = []
        for need in step.needs:
            if not self.steps[need].per_dataset:
                upstream.append(self.keys[(None, need)])
            elif step.per_dataset:
                upstream.append(self.keys[(dataset, need)])
            else:  # a collector reads that step of every dataset
                upstream += [self.keys[(d, need)] for d in self.datasets]
        own = {"step": asdict(step), "upstream": upstream, **self._arguments(dataset, step)}
        return content_hash(own)

    def _arguments(self, dataset: str | None, step: Step) -> dict:
        """What the step's result depends on besides its upstream steps (the resolved config, not raw -O)."""
        from kdgat.core.config import config_hash

        if step.stage == "ingest":
            return {"captures": _capture_stamp(self._sources(dataset)), "data_root": str(self.data_root.resolve())}
        if step.stage == "graphs":
            return {"preprocessing": self._config("gat", "large").preprocessing.model_dump(mode="json")}
        if step.stage == "train":
            return {"config": config_hash(self._config(step.model, step.scale, step.kd))}
        if step.stage == "fuse":
            return {"config": config_hash(self._config("dqn", step.scale)), "method": self.options.fusion_method}
        if step.stage == "evaluate":
            return {"explain": self.options.explain, "threshold": self.options.threshold_policy}
        return {"datasets": self.datasets, "lake": str(self.layout.lake.resolve())}

    def _previous(self, dataset: str | None, step: Step) -> dict:
        """The step's recorded state: ``{"key", "finished", ...}``, or ``{}`` when there is none."""
        state = self.layout.state(dataset, step)
        try:
            recorded = json.loads(state.read_text())
        except (OSError, ValueError):
            return {}
        # states written before "finished" existed were only ever written on success
        return {"finished": True, **recorded} if isinstance(recorded, dict) and "key" in recorded else {}

    def _record(self, dataset: str | None, step: Step, **state) -> None:
        path = self.layout.state(dataset, step)
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
        """The synthetic dataset is generated (seed 0) the first time it is asked for."""
        from kdgat.data.catalog import dataset_root
        from kdgat.stages import synth

        root = dataset_root(self.entries["synthetic"], self.data_root)
        if not root.exists():
            self.console.print(f"synthetic captures not found: generating them in {root}")
            synth.run(root, seed=0, size="small")

    def _execute(self, dataset: str | None, step: Step, resume: bool = False) -> str:
        """Run one step; returns a short summary for the progress line.

        ``resume``: the step was interrupted with the same key, so training may continue from its
        last checkpoint.
        """
        lay, opts = self.layout, self.options
        if step.stage == "ingest":
            from kdgat.stages import ingest

            manifest = ingest.run(self._sources(dataset), lay.frames(dataset), dataset=dataset)
            return f"{manifest.summary['totals']['rows']:,} frames"
        if step.stage == "graphs":
            from kdgat.core.config import config_hash
            from kdgat.stages import graphs

            cfg = self._config("gat", "large")
            manifest = graphs.run(
                lay.frames(dataset), lay.graphs(dataset), cfg.preprocessing, config_hash=config_hash(cfg)
            )
            return f"{sum(p['graphs'] for p in manifest.summary['parts'].values()):,} graphs"
        if step.stage == "train":
            from kdgat.stages import train
            from kdgat.training.progress import EpochProgress

            cfg = self._config(step.model, step.scale, step.kd)
            if not resume:  # a checkpoint left there belongs to other inputs: never continue from it
                shutil.rmtree(lay.run(dataset, step), ignore_errors=True)
            metrics = train.run(
                cfg, lay.graphs(dataset), lay.run(dataset, step),
                teacher_dir=lay.run(dataset, self.steps[step.teacher]) if step.teacher else None,
                progress_bar=False, tracking_uri=self.tracking_uri, dataset=dataset, resume=resume,
                callbacks=[EpochProgress(self._progress)],
            ).summary  # fmt: skip
            return f"{metrics['parameters']:,} parameters, {metrics['epochs']} epochs"
        if step.stage == "fuse":
            from kdgat.stages import fuse

            cfg = self._config("dqn", step.scale)
            vgae, gat = (lay.run(dataset, self.steps[m]) for m in step.members)
            metrics = fuse.run(
                cfg, opts.fusion_method, vgae, gat, lay.graphs(dataset), lay.run(dataset, step),
                tracking_uri=self.tracking_uri, dataset=dataset,
            ).summary  # fmt: skip
            return f"{opts.fusion_method} over {metrics['fusion_windows']:,} held-out windows"
        if step.stage == "evaluate":
            from kdgat.stages import evaluate

            runs = [lay.run(dataset, self.steps[need]) for need in step.needs if need != "graphs"]
            manifest = evaluate.run(
                runs, lay.graphs(dataset), lay.eval(dataset), explain=opts.explain, progress=self._progress,
                policy=opts.threshold_policy,
                tracking_uri=self.tracking_uri, dataset=dataset,
            )  # fmt: skip
            return f"{len(manifest.summary['models'])} models"
        if step.stage == "lake":
            from kdgat.stages import lake

            dirs = [
                lay.eval(d) if need == "evaluate" else lay.run(d, self.steps[need])
                for d in self.datasets
                for need in step.needs
            ]
            manifest = lake.run(dirs, lay.lake)
            return f"{len(manifest.summary['run_ids'])} runs in {lay.lake}"
        if step.stage == "report":
            from kdgat.stages import report

            return report.run(lay.lake, lay.report).summary["index"]
        raise KdgatError(f"unknown stage {step.stage!r}")  # pragma: no cover

    def preflight(self) -> None:
        """Everything a campaign can get wrong before its first step, checked before that step runs.

        Every override resolves in every stage config, every dataset's captures are found (the
        synthetic one is generated), and the campaign and lake folders are writable: a mistake in
        the last dataset no longer costs the first dataset's hours.
        """
        from kdgat.core.atomic import ensure_folder

        ensure_folder(self.layout.out)
        if self.options.lake:
            ensure_folder(self.layout.lake)
        for step in self.steps.values():
            if step.stage == "train":
                self._config(step.model, step.scale, step.kd)
            elif step.stage == "fuse":
                self._config("dqn", step.scale)
        self._config("gat", "large")  # the graphs step's preprocessing
        try:
            parse_policy(self.options.threshold_policy)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for dataset in self.datasets:
            self._sources(dataset)

    def _reporter(self, label: str, status):
        """Where a running step's progress goes: the spinner line in a terminal, a log line otherwise."""
        if self.console.is_terminal:
            return lambda message: status.update(f"{label}: {message}")
        return lambda message: self.console.print(Text(f"{label}: {message}", style="dim"))

    def run(self) -> list[dict]:
        """Every step of every dataset in plan order; returns what ran and what was cached."""
        self.preflight()
        steps = list(self.steps.values())
        todo = [(d, s) for d in self.datasets for s in steps if s.per_dataset]  # one dataset after the other
        todo += [(None, s) for s in steps if not s.per_dataset and self.options.lake]
        for i, (dataset, step) in enumerate(todo, 1):
            label = f"[{i}/{len(todo)}] {step.name}" + (f" ({dataset})" if dataset else "")
            key = self._key(dataset, step)
            self.keys[(dataset, step.name)] = key
            previous = {} if self.options.force else self._previous(dataset, step)
            same_key = previous.get("key") == key
            if same_key and previous["finished"] and self.layout.done_marker(dataset, step).exists():
                self.console.print(Text.assemble(f"{label}: ", ("cached", "dim")))
                self.record.append({"dataset": dataset, "step": step.name, "status": "cached", "seconds": 0.0})
                continue
            self._record(dataset, step, key=key, finished=False)
            started = time.perf_counter()
            with self.console.status(f"{label} ...") as status:
                self._progress = self._reporter(label, status)
                summary = self._execute(dataset, step, resume=same_key and not previous["finished"])
            seconds = time.perf_counter() - started
            self._record(dataset, step, key=key, finished=True, seconds=round(seconds, 3))
            self.console.print(Text.assemble(f"{label}: {summary} ", (f"({seconds:.1f} s)", "dim")))
            self.record.append({"dataset": dataset, "step": step.name, "status": "ran", "seconds": round(seconds, 3)})
        return self.record
