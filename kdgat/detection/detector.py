"""A loaded detector bundle: window scores, verdicts and the CAN IDs behind an alert.

Models are rebuilt only through :func:`kdgat.training.runs.load_run_model` and
:func:`kdgat.fusion.ensemble.load_fusion_run`, and windows are scored only through
:mod:`kdgat.evaluation.scoring` (and the fusion's own ``Ensemble.data``), exactly as ``kdgat
evaluate`` scores them: same batches of the same windows give the same numbers, bit for bit. A
detector that is also a fusion's member is scored once, by the fusion's pass.

Attribution (which CAN IDs made a window an alert) is node level: the attention a node's
frames receive from their neighbours in the GAT's last layer, the VGAE's reconstruction error of
the node's features, and for a fusion the mean of its two members' shares. It is computed for
alert windows only, so it costs nothing while the bus is quiet.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch_geometric.utils import scatter

from kdgat.core.errors import KdgatError
from kdgat.core.run_files import CONFIG_FILE, MEMBERS_FILE, METRICS_FILE
from kdgat.data.batching import assemble_batch
from kdgat.data.features import get_feature_set
from kdgat.data.payload_runs import limits_from_json
from kdgat.data.vocab import EXTENDED_BIT, Vocabulary
from kdgat.data.windows import GraphArrays
from kdgat.detection import bundle as b
from kdgat.evaluation.scoring import score_model
from kdgat.fusion.ensemble import ensemble_scores, load_fusion_run, member_dirs
from kdgat.models.compiled import compile_for_inference
from kdgat.models.gat import on_batch
from kdgat.training.runs import load_run_model

UNKNOWN_ID = "unknown"
TOP_SUSPECTS = 3
NAMED_UNKNOWN = 5  # unknown IDs named for a window's out-of-vocabulary node, most frames first


@functools.lru_cache(maxsize=1 << 16)
def key_name(key: int) -> str:
    """A CAN ID key printed: 0x1A0 (11-bit), 0x18FEDF00 (29-bit)."""
    can_id = key & 0xFFFFFFFF
    return f"0x{can_id:08X}" if key & int(EXTENDED_BIT) else f"0x{can_id:03X}"


def id_names(vocab: Vocabulary) -> np.ndarray:
    """Printable CAN ID per vocabulary index: 0x1A0 (11-bit), 0x18FEDF00 (29-bit), 'unknown' for OOV."""
    return np.array([*(key_name(key) for key in vocab.keys.tolist()), UNKNOWN_ID], dtype=object)


def name_unknown(names: list[str], unknown_keys: np.ndarray, most: int | None = None) -> list[str]:
    """``names`` with the out-of-vocabulary node's ``unknown`` replaced by the IDs it stands for in that window
    (``unknown:0x7A1``; the ``most`` or :data:`NAMED_UNKNOWN` with most frames); as it is where the window's own
    frames have none (a target only). Another vehicle's windows hold dozens of unknown IDs each: naming them all
    cost a third more time in `kdgat detect` and said no more."""
    if UNKNOWN_ID not in names or len(unknown_keys) == 0:
        return names
    said = [f"{UNKNOWN_ID}:{key_name(key)}" for key in unknown_keys[: most or NAMED_UNKNOWN].tolist()]
    return [part for name in names for part in (said if name == UNKNOWN_ID else [name])]


def _labelled_view(graphs: GraphArrays) -> GraphArrays:
    """The same windows with unknown labels read as benign: ``Ensemble.data`` scores labelled windows only."""
    return dataclasses.replace(graphs, y=np.where(graphs.y < 0, 0, graphs.y).astype(np.int8))


class Detector:
    """Scorers rebuilt from a bundle; ``score`` gives every detector's per-window scores."""

    def __init__(self, bundle: Path, spec: b.DetectorSpec, *, compile_models: bool = False, batch_size: int = 1024):
        self.bundle, self.spec, self.batch_size = bundle, spec, batch_size
        self.vocab = Vocabulary.from_json(b.read_json(bundle, b.VOCAB_FILE))
        self.store = b.read_json(bundle, b.STORE_FILE)
        self.reference = b.read_json(bundle, b.REFERENCE_FILE)
        self.feature_set = get_feature_set(spec.feature_set.split("@")[0])
        if self.feature_set.tag != spec.feature_set:
            raise KdgatError(f"{bundle}: feature set {spec.feature_set}, this kdgat builds {self.feature_set.tag}")
        timing = self.store.get("timing")
        self.periods = None
        if self.feature_set.needs_timestamps:
            self.periods = np.array([np.nan if p is None else p for p in timing["median_period"]], np.float64)
        self.run_limits = None  # e4ts: the held-byte limits fitted on the training runs
        if self.feature_set.payload_runs:
            self.run_limits = limits_from_json(self.store["payload_runs"]["limit"])
        self.names = id_names(self.vocab)
        if self.vocab.size != spec.vocab_size:
            raise KdgatError(
                f"{bundle}: vocab.json has {self.vocab.size} entries, {b.SPEC_FILE} says {spec.vocab_size}"
            )
        self.models: dict[str, torch.nn.Module] = {}
        self.fusions: dict[str, tuple] = {}
        self.thresholds = {d.label: d.threshold.value for d in spec.detectors}
        for det in spec.detectors:
            model = spec.model(det.label)
            path = bundle / model.path
            if model.kind == "fusion":
                # a bundle's model folders hold no manifest: the bundle's sha256 list vouches for them
                ensemble, fusion, members = load_fusion_run(path, None, finished=False)
                if compile_models:
                    ensemble.gat, ensemble.vgae = (
                        compile_for_inference(ensemble.gat),
                        compile_for_inference(ensemble.vgae),
                    )
                self.fusions[det.label] = (ensemble, fusion, members)
            else:
                net, _cfg = load_run_model(path, finished=False)
                self.models[det.label] = (compile_for_inference(net) if compile_models else net, model.kind)
        self.shared = self._share_members()

    def _share_members(self) -> dict[tuple[str, str], str]:
        """A detector that is also a fusion's member (the default bundle: the student fusion and its GAT)
        becomes that fusion's member object, and its scores come from the fusion's pass over a batch:
        ``{(fusion label, "vgae" | "gat"): detector label}``."""
        shared = {}
        by_folder = {(self.bundle / self.spec.model(label).path).resolve(): label for label in self.models}
        for fusion_label, (ensemble, _fusion, members) in self.fusions.items():
            fusion_dir = self.bundle / self.spec.model(fusion_label).path
            for role, folder in zip(("vgae", "gat"), member_dirs(fusion_dir, members), strict=True):
                label = by_folder.get(folder)
                if label is not None and self.models[label][1] == role:
                    setattr(ensemble, role, self.models[label][0])
                    shared[(fusion_label, role)] = label
        return shared

    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.spec.detectors]

    def parameters(self, label: str) -> int:
        return self.spec.model(label).parameters

    # -- scores ---------------------------------------------------------------------------------

    def score(self, graphs: GraphArrays, labels: list[str] | None = None) -> dict[str, np.ndarray]:
        """Per-window scores (higher = more likely attack) of each detector, in window order.

        A fusion's members are scored once per call: a detector that is one of them takes the scores of
        the fusion's pass (the same model object, batches and windows, so the same numbers).
        """
        wanted = list(labels or self.labels)
        scores: dict[str, np.ndarray] = {}
        view = _labelled_view(graphs) if any(w in self.fusions for w in wanted) else None
        for label in (w for w in wanted if w in self.fusions):
            ensemble, fusion, members = self.fusions[label]
            scored = ensemble.member_scores(view, self.batch_size)
            data, _ = ensemble.data(view, self.batch_size, vgae=scored[0], gat=scored[1])
            scores[label] = ensemble_scores(fusion, data, members, self.batch_size)
            for role, member in zip(("vgae", "gat"), scored, strict=True):
                shared = self.shared.get((label, role))
                if shared in wanted:
                    scores.setdefault(shared, member["score"])
        for label in (w for w in wanted if w not in scores):
            model, kind = self.models[label]
            scores[label] = score_model(kind, model, graphs, self.batch_size)["score"]
        return {label: scores[label] for label in wanted}

    # -- novel CAN IDs ---------------------------------------------------------------------------

    def _novelty_vgae(self, label: str):
        """The VGAE that says which IDs are novel for ``label`` (itself, or a fusion's member); None if none does."""
        if label in self.fusions:
            vgae = self.fusions[label][0].vgae
        else:
            vgae, kind = self.models[label]
            if kind != "vgae":
                return None
        vgae = getattr(vgae, "_orig_mod", vgae)
        return vgae if vgae.marks_novel_ids else None

    def marks_novel_ids(self, label: str) -> bool:
        return self._novelty_vgae(label) is not None

    def novel_alert(self, label: str) -> bool:
        """Whether ``label`` is a fusion whose novel-ID rule is on (its windows with a novel ID score 1)."""
        return label in self.fusions and bool(self.fusions[label][2].get("novel_alert"))

    def novel_ids(self, label: str, graphs: GraphArrays) -> pa.ListArray | None:
        """For each window: the CAN IDs with a frame of their own that benign training traffic carried on fewer
        than ``novel_min_count`` nodes (the VGAE's count; ``unknown``: out of vocabulary), in node order (one
        node per ID and window). They are what the ensemble's novel-ID rule scores 1. None for a detector
        without such a VGAE."""
        vgae = self._novelty_vgae(label)
        if vgae is None:
            return None
        with torch.inference_mode():
            nodes = np.flatnonzero(vgae.novel_nodes(torch.from_numpy(graphs.x)).numpy())
        windows = np.searchsorted(graphs.node_offsets, nodes, side="right") - 1  # ascending, like the nodes
        offsets = np.searchsorted(windows, np.arange(graphs.num_graphs + 1)).astype(np.int32)
        names = self.names[graphs.x[nodes, 0].astype(np.int64)]
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(names, pa.string()))

    # -- attribution ----------------------------------------------------------------------------

    def suspects(
        self, label: str, graphs: GraphArrays, windows: np.ndarray, top: int = TOP_SUSPECTS
    ) -> list[list[str]]:
        """For each window in ``windows``: its ``top`` CAN IDs by node importance, most important first."""
        if len(windows) == 0:
            return []
        batch = assemble_batch(graphs, windows)
        with torch.inference_mode():
            if label in self.fusions:
                ensemble, _fusion, _members = self.fusions[label]
                share = _share(_attention(ensemble.gat, batch), batch) + _share(
                    _node_error(ensemble.vgae, batch), batch
                )
            else:
                model, kind = self.models[label]
                share = _attention(model, batch) if kind == "gat" else _node_error(model, batch)
        ids = batch.x[:, 0].long().numpy()
        ptr = batch.ptr.numpy()
        share = share.numpy()
        out = []
        for g in range(len(windows)):
            a, z = ptr[g], ptr[g + 1]
            order = np.argsort(-share[a:z], kind="stable")[:top]
            out.append(self.names[ids[a:z][order]].tolist())
        return out


def _attention(model, batch) -> torch.Tensor:
    """Attention each node receives as a message source in the last GAT layer (self-loops excluded)."""
    model = getattr(model, "_orig_mod", model)  # the eager module behind a compiled one
    _, attention = on_batch(model, batch, return_attention=True)
    edge_index, alpha = attention[-1]
    weight = alpha.mean(dim=1) * (edge_index[0] != edge_index[1])
    return scatter(weight, edge_index[0], dim=0, dim_size=batch.num_nodes, reduce="sum")


def _node_error(model, batch) -> torch.Tensor:
    """How abnormal the VGAE finds each node: the node scores its window score is the maximum of."""
    model = getattr(model, "_orig_mod", model)
    return model.node_scores(model(batch.x, batch.edge_index, batch.batch), batch.x)


def _share(values: torch.Tensor, batch) -> torch.Tensor:
    """Each node's share of its graph's total (so two members' importances can be averaged)."""
    total = scatter(values, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="sum")
    return values / total.clamp_min(1e-12)[batch.batch]


def check_models(bundle: Path, spec: b.DetectorSpec) -> None:
    """What each model folder is, read before any weights: a folder whose config.json names another kind than the
    spec (an hgb's model.joblib is a pickle, and loading it ran the sender's code), a fusion whose members.json
    names folders other than the bundle's members, or sizes other than the spec's, is refused in one line."""
    folders = {}
    for model in spec.models:
        folder = b.inside(bundle, model.path, "model folder")
        if folder in folders:  # two entries of one folder: only the last one's kind would be checked
            raise KdgatError(f"{bundle / b.SPEC_FILE}: models {folders[folder].label} and {model.label} are one folder")
        folders[folder] = model
    for folder, model in folders.items():
        config = b.read_json(folder, CONFIG_FILE)
        expected = "dqn" if model.kind == "fusion" else model.kind  # a fusion run's config is the dqn section's
        found = config.get("model_type") if isinstance(config, dict) else None
        if found != expected:
            raise KdgatError(f"{folder / CONFIG_FILE}: a {found} run, where {b.SPEC_FILE} says {model.kind}")
        if model.kind != "fusion":
            metrics = b.read_json(folder, METRICS_FILE)
            sizes = (metrics.get("vocab_size"), metrics.get("num_node_features")) if isinstance(metrics, dict) else ()
            if sizes != (spec.vocab_size, spec.num_node_features):
                raise KdgatError(f"{folder / METRICS_FILE}: trained on other sizes than {b.SPEC_FILE} gives")
            continue
        members = b.read_json(folder, MEMBERS_FILE)
        for role in ("vgae", "gat"):
            named = members.get(role) if isinstance(members, dict) else None
            member = folders.get((folder / named).resolve()) if isinstance(named, str) else None
            if member is None or member.kind != role:
                raise KdgatError(f"{folder / MEMBERS_FILE}: its {role} is not one of the bundle's {role} folders")


def load_detector(bundle: str | Path, *, compile_models: bool = False, batch_size: int = 1024) -> Detector:
    """Check a bundle (description, every file it reads with its sha256, what each model folder is) and rebuild
    its scorers; no store needed. A bundle is shared: what is wrong in one is a line, never a traceback."""
    bundle = Path(bundle)
    spec = b.load_spec(bundle)
    b.verify_files(bundle, spec)
    check_models(bundle, spec)
    try:
        return Detector(bundle, spec, compile_models=compile_models, batch_size=batch_size)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a KdgatError is none of these
        raise KdgatError(
            f"{bundle}: not a readable detector bundle ({type(exc).__name__}: {exc}); export it again"
        ) from None
