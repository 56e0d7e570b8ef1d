"""Graph store layout, batch assembly from the flat arrays, loaders and the DataModule.

Small random parts built with numpy; no dataset files needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from kdgat.core.errors import KdgatError
from kdgat.data.batching import GraphBatchLoader, assemble_batch
from kdgat.data.store import PART_ARRAYS, concat_parts, open_part, open_store, write_part
from kdgat.training.datamodule import GraphDataModule

F_NODE, F_EDGE = 11, 5


def make_arrays(
    seed: int = 0, num_graphs: int = 40, *, attack_share: float = 0.3, num_files: int = 2, special: bool = True
) -> dict:
    """Random part arrays; with ``special`` graph 3 has 0 edges and graph 5 one node (and a self-loop)."""
    rng = np.random.default_rng(seed)
    ncount = rng.integers(2, 9, size=num_graphs)
    ecount = rng.integers(1, 15, size=num_graphs)
    if special:
        ecount[3] = 0
        ncount[5], ecount[5] = 1, 1
    node_offsets = np.concatenate([[0], np.cumsum(ncount)]).astype(np.int64)
    edge_offsets = np.concatenate([[0], np.cumsum(ecount)]).astype(np.int64)
    N, E = int(node_offsets[-1]), int(edge_offsets[-1])
    limit = np.repeat(ncount, ecount)
    edge_index = (rng.random((2, E)) * limit).astype(np.int32)
    y = (rng.random(num_graphs) < attack_share).astype(np.int8)
    return dict(
        files=[f"/data/file_{seed}_{k}.csv" for k in range(num_files)],
        node_offsets=node_offsets,
        edge_offsets=edge_offsets,
        x=rng.standard_normal((N, F_NODE)).astype(np.float32),
        node_y=rng.integers(0, 2, size=N).astype(np.int8),
        edge_index=edge_index,
        edge_attr=rng.standard_normal((E, F_EDGE)).astype(np.float32),
        y=y,
        attack_type=(y * rng.integers(1, 4, size=num_graphs)).astype(np.int16),
        window_start=(np.arange(num_graphs) * 100).astype(np.int64),
        file_index=rng.integers(0, num_files, size=num_graphs).astype(np.int32),
    )


def write(part_dir: Path, arrays: dict, name: str | None = None, split: str = "train", scenario: str = "train"):
    return write_part(part_dir, name=name or part_dir.name, split=split, scenario=scenario, **arrays)


def write_metadata(store: Path, parts: dict[str, tuple[str, str]]) -> None:
    store.mkdir(parents=True, exist_ok=True)
    (store / "metadata.json").write_text(
        json.dumps(
            {
                "node_features": [f"n{i}" for i in range(F_NODE)],
                "edge_features": [f"e{i}" for i in range(F_EDGE)],
                "attack_types": ["normal", "dos", "fuzzing", "replay"],
                "parts": {n: {"split": s, "scenario": c} for n, (s, c) in parts.items()},
                "vocab_size": 42,
            }
        )
    )


@pytest.fixture()
def part(tmp_path):
    arrays = make_arrays()
    write(tmp_path / "p", arrays)
    return open_part(tmp_path / "p")


# ------------------------------------------------------------------------------------------
# store
# ------------------------------------------------------------------------------------------


def test_write_open_round_trip(tmp_path):
    arrays = make_arrays()
    info = write(tmp_path / "parts" / "train", arrays)
    assert info == json.loads((tmp_path / "parts" / "train" / "part.json").read_text())
    assert info["num_graphs"] == 40 and info["num_nodes"] == arrays["x"].shape[0]
    assert info["num_edges"] == arrays["edge_attr"].shape[0] and info["files"] == arrays["files"]
    write_metadata(tmp_path, {"train": ("train", "train")})

    store = open_store(tmp_path)
    assert store.metadata["vocab_size"] == 42 and list(store.parts) == ["train"]
    p = store.part("train")
    for spec in PART_ARRAYS:
        arr = getattr(p, spec.name)
        assert isinstance(arr, np.memmap), spec.name
        assert arr.dtype == spec.dtype and arr.ndim == spec.ndim
        np.testing.assert_array_equal(arr, arrays[spec.name])
    assert p.num_graphs == 40 and p.num_node_features == F_NODE and p.num_edge_features == F_EDGE
    np.testing.assert_array_equal(p.labels(), arrays["y"])

    g = p.graph(3)  # the 0-edge graph
    assert g.edge_index.shape == (2, 0) and g.edge_index.dtype == torch.int64 and g.edge_attr.shape == (0, F_EDGE)
    g = p.graph(5)  # the 1-node graph
    assert g.num_nodes == 1 and g.y.shape == (1,) and g.y.dtype == torch.long
    a, b = arrays["node_offsets"][7:9]
    np.testing.assert_array_equal(p.graph(7).x.numpy(), arrays["x"][a:b])
    with pytest.raises(IndexError):
        p.graph(40)


def test_write_part_casts_lossless_dtypes(tmp_path):
    arrays = make_arrays()
    arrays.update(
        edge_index=arrays["edge_index"].astype(np.int64),
        x=arrays["x"].astype(np.float64),
        y=arrays["y"].astype(np.int64),
        node_offsets=arrays["node_offsets"].astype(np.int32),
    )
    write(tmp_path / "p", arrays)
    p = open_part(tmp_path / "p")
    assert p.edge_index.dtype == np.int32 and p.x.dtype == np.float32 and p.y.dtype == np.int8


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.update(node_offsets=a["node_offsets"][[0, 2, 1, *range(3, 41)]]), "node_offsets"),
        (lambda a: a.update(node_offsets=np.concatenate([[0, 0], a["node_offsets"][2:]])), "strictly"),
        (lambda a: a.update(edge_offsets=a["edge_offsets"][[0, 2, 1, *range(3, 41)]]), "not monotone"),
        (lambda a: a.update(node_offsets=a["node_offsets"] + 1), "start at 0"),
        (lambda a: a.update(edge_index=a["edge_index"].astype(np.float32)), "edge_index has dtype float32"),
        (lambda a: a.update(x=a["x"].astype(np.int64)), "x has dtype int64"),
        (lambda a: a.update(x=a["x"][:, 0]), "x must be 2-D"),
        (lambda a: a.update(edge_index=a["edge_index"].T.copy()), r"shape \(2, E\)"),
        (lambda a: a.update(y=a["y"][:-1]), "y has 39 entries"),
        (lambda a: a.update(edge_attr=a["edge_attr"][:-1]), "entries"),
        (lambda a: a.update(y=np.full(40, 2, np.int8)), "y has value 2"),
        (lambda a: a.update(file_index=np.full(40, 2, np.int32)), "file_index"),
        (lambda a: a["edge_index"].__setitem__((0, 0), 99), "local node index"),
        (lambda a: a.update(attack_type=np.full(40, 40000, np.int64)), "do not fit in int16"),
    ],
)
def test_write_part_rejects_bad_arrays(tmp_path, change, match):
    arrays = make_arrays()
    change(arrays)
    with pytest.raises(KdgatError, match=match):
        write(tmp_path / "p", arrays)
    assert not (tmp_path / "p").exists()
    assert list(tmp_path.iterdir()) == []  # no staging leftovers


def test_rewrite_replaces_part(tmp_path):
    write(tmp_path / "p", make_arrays(seed=0))
    write(tmp_path / "p", make_arrays(seed=1, num_graphs=12))
    assert open_part(tmp_path / "p").num_graphs == 12
    assert [d.name for d in tmp_path.iterdir()] == ["p"]


def test_open_store_errors(tmp_path):
    with pytest.raises(KdgatError, match="no such folder"):
        open_store(tmp_path / "nope")
    tmp_path.joinpath("s").mkdir()
    with pytest.raises(KdgatError, match="missing file .*metadata.json"):
        open_store(tmp_path / "s")
    write_metadata(tmp_path / "s", {})
    with pytest.raises(KdgatError, match="missing folder parts"):
        open_store(tmp_path / "s")
    write(tmp_path / "s" / "parts" / "train", make_arrays())
    store = open_store(tmp_path / "s")
    with pytest.raises(KdgatError, match="no part 'val'"):
        store.part("val")
    write_metadata(tmp_path / "s", {"train": ("train", "train"), "val": ("val", "val")})
    with pytest.raises(KdgatError, match="missing part folder parts/val"):
        open_store(tmp_path / "s")
    write_metadata(tmp_path / "s", {"train": ("train", "train")})
    (tmp_path / "s" / "parts" / "train" / "node_y.npy").unlink()
    with pytest.raises(KdgatError, match="missing file node_y.npy"):
        open_store(tmp_path / "s")
    np.save(tmp_path / "s" / "parts" / "train" / "node_y.npy", np.zeros(3, np.int8))
    with pytest.raises(KdgatError, match="shape mismatch"):
        open_store(tmp_path / "s")
    np.save(tmp_path / "s" / "parts" / "train" / "node_y.npy", np.zeros(3, np.int64))
    with pytest.raises(KdgatError, match="int64"):
        open_store(tmp_path / "s")
    write(tmp_path / "s" / "parts" / "train", make_arrays())
    (tmp_path / "s" / "metadata.json").write_text(json.dumps({"node_features": ["a"], "edge_features": []}))
    with pytest.raises(KdgatError, match="shape mismatch"):
        open_store(tmp_path / "s")


def test_concat_parts_equals_in_memory_concat(tmp_path):
    a1, a2, a3 = make_arrays(seed=1, num_graphs=20), make_arrays(seed=2, num_graphs=15), make_arrays(seed=3)
    a2["files"] = [a1["files"][1], "/data/other.csv"]  # shared file: deduplicated
    for k, a in enumerate((a1, a2, a3)):
        write(tmp_path / f"in{k}", a)
    info = concat_parts(
        tmp_path / "out", [tmp_path / f"in{k}" for k in range(3)], name="out", split="train", scenario="train"
    )
    files = a1["files"] + ["/data/other.csv"] + a3["files"]
    assert info["files"] == files and info["num_graphs"] == 75
    p = open_part(tmp_path / "out")
    parts = (a1, a2, a3)
    for key in ("x", "node_y", "edge_attr", "y", "attack_type", "window_start"):
        np.testing.assert_array_equal(getattr(p, key), np.concatenate([a[key] for a in parts]), err_msg=key)
    np.testing.assert_array_equal(p.edge_index, np.concatenate([a["edge_index"] for a in parts], axis=1))
    for key in ("node_offsets", "edge_offsets"):
        expected = np.concatenate([[0], np.cumsum(np.concatenate([np.diff(a[key]) for a in parts]))])
        np.testing.assert_array_equal(getattr(p, key), expected)
    source_files = [a["files"][i] for a in parts for i in a["file_index"]]
    assert [p.files[i] for i in p.file_index] == source_files
    # graph by graph identical to its source
    g = p.graph(20 + 7)
    src = open_part(tmp_path / "in1").graph(7)
    for key in ("x", "edge_index", "edge_attr", "y", "node_y", "attack_type"):
        assert torch.equal(g[key], src[key]), key
    with pytest.raises(KdgatError, match="also an input"):
        concat_parts(tmp_path / "in0", [tmp_path / "in0"], name="x", split="train", scenario="train")


# ------------------------------------------------------------------------------------------
# batch assembly
# ------------------------------------------------------------------------------------------

KEYS = ("x", "edge_index", "edge_attr", "y", "node_y", "attack_type", "batch", "ptr")


def assert_same_batch(got: Batch, want: Batch) -> None:
    assert type(got) is type(want)
    for key in KEYS:
        a, b = got[key], want[key]
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), key
    assert got.num_graphs == want.num_graphs


@pytest.mark.parametrize(
    "indices",
    [
        np.arange(40),
        np.arange(2, 9),  # contains the 0-edge graph 3 and the 1-node graph 5
        np.array([5]),
        np.array([3]),
        np.array([9, 3, 5, 5, 0, 39, 3, 12, 5]),  # arbitrary order, repeats
        np.random.default_rng(7).integers(0, 40, size=64),
    ],
)
def test_assemble_batch_equals_from_data_list(part, indices):
    got = assemble_batch(part, indices)
    want = Batch.from_data_list([part.graph(i) for i in indices])
    assert_same_batch(got, want)
    assert got.num_graphs == len(indices)
    assert got.edge_index.dtype == torch.int64 and got.y.shape == (len(indices),)
    # the batch splits back into the same graphs
    for k in (0, len(indices) - 1):
        ex, ref = got.get_example(k), part.graph(int(indices[k]))
        for key in ("x", "edge_index", "edge_attr", "y", "node_y", "attack_type"):
            assert torch.equal(ex[key], ref[key]), key


def test_assemble_batch_bad_indices(part):
    with pytest.raises(IndexError):
        assemble_batch(part, [0, 40])
    with pytest.raises(ValueError):
        assemble_batch(part, [])


def test_gat_forward_on_assembled_batch(part):
    from torch_geometric.nn import GATConv, global_mean_pool

    torch.manual_seed(0)
    conv = GATConv(F_NODE, 8, heads=2, edge_dim=F_EDGE)
    b = assemble_batch(part, np.array([9, 3, 5, 0, 17]))
    h = conv(b.x, b.edge_index, b.edge_attr)
    out = global_mean_pool(h, b.batch)
    assert out.shape == (b.num_graphs, 16) and torch.isfinite(out).all()
    out.sum().backward()


# ------------------------------------------------------------------------------------------
# loader
# ------------------------------------------------------------------------------------------


def collect(loader) -> np.ndarray:
    """Graph indices visited by one pass, read back through the sampler's order and checked on the batches."""
    order = loader.sampler.order()
    batches = list(loader)
    assert len(batches) == len(loader)
    assert sum(b.num_graphs for b in batches) == len(order) or loader.drop_last
    y = torch.cat([b.y for b in batches]).numpy()
    np.testing.assert_array_equal(y, np.asarray(loader.part.y)[order[: y.shape[0]]])
    return order


def test_loader_in_order_covers_every_graph_once(part):
    loader = GraphBatchLoader(part, 16)
    assert len(loader) == 3
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [16, 16, 8]
    assert_same_batch(batches[1], Batch.from_data_list([part.graph(i) for i in range(16, 32)]))
    assert len(GraphBatchLoader(part, 16, drop_last=True)) == 2
    assert [b.num_graphs for b in GraphBatchLoader(part, 16, drop_last=True)] == [16, 16]
    sub = GraphBatchLoader(part, 4, indices=[1, 3, 5, 7, 9])
    assert [b.num_graphs for b in sub] == [4, 1]


def test_loader_shuffle_per_epoch(part):
    loader = GraphBatchLoader(part, 7, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        order = collect(loader)
        assert sorted(order.tolist()) == list(range(40))  # every graph exactly once
        orders.append(order.tolist())
        # the batches really follow that order
        loader.set_epoch(epoch)
        first = next(iter(loader))
        assert_same_batch(first, Batch.from_data_list([part.graph(i) for i in order[:7]]))
    assert orders[0] != orders[1] != orders[2]
    again = GraphBatchLoader(part, 7, shuffle=True, seed=3)
    again.set_epoch(1)
    assert again.sampler.order().tolist() == orders[1]
    other_seed = GraphBatchLoader(part, 7, shuffle=True, seed=4)
    other_seed.set_epoch(1)
    assert other_seed.sampler.order().tolist() != orders[1]
    # iterating advances the epoch by itself
    auto = GraphBatchLoader(part, 7, shuffle=True, seed=3)
    list(auto)
    assert auto.epoch == 1 and auto.sampler.order().tolist() == orders[1]


def test_balanced_sampler(tmp_path):
    arrays = make_arrays(seed=5, num_graphs=2000, attack_share=0.05)
    arrays["y"][:10] = -1  # unknown labels are never drawn
    write(tmp_path / "p", arrays)
    p = open_part(tmp_path / "p")
    share = float((p.labels() == 1).mean())
    assert 0.03 < share < 0.07
    loader = GraphBatchLoader(p, 64, sampler="balanced", seed=0)
    assert len(loader) == 32
    y = torch.cat([b.y for b in loader]).numpy()
    assert y.shape == (2000,) and (y >= 0).all()
    assert 0.4 < (y == 1).mean() < 0.6
    loader.set_epoch(0)
    first = loader.sampler.order()
    loader.set_epoch(0)
    np.testing.assert_array_equal(loader.sampler.order(), first)
    loader.set_epoch(1)
    assert not np.array_equal(loader.sampler.order(), first)


# ------------------------------------------------------------------------------------------
# DataModule
# ------------------------------------------------------------------------------------------


@pytest.fixture()
def store_dir(tmp_path):
    layout = {
        "train": ("train", "train", 50),
        "val": ("val", "val", 12),
        "test__replay": ("test", "replay", 9),
        "test__dos": ("test", "dos", 17),
    }
    for k, (name, (split, scenario, n)) in enumerate(layout.items()):
        write(tmp_path / "parts" / name, make_arrays(seed=10 + k, num_graphs=n), split=split, scenario=scenario)
    write_metadata(tmp_path, {n: (s, c) for n, (s, c, _) in layout.items()})
    return tmp_path


def test_datamodule_serves_the_windows_a_model_learns_from(store_dir):
    store = open_store(store_dir)
    train_y, val_y = np.asarray(store.part("train").y), np.asarray(store.part("val").y)
    dm = GraphDataModule(store, batch_size=8, seed=1)
    assert dm.train_indices.tolist() == np.flatnonzero(train_y >= 0).tolist()
    first, second = dm.train_dataloader(), dm.train_dataloader()
    assert first.batch_size == 8 and sum(b.num_graphs for b in first) == len(dm.train_indices)
    assert first.sampler.order(0).tolist() == second.sampler.order(0).tolist()  # a pure function of (seed, epoch)
    assert first.sampler.order(0).tolist() != first.sampler.order(1).tolist()  # reshuffled every epoch

    benign = GraphDataModule(store, batch_size=8, labels=(0,))  # what the VGAE trains on
    assert len(benign.train_indices) == int((train_y == 0).sum()) < len(train_y)
    assert {int(y) for b in benign.train_dataloader() for y in b.y} == {0}
    assert {int(y) for b in benign.val_dataloader() for y in b.y} == {0}
    assert sum(b.num_graphs for b in benign.val_dataloader()) == int((val_y == 0).sum())

    tests = dm.test_dataloader()
    assert [lo.part.name for lo in tests] == ["test__dos", "test__replay"]
    assert [sum(b.num_graphs for b in lo) for lo in tests] == [17, 9]
    with pytest.raises(KdgatError, match="no labelled graphs"):
        GraphDataModule(store, batch_size=8, labels=(7,))


def test_datamodule_with_lightning_trainer(store_dir):
    """Lightning accepts the loaders, moves the batches, and reshuffles every epoch."""
    import lightning.pytorch as pl
    from torch_geometric.nn import GATConv, global_mean_pool

    seen: list[torch.Tensor] = []

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.conv = GATConv(F_NODE, 4, edge_dim=F_EDGE)
            self.head = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            if batch_idx == 0:
                seen.append(batch.x[:, 0].clone())
            h = global_mean_pool(self.conv(batch.x, batch.edge_index, batch.edge_attr), batch.batch)
            return torch.nn.functional.cross_entropy(self.head(h), batch.y)

        def validation_step(self, batch, batch_idx):
            h = global_mean_pool(self.conv(batch.x, batch.edge_index, batch.edge_attr), batch.batch)
            self.log("val_loss", torch.nn.functional.cross_entropy(self.head(h), batch.y), batch_size=batch.num_graphs)

        def test_step(self, batch, batch_idx, dataloader_idx=0):
            h = global_mean_pool(self.conv(batch.x, batch.edge_index, batch.edge_attr), batch.batch)
            self.log("test_loss", torch.nn.functional.cross_entropy(self.head(h), batch.y), batch_size=batch.num_graphs)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    dm = GraphDataModule(open_store(store_dir), batch_size=16, seed=0)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Tiny(), datamodule=dm)
    assert len(seen) == 2
    # epoch e visits the order of (seed, e)
    reference = GraphBatchLoader(open_part(store_dir / "parts" / "train"), 16, shuffle=True, seed=0)
    for epoch in range(2):
        expected = assemble_batch(reference.part, reference.sampler.order(epoch)[:16]).x[:, 0]
        assert torch.equal(seen[epoch], expected), epoch
    assert not torch.equal(seen[0], seen[1])
    results = trainer.test(Tiny(), datamodule=dm, verbose=False)
    assert len(results) == 2


def test_scoring_batches_start_again_at_each_capture(monkeypatch):
    """`kdgat detect` scores each capture in batches from its first window; evaluate batched a part straight
    through, so a batch held the end of one capture and the start of the next, and a score moved in its last bits
    (0.11360765 vs 0.113607675)."""
    from types import SimpleNamespace

    from kdgat.evaluation import scoring

    monkeypatch.setattr(scoring, "assemble_batch", lambda part, index: index.tolist())
    part = SimpleNamespace(file_index=np.array([0] * 5 + [1] * 3 + [2]), num_graphs=9)
    assert list(scoring._batches(part, 4)) == [[0, 1, 2, 3], [4], [5, 6, 7], [8]]
