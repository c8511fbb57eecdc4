"""recipes/experiments/readout_probe.py and voice_fit.py: what they read from a backbone, and how they pick C."""
from __future__ import annotations

import numpy as np
import torch

from app.encoder.units import VoiceQuantizer
from app.prompting import PromptConfig, TaskInfo, TaskPrompt, prompted_forward
from recipes.experiments import readout_probe, voice_fit
from tests.conftest import KINDS, tiny_voice_backbone, tone_clip


def test_mean_outputs_are_what_a_mean_verbalizer_reads_without_a_prompt():
    bb = tiny_voice_backbone(seed=0)
    units = [bb.encoder(torch.from_numpy(tone_clip(k, seed=i, seconds=1.2))) for i, k in enumerate(KINDS)]
    feats = readout_probe.mean_outputs(bb, units)
    assert set(feats) == {"units", "duration", "pitch", "voice"}
    assert feats["units"].shape == (3, bb.lm.config.vocab_size)
    # an empty prompt (length 0, no deep prompt) reading the mean: the same distributions over the units' positions,
    # except that it also averages the separator's (one position more)
    prompt = TaskPrompt(bb.lm.config, TaskInfo("t", ["a", "b"]), PromptConfig(prompt_length=0, deep=False,
                                                                               read_at="mean"))
    with torch.no_grad():
        out = prompted_forward(bb.lm, units[:1], [prompt])
    n = len(units[0])
    separator = np.exp(out.mean_logp["units"][0].numpy()) * (n + 1) - np.exp(feats["units"][0]) * n
    assert separator.min() > -1e-4 and abs(separator.sum() - 1.0) < 1e-3  # what is left is one distribution
    assert np.allclose(np.exp(feats["units"]).sum(1), 1.0, atol=1e-4)


def test_probe_picks_c_on_the_folds_and_reports_the_test():
    rng = np.random.default_rng(0)

    def part(n):
        y = rng.integers(0, 2, n)
        return np.c_[y + rng.normal(0, 0.3, n), rng.normal(0, 1, (n, 5))], y

    (xt, yt), (xv, yv), (xe, ye) = part(200), part(80), part(80)
    row = readout_probe.probe([(xt, yt, xv, yv), (xv, yv, xt, yt)], (xt, yt, xe, ye))
    assert row["C"] in readout_probe.CS and len(row["folds"]) == 2
    assert row["val_mean"] > 0.9 and row["test"] > 0.9


def test_voice_bag_is_each_directions_share_of_buckets():
    g = torch.Generator().manual_seed(0)
    q = VoiceQuantizer.fit(torch.randn(2000, 6, generator=g), layer=1, window=50, n_streams=3, n_buckets=4)
    windows = [torch.randn(5, 6, generator=g).numpy(), torch.randn(1, 6, generator=g).numpy()]
    bags = voice_fit.bag(q, windows)
    assert bags.shape == (2, 3 * 4)
    assert np.allclose(bags.reshape(2, 3, 4).sum(-1), 1.0)
    assert set(np.unique(bags[1])) <= {0.0, 1.0}  # one window: one bucket per direction
    assert voice_fit.whitened(q, windows).shape == (2, 6)
