"""The GAT curriculum: VGAE-hard benign windows, a sample that changes every epoch."""

from __future__ import annotations

import numpy as np

from kdgat.training.curriculum import curriculum_indices


def test_schedule_follows_the_reference_and_changes_every_epoch():
    labels = np.array([1] * 10 + [0] * 100)
    difficulty = np.concatenate((np.zeros(10), np.arange(100, dtype=float)))  # benign i has difficulty i
    samples = [curriculum_indices(labels, difficulty, epoch, max_epochs=4) for epoch in range(5)]
    for sample in samples:
        assert set(range(10)) <= set(sample.tolist())  # every attack window, every epoch
    benign = [sorted(set(s.tolist()) - set(range(10))) for s in samples]
    # epoch 0: p = 0, ratio 1 -> 10 benign from those at/above the 75th percentile: the 10 hardest
    assert benign[0] == list(range(100, 110))
    # epoch 2: p = 0.5, ratio 5.5 -> up to 55, but only the top 15% (>= 85th percentile) are eligible
    assert benign[2] == list(range(95, 110))
    # epoch 4 (and later): p = 1, ratio 10, 95th percentile -> the 5 hardest
    assert benign[4] == list(range(105, 110))
    assert all(a != b for a, b in zip(benign, benign[1:], strict=False))  # changes from each epoch to the next


def test_without_attacks_all_eligible_benign_windows_are_used():
    labels = np.zeros(20, dtype=int)
    sample = curriculum_indices(labels, np.arange(20, dtype=float), 0, 10)
    assert sample.tolist() == list(range(15, 20))
