"""recipes/experiments/stream_probe.py: order-free stream statistics and the probe that reads them."""
from __future__ import annotations

import numpy as np
import torch

from app.encoder.units import Units
from recipes.experiments.stream_probe import clip_features, probe


def _clip(rng, f0: float) -> Units:
    n = int(rng.integers(10, 30))
    return Units(ids=torch.from_numpy(rng.integers(0, 20, n)), durations=torch.from_numpy(rng.integers(1, 6, n)),
                 pitch=torch.full((n,), f0) * torch.from_numpy(rng.uniform(0.95, 1.05, n)).float())


def test_features_share_of_units_and_voiced_log_f0():
    u = Units(ids=torch.tensor([1, 1, 3, 4]), durations=torch.tensor([1, 2, 3, 20]),
              pitch=torch.tensor([100.0, 0.0, 100.0, 0.0]))
    f = clip_features(u, n_units=5)
    assert np.allclose(f["units"], [0, 0.5, 0, 0.25, 0.25])
    assert np.isclose(f["prosody"][-3], np.log(100.0)) and np.isclose(f["prosody"][-2], 0.0)  # voiced units only
    assert f["all"].size == f["units"].size + f["prosody"].size


def test_probe_finds_a_label_carried_by_pitch_and_not_by_units():
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 2, n).tolist()
        feats = [clip_features(_clip(rng, 120.0 if c == 0 else 220.0), n_units=20) for c in y]
        return {k: (np.stack([f[k] for f in feats]), y) for k in ("units", "prosody")}

    train, val, test = split(200), split(60), split(100)
    prosody = probe(train["prosody"], val["prosody"], {"test": test["prosody"]})
    units = probe(train["units"], val["units"], {"test": test["units"]})
    assert prosody["test"] > 0.95
    assert units["test"] < 0.75  # unit ids are drawn independently of the label


def test_final_rise_reads_the_end_of_the_melody_in_voiced_frames():
    """A question's rising end against a statement's falling one, with the same mean pitch and unvoiced tails."""
    n = 40
    up = torch.linspace(100.0, 150.0, n)
    tail = torch.zeros(3)
    rising = Units(ids=torch.arange(n + 3), durations=torch.full((n + 3,), 2), pitch=torch.cat([up, tail]))
    falling = Units(ids=torch.arange(n + 3), durations=torch.full((n + 3,), 2), pitch=torch.cat([up.flip(0), tail]))
    r, f = clip_features(rising, n_units=50)["rise"], clip_features(falling, n_units=50)["rise"]
    assert r.shape == (5,) and r[0] > 0.1 and f[0] < -0.1  # last voiced frames above / under the median
    assert r[3] > 0 > f[3]  # slope over the last 25 voiced frames
    assert np.allclose(clip_features(Units(ids=torch.tensor([1]), durations=torch.tensor([3]),
                                           pitch=torch.tensor([0.0])), n_units=5)["rise"], 0)  # nothing voiced
