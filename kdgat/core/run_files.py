"""The names of the files a run folder holds, in a module without heavy imports.

Training, fusion, evaluation and export write and read them; the lake reads them without importing
torch, so they live here rather than beside the code that writes them.
"""

from __future__ import annotations

MODEL_FILE = "model.pt"  # a GNN's best weights
WINDOW_MODEL_FILE = "model.joblib"  # a classical yardstick (kdgat.training.window_models)
FUSION_FILE = "fusion.pt"  # a fitted fusion (kdgat.fusion.ensemble)
MEMBERS_FILE = "members.json"  # a fusion's VGAE and GAT runs
CONFIG_FILE = "config.json"  # the frozen config the run was made with
METRICS_FILE = "metrics.json"  # its figures
SCORES_FILE = "scores.parquet"  # an evaluation's per-window scores (evaluate --scores)
WEIGHT_FILES = (MODEL_FILE, WINDOW_MODEL_FILE, FUSION_FILE)  # what a GNN, a classical yardstick, a fusion keep
