"""The run configuration's schema: frozen Pydantic models, one per config section.

Every model is frozen (a run cannot change its config after it is hashed) and forbids extra keys
(a typo must fail, not be ignored). Values live in the presets (``kdgat/presets``), never here;
:mod:`kdgat.core.config` composes and validates them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = "1.3.0"  # 1.1: dead keys removed; 1.2: hgb section; 1.3: VGAE score, GAT readout/conv
# (gat.id_input, the novelty section and fusion.novel_alert came later without a bump: gat.id_input's
# default, the only earlier behaviour, is not serialised, nor the novelty section but in a novelty run,
# nor fusion.novel_alert but in a fuse run that has it on, nor vgae.calibration_fraction but in a VGAE run, so
# the configs of every other run hash as they did before)


def _is(earlier):
    """``exclude_if`` of a key added after runs were recorded: its value of then is left out of the dump."""
    return lambda value: value == earlier


# --------------------------------------------------------------------------
# Constrained types.  Integers are strict (no "4" -> 4, no 4.0 -> 4, no
# true -> 1) because YAML already yields real ints; floats stay lax so that
# YAML-1.1 strings like "1e-4" (PyYAML reads them as str) still work, but
# booleans, inf and nan are refused.
# --------------------------------------------------------------------------


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


PosInt = Annotated[int, Field(strict=True, gt=0)]
# frames in a window: far above any use (the study's is 100), and what a detector bundle may ask a stream's buffers
# to hold (one saying 2e9 asked for 60 GiB)
MAX_WINDOW = 100_000
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, allow_inf_nan=False)]
UnitFloat = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1, allow_inf_nan=False)]
Dropout = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1, allow_inf_nan=False)]
OpenUnitFloat = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, lt=1, allow_inf_nan=False)]
HalfOpenUnitFloat = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=1, allow_inf_nan=False)]
Discount = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, lt=1, allow_inf_nan=False)]


# --------------------------------------------------------------------------
# Sections.  Every model is frozen (a run cannot change its config after it is
# hashed) and forbids extra keys (a typo must fail, not be ignored).  Values
# live in config/defaults.yaml and the model files only, so fields have no
# Python defaults except the optional ones that mean "not set" and those that
# keep the behaviour of runs recorded before the key existed (gat.id_input,
# vgae.calibration_fraction, fusion.novel_alert).
# --------------------------------------------------------------------------


class PreprocessingConfig(BaseModel):
    """Windows -> graphs and the train/val split (reference design 2.3, 2.4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: Annotated[int, Field(strict=True, gt=0, le=MAX_WINDOW)]
    stride: PosInt
    feature_set: Literal["e4", "e4t", "e4ts"]
    val_fraction: OpenUnitFloat
    split_seed: NonNegInt
    # Each training file is cut into this many contiguous time blocks and whole
    # blocks go to validation, so overlapping windows never straddle the split
    # and validation holds both classes where the file does.
    val_blocks: PosInt
    # CAN IDs seen fewer times than this in training map to the OOV index
    # (1 = every training ID gets its own embedding, as in the original study).
    vocab_min_count: PosInt
    # Hold out some attack blocks of a file whose attacks sit in a few blocks (keeping one for training),
    # so validation measures those attacks too (ROAD fuzzing_attack_1's attacks lie in 2 of 10 blocks).
    held_out_attacks: bool

    @field_validator("stride")
    @classmethod
    def _stride_within_window(cls, stride: int, info: ValidationInfo) -> int:
        window = info.data.get("window")
        if window is not None and stride > window:
            raise ValueError(
                f"must not exceed preprocessing.window ({window}): the {stride - window} frames between "
                f"two windows would be read by no graph (with a smaller window, set the stride too: "
                f"-O preprocessing.stride={window})"
            )
        return stride


class TrainingConfig(BaseModel):
    """Lightning loop settings shared by the VGAE and GAT stages (reference design 4.1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # None: each model trains with its own section's lr (the 3.1 table); set it
    # to force one learning rate whatever the model.
    lr: PosFloat | None = None
    weight_decay: NonNegFloat
    max_epochs: PosInt
    patience: PosInt
    batch_size: PosInt
    # 16-mixed is for GPUs (the gpu profile passes -O training.precision=16-mixed); a CPU runs it too.
    precision: Literal["64-true", "32-true", "16-mixed", "bf16-mixed"]
    gradient_clip: NonNegFloat  # 0 disables clipping
    monitor: Annotated[str, Field(min_length=1)]
    monitor_mode: Literal["min", "max"]


class VGAEConfig(BaseModel):
    """Variational graph autoencoder (reference design 3.1, 3.2).

    ``hidden_dims`` ends with the latent width (the encoder uses the entries
    before it), so the last entry must equal ``latent_dim``; layer 0 splits its
    width over ``heads``, so it must divide evenly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    latent_dim: PosInt
    heads: PosInt
    hidden_dims: tuple[PosInt, ...]
    id_emb_dim: PosInt
    dropout: Dropout
    lr: PosFloat
    patience: PosInt | None = None  # None: training.patience
    batch_size: PosInt | None = None  # None: training.batch_size
    # standardized: encoder input and reconstruction target are (x - mean) / std with the store's training
    # statistics, through a linear output; raw: the study's sigmoid over raw features (timing ratios up to 10
    # can never be reconstructed by a sigmoid)
    target: Literal["standardized", "raw"]
    # novel_first: the window's most abnormal node, each node's squared error divided by its CAN ID's (and
    # feature's) 99th percentile on benign training windows, a node of an ID seen on fewer than novel_min_count
    # benign training nodes above every other; id_feature_max: the same, 1000 added for a novel ID (runs made
    # before novel_first; benign ratios can exceed 1000); mean: the study's mean error over nodes (one injected
    # frame among 100 barely moves it)
    window_score: Literal["novel_first", "id_feature_max", "mean"]
    novel_min_count: NonNegInt
    # every 1/fraction-th of each training file's benign windows, which the VGAE does not train on: its per-ID
    # error percentiles are measured there (on its own training windows they are too small for any new window).
    # 0: measured on the training windows (runs made before it; a missing key reads as 0)
    calibration_fraction: Dropout = Field(0.0, exclude_if=_is(0.0))

    @field_validator("hidden_dims")
    @classmethod
    def _check_hidden_dims(cls, dims: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if len(dims) < 2:
            raise ValueError("needs at least one encoder width followed by the latent width")
        latent = info.data.get("latent_dim")
        if latent is not None and dims[-1] != latent:
            raise ValueError(f"last entry must equal latent_dim ({latent})")
        heads = info.data.get("heads")
        if heads is not None and dims[0] % heads:
            raise ValueError(f"first width must be divisible by heads ({heads})")
        return dims


class GATConfig(BaseModel):
    """GAT with jumping knowledge (reference design 3.1, 3.3); ``hidden`` is per head."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: PosInt
    layers: PosInt
    heads: PosInt
    id_emb_dim: PosInt
    dropout: Dropout
    fc_layers: PosInt
    lr: PosFloat
    jk_mode: Literal["cat", "last", "max", "lstm"]
    patience: PosInt | None = None  # None: training.patience
    batch_size: PosInt | None = None  # None: training.batch_size
    # graph vector from node vectors: mean (the study's; dilutes the one node an injected frame changes),
    # max, meanmax (both, concatenated) or attention (a learned gate per node)
    readout: Literal["mean", "max", "meanmax", "attention"]
    # gat: the study's GATConv without edge features (exact reference parameter counts); gatv2 and
    # transformer read the 11 edge features (standardised with the store's training statistics)
    conv_type: Literal["gat", "gatv2", "transformer"]
    # embedding: each node starts from its CAN ID's learned embedding beside its features (the study's).
    # zscore: from its features standardised by its ID's own benign training mean and std (timing and payload
    # as unusual *for this ID*) and one bit "normal traffic does not carry this ID", without saying which ID it
    # is, so what is learnt on attacked IDs carries over to others; embedding_zscore: the embedding beside
    # the standardised features
    # "embedding", what every run had before the key existed, is left out of the dump, so the config_hash of a
    # run recorded before it stays equal (`kdgat config show` adds it back)
    id_input: Literal["embedding", "zscore", "embedding_zscore"] = Field("embedding", exclude_if=_is("embedding"))


class DQNConfig(BaseModel):
    """DQN fusion agent (reference design 3.5).

    The task is one-step (s' = s, no transitions), so defaults.yaml sets
    ``gamma`` to 0: a contextual bandit (E4 used 0.99, bootstrapping on s).
    Epsilon decays multiplicatively once per episode,
    ``eps_e = max(epsilon_end, epsilon_start * epsilon_decay**e)``; E4 listed a
    decay but never applied it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: PosInt
    layers: PosInt
    dropout: Dropout
    lr: PosFloat
    weight_decay: NonNegFloat
    buffer_size: PosInt
    batch_size: PosInt
    target_update: PosInt
    gamma: Discount
    epsilon_start: UnitFloat
    epsilon_end: UnitFloat
    epsilon_decay: HalfOpenUnitFloat
    episodes: PosInt
    samples_per_episode: PosInt
    updates_per_episode: PosInt
    validate_every: PosInt
    action_step: HalfOpenUnitFloat

    @field_validator("action_step")
    @classmethod
    def _check_action_step(cls, step: float) -> float:
        n = round(1.0 / step)
        if abs(n * step - 1.0) > 1e-9:
            raise ValueError("must divide 1 evenly (the actions are the fusion weights 0, step, ..., 1)")
        return step

    @field_validator("epsilon_end")
    @classmethod
    def _check_epsilon_end(cls, end: float, info: ValidationInfo) -> float:
        start = info.data.get("epsilon_start")
        if start is not None and end > start:
            raise ValueError(f"must not exceed epsilon_start ({start})")
        return end

    @property
    def num_actions(self) -> int:
        """Number of fusion weights alpha in linspace(0, 1, n) (21 for step 0.05)."""
        return round(1.0 / self.action_step) + 1


class FusionConfig(BaseModel):
    """The two fusion baselines' settings (reference design 3.5) and the ensemble's novel-ID rule; the method
    is the fuse stage's --method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: PosInt  # mlp and weighted baselines
    mlp_hidden: tuple[PosInt, ...]
    mlp_dropout: Dropout
    mlp_lr: PosFloat
    weighted_lr: PosFloat
    # a window holding a CAN ID that benign training traffic does not carry (the VGAE's novel_first score)
    # scores 1 in the ensemble, whatever the fitted fusion says: a fusion fitted on known attack kinds
    # follows the GAT, which misses such windows of kinds it never trained on. False: what every fusion run
    # had before the key existed (left out of the dump, so their config_hash stays equal)
    novel_alert: bool = Field(False, exclude_if=_is(False))


class HGBConfig(BaseModel):
    """The classical yardstick (kdgat.models.boosting): scikit-learn HistGradientBoostingClassifier settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_iter: PosInt
    learning_rate: PosFloat
    max_leaf_nodes: Annotated[int, Field(strict=True, ge=2)]
    min_samples_leaf: PosInt
    l2_regularization: NonNegFloat
    balanced: bool  # weigh the classes inversely to their frequency


class NoveltyConfig(BaseModel):
    """The benign-only classical yardstick (kdgat.models.novelty), read beside the VGAE."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["zscore", "iforest"]
    top_k: PosInt  # zscore: a window's score is the mean of its k largest |z|
    std_floor: PosFloat  # zscore: smallest standard deviation a column is divided by
    trees: PosInt  # iforest: number of trees


class KDConfig(BaseModel):
    """Teacher -> student distillation weights (reference design 4.4); present only with a KD auxiliary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: PosFloat
    alpha: UnitFloat
    vgae_latent_weight: NonNegFloat
    vgae_recon_weight: NonNegFloat


# What each Lightning-trained model logs per epoch (kdgat/training/lit.py), which training.monitor may name
MONITORED = {
    "gat": ("val_loss", "val_acc", "train_loss"),
    "vgae": ("val_loss", "val_recon", "train_loss", "train_recon"),
}


class PipelineConfig(BaseModel):
    """Everything one stage run depends on; frozen, hashed by :func:`config_hash`."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    schema_version: Literal["1.3.0"]
    model_type: Literal["vgae", "gat", "dqn", "hgb", "novelty"]
    scale: Literal["large", "small"]
    auxiliaries: tuple[str, ...]
    seed: NonNegInt
    preprocessing: PreprocessingConfig
    training: TrainingConfig
    vgae: VGAEConfig
    gat: GATConfig
    dqn: DQNConfig
    hgb: HGBConfig
    fusion: FusionConfig
    kd: KDConfig | None = None
    novelty: NoveltyConfig | None = Field(None, exclude_if=_is(None))  # novelty runs only (see the validator)

    @model_validator(mode="after")
    def _novelty_section_in_novelty_runs_only(self) -> PipelineConfig:
        """Validated in every config (a typo in it is an error for any model), kept by a novelty run only:
        every other run's config is what it was before the section existed, so it dumps and hashes as
        then, resolved or read back from its config.json alike."""
        if self.model_type == "novelty" and self.novelty is None:
            raise ValueError("a novelty run needs the novelty section")
        if self.model_type != "novelty" and self.novelty is not None:
            object.__setattr__(self, "novelty", None)  # frozen: set once, during validation
        return self

    @model_validator(mode="after")
    def _novel_alert_in_fusion_runs_only(self) -> PipelineConfig:
        """``fusion.novel_alert`` changes how a fuse run scores, nothing a model learns: a VGAE, GAT or
        yardstick run keeps the value it had before the key existed, so its config and hash are as then."""
        if self.model_type != "dqn" and self.fusion.novel_alert:
            object.__setattr__(self, "fusion", self.fusion.model_copy(update={"novel_alert": False}))
        return self

    @model_validator(mode="after")
    def _monitor_a_logged_metric(self) -> PipelineConfig:
        """Early stopping and the best checkpoint watch ``training.monitor``: a name the model does not log stopped
        the training at its first epoch, in the run folder (a traceback)."""
        logged = MONITORED.get(self.model_type)
        if logged is not None and self.training.monitor not in logged:
            raise ValueError(
                f"training.monitor: a {self.model_type} run logs {', '.join(logged)}, not {self.training.monitor!r}"
            )
        return self

    @model_validator(mode="after")
    def _calibration_in_vgae_runs_only(self) -> PipelineConfig:
        """``vgae.calibration_fraction`` changes what a VGAE trains on, nothing another run does (a fusion reads
        its member's own config): every other run keeps the value of before the key, so its config hashes as
        then."""
        if self.model_type != "vgae" and self.vgae.calibration_fraction:
            object.__setattr__(self, "vgae", self.vgae.model_copy(update={"calibration_fraction": 0.0}))
        return self

    @property
    def model_section(self) -> VGAEConfig | GATConfig | DQNConfig | HGBConfig | NoveltyConfig:
        """The section of the model this run trains."""
        return getattr(self, self.model_type)

    @property
    def effective_lr(self) -> float:
        """training.lr when set, else the model section's lr."""
        return self.training.lr if self.training.lr is not None else self.model_section.lr

    @property
    def effective_batch_size(self) -> int:
        """The model section's batch size when set (GAT students: 64), else training.batch_size."""
        own = getattr(self.model_section, "batch_size", None)
        return own if own is not None else self.training.batch_size

    @property
    def effective_patience(self) -> int:
        """The model section's patience when set (GAT small: 50), else training.patience."""
        own = getattr(self.model_section, "patience", None)
        return own if own is not None else self.training.patience

    @property
    def has_kd(self) -> bool:
        return self.kd is not None
