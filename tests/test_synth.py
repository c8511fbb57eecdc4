"""Offline tests of the synthesis library, the speaker splits and the corpus recipe (needs espeak-ng)."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

from recipes.build import corpus
from recipes.common import splits, synth

SR = synth.SAMPLE_RATE
needs_espeak = pytest.mark.skipif(shutil.which(synth.ESPEAK) is None, reason="espeak-ng not installed")


@pytest.fixture()
def small_lexicons(monkeypatch, tmp_path):
    """Small word lists (fast to check with espeak) in a private cache."""
    monkeypatch.setattr(synth, "DEFAULT_TOP_N", 300)
    monkeypatch.setattr(synth, "CACHE_DIR", tmp_path / "cache")
    synth.lexicon.cache_clear()
    yield
    synth.lexicon.cache_clear()


def _speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope: stands in for speech without espeak."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * x * env / np.abs(x).max() + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


# --- espeak-ng ------------------------------------------------------------------------------------------------

@needs_espeak
def test_voices_and_variants():
    voices = synth.espeak_voices()
    assert "en-us" in voices and "de" in voices and len(voices) > 50
    variants = synth.espeak_variants()
    assert "m3" in variants and "f2" in variants
    assert not set(variants) & synth.UNNATURAL_VARIANTS
    for lang in synth.LANGUAGES.values():  # every voice the recipes use is installed
        assert set(lang.voices) <= set(voices), lang.code


@needs_espeak
def test_synthesize_16k_float_plausible_length():
    wav = synth.synthesize("This is a short test sentence for the speech prompt demo.", "en-us")
    assert wav.dtype == np.float32 and wav.ndim == 1
    secs = wav.size / SR
    assert 1.5 < secs < 6.0, secs
    assert 0.05 < np.abs(wav).max() <= 1.0
    fast = synth.synthesize("This is a short test sentence for the speech prompt demo.", "en-us", rate=300)
    assert fast.size < 0.8 * wav.size
    again = synth.synthesize("This is a short test sentence for the speech prompt demo.", "en-us")
    np.testing.assert_array_equal(wav, again)
    at8k = synth.synthesize("Hello.", "en-us", variant="f2", pitch=80, sample_rate=8000)
    assert 0.2 < at8k.size / 8000 < 2.0


@needs_espeak
def test_synthesize_chinese_through_pinyin():
    assert synth.spoken_form("我们是中国人。", "cmn-latn-pinyin") == "wo3 men5 shi4 zhong1 guo2 ren2."
    wav = synth.synthesize("我们是中国人。", "zh")
    assert 0.5 < wav.size / SR < 4.0


# --- text -----------------------------------------------------------------------------------------------------

@needs_espeak
@pytest.mark.parametrize("lang", ["en", "lt", "az"])
def test_sentences_deterministic(small_lexicons, lang):
    a = synth.sentences(lang, 5, np.random.default_rng(7))
    b = synth.sentences(lang, 5, np.random.default_rng(7))
    c = synth.sentences(lang, 5, np.random.default_rng(8))
    assert a == b and a != c
    assert all(isinstance(s, str) and len(s.split()) >= 2 for s in a)
    assert all(s[-1] in ".?!" for s in a)


@needs_espeak
def test_lexicon_drops_words_espeak_would_not_say(small_lexicons):
    lex = synth.lexicon("ja")
    assert lex.words and all(not synth._HAN_RE.search(w) for w in lex.words)  # kana only
    ta = synth.lexicon("ta")
    assert not any(ch.isascii() for w in ta.words for ch in w)  # no Latin letters in Tamil


# --- augmentation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("snr", [0.0, 5.0, 12.5, 30.0])
def test_add_noise_reaches_snr(snr):
    wav = _speech_like()
    clips = synth.noise_clips()
    noise = clips[3] if clips else np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    mixed = synth.add_noise(wav, noise, snr)
    assert mixed.shape == wav.shape and mixed.dtype == np.float32
    measured = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2) / np.mean((mixed - wav).astype(np.float64) ** 2))
    assert abs(measured - snr) < 0.5


def test_random_noise_is_real_noise_of_any_length():
    rng = np.random.default_rng(0)
    for n in (100, SR, 10 * SR):
        x = synth.random_noise(n, rng)
        assert x.shape == (n,) and x.dtype == np.float32 and np.std(x) > 0


def test_telephone_removes_energy_above_4k():
    rng = np.random.default_rng(0)
    white = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
    out = synth.telephone(white)
    assert out.shape == white.shape and out.dtype == np.float32
    assert _band_energy(white, 4000, 8000) > 0.4 * _band_energy(white, 0, 8000)
    assert _band_energy(out, 4000, 8000) < 1e-3 * _band_energy(out, 0, 8000)
    assert _band_energy(out, 0, 200) < 0.05 * _band_energy(out, 300, 3400)


def test_reverb_gain_limit():
    wav = _speech_like()
    wet = synth.reverb(wav, np.random.default_rng(0))
    assert wet.shape == wav.shape and not np.allclose(wet, wav)
    assert np.isclose(np.sqrt(np.mean(wet ** 2)), np.sqrt(np.mean(wav ** 2)), rtol=1e-3)
    np.testing.assert_allclose(synth.gain(wav, -6.0), wav * 10 ** (-6 / 20), rtol=1e-5)
    assert np.abs(synth.limit(synth.gain(wav, 20.0))).max() <= 0.99 + 1e-6


def test_augment_deterministic_given_seed():
    wav = _speech_like()
    a, log_a = synth.augment_with_log(wav, np.random.default_rng(3))
    b, log_b = synth.augment_with_log(wav, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert log_a == log_b and log_a
    np.testing.assert_array_equal(synth.augment(wav, np.random.default_rng(3)), a)
    outs = [synth.augment(wav, np.random.default_rng(s)) for s in range(6)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    assert all(o.shape == wav.shape and np.abs(o).max() <= 0.99 + 1e-6 for o in outs)


# --- splits ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", splits.DATASETS)
@pytest.mark.parametrize("seed", [0, 1])
def test_splits_share_no_speaker(dataset, seed):
    if not (splits.DATA_ROOT / dataset).is_dir():
        pytest.skip(f"{dataset} not in {splits.DATA_ROOT}")
    parts = splits.split(dataset, seed)
    assert set(parts) == {"train", "val", "test"}
    speakers = {k: {spk for _, _, spk in v} for k, v in parts.items()}
    assert all(parts[k] for k in parts), {k: len(v) for k, v in parts.items()}
    assert not speakers["train"] & speakers["val"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["val"] & speakers["test"]
    paths = [p for v in parts.values() for p, _, _ in v]
    assert len(paths) == len(set(paths))
    assert splits.split(dataset, seed) == parts  # deterministic
    assert len(paths) >= 0.99 * sum(1 for p in (splits.DATA_ROOT / dataset).rglob("*") if p.suffix in (".wav", ".flac"))


def test_documented_held_out_speakers():
    if not (splits.DATA_ROOT / "ravdess").is_dir() or not (splits.DATA_ROOT / "fsdd").is_dir():
        pytest.skip("shared data not present")
    fsdd = splits.split("fsdd")
    assert {s for _, _, s in fsdd["test"]} == {"theo"} and {s for _, _, s in fsdd["val"]} == {"nicolas"}
    rav = splits.split("ravdess")
    assert {s for _, _, s in rav["test"]} == {"17", "18", "19", "20"}
    assert {s for _, _, s in rav["val"]} == {"15", "16"}
    assert {label for _, label, _ in rav["train"]} == set(splits.RAVDESS_EMOTIONS.values())
    train = {p for p, *_ in splits.real_training_audio()}
    assert not train & {p for p, _, _ in rav["test"]}


# --- corpus ---------------------------------------------------------------------------------------------------

@needs_espeak
def test_corpus_small_run_is_deterministic_and_resumable(small_lexicons, monkeypatch, tmp_path):
    monkeypatch.setattr(corpus, "LANG_WEIGHTS", {"az": 1.0, "hy": 1.0})
    out = tmp_path / "corpus"
    _, rows = corpus.build(out, hours=30 / 3600, seed=0, real=False, log_every=1e9)
    assert sum(c.seconds for c in rows.values()) >= 30
    for c in rows.values():
        assert corpus.MIN_SECONDS <= c.seconds <= corpus.MAX_SECONDS
        info = sf.info(str(out / c.path))
        assert info.samplerate == SR and info.channels == 1
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        manifest = list(csv.DictReader(f))
    assert list(manifest[0]) == corpus.COLUMNS and len(manifest) == len(rows)
    first = (out / rows[0].path).read_bytes()
    (out / rows[1].path).unlink()  # a lost clip is made again, identically
    _, again = corpus.build(out, hours=30 / 3600, seed=0, real=False, log_every=1e9)
    assert again == rows and (out / rows[0].path).read_bytes() == first
    clip, wav = corpus.make_clip(0, 1)
    assert clip == rows[1]
    np.testing.assert_allclose(sf.read(out / rows[1].path, dtype="float32")[0], wav, atol=1.5 / 32768)
