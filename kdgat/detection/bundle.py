"""The detector bundle: one self-describing folder with everything scoring needs, and no training store.

Layout (written by ``kdgat export``, :mod:`kdgat.stages.export`)::

    detector.json          DetectorSpec: detectors, models, feature set, window/stride, thresholds,
                           parameter counts, versions, every file with its sha256
    vocab.json             the training vocabulary (CAN ID -> embedding row)
    store.json             what the models were trained on: window, stride, feature set, feature
                           statistics, timing periods (from the training store's metadata.json)
    reference.json         per-ID payload means and spreads of the training windows (out-of-distribution check)
    models/<label>/        a training run (model.pt, config.json, metrics.json) or a fusion run
                           (fusion.pt, members.json naming member folders relative to it, ...)
    manifest.json          the export's manifest (written last)

:func:`load_spec` reads and checks ``detector.json``; :func:`verify_files` re-hashes every file, so a
bundle copied to a vehicle and damaged on the way is refused instead of scoring with wrong weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kdgat.core.errors import KdgatError, UsageError
from kdgat.core.hashing import sha256_file
from kdgat.core.jsonfile import read_json as read_json_file
from kdgat.core.schema import MAX_WINDOW

SPEC_FILE = "detector.json"
VOCAB_FILE = "vocab.json"
STORE_FILE = "store.json"
REFERENCE_FILE = "reference.json"
MODELS_DIR = "models"
BUNDLE_FORMAT = "kdgat-detector"
BUNDLE_VERSION = 2  # 2: a fusion's members.json may hold novel_alert, which a reader of version 1 would ignore
READABLE_VERSIONS = (1, 2)  # a version-1 bundle has no novel_alert: it scores as it did

ModelKind = Literal["gat", "vgae", "fusion"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleFile(_Frozen):
    path: str  # relative to the bundle
    sha256: str
    bytes: int


class Threshold(_Frozen):
    """The decision threshold evaluate chose on validation, and how (``record`` is its entry verbatim)."""

    value: float = Field(allow_inf_nan=False)
    policy: str
    evaluation: str  # the evaluation folder it was read from
    record: dict[str, Any]


class ModelSpec(_Frozen):
    label: str  # as evaluate names it: gat_small_kd, vgae_large, fusion_dqn_small_kd ...
    kind: ModelKind
    path: str  # folder inside the bundle
    source: str  # the run folder it was exported from
    parameters: int  # for a fusion: both members and the fusion itself
    members: dict[str, str] | None = None  # fusion: {"vgae": label, "gat": label}
    method: str | None = None  # fusion method
    scale: str | None = None
    kd: bool | None = None


class Detector(_Frozen):
    """One scorer whose verdicts the bundle offers: a model (or fusion) and its threshold."""

    label: str
    threshold: Threshold
    validation: dict[str, Any]  # evaluate's validation metrics at that threshold


class DetectorSpec(_Frozen):
    format: Literal["kdgat-detector"] = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION  # load_spec refuses one outside READABLE_VERSIONS first
    created_at: str
    dataset: str | None
    # in --run order; the first gives the verdict unless another is chosen
    detectors: list[Detector] = Field(min_length=1)
    models: list[ModelSpec]  # every model folder (detectors and fusion members)
    feature_set: str  # tag, e.g. e4t@1
    # what the models were trained with; bounded: the window sizes the stream's buffers (2e9 asked for 60 GiB)
    window: int = Field(ge=1, le=MAX_WINDOW)
    stride: int = Field(ge=1, le=MAX_WINDOW)
    vocab_size: int = Field(ge=1)
    num_node_features: int = Field(ge=1)
    store_fingerprint: str | None
    versions: dict[str, str]
    files: list[BundleFile]

    def model(self, label: str) -> ModelSpec:
        for spec in self.models:
            if spec.label == label:
                return spec
        raise KdgatError(f"detector bundle has no model {label!r}; it has {', '.join(m.label for m in self.models)}")

    def detector(self, label: str | None) -> Detector:
        if label is None:
            return self.detectors[0]
        for det in self.detectors:
            if det.label == label:
                return det
        choices = ", ".join(d.label for d in self.detectors)
        raise UsageError(f"--use {label}: the detector bundle has no detector {label!r}; choose from: {choices}")


def load_spec(bundle: str | Path) -> DetectorSpec:
    """``detector.json`` of a bundle, checked; a one-line error for anything else."""
    bundle = Path(bundle)
    path = bundle / SPEC_FILE
    if not bundle.is_dir():
        raise KdgatError(f"{bundle}: no such detector bundle (make one with `kdgat export`)")
    data = read_json_file(path, missing=f"not a detector bundle (no {SPEC_FILE}; make one with `kdgat export`)")
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise KdgatError(f"{path}: not a kdgat detector description")
    if data.get("version") not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise KdgatError(f"{path}: bundle version {data.get('version')}, this kdgat reads versions {readable}")
    try:
        return DetectorSpec.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise KdgatError(f"{path}: {where}: {problem['msg']}") from None


def inside(bundle: Path, relative: str, what: str) -> Path:
    """``bundle / relative``, refused where it leaves the bundle (an absolute path, ``..``, a link out): a bundle is
    shared, and what it names is read."""
    path = (bundle / relative).resolve()
    if Path(relative).is_absolute() or ".." in Path(relative).parts or not path.is_relative_to(bundle.resolve()):
        raise KdgatError(f"{bundle / SPEC_FILE}: {what} {relative!r} is not inside the bundle")
    return path


def read_files(spec: DetectorSpec) -> set[str]:
    """Every file loading the bundle reads besides detector.json: each must be listed with its sha256."""
    weights = {"fusion": ("fusion.pt", "members.json")}
    needed = {VOCAB_FILE, STORE_FILE, REFERENCE_FILE}
    for model in spec.models:
        for name in ("config.json", "metrics.json", *weights.get(model.kind, ("model.pt",))):
            needed.add(f"{model.path}/{name}")
    return needed


def verify_files(bundle: Path, spec: DetectorSpec) -> None:
    """Every file the spec lists is inside the bundle and there with its recorded sha256, and every file loading
    reads is listed: a bundle that lists nothing (or a file outside itself) was loaded unchecked."""
    listed = set()
    for item in spec.files:
        path = inside(bundle, item.path, "file")
        if not path.is_file():
            raise KdgatError(f"{bundle / item.path}: missing from the detector bundle")
        if sha256_file(path) != item.sha256:
            raise KdgatError(
                f"{bundle / item.path}: sha256 differs from {SPEC_FILE}; the bundle was changed after export"
            )
        listed.add(path)
    for model in spec.models:
        inside(bundle, model.path, "model folder")
    for needed in sorted(read_files(spec)):
        if (bundle / needed).resolve() not in listed:
            raise KdgatError(f"{bundle / needed}: not listed with its sha256 in {SPEC_FILE}; export the bundle again")


def read_json(bundle: Path, name: str) -> Any:
    """A JSON file of the bundle, with the one-line errors of every other input."""
    return read_json_file(Path(bundle) / name, missing="missing from the detector bundle", what="bundle file")
