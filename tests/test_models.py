"""GATJK, VGAE, the model factory and the distillation losses (tiny hand-made batches, no data files)."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GATConv

from kdgat.core.config import resolve_config
from kdgat.models import GATJK, VGAE, build_model
from kdgat.models.inputs import with_self_loops
from kdgat.models.vgae import KNOWN_CAP, NOVEL_FLOOR, neighbourhood_targets
from kdgat.training.kd import LatentProjection, count_parameters, gat_kd_loss, vgae_kd_loss

SCALES = ("large", "small")
NUM_IDS = 30


def section(kind: str, scale: str, **update):
    """A model section of the presets; GATs with the study's ID embedding unless ``id_input`` is given (the
    reference parameter counts are the study's; the zscore default has tests of its own below)."""
    cfg = getattr(resolve_config(kind, scale), kind)
    if kind == "gat":
        update = {"id_input": "embedding", **update}
    return cfg.model_copy(update=update)


def tiny_batch(num_ids: int = NUM_IDS, sizes=(4, 5, 6), num_features: int = 11, seed: int = 0) -> Batch:
    """Graphs with distinct vocabulary IDs per node, edges both ways along a chain (no self-loops)."""
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        ids = torch.randperm(num_ids, generator=g)[:n].float()
        x = torch.cat([ids[:, None], torch.rand(n, num_features - 1, generator=g)], dim=1)
        a = torch.arange(n - 1)
        edge_index = torch.cat([torch.stack([a, a + 1]), torch.stack([a + 1, a])], dim=1)
        edge_attr = torch.rand(edge_index.size(1), 11, generator=g)
        graphs.append(Data(x=x, edge_index=edge_index, edge_attr=edge_attr, y=torch.tensor([n % 2])))
    return Batch.from_data_list(graphs)


# -- parameter counts (reference design 3.4) ------------------------------------------------------

EXPECTED = {
    ("gat", "large"): (310_658, 16),
    ("gat", "small"): (48_962, 8),
    ("vgae", "large"): (181_950, 130),
    ("vgae", "small"): (8_046, 38),
}


@pytest.mark.parametrize("kind,scale", list(EXPECTED))
@pytest.mark.parametrize("num_ids", [30, 2049])
def test_parameter_counts(kind, scale, num_ids):
    base, per_id = EXPECTED[kind, scale]
    model = build_model(kind, num_ids, section(kind, scale))
    assert count_parameters(model) == base + per_id * num_ids


def test_parameter_counts_reference_export():
    # the repository export at N = 30 quoted in reference 3.4
    got = {(k, s): count_parameters(build_model(k, 30, section(k, s))) for k, s in EXPECTED}
    assert got == {
        ("gat", "large"): 311_138,
        ("gat", "small"): 49_202,
        ("vgae", "large"): 185_850,
        ("vgae", "small"): 9_186,
    }


def test_count_parameters_skips_frozen_and_buffers():
    model = build_model("vgae", 30, section("vgae", "small"))
    total = count_parameters(model)
    model.id_embedding.weight.requires_grad_(False)
    assert count_parameters(model) == total - 30 * 4
    assert sum(b.numel() for b in model.buffers()) > 0  # BatchNorm running stats exist but are not counted


def test_build_model_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("dqn", 30, section("gat", "small"))
    with pytest.raises(TypeError, match="GATConfig"):
        build_model("gat", 30, section("vgae", "small"))


# -- GAT -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
def test_gat_shapes(scale):
    cfg = section("gat", scale)
    model = GATJK(NUM_IDS, cfg).eval()
    b = tiny_batch()
    logits = model(b.x, b.edge_index, b.batch)
    assert logits.shape == (3, 2)

    logits2, emb, attention = model(b.x, b.edge_index, b.batch, return_embedding=True, return_attention=True)
    assert torch.equal(logits, logits2)
    assert emb.shape == (3, cfg.hidden * cfg.heads * cfg.layers)
    assert len(attention) == cfg.layers
    n, e = b.num_nodes, b.edge_index.size(1)
    for att_index, alpha in attention:
        assert att_index.shape == (2, e + n)  # GATConv adds one self-loop per node
        assert alpha.shape == (e + n, cfg.heads)

    only_emb = model(b.x, b.edge_index, b.batch, return_embedding=True)
    assert len(only_emb) == 2 and torch.equal(only_emb[1], emb)
    only_att = model(b.x, b.edge_index, b.batch, return_attention=True)
    assert len(only_att) == 2 and isinstance(only_att[1], list)


@pytest.mark.parametrize("jk_mode", ["cat", "last", "max", "lstm"])
def test_gat_every_jk_mode(jk_mode):
    cfg = section("gat", "small", jk_mode=jk_mode)
    model = GATJK(NUM_IDS, cfg)
    b = tiny_batch()
    logits, emb = model(b.x, b.edge_index, b.batch, return_embedding=True)
    width = cfg.hidden * cfg.heads
    assert logits.shape == (3, 2)
    assert emb.shape == (3, width * cfg.layers if jk_mode == "cat" else width)
    logits.sum().backward()


def test_gat_other_feature_width():
    model = GATJK(NUM_IDS, section("gat", "small"), num_features=14)
    b = tiny_batch(num_features=14)
    assert model(b.x, b.edge_index, b.batch).shape == (3, 2)


# -- VGAE ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(
    "target,window_score", [("standardized", "novel_first"), ("standardized", "id_feature_max"), ("raw", "mean")]
)
def test_vgae_shapes(scale, target, window_score):
    """The default (standardised targets, most abnormal node), its earlier form and the study's (sigmoid, mean
    error)."""
    cfg = section("vgae", scale, target=target, window_score=window_score)
    model = VGAE(NUM_IDS, cfg)
    b = tiny_batch()
    out = model(b.x, b.edge_index, b.batch)
    n = b.num_nodes
    assert set(out) == {"z", "mu", "logvar", "recon", "id_logits", "nbr_logits"}
    for key in ("z", "mu", "logvar"):
        assert out[key].shape == (n, cfg.latent_dim)
    assert out["recon"].shape == (n, 10)
    if target == "raw":  # the study's sigmoid output; standardised targets are unbounded (linear output)
        assert ((out["recon"] >= 0) & (out["recon"] <= 1)).all()
    else:
        assert (out["recon"] < 0).any() or (out["recon"] > 1).any()
    assert out["id_logits"].shape == (n, NUM_IDS)
    assert out["nbr_logits"].shape == (n, NUM_IDS)

    scores = model.graph_scores(out, b.x, b.edge_index, b.batch)
    assert set(scores) == {"recon", "nbr", "id", "z_mean", "z_std", "z_max", "z_min", "anomaly"}
    for value in scores.values():
        assert value.shape == (3,)
        assert torch.isfinite(value).all()
    if window_score == "mean":
        assert torch.equal(scores["anomaly"], scores["recon"])
    else:  # the window's most abnormal node
        nodes = model.node_scores(out, b.x)
        assert torch.allclose(scores["anomaly"], torch.stack([nodes[b.batch == g].max() for g in range(3)]))


def test_vgae_other_feature_width():
    model = VGAE(NUM_IDS, section("vgae", "small"), num_features=14)
    b = tiny_batch(num_features=14)
    out = model(b.x, b.edge_index, b.batch)
    assert out["recon"].shape == (b.num_nodes, 13)
    assert torch.isfinite(model.loss(out, b.x, b.edge_index)["total"])


def test_vgae_decoder_width_must_split_over_heads():
    cfg = section("vgae", "small", hidden_dims=(80, 42, 16))  # 42 is not divisible by the 4 decoder heads
    with pytest.raises(ValueError, match="4 heads"):
        VGAE(NUM_IDS, cfg)


def test_vgae_eval_is_deterministic_and_train_samples():
    torch.manual_seed(0)
    model = VGAE(NUM_IDS, section("vgae", "large"))
    b = tiny_batch()
    model.eval()
    first, second = model(b.x, b.edge_index, b.batch), model(b.x, b.edge_index, b.batch)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert torch.equal(first["z"], first["mu"])
    model.train()
    a, c = model(b.x, b.edge_index, b.batch), model(b.x, b.edge_index, b.batch)
    assert not torch.equal(a["z"], c["z"])


def test_neighbourhood_target_hand_made():
    # 3 nodes with vocabulary IDs 5, 2, 7 (vocabulary of 8); edges 0->1, 1->2, 2->0, 0->2 and a duplicate 0->1.
    ids = torch.tensor([5, 2, 7])
    edge_index = torch.tensor([[0, 1, 2, 0, 0], [1, 2, 0, 2, 1]])
    target = neighbourhood_targets(ids, edge_index, 8)
    expected = torch.zeros(3, 8)
    expected[0, [2, 7]] = 1  # node 0 -> nodes 1 (ID 2) and 2 (ID 7)
    expected[1, 7] = 1  # node 1 -> node 2 (ID 7)
    expected[2, 5] = 1  # node 2 -> node 0 (ID 5)
    assert torch.equal(target, expected)


def test_vgae_loss_parts_hand_made_graph():
    torch.manual_seed(0)
    model = VGAE(8, section("vgae", "small")).eval()
    x = torch.tensor(
        [[5.0] + [0.1] * 10, [2.0] + [0.5] * 10, [7.0] + [0.9] * 10],
    )
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]])
    out = model(x, edge_index)
    parts = model.loss(out, x, edge_index)
    assert set(parts) == {"total", "recon", "id", "nbr", "kl"}
    for value in parts.values():
        assert value.ndim == 0 and torch.isfinite(value)
    assert parts["kl"] >= 0
    # the weighted sum of the parts
    expected = parts["recon"] + 0.1 * parts["id"] + 0.05 * parts["nbr"] + 0.01 * parts["kl"]
    assert torch.allclose(parts["total"], expected)
    # the parts computed directly from the outputs
    target = neighbourhood_targets(torch.tensor([5, 2, 7]), edge_index, 8)
    assert torch.allclose(parts["recon"], ((out["recon"] - x[:, 1:]) ** 2).mean())
    nbr = torch.nn.functional.binary_cross_entropy_with_logits(out["nbr_logits"], target)
    assert torch.allclose(parts["nbr"], nbr)
    mu, logvar = out["mu"], out["logvar"]
    assert torch.allclose(parts["kl"], -0.5 * (1 + logvar - mu**2 - logvar.exp()).mean())

    # one graph: per-graph scores equal the batch means, z statistics over nodes x latent
    scores = model.graph_scores(out, x, edge_index, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(scores["recon"], parts["recon"])
    assert torch.allclose(scores["nbr"], parts["nbr"])
    assert torch.allclose(scores["id"], parts["id"])
    z = out["z"]
    assert torch.allclose(scores["z_mean"], z.mean().view(1))
    assert torch.allclose(scores["z_std"], z.std(unbiased=False).view(1), atol=1e-6)
    assert torch.equal(scores["z_max"], z.max().view(1))
    assert torch.equal(scores["z_min"], z.min().view(1))


def test_vgae_graph_scores_per_graph():
    torch.manual_seed(0)
    model = VGAE(NUM_IDS, section("vgae", "small")).eval()
    b = tiny_batch()
    out = model(b.x, b.edge_index, b.batch)
    scores = model.graph_scores(out, b.x, b.edge_index, b.batch)
    for g in range(3):
        mask = b.batch == g
        assert torch.allclose(scores["recon"][g], ((out["recon"][mask] - b.x[mask, 1:]) ** 2).mean())
        assert torch.equal(scores["z_max"][g], out["z"][mask].max())


def test_logvar_is_clamped():
    model = VGAE(NUM_IDS, section("vgae", "small")).eval()
    with torch.no_grad():
        model.logvar.bias.fill_(1e3)
    b = tiny_batch()
    assert model(b.x, b.edge_index)["logvar"].max() == 20.0


# -- one optimisation step ------------------------------------------------------------------------


def _step_lowers_loss(model, loss_fn):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    torch.manual_seed(1)  # same dropout masks and the same VGAE noise before and after the step
    before = loss_fn()
    opt.zero_grad()
    before.backward()
    opt.step()
    torch.manual_seed(1)
    with torch.no_grad():
        after = loss_fn()
    return before.item(), after.item()


@pytest.mark.parametrize("scale", SCALES)
def test_gat_step_lowers_loss(scale):
    torch.manual_seed(0)
    model = GATJK(NUM_IDS, section("gat", scale))
    b = tiny_batch()
    y = torch.tensor([0, 1, 0])
    before, after = _step_lowers_loss(
        model, lambda: torch.nn.functional.cross_entropy(model(b.x, b.edge_index, b.batch), y)
    )
    assert after < before


@pytest.mark.parametrize("scale", SCALES)
def test_vgae_step_lowers_loss(scale):
    torch.manual_seed(0)
    model = VGAE(NUM_IDS, section("vgae", scale))
    b = tiny_batch()
    before, after = _step_lowers_loss(
        model, lambda: model.loss(model(b.x, b.edge_index, b.batch), b.x, b.edge_index)["total"]
    )
    assert after < before


# -- knowledge distillation ------------------------------------------------------------------------


def test_gat_kd_loss_by_hand():
    ln3 = math.log(3.0)
    # row 0: s/T = [0, ln 3] -> p_s = [1/4, 3/4]; t = [0, 0] -> p_t = [1/2, 1/2]
    #        KL(p_t || p_s) = 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3)
    #        CE(s, 1): softmax([0, 2 ln 3]) = [1/10, 9/10] -> ln(10/9)
    # row 1: s = [1, 1], t = [5, 5] -> equal distributions, KL = 0; CE(s, 0) = ln 2
    student = torch.tensor([[0.0, 2 * ln3], [1.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    labels = torch.tensor([1, 0])
    total, soft, hard = gat_kd_loss(student, teacher, labels, temperature=2.0, alpha=0.7)
    soft_expected = 4.0 * (0.5 * math.log(4 / 3) + 0.0) / 2  # T^2 * sum of KLs / batch size ("batchmean")
    hard_expected = (math.log(10 / 9) + math.log(2.0)) / 2
    assert soft.item() == pytest.approx(soft_expected, rel=1e-5)  # = ln(4/3)
    assert hard.item() == pytest.approx(hard_expected, rel=1e-5)
    assert total.item() == pytest.approx(0.7 * soft_expected + 0.3 * hard_expected, rel=1e-5)


def test_gat_kd_identical_logits_soft_is_zero():
    logits = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.randint(0, 2, (8,), generator=torch.Generator().manual_seed(1))
    total, soft, hard = gat_kd_loss(logits, logits.detach().clone(), labels, temperature=4.0, alpha=0.7)
    assert soft.item() == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(0.3 * hard.item(), rel=1e-5)
    total.backward()
    assert logits.grad is not None


def test_gat_kd_does_not_backprop_into_teacher():
    student = torch.randn(4, 2, requires_grad=True)
    teacher = torch.randn(4, 2, requires_grad=True)
    total, _, _ = gat_kd_loss(student, teacher, torch.tensor([0, 1, 0, 1]), temperature=4.0, alpha=0.7)
    total.backward()
    assert student.grad is not None and teacher.grad is None


def test_latent_projection():
    assert isinstance(LatentProjection(16, 16).proj, torch.nn.Identity)
    assert count_parameters(LatentProjection(16, 16)) == 0
    proj = LatentProjection(16, 48)
    assert count_parameters(proj) == 16 * 48 + 48
    assert proj(torch.zeros(5, 16)).shape == (5, 48)


def test_vgae_kd_loss_by_hand():
    proj = LatentProjection(2, 1)
    with torch.no_grad():
        proj.proj.weight.copy_(torch.tensor([[1.0, 1.0]]))
        proj.proj.bias.zero_()
    # one node: P(z_s) = 1 + 2 = 3, z_t = 1 -> latent MSE = (3 - 1)^2 = 4
    # recon_s = [0.5, 0.5], recon_t = [0, 1] -> recon MSE = (0.25 + 0.25) / 2 = 0.25
    # kd = 0.5 * 4 + 0.5 * 0.25 = 2.125; total = 0.7 * 2.125 + 0.3 * 2.0 = 1.4875 + 0.6 = 2.0875
    student = {"z": torch.tensor([[1.0, 2.0]]), "recon": torch.tensor([[0.5, 0.5]])}
    teacher = {"z": torch.tensor([[1.0]]), "recon": torch.tensor([[0.0, 1.0]])}
    total, parts = vgae_kd_loss(
        student, teacher, proj, torch.tensor(2.0), alpha=0.7, latent_weight=0.5, recon_weight=0.5
    )
    assert parts["latent"].item() == pytest.approx(4.0)
    assert parts["recon"].item() == pytest.approx(0.25)
    assert parts["kd"].item() == pytest.approx(2.125)
    assert total.item() == pytest.approx(2.0875)
    assert parts["total"] is total


def test_vgae_kd_end_to_end_small_student_large_teacher():
    torch.manual_seed(0)
    kd = resolve_config("vgae", "small", aux="kd_standard").kd
    teacher = VGAE(NUM_IDS, section("vgae", "large")).eval()
    student = VGAE(NUM_IDS, section("vgae", "small"))
    proj = LatentProjection(16, 48)
    b = tiny_batch()
    with torch.no_grad():
        t_out = teacher(b.x, b.edge_index, b.batch)
    s_out = student(b.x, b.edge_index, b.batch)
    task = student.loss(s_out, b.x, b.edge_index)["total"]
    total, _ = vgae_kd_loss(s_out, t_out, proj, task, kd.alpha, kd.vgae_latent_weight, kd.vgae_recon_weight)
    total.backward()
    assert proj.proj.weight.grad is not None
    assert student.mu.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


# -- self-loops: added once per forward pass, as every GATConv layer would add them --------------


def test_with_self_loops_hand_made():
    # 0->1, a self-loop on 1 (a repeated CAN ID), 1->2; three nodes
    edge_index = torch.tensor([[0, 1, 1], [1, 1, 2]])
    got = with_self_loops(edge_index, 3)
    assert sorted(map(tuple, got.t().tolist())) == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]


@pytest.mark.parametrize("kind", ["gat", "vgae"])
def test_one_self_loop_pass_matches_pyg_per_layer(kind, monkeypatch):
    import kdgat.models.gat as gat_module
    import kdgat.models.vgae as vgae_module

    torch.manual_seed(0)
    batch = tiny_batch()
    # give the graph of node 0 a self-loop, as a repeated CAN ID does
    edge_index = torch.cat([batch.edge_index, torch.tensor([[0], [0]])], dim=1)
    model = build_model(kind, NUM_IDS, section(kind, "small")).eval()
    ours = model(batch.x, edge_index, batch.batch)
    # reference: no shared pass, each GATConv removes and adds self-loops itself (PyG's default)
    module = gat_module if kind == "gat" else vgae_module
    monkeypatch.setattr(module, "with_self_loops", lambda e, n: e)
    for conv in model.modules():
        if isinstance(conv, GATConv):
            conv.add_self_loops = True
    reference = model(batch.x, edge_index, batch.batch)
    if kind == "gat":
        torch.testing.assert_close(ours, reference)
    else:
        for key in ("z", "recon", "id_logits", "nbr_logits"):
            torch.testing.assert_close(ours[key], reference[key])


# -- issue 13: a VGAE that detects, a GNN that sees one abnormal node ---------------------------------


def test_vgae_reconstructs_standardised_features_through_a_linear_output():
    cfg = section("vgae", "small")
    assert cfg.target == "standardized"
    stats = {
        "node": {"mean": [0.0] + [0.5] * 10, "std": [1.0] + [2.0] * 9 + [0.0]},
        "edge": {"mean": [0.0] * 11, "std": [1.0] * 11},
    }
    model = build_model("vgae", NUM_IDS, cfg, feature_stats=stats).eval()
    batch = tiny_batch()
    expected = (batch.x[:, 1:] - 0.5) / torch.tensor([2.0] * 9 + [1.0])  # std 0 -> 1
    torch.testing.assert_close(model.target(batch.x), expected)
    out = model(batch.x, batch.edge_index, batch.batch)
    loss = model.loss(out, batch.x, batch.edge_index)
    torch.testing.assert_close(loss["recon"], torch.nn.functional.mse_loss(out["recon"], expected))
    # a node without a frame of its own (all 0: it only receives the window's last transition) has nothing to
    # reconstruct: neither the loss nor the window's reconstruction score reads it
    x = batch.x.clone()
    x[[3, 8], 1:] = 0.0  # the last node of the first graph, one inside the second
    framed = torch.ones(len(x), dtype=torch.bool)
    framed[[3, 8]] = False
    out = model(x, batch.edge_index, batch.batch)
    errors = (out["recon"] - model.target(x)).pow(2)
    torch.testing.assert_close(model.loss(out, x, batch.edge_index)["recon"], errors[framed].mean())
    recon = model.graph_scores(out, x, batch.edge_index, batch.batch)["recon"]
    for graph in range(3):
        mine = (batch.batch == graph) & framed
        torch.testing.assert_close(recon[graph], errors[mine].mean())
    raw = build_model("vgae", NUM_IDS, section("vgae", "small", target="raw"), feature_stats=stats).eval()
    torch.testing.assert_close(raw.target(batch.x), batch.x[:, 1:])  # the study's: raw, through a sigmoid
    out = raw(batch.x, batch.edge_index, batch.batch)
    assert ((out["recon"] >= 0) & (out["recon"] <= 1)).all()


@pytest.mark.parametrize("window_score", ["novel_first", "id_feature_max"])
def test_one_abnormal_node_moves_the_vgae_window_score(window_score):
    cfg = section("vgae", "small", novel_min_count=0, window_score=window_score)
    model = build_model("vgae", NUM_IDS, cfg).eval()
    batch = tiny_batch(sizes=(6, 6))
    model.calibrate([batch])
    assert (model.benign_id_count[batch.x[:, 0].long()] >= 1).all()
    base = model.graph_scores(model(batch.x, batch.edge_index, batch.batch), batch.x, batch.edge_index, batch.batch)
    changed = batch.x.clone()
    changed[8, 1:6] += 3.0  # one node of the second window
    out = model(changed, batch.edge_index, batch.batch)
    scores = model.graph_scores(out, changed, batch.edge_index, batch.batch)
    nodes = model.node_scores(out, changed)
    assert scores["anomaly"][1] > 2 * base["anomaly"][1] and int(nodes[6:].argmax()) == 2  # node 8 explains it
    mean = build_model("vgae", NUM_IDS, section("vgae", "small", window_score="mean", novel_min_count=0)).eval()
    mean.load_state_dict(model.state_dict())
    out = mean(changed, batch.edge_index, batch.batch)
    assert torch.equal(mean.graph_scores(out, changed, batch.edge_index, batch.batch)["anomaly"], scores["recon"])


@pytest.mark.parametrize("window_score,novel", [("novel_first", 1e30), ("id_feature_max", 1e3)])
def test_vgae_node_scores_novel_ids_and_target_only_nodes(window_score, novel):
    cfg = section("vgae", "small", novel_min_count=2, window_score=window_score)
    model = build_model("vgae", NUM_IDS, cfg).eval()
    batch = tiny_batch(sizes=(5,))
    model.benign_id_count[:] = 5.0
    unseen = int(batch.x[0, 0])
    model.benign_id_count[unseen] = 1.0  # seen on fewer benign nodes than novel_min_count
    x = batch.x.clone()
    x[4, 1:] = 0.0  # a node that only receives the last transition: nothing of its own to reconstruct
    nodes = model.node_scores(model(x, batch.edge_index, batch.batch), x)
    assert nodes[0] >= novel and nodes[1:4].max() < novel and nodes[4] == 0.0


@pytest.mark.parametrize("window_score,expected", [("novel_first", 0.0), ("id_feature_max", 1e3)])
def test_a_novel_id_that_only_receives_the_last_transition(window_score, expected):
    """The window's last node is the next window's first frame (no features of its own, labelled in that
    window): with novel_first its novel ID does not make this window novel; id_feature_max (earlier runs)
    added 1000 to it, and keeps doing so. An infinite error ratio stays finite under novel_first."""
    model = build_model("vgae", NUM_IDS, section("vgae", "small", novel_min_count=2, window_score=window_score))
    model.eval()
    batch = tiny_batch(sizes=(5,))
    model.benign_id_count[:] = 5.0
    model.benign_id_count[batch.x[4, 0].long()] = 0.0  # the target-only node's ID is novel
    x = batch.x.clone()
    x[4, 1:] = 0.0
    out = model(x, batch.edge_index, batch.batch)
    assert float(model.node_scores(out, x)[4]) == expected
    if window_score == "novel_first":
        model.benign_id_count[batch.x[0, 0].long()] = 0.0  # node 0: novel, with an infinite error ratio
        model.error_q99[batch.x[0, 0].long()] = 0.0
        model.error_q99[batch.x[1, 0].long()] = 0.0  # node 1: known, infinite too
        nodes = model.node_scores(out, x)
        assert torch.isfinite(nodes).all() and nodes[0] > nodes[1] == KNOWN_CAP


def test_novel_first_ranks_a_novel_id_above_any_error():
    """A node of an ID never seen in benign training outranks a known ID's node whatever its error (with the
    earlier id_feature_max, an error ratio over 1000, which benign DAGA windows near an attack reach, outranked
    it); novel nodes keep their errors' order; a known node scores what id_feature_max gave it."""
    scores = {}
    for window_score in ("novel_first", "id_feature_max"):
        torch.manual_seed(0)  # the same weights for both scores
        model = build_model("vgae", NUM_IDS, section("vgae", "small", novel_min_count=2, window_score=window_score))
        model.eval()
        batch = tiny_batch(sizes=(6,))
        model.benign_id_count[:] = 5.0
        model.benign_id_count[batch.x[:2, 0].long()] = 0.0  # nodes 0 and 1: novel IDs
        out = model(batch.x, batch.edge_index, batch.batch)
        model.error_q99[:] = 1.0
        model.error_q99[batch.x[0, 0].long()] = 1e-3  # node 0: a novel ID with the larger error ratio
        model.error_q99[batch.x[2, 0].long()] = 1e-36  # node 2: a known ID with an enormous one
        scores[window_score] = model.node_scores(out, batch.x)
    new, old = scores["novel_first"], scores["id_feature_max"]
    assert torch.isfinite(new).all()
    assert new[1] > new[2:].max() and new[0] > new[1]
    assert old[2] > old[0]  # what novel_first mends
    torch.testing.assert_close(new[3:], old[3:], rtol=0, atol=0)  # known nodes: the error ratio, unchanged


@pytest.mark.parametrize("window_score", ["novel_first", "id_feature_max"])
def test_which_windows_hold_a_novel_id(window_score):
    """A window holds a novel ID when one of its nodes (with a frame of its own) is novel, and its novel_first
    score then lies above NOVEL_FLOOR; an id_feature_max run does not say (its +1000 is below benign ratios)."""
    model = build_model("vgae", NUM_IDS, section("vgae", "small", novel_min_count=2, window_score=window_score))
    model.eval()
    batch = tiny_batch(sizes=(5, 5, 5))
    model.benign_id_count[:] = 5.0
    x = batch.x.clone()
    x[:, 0] = 0.0  # every frame of ID 0 (known)...
    x[10, 0] = 1.0  # ...but the third window's first, of an ID no benign training node had
    model.benign_id_count[1] = 0.0
    out = model(x, batch.edge_index, batch.batch)
    scores = model.graph_scores(out, x, batch.edge_index, batch.batch)["anomaly"]
    expected = [False, False, window_score == "novel_first"]
    assert model.novel_windows(x, batch.batch, 3).tolist() == expected
    if window_score == "novel_first":
        assert (scores >= NOVEL_FLOOR).tolist() == expected  # the same windows the score ranks first


@pytest.mark.parametrize("readout", ["mean", "max", "meanmax", "attention"])
def test_gat_readouts(readout):
    cfg = section("gat", "small", readout=readout)
    model = build_model("gat", NUM_IDS, cfg).eval()
    batch = tiny_batch()
    logits, emb = model(batch.x, batch.edge_index, batch.batch, num_graphs=3, return_embedding=True)
    width = cfg.hidden * cfg.heads * cfg.layers
    assert logits.shape == (3, 2) and emb.shape == (3, 2 * width if readout == "meanmax" else width)
    base, per_id = EXPECTED["gat", "small"]  # the study's counts (reference design 3.4)
    extra = {"mean": 0, "max": 0, "meanmax": width * width, "attention": width + 1}[readout]
    assert count_parameters(model) == base + per_id * NUM_IDS + extra


def test_max_readout_lets_one_node_move_the_graph_vector():
    model = build_model("gat", 60, section("gat", "small", readout="max", dropout=0.0)).eval()
    batch = tiny_batch(num_ids=60, sizes=(40,))
    _, before = model(batch.x, batch.edge_index, batch.batch, return_embedding=True)
    x = batch.x.clone()
    x[17, 1:] += 5.0
    _, after = model(x, batch.edge_index, batch.batch, return_embedding=True)
    mean = build_model("gat", 60, section("gat", "small", readout="mean", dropout=0.0)).eval()
    mean.load_state_dict(model.state_dict())
    _, mean_before = mean(batch.x, batch.edge_index, batch.batch, return_embedding=True)
    _, mean_after = mean(x, batch.edge_index, batch.batch, return_embedding=True)
    assert (after - before).abs().max() > (mean_after - mean_before).abs().max()


@pytest.mark.parametrize("conv_type", ["gatv2", "transformer"])
def test_edge_reading_layers_use_the_edge_features(conv_type):
    stats = {"node": {"mean": [0.0] * 11, "std": [1.0] * 11}, "edge": {"mean": [0.5] * 11, "std": [0.25] * 11}}
    model = build_model("gat", NUM_IDS, section("gat", "small", conv_type=conv_type), feature_stats=stats).eval()
    batch = tiny_batch()
    with pytest.raises(ValueError, match="pass edge_attr"):
        model(batch.x, batch.edge_index, batch.batch)
    logits = model(batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr)
    shifted = model(batch.x, batch.edge_index, batch.batch, edge_attr=batch.edge_attr + 1.0)
    assert logits.shape == (3, 2) and not torch.allclose(logits, shifted)
    assert torch.equal(model.edge_mean, torch.full((11,), 0.5))  # saved with the weights: no store at scoring
    plain = build_model("gat", NUM_IDS, section("gat", "small"))
    assert not plain.uses_edges and count_parameters(model) > count_parameters(plain)


def test_self_loops_with_attributes_keep_the_datas_own_loops():
    """0->1, 1->1 (an ID followed by itself: a transition with features of its own), 2->1, 1->2: node 1 keeps
    its loop and its features; nodes 0 and 2 get a loop with the mean of their incoming edges (0 has none)."""
    from kdgat.models.inputs import with_self_loops_and_attributes

    edge_index = torch.tensor([[0, 1, 2, 1], [1, 1, 1, 2]])
    edge_attr = torch.tensor([[1.0], [7.0], [3.0], [5.0]])
    index, attr = with_self_loops_and_attributes(edge_index, edge_attr, 3)
    got = sorted(zip(map(tuple, index.t().tolist()), attr[:, 0].tolist(), strict=True))
    assert got == [((0, 0), 0.0), ((0, 1), 1.0), ((1, 1), 7.0), ((1, 2), 5.0), ((2, 1), 3.0), ((2, 2), 5.0)]


@pytest.mark.parametrize("conv_type", ["gatv2", "transformer"])
def test_an_edge_reading_gat_reads_a_loops_features(conv_type):
    """A flood of one ID shows on its own loop's features (count, gaps): the layers see them."""
    stats = {"node": {"mean": [0.0] * 11, "std": [1.0] * 11}, "edge": {"mean": [0.5] * 11, "std": [0.25] * 11}}
    model = build_model("gat", NUM_IDS, section("gat", "small", conv_type=conv_type), feature_stats=stats).eval()
    batch = tiny_batch()
    loop = torch.tensor([[2], [2]])
    edge_index = torch.cat([batch.edge_index, loop], dim=1)
    quiet = torch.cat([batch.edge_attr, torch.full((1, 11), 0.5)])
    flood = torch.cat([batch.edge_attr, torch.full((1, 11), 9.0)])
    logits = model(batch.x, edge_index, batch.batch, edge_attr=quiet)
    assert not torch.allclose(logits, model(batch.x, edge_index, batch.batch, edge_attr=flood))


def test_an_edge_reading_gat_is_keyed_apart_from_its_earlier_revision():
    """A checkpoint of a gatv2 / transformer GAT that read a mean where its data had a loop is not continued, and
    a campaign trains it again; the study's GATConv (no edge features) and the VGAE keep their keys."""
    from kdgat.core import config as config_module

    def key(kind, **gat):
        cfg = resolve_config(kind, "small", overrides=[f"gat.{k}={v}" for k, v in gat.items()])
        return config_module.model_config_hash(cfg)

    before = {"gatv2": key("gat", conv_type="gatv2"), "gat": key("gat"), "vgae": key("vgae")}
    previous = config_module.EDGE_LOOPS_REVISION
    try:
        config_module.EDGE_LOOPS_REVISION = "an earlier one"
        assert key("gat", conv_type="gatv2") != before["gatv2"]
        assert (key("gat"), key("vgae")) == (before["gat"], before["vgae"])
    finally:
        config_module.EDGE_LOOPS_REVISION = previous


def test_a_vgae_calibrated_out_of_sample_is_keyed_apart_from_its_earlier_revision():
    """A VGAE calibrated on held-out windows whose neighbours shared a frame with them (the first version) is not
    continued nor reused; the default VGAE (calibrated on its training windows) and the GAT keep their keys."""
    from kdgat.core import config as config_module

    def key(kind, *overrides):
        return config_module.model_config_hash(resolve_config(kind, "small", overrides=list(overrides)))

    calibrated = ("vgae", "vgae.calibration_fraction=0.1")
    before = {"calibrated": key(*calibrated), "vgae": key("vgae"), "gat": key("gat")}
    previous = config_module.CALIBRATION_REVISION
    try:
        config_module.CALIBRATION_REVISION = "an earlier one"
        assert key(*calibrated) != before["calibrated"]
        assert (key("vgae"), key("gat")) == (before["vgae"], before["gat"])
    finally:
        config_module.CALIBRATION_REVISION = previous


def test_vgae_calibration_is_each_ids_own_99th_percentile():
    """Per ID with enough benign nodes: the 99th percentile of that ID's squared errors, per feature; an
    ID on fewer nodes (or on none) gets every node's. Uneven counts, so a row of one ID read as another's
    shows."""
    from kdgat.models.vgae import CALIBRATION_MIN_NODES

    num_ids = 10  # IDs 0-7 on 48 nodes each, then 7 shares 5 of them with 8 (rare); 9, the OOV index, on none
    model = build_model("vgae", num_ids, section("vgae", "small")).eval()
    batches = [tiny_batch(num_ids=8, sizes=(8,) * 12, seed=s) for s in range(4)]
    ids = batches[0].x[:, 0]
    ids[torch.nonzero(ids == 7).flatten()[:5]] = 8
    # nodes that only receive the window's last transition (every feature 0; on a trained model their errors
    # are the largest) are no node of their ID's traffic: not in its percentile, not in its count (four of ID 0's)
    placeholders = torch.nonzero(batches[1].x[:, 0] == 0).flatten()[:4]
    batches[1].x[placeholders, 1:] = 0.0
    with torch.inference_mode():
        model.calibrate(batches)
        errors = [(model(b.x, b.edge_index, b.batch)["recon"] - model.target(b.x)).pow(2) for b in batches]
    framed = torch.cat([(b.x[:, 1:] != 0).any(dim=1) for b in batches])
    assert int((~framed).sum()) == 4
    err, idx = torch.cat(errors)[framed], torch.cat([b.x[:, 0].long() for b in batches])[framed]
    count = torch.bincount(idx, minlength=num_ids)
    assert count[0] == 44 and count[7] == 43 and count[8] == 5 and count[9] == 0
    torch.testing.assert_close(model.benign_id_count, count.to(model.benign_id_count.dtype))
    for i in range(num_ids):
        rows = err[idx == i] if count[i] >= CALIBRATION_MIN_NODES else err  # rare: every node's percentile
        torch.testing.assert_close(model.error_q99[i], torch.quantile(rows, 0.99, dim=0).clamp_min(1e-6))


def test_the_calibration_percentile_past_torch_quantiles_limit(monkeypatch):
    """torch.quantile refuses more than 2^24 rows: calibrate() failed at the end of a training on ~17 M benign
    nodes (small strides, large captures). Past the limit numpy gives the same percentile."""
    from kdgat.models import vgae

    many = torch.rand(vgae.TORCH_QUANTILE_MAX + 1, 1, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="too large"):
        torch.quantile(many, 0.99, dim=0)
    assert abs(vgae._q99(many).item() - 0.99) < 1e-3
    rows = torch.rand(1000, 3, generator=torch.Generator().manual_seed(1))
    exact = torch.quantile(rows, 0.99, dim=0)
    monkeypatch.setattr(vgae, "TORCH_QUANTILE_MAX", 10)  # the numpy path on rows torch takes too
    torch.testing.assert_close(vgae._q99(rows), exact)


# -- GAT node input without the CAN ID (gat.id_input) ---------------------------------------------


def _relabel_known_ids(batch: Batch, num_ids: int) -> torch.Tensor:
    """``batch.x`` with every in-vocabulary ID replaced by another in-vocabulary ID (OOV kept)."""
    x = batch.x.clone()
    known = x[:, 0] < num_ids - 1
    x[known, 0] = (x[known, 0] + 7) % (num_ids - 1)
    return x


def test_zscore_gat_input_does_not_say_which_id_a_node_is():
    """The same (standardised) traffic on other known IDs scores the same: what is learnt on one ID holds
    for every ID. The embedding variants do tell IDs apart."""
    batch = tiny_batch()
    x = _relabel_known_ids(batch, NUM_IDS)
    for id_input, same in (("zscore", True), ("embedding", False), ("embedding_zscore", False)):
        model = build_model("gat", NUM_IDS, section("gat", "small", id_input=id_input, dropout=0.0)).eval()
        if model.uses_id_statistics:
            model.fit_id_statistics([tiny_batch(sizes=(20,) * 40, seed=1)])
        with torch.no_grad():
            before = model(batch.x, batch.edge_index, batch.batch)
            if model.uses_id_statistics:  # each ID keeps its own statistics: move them with the relabelling
                ids = Batch(x=torch.arange(NUM_IDS).float()[:, None])
                relabelled = _relabel_known_ids(ids, NUM_IDS)[:, 0].long()
                for name in ("id_mean", "id_std", "id_novel"):
                    buffer = getattr(model, name)
                    buffer[relabelled] = buffer.clone()
            after = model(x, batch.edge_index, batch.batch)
        assert torch.allclose(before, after) is same, id_input
    # no per-ID parameters: the size does not grow with the vocabulary (the embedding grows by id_emb_dim per ID)
    for id_input, per_id in (("zscore", 0), ("embedding", 8), ("embedding_zscore", 8)):
        cfg = section("gat", "small", id_input=id_input)
        grown = count_parameters(build_model("gat", 2049, cfg)) - count_parameters(build_model("gat", NUM_IDS, cfg))
        assert grown == per_id * (2049 - NUM_IDS), id_input


def test_zscore_input_standardises_each_node_by_its_ids_benign_statistics():
    from kdgat.models.gat import CONSTANT_COLUMN_STD, ID_STATS_MIN_NODES, ID_STD_FLOOR

    num_ids = 6
    model = build_model("gat", num_ids, section("gat", "small", id_input="zscore")).eval()
    g = torch.Generator().manual_seed(3)
    graphs = []
    for i in range(60):  # ID 0 on every graph, ID 1 on every other one, ID 2 on three, ID 3 constant
        ids = [0, 3] + ([1] if i % 2 else []) + ([2] if i < 3 else [])
        feats = torch.rand(len(ids), 10, generator=g) + torch.tensor(ids, dtype=torch.float)[:, None]
        feats[1] = 0.25  # ID 3: constant features
        x = torch.cat([torch.tensor(ids, dtype=torch.float)[:, None], feats], 1)
        graphs.append(Data(x=x, edge_index=torch.zeros(2, 0, dtype=torch.long), y=torch.tensor([i % 5 == 4])))
    batches = [Batch.from_data_list(graphs[:30]), Batch.from_data_list(graphs[30:])]
    for batch in batches:  # in every benign window, a node of ID 0 that only receives the last transition
        batch.x = torch.cat([batch.x, torch.zeros(1, 11)])
        batch.batch = torch.cat([batch.batch, torch.tensor([0])])  # (in the first graph, a benign one)
    model.fit_id_statistics(batches)

    benign = [d for d in graphs if d.y.item() == 0]  # attack windows take no part in what is normal
    nodes = torch.cat([d.x for d in benign])  # nor do the nodes without a frame of their own
    for i in (0, 1):
        own = nodes[nodes[:, 0] == i, 1:]
        assert len(own) >= ID_STATS_MIN_NODES
        torch.testing.assert_close(model.id_mean[i], own.mean(0))
        torch.testing.assert_close(model.id_std[i], own.std(0, correction=0))
    torch.testing.assert_close(model.id_std[3], torch.full((10,), ID_STD_FLOOR))  # constant: the floor
    for rare in (2, 4, num_ids - 1):  # seen on 3 nodes, never seen, the OOV index: every benign node's
        torch.testing.assert_close(model.id_mean[rare], nodes[:, 1:].mean(0))
        overall = nodes[:, 1:].std(0, correction=0)
        expected = torch.where(overall < 1e-9, torch.tensor(CONSTANT_COLUMN_STD), overall.clamp_min(ID_STD_FLOOR))
        torch.testing.assert_close(model.id_std[rare], expected)
    # a column constant over every benign training node (has_timestamps with timestamps everywhere) reads ~0
    # on a capture where it differs, instead of a clipped +-10 on every node
    constant = torch.cat([graphs[0].x[:1, :1], torch.full((1, 9), 0.5), torch.zeros(1, 1)], 1)
    model_c = build_model("gat", num_ids, section("gat", "small", id_input="zscore")).eval()
    batches_c = [b.clone() for b in batches]
    for b in batches_c:
        b.x[:, -1] = 1.0
    model_c.fit_id_statistics(batches_c)
    assert model_c.node_input(constant)[0, -1].abs() < 1e-5 and model.node_input(constant)[0, -1].abs() > 1
    # ... and they are the IDs the model is told are novel (normal traffic does not carry them)
    assert model.id_novel.tolist() == [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    # the node input: the novelty bit, then the z-score of each node against its own ID
    node = torch.cat([graphs[0].x[:1], graphs[0].x[2:3]])  # ID 0 and ID 2 (graph 0 holds 0, 3, 2)
    expected = (node[0, 1:] - model.id_mean[0]) / model.id_std[0]
    assert model.node_input(node)[:, 0].tolist() == [0.0, 1.0]
    torch.testing.assert_close(model.node_input(node)[0, 1:], expected.clamp(-10, 10))
    # a node without a frame of its own reads neutral, not as ID 0's most extreme traffic
    placeholder = torch.zeros(1, 11)
    assert model.node_input(placeholder)[0, 1:].abs().max() == 0
    assert (model.id_mean[0] / model.id_std[0]).abs().min() > 1  # its zeros standardised: beyond 1 std everywhere
