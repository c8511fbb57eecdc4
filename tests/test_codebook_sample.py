"""The codebook-sample experiment's features (recipes/experiments/codebook_sample.py)."""
from __future__ import annotations

import numpy as np
import torch

from recipes.experiments.codebook_sample import lr_score, unit_bags


def test_unit_bags_count_collapsed_units_per_clip():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    clip = torch.tensor([[0.1, 0.0], [0.2, 0.1], [9.0, 0.5], [0.0, 9.5], [0.0, 9.9], [0.3, 0.2]])  # 0 0 1 2 2 0
    bags = unit_bags([clip, clip[2:3]], centroids)
    assert bags.shape == (2, 3)
    assert np.allclose(bags[0], [2 / 4, 1 / 4, 1 / 4])  # units 0 1 2 0 after repeats collapse
    assert np.allclose(bags[1], [0, 1, 0])


def test_lr_score_separates_separable_bags_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    sep = np.eye(2)[y] + rng.normal(size=(80, 2)) * 0.05
    assert lr_score(sep[::2], y[::2], sep[1::2], y[1::2]) == 1.0
    noise = rng.normal(size=(80, 4))
    assert lr_score(noise[::2], y[::2], noise[1::2], y[1::2]) < 0.75
