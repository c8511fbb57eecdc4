"""recipes.build.backbone: which corpus clips fit the codebook and which are encoded for the LM (--real-share)."""
from __future__ import annotations

import numpy as np

from recipes.build.backbone import hours_subset, kmeans_pick


def corpus(n_real: int = 40, n_synth: int = 160) -> list[dict]:
    """A manifest: real clips of 2 s and synthetic clips of 3 s, interleaved."""
    rows = [{"path": f"r{i}.wav", "source": "real", "seconds": "2.0"} for i in range(n_real)]
    rows += [{"path": f"s{i}.wav", "source": "espeak", "seconds": "3.0"} for i in range(n_synth)]
    return [rows[i] for i in np.random.default_rng(7).permutation(len(rows))]


def real_count(rows: list[dict], idx) -> int:
    return sum(rows[i]["source"] == "real" for i in idx)


def test_kmeans_pick_at_random_is_the_v2_sample():
    rows = corpus()
    assert list(kmeans_pick(rows, 50, 0.0, np.random.default_rng(0))) == \
        list(np.random.default_rng(0).permutation(len(rows))[:50])


def test_kmeans_pick_takes_the_asked_share_of_real_clips_and_no_clip_twice():
    rows = corpus()
    pick = kmeans_pick(rows, 50, 0.5, np.random.default_rng(0))
    assert len(pick) == len(set(pick.tolist())) == 50
    assert real_count(rows, pick) == 25
    # fewer real clips than the share asks for: all of them, synthetic ones fill the rest
    pick = kmeans_pick(rows, 100, 0.6, np.random.default_rng(0))
    assert real_count(rows, pick) == 40 and len(pick) == 100


def test_hours_subset_at_random_matches_the_v2_rule():
    rows = corpus()
    order = np.random.default_rng(3).permutation(len(rows))
    secs = np.cumsum([float(rows[i]["seconds"]) for i in order])
    expected = [rows[i] for i in sorted(order[: int(np.searchsorted(secs, 0.1 * 3600)) + 1])]
    assert hours_subset(rows, 0.1, 0.0, np.random.default_rng(3)) == expected


def test_hours_subset_puts_real_recordings_first_up_to_their_share():
    rows = corpus()
    sub = hours_subset(rows, 0.04, 0.5, np.random.default_rng(0))  # 144 s: about 72 s real, the rest synthetic
    real = [r for r in sub if r["source"] == "real"]
    assert 72 <= 2.0 * len(real) <= 74
    assert 144 <= sum(float(r["seconds"]) for r in sub) <= 147
    assert sub == [r for r in rows if r in sub]  # corpus order kept
    everything = hours_subset(rows, 1.0, 0.5, np.random.default_rng(0))  # more hours asked than real clips hold
    assert sum(r["source"] == "real" for r in everything) == 40
