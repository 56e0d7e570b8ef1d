"""Mini-batches gathered straight from a part's flat arrays.

``Batch.from_data_list`` loops over graphs in Python and dominates the cost with many small
graphs (pitfall C.2, ~50k graphs/s); :func:`assemble_batch` builds the same ``Batch`` with a few
vectorized numpy gathers. :class:`GraphBatchLoader` iterates a part in mini-batches, in order,
shuffled per epoch, or class-balanced, in-process (no worker processes: pitfall C.4) and always
with fresh tensors, so moving a batch to a device in place (``Batch.to``, pitfall C.5) never
touches shared data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from kdgat.core.errors import KdgatError

if TYPE_CHECKING:
    from kdgat.data.store import GraphPart

__all__ = ["assemble_batch", "EpochSampler", "GraphBatchLoader"]


def _as_indices(indices, num_graphs: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"graph indices must be 1-D, got shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        if idx.size == 0:
            idx = idx.astype(np.int64)
        else:
            raise ValueError(f"graph indices must be integers, got {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num_graphs):
        raise IndexError(f"graph indices must lie in [0, {num_graphs}), got [{int(idx.min())}, {int(idx.max())}]")
    return idx


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


_DATA_BATCH: type | None = None


def _data_batch_cls() -> type:
    """The ``DataBatch`` class ``Batch.from_data_list`` returns for ``Data`` objects."""
    global _DATA_BATCH
    if _DATA_BATCH is None:
        _DATA_BATCH = type(Batch(_base_cls=Data))
    return _DATA_BATCH


def assemble_batch(part: GraphPart, indices) -> Batch:
    """The graphs ``indices`` of ``part`` (in that order, repeats allowed) as one ``Batch``.

    Equal to ``Batch.from_data_list([part.graph(i) for i in indices])`` on ``x``, ``edge_index``
    (int64, offset by the cumulative node counts), ``edge_attr``, ``y`` (long, [B]), ``node_y``
    (long), ``attack_type`` (long, [B]), ``batch`` and ``ptr``; ``num_graphs``, ``get_example``
    and ``to_data_list`` work as on a collated batch. A contiguous ascending range is read with
    slices, anything else with one repeat/cumsum gather; there is no loop over graphs.
    """
    idx = _as_indices(indices, part.num_graphs)
    B = idx.shape[0]
    if B == 0:
        raise ValueError("cannot assemble a batch of 0 graphs")
    # plain ndarray views of the maps: np.memmap's own __getitem__ is several times slower
    node_offsets, edge_offsets = np.asarray(part.node_offsets), np.asarray(part.edge_offsets)
    xs, node_ys = np.asarray(part.x), np.asarray(part.node_y)
    edge_indexes, edge_attrs = np.asarray(part.edge_index), np.asarray(part.edge_attr)
    ys, attack_types = np.asarray(part.y), np.asarray(part.attack_type)
    i0 = int(idx[0])

    if B == 1 or (int(idx[-1]) - i0 == B - 1 and bool(np.all(np.diff(idx) == 1))):
        # contiguous range: plain slices of the maps
        no = np.array(node_offsets[i0 : i0 + B + 1])
        eo = np.array(edge_offsets[i0 : i0 + B + 1])
        n0, n1, e0, e1 = int(no[0]), int(no[-1]), int(eo[0]), int(eo[-1])
        ptr = no - n0
        eptr = eo - e0
        ncount = np.diff(ptr)
        ecount = np.diff(eptr)
        x = np.array(xs[n0:n1])
        node_y = node_ys[n0:n1].astype(np.int64)
        edge_index = edge_indexes[:, e0:e1].astype(np.int64)
        edge_attr = np.array(edge_attrs[e0:e1])
        y = ys[i0 : i0 + B].astype(np.int64)
        attack_type = attack_types[i0 : i0 + B].astype(np.int64)
    else:
        # arbitrary order / repeats: gather rows via repeat + arange
        nstart = np.take(node_offsets, idx)
        ncount = np.take(node_offsets, idx + 1) - nstart
        estart = np.take(edge_offsets, idx)
        ecount = np.take(edge_offsets, idx + 1) - estart
        ptr = np.zeros(B + 1, dtype=np.int64)
        np.cumsum(ncount, out=ptr[1:])
        eptr = np.zeros(B + 1, dtype=np.int64)
        np.cumsum(ecount, out=eptr[1:])
        node_src = np.repeat(nstart - ptr[:-1], ncount)
        node_src += np.arange(ptr[-1], dtype=np.int64)
        edge_src = np.repeat(estart - eptr[:-1], ecount)
        edge_src += np.arange(eptr[-1], dtype=np.int64)
        x = np.take(xs, node_src, axis=0)
        node_y = np.take(node_ys, node_src).astype(np.int64)
        edge_index = np.take(edge_indexes, edge_src, axis=1).astype(np.int64)
        edge_attr = np.take(edge_attrs, edge_src, axis=0)
        y = np.take(ys, idx).astype(np.int64)
        attack_type = np.take(attack_types, idx).astype(np.int64)

    if edge_index.shape[1]:
        edge_index += np.repeat(ptr[:-1], ecount)
    batch_vec = np.repeat(np.arange(B, dtype=np.int64), ncount)

    ptr_t = _t(ptr)
    eptr_t = _t(eptr)
    graph_ptr = torch.arange(B + 1, dtype=torch.long)
    zeros = torch.zeros(B, dtype=torch.long)
    # type.__call__ on the cached DataBatch class skips Batch's metaclass, which builds a
    # class and inspects a signature on every call (~40 us); the result is the same object
    out = type.__call__(
        _data_batch_cls(),
        x=_t(x),
        edge_index=_t(edge_index),
        edge_attr=_t(edge_attr),
        y=_t(y),
        node_y=_t(node_y),
        attack_type=_t(attack_type),
        batch=_t(batch_vec),
        ptr=ptr_t,
    )
    out._num_graphs = B
    out._slice_dict = {
        "x": ptr_t,
        "edge_index": eptr_t,
        "edge_attr": eptr_t,
        "y": graph_ptr,
        "node_y": ptr_t,
        "attack_type": graph_ptr,
    }
    out._inc_dict = {
        "x": zeros,
        "edge_index": ptr_t[:-1],
        "edge_attr": zeros,
        "y": zeros,
        "node_y": zeros,
        "attack_type": zeros,
    }
    return out


class EpochSampler:
    """The order in which a loader visits graphs, a pure function of (seed, epoch).

    ``shuffle``: a permutation of ``indices`` per epoch. ``balanced``: ``len(indices)`` draws with
    replacement, each graph weighted by the inverse frequency of its class among the labelled
    graphs (y in {0, 1}); unlabelled graphs (y = -1) are never drawn. Otherwise: ``indices`` in
    order. Lightning calls :meth:`set_epoch` (it looks for ``loader.sampler.set_epoch``).
    """

    def __init__(self, indices: np.ndarray, *, shuffle: bool = False, seed: int = 0, labels: np.ndarray | None = None):
        self.indices = indices
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self.balanced = labels is not None
        self._p = None
        if labels is not None:
            labels = np.asarray(labels)
            n0 = int(np.count_nonzero(labels == 0))
            n1 = int(np.count_nonzero(labels == 1))
            if n0 + n1 == 0:
                raise KdgatError("balanced sampling needs labelled graphs (y in {0, 1}); this part has none")
            w = np.zeros(labels.shape[0], dtype=np.float64)
            if n0:
                w[labels == 0] = 1.0 / n0
            if n1:
                w[labels == 1] = 1.0 / n1
            self._p = w / w.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Graph indices for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = self.indices.shape[0]
        if self._p is not None:
            rng = np.random.default_rng([self.seed, epoch])
            return self.indices[rng.choice(n, size=n, replace=True, p=self._p)]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            return self.indices[rng.permutation(n)]
        return self.indices

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())


class GraphBatchLoader:
    """Iterates ``part`` in batches of ``batch_size`` graphs (see :func:`assemble_batch`).

    ``indices`` restricts it to a subset (default: every graph). ``shuffle`` reshuffles every
    epoch from (seed, epoch); ``sampler="balanced"`` draws class-balanced with replacement
    (``len(indices)`` draws per epoch). A pass uses the current epoch and, once it has run to
    the end, advances it by one, so a plain ``for epoch ...: for batch in loader`` reshuffles;
    :meth:`set_epoch` (Lightning calls ``loader.sampler.set_epoch`` every epoch) pins it.
    """

    def __init__(
        self,
        part: GraphPart,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        sampler: Literal["balanced"] | None = None,
        drop_last: bool = False,
        indices=None,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if sampler not in (None, "balanced"):
            raise ValueError(f"sampler must be None or 'balanced', got {sampler!r}")
        self.part = part
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        idx = np.arange(part.num_graphs, dtype=np.int64) if indices is None else _as_indices(indices, part.num_graphs)
        labels = np.asarray(part.y[idx]) if sampler == "balanced" else None
        self.sampler = EpochSampler(idx, shuffle=shuffle, seed=seed, labels=labels)
        # DataLoader look-alike attributes Lightning probes (``set_epoch`` is found on ``sampler``)
        self.batch_sampler = None

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        # a generator: nothing is computed until the first batch is asked for (Lightning calls
        # iter() once just to probe that the loader is iterable)
        epoch = self.sampler.epoch
        order = self.sampler.order(epoch)
        bs = self.batch_size
        stop = min(len(self) * bs, order.shape[0])
        for start in range(0, stop, bs):
            yield assemble_batch(self.part, order[start : start + bs])
        if self.sampler.epoch == epoch:
            self.sampler.set_epoch(epoch + 1)
