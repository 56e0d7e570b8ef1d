"""The pipeline's plan: every stage of a campaign and what it needs, in dependency order.

`plan_steps()` is the one description of the stages and their dependencies: the single-machine
runner walks it, and `main.nf` mirrors it (a static test compares the two).

Each step runs once per dataset (the data steps: ingest, graphs), once per dataset and seed (every
other per-dataset step: training, fusion, evaluation and whatever is added after graphs), or once
for the whole campaign (lake, report). The seed fan-out is that rule, not a list: a new per-dataset
step is per seed unless it is a data step.

The steps that learn from attack windows (the GATs, the hgb yardstick, the fusions: ``supervised``)
run only for a dataset whose graph store holds attack windows in its training part
(:func:`trains_on_attacks`). On an attack-free training capture, the usual case for a user's own
vehicle, the campaign is the VGAEs and the benign-only novelty yardstick, evaluated with a threshold
set on benign validation windows, and the exported detector is the distilled student VGAE.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdgat.core.config import SUPERVISED_MODELS
from kdgat.data.split import EMPTY_FUSION_PART, FUSION_PART, NO_FUSION_PART, ONE_CLASS_FUSION_PART

# Steps that prepare a dataset's data: run once per dataset, shared by every seed.
DATA_STAGES = ("ingest", "graphs")
# Models whose training uses a GPU when the task has one (Nextflow label process_gpu).
GPU_MODELS = ("vgae", "gat")

TRAIN_VARIANTS = (
    # (model, scale, knowledge distillation)
    ("vgae", "large", False),
    ("gat", "large", False),
    ("vgae", "small", True),
    ("gat", "small", True),
    ("vgae", "small", False),
    ("gat", "small", False),
)


@dataclass(frozen=True)
class Step:
    """One stage invocation; `process` is its Nextflow process (or alias) name."""

    name: str
    stage: str
    needs: tuple[str, ...] = ()
    model: str | None = None
    scale: str | None = None
    kd: bool = False
    teacher: str | None = None
    members: tuple[str, ...] = ()
    per_dataset: bool = True
    supervised: bool = False  # learns from attack windows: skipped where the training part holds none
    benign_members: tuple[str, ...] = ()  # export: what it packs where the training part holds no attack

    def members_for(self, supervised: bool) -> tuple[str, ...]:
        """The runs this step reads for a dataset that trains on attacks (``supervised``) or does not."""
        return self.members if supervised else self.benign_members

    def reads(self, supervised: bool) -> tuple[str, ...]:
        """The needs this step reads for such a dataset: the other route's members left out."""
        other = set(self.members_for(not supervised)) - set(self.members_for(supervised))
        return tuple(need for need in self.needs if need not in other)

    def runs_for(self, supervised: bool) -> bool:
        """Whether this step runs for such a dataset."""
        return supervised or not self.supervised

    @property
    def per_seed(self) -> bool:
        """Runs once per dataset and seed (everything per dataset after the data steps)."""
        return self.per_dataset and self.stage not in DATA_STAGES

    @property
    def gpu(self) -> bool:
        """Asks for a GPU on a cluster: the training of a graph neural network."""
        return self.stage == "train" and self.model in GPU_MODELS

    @property
    def process(self) -> str:
        return self.name.upper()

    @property
    def run_name(self) -> str:
        """Folder of a train or fuse run under `<dataset>/runs/` (the step name without `train_`)."""
        return self.name.removeprefix("train_")


def trains_on_attacks(graphs_summary: dict) -> bool:
    """Whether a graph store (its manifest's summary) holds attack windows in its training part.

    workflows/kdgat.nf (``trainsOnAttacks``) reads the same field to route a dataset.
    """
    return int(graphs_summary["parts"]["train"]["attack_graphs"]) > 0


def fusion_part_problem(graphs_summary: dict) -> str | None:
    """Why the fusions of a dataset that trains on attacks cannot be fitted on its graph store, or None.

    `kdgat fuse` would say so after every member had trained; the pipeline says it once the graphs are
    built. workflows/kdgat.nf (``fusionPartProblem``) reads the same fields.
    """
    if not trains_on_attacks(graphs_summary):
        return None
    part = graphs_summary["parts"].get(FUSION_PART)
    if part is None:
        return NO_FUSION_PART
    if part.get("graphs") == 0:  # blocks too short for a window: fewer, longer blocks or shorter windows help
        return EMPTY_FUSION_PART
    # benign_graphs since it was written; before, attack_share (rounded to 4 digits: 1.0 can hide a few; none
    # recorded: unknown, and `kdgat fuse` says so on the windows)
    share = part.get("attack_share")
    benign = part["benign_graphs"] > 0 if "benign_graphs" in part else share is None or share < 1.0
    return ONE_CLASS_FUSION_PART if int(part["attack_graphs"]) == 0 or not benign else None


def train_step_name(model: str, scale: str, kd: bool) -> str:
    return f"train_{model}_{scale}" + ("_kd" if kd else "")


def plan_steps() -> list[Step]:
    """Every stage of one campaign in dependency order (lake and report collect all datasets)."""
    steps = [Step("ingest", "ingest"), Step("graphs", "graphs", needs=("ingest",))]
    for model, scale, kd in TRAIN_VARIANTS:
        teacher = train_step_name(model, "large", False) if kd else None
        steps.append(
            Step(
                train_step_name(model, scale, kd),
                "train",
                needs=("graphs",) + ((teacher,) if teacher else ()),
                model=model,
                scale=scale,
                kd=kd,
                teacher=teacher,
                supervised=model in SUPERVISED_MODELS,
            )
        )
    # the classical yardsticks every GNN row is read against (CPU): gradient-boosted trees on the labelled
    # windows, and benign-window statistics beside the VGAE
    for model in ("hgb", "novelty"):
        name = train_step_name(model, "large", False)
        steps.append(
            Step(name, "train", needs=("graphs",), model=model, scale="large", supervised=model in SUPERVISED_MODELS)
        )
    for scale, kd in (("large", False), ("small", True)):
        members = (train_step_name("vgae", scale, kd), train_step_name("gat", scale, kd))
        name = f"fuse_{scale}" + ("_kd" if kd else "")
        steps.append(
            Step(name, "fuse", needs=("graphs", *members), scale=scale, kd=kd, members=members, supervised=True)
        )
    runs = tuple(s.name for s in steps if s.stage in ("train", "fuse"))
    steps.append(Step("evaluate", "evaluate", needs=("graphs", *runs)))
    # the in-vehicle detector: the distilled student ensemble (default) and its GAT, with the
    # thresholds evaluate chose on validation, packed for `kdgat detect`; the distilled student VGAE
    # where training is attack-free
    exported = ("fuse_small_kd", train_step_name("gat", "small", True))
    benign_exported = (train_step_name("vgae", "small", True),)
    needs = ("graphs", *exported, *benign_exported, "evaluate")
    steps.append(Step("export", "export", needs=needs, members=exported, benign_members=benign_exported))
    steps.append(Step("lake", "lake", needs=(*runs, "evaluate"), per_dataset=False))
    steps.append(Step("report", "report", needs=("lake",), per_dataset=False))
    return steps
