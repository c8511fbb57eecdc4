"""Speech synthesis and augmentation for the corpus and task-data recipes, offline and deterministic given a
:class:`numpy.random.Generator`: :func:`synthesize` (espeak-ng), :func:`sentences` / :func:`sentence` (text in 44
languages, :data:`LANGUAGES`), :func:`augment` and its parts (noise, reverb, gain, telephone band).

Needs espeak-ng and numpy, scipy, soundfile, wordfreq (and its ``regex``), faker, pypinyin.
How the text is made: docs/RECIPES.md#synth.
"""
from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
from scipy import signal

from .paths import DATA_ROOT  # the shared data sets (SPEECHPROMPT_DATA)

SAMPLE_RATE = 16_000
ESPEAK = os.environ.get("ESPEAK_NG", "espeak-ng")

NOISE_DIR = DATA_ROOT / "noise"


@dataclass(frozen=True)
class Language:
    """How to make text for one language and which espeak-ng voices speak it."""

    code: str  # ISO 639-1 code used in manifests
    name: str
    voices: tuple[str, ...]  # espeak-ng voice names (dialects/accents), first is the default
    wordfreq: str | None  # wordfreq language code, or None
    faker: str | None  # faker locale for names/cities (and its lorem word list when wordfreq has none)
    spaces: bool = True  # words separated by spaces
    script: str = "Latin"  # Unicode script of its words (regex ``\\p{...}`` name)


#: Languages with both an espeak-ng voice and a text source (44). Order is stable: corpus sampling depends on it.
LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in [
        Language("en", "English", ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                                   "en-gb-x-gbclan", "en-gb-x-gbcwmd"), "en", "en_US"),
        Language("de", "German", ("de",), "de", "de_DE"),
        Language("fr", "French", ("fr-fr", "fr-be", "fr-ch"), "fr", "fr_FR"),
        Language("es", "Spanish", ("es", "es-419"), "es", "es_ES"),
        Language("it", "Italian", ("it",), "it", "it_IT"),
        Language("ru", "Russian", ("ru",), "ru", "ru_RU", script="Cyrillic"),
        Language("pt", "Portuguese", ("pt", "pt-br"), "pt", "pt_PT"),
        Language("nl", "Dutch", ("nl",), "nl", "nl_NL"),
        Language("pl", "Polish", ("pl",), "pl", "pl_PL"),
        Language("cs", "Czech", ("cs",), "cs", "cs_CZ"),
        Language("sk", "Slovak", ("sk",), "sk", "sk_SK"),
        Language("sl", "Slovenian", ("sl",), "sl", "sl_SI"),
        Language("hr", "Croatian", ("hr", "bs"), "sh", "hr_HR"),
        Language("bg", "Bulgarian", ("bg",), "bg", "bg_BG", script="Cyrillic"),
        Language("mk", "Macedonian", ("mk",), "mk", None, script="Cyrillic"),
        Language("uk", "Ukrainian", ("uk",), "uk", "uk_UA", script="Cyrillic"),
        Language("ro", "Romanian", ("ro",), "ro", "ro_RO"),
        Language("hu", "Hungarian", ("hu",), "hu", "hu_HU"),
        Language("fi", "Finnish", ("fi",), "fi", "fi_FI"),
        Language("sv", "Swedish", ("sv",), "sv", "sv_SE"),
        Language("da", "Danish", ("da",), "da", "da_DK"),
        Language("nb", "Norwegian Bokmål", ("nb",), "nb", "no_NO"),
        Language("is", "Icelandic", ("is",), "is", None),
        Language("lt", "Lithuanian", ("lt",), "lt", "lt_LT"),
        Language("lv", "Latvian", ("lv",), "lv", "lv_LV"),
        Language("el", "Greek", ("el",), "el", "el_GR", script="Greek"),
        Language("tr", "Turkish", ("tr",), "tr", "tr_TR"),
        Language("ar", "Arabic", ("ar",), "ar", "ar_SA", script="Arabic"),
        Language("fa", "Persian", ("fa",), "fa", "fa_IR", script="Arabic"),
        Language("he", "Hebrew", ("he",), "he", "he_IL", script="Hebrew"),
        Language("ur", "Urdu", ("ur",), "ur", None, script="Arabic"),
        Language("hi", "Hindi", ("hi",), "hi", "hi_IN", script="Devanagari"),
        Language("bn", "Bengali", ("bn",), "bn", "bn_BD", script="Bengali"),
        Language("ta", "Tamil", ("ta",), "ta", "ta_IN", script="Tamil"),
        Language("id", "Indonesian", ("id",), "id", "id_ID"),
        Language("ms", "Malay", ("ms",), "ms", None),
        Language("vi", "Vietnamese", ("vi", "vi-vn-x-central", "vi-vn-x-south"), "vi", "vi_VN"),
        Language("ca", "Catalan", ("ca",), "ca", None),
        Language("ko", "Korean", ("ko",), "ko", "ko_KR", script="Hangul"),
        Language("ja", "Japanese", ("ja",), "ja", None, spaces=False, script="Kana"),
        Language("zh", "Mandarin Chinese", ("cmn-latn-pinyin",), "zh", "zh_CN", spaces=False, script="Han"),
        Language("th", "Thai", ("th",), None, "th_TH", script="Thai"),
        Language("hy", "Armenian", ("hy",), None, "hy_AM", script="Armenian"),
        Language("az", "Azerbaijani", ("az",), None, "az_AZ"),
    ]
}

#: espeak-ng variants that do not sound like a human talking into a microphone (robots, whisper, effects).
UNNATURAL_VARIANTS = frozenset({
    "Demonic", "fast", "UniRobot", "anikaRobot", "announcer", "whisper", "whisperf", "croak", "Mr",
    "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8",
})

_SWITCH_RE = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9-]+)?\)")  # espeak -x marks a switch of language like "(en)"
_SCRIPT_CLASS = {"Kana": r"\p{Hiragana}\p{Katakana}ー"}
_HAN_RE = re.compile(r"[\u3400-\u9fff]")
DEFAULT_TOP_N = 15_000  # words per language for :func:`sentence`
ENGLISH_RATIO = 5.0  # a Latin-script word this many times more frequent in English is taken for English
LEXICON_VERSION = 2  # bump when the word selection changes: invalidates the disk cache

#: Where word lists checked by espeak are cached: ``SPEECHPROMPT_CACHE`` or ``~/.cache/speechprompt``.
CACHE_DIR = Path(os.environ.get("SPEECHPROMPT_CACHE", Path.home() / ".cache" / "speechprompt"))


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


# --------------------------------------------------------------------------------------------------------------
# espeak-ng
# --------------------------------------------------------------------------------------------------------------

def _espeak(args: Sequence[str], text: str) -> bytes:
    if shutil.which(ESPEAK) is None:
        raise SynthesisError(f"{ESPEAK} not found: apt-get install espeak-ng")
    proc = subprocess.run([ESPEAK, *args], input=text.encode("utf-8"), capture_output=True, check=False)
    if proc.returncode != 0:
        raise SynthesisError(f"{ESPEAK} {' '.join(args)} failed: {proc.stderr.decode(errors='replace')[:300]}")
    return proc.stdout


@functools.lru_cache(maxsize=None)
def _voice_table(kind: str = "") -> tuple[tuple[str, str], ...]:
    """Rows (name, file) of ``espeak-ng --voices[=kind]``."""
    if shutil.which(ESPEAK) is None:
        raise SynthesisError(f"{ESPEAK} not found: apt-get install espeak-ng")
    arg = f"--voices={kind}" if kind else "--voices"
    out = subprocess.run([ESPEAK, arg], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            rows.append((parts[1], parts[4]))  # Language column, File column
    return tuple(rows)


def espeak_voices() -> list[str]:
    """Language voices that the installed espeak-ng offers (``en-us``, ``de``, ``cmn``...), sorted."""
    return sorted({name for name, _ in _voice_table()})


def espeak_variants(natural_only: bool = True) -> list[str]:
    """Voice variant names usable as ``-v LANG+VARIANT`` (``m3``, ``f2``, ``klatt``...), sorted.

    With ``natural_only`` the robotic / whisper / effect variants in :data:`UNNATURAL_VARIANTS` are left out.
    """
    names = {file.split("/")[-1] for _, file in _voice_table("variant")}
    if natural_only:
        names -= UNNATURAL_VARIANTS
    return sorted(names)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``orig_sr`` to ``target_sr``, float32."""
    if orig_sr == target_sr:
        return wav.astype(np.float32, copy=False)
    g = gcd(int(orig_sr), int(target_sr))
    return signal.resample_poly(wav, target_sr // g, orig_sr // g).astype(np.float32)


def _decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception:  # streamed header with bogus sizes: fall back to raw 16-bit PCM after a 44-byte header
        if len(data) < 44 or data[:4] != b"RIFF":
            raise SynthesisError("espeak-ng returned no audio")
        sr = int.from_bytes(data[24:28], "little")
        wav = np.frombuffer(data[44:44 + (len(data) - 44) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    return wav, int(sr)


def voice_for(lang: str) -> str:
    """The espeak-ng voice for a code of :data:`LANGUAGES` (its first voice), or ``lang`` itself if it is a voice."""
    return LANGUAGES[lang].voices[0] if lang in LANGUAGES else lang


def spoken_form(text: str, voice: str) -> str:
    """What espeak-ng is actually given: Chinese characters become tone-numbered pinyin for ``cmn-latn-pinyin``.

    (Debian's espeak-ng ``cmn`` dictionary lacks most characters and reads them as pinyin with the tone digit in
    English, "de five"; the pinyin voice with pypinyin's conversion says them properly.)
    """
    if voice.split("+")[0] == "cmn-latn-pinyin" and _HAN_RE.search(text):
        from pypinyin import Style, lazy_pinyin  # noqa: PLC0415

        sylls = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="default")
        text = " ".join(sylls)
        for cjk, ascii_ in (("，", ","), ("。", "."), ("？", "?"), ("！", "!")):
            text = text.replace(cjk, ascii_)
        text = re.sub(r"\s+([,.?!])", r"\1", text)
    return text


def synthesize(text: str, lang: str, variant: str | None = None, pitch: int = 50, rate: int = 175,
               sample_rate: int = SAMPLE_RATE, word_gap: int = 0) -> np.ndarray:
    """Speak ``text`` with espeak-ng and return mono float32 audio at ``sample_rate`` (16 kHz by default).

    ``lang`` is an espeak-ng voice (``en-us``, ``de``, ``cmn``...) or a code of :data:`LANGUAGES` (``zh`` -> its
    first voice). ``variant`` is a voice variant (``m3``, ``f2``, ``klatt``...; None for the default male voice),
    ``pitch`` 0..99 (50 is the voice's normal), ``rate`` in words per minute (80..450), ``word_gap`` extra pause
    between words in units of 10 ms. Deterministic: the same arguments give the same samples.
    """
    voice = voice_for(lang)
    text = spoken_form(text, voice)
    if variant:
        voice = f"{voice}+{variant}"
    args = ["-v", voice, "-p", str(int(np.clip(pitch, 0, 99))), "-s", str(int(np.clip(rate, 80, 450))),
            "-g", str(int(word_gap)), "-b", "1", "--stdout"]
    data = _espeak(args, text)
    wav, sr = _decode_wav(data)
    if wav.size == 0:
        raise SynthesisError(f"espeak-ng produced no audio for voice {voice!r}")
    return resample(wav, sr, sample_rate)


def phonemes(words: Sequence[str], voice: str) -> list[str] | None:
    """espeak-ng phoneme strings (``-x``) of each word, or None if the output did not line up with the input."""
    if not words:
        return []
    text = "\n".join(f"{spoken_form(w, voice)}." for w in words) + "\n"
    out = _espeak(["-v", voice, "-q", "-x", "-b", "1"], text)
    lines = [ln.strip() for ln in out.decode("utf-8", errors="replace").splitlines() if ln.strip() != ""]
    return lines if len(lines) == len(words) else None


def pronounceable(words: Sequence[str], voice: str, chunk: int = 400) -> list[str]:
    """The words that espeak-ng ``voice`` says in its own language (no switch to English etc., not silent)."""
    keep: list[str] = []
    for start in range(0, len(words), chunk):
        part = list(words[start:start + chunk])
        ph = phonemes(part, voice)
        if ph is None:  # misaligned: check this chunk word by word
            ph = [(phonemes([w], voice) or [""])[0] for w in part]
        keep += [w for w, p in zip(part, ph) if p and not _SWITCH_RE.search(p)]
    return keep


# --------------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lexicon:
    """Words of one language with sampling probabilities, plus names/cities and whether numbers can be read."""

    words: tuple[str, ...]
    probs: np.ndarray
    entities: tuple[str, ...]  # names, cities... pronounceable in the language
    numbers: bool  # espeak reads digits in this language


def word_pattern(script: str) -> "regex.Pattern":
    """Regex for one word in ``script``: letters (and combining marks) of that script, inner ' or - allowed."""
    import regex  # noqa: PLC0415  (a dependency of wordfreq)

    letters = _SCRIPT_CLASS.get(script, r"\p{%s}" % script)
    cls = r"[[%s\p{M}]--\p{N}]" % letters  # letters and marks of the script, no digits (e.g. Urdu ۵)
    return regex.compile(rf"^{cls}+(?:['’-]{cls}+)*$", regex.V1)


def _candidates(info: Language, top_n: int) -> list[tuple[str, float]]:
    pat = word_pattern(info.script)
    if info.wordfreq:
        import wordfreq  # noqa: PLC0415

        freqs = wordfreq.get_frequency_dict(info.wordfreq, wordlist="best")
        ranked = sorted(freqs.items(), key=lambda kv: (-kv[1], kv[0]))
        if info.code != "en" and info.script == "Latin":  # web text is full of English: drop words far more
            en = wordfreq.get_frequency_dict("en", wordlist="best")  # frequent in English ("market", "always")
            ranked = [(w, f) for w, f in ranked if en.get(w, 0.0) < ENGLISH_RATIO * f]
        cand = [(w, f) for w, f in ranked if pat.match(w)][:top_n]
    else:
        import importlib  # noqa: PLC0415

        mod = importlib.import_module(f"faker.providers.lorem.{info.faker}")
        wl = sorted(set(w.lower() if info.script == "Latin" else w
                        for phrase in mod.Provider.word_list for w in phrase.split()))
        cand = [(w, 1.0) for w in wl if pat.match(w)]
    if info.code == "el":  # wordfreq case-folds the final sigma
        cand = [(re.sub(r"σ\b", "ς", w), f) for w, f in cand]
    return cand


def _entities(info: Language) -> list[str]:
    if not info.faker:
        return []
    import faker  # noqa: PLC0415  (slow import: only here)

    fk = faker.Faker(info.faker)
    fk.seed_instance(1234)
    pat = word_pattern(info.script)
    raw: set[str] = set()
    for fn in ("first_name", "last_name", "city"):
        try:
            for _ in range(150):
                raw.add(str(getattr(fk, fn)()))
        except AttributeError:
            continue
    return sorted(r for r in raw if r.split() and all(pat.match(t) for t in r.split()))


def _build_lexicon(lang: str, top_n: int) -> dict:
    info = LANGUAGES[lang]
    voice = info.voices[0]
    cand = _candidates(info, top_n)
    ok = set(pronounceable([w for w, _ in cand], voice))
    cand = [(w, f) for w, f in cand if w in ok]
    if not cand:
        raise SynthesisError(f"no pronounceable words for {lang}")
    ph = phonemes(["1234"], voice)
    return {
        "words": [w for w, _ in cand],
        "freqs": [f for _, f in cand],
        "entities": pronounceable(_entities(info), voice),
        "numbers": bool(ph and ph[0] and not _SWITCH_RE.search(ph[0])),
    }


def _cache_key(lang: str, top_n: int) -> str:
    parts = [lang, str(top_n), f"v{LEXICON_VERSION}"]
    for mod in ("wordfreq", "faker", "pypinyin"):
        try:
            from importlib.metadata import version  # noqa: PLC0415

            parts.append(f"{mod}{version(mod)}")
        except Exception:  # not installed: part of the key all the same
            parts.append(f"{mod}-none")
    try:
        ev = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True).stdout.split()
        parts.append("espeak" + (ev[3] if len(ev) > 3 else "?"))
    except OSError:
        parts.append("espeak-none")
    return "-".join(parts)


@functools.lru_cache(maxsize=None)
def lexicon(lang: str, top_n: int | None = None, alpha: float = 0.6) -> Lexicon:
    """Word list and sampling probabilities for ``lang`` (a code of :data:`LANGUAGES`); deterministic.

    Words come from wordfreq's list (the ``top_n``, default :data:`DEFAULT_TOP_N`, most frequent words of the
    language's script; ``p ~ frequency ** alpha``, flatter than real text so the vocabulary is richer, still
    Zipf-like) or, for languages it lacks, from faker's lorem list (uniform). Words espeak-ng would not say in the
    language are dropped. Checking costs ~0.6 ms per word, so the result is cached in memory and in :data:`CACHE_DIR`.
    """
    top_n = top_n or DEFAULT_TOP_N
    path = CACHE_DIR / "lexicon" / f"{_cache_key(lang, top_n)}.json"
    data = None
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
    if data is None:
        data = _build_lexicon(lang, top_n)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
            tmp.replace(path)
        except OSError:  # read-only home: keep it in memory only
            pass
    p = np.asarray(data["freqs"], dtype=np.float64) ** alpha
    return Lexicon(tuple(data["words"]), p / p.sum(), tuple(data["entities"]), bool(data["numbers"]))


_END = {True: (".", "?", "!"), False: ("。", "？", "！")}
_COMMA = {True: ",", False: "，"}


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(3)
    if kind == 0:
        return str(int(rng.integers(0, 10)))
    if kind == 1:
        return str(int(rng.integers(10, 100)))
    return str(int(10 ** rng.uniform(2, 4.5)))


def sentence(lang: str, n_words: int, rng: np.random.Generator) -> str:
    """One natural-ish sentence of ``n_words`` words in ``lang`` (a code of :data:`LANGUAGES`).

    Frequency-weighted words, with a name or city (p=0.3) and a number (p=0.25, where espeak reads numbers in the
    language) mixed in, commas now and then, ending in '.', '?' or '!' (which changes espeak's intonation).
    """
    info = LANGUAGES[lang]
    lex = lexicon(lang)
    n_words = max(1, int(n_words))
    toks = [lex.words[i] for i in rng.choice(len(lex.words), size=n_words, p=lex.probs)]
    if lex.entities and n_words >= 3 and rng.random() < 0.3:
        toks[int(rng.integers(n_words))] = lex.entities[int(rng.integers(len(lex.entities)))]
    if lex.numbers and n_words >= 3 and rng.random() < 0.25:
        toks[int(rng.integers(n_words))] = _number(rng)
    commas = rng.random(n_words) < 0.07
    out = [t + (_COMMA[info.spaces] if commas[i] and 0 < i < n_words - 2 else "") for i, t in enumerate(toks)]
    text = (" " if info.spaces else "").join(out)
    end = _END[info.spaces][int(rng.choice(3, p=[0.8, 0.15, 0.05]))]
    return text[:1].upper() + text[1:] + end


def sentences(lang: str, n: int, rng: np.random.Generator, min_words: int = 2, max_words: int = 20) -> list[str]:
    """``n`` sentences in ``lang`` of ``min_words..max_words`` words each (see :func:`sentence`)."""
    return [sentence(lang, int(rng.integers(min_words, max_words + 1)), rng) for _ in range(n)]


# --------------------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------------------

def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) + 1e-20


@functools.lru_cache(maxsize=4)
def noise_clips(directory: str | os.PathLike = NOISE_DIR) -> tuple[np.ndarray, ...]:
    """All background-noise clips in ``directory`` (sorted by name, 16 kHz float32; cached)."""
    out = []
    for p in sorted(Path(directory).glob("*.wav")):
        wav, sr = sf.read(p, dtype="float32", always_2d=False)
        if wav.ndim > 1:
            wav = wav.mean(axis=1)
        wav = resample(wav, sr, SAMPLE_RATE)
        if wav.size and _power(wav) > 1e-12:
            out.append(wav)
    return tuple(out)


def random_noise(n_samples: int, rng: np.random.Generator, clips: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``n_samples`` of real background noise: a random clip, looped with short cross-fades, random start."""
    clips = noise_clips() if clips is None else clips
    if not clips:
        return rng.standard_normal(n_samples).astype(np.float32) * 0.01
    clip = clips[int(rng.integers(len(clips)))]
    if clip.size >= n_samples:
        start = int(rng.integers(clip.size - n_samples + 1))
        return clip[start:start + n_samples].copy()
    fade = min(160, clip.size // 4)
    ramp = np.linspace(0, 1, fade, dtype=np.float32)
    out = clip.copy()
    while out.size < n_samples + clip.size:
        tail = out[-fade:] * ramp[::-1] + clip[:fade] * ramp if fade else np.zeros(0, np.float32)
        out = np.concatenate([out[:-fade] if fade else out, tail, clip[fade:]])
    start = int(rng.integers(clip.size))
    return out[start:start + n_samples].astype(np.float32)


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wav + k * noise`` with ``k`` chosen so that the signal-to-noise ratio is ``snr_db`` (power over the clip).

    ``noise`` is looped or cut to the length of ``wav``. The sum is not clipped (call :func:`limit` for that).
    """
    wav = np.asarray(wav, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if noise.size == 0:
        return wav.copy()
    if noise.size < wav.size:
        noise = np.tile(noise, int(np.ceil(wav.size / noise.size)))
    noise = noise[: wav.size]
    k = np.sqrt(_power(wav) / (_power(noise) * 10.0 ** (snr_db / 10.0)))
    return (wav + k * noise).astype(np.float32)


def reverb(wav: np.ndarray, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Room reverberation with a synthetic impulse response: direct path plus exponentially decaying noise.

    RT60 0.15..0.8 s, direct-to-reverberant ratio 0..12 dB; output has the input's length and RMS.
    """
    wav = np.asarray(wav, dtype=np.float32)
    rt60 = rng.uniform(0.15, 0.8)
    drr_db = rng.uniform(0.0, 12.0)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    tail[: int(0.0025 * sample_rate)] = 0.0  # first reflections after ~2.5 ms
    tail = signal.lfilter([1.0], [1.0, -rng.uniform(0.0, 0.7)], tail)  # walls absorb highs: darker tail
    tail *= np.sqrt(1.0 / (np.sum(tail ** 2) * 10 ** (drr_db / 10.0)))
    ir = tail
    ir[0] = 1.0
    wet = signal.fftconvolve(wav, ir)[: wav.size]
    wet *= np.sqrt(_power(wav) / _power(wet))
    return wet.astype(np.float32)


def gain(wav: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels (not clipped)."""
    return (np.asarray(wav, dtype=np.float32) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def telephone(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, mulaw: bool = True) -> np.ndarray:
    """Narrow-band phone line: 8 kHz round trip, 300-3400 Hz band-pass, optional 8-bit mu-law companding."""
    x = resample(np.asarray(wav, dtype=np.float32), sample_rate, 8000)
    sos = signal.butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    x = signal.sosfilt(sos, x)
    if mulaw:
        peak = float(np.max(np.abs(x))) or 1.0
        y = np.clip(x / peak, -1, 1)
        mu = 255.0
        c = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
        c = np.round(c * 127) / 127
        x = np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu * peak
    y = resample(x.astype(np.float32), 8000, sample_rate)
    n = len(wav)
    return np.pad(y, (0, max(0, n - y.size)))[:n].astype(np.float32)


def limit(wav: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale down (never up) so that the absolute peak is at most ``peak``."""
    m = float(np.max(np.abs(wav))) if wav.size else 0.0
    return (wav * (peak / m)).astype(np.float32) if m > peak else wav.astype(np.float32)


def augment_with_log(wav: np.ndarray, rng: np.random.Generator,
                     clips: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, list[str]]:
    """Apply a random non-empty subset of reverb, noise, telephone and gain; return audio and what was done.

    Each is chosen with probability 0.45 (at least one always): reverb (RT60 0.15-0.8 s) -> real background noise at
    SNR 0..25 dB -> telephone band -> gain -20..+6 dB; then peak-limited to 0.99. The log entries look like
    ``noise:12.3dB`` and end up in manifests.
    """
    ops = ["reverb", "noise", "telephone", "gain"]
    chosen = [op for op in ops if rng.random() < 0.45]
    if not chosen:
        chosen = [ops[int(rng.integers(len(ops)))]]
    out = np.asarray(wav, dtype=np.float32)
    log: list[str] = []
    for op in ops:
        if op not in chosen:
            continue
        if op == "reverb":
            out = reverb(out, rng)
            log.append("reverb")
        elif op == "noise":
            snr = float(rng.uniform(0.0, 25.0))
            out = add_noise(out, random_noise(out.size, rng, clips), snr)
            log.append(f"noise:{snr:.1f}dB")
        elif op == "telephone":
            out = telephone(out)
            log.append("telephone")
        else:
            db = float(rng.uniform(-20.0, 6.0))
            out = gain(out, db)
            log.append(f"gain:{db:+.1f}dB")
    return limit(out), log


def augment(wav: np.ndarray, rng: np.random.Generator, clips: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """:func:`augment_with_log` without the log: deterministic given the generator's state."""
    return augment_with_log(wav, rng, clips)[0]
