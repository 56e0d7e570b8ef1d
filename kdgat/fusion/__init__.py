"""Fusion of the two frozen detectors per window: DQN agent and two baselines (reference design 3.5).

Each window has a 15-value state (VGAE 8: recon MSE, neighbourhood BCE, ID CE, z mean / std / max /
min, confidence 1/(1+recon); GAT 7: p(benign), p(attack), embedding mean / std / max / min,
confidence clip(1 - entropy/ln 2, 0, 1)), a VGAE anomaly score already squashed to [0, 1], the GAT
attack probability and a 0/1 label. A fusion method turns them into one **fused score** per window
("higher = more likely attack").

The decision is always that fused score against a threshold the caller chooses on validation
(:func:`kdgat.evaluation.metrics.choose_threshold`) and reuses unchanged on test.  Unlike the original study,
the fusion weight alpha is never the classifier (no ``alpha > 0.5`` rule, quirk 3.5 (a)).

Methods, all with ``fit(train, val) -> history`` and ``score(data) -> fused scores``:

- :class:`DQNFusion`: a Double-DQN agent choosing alpha in linspace(0, 1, 1/action_step + 1) per
  window; fused = (1 - alpha)·vgae_score + alpha·gat_prob.
- :class:`MLPFusion`: 15 -> 64 -> 32 -> 1 classifier on the state; fused = sigmoid(logit).
- :class:`WeightedFusion`: one global alpha = sigmoid(w) learned with BCE on the fused score.

Pure torch / numpy on CPU, no I/O and no logging: histories come back as dicts of plain Python
values.  Every method is deterministic for a given seed (the torch RNG is forked, so the caller's
global RNG state is left untouched).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdgat.core.config import DQNConfig, FusionConfig

__all__ = [
    "STATE_DIM",
    "FusionData",
    "FusionQNetwork",
    "DQNFusion",
    "MLPFusion",
    "WeightedFusion",
    "ReplayBuffer",
    "RewardFn",
    "brier_reward",
    "log_reward",
    "fuse",
    "make_fusion",
]

STATE_DIM = 15
_EPS = 1e-6

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``reward_fn(fused, labels) -> rewards``: vectorised over windows, all arrays of shape (n,)."""


# --------------------------------------------------------------------------- data


@dataclass
class FusionData:
    """What fusion sees of a set of windows (all arrays have n rows).

    Attributes:
        states: (n, 15) float32, VGAE 8 values then GAT 7 values.
        vgae_score: (n,) VGAE anomaly score squashed to [0, 1].
        gat_prob: (n,) GAT p(attack).
        labels: (n,) 0 = benign, 1 = attack.
    """

    states: np.ndarray
    vgae_score: np.ndarray
    gat_prob: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.states = np.ascontiguousarray(self.states, dtype=np.float32)
        self.vgae_score = np.ascontiguousarray(self.vgae_score, dtype=np.float32)
        self.gat_prob = np.ascontiguousarray(self.gat_prob, dtype=np.float32)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.float32)
        if self.states.ndim != 2:
            raise ValueError(f"states must be 2-D (n, {STATE_DIM}), got shape {self.states.shape}")
        n = len(self.states)
        for name in ("vgae_score", "gat_prob", "labels"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) like states, got {arr.shape}")
        if not np.all(np.isfinite(self.states)):
            raise ValueError("states contain NaN or inf")
        for name in ("vgae_score", "gat_prob"):
            arr = getattr(self, name)
            if not np.all((arr >= 0) & (arr <= 1)):
                raise ValueError(f"{name} must lie in [0, 1]")
        if not np.all((self.labels == 0) | (self.labels == 1)):
            raise ValueError("labels must contain only 0 (benign) and 1 (attack)")

    def __len__(self) -> int:
        return len(self.states)


def fuse(alpha: np.ndarray | float, vgae_score: np.ndarray, gat_prob: np.ndarray) -> np.ndarray:
    """Fused score (1 - alpha)·vgae_score + alpha·gat_prob (alpha per window or one scalar)."""
    return ((1.0 - alpha) * vgae_score + alpha * gat_prob).astype(np.float32)


def brier_reward(fused: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Default reward r = 1 - (y - fused)^2, in [0, 1].

    One minus the Brier score: a strictly proper scoring rule of the fused score, so the action that
    maximises the expected reward is the fusion weight giving the most confident *correct* score (a
    detector that is right and sure gets weight 1, one that is noise weight 0).  It has no
    correct/incorrect bonus at a fixed 0.5 cut, no agreement term and no alpha term, which drove the
    original shaped reward into alpha ~ 0.5 / alpha -> 1 collapses (reference design 8, point 4).
    """
    return (1.0 - np.square(labels - fused)).astype(np.float32)


def log_reward(fused: np.ndarray, labels: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Alternative reward: the log score log p(correct class), p clipped at ``floor`` (r in [log floor, 0]).

    Also strictly proper, but its gap between the best weight and a near-best one is first order in
    the weight difference where the Brier reward's is second order, so near-ties (the noisy detector
    happens to be nearly right) are resolved with far less training: on the toy of the tests the
    DQN reaches the obvious policy in ~15 episodes instead of ~100.  Pass it as ``reward_fn``.
    """
    p_correct = np.where(labels == 1, fused, 1.0 - fused)
    return np.log(np.clip(p_correct, floor, 1.0)).astype(np.float32)


@contextmanager
def _seeded_torch(seed: int) -> Iterator[None]:
    """Run a block with the CPU torch RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` torch intra-op threads (None: unchanged), then restore the count."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Standardizer:
    """Per-column mean / std fitted on training states (std 0 -> 1)."""

    def __init__(self, dim: int = STATE_DIM):
        self.mean = np.zeros(dim, dtype=np.float32)
        self.std = np.ones(dim, dtype=np.float32)

    def fit(self, states: np.ndarray) -> None:
        self.mean = states.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = states.std(axis=0, dtype=np.float64)
        self.std = np.where(std > _EPS, std, 1.0).astype(np.float32)

    def __call__(self, states: np.ndarray) -> np.ndarray:
        states = np.asarray(states, dtype=np.float32)
        if states.ndim != 2 or states.shape[1] != len(self.mean):
            raise ValueError(f"states must have shape (n, {len(self.mean)}), got {states.shape}")
        return (states - self.mean) / self.std

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": torch.from_numpy(self.mean.copy()), "std": torch.from_numpy(self.std.copy())}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        mean = np.asarray(state["mean"], dtype=np.float32)
        std = np.asarray(state["std"], dtype=np.float32)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"standardizer shape {mean.shape} does not match state dim {self.mean.shape}")
        self.mean, self.std = mean, std


def _summary(alpha: np.ndarray, labels: np.ndarray, action_values: np.ndarray | None = None) -> dict[str, Any]:
    """alpha per window and its mean overall and by class, as plain Python values (JSON-ready)."""
    alpha = np.asarray(alpha, dtype=np.float64)

    def mean_of(mask: np.ndarray) -> float | None:
        return round(float(alpha[mask].mean()), 6) if mask.any() else None

    out: dict[str, Any] = {
        "n_windows": int(len(alpha)),
        "mean_alpha": mean_of(np.ones(len(alpha), dtype=bool)),
        "mean_alpha_by_class": {"benign": mean_of(labels == 0), "attack": mean_of(labels == 1)},
        "alpha": [round(float(a), 6) for a in alpha],
    }
    if action_values is not None:
        idx = np.abs(alpha[:, None] - action_values[None, :]).argmin(axis=1)
        counts = np.bincount(idx, minlength=len(action_values))
        out["action_counts"] = {f"{a:.4g}": int(c) for a, c in zip(action_values, counts, strict=True)}
    return out


# --------------------------------------------------------------------------- DQN


class FusionQNetwork(nn.Module):
    """``layers`` x [Linear -> LayerNorm -> ReLU -> Dropout] -> Linear(hidden, n_actions).

    Parameters: 32,341 for (hidden 160, layers 2, 21 actions), 689,493 for (576, 3, 21)
    (reference design 3.4).
    """

    def __init__(
        self, state_dim: int = STATE_DIM, hidden: int = 160, layers: int = 2, n_actions: int = 21, dropout: float = 0.2
    ):
        super().__init__()
        if min(state_dim, hidden, layers, n_actions) < 1:
            raise ValueError("state_dim, hidden, layers and n_actions must be positive")
        blocks: list[nn.Module] = []
        width = state_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, n_actions))
        self.net = nn.Sequential(*blocks)

    def forward(self, states: Tensor) -> Tensor:
        """(n, state_dim) -> (n, n_actions) Q-values."""
        return self.net(states)


class ReplayBuffer:
    """Fixed-capacity numpy ring buffer of (s, a, r, s') transitions with uniform sampling.

    ``done`` is not stored: every transition is non-terminal (see :class:`DQNFusion` on gamma).
    """

    def __init__(self, capacity: int, state_dim: int = STATE_DIM):
        self.capacity = int(capacity)
        self.states = np.zeros((self.capacity, state_dim), dtype=np.float32)
        self.next_states = np.zeros((self.capacity, state_dim), dtype=np.float32)
        self.actions = np.zeros(self.capacity, dtype=np.int64)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_states: np.ndarray) -> None:
        """Append a batch of transitions, overwriting the oldest once full."""
        k = len(states)
        if k > self.capacity:  # only the newest `capacity` would survive anyway
            states, actions, rewards, next_states = (
                x[-self.capacity :] for x in (states, actions, rewards, next_states)
            )
            k = self.capacity
        idx = (self.pos + np.arange(k)) % self.capacity
        self.states[idx] = states
        self.next_states[idx] = next_states
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.pos = int((self.pos + k) % self.capacity)
        self.size = min(self.size + k, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Uniform sample without replacement (within the batch) of min(batch_size, len) transitions."""
        idx = rng.choice(self.size, size=min(batch_size, self.size), replace=False)
        return self.states[idx], self.actions[idx], self.rewards[idx], self.next_states[idx]


class DQNFusion:
    """Double-DQN fusion agent: picks the fusion weight alpha per window from its 15-value state.

    Actions are the weights alpha = linspace(0, 1, 1/action_step + 1) (21 for step 0.05); the
    fused score is (1 - alpha)·vgae_score + alpha·gat_prob.  **The decision is that fused score
    against a threshold chosen on validation by the caller, never ``alpha > 0.5``**: alpha only says
    which detector to trust for this window.

    Training (:meth:`fit`), per episode e = 0 .. episodes-1:

    1. epsilon_e = max(epsilon_end, epsilon_start · epsilon_decay^e) (recorded in the history);
    2. sample ``samples_per_episode`` training states without replacement (all of them when there are fewer),
       act epsilon-greedily on all of them at once, reward them with ``reward_fn(fused, labels)``
       (default :func:`brier_reward`) and store the transitions in the replay buffer;
    3. ``updates_per_episode`` gradient steps on uniform minibatches of ``batch_size``: SmoothL1
       between Q(s, a) and the target, AdamW, grad-norm clip 1.0; the target network is hard-copied
       from the online one every ``target_update`` optimizer steps;
    4. every ``validate_every`` episodes (and after the last one) the greedy policy's mean reward on
       validation is computed, and the best weights so far are kept; ``fit`` ends with them loaded.

    Target: with ``gamma == 0`` (the default: one window, one decision, a contextual bandit) the
    target is the reward itself and no next-state value is computed.  With ``gamma > 0``, s' is the
    next state in the episode's shuffled stream of sampled windows (cyclic: the last one's s' is the
    first one), no transition is terminal, and the target is
    r + gamma · Q_target(s', argmax_a Q_online(s', a)) (Double DQN).  Because s' does not depend on
    the action, this only adds an action-independent term and does not change the learned policy in
    expectation; E4 bootstrapped on s' = s with gamma 0.99 instead (quirk 3.5 (c)).

    States are standardised with the mean / std of the training states (part of the state dict).
    Deterministic for a given seed on CPU.  ``threads`` is the torch intra-op thread count during
    :meth:`fit` (restored afterwards; None leaves it alone).  One thread is fastest for these small
    networks, and several threads slow them down by an order of magnitude on a busy machine; on an
    idle many-core machine the large agent (acting on 20,000 states through 576-wide layers each
    episode, ~0.6 s single-threaded) gains from ``threads=None`` or a higher count.
    """

    method = "dqn"

    def __init__(self, cfg: DQNConfig, seed: int = 0, reward_fn: RewardFn = brier_reward, threads: int | None = 1):
        self.cfg = cfg
        self.seed = int(seed)
        self.threads = threads
        self.reward_fn = reward_fn
        self.action_values = np.linspace(0.0, 1.0, cfg.num_actions).astype(np.float32)
        self._reset()

    def _reset(self) -> None:
        """Fresh networks (seeded), optimizer, counters and standardisation."""
        c = self.cfg
        self.standardizer = _Standardizer()
        with _seeded_torch(self.seed):
            self.q_net = self._new_network()
            self.target_net = self._new_network()
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.eval()
        self.optimizer = torch.optim.AdamW(self.q_net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.optimizer_steps = 0
        self.target_updates = 0

    def _new_network(self) -> FusionQNetwork:
        c = self.cfg
        return FusionQNetwork(STATE_DIM, c.hidden, c.layers, c.num_actions, c.dropout)

    @property
    def n_actions(self) -> int:
        return len(self.action_values)

    # ----------------------------------------------------------------- inference

    @torch.no_grad()
    def _q(self, states_std: np.ndarray, net: nn.Module | None = None) -> Tensor:
        net = self.q_net if net is None else net
        was_training = net.training
        net.eval()
        q = net(torch.from_numpy(np.ascontiguousarray(states_std, dtype=np.float32)))
        net.train(was_training)
        return q

    def q_values(self, states: np.ndarray) -> np.ndarray:
        """(n, n_actions) Q-values of the online network (eval mode) for raw 15-value states."""
        return self._q(self.standardizer(states)).numpy()

    def actions(self, states: np.ndarray) -> np.ndarray:
        """Greedy action index per window."""
        return self._q(self.standardizer(states)).argmax(dim=1).numpy()

    def alphas(self, states: np.ndarray) -> np.ndarray:
        """Greedy fusion weight alpha per window (float32)."""
        return self.action_values[self.actions(states)]

    def score(self, data: FusionData) -> np.ndarray:
        """Fused score per window under the greedy policy (threshold it with a validation-chosen cut)."""
        return fuse(self.alphas(data.states), data.vgae_score, data.gat_prob)

    def policy_summary(self, data: FusionData) -> dict[str, Any]:
        """alpha per window, mean alpha overall and by class, count per action (for dqn_policy.json)."""
        return _summary(self.alphas(data.states), data.labels, self.action_values)

    def mean_reward(self, data: FusionData) -> float:
        """Mean reward of the greedy policy on ``data`` (the validation criterion)."""
        return float(np.mean(self.reward_fn(self.score(data), data.labels)))

    # ----------------------------------------------------------------- training

    def td_target(self, rewards: Tensor, next_states_std: Tensor) -> Tensor:
        """Regression target for Q(s, a): the reward when gamma == 0, else the Double-DQN target."""
        if self.cfg.gamma == 0:
            return rewards
        with torch.no_grad():
            was_training = self.q_net.training
            self.q_net.eval()
            best = self.q_net(next_states_std).argmax(dim=1, keepdim=True)
            self.q_net.train(was_training)
            next_q = self.target_net(next_states_std).gather(1, best).squeeze(1)
        return rewards + self.cfg.gamma * next_q

    def _update(self, batch: tuple[np.ndarray, ...]) -> float:
        states, actions, rewards, next_states = (torch.from_numpy(x) for x in batch)
        target = self.td_target(rewards, next_states)
        self.q_net.train()
        q = self.q_net(states).gather(1, actions[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_net.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer_steps += 1
        if self.optimizer_steps % self.cfg.target_update == 0:
            self.target_net.load_state_dict(self.q_net.state_dict())
            self.target_updates += 1
        return loss.item()

    def epsilon(self, episode: int) -> float:
        """Exploration rate of episode ``episode`` (0-based), decayed multiplicatively per episode."""
        c = self.cfg
        return max(c.epsilon_end, c.epsilon_start * c.epsilon_decay**episode)

    def fit(self, train: FusionData, val: FusionData | None = None) -> dict[str, Any]:
        """Train from scratch (fresh seeded networks); returns the history (plain Python values).

        History: per episode ``epsilon``, ``loss`` (mean over its updates), ``train_reward`` and
        ``train_mean_alpha`` (of the epsilon-greedy actions); per validation ``val_episode``,
        ``val_reward``, ``val_mean_alpha``; then ``best_episode``, ``best_val_reward``,
        ``optimizer_steps``, ``target_updates``, ``buffer_size``, ``seconds``.  Without ``val`` no
        validation happens and the final weights are kept.
        """
        if len(train) == 0:
            raise ValueError("no training windows")
        c = self.cfg
        start = time.perf_counter()
        self._reset()
        rng = np.random.default_rng(self.seed)
        self.standardizer.fit(train.states)
        train_std = self.standardizer(train.states)
        buffer = ReplayBuffer(c.buffer_size)
        n = len(train)
        keys = ("epsilon", "loss", "train_reward", "train_mean_alpha", "val_episode", "val_reward", "val_mean_alpha")
        history: dict[str, Any] = {key: [] for key in keys}
        best_reward, best_episode, best_weights = -np.inf, None, None
        with _seeded_torch(self.seed + 1), _num_threads(self.threads):  # seeded dropout masks
            for episode in range(c.episodes):
                eps = self.epsilon(episode)
                # at most every training window once per episode: acting on repeats costs time, adds nothing
                idx = rng.permutation(n)[: c.samples_per_episode]
                s = train_std[idx]
                actions = self._q(s).argmax(dim=1).numpy()
                explore = rng.random(len(idx)) < eps
                actions[explore] = rng.integers(0, self.n_actions, size=int(explore.sum()))
                alpha = self.action_values[actions]
                fused = fuse(alpha, train.vgae_score[idx], train.gat_prob[idx])
                rewards = np.asarray(self.reward_fn(fused, train.labels[idx]), dtype=np.float32)
                buffer.add(s, actions, rewards, np.roll(s, -1, axis=0))

                losses = [self._update(buffer.sample(c.batch_size, rng)) for _ in range(c.updates_per_episode)]
                history["epsilon"].append(eps)
                history["loss"].append(float(np.mean(losses)))
                history["train_reward"].append(float(rewards.mean()))
                history["train_mean_alpha"].append(float(alpha.mean()))

                if val is not None and ((episode + 1) % c.validate_every == 0 or episode == c.episodes - 1):
                    val_reward = self.mean_reward(val)
                    history["val_episode"].append(episode)
                    history["val_reward"].append(val_reward)
                    history["val_mean_alpha"].append(float(self.alphas(val.states).mean()))
                    if val_reward > best_reward:
                        best_reward, best_episode = val_reward, episode
                        best_weights = copy.deepcopy(self.q_net.state_dict())
        if best_weights is not None:
            self.q_net.load_state_dict(best_weights)
        self.q_net.eval()
        history.update(
            best_episode=best_episode,
            best_val_reward=None if best_episode is None else float(best_reward),
            episodes=c.episodes,
            optimizer_steps=self.optimizer_steps,
            target_updates=self.target_updates,
            buffer_size=len(buffer),
            seconds=time.perf_counter() - start,
        )
        return history

    # ----------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        """Online (best) network, standardisation and action values; ``torch.save``-able."""
        return {
            "method": self.method,
            "q_net": copy.deepcopy(self.q_net.state_dict()),
            "standardizer": self.standardizer.state_dict(),
            "action_values": torch.from_numpy(self.action_values.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_method(state, self.method)
        values = np.asarray(state["action_values"], dtype=np.float32)
        if values.shape != self.action_values.shape or not np.allclose(values, self.action_values):
            raise ValueError(f"saved agent has {len(values)} actions, this config {self.n_actions}")
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["q_net"])
        self.standardizer.load_state_dict(state["standardizer"])
        self.q_net.eval()


def _check_method(state: dict[str, Any], method: str) -> None:
    saved = state.get("method")
    if saved != method:
        raise ValueError(f"state dict is for fusion method {saved!r}, not {method!r}")


# --------------------------------------------------------------------------- baselines


class _MLP(nn.Module):
    def __init__(self, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        width = STATE_DIM
        for h in hidden:
            blocks += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, states: Tensor) -> Tensor:
        return self.net(states).squeeze(-1)


class MLPFusion:
    """MLP baseline: standardised state -> 64 -> 32 -> 1 logit (ReLU, dropout), fused score = sigmoid.

    BCE-with-logits against the label, Adam, ``epochs`` passes of shuffled minibatches of
    ``batch_size``, from fresh seeded weights; the weights with the lowest validation loss are kept.
    ``threads`` as in :class:`DQNFusion`.  Its score does not use vgae_score / gat_prob directly
    (they are in the state), and it has no alpha.
    """

    method = "mlp"

    def __init__(self, cfg: FusionConfig, seed: int = 0, batch_size: int = 64, threads: int | None = 1):
        self.cfg = cfg
        self.seed = int(seed)
        self.threads = threads
        self.batch_size = int(batch_size)
        self._reset()

    def _reset(self) -> None:
        self.standardizer = _Standardizer()
        with _seeded_torch(self.seed):
            self.net = _MLP(tuple(self.cfg.mlp_hidden), self.cfg.mlp_dropout)
        self.net.eval()

    @torch.no_grad()
    def logits(self, states: np.ndarray) -> np.ndarray:
        self.net.eval()
        return self.net(torch.from_numpy(self.standardizer(states))).numpy()

    def score(self, data: FusionData) -> np.ndarray:
        return torch.sigmoid(torch.from_numpy(self.logits(data.states))).numpy()

    def _loss(self, data: FusionData) -> float:
        with torch.no_grad():
            logits = torch.from_numpy(self.logits(data.states))
            return float(F.binary_cross_entropy_with_logits(logits, torch.from_numpy(data.labels)))

    def fit(self, train: FusionData, val: FusionData | None = None) -> dict[str, Any]:
        if len(train) == 0:
            raise ValueError("no training windows")
        start = time.perf_counter()
        self._reset()
        rng = np.random.default_rng(self.seed)
        self.standardizer.fit(train.states)
        x = torch.from_numpy(self.standardizer(train.states))
        y = torch.from_numpy(train.labels)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg.mlp_lr)
        history: dict[str, Any] = {"train_loss": [], "val_loss": []}
        best_loss, best_epoch, best_weights = np.inf, None, None
        with _seeded_torch(self.seed + 1), _num_threads(self.threads):
            for epoch in range(self.cfg.epochs):
                self.net.train()
                order = torch.from_numpy(rng.permutation(len(train)))
                total = 0.0
                for b in range(0, len(order), self.batch_size):
                    idx = order[b : b + self.batch_size]
                    loss = F.binary_cross_entropy_with_logits(self.net(x[idx]), y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(idx)
                history["train_loss"].append(total / len(order))
                if val is not None:
                    val_loss = self._loss(val)
                    history["val_loss"].append(val_loss)
                    if val_loss < best_loss:
                        best_loss, best_epoch = val_loss, epoch
                        best_weights = copy.deepcopy(self.net.state_dict())
        if best_weights is not None:
            self.net.load_state_dict(best_weights)
        self.net.eval()
        history.update(
            best_epoch=best_epoch,
            best_val_loss=None if best_epoch is None else float(best_loss),
            seconds=time.perf_counter() - start,
        )
        return history

    def state_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "net": copy.deepcopy(self.net.state_dict()),
            "standardizer": self.standardizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_method(state, self.method)
        self.net.load_state_dict(state["net"])
        self.standardizer.load_state_dict(state["standardizer"])
        self.net.eval()


class WeightedFusion:
    """Weighted-average baseline: one global alpha = sigmoid(w), fused = (1 - alpha)·vgae + alpha·gat.

    w starts at 0 (alpha 0.5) and is fitted with BCE on the fused score (clamped away from 0 and 1),
    Adam, full batch, ``epochs`` steps; the w with the lowest validation loss is kept.
    """

    method = "weighted"

    def __init__(self, cfg: FusionConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = int(seed)  # nothing random; kept for a uniform constructor
        self.w = nn.Parameter(torch.zeros(()))

    @property
    def alpha(self) -> float:
        return float(torch.sigmoid(self.w.detach()))

    def alphas(self, states: np.ndarray) -> np.ndarray:
        """The single alpha, repeated per window."""
        return np.full(len(states), self.alpha, dtype=np.float32)

    def score(self, data: FusionData) -> np.ndarray:
        return fuse(np.float32(self.alpha), data.vgae_score, data.gat_prob)

    def policy_summary(self, data: FusionData) -> dict[str, Any]:
        return _summary(self.alphas(data.states), data.labels)

    def _loss(self, vgae: Tensor, gat: Tensor, y: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.w)
        fused = ((1 - alpha) * vgae + alpha * gat).clamp(_EPS, 1 - _EPS)
        return F.binary_cross_entropy(fused, y)

    def fit(self, train: FusionData, val: FusionData | None = None) -> dict[str, Any]:
        if len(train) == 0:
            raise ValueError("no training windows")
        start = time.perf_counter()
        with torch.no_grad():
            self.w.zero_()
        tensors = [torch.from_numpy(a) for a in (train.vgae_score, train.gat_prob, train.labels)]
        val_tensors = None if val is None else [torch.from_numpy(a) for a in (val.vgae_score, val.gat_prob, val.labels)]
        optimizer = torch.optim.Adam([self.w], lr=self.cfg.weighted_lr)
        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "alpha": []}
        best_loss, best_epoch, best_w = np.inf, None, None
        for epoch in range(self.cfg.epochs):
            loss = self._loss(*tensors)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["train_loss"].append(loss.item())
            history["alpha"].append(self.alpha)
            if val_tensors is not None:
                with torch.no_grad():
                    val_loss = float(self._loss(*val_tensors))
                history["val_loss"].append(val_loss)
                if val_loss < best_loss:
                    best_loss, best_epoch, best_w = val_loss, epoch, self.w.detach().clone()
        if best_w is not None:
            with torch.no_grad():
                self.w.copy_(best_w)
        history.update(
            best_epoch=best_epoch,
            best_val_loss=None if best_epoch is None else float(best_loss),
            final_alpha=self.alpha,
            seconds=time.perf_counter() - start,
        )
        return history

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method, "w": self.w.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_method(state, self.method)
        with torch.no_grad():
            self.w.copy_(torch.as_tensor(state["w"], dtype=self.w.dtype))


# --------------------------------------------------------------------------- factory


def make_fusion(
    method: str, dqn_cfg: DQNConfig, fusion_cfg: FusionConfig, seed: int = 0, reward_fn: RewardFn = brier_reward
) -> DQNFusion | MLPFusion | WeightedFusion:
    """The fusion method named ``method`` (dqn | mlp | weighted); the MLP uses ``dqn_cfg.batch_size``."""
    if method == "dqn":
        return DQNFusion(dqn_cfg, seed, reward_fn=reward_fn)
    if method == "mlp":
        return MLPFusion(fusion_cfg, seed, batch_size=dqn_cfg.batch_size)
    if method == "weighted":
        return WeightedFusion(fusion_cfg, seed)
    raise ValueError(f"unknown fusion method {method!r} (choose from: dqn, mlp, weighted)")
