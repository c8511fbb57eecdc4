"""recipes/common/spread.py: per-speaker figures and the speaker-level bootstrap interval of a test figure."""
from __future__ import annotations

import numpy as np

from app.metrics import eer
from recipes.common.spread import fast_eer, per_speaker, speaker_interval, spread


def test_one_speaker_all_right_one_all_wrong_spans_the_whole_range():
    correct = [True] * 10 + [False] * 10
    speakers = ["a"] * 10 + ["b"] * 10
    assert per_speaker(correct, speakers) == {"a": 1.0, "b": 0.0}
    # resamples draw {a, a}, {a, b} or {b, b}: accuracy 1, 0.5 or 0, each of the outer two a quarter of the time
    assert speaker_interval(correct, speakers) == [0.0, 1.0]
    assert speaker_interval(correct, speakers, seed=3) == [0.0, 1.0]


def test_agreeing_speakers_give_a_tight_interval_and_one_speaker_none():
    correct = [True, True, True, False] * 6
    speakers = [s for s in "abcdef" for _ in range(4)]
    assert speaker_interval(correct, speakers) == [0.75, 0.75]
    assert speaker_interval(correct, ["a"] * len(correct)) is None
    assert per_speaker([True] * 4, ["a"] * 4) == {}  # fewer than 5 clips: not listed on its own


def test_spread_counts_real_and_synthetic_and_gives_a_real_only_figure():
    correct = [True] * 5 + [False] * 5 + [True] * 10
    speakers = ["p1"] * 5 + ["p2"] * 5 + ["espeak:f1"] * 5 + ["espeak:m1"] * 5
    sources = ["real"] * 10 + ["synth"] * 10
    s = spread(correct, speakers, sources)
    assert (s["speakers"], s["real_speakers"], s["synthetic_voices"]) == (4, 2, 2)
    assert s["metric"] == "accuracy" and s["per_speaker"]["p2"] == 0.0
    assert s["real_only"]["accuracy"] == 0.5 and s["real_only"]["interval"] == [0.0, 1.0]
    assert "real_only" not in spread(correct, speakers, ["real"] * 20)


def test_fast_eer_is_app_metrics_eer_and_the_eer_interval_brackets_it():
    rng = np.random.default_rng(0)
    positives = rng.random(200) < 0.4
    scores = np.round(rng.random(200) + 0.5 * positives, 2)  # rounded: ties on purpose
    assert abs(fast_eer(scores, positives) - eer(scores.tolist(), positives.tolist())) < 1e-12
    assert fast_eer(scores[positives], positives[positives]) is None
    speakers = [f"s{i % 20}" for i in range(200)]
    s = spread(list(positives == (scores > 0.75)), speakers, ["real"] * 200, scores=scores.tolist(),
               positives=positives.tolist())
    lo, hi = s["interval"]
    assert s["metric"] == "eer" and lo <= eer(scores.tolist(), positives.tolist()) <= hi and lo < hi
