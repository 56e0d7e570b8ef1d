"""Variational graph autoencoder: the anomaly scorer (reference design 3.2, "GraphAutoencoderNeighborhood").

Encoder: GATConv layers to the widths ``hidden_dims[:-1]`` (layer 0 with ``heads`` heads of
``width / heads`` channels, concatenated; later layers one head), each followed by BatchNorm1d ->
ReLU -> dropout; ``mu`` and ``logvar`` by two Linear layers to ``latent_dim``.

Three decoders read the latent ``z`` of every node:

* node features: a GATConv stack over the same ``edge_index`` with as many layers as the encoder
  (intermediate widths ``reversed(hidden_dims[:-1])[:-1]`` with 4 heads + BN + ReLU + dropout, the last
  layer one head -> the numeric columns ``x[:, 1:]``: standardised with the store's training mean and
  std through a linear output (``target: standardized``), or raw through a sigmoid (the study's
  ``raw``, which cannot reach timing ratios up to 10);
* CAN ID: Linear(latent -> num_ids) logits;
* neighbourhood: MLP latent -> latent -> latent -> num_ids, logits of the multi-hot set of vocabulary
  IDs the node has an outgoing edge to.

The window score is its most abnormal node: each node's squared error per feature divided by its CAN
ID's 99th percentile on benign training windows (:meth:`VGAE.calibrate`, after training), the worst
feature (the error ratio); a node that only receives a transition (no frame of its own, every feature
0) scores 0. A node of an ID seen on fewer than ``novel_min_count`` benign training nodes is novel.
``window_score: novel_first`` ranks every novel node above every known one (NOVEL_FLOOR) and keeps the
error ratio as the score of a known node, so a window without a novel ID scores as it did with
``id_feature_max`` (runs made before it). That one added 1000 for a novel ID: the heavy-tailed ratios
of benign windows near an attack exceed it, and DAGA's DoS and ID-fuzzing windows (novel IDs)
ranked below them. One abnormal node among 100 moves either; the study's mean
error over nodes (``mean``) does not.

Deliberate difference from the reference: ``z = mu + eps * sigma`` only in training; in eval mode
``z = mu``, so scoring a graph twice gives the same numbers (the reference also sampled at eval).

Pure ``nn.Module``: no I/O, no logging, no device logic.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv
from torch_geometric.utils import scatter

from kdgat.core.schema import VGAEConfig
from kdgat.models.inputs import check_sizes, has_frame, stat_buffers, with_self_loops

__all__ = [
    "VGAE",
    "neighbourhood_targets",
    "LOGVAR_CLAMP",
    "DECODER_HEADS",
    "ID_WEIGHT",
    "NBR_WEIGHT",
    "KL_WEIGHT",
]

LOGVAR_CLAMP = 20.0  # logvar is clamped to [-LOGVAR_CLAMP, LOGVAR_CLAMP]
DECODER_HEADS = 4  # heads of the intermediate feature-decoder layers (a fixed default in the reference)
ID_WEIGHT = 0.1  # task loss = recon MSE + ID_WEIGHT * ID CE + NBR_WEIGHT * neighbourhood BCE + KL_WEIGHT * KL
NBR_WEIGHT = 0.05
KL_WEIGHT = 0.01
NOVEL_SCORE = 1.0e3  # id_feature_max: added to the node score of a CAN ID rarely or never seen in benign training
# novel_first: a known ID's node scores its error ratio, capped at KNOWN_CAP; a novel ID's node scores
# NOVEL_FLOOR * (1 + log(1 + its ratio)): above every known node, in the error ratio's order among novel ones
NOVEL_FLOOR = 1.0e30
KNOWN_CAP = 1.0e29
CALIBRATION_MIN_NODES = 20  # per-ID error percentiles need this many benign training nodes, else the global one


def neighbourhood_targets(ids: Tensor, edge_index: Tensor, num_ids: int) -> Tensor:
    """Multi-hot ``(num_nodes, num_ids)``: row i has a 1 at the vocabulary ID of every node i has an edge to.

    ``ids`` holds the vocabulary index of every node (``x[:, 0].long()``). Built with one scatter, no
    Python loop; duplicate edges set the same entry.
    """
    target = torch.zeros(ids.size(0), num_ids, dtype=torch.float32, device=ids.device)
    src, dst = edge_index
    target[src, ids[dst]] = 1.0
    return target


def _conv_block(in_channels: int, width: int, heads: int) -> tuple[GATConv, nn.BatchNorm1d]:
    if width % heads:
        raise ValueError(f"a GATConv width of {width} cannot be split over {heads} heads")
    conv = GATConv(in_channels, width // heads, heads=heads, concat=True, add_self_loops=False)
    return conv, nn.BatchNorm1d(width)


TORCH_QUANTILE_MAX = 1 << 24  # torch.quantile refuses longer inputs ("input tensor is too large")


def _q99(values: Tensor) -> Tensor:
    """Column-wise 99th percentile (linear interpolation, as torch.quantile), also past 2^24 rows (numpy)."""
    if len(values) <= TORCH_QUANTILE_MAX:
        return torch.quantile(values, 0.99, dim=0)
    return torch.from_numpy(np.quantile(values.numpy(), 0.99, axis=0)).to(values.dtype)


class VGAE(nn.Module):
    """Variational graph autoencoder with feature, CAN-ID and neighbourhood decoders.

    Args:
        num_ids (int): vocabulary size (including the out-of-vocabulary index).
        cfg (VGAEConfig): the ``vgae`` config section.
        num_features (int, optional): columns of ``x``, the ID index included; the feature decoder
            reconstructs the ``num_features - 1`` numeric columns. (default: 11)

    Parameter count with the E4 configs (reference 3.4): large 181,950 + 130·N, small 8,046 + 38·N.
    """

    def __init__(self, num_ids: int, cfg: VGAEConfig, num_features: int = 11, feature_stats: dict | None = None):
        super().__init__()
        check_sizes(num_ids, num_features)
        self.num_ids = num_ids
        self.num_features = num_features
        self.cfg = cfg
        self.dropout = cfg.dropout
        latent = cfg.latent_dim
        enc_widths = list(cfg.hidden_dims[:-1])

        self.id_embedding = nn.Embedding(num_ids, cfg.id_emb_dim)

        self.enc_convs = nn.ModuleList()
        self.enc_norms = nn.ModuleList()
        in_channels = cfg.id_emb_dim + num_features - 1
        for i, width in enumerate(enc_widths):
            conv, norm = _conv_block(in_channels, width, cfg.heads if i == 0 else 1)
            self.enc_convs.append(conv)
            self.enc_norms.append(norm)
            in_channels = width
        self.mu = nn.Linear(in_channels, latent)
        self.logvar = nn.Linear(in_channels, latent)

        self.dec_convs = nn.ModuleList()
        self.dec_norms = nn.ModuleList()
        in_channels = latent
        for width in list(reversed(enc_widths))[:-1]:
            conv, norm = _conv_block(in_channels, width, DECODER_HEADS)
            self.dec_convs.append(conv)
            self.dec_norms.append(norm)
            in_channels = width
        self.dec_out = GATConv(in_channels, num_features - 1, heads=1, add_self_loops=False)

        # buffers, saved with the weights: the standardisation and the per-ID calibration (calibrate())
        stats = feature_stats if cfg.target == "standardized" else None
        mean, std = stat_buffers(stats, "node", num_features - 1, skip=1)
        self.register_buffer("feature_mean", mean)
        self.register_buffer("feature_std", std)
        self.register_buffer("error_q99", torch.ones(num_ids, num_features - 1))
        self.register_buffer("benign_id_count", torch.zeros(num_ids))

        self.id_head = nn.Linear(latent, num_ids)
        self.nbr_head = nn.Sequential(
            nn.Linear(latent, latent),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(latent, latent),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(latent, num_ids),
        )

    # -- model -----------------------------------------------------------------------------------

    def target(self, x: Tensor) -> Tensor:
        """What the feature decoder reconstructs: ``x[:, 1:]``, standardised for ``target: standardized``."""
        return (x[:, 1:] - self.feature_mean) / self.feature_std

    def node_input(self, x: Tensor) -> Tensor:
        """``[embedding(x[:, 0]) | target(x)]``, width ``id_emb_dim + num_features - 1``."""
        return torch.cat([self.id_embedding(x[:, 0].long()), self.target(x)], dim=-1)

    def _block(self, conv: GATConv, norm: nn.BatchNorm1d, h: Tensor, edge_index: Tensor) -> Tensor:
        h = F.relu(norm(conv(h, edge_index)))
        return F.dropout(h, p=self.dropout, training=self.training)

    def reparametrize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """``mu + eps * exp(logvar / 2)`` in training, ``mu`` in eval mode."""
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def encode(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mu, logvar)``, each ``(num_nodes, latent_dim)``; logvar clamped to ±LOGVAR_CLAMP.

        ``edge_index`` carries one self-loop per node (:func:`with_self_loops`), as in :meth:`decode`.
        """
        h = self.node_input(x)
        for conv, norm in zip(self.enc_convs, self.enc_norms, strict=True):
            h = self._block(conv, norm, h, edge_index)
        mu = self.mu(h)
        logvar = self.logvar(h).clamp(-LOGVAR_CLAMP, LOGVAR_CLAMP)
        return self.reparametrize(mu, logvar), mu, logvar

    def decode(self, z: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(recon, id_logits, nbr_logits)``: ``(N, num_features - 1)`` ([0, 1] if ``raw``), ``(N, num_ids)`` x2."""
        h = z
        for conv, norm in zip(self.dec_convs, self.dec_norms, strict=True):
            h = self._block(conv, norm, h, edge_index)
        recon = self.dec_out(h, edge_index)
        if self.cfg.target == "raw":  # the study's [0, 1] output; standardised targets need a linear one
            recon = torch.sigmoid(recon)
        return recon, self.id_head(z), self.nbr_head(z)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None) -> dict[str, Tensor]:
        """Node-level outputs: ``z``, ``mu``, ``logvar``, ``recon``, ``id_logits``, ``nbr_logits``.

        ``batch`` is accepted for a uniform call signature; the node-level outputs do not depend on it.
        """
        conv_edges = with_self_loops(edge_index, x.size(0))
        z, mu, logvar = self.encode(x, conv_edges)
        recon, id_logits, nbr_logits = self.decode(z, conv_edges)
        return {"z": z, "mu": mu, "logvar": logvar, "recon": recon, "id_logits": id_logits, "nbr_logits": nbr_logits}

    # -- losses and scores -----------------------------------------------------------------------

    def loss(self, out: dict[str, Tensor], x: Tensor, edge_index: Tensor) -> dict[str, Tensor]:
        """Task loss of a batch: ``total`` and the unweighted parts ``recon``, ``id``, ``nbr``, ``kl``.

        total = MSE(recon, target(x)) + 0.1·CE(id_logits, id) + 0.05·BCE-with-logits(nbr_logits, multi-hot)
        + 0.01·KL, KL = -½·mean(1 + logvar - mu² - exp(logvar)); every mean is over all elements, the MSE's
        over the nodes with a frame of their own (:func:`has_frame`)."""
        ids = x[:, 0].long()
        framed = has_frame(x)  # a node without a frame of its own has nothing to reconstruct
        recon = F.mse_loss(out["recon"][framed], self.target(x)[framed]) if framed.any() else out["recon"].sum() * 0
        id_ce = F.cross_entropy(out["id_logits"], ids)
        nbr = F.binary_cross_entropy_with_logits(
            out["nbr_logits"], neighbourhood_targets(ids, edge_index, self.num_ids)
        )
        mu, logvar = out["mu"], out["logvar"]
        kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
        total = recon + ID_WEIGHT * id_ce + NBR_WEIGHT * nbr + KL_WEIGHT * kl
        return {"total": total, "recon": recon, "id": id_ce, "nbr": nbr, "kl": kl}

    def graph_scores(
        self,
        out: dict[str, Tensor],
        x: Tensor,
        edge_index: Tensor,
        batch: Tensor,
        *,
        num_graphs: int | None = None,
    ) -> dict[str, Tensor]:
        """Per-graph scores, each ``(B,)``: ``recon`` (MSE over features and the nodes with a frame of their
        own), ``nbr`` (neighbourhood BCE over nodes and vocabulary), ``id`` (ID cross-entropy over nodes),
        ``z_mean`` / ``z_std`` / ``z_max`` / ``z_min`` (over the graph's nodes and latent dimensions; ``z_std``
        is the population standard deviation) and ``anomaly``: the window score of ``window_score`` (the most
        abnormal node's :meth:`node_scores`, or ``recon`` for ``mean``).
        """
        b = int(batch.max()) + 1 if num_graphs is None else num_graphs
        ids = x[:, 0].long()
        node_sq = (out["recon"] - self.target(x)).pow(2)
        node_recon = node_sq.mean(dim=1)
        targets = neighbourhood_targets(ids, edge_index, self.num_ids)
        node_nbr = F.binary_cross_entropy_with_logits(out["nbr_logits"], targets, reduction="none").mean(dim=1)
        node_id = F.cross_entropy(out["id_logits"], ids, reduction="none")

        z = out["z"]
        z_mean = scatter(z.mean(dim=1), batch, dim_size=b, reduce="mean")
        z_var = scatter((z - z_mean[batch].unsqueeze(1)).pow(2).mean(dim=1), batch, dim_size=b, reduce="mean")
        framed = has_frame(x).to(node_recon.dtype)  # a window of placeholder nodes only (none in practice) scores 0
        recon = scatter(node_recon * framed, batch, dim_size=b, reduce="sum") / scatter(
            framed, batch, dim_size=b, reduce="sum"
        ).clamp_min(1)
        return {
            "recon": recon,
            "nbr": scatter(node_nbr, batch, dim_size=b, reduce="mean"),
            "id": scatter(node_id, batch, dim_size=b, reduce="mean"),
            "z_mean": z_mean,
            "z_std": z_var.sqrt(),
            "z_max": scatter(z.amax(dim=1), batch, dim_size=b, reduce="max"),
            "z_min": scatter(z.amin(dim=1), batch, dim_size=b, reduce="min"),
            "anomaly": recon
            if self.cfg.window_score == "mean"
            else scatter(self.node_scores(out, x, node_sq), batch, dim_size=b, reduce="max"),
        }

    def node_scores(self, out: dict[str, Tensor], x: Tensor, node_sq: Tensor | None = None) -> Tensor:
        """How abnormal each node is ``(N,)``: its worst feature's squared error over that CAN ID's benign 99th
        percentile; an ID seen on fewer than ``novel_min_count`` benign training nodes is novel: with
        ``novel_first`` it scores NOVEL_FLOOR * (1 + log(1 + that ratio)) and a known ID at most KNOWN_CAP;
        with ``id_feature_max`` it adds NOVEL_SCORE.

        A node that only receives the window's last transition has no frame of its own (every feature 0) and
        nothing to reconstruct: it scores 0 (with ``novel_first`` also when its ID is novel: that frame is the
        next window's, and labelled there; ``id_feature_max`` added NOVEL_SCORE to it). These are also the
        per-node attributions of a window's score.
        """
        if node_sq is None:
            node_sq = (out["recon"] - self.target(x)).pow(2)
        ids = x[:, 0].long()
        framed = has_frame(x)
        ratio = (node_sq / self.error_q99[ids]).amax(dim=1)
        novel = self._novel_id(ids)
        if self.cfg.window_score == "novel_first":
            ratio = ratio.clamp(max=KNOWN_CAP) * framed.to(ratio.dtype)  # capped first: no inf, no inf * 0
            return torch.where(novel & framed, NOVEL_FLOOR * (1.0 + torch.log1p(ratio)), ratio)
        return ratio * framed.to(ratio.dtype) + NOVEL_SCORE * novel.to(ratio.dtype)

    def _novel_id(self, ids: Tensor) -> Tensor:
        return self.benign_id_count[ids] < self.cfg.novel_min_count

    def novel_nodes(self, x: Tensor) -> Tensor:
        """Which nodes ``(N,)`` are of a novel CAN ID and hold a frame of their own (the nodes ``novel_first``
        ranks above every other)."""
        return self._novel_id(x[:, 0].long()) & has_frame(x)

    @property
    def marks_novel_ids(self) -> bool:
        """Whether this run says which windows hold a novel CAN ID: ``novel_first`` runs only, the score the
        ensemble's rule and detect's ``novel_ids`` were measured with (``id_feature_max`` added 1000 to a
        novel node, below benign windows' error ratios)."""
        return self.cfg.window_score == "novel_first"

    def novel_windows(self, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """Which windows ``(B,)`` hold a :meth:`novel_nodes` node; all False where the run does not say
        (:attr:`marks_novel_ids`)."""
        if not self.marks_novel_ids:
            return torch.zeros(num_graphs, dtype=torch.bool, device=x.device)
        return scatter(self.novel_nodes(x).to(torch.uint8), batch, dim_size=num_graphs, reduce="max").bool()

    @torch.no_grad()
    def calibrate(self, batches, benign_batches=None) -> None:
        """Per-ID, per-feature 99th percentile of the squared reconstruction error over ``batches`` (PyG batches of
        benign windows the model did not train on: on its own training windows the errors are smaller than on
        any new one) and nodes per ID over ``benign_batches`` (every benign training window; default
        ``batches``); sets the buffers :meth:`node_scores` reads. Call it in eval mode once the weights are final.
        Both count the nodes with a frame of their own only (:func:`has_frame`), the nodes :meth:`node_scores` scores.
        """
        errors, ids = [], []
        for batch in batches:
            out = self(batch.x, batch.edge_index, batch.batch)
            framed = has_frame(batch.x)  # scored 0 by node_scores: their errors would inflate their IDs' percentiles
            errors.append((out["recon"] - self.target(batch.x)).pow(2)[framed])
            ids.append(batch.x[framed, 0].long())
        err, idx = torch.cat(errors), torch.cat(ids)
        count = torch.bincount(idx, minlength=self.num_ids).to(err.dtype)
        q99 = _q99(err).expand(self.num_ids, -1).clone()
        # one sort, then each ID's rows are a contiguous segment (not one mask over every node per ID)
        per_id = torch.split(err[torch.argsort(idx, stable=True)], count.long().tolist())
        for i in torch.nonzero(count >= CALIBRATION_MIN_NODES).flatten().tolist():
            q99[i] = _q99(per_id[i])
        self.error_q99.copy_(q99.clamp_min(1e-6))
        if benign_batches is not None:
            seen = [batch.x[has_frame(batch.x), 0].long() for batch in benign_batches]
            count = torch.bincount(torch.cat(seen), minlength=self.num_ids).to(err.dtype)
        self.benign_id_count.copy_(count)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"{self.__class__.__name__}(num_ids={self.num_ids}, hidden_dims={list(c.hidden_dims)}, "
            f"heads={c.heads}, latent={c.latent_dim})"
        )
