"""recipes/experiments/backbone_v2.py: speaker-disjoint folds, unit collapsing, voice streams, position removal.

Synthetic arrays only (no shared data, no Whisper weights); under a second.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app.encoder.whisper import sinusoids
from recipes.experiments import backbone_v2 as bv


def fake_items(task: str) -> np.ndarray:
    g = np.random.default_rng(0)
    if task == "digits":
        spk = np.repeat(["jackson", "nicolas", "theo", "yweweler"], 20)
        return np.stack([np.full(80, "p"), g.integers(0, 10, 80).astype(str), spk], 1)
    if task in ("gender", "emotion"):
        spk = np.repeat([f"{a:02d}" for a in range(1, 21)], 6)
        return np.stack([np.full(120, "p"), g.choice(["happy", "sad"], 120), spk], 1)
    if task == "language":
        rows = [("p", lang, f"{lang}-s{s}") for lang in ("de", "en", "fr") for s in range(3) for _ in range(5)]
        return np.array(rows)
    spk = np.array([f"spk{i % 37}" for i in range(200)])
    return np.stack([np.full(200, "p"), g.choice(["yes", "no"], 200), spk], 1)


@pytest.mark.parametrize("task", list(bv.TASKS))
def test_folds_test_every_clip_once_on_unheard_speakers(task: str) -> None:
    items = fake_items(task)
    lab, spk, folds = bv.folds_of(task, items)
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(items)))  # each clip exactly once
    for tr, te in folds:
        assert not set(spk[tr]) & set(spk[te])
        assert len(tr) + len(te) == len(items)
    if task == "gender":
        assert set(lab) == {"male", "female"}
        for _, te in folds:  # every RAVDESS fold: 2 male + 2 female actors
            assert sorted(lab[te][::6].tolist()) == ["female", "female", "male", "male"]
    if task == "language":  # one session of every language per fold
        for _, te in folds:
            assert sorted(set(lab[te])) == ["de", "en", "fr"] and len(set(spk[te])) == 3


def test_collapse_and_bag() -> None:
    ids, dur, starts = bv.collapse(np.array([5, 5, 7, 7, 7, 5]))
    assert ids.tolist() == [5, 7, 5] and dur.tolist() == [2, 3, 1] and starts.tolist() == [0, 2, 5]
    b = bv.bag([ids, np.array([1])], 8)
    assert b.shape == (2, 8) and b[0, 5] == pytest.approx(2 / 3) and b[1, 1] == 1


def test_window_stats_cover_every_frame() -> None:
    x = np.random.default_rng(0).standard_normal((123, 4)).astype(np.float32)
    stats, which = bv.window_stats(x, 50)
    assert stats.shape == (2, 8) and len(which) == 123 and which[0] == 0 and which[-1] == 1
    np.testing.assert_allclose(stats[0, :4], x[which == 0].mean(0), rtol=1e-5)
    whole, w0 = bv.window_stats(x, 0)
    assert whole.shape == (1, 8) and (w0 == 0).all()


def test_voice_scalar_quantizer_equal_mass_bins() -> None:
    g = np.random.default_rng(0)
    pool = g.standard_normal((2000, 12)) @ g.standard_normal((12, 12))
    vq = bv.VoiceQuantizer(pool.astype(np.float32), n_pca=8, bins=8)
    streams = vq.streams(pool.astype(np.float32), "sq4x8")
    assert len(streams) == 4 and all(v == 8 for _, v in streams)
    for codes, _ in streams:  # quantiles of the pool itself: every bin holds 1/8 of it
        counts = np.bincount(codes, minlength=8)
        assert counts.min() >= 230 and counts.max() <= 270
    (km, vocab), = vq.streams(pool[:5].astype(np.float32), "km64")
    assert vocab == 64 and km.shape == (5,)


def test_position_table_removed(tmp_path) -> None:
    g = np.random.default_rng(0)
    frames = g.standard_normal((30, 16)).astype(np.float16)
    np.savez(tmp_path / "x.npz", items=np.array([["a", "", "s"], ["b", "", "s"]]), offsets=np.array([0, 10, 30]),
             f0=np.zeros(30, np.float32), tiny_L3=frames)
    feats = bv.Feats(bv.Paths(tmp_path.parent, tmp_path, tmp_path))
    feats.paths.feats = tmp_path
    clips = feats.clips("x", "tiny_L3-pos")
    table = sinusoids(1500, 16).numpy()
    np.testing.assert_allclose(clips[1], frames[10:].astype(np.float32) - table[:20], atol=1e-6)


def test_kmeans_separates_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    centres = (torch.tensor([5.0, 0]), torch.tensor([-5.0, 0]))
    x = torch.cat([torch.randn(100, 2, generator=g) * 0.1 + c for c in centres])
    c = bv.kmeans(x, 2)
    a = bv.assign(x, c)
    assert len(set(a[:100].tolist())) == 1 and len(set(a[100:].tolist())) == 1 and a[0] != a[150]
