"""Fusion agents (DQN, MLP, weighted) on toy data where one detector is right and the other is noise."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from kdgat.core.config import resolve_config
from kdgat.evaluation.metrics import binary_metrics
from kdgat.fusion import (
    DQNFusion,
    FusionData,
    FusionQNetwork,
    MLPFusion,
    ReplayBuffer,
    WeightedFusion,
    brier_reward,
    log_reward,
    make_fusion,
)
from kdgat.training.kd import count_parameters

DQN_SMALL = resolve_config("dqn", "small").dqn
FUSION = resolve_config("dqn", "small").fusion

# Enough training for the toy in a few seconds: a narrower network, a larger step and more
# exploration than the defaults (which are sized for 150k real windows and 500 episodes).
TOY_DQN = DQN_SMALL.model_copy(
    update=dict(
        hidden=64,
        lr=5e-3,
        batch_size=128,
        episodes=120,
        samples_per_episode=1000,
        updates_per_episode=32,
        validate_every=5,
        epsilon_start=0.5,
        epsilon_end=0.1,
        epsilon_decay=0.97,
    )
)
TINY_DQN = DQN_SMALL.model_copy(
    update=dict(episodes=4, samples_per_episode=200, updates_per_episode=3, validate_every=2)
)


def _entropy_confidence(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return np.clip(1 - h / np.log(2), 0, 1)


def toy(n: int, seed: int, right: str = "gat") -> FusionData:
    """One detector equals the label (always right, confident), the other is uniform noise.

    The 15-value state is laid out like the real one: VGAE recon / neighbourhood / ID error all
    track vgae_score, z statistics are noise, confidence 1/(1+recon); GAT p(benign), p(attack),
    embedding statistics (noise), entropy confidence.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.float32)
    noise = rng.random(n).astype(np.float32)
    vgae, gat = (noise, y) if right == "gat" else (y, noise)
    states = np.column_stack(
        [vgae, vgae + 0.05 * rng.normal(size=n), vgae, *rng.normal(size=(4, n)), 1 / (1 + vgae)]
        + [1 - gat, gat, *rng.normal(size=(4, n)), _entropy_confidence(gat)]
    )
    return FusionData(states, vgae, gat, y)


def splits(right: str, seed: int = 0) -> tuple[FusionData, FusionData, FusionData]:
    return toy(2000, 10 * seed, right), toy(500, 10 * seed + 1, right), toy(1000, 10 * seed + 2, right)


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[DQNFusion, dict, FusionData]]:
    """A DQN agent trained on each toy (GAT right, VGAE right), with its history and test data."""
    out = {}
    for right in ("gat", "vgae"):
        train, val, test = splits(right)
        agent = DQNFusion(TOY_DQN, seed=0)
        history = agent.fit(train, val)
        out[right] = (agent, history, test)
    return out


# -- network ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hidden", "layers", "expected"), [(160, 2, 32_341), (576, 3, 689_493)])
def test_q_network_parameter_counts(hidden, layers, expected):
    assert count_parameters(FusionQNetwork(15, hidden, layers, 21, 0.2)) == expected


@pytest.mark.parametrize(("scale", "expected"), [("small", 32_341), ("large", 689_493)])
def test_agent_from_config_has_reference_size(scale, expected):
    agent = DQNFusion(resolve_config("dqn", scale).dqn, seed=0)
    assert count_parameters(agent.q_net) == expected
    assert agent.n_actions == 21
    np.testing.assert_allclose(agent.action_values, np.arange(21) * 0.05, atol=1e-7)


# -- learning the obvious policy ----------------------------------------------------------------


def test_dqn_trusts_the_right_gat(trained):
    agent, history, test = trained["gat"]
    assert agent.alphas(test.states).mean() > 0.9
    assert binary_metrics(test.labels, agent.score(test), 0.5)["f1"] > 0.95
    assert history["best_val_reward"] is not None and history["best_val_reward"] > 0.95


def test_dqn_trusts_the_right_vgae(trained):
    agent, _, test = trained["vgae"]
    assert agent.alphas(test.states).mean() < 0.1
    assert binary_metrics(test.labels, agent.score(test), 0.5)["f1"] > 0.95


def test_policy_summary(trained):
    agent, _, test = trained["gat"]
    summary = agent.policy_summary(test)
    json.dumps(summary, allow_nan=False)
    assert summary["n_windows"] == len(test) == len(summary["alpha"])
    alphas = agent.alphas(test.states)
    assert summary["mean_alpha"] == pytest.approx(alphas.mean(), abs=1e-5)
    for name, cls in (("benign", 0), ("attack", 1)):
        assert summary["mean_alpha_by_class"][name] == pytest.approx(alphas[test.labels == cls].mean(), abs=1e-5)
    assert sum(summary["action_counts"].values()) == len(test)


# -- training mechanics --------------------------------------------------------------------------


def test_epsilon_decays(trained):
    _, history, _ = trained["gat"]
    eps = history["epsilon"]
    c = TOY_DQN
    assert len(eps) == c.episodes
    assert eps[0] == pytest.approx(c.epsilon_start)
    assert all(b < a for a, b in zip(eps, eps[1:], strict=False) if a > c.epsilon_end)
    assert eps[-1] == pytest.approx(max(c.epsilon_end, c.epsilon_start * c.epsilon_decay ** (c.episodes - 1)))
    assert eps[-1] < eps[0]
    fast = DQNFusion(DQN_SMALL.model_copy(update=dict(epsilon_decay=0.5)), seed=0)
    assert [fast.epsilon(e) for e in range(6)] == pytest.approx([0.2, 0.1, 0.05, 0.025, 0.0125, 0.01])


def test_target_network_update_count(trained):
    _, history, _ = trained["gat"]
    steps = TOY_DQN.episodes * TOY_DQN.updates_per_episode
    assert history["optimizer_steps"] == steps
    assert history["target_updates"] == steps // TOY_DQN.target_update


def test_target_network_copied_every_target_update_steps():
    agent = DQNFusion(DQN_SMALL.model_copy(update=dict(target_update=3, batch_size=16)), seed=0)
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(100)
    s = rng.normal(size=(50, 15)).astype(np.float32)
    buffer.add(s, rng.integers(0, 21, 50), rng.random(50).astype(np.float32), s)

    def same() -> bool:
        online, target = agent.q_net.state_dict(), agent.target_net.state_dict()
        return all(torch.equal(online[k], target[k]) for k in online)

    assert same()
    for step in range(1, 8):
        agent._update(buffer.sample(16, rng))
        assert agent.target_updates == step // 3
        assert same() == (step % 3 == 0)


def test_gamma_zero_target_is_the_reward():
    agent = DQNFusion(DQN_SMALL, seed=0)
    assert agent.cfg.gamma == 0
    rewards = torch.rand(32)
    assert torch.equal(agent.td_target(rewards, torch.randn(32, 15)), rewards)


def test_gamma_positive_target_is_double_dqn():
    agent = DQNFusion(DQN_SMALL.model_copy(update=dict(gamma=0.9)), seed=0)
    with torch.no_grad():  # make the target network differ from the online one
        for p in agent.target_net.parameters():
            p.add_(0.1)
    rewards, nxt = torch.rand(8), torch.randn(8, 15)
    agent.q_net.eval()
    with torch.no_grad():
        pick = agent.q_net(nxt).argmax(dim=1, keepdim=True)
        expected = rewards + 0.9 * agent.target_net(nxt).gather(1, pick).squeeze(1)
    torch.testing.assert_close(agent.td_target(rewards, nxt), expected)


def test_same_seed_same_alphas():
    train, val, test = splits("gat", seed=1)
    runs = []
    for _ in range(2):
        agent = DQNFusion(TINY_DQN, seed=7)
        agent.fit(train, val)
        runs.append((agent.alphas(test.states), agent.q_values(test.states)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    agent.fit(train, val)  # a second fit starts from scratch again
    np.testing.assert_array_equal(agent.q_values(test.states), runs[0][1])
    other = DQNFusion(TINY_DQN, seed=8)
    other.fit(train, val)
    assert not np.array_equal(other.q_values(test.states), runs[0][1])


def test_fit_leaves_global_torch_rng_alone():
    train, val, _ = splits("gat", seed=1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    threads = torch.get_num_threads()
    DQNFusion(TINY_DQN, seed=0).fit(train, val)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_reward_function_is_replaceable():
    calls = []

    def reward(fused, labels):
        calls.append(len(fused))
        return brier_reward(fused, labels)

    train, val, _ = splits("gat", seed=1)
    DQNFusion(TINY_DQN, seed=0, reward_fn=reward).fit(train, val)
    assert calls[0] == TINY_DQN.samples_per_episode
    assert len(calls) > TINY_DQN.episodes  # training episodes plus validations


def test_brier_reward_prefers_the_confident_correct_score():
    labels = np.array([1, 1, 0, 0], dtype=np.float32)
    fused = np.array([1.0, 0.6, 0.0, 0.6], dtype=np.float32)
    np.testing.assert_allclose(brier_reward(fused, labels), [1.0, 0.84, 1.0, 0.64], rtol=1e-6)


def test_log_reward_is_an_alternative():
    labels = np.array([1, 0, 1], dtype=np.float32)
    np.testing.assert_allclose(log_reward(np.array([1.0, 0.5, 0.0]), labels), [0.0, np.log(0.5), np.log(1e-3)])
    train, val, test = splits("gat", seed=2)
    agent = DQNFusion(TOY_DQN.model_copy(update=dict(episodes=30)), seed=2, reward_fn=log_reward)
    agent.fit(train, val)
    assert agent.alphas(test.states).mean() > 0.95  # learns the toy in a quarter of the episodes


def test_replay_buffer_wraps_around():
    buffer = ReplayBuffer(5, state_dim=2)
    for start in (0, 3, 6):
        s = np.full((3, 2), start, dtype=np.float32) + np.arange(3, dtype=np.float32)[:, None]
        buffer.add(s, np.arange(3) + start, np.arange(3, dtype=np.float32) + start, s)
    assert len(buffer) == 5
    assert sorted(buffer.actions.tolist()) == [4, 5, 6, 7, 8]  # the oldest four were overwritten
    s, a, r, nxt = buffer.sample(10, np.random.default_rng(0))
    assert len(a) == 5 and len(set(a.tolist())) == 5  # without replacement
    np.testing.assert_array_equal(s[:, 0], a.astype(np.float32))


# -- persistence ---------------------------------------------------------------------------------


def roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf)


def test_dqn_save_load_roundtrip(trained):
    agent, _, test = trained["gat"]
    fresh = DQNFusion(TOY_DQN, seed=99)
    fresh.load_state_dict(roundtrip(agent.state_dict()))
    np.testing.assert_array_equal(fresh.alphas(test.states), agent.alphas(test.states))
    np.testing.assert_array_equal(fresh.q_values(test.states), agent.q_values(test.states))
    np.testing.assert_array_equal(fresh.score(test), agent.score(test))
    with pytest.raises(ValueError, match="method"):
        MLPFusion(FUSION).load_state_dict(agent.state_dict())


def test_baseline_save_load_roundtrip():
    train, val, test = splits("gat", seed=1)
    for method in ("mlp", "weighted"):
        model = make_fusion(method, DQN_SMALL, FUSION.model_copy(update=dict(epochs=2)), seed=0)
        model.fit(train, val)
        fresh = make_fusion(method, DQN_SMALL, FUSION, seed=5)
        fresh.load_state_dict(roundtrip(model.state_dict()))
        np.testing.assert_array_equal(fresh.score(test), model.score(test))


# -- baselines -----------------------------------------------------------------------------------


@pytest.mark.parametrize("right", ["gat", "vgae"])
def test_mlp_learns_the_toy(right):
    train, val, test = splits(right)
    model = MLPFusion(FUSION.model_copy(update=dict(epochs=5)), seed=0, batch_size=64)
    history = model.fit(train, val)
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert binary_metrics(test.labels, model.score(test), 0.5)["f1"] > 0.95


def test_weighted_learns_the_toy():
    cfg = FUSION.model_copy(update=dict(epochs=300))
    train, val, test = splits("gat")
    model = WeightedFusion(cfg, seed=0)
    history = model.fit(train, val)
    assert model.alpha > 0.8 and history["final_alpha"] == model.alpha
    assert binary_metrics(test.labels, model.score(test), 0.5)["f1"] > 0.95
    np.testing.assert_array_equal(model.alphas(test.states), np.full(len(test), model.alpha, dtype=np.float32))
    mirrored = WeightedFusion(cfg, seed=0)
    mirrored.fit(*splits("vgae")[:2])
    assert mirrored.alpha < 0.2


def test_make_fusion():
    assert isinstance(make_fusion("dqn", DQN_SMALL, FUSION), DQNFusion)
    assert isinstance(make_fusion("mlp", DQN_SMALL, FUSION), MLPFusion)
    assert make_fusion("mlp", DQN_SMALL, FUSION).batch_size == DQN_SMALL.batch_size
    assert isinstance(make_fusion("weighted", DQN_SMALL, FUSION), WeightedFusion)
    with pytest.raises(ValueError, match="unknown fusion method"):
        make_fusion("bandit", DQN_SMALL, FUSION)


def test_fusion_data_is_checked():
    good = toy(10, 0)
    assert good.novel.dtype == bool and not good.novel.any()  # no VGAE said otherwise: no window holds a novel ID
    with pytest.raises(ValueError, match="novel must have shape"):
        FusionData(good.states, good.vgae_score, good.gat_prob, good.labels, np.zeros(3, bool))
    with pytest.raises(ValueError, match="shape"):
        FusionData(good.states, good.vgae_score[:5], good.gat_prob, good.labels)
    with pytest.raises(ValueError, match="labels"):
        FusionData(good.states, good.vgae_score, good.gat_prob, good.labels + 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FusionData(good.states, good.vgae_score + 2, good.gat_prob, good.labels)
    with pytest.raises(ValueError, match="2-D"):
        FusionData(good.states[:, 0], good.vgae_score, good.gat_prob, good.labels)


@pytest.mark.parametrize("fallback", [None, "gat", "vgae"])
def test_a_window_with_a_novel_id_scores_one_with_novel_alert(fallback):
    """``novel_alert``: the windows holding a novel CAN ID score 1 whatever the fitted fusion or its fallback
    member says; every other window keeps its score. Without the key (runs made before it) nothing changes."""
    from kdgat.fusion.ensemble import ensemble_scores, novel_counts

    train, _, test = splits("vgae")
    fusion = WeightedFusion(FUSION.model_copy(update={"epochs": 5}), seed=0)
    fusion.fit(train)
    novel = np.zeros(len(test), dtype=bool)
    novel[[0, 5, 17]] = True
    data = FusionData(test.states, test.vgae_score, test.gat_prob, test.labels, novel)
    members = {"fallback": fallback}
    before = ensemble_scores(fusion, data, members)
    after = ensemble_scores(fusion, data, {**members, "novel_alert": True})
    assert (before[novel] < 1).any() and (after[novel] == 1).all()
    assert np.array_equal(after[~novel], before[~novel])
    assert np.array_equal(ensemble_scores(fusion, data, {**members, "novel_alert": False}), before)
    four = FusionData(test.states[:4], test.vgae_score[:4], test.gat_prob[:4], np.array([0, 1, 1, 0]),
                      np.array([True, True, False, False]))  # fmt: skip
    assert novel_counts(four) == {"benign": 1, "attack": 1}


def test_novel_alert_is_kept_only_where_it_ranks_no_worse():
    """The fuse stage keeps the rule when it ranks its held-out windows no worse: novel-ID windows that are all
    attacks (as DAGA's DoS and ID fuzzing) keep or raise the average precision; a benign one among them lowers it."""
    from kdgat.fusion.ensemble import average_precision, keeps_novel_alert, ranks_no_worse

    def check(labels, scores, novel) -> tuple[float, float, bool]:
        keep, with_rule = keeps_novel_alert(labels, scores, novel)
        return average_precision(labels, scores), with_rule, keep

    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.3, 0.8, 0.9], np.float32)  # attack window 3 ranks below benign window 2
    without, with_rule, keep = check(labels, scores, np.array([0, 0, 0, 1, 0, 0], bool))  # lifted above it
    assert keep and with_rule == 1.0 > without
    assert check(labels, scores, np.zeros(6, bool))[2]  # no novel window: nothing changes
    assert not check(labels, scores, np.array([1, 0, 0, 0, 0, 0], bool))[2]  # a benign one
    # the three top windows, attacks, made novel: the same ranking, in an average precision that may come out
    # lower in its last bits (0.8622846289512958 -> ...55 here: a sum of fewer terms), which must not drop the rule
    labels = np.array([1, 1, 1, 0, 0, 1, 0, 1, 1, 1, 1, 0, 1])
    scores = np.array([0.344, 0.995, 0.316, 0.183, 0.880, 0.812, 0.668, 0.958, 0.926, 0.748, 0.861, 0.247, 0.141])
    top = np.isin(np.arange(13), [1, 7, 8])
    without, with_rule, keep = check(labels, scores, top)
    assert abs(with_rule - without) < 1e-12 and keep
    assert not ranks_no_worse(without - 1e-6, without)  # a real loss is not rounding


def test_a_fusion_that_only_ties_its_best_member_falls_back_to_it():
    """ROAD's selection windows are ranked perfectly by the DQN and by its GAT: the tie kept the DQN, which then
    ranked an unseen attack kind worse than the GAT (PR-AUC 0.779 against 0.939). A fusion is kept only where it
    ranks them better than its best member, beyond rounding."""
    from kdgat.fusion.ensemble import ranks_better

    assert not ranks_better(1.0, 1.0) and not ranks_better(0.9832, 0.9832 - 5e-10)  # a tie, or rounding
    assert ranks_better(0.9942, 0.9932) and not ranks_better(0.9932, 0.9942)


def test_the_fusion_is_fitted_on_each_files_earlier_half_and_chosen_on_its_later_half():
    """Hand-made windows of three files, out of order: per file, the first half by position fits (odd counts:
    the later half has the extra window), and no fit window of a file starts after one of its selection windows.
    A window uses frames s .. s+W (its last transition's target), so at stride = window the later half's first
    window starts on the fit half's last frame and is in neither half."""
    from kdgat.data.split import fusion_halves

    file_index = np.array([1, 0, 1, 0, 2, 0, 1, 0, 1, 3])
    window_start = np.array([300, 200, 100, 0, 50, 100, 200, 300, 0, 0])
    fit, select = fusion_halves(file_index, window_start, window=100)
    by_file = {f: sorted(zip(window_start[file_index == f], fit[file_index == f], select[file_index == f],
                             strict=True)) for f in (0, 1, 2)}  # fmt: skip
    assert by_file[0] == [(0, True, False), (100, True, False), (200, False, False), (300, False, True)]
    assert by_file[1] == by_file[0]
    assert by_file[2] == [(50, False, True)]  # one window: selection, never fitted on alone
    assert (fit[-1], select[-1]) == (False, True)  # the same at frame 0 (a review found it dropped)
    assert not (fit & select).any()


def test_a_selection_window_sharing_frames_with_a_fit_window_is_in_neither_half():
    """Windows of 100 frames every 50 (stride < window): the later half's first window holds the last 50 frames of
    the fit half's last window, and the next one starts on that window's last frame (200 + 100 = 250: the target of
    its last transition), so both are dropped; the one after is kept. The same frames as the parts' own split
    (``BlockSplit.window_masks``) counts."""
    from kdgat.data.split import BlockSplit, fusion_halves

    window_start = np.array([0, 50, 100, 150, 200, 250, 300, 350])
    fit, select = fusion_halves(np.zeros(8, np.int64), window_start, window=100)
    assert window_start[fit].tolist() == [0, 50, 100, 150]
    assert window_start[select].tolist() == [300, 350]
    frames = lambda starts: {f for s in starts for f in range(s, s + 100 + 1)}  # noqa: E731
    assert not frames(window_start[fit]) & frames(window_start[select])
    # the parts' rule on the same windows, a block ending with frame 250 (the fit half's last frame): the same sides
    split = BlockSplit(edges=np.array([0, 251, 500]), val_blocks=np.array([1]), fusion_blocks=np.zeros(0, np.int64))
    train, val, _, _ = split.window_masks(window_start, 100)
    assert window_start[train].tolist() == [0, 50, 100, 150] and window_start[val].tolist() == [300, 350]


def test_the_vgae_calibration_windows_are_every_tenth_window_of_each_file():
    """``every_nth`` as the VGAE's calibration windows use it: each file's 10th, 20th, ... window (by position, given in
    any order), spread over the file; a file of 9 windows keeps them all for training; the training windows sharing a
    frame with a held one (frames s .. s+W) are in neither."""
    from kdgat.data.split import every_nth

    file_index = np.repeat([0, 1, 2], [25, 9, 20])
    window_start = np.concatenate([np.arange(25) * 100, np.arange(9) * 100, np.arange(20) * 50])
    shuffled = np.random.default_rng(0).permutation(len(file_index))
    f, w = file_index[shuffled], window_start[shuffled]
    kept, held = every_nth(f, w, 100, 10)
    assert sorted(w[held & (f == 0)].tolist()) == [900, 1900] and not (held & (f == 1)).any()
    assert kept[f == 1].all() and not (kept & held).any()
    # a window uses frames s .. s+W: at stride = window the neighbours of a held window share one frame with it
    assert sorted(w[~kept & ~held & (f == 0)].tolist()) == [800, 1000, 1800, 2000]
    assert sorted(w[held & (f == 2)].tolist()) == [450, 950]
    dropped = sorted(w[~kept & ~held & (f == 2)].tolist())
    assert dropped == [350, 400, 500, 550, 850, 900]  # 350 and 550 share frame 450 or 550 with the one at 450
    for start in w[kept & (f == 2)]:
        assert (np.abs(w[held & (f == 2)] - start) > 100).all()


def test_a_fusion_that_gives_almost_every_window_to_one_member_is_named():
    """The README's rule: a DQN giving >= 99 % of the windows to one member (alpha 1 the GAT, 0 the VGAE) is reported
    as collapsed to it; 98 % is not, nor an empty weighting."""
    from kdgat.fusion.ensemble import collapsed_to

    def alphas(n_at: int, value: float, rest: float = 0.5) -> np.ndarray:
        return np.array([value] * n_at + [rest] * (100 - n_at))

    assert collapsed_to(alphas(99, 1.0)) == "gat" and collapsed_to(alphas(99, 0.0)) == "vgae"
    assert collapsed_to(alphas(100, 1.0)) == "gat" and collapsed_to(alphas(98, 1.0)) is None
    assert collapsed_to(alphas(98, 0.0)) is None and collapsed_to(np.array([])) is None
    assert collapsed_to(alphas(99, 0.9)) is None  # a strong lean is not a collapse
    assert collapsed_to(np.array([1.0] * 50 + [0.0] * 50)) is None
