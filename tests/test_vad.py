"""The energy VAD on synthetic signals: words found where they are, whatever the chunking, rate and background."""
from __future__ import annotations

import numpy as np
import pytest

from app.encoder.vad import EnergyVAD, VADConfig


def _signal(sr: int, parts: list[tuple[str, float]], noise_db: float | None = None, seed: int = 0) -> np.ndarray:
    """Concatenate ('tone'|'gap', seconds) parts: tones are 0.3-amplitude 220 Hz with harmonics."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, sec in parts:
        t = np.arange(int(sec * sr)) / sr
        x = 0.3 * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 660 * t)) / 1.5 if kind == "tone" \
            else np.zeros_like(t)
        out.append(x)
    x = np.concatenate(out).astype(np.float32)
    if noise_db is not None:
        x += (10 ** (noise_db / 20) * rng.standard_normal(x.size)).astype(np.float32)
    return x


def _run(vad: EnergyVAD, x: np.ndarray, chunk: int) -> list:
    segs = []
    for i in range(0, x.size, chunk):
        segs += vad.push(x[i:i + chunk])
    return segs + vad.flush()


@pytest.mark.parametrize("sr,chunk", [(16_000, 1600), (48_000, 4800), (48_000, 1234), (44_100, 99_999)])
def test_words_are_found_where_they_are(sr, chunk):
    parts = [("gap", 0.5), ("tone", 0.4), ("gap", 0.6), ("tone", 0.7), ("gap", 0.8)]
    segs = _run(EnergyVAD(sr), _signal(sr, parts), chunk)
    assert len(segs) == 2
    for seg, (on, off) in zip(segs, [(0.5, 0.9), (1.5, 2.2)]):
        assert abs(seg.speech_end / sr - off) <= 0.021  # one frame
        assert seg.start / sr <= on and on - seg.start / sr <= 0.12  # pre-roll only
        assert seg.end >= seg.speech_end and seg.sample_rate == sr


def test_a_word_is_reported_once_the_hangover_has_passed():
    sr = 16_000
    vad = EnergyVAD(sr, VADConfig(hangover_s=0.2))
    assert vad.push(_signal(sr, [("gap", 0.3), ("tone", 0.5), ("gap", 0.15)])) == []
    assert vad.in_word
    segs = vad.push(_signal(sr, [("gap", 0.06)]))
    assert len(segs) == 1 and not vad.in_word
    assert abs(segs[0].speech_end / sr - 0.8) <= 0.021


def test_short_pauses_inside_a_word_do_not_split_it():
    sr = 16_000
    x = _signal(sr, [("gap", 0.3), ("tone", 0.3), ("gap", 0.1), ("tone", 0.3), ("gap", 0.5)])
    segs = _run(EnergyVAD(sr), x, 800)
    assert len(segs) == 1 and abs(segs[0].speech_end / sr - 1.0) <= 0.021


def test_clicks_are_dropped_and_long_speech_is_cut():
    sr = 16_000
    assert _run(EnergyVAD(sr), _signal(sr, [("gap", 0.3), ("tone", 0.06), ("gap", 0.5)]), 1600) == []
    segs = _run(EnergyVAD(sr, VADConfig(max_word_s=1.0)), _signal(sr, [("gap", 0.3), ("tone", 2.5), ("gap", 0.5)]),
                1600)
    assert len(segs) >= 2 and all(s.seconds <= 1.0 + 1e-9 for s in segs)


def test_steady_background_noise_is_not_speech_but_words_over_it_are():
    sr = 16_000
    assert _run(EnergyVAD(sr), _signal(sr, [("gap", 4.0)], noise_db=-35), 1600) == []
    x = _signal(sr, [("gap", 1.0), ("tone", 0.5), ("gap", 1.0)], noise_db=-35)
    segs = _run(EnergyVAD(sr), x, 1600)
    assert len(segs) == 1 and abs(segs[0].speech_end / sr - 1.5) <= 0.041


def test_silence_and_empty_chunks_give_nothing():
    vad = EnergyVAD(16_000)
    assert vad.push(np.zeros(0, np.float32)) == [] and vad.push(np.zeros(10, np.float32)) == []
    assert _run(vad, np.zeros(32_000, np.float32), 333) == []
    with pytest.raises(ValueError):
        EnergyVAD(10)
