"""Named, versioned graph feature sets.

A store records which set (and which version of it) built its graphs, so a
model never silently receives features it was not trained on. New sets (for
example timing features from timestamps) register here without touching the
callers; a set that needs timestamps must say how it degrades without them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSet:
    name: str
    version: str
    node_features: tuple[str, ...]
    edge_features: tuple[str, ...]
    needs_timestamps: bool = False
    payload_runs: bool = False  # the held-byte score (kdgat/data/payload_runs.py), fitted on training runs

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


E4 = FeatureSet(
    name="e4",
    version="1",
    node_features=(
        "id_index",  # consumed by an embedding, not as a number
        *(f"byte{i}_mean" for i in range(8)),  # mean payload byte / 255 over the node's frames
        "count_minmax",  # occurrences, min-max normalised in the window (raw if all equal)
        "last_position",  # last occurrence position / (W - 1)
    ),
    edge_features=(
        "count",
        "count_per_window",
        "gap_mean",
        "gap_std",
        "regularity",
        "first_position",
        "last_position",
        "span",
        "reverse_exists",
        "degree_product",
        "degree_ratio",
    ),
)

# E4 plus arrival timing per node (see kdgat/timing.py): the original study's
# features carry no timestamp information, which is decisive for injection
# and replay on real captures (detection notes, point 1).
E4T = FeatureSet(
    name="e4t",
    version="1",
    node_features=E4.node_features
    + (
        "dt_ratio_mean",  # inter-arrival / the ID's training median period, clipped to [0, 10]
        "dt_ratio_min",
        "dt_ratio_max",
        "early_share",  # share of the node's frames arriving in under half the period
        "has_timestamps",  # 0 when the capture has no timestamps: the timing columns are neutral
    ),
    edge_features=E4.edge_features,
    needs_timestamps=True,
)

# E4T plus how long the node's payload bytes have held their values, against the training runs
# (kdgat/data/payload_runs.py): a signal held at a value inside its range (a masquerade, a
# modification) is visible only across windows. Opt-in (preprocessing.feature_set: e4ts).
E4TS = FeatureSet(
    name="e4ts",
    version="2",  # 2: limits from the benign frames' holds, cut at validation blocks (1: every training run)
    node_features=E4T.node_features + ("held_max",),  # the node's largest held-byte score, [0, 10]
    edge_features=E4.edge_features,
    needs_timestamps=True,
    payload_runs=True,
)

FEATURE_SETS = {E4.name: E4, E4T.name: E4T, E4TS.name: E4TS}


def get_feature_set(name: str) -> FeatureSet:
    from kdgat.core.errors import ConfigError

    if name not in FEATURE_SETS:
        raise ConfigError(f"unknown feature set {name!r}; available: {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]
