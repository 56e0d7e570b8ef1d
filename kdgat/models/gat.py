"""GAT with jumping knowledge: the graph classifier (reference design 3.3, "GATWithJK").

Node input: column 0 of ``x`` is the CAN-ID vocabulary index, looked up in an embedding and
concatenated with the numeric columns ``x[:, 1:]``. ``layers`` GATConv layers (``heads`` heads of
``hidden`` channels, concatenated), each followed by ReLU then dropout; jumping knowledge over the
layer outputs (cat / max / lstm with PyG's ``JumpingKnowledge``, or just the last layer); global mean
pool; FC head; two logits (benign, attack).

Pure ``nn.Module``: no I/O, no logging, no device logic.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, JumpingKnowledge, global_mean_pool

from kdgat.core.schema import GATConfig
from kdgat.models.inputs import check_sizes, embed_ids, with_self_loops

__all__ = ["GATJK", "NUM_CLASSES"]

NUM_CLASSES = 2


class GATJK(nn.Module):
    """Graph classifier: ID embedding -> GATConv stack -> jumping knowledge -> mean pool -> FC head.

    Args:
        num_ids (int): vocabulary size (including the out-of-vocabulary index).
        cfg (GATConfig): the ``gat`` config section (``hidden`` is per head).
        num_features (int, optional): columns of ``x``, the ID index included. (default: 11)

    Parameter count with the E4 configs (reference 3.4): large 310,658 + 16·N, small 48,962 + 8·N.
    """

    def __init__(self, num_ids: int, cfg: GATConfig, num_features: int = 11):
        super().__init__()
        check_sizes(num_ids, num_features)
        self.num_ids = num_ids
        self.num_features = num_features
        self.cfg = cfg
        self.dropout = cfg.dropout

        self.id_embedding = nn.Embedding(num_ids, cfg.id_emb_dim)
        width = cfg.hidden * cfg.heads
        in_channels = cfg.id_emb_dim + num_features - 1
        self.convs = nn.ModuleList()
        for i in range(cfg.layers):
            conv_in = in_channels if i == 0 else width
            # self-loops are added once per forward pass (with_self_loops), not by every layer
            self.convs.append(GATConv(conv_in, cfg.hidden, heads=cfg.heads, concat=True, add_self_loops=False))

        # PyG's JumpingKnowledge covers cat / max / lstm; "last" is the last layer's output (as in BasicGNN)
        self.jk: JumpingKnowledge | None
        if cfg.jk_mode == "last":
            self.jk = None
        elif cfg.jk_mode == "lstm":
            self.jk = JumpingKnowledge("lstm", channels=width, num_layers=cfg.layers)
        else:
            self.jk = JumpingKnowledge(cfg.jk_mode)
        self.embedding_dim = width * cfg.layers if cfg.jk_mode == "cat" else width

        d = self.embedding_dim
        head: list[nn.Module] = []
        for _ in range(cfg.fc_layers - 1):
            head += [nn.Linear(d, d), nn.ReLU(), nn.Dropout(cfg.dropout)]
        head.append(nn.Linear(d, NUM_CLASSES))
        self.head = nn.Sequential(*head)

    def node_input(self, x: Tensor) -> Tensor:
        """``[embedding(x[:, 0]) | x[:, 1:]]``, width ``id_emb_dim + num_features - 1``."""
        return embed_ids(self.id_embedding, x)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        batch: Tensor,
        *,
        num_graphs: int | None = None,
        return_embedding: bool = False,
        return_attention: bool = False,
    ):
        """Logits ``(B, 2)``.

        ``num_graphs`` (B) saves reading ``batch.max()`` back, a sync that also breaks a compiled graph.

        With ``return_embedding`` and/or ``return_attention`` a tuple ``(logits, [embedding], [attention])``
        is returned, in that order, holding only what was asked for: ``embedding`` is the pooled pre-FC
        vector ``(B, embedding_dim)``; ``attention`` is a list with one ``(edge_index, alpha)`` per layer
        as returned by ``GATConv(return_attention_weights=True)`` (self-loops added; ``alpha`` is
        ``(E + N, heads)``).
        """
        h = self.node_input(x)
        edge_index = with_self_loops(edge_index, x.size(0))
        outs: list[Tensor] = []
        attention: list[tuple[Tensor, Tensor]] = []
        for conv in self.convs:
            if return_attention:
                h, (att_index, alpha) = conv(h, edge_index, return_attention_weights=True)
                attention.append((att_index, alpha))
            else:
                h = conv(h, edge_index)
            h = F.dropout(F.relu(h), p=self.dropout, training=self.training)
            outs.append(h)
        pooled = global_mean_pool(outs[-1] if self.jk is None else self.jk(outs), batch, size=num_graphs)
        logits = self.head(pooled)
        if not (return_embedding or return_attention):
            return logits
        result: tuple = (logits,)
        if return_embedding:
            result += (pooled,)
        if return_attention:
            result += (attention,)
        return result

    def reset_parameters(self) -> None:
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
            f"layers={c.layers}, jk={c.jk_mode}, fc_layers={c.fc_layers})"
        )
