"""How much a test figure depends on who is speaking: per-speaker accuracy and a speaker-level (cluster) bootstrap
interval, for accuracy and for EER; train_prompts stores them beside every variant's test figure."""
from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_CLIPS = 5  # a speaker's own accuracy is listed only from this many test clips
RESAMPLES = 1000
LEVEL = 0.95


def fast_eer(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """:func:`app.metrics.eer` (same thresholds and tie rule), vectorised for resampling; None without both classes."""
    pos, neg = np.sort(scores[positives]), np.sort(scores[~positives])
    if not pos.size or not neg.size:
        return None
    t = np.unique(scores)
    far = (neg.size - np.searchsorted(neg, t, "left")) / neg.size
    frr = np.searchsorted(pos, t, "left") / pos.size
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def _figure(correct: np.ndarray, scores: np.ndarray | None, positives: np.ndarray | None,
            idx: np.ndarray) -> float | None:
    """Accuracy of the clips ``idx`` (EER when ``scores`` are given)."""
    if scores is None:
        return float(correct[idx].mean())
    return fast_eer(scores[idx], positives[idx])


def speaker_interval(correct: Sequence[bool], speakers: Sequence[str], scores: Sequence[float] | None = None,
                     positives: Sequence[bool] | None = None, resamples: int = RESAMPLES,
                     seed: int = 0) -> list[float] | None:
    """95 % interval of the accuracy (or, with ``scores``/``positives``, the EER) over ``resamples`` resamplings of
    the speakers with replacement, each bringing all its clips; None with fewer than two speakers."""
    spk = np.asarray(speakers)
    names = np.unique(spk)
    if names.size < 2:
        return None
    members = [np.flatnonzero(spk == n) for n in names]
    c = np.asarray(correct, bool)
    s = None if scores is None else np.asarray(scores, float)
    p = None if positives is None else np.asarray(positives, bool)
    rng = np.random.default_rng(seed)
    figures = []
    for _ in range(resamples):
        idx = np.concatenate([members[i] for i in rng.integers(0, names.size, names.size)])
        f = _figure(c, s, p, idx)
        if f is not None:
            figures.append(f)
    if not figures:
        return None
    tail = 100 * (1 - LEVEL) / 2
    return [round(float(np.percentile(figures, tail)), 4), round(float(np.percentile(figures, 100 - tail)), 4)]


def per_speaker(correct: Sequence[bool], speakers: Sequence[str], min_clips: int = MIN_CLIPS) -> dict[str, float]:
    """Accuracy of each speaker with at least ``min_clips`` clips."""
    c, spk = np.asarray(correct, bool), np.asarray(speakers)
    return {str(n): round(float(c[spk == n].mean()), 4) for n in np.unique(spk) if (spk == n).sum() >= min_clips}


def spread(correct: Sequence[bool], speakers: Sequence[str], sources: Sequence[str],
           scores: Sequence[float] | None = None, positives: Sequence[bool] | None = None, seed: int = 0) -> dict:
    """What a test figure's ``spread`` holds: speaker counts (real people, synthetic voices), per-speaker accuracy,
    the speaker-bootstrap interval of the figure (EER when ``scores`` are given), and, when the split mixes real
    and synthetic clips, the accuracy on real speakers only with its own interval."""
    src = np.asarray(sources)
    real = src == "real"
    spk = np.asarray(speakers)
    out = {"metric": "accuracy" if scores is None else "eer",
           "speakers": int(np.unique(spk).size), "real_speakers": int(np.unique(spk[real]).size),
           "synthetic_voices": int(np.unique(spk[~real]).size),
           "interval": speaker_interval(correct, speakers, scores, positives, seed=seed),
           "per_speaker": per_speaker(correct, speakers)}
    if real.any() and not real.all():
        c = np.asarray(correct, bool)
        out["real_only"] = {"accuracy": round(float(c[real].mean()), 4), "clips": int(real.sum()),
                            "speakers": out["real_speakers"],
                            "interval": speaker_interval(c[real], spk[real], seed=seed)}
    return out
