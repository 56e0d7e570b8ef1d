"""GAT with jumping knowledge: the graph classifier (reference design 3.3, "GATWithJK").

Node input: column 0 of ``x`` is the CAN-ID vocabulary index, looked up in an embedding and
concatenated with the numeric columns ``x[:, 1:]`` (``id_input: embedding``, the study's); ``zscore``
replaces both by the columns standardised with the ID's own benign training statistics and a
"novel ID" bit (no ID identity, so it transfers to IDs never attacked in training), and
``embedding_zscore`` keeps the embedding beside the standardised columns. ``layers`` attention
layers (``heads`` heads of ``hidden`` channels, concatenated), each followed by ReLU then dropout;
jumping knowledge over the layer outputs (cat / max / lstm with PyG's ``JumpingKnowledge``, or just
the last layer); a readout over the nodes; FC head; two logits (benign, attack).

``conv_type`` picks the layer: ``gat`` (the study's GATConv, which ignores edge features: exact
reference parameter counts), ``gatv2`` or ``transformer`` (GATv2Conv / TransformerConv with
``edge_dim``, reading the 11 edge features standardised with the store's training statistics).
``readout`` picks the graph vector: ``mean`` (the study's), ``max``, ``meanmax`` or ``attention``; a
mean over ~40 nodes dilutes the one node an injected frame changes.

Pure ``nn.Module``: no I/O, no logging, no device logic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GATv2Conv, JumpingKnowledge, TransformerConv, global_max_pool, global_mean_pool
from torch_geometric.nn.aggr import AttentionalAggregation

from kdgat.core.schema import GATConfig
from kdgat.models.inputs import (
    check_sizes,
    embed_ids,
    has_frame,
    standardize,
    stat_buffers,
    with_self_loops,
    with_self_loops_and_attributes,
)

__all__ = ["GATJK", "NUM_CLASSES"]

NUM_CLASSES = 2


ID_STATS_MIN_NODES = 20  # an ID's own statistics need this many benign training nodes, else all nodes' are used
ID_STD_FLOOR = 0.01  # a constant byte (std 0) still gets a finite z: one payload step (1/255) -> 0.4
CONSTANT_COLUMN_STD = 1e6  # the "std" of a column constant over every benign training node: its z stays ~0


class GATJK(nn.Module):
    """Graph classifier: node input (``id_input``) -> GATConv stack -> jumping knowledge -> readout -> FC head.

    Args:
        num_ids (int): vocabulary size (including the out-of-vocabulary index).
        cfg (GATConfig): the ``gat`` config section (``hidden`` is per head).
        num_features (int, optional): columns of ``x``, the ID index included. (default: 11)

    Parameter count with the E4 configs (reference 3.4): large 310,658 + 16·N, small 48,962 + 8·N.
    """

    def __init__(
        self,
        num_ids: int,
        cfg: GATConfig,
        num_features: int = 11,
        num_edge_features: int = 11,
        feature_stats: dict | None = None,
    ):
        super().__init__()
        check_sizes(num_ids, num_features)
        self.num_ids = num_ids
        self.num_features = num_features
        self.cfg = cfg
        self.dropout = cfg.dropout
        self.uses_edges = cfg.conv_type != "gat"

        uses_embedding = cfg.id_input in ("embedding", "embedding_zscore")
        self.id_embedding = nn.Embedding(num_ids, cfg.id_emb_dim) if uses_embedding else None
        self.uses_id_statistics = cfg.id_input in ("zscore", "embedding_zscore")
        if self.uses_id_statistics:  # per-ID benign training statistics, set by fit_id_statistics before training
            self.register_buffer("id_mean", torch.zeros(num_ids, num_features - 1))
            self.register_buffer("id_std", torch.ones(num_ids, num_features - 1))
            # 1 for an ID on fewer than ID_STATS_MIN_NODES benign training nodes (the OOV index included): one
            # that normal traffic does not carry, such as an ID that only ever appeared in attack frames
            self.register_buffer("id_novel", (torch.arange(num_ids) == num_ids - 1).float())
        width = cfg.hidden * cfg.heads
        in_channels = (cfg.id_emb_dim if uses_embedding else 1) + num_features - 1
        self.convs = nn.ModuleList()
        for i in range(cfg.layers):
            conv_in = in_channels if i == 0 else width
            self.convs.append(_conv(cfg, conv_in, num_edge_features))
        if self.uses_edges:  # buffers: saved with the weights, so scoring needs no store
            mean, std = stat_buffers(feature_stats, "edge", num_edge_features)
            self.register_buffer("edge_mean", mean)
            self.register_buffer("edge_std", std)

        # PyG's JumpingKnowledge covers cat / max / lstm; "last" is the last layer's output (as in BasicGNN)
        self.jk: JumpingKnowledge | None
        if cfg.jk_mode == "last":
            self.jk = None
        elif cfg.jk_mode == "lstm":
            self.jk = JumpingKnowledge("lstm", channels=width, num_layers=cfg.layers)
        else:
            self.jk = JumpingKnowledge(cfg.jk_mode)
        d = width * cfg.layers if cfg.jk_mode == "cat" else width
        self.pool = AttentionalAggregation(gate_nn=nn.Linear(d, 1)) if cfg.readout == "attention" else None
        self.embedding_dim = 2 * d if cfg.readout == "meanmax" else d

        head: list[nn.Module] = []
        width_in = self.embedding_dim
        for _ in range(cfg.fc_layers - 1):  # hidden FC layers keep the JK width d
            head += [nn.Linear(width_in, d), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width_in = d
        head.append(nn.Linear(width_in, NUM_CLASSES))
        self.head = nn.Sequential(*head)

    def node_input(self, x: Tensor) -> Tensor:
        """What the first layer reads of each node (``cfg.id_input``): ``[embedding(id) | x[:, 1:]]``
        (embedding), ``[novel(id) | z]`` (zscore) or ``[embedding(id) | z]`` (embedding_zscore); ``z`` is
        ``x[:, 1:]`` standardised by the node's ID's benign training mean and std, clipped to +-EDGE_CLIP, and 0
        for a node without a frame of its own."""
        if not self.uses_id_statistics:
            return embed_ids(self.id_embedding, x)
        ids = x[:, 0].long()
        # a node without a frame of its own (all 0) is no deviation of its ID's traffic: it reads neutral (0)
        z = standardize(x[:, 1:], self.id_mean[ids], self.id_std[ids]) * has_frame(x).unsqueeze(1).to(x.dtype)
        first = self.id_novel[ids].unsqueeze(1) if self.id_embedding is None else self.id_embedding(ids)
        return torch.cat([first, z], dim=-1)

    @torch.no_grad()
    def fit_id_statistics(self, batches) -> None:
        """Per-ID mean and std of the numeric node features over the benign windows of ``batches`` (PyG
        batches of training windows), nodes with a frame of their own only (:func:`has_frame`); IDs on fewer
        than ID_STATS_MIN_NODES such nodes, and the OOV index, keep the statistics of all of them and count
        as novel. Call it before training."""
        xs, ids = [], []
        for batch in batches:
            benign = (batch.y[batch.batch] == 0) & has_frame(batch.x)  # nodes of a frame: what node_input standardises
            xs.append(batch.x[benign, 1:].double())
            ids.append(batch.x[benign, 0].long())
        x, idx = torch.cat(xs), torch.cat(ids)
        if len(x) == 0:
            raise ValueError("no benign training node to fit the per-ID statistics on")
        count = torch.bincount(idx, minlength=self.num_ids).double().unsqueeze(1)
        total = torch.zeros(self.num_ids, x.size(1), dtype=x.dtype, device=x.device).index_add_(0, idx, x)
        squares = torch.zeros_like(total).index_add_(0, idx, x * x)
        mean = total / count.clamp_min(1)
        std = (squares / count.clamp_min(1) - mean * mean).clamp_min(0).sqrt()
        oov = torch.arange(self.num_ids, device=x.device) == self.num_ids - 1
        rare = (count.squeeze(1) < ID_STATS_MIN_NODES) | oov
        overall = x.std(0, correction=0)
        mean[rare], std[rare] = x.mean(0), overall
        std = std.clamp_min(ID_STD_FLOOR)
        # a column no benign training node varies in (has_timestamps when every capture had them) taught the
        # model nothing: it reads 0 there, not +-EDGE_CLIP on a capture where the column differs
        std[:, overall < 1e-9] = CONSTANT_COLUMN_STD
        self.id_novel.copy_(rare.float())
        self.id_mean.copy_(mean.float())
        self.id_std.copy_(std.float())

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        batch: Tensor,
        *,
        edge_attr: Tensor | None = None,
        num_graphs: int | None = None,
        return_embedding: bool = False,
        return_attention: bool = False,
    ):
        """Logits ``(B, 2)``.

        ``edge_attr`` (the store's 11 edge features) is read by the ``gatv2`` and ``transformer`` layers.
        ``num_graphs`` (B) saves reading ``batch.max()`` back, a sync that also breaks a compiled graph.

        With ``return_embedding`` and/or ``return_attention`` a tuple ``(logits, [embedding], [attention])``
        is returned, in that order, holding only what was asked for: ``embedding`` is the pooled pre-FC
        vector ``(B, embedding_dim)``; ``attention`` is a list with one ``(edge_index, alpha)`` per layer
        as returned by ``GATConv(return_attention_weights=True)`` (self-loops added; ``alpha`` is
        ``(E + N, heads)``).
        """
        h = self.node_input(x)
        edges: dict[str, Tensor] = {}
        if self.uses_edges:
            if edge_attr is None:
                raise ValueError(f"a {self.cfg.conv_type} GAT reads edge features: pass edge_attr")
            edge_attr = standardize(edge_attr, self.edge_mean, self.edge_std)
            edge_index, edges["edge_attr"] = with_self_loops_and_attributes(edge_index, edge_attr, x.size(0))
        else:
            edge_index = with_self_loops(edge_index, x.size(0))
        outs: list[Tensor] = []
        attention: list[tuple[Tensor, Tensor]] = []
        for conv in self.convs:
            if return_attention:
                h, (att_index, alpha) = conv(h, edge_index, return_attention_weights=True, **edges)
                attention.append((att_index, alpha))
            else:
                h = conv(h, edge_index, **edges)
            h = F.dropout(F.relu(h), p=self.dropout, training=self.training)
            outs.append(h)
        pooled = self.readout(outs[-1] if self.jk is None else self.jk(outs), batch, num_graphs)
        logits = self.head(pooled)
        if not (return_embedding or return_attention):
            return logits
        result: tuple = (logits,)
        if return_embedding:
            result += (pooled,)
        if return_attention:
            result += (attention,)
        return result

    def readout(self, h: Tensor, batch: Tensor, num_graphs: int | None) -> Tensor:
        """The graph vector of every window from its node vectors (``cfg.readout``)."""
        kind = self.cfg.readout
        if kind == "mean":
            return global_mean_pool(h, batch, size=num_graphs)
        if kind == "max":
            return global_max_pool(h, batch, size=num_graphs)
        if kind == "meanmax":
            return torch.cat(
                [global_mean_pool(h, batch, size=num_graphs), global_max_pool(h, batch, size=num_graphs)], -1
            )
        return self.pool(h, batch, dim_size=num_graphs)

    def reset_parameters(self) -> None:
        if self.pool is not None:
            self.pool.reset_parameters()
        if self.id_embedding is not None:
            self.id_embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        if self.jk is not None:
            self.jk.reset_parameters()
        for m in self.head:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"{self.__class__.__name__}(num_ids={self.num_ids}, hidden={c.hidden}, heads={c.heads}, "
            f"layers={c.layers}, jk={c.jk_mode}, fc_layers={c.fc_layers}, conv={c.conv_type}, readout={c.readout})"
        )


def on_batch(model: nn.Module, batch, **outputs):
    """``model`` (a :class:`GATJK`, compiled or not) on a PyG batch: every caller passes the same fields,
    and ``num_graphs`` so that pooling needs no device sync. ``outputs``: return_embedding / return_attention."""
    return model(
        batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr, num_graphs=batch.num_graphs, **outputs
    )


def _conv(cfg: GATConfig, in_channels: int, edge_dim: int) -> nn.Module:
    """One attention layer; self-loops are added once per forward pass, not by every layer."""
    if cfg.conv_type == "gatv2":
        return GATv2Conv(in_channels, cfg.hidden, heads=cfg.heads, concat=True, edge_dim=edge_dim, add_self_loops=False)
    if cfg.conv_type == "transformer":
        return TransformerConv(in_channels, cfg.hidden, heads=cfg.heads, concat=True, edge_dim=edge_dim)
    return GATConv(in_channels, cfg.hidden, heads=cfg.heads, concat=True, add_self_loops=False)
