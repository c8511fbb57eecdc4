"""The LM health probe's features (recipes/experiments/lm_health.py)."""
from __future__ import annotations

import numpy as np
import torch

from app.encoder.units import N_DURATION_BUCKETS, N_PITCH_BUCKETS, Units
from recipes.experiments.lm_health import bag, few_shot, hidden
from tests.conftest import tiny_voice_backbone, tone_clip


def test_bag_counts_every_stream_per_unit():
    u = Units(ids=torch.tensor([1, 1, 3]), durations=torch.tensor([1, 2, 20]), pitch=torch.tensor([0.0, 100.0, 0.0]),
              voice=torch.tensor([[0, 1], [0, 2], [3, 1]]))
    x = bag(u, n_units=4, n_voice=2, voice_buckets=4)
    assert x.shape == (4 + N_DURATION_BUCKETS + N_PITCH_BUCKETS + 8,)
    assert np.allclose(x[:4], [0, 2 / 3, 0, 1 / 3])
    voice = x[-8:]
    assert np.allclose(voice[:4], [2 / 3, 0, 0, 1 / 3]) and np.allclose(voice[4:], [0, 2 / 3, 1 / 3, 0])
    for part in (x[4:4 + N_DURATION_BUCKETS], x[4 + N_DURATION_BUCKETS:-8]):
        assert np.isclose(part.sum(), 1.0)


def test_hidden_features_do_not_depend_on_the_batch():
    bb = tiny_voice_backbone()
    units = [bb.encoder(torch.from_numpy(tone_clip(k, seconds=s))) for k, s in (("low", 0.5), ("chirp", 1.5))]
    both = hidden(bb.lm, units)
    assert both.shape == (2, 2 * bb.lm.config.n_embd)
    assert np.allclose(both[0], hidden(bb.lm, units[:1])[0], atol=1e-5)


def test_few_shot_is_perfect_on_separable_classes_and_chance_on_noise():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    sep = np.eye(3)[y] * 5 + rng.normal(size=(90, 3)) * 0.1
    assert few_shot(sep, y, sep, y, k=3, draws=2) == [1.0, 1.0]
    noise = rng.normal(size=(90, 3))
    assert np.mean(few_shot(noise[:45], y[:45], noise[45:], y[45:], k=5, draws=3)) < 0.7
