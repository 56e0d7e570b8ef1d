"""The DQN fusion agent: a Double DQN choosing the GAT's weight alpha per window (reference design 3.5)."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdgat.core.schema import DQNConfig
from kdgat.fusion.data import (
    STATE_DIM,
    FusionData,
    Standardizer,
    check_method,
    fuse,
    num_threads,
    policy_summary_of,
    seeded_torch,
)
from kdgat.fusion.rewards import RewardFn, brier_reward


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
        self.standardizer = Standardizer()
        with seeded_torch(self.seed):
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
        return policy_summary_of(self.alphas(data.states), data.labels, self.action_values)

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
        with seeded_torch(self.seed + 1), num_threads(self.threads):  # seeded dropout masks
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
        check_method(state, self.method)
        values = np.asarray(state["action_values"], dtype=np.float32)
        if values.shape != self.action_values.shape or not np.allclose(values, self.action_values):
            raise ValueError(f"saved agent has {len(values)} actions, this config {self.n_actions}")
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["q_net"])
        self.standardizer.load_state_dict(state["standardizer"])
        self.q_net.eval()
