"""The task data sets of the prompt library (twelve), each with a speaker-held-out test split (built by
``python -m recipes.build.tasks``).

A :class:`Task` gives ``examples(split) -> list[Example]`` for ``train``, ``val`` and ``test`` (``language`` also
``real``): a file path, a label, a speaker, real or synthetic. Real recordings are split by
:mod:`recipes.common.splits`; synthetic clips are planned from a seed per task and split and cached as FLAC under
:data:`CACHE`, spoken by voices of :data:`recipes.common.splits.VOICE_SPLITS` (the ``fake`` task's spoofs by five
families of synthesizers and vocoders: :data:`FAKE_FAMILIES`, :mod:`recipes.common.spoofs`). Each task also says
what its headline figure means and what it is not for (its task card). Details: docs/RECIPES.md#tasks.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf


from . import splits, spoofs, synth
from .paths import WORK, written_whole
from .splits import FEMALE_VARIANTS, VOICE_SPLITS

SPLITS = ("train", "val", "test")
SR = synth.SAMPLE_RATE
DATA = synth.DATA_ROOT
#: Where synthesized clips are cached: ``SPEECHPROMPT_TASKS_CACHE`` or ``$SPEECHPROMPT_WORK/tasks``.
CACHE = Path(os.environ.get("SPEECHPROMPT_TASKS_CACHE") or WORK / "tasks")
MAX_TRAIN = 3000  # clips per task in train (real sets are subsampled, stratified by label, beyond this)

EN_VOICES = synth.LANGUAGES["en"].voices  # en-us, en-gb, en-gb-scotland, en-gb-x-rp, en-029, en-us-nyc, ...


# --------------------------------------------------------------------------------------------------------------
# Examples, clip recipes and tasks
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    """One labelled clip of a task split."""

    audio: str  # file path (a shared real recording, or a cached FLAC)
    label: str
    speaker: str  # "fsdd:jackson", "ravdess:07", "espeak:f3", ...
    source: str  # "real" | "synth"


@dataclass(frozen=True)
class Recipe:
    """How to make one cached clip: speak ``text`` with espeak-ng (or load the real file ``real``), then
    optionally degrade it with :func:`recipes.common.synth.augment` seeded by ``augment``."""

    text: str = ""
    voice: str = "en-us"  # espeak-ng language voice
    variant: str | None = None
    pitch: int = 50
    rate: int = 175
    real: str = ""  # a real recording to degrade instead of speaking
    augment: int | None = None  # seed of the augmentation; None = clean

    def key(self) -> str:
        """A stable id of the clip (the real file counts by its path under the data root, so moving it is ok)."""
        real = Path(self.real)
        same = replace(self, real=str(real.relative_to(DATA)) if self.real and real.is_relative_to(DATA) else self.real)
        return hashlib.sha1(repr(same).encode("utf-8")).hexdigest()[:16]

    def render(self) -> np.ndarray:
        if self.real:
            wav, sr = sf.read(self.real, dtype="float32", always_2d=True)
            wav = synth.resample(wav.mean(axis=1), sr, SR)
        else:
            wav = synth.synthesize(self.text, self.voice, self.variant, self.pitch, self.rate)
        if self.augment is not None:
            wav = synth.augment(wav, np.random.default_rng(self.augment))
        return synth.limit(wav)


@dataclass(frozen=True)
class Clip:
    """A planned example: a real file used as is (``recipe`` None, ``path`` set) or a clip to make."""

    label: str
    speaker: str
    source: str
    path: str = ""
    recipe: Recipe | SpoofRecipe | None = None


@dataclass(frozen=True)
class Task:
    """A classification task of the prompt library and how to get its data."""

    id: str
    title: str
    description: str
    labels: tuple[str, ...]
    plan: Callable[[str], list[Clip]]  # split -> planned clips (deterministic, no audio made)
    splits: tuple[str, ...] = SPLITS
    needs: tuple[str, ...] = ()  # shared data folders that must exist
    metric: str = "accuracy"
    #: The task card (app.prompting.TaskCard): which metric is the honest figure, what it measures, and what the
    #: prompt is not for; whose speech it learned from is counted from the training split (:func:`card`).
    headline_metric: str = "test_accuracy"
    test_means: str = ""
    not_for: str = ""

    def missing_data(self) -> list[str]:
        """Shared data folders this task needs that are not there."""
        return [str(DATA / n) for n in self.needs if not (DATA / n).is_dir()]

    def clips(self, split: str) -> list[Clip]:
        if split not in self.splits:
            raise ValueError(f"{self.id} has splits {self.splits}, not {split!r}")
        missing = self.missing_data()
        if missing:
            raise FileNotFoundError(f"{self.id}: shared data missing: {', '.join(missing)}")
        return self.plan(split)

    def examples(self, split: str, build: bool = True, cache: Path | None = None) -> list[Example]:
        """The examples of ``split``; with ``build`` the missing synthetic clips are made first."""
        clips = self.clips(split)
        if build:
            make(self.id, split, clips, cache)
        return [Example(c.path or str(cache_path(self.id, split, c, cache)), c.label, c.speaker, c.source)
                for c in clips]

    def build(self, cache: Path | None = None, log: Callable[[str], None] = print) -> int:
        """Make every missing synthetic clip of every split and delete cached clips no longer planned (left by
        an older recipe); returns how many were made."""
        made = 0
        for split in self.splits:
            clips = self.clips(split)
            made += make(self.id, split, clips, cache, log=log)
            keep = {cache_path(self.id, split, c, cache) for c in clips if c.recipe is not None}
            folder = (Path(cache) if cache else CACHE) / self.id / split
            stale = [p for p in folder.rglob("*.flac") if p not in keep] if folder.is_dir() else []
            for p in stale:
                p.unlink()
            if stale:
                log(f"  {self.id}/{split}: removed {len(stale)} stale clips")
        return made


def _slug(label: str) -> str:
    return re.sub(r"[|/\\ ]+", "-", label)


def cache_path(task: str, split: str, clip: Clip, cache: Path | None = None) -> Path:
    root = Path(cache) if cache else CACHE
    r = clip.recipe
    assert r is not None
    return root / task / split / _slug(clip.label) / f"{_slug(clip.speaker.split(':')[-1])}-{r.key()}.flac"


def make(task: str, split: str, clips: Sequence[Clip], cache: Path | None = None,
         log: Callable[[str], None] | None = None) -> int:
    """Render the clips whose cached file is missing (atomic writes, so an interrupted run resumes)."""
    todo = [(c, cache_path(task, split, c, cache)) for c in clips if c.recipe is not None]
    todo = [(c, p) for c, p in todo if not p.exists()]
    t0 = time.time()
    for i, (clip, path) in enumerate(todo, 1):
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_whole(path, ".flac") as tmp:
            sf.write(tmp, clip.recipe.render(), SR, subtype="PCM_16")
        if log and (i % 500 == 0 or i == len(todo)):
            log(f"  {task}/{split}: {i}/{len(todo)} made ({time.time() - t0:.0f} s)")
    return len(todo)


# --------------------------------------------------------------------------------------------------------------
# Helpers for plans
# --------------------------------------------------------------------------------------------------------------

def _rng(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (task, split, purpose...)."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode("utf-8")))


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _speak(text: str, label: str, split: str, rng: np.random.Generator, voices: Sequence[str],
           augment_p: float = 0.0, variants: Sequence[str | None] | None = None,
           pitch: tuple[int, int] = (30, 70), rate: tuple[int, int] = (130, 210)) -> Clip:
    """A synthetic clip of ``text``: random voice, variant of ``split``, pitch, rate, maybe augmented."""
    variant = _pick(rng, variants if variants is not None else VOICE_SPLITS[split])
    recipe = Recipe(text, _pick(rng, voices), variant, int(rng.integers(pitch[0], pitch[1] + 1)),
                    int(rng.integers(rate[0], rate[1] + 1)),
                    augment=int(rng.integers(2 ** 31)) if rng.random() < augment_p else None)
    return Clip(label, f"espeak:{variant or 'default'}", "synth", recipe=recipe)


def _cap(clips: list[Clip], n: int, seed: str) -> list[Clip]:
    """At most ``n`` clips, subsampled stratified by label (deterministic; keeps the original order)."""
    if len(clips) <= n:
        return clips
    rng = _rng("cap", seed)
    by_label: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_label.setdefault(c.label, []).append(i)
    keep: list[int] = []
    for idx in by_label.values():
        k = int(round(n * len(idx) / len(clips)))
        keep += list(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return [clips[i] for i in sorted(keep)]


def _real(dataset: str, split: str, label: Callable[[Path], str | None] | None = None) -> list[Clip]:
    """Real clips of ``dataset`` in ``split`` (speaker-disjoint parts of :func:`recipes.common.splits.split`; ``all`` =
    every part), relabelled by ``label(path)`` when given (None drops a clip)."""
    parts = splits.split(dataset)
    items = [it for k in splits.PARTS for it in parts[k]] if split == "all" else parts[split]
    out = []
    for path, lab, speaker in items:
        lab = label(Path(path)) if label else lab
        if lab is not None:
            out.append(Clip(lab, f"{dataset}:{speaker}", "real", path=str(path)))
    return out


def _balanced(labels: Sequence[str], n: int) -> list[str]:
    """``n`` labels cycling through ``labels`` (equal counts up to one)."""
    return [labels[i % len(labels)] for i in range(n)]


# --------------------------------------------------------------------------------------------------------------
# The tasks
# --------------------------------------------------------------------------------------------------------------

#: FSDD's training speaker whose takes validate the digits prompt instead of training it: the shipped prompt is chosen
#: on a real person never heard in training, as the test is (German-accented English; the test's nicolas speaks
#: Belgian-French-accented English). Until 2026-12-01 val held the training speakers' later takes and synthetic voices,
#: which could not tell prompts that generalise from prompts that do not (backbone v3: 0.94-0.98 on its 200 synthetic
#: voices for prompts between 0.816 and 0.897 on the test).
DIGITS_VAL_SPEAKER = "yweweler"
#: Each Speech Commands digit clip is repeated this often in digits' train: ~190 crowd-sourced people against 500
#: takes by FSDD's training speaker and ~1,750 synthetic clips (the test is two more real people). On backbone v3
#: (whole train split, v2_mean_aug, both FSDD speakers training): twice 0.885 (nicolas 0.806), four times 0.897
#: (nicolas 0.842)
DIGITS_CROWD_COPIES = 4
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _sc_digit(path: Path) -> str | None:
    """The digit a Speech Commands ``_unknown_`` clip says (``seven_<speaker>_nohash_0``), else None."""
    word = path.name.split("_")[0]
    return str(DIGIT_WORDS.index(word)) if path.parent.name == "_unknown_" and word in DIGIT_WORDS else None


def _digits(split: str, val_speaker: str = DIGITS_VAL_SPEAKER) -> list[Clip]:
    """FSDD by speaker; train adds the digit words of Speech Commands' training speakers (about 190 people in
    ordinary rooms; every digit but "two", which that set never recorded) and English digit words from many
    espeak-ng voices. Val is FSDD's ``val_speaker`` (a real person never heard in training) and espeak-ng voices
    of its own; the test takes both held-out FSDD speakers (splits' val and test: nicolas and theo), so its figure
    has a per-speaker spread."""
    own = _real("fsdd", "train")
    held = [c for c in own if c.speaker == f"fsdd:{val_speaker}"]
    crowd = _real("speech_commands", "train", _sc_digit) * DIGITS_CROWD_COPIES
    real = {"train": [c for c in own if c not in held] + crowd, "val": held,
            "test": _real("fsdd", "val") + _real("fsdd", "test")}[split]
    n_synth = {"train": MAX_TRAIN - len(real), "val": 200, "test": 0}[split]
    rng = _rng("digits", split)
    synth_clips = [_speak(DIGIT_WORDS[int(d)], d, split, rng, EN_VOICES, augment_p=0.3, rate=(110, 200))
                   for d in _balanced([str(i) for i in range(10)], max(0, n_synth))]
    return real + synth_clips


SC_LABELS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_unknown_", "_silence_")
SC_UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
                    "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward", "follow",
                    "forward", "learn", "visual")


def _commands(split: str) -> list[Clip]:
    """Speech Commands by speaker; train adds espeak-ng words (noisy 50% of the time, like the real rooms)."""
    real = _cap(_real("speech_commands", split), MAX_TRAIN, "commands")
    if split != "train":
        return real
    rng = _rng("commands", split)
    words = [w for w in SC_LABELS if not w.startswith("_")]
    n = max(0, min(600, MAX_TRAIN - len(real)))
    out = []
    for lab in _balanced(words + ["_unknown_"] * 2, n):
        text = _pick(rng, SC_UNKNOWN_WORDS) if lab == "_unknown_" else lab
        out.append(_speak(text, lab, split, rng, EN_VOICES, augment_p=0.5, rate=(110, 200)))
    return real + out


def _ar_commands(split: str) -> list[Clip]:
    return _real("ar_commands", split)


LT_LABELS = ("ačiū", "du", "iki", "išjunk", "keturi", "labas", "ne", "nulis", "pauzė", "penki", "startas", "stop",
             "taip", "trys", "vienas", "į_apačią", "į_dešinę", "į_kairę", "į_viršų", "įjunk")


def _lt_commands(split: str) -> list[Clip]:
    """Lithuanian commands by speaker; train adds the words spoken by espeak-ng's Lithuanian voice."""
    real = _real("lt_commands", split)
    if split != "train":
        return real
    rng = _rng("lt_commands", split)
    return real + [_speak(lab.replace("_", " "), lab, split, rng, ("lt",), augment_p=0.5, rate=(110, 200))
                   for lab in _balanced(LT_LABELS, 30 * len(LT_LABELS))]


LANGS = ("de", "en", "es", "fr", "it", "ru")


#: Each real VoxForge training clip is repeated this often: 30 real clips among 850 synthetic ones would barely count.
REAL_LANGUAGE_COPIES = 5


#: Clean neural voices for the language task ("studio" voices: no room, no noise, natural prosody; the shipped prompt
#: answered "en" to 44 % of them before they trained it, docs/BACKBONE_V2.md section 28), by split: Kokoro-82M's five
#: voices reading espeak-ng's phonemes of each language, and Piper's joe with each language's espeak-ng accent. A voice
#: speaks every language, so the voice tells nothing of the language; the ``studio`` split's voices are heard in no
#: other split.
STUDIO_VOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (("kokoro", "jf_alpha"), ("kokoro", "jf_gongitsune"), ("kokoro", "jm_kumo")),
    "val": (("kokoro", "jf_nezumi"),),
    "studio": (("kokoro", "jf_tebukuro"), ("piper", "joe"))}
STUDIO_CLIPS = {"train": 150, "val": 30, "studio": 120}


def _studio(split: str) -> list[Clip]:
    """Sentences in the six languages read by the clean neural voices of ``split`` (:data:`STUDIO_VOICES`); each voice
    reads every language equally often; training clips vary their speed and half of them get room and noise."""
    rng, voices = _rng("language", "studio", split), STUDIO_VOICES[split]
    out = []
    for i, lang in enumerate(_balanced(LANGS, STUDIO_CLIPS[split])):
        engine, voice = voices[i // len(LANGS) % len(voices)]
        text = synth.sentence(lang, int(rng.integers(3, 11)), rng)
        speed = float(rng.uniform(0.85, 1.15)) if split == "train" else 1.0
        aug = int(rng.integers(2 ** 31)) if split == "train" and rng.random() < 0.5 else None
        r = SpoofRecipe(engine, voice, text, lang, speed, augment=aug)  # lang: the espeak-ng voice both know
        out.append(Clip(lang, f"{engine}:{voice}", "synth", recipe=r))
    return out


def _language(split: str) -> list[Clip]:
    """Synthetic read sentences in six languages plus VoxForge volunteers: per language one session trains
    (repeated), one validates, and the third, never heard in training, is the ``real`` split; clean neural voices
    (:func:`_studio`) train and validate too, and two more make the ``studio`` split."""
    if split == "real":
        return _real("voxforge", "test")
    if split == "studio":
        return _studio(split)
    rng = _rng("language", split)
    n = {"train": 850, "val": 240, "test": 300}[split]
    out = []
    for lang in _balanced(LANGS, n):
        text = synth.sentence(lang, int(rng.integers(3, 11)), rng)
        out.append(_speak(text, lang, split, rng, synth.LANGUAGES[lang].voices, augment_p=0.5))
    if split == "train":
        out += _real("voxforge", "train") * REAL_LANGUAGE_COPIES
    elif split == "val":
        out += _real("voxforge", "val")
    return out + (_studio(split) if split in STUDIO_VOICES else [])


RAVDESS_EMOTIONS = tuple(splits.RAVDESS_EMOTIONS.values())  # neutral, calm, happy, sad, angry, fearful, ...


def _ravdess_gender(path: Path) -> str:
    return "male" if int(path.stem.split("-")[6]) % 2 else "female"


def _emotion(split: str, val_actors: tuple[str, ...] = ()) -> list[Clip]:
    """RAVDESS actors by split, labelled with the emotion name; with ``val_actors`` those training actors validate
    instead, and the split's validation actors train (a further validation fold, :data:`CHOICE_FOLDS`)."""
    if not val_actors:
        return _real("ravdess", split)
    own = _real("ravdess", "train") + _real("ravdess", "val")
    held = [c for c in own if c.speaker.removeprefix("ravdess:") in val_actors]
    return {"train": [c for c in own if c not in held], "val": held, "test": _real("ravdess", "test")}[split]


def _gender(split: str) -> list[Clip]:
    """RAVDESS actors by split; train and val add English sentences from male and female espeak-ng variants."""
    real = _real("ravdess", split, _ravdess_gender)
    n = {"train": 1200, "val": 100, "test": 0}[split]
    rng = _rng("gender", split)
    pools = {g: [v for v in VOICE_SPLITS[split] if (v in FEMALE_VARIANTS) == (g == "female")]
             for g in ("female", "male")}
    out = []
    for g in _balanced(("female", "male"), n):
        text = synth.sentence("en", int(rng.integers(3, 10)), rng)
        out.append(_speak(text, g, split, rng, EN_VOICES, augment_p=0.3, variants=pools[g], pitch=(35, 65)))
    return real + out


FSDD_SPEAKERS = ("jackson", "nicolas", "theo", "yweweler")
SPEAKER_TAKES = {"train": range(0, 35), "val": range(35, 42), "test": range(42, 50)}


def _speaker(split: str) -> list[Clip]:
    """Closed-set: the four FSDD speakers, split by take index (every digit in every split)."""
    clips = _real("fsdd", "all", lambda path: path.stem.split("_")[1])  # {digit}_{speaker}_{take}
    return [c for c in clips if int(Path(c.path).stem.split("_")[2]) in SPEAKER_TAKES[split]]


#: Real sets whose held-out speakers give the bona fide side of the ``fake`` task (their content is what the spoofs
#: say: digits, command words, two RAVDESS sentences, read sentences in six languages).
RAVDESS_SENTENCES = ("Kids are talking by the door.", "Dogs are sitting by the door.")
FAKE_SOURCES = ("fsdd", "speech_commands", "ravdess", "lt_commands", "ar_commands", "voxforge")
SHORT_SOURCES = frozenset({"fsdd", "speech_commands", "lt_commands", "ar_commands"})  # words or short phrases
VOX_LANGS = ("de", "en", "es", "fr", "it", "ru")

#: Spoof families of the ``fake`` task: family -> split -> (engine, voice) pairs (:mod:`recipes.common.spoofs`).
#: A family's val and test voices are not in its train split where it has enough voices (parametric shares
#: awb and rms between train and val; Piper has one voice, in every split, saying other sentences).
FAKE_FAMILIES: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "formant": {s: tuple(("espeak", v or "default") for v in VOICE_SPLITS[s]) for s in SPLITS},
    "concat": {
        "train": (("festival", "kal_diphone"), ("festival", "lp_diphone"), ("festival", "czech_dita"),
                  ("festival", "suo_fi_lj_diphone"), ("flite", "kal16")),
        "val": (("festival", "pc_diphone"),),
        "test": (("festival", "ked_diphone"), ("festival", "czech_machac"), ("festival", "hy_fi_mv_diphone"),
                 ("festival", "msu_ru_nsh_clunits")),
    },
    "parametric": {
        "train": (("flite", "awb"), ("flite", "rms"), ("festival", "upc_ca_ona_hts")),
        "val": (("flite", "awb"), ("flite", "rms")),
        "test": (("flite", "slt"), ("festival", "cmu_us_slt_arctic_hts")),
    },
    "neural": {
        "train": (("piper", "joe"), ("kokoro", "jf_alpha"), ("kokoro", "jf_gongitsune"), ("kokoro", "jf_nezumi")),
        "val": (("piper", "joe"), ("kokoro", "jf_nezumi")),
        "test": (("piper", "joe"), ("kokoro", "jf_tebukuro"), ("kokoro", "jm_kumo")),
    },
    "vocoded": {s: tuple(("vocoder", v) for v in spoofs.VOCODERS) for s in SPLITS},
}
SPOOFS_PER_FAMILY = {"train": 200, "val": 30, "test": 120}
BONA_PER_SOURCE = {"train": 175, "val": 30, "test": 60}  # VoxForge has 30 per split
FAKE_CHANNEL_P = 0.2  # share of clips (both sides) sent through a lossy codec (opus, mp3, GSM, Speex)
FAKE_AUGMENT_P = 0.4  # share of clips (both sides) given room / noise / phone band / gain


@dataclass(frozen=True)
class SpoofRecipe:
    """One clip of the ``fake`` task: ``engine`` speaks ``text`` (or the real file ``real`` is loaded and, for
    ``engine="vocoder"``, resynthesised by the vocoder ``voice``), is peak-normalised to 0.5, then maybe gets
    room / noise / phone-band / gain effects (``augment``) and a lossy codec (``channel``)."""

    engine: str  # "real" | "espeak" | "festival" | "flite" | "piper" | "kokoro" | "vocoder"
    voice: str = ""  # voice name (espeak: variant), or the vocoder
    text: str = ""
    lang: str = ""  # espeak: its language voice; piper: accent (espeak voice); kokoro: "ja" or an espeak voice
    rate: float = 1.0  # duration stretch (espeak: words per minute; kokoro: speed)
    pitch: float = 0.0  # espeak pitch 0-99; flite mean F0 in Hz (0: the voice's own)
    noise: tuple[float, float] = (0.667, 0.8)  # piper noise_scale, noise_w
    real: str = ""
    seed: int = 0  # the vocoder's settings
    augment: int | None = None
    channel: str = ""
    channel_seed: int = 0

    def key(self) -> str:
        """A stable id of the clip (a real file counts by its path under the data root)."""
        real = Path(self.real)
        same = replace(self, real=str(real.relative_to(DATA)) if self.real and real.is_relative_to(DATA) else self.real)
        return hashlib.sha1(repr(same).encode("utf-8")).hexdigest()[:16]

    def render(self) -> np.ndarray:
        e = self.engine
        if e in ("real", "vocoder"):
            wav, sr = sf.read(self.real, dtype="float32", always_2d=True)
            wav = synth.resample(wav.mean(axis=1), sr, SR)
            if e == "vocoder":
                wav = spoofs.vocode(wav, self.voice, np.random.default_rng(self.seed))[0]
        elif e == "espeak":
            wav = synth.synthesize(self.text, self.lang, None if self.voice == "default" else self.voice,
                                   int(self.pitch), int(self.rate))
        elif e == "festival":
            wav = spoofs.festival(self.text, self.voice, self.rate)
        elif e == "flite":
            wav = spoofs.flite(self.text, self.voice, self.rate, self.pitch or None)
        elif e == "piper":
            wav = spoofs.piper(self.text, self.rate, self.noise[0], self.noise[1], self.lang)
        elif e == "kokoro":
            wav = spoofs.kokoro(self.text, self.voice, self.rate, self.lang)
        else:
            raise ValueError(f"unknown engine {e!r}")
        wav = synth.limit(wav / max(1e-6, float(np.abs(wav).max())) * 0.5)
        if self.augment is not None:
            wav = synth.augment(wav, np.random.default_rng(self.augment))
        if self.channel:
            wav = spoofs.channel(wav, self.channel, np.random.default_rng(self.channel_seed))
        return synth.limit(wav)


def _conditions(rng: np.random.Generator) -> dict:
    """Room / noise / phone effects and a lossy codec, drawn alike for bona fide and spoofed clips."""
    aug = int(rng.integers(2 ** 31)) if rng.random() < FAKE_AUGMENT_P else None
    ch = str(_pick(rng, spoofs.CHANNELS)) if rng.random() < FAKE_CHANNEL_P else ""
    return {"augment": aug, "channel": ch, "channel_seed": int(rng.integers(2 ** 31)) if ch else 0}


def _spoof_langs(engine: str, voice: str) -> tuple[str, ...]:
    """Languages (codes of :data:`recipes.common.synth.LANGUAGES`) a non-espeak voice speaks."""
    if engine == "festival":
        return (spoofs.FESTIVAL_VOICES[voice][0],)
    return ("ja", "en") if engine == "kokoro" else ("en",)


def _spoof_text(source: str, lang: str, rng: np.random.Generator) -> str:
    """What a spoof says: the kind of content of the real set ``source`` (digits, command words, sentences), in
    ``lang`` (a voice that cannot speak the set's language says words or sentences of its own)."""
    if lang == "en" and source == "fsdd":
        return _pick(rng, DIGIT_WORDS)
    if lang == "en" and source == "speech_commands":
        return _pick(rng, SC_LABELS[:10] + SC_UNKNOWN_WORDS)
    if lang == "en" and source == "ravdess" and rng.random() < 0.5:
        return _pick(rng, RAVDESS_SENTENCES)
    if lang == "lt" and source == "lt_commands":
        return _pick(rng, LT_LABELS).replace("_", " ")
    n = int(rng.integers(1, 3)) if source in SHORT_SOURCES else int(rng.integers(3, 11))
    return synth.sentence(lang, n, rng).rstrip(".?!") if n < 3 else synth.sentence(lang, n, rng)


def _spoof(family: str, source: str, split: str, rng: np.random.Generator) -> Clip:
    """A synthesized spoof of ``family`` mirroring ``source``: a voice of the split, its settings drawn from rng."""
    engine, voice = _pick(rng, FAKE_FAMILIES[family][split])
    cond = _conditions(rng)
    if engine == "espeak":
        if source in ("lt_commands", "ar_commands"):
            lang = "lt" if source == "lt_commands" else "ar"
            voices: Sequence[str] = (lang,)
        elif source == "voxforge":
            lang = _pick(rng, VOX_LANGS)
            voices = synth.LANGUAGES[lang].voices
        else:
            lang, voices = "en", EN_VOICES
        r = SpoofRecipe("espeak", voice, _spoof_text(source, lang, rng), _pick(rng, voices),
                        float(rng.integers(130, 211)), float(rng.integers(30, 71)), **cond)
        return Clip("spoof", f"espeak:{voice}", "synth", recipe=r)
    lang = _pick(rng, _spoof_langs(engine, voice))
    text = _spoof_text(source, lang, rng)
    rate = float(np.round(rng.uniform(0.8, 1.25), 2))
    if engine == "flite":
        f0 = float(rng.integers(150, 231)) if voice == "slt" else float(rng.integers(85, 151))
        r = SpoofRecipe("flite", voice, text, "en", rate, f0 if rng.random() < 0.7 else 0.0, **cond)
    elif engine == "piper":
        accent = _pick(rng, ("en-us", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029"))
        noise = (float(np.round(rng.uniform(0.3, 0.9), 2)), float(np.round(rng.uniform(0.4, 1.0), 2)))
        r = SpoofRecipe("piper", voice, text, accent, rate, noise=noise, **cond)
    elif engine == "kokoro":
        r = SpoofRecipe("kokoro", voice, text, "ja" if lang == "ja" else _pick(rng, ("en-us", "en-gb")),
                        float(np.round(rng.uniform(0.8, 1.2), 2)), **cond)
    else:
        r = SpoofRecipe("festival", voice, text, lang, rate, **cond)
    return Clip("spoof", f"{engine}:{voice}", "synth", recipe=r)


def _fake(split: str) -> list[Clip]:
    """Bona fide: held-out-speaker real clips of six sets; spoof: five families of synthesizers and vocoders saying
    the same kind of content (vocoded spoofs resynthesise real clips of the same split's speakers).

    Both sides get the same room / noise / phone-band effects (40%) and lossy codecs (20%), so that a channel
    alone does not tell them apart.
    """
    rng = _rng("fake2", split)
    bona, spoof, pools = [], [], {}
    for source in FAKE_SOURCES:
        pool = [c for c in _real(source, split) if c.label != "_silence_"]
        pools[source] = pool
        for i in sorted(rng.choice(len(pool), size=min(BONA_PER_SOURCE[split], len(pool)), replace=False)):
            c, cond = pool[i], _conditions(rng)
            if cond["augment"] is None and not cond["channel"]:
                bona.append(Clip("bonafide", c.speaker, "real", path=c.path))
            else:
                bona.append(Clip("bonafide", c.speaker, "real", recipe=SpoofRecipe("real", real=c.path, **cond)))
    for family in FAKE_FAMILIES:
        for k in range(SPOOFS_PER_FAMILY[split]):
            source = FAKE_SOURCES[k % len(FAKE_SOURCES)]
            if family == "vocoded":
                c = _pick(rng, pools[source])
                voc = FAKE_FAMILIES[family][split][k % len(spoofs.VOCODERS)][1]
                r = SpoofRecipe("vocoder", voc, real=c.path, seed=int(rng.integers(2 ** 31)), **_conditions(rng))
                spoof.append(Clip("spoof", f"vocoder:{voc}", "synth", recipe=r))
            else:
                spoof.append(_spoof(family, source, split, rng))
    return bona + spoof


def spoof_family(speaker: str) -> str:
    """The family of a ``fake`` example's speaker tag (``"festival:kal_diphone"`` -> ``"concat"``); ``""`` for a
    real speaker."""
    engine, _, voice = speaker.partition(":")
    for family, by_split in FAKE_FAMILIES.items():
        if any((engine, voice) in pairs for pairs in by_split.values()):
            return family
    return ""


#: label -> espeak-ng voice of the ``accent`` task.
ACCENTS = {"us": "en-us", "rp": "en-gb-x-rp", "scottish": "en-gb-scotland", "caribbean": "en-029",
           "west_midlands": "en-gb-x-gbcwmd"}


def _sentences(lang: str, n: int, seed: str, exclude: Iterable[str] = (), words: tuple[int, int] = (4, 10),
               keep: Callable[[str], bool] = lambda s: True) -> list[str]:
    """``n`` distinct sentences (not in ``exclude``) that pass ``keep``."""
    rng, seen, out = _rng(seed), set(exclude), []
    while len(out) < n:
        s = synth.sentence(lang, int(rng.integers(words[0], words[1] + 1)), rng)
        if s not in seen and keep(s):
            seen.add(s)
            out.append(s)
    return out


def _sentence_pool(task: str, split: str, sizes: dict[str, int], **kw) -> list[str]:
    """``sizes[split]`` sentences of ``split``, none of them in an earlier split (train, then val, then test)."""
    exclude: list[str] = []
    for s in SPLITS[: SPLITS.index(split)]:
        exclude += _sentences("en", sizes[s], f"{task}/{s}/text", exclude, **kw)
    return _sentences("en", sizes[split], f"{task}/{split}/text", exclude, **kw)


def _accent(split: str) -> list[Clip]:
    """English accents of espeak-ng: held-out voice variants and held-out sentences in val/test."""
    per_label = {"train": 480, "val": 50, "test": 60}[split]
    texts = _sentence_pool("accent", split, {"train": 1200, "val": 250, "test": 300})
    rng = _rng("accent", split)
    out = []
    for i, lab in enumerate(_balanced(tuple(ACCENTS), per_label * len(ACCENTS))):
        out.append(_speak(texts[i % len(texts)], lab, split, rng, (ACCENTS[lab],), augment_p=0.25))
    return out


#: (action, object) -> phrasings; "{in}" becomes " in the <location>" (or nothing), "{the}" "the <location> "
#: (or "the ").
_PHRASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("activate", "lights"): ("turn on the lights{in}", "switch on the lights{in}", "lights on{in}",
                             "turn {the}lights on", "switch {the}lights on", "I need some light{in}"),
    ("deactivate", "lights"): ("turn off the lights{in}", "switch off the lights{in}", "lights off{in}",
                               "turn {the}lights off", "switch {the}lights off", "kill the lights{in}"),
    ("increase", "heat"): ("turn up the heat{in}", "increase the temperature{in}", "make it warmer{in}",
                           "turn {the}heating up", "it is too cold{in}", "warm things up{in}"),
    ("decrease", "heat"): ("turn down the heat{in}", "decrease the temperature{in}", "make it cooler{in}",
                           "turn {the}heating down", "it is too hot{in}", "cool things down{in}"),
    ("increase", "volume"): ("turn up the volume", "increase the volume", "make it louder", "volume up",
                             "louder please", "I can't hear that"),
    ("decrease", "volume"): ("turn down the volume", "decrease the volume", "make it quieter", "volume down",
                             "quieter please", "that is too loud"),
    ("activate", "music"): ("play some music", "put on some music", "start the music", "turn on the music",
                            "music on", "I want to hear some music"),
    ("deactivate", "music"): ("stop the music", "turn off the music", "pause the music", "music off",
                              "no more music", "switch off the music"),
    ("bring", "shoes"): ("bring me my shoes", "fetch my shoes", "get me my shoes", "I need my shoes",
                         "go get my shoes", "where are my shoes, bring them"),
    ("bring", "newspaper"): ("bring me the newspaper", "fetch the newspaper", "get me the newspaper",
                             "I need the newspaper", "go get the paper", "bring the paper please"),
    ("bring", "juice"): ("bring me some juice", "fetch me a juice", "get me some juice", "I need a juice",
                         "go get me a juice", "I would like some juice"),
    ("change language", "German"): ("switch the language to German", "change the language to German",
                                    "set the language to German", "use German", "speak German",
                                    "I want German"),
}
INTENTS: tuple[str, ...] = tuple(
    f"{a}|{o}|{loc}" for (a, o) in _PHRASES
    for loc in (("none", "kitchen", "bedroom") if o in ("lights", "heat") else ("none",)))


def _intent_text(intent: str, rng: np.random.Generator) -> str:
    """One spoken form of ``intent``: a random phrasing, location filled in, maybe with 'please' or 'hey'."""
    action, obj, loc = intent.split("|")
    phrase = _pick(rng, _PHRASES[(action, obj)])
    where = "" if loc == "none" else loc
    phrase = phrase.replace("{in}", f" in the {where}" if where else "").replace("{the}", f"the {where} " if where
                                                                                 else "the ")
    if not phrase.startswith(("I ", "it ", "that ", "no ", "where ")) and "please" not in phrase:  # imperative
        phrase = _pick(rng, ("{}", "{}", "please {}", "{} please", "hey, {}", "{} now")).format(phrase)
    return phrase + "."


def _intent(split: str) -> list[Clip]:
    """Fluent-Speech-Commands-like: action|object|location commands in several phrasings, held-out voices."""
    per_label = {"train": 2400 // len(INTENTS), "val": 10, "test": 15}[split]
    rng = _rng("intent", split)
    return [_speak(_intent_text(lab, rng), lab, split, rng, EN_VOICES, augment_p=0.3)
            for lab in _balanced(INTENTS, per_label * len(INTENTS))]


QUESTION_WORDS = frozenset(("who", "what", "where", "when", "why", "how", "which", "whose", "whom", "whether",
                            "is", "are", "am", "was", "were", "do", "does", "did", "can", "could", "will", "would",
                            "shall", "should", "may", "might", "must", "have", "has", "had", "isn't", "aren't",
                            "don't", "doesn't", "didn't", "won't", "can't", "or"))


def _plain(s: str) -> bool:
    return not any(w.strip(",.?!").lower() in QUESTION_WORDS for w in s.split())


def _question(split: str) -> list[Clip]:
    """The same word sequence said as a statement ('.') and as a question ('?'), same voice: only prosody differs."""
    texts = _sentence_pool("question", split, {"train": 1200, "val": 120, "test": 150}, words=(3, 8), keep=_plain)
    rng = _rng("question", split)
    out = []
    for text in texts:
        base = text.rstrip(".?!").replace(",", "")
        clip = _speak(base, "", split, rng, EN_VOICES, augment_p=0.2)
        for lab, end in (("statement", "."), ("question", "?")):
            r = clip.recipe
            out.append(Clip(lab, clip.speaker, "synth", recipe=Recipe(base + end, r.voice, r.variant, r.pitch,
                                                                       r.rate, augment=r.augment)))
    return out


def with_val_speaker(task: Task, speaker: str) -> Task:
    """``task`` with another of its real people validating (and the one who validated training): a second fold of
    the validation that chooses its prompt (:data:`CHOICE_FOLDS`). Its synthetic clips are the task's own.
    ``speaker``: an FSDD speaker for digits, RAVDESS actors joined by "_" for emotion ("13_14")."""
    plans = {"digits": _digits, "emotion": lambda split, who: _emotion(split, tuple(who.split("_")))}
    if task.id not in plans:
        raise ValueError(f"{task.id} has no other validation speaker")
    return replace(task, id=f"{task.id}_val_{speaker}", plan=lambda split: plans[task.id](split, speaker))


TASKS: dict[str, Task] = {t.id: t for t in [
    Task("digits", "Spoken digits",
         "Which digit, 0 to 9, is spoken? Trained on English digits recorded by two speakers of the Free Spoken "
         "Digit Dataset (to choose the read-out, each validated in turn while the other trained), said by about "
         "190 crowd-sourced Speech Commands speakers and by dozens of synthetic espeak-ng voices (with copies cut "
         "tightly around the word, as FSDD's takes are), and tested on two more the prompt never heard.",
         tuple(str(i) for i in range(10)), _digits, needs=("fsdd", "speech_commands"),
         test_means="accuracy on two real speakers never heard in training (FSDD's nicolas and theo, single English "
                    "digits)",
         not_for="digits inside longer speech, or digits in other languages"),
    Task("commands", "Speech commands",
         "Keyword spotting in the Google Speech Commands set-up: ten command words (yes, no, up, down, left, "
         "right, on, off, stop, go), any other word (_unknown_) or just background noise (_silence_). Real "
         "one-second recordings by crowd-sourced speakers in ordinary rooms; the test speakers are held out.",
         SC_LABELS, _commands, needs=("speech_commands",),
         test_means=("accuracy on crowd-sourced real speakers never heard in training (Speech Commands, one-second "
         "clips)"),
         not_for="words in running speech: it only knows one-second clips of ten words, 'other word' and noise"),
    Task("ar_commands", "Arabic speech commands",
         "Sixteen spoken Arabic commands (the digits 0-9 and add, back, cancel, confirm, continue, delete), "
         "recorded on mobile phones. One of SpeechPrompt v2's low-resource command sets: the backbone never saw "
         "labelled Arabic, only the prompt learns the words.",
         ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "add", "back", "cancel", "confirm", "continue",
          "delete"), _ar_commands, needs=("ar_commands",),
         test_means="accuracy on real Arabic speakers never heard in training (sixteen command words)",
         not_for="other Arabic words or sentences: it only knows these sixteen commands"),
    Task("lt_commands", "Lithuanian speech commands",
         "Twenty Lithuanian command words (taip, ne, stop, įjunk, išjunk, į kairę, the digits...). Only a few "
         "hundred real recordings exist, which is the point: a tiny prompt learns a new language's commands. "
         "Training adds the words said by espeak-ng's Lithuanian voice; tested on unseen real speakers.",
         LT_LABELS, _lt_commands, needs=("lt_commands",),
         test_means="accuracy on real Lithuanian speakers never heard in training (twenty command words)",
         not_for="other Lithuanian words or sentences: it only knows these twenty commands"),
    Task("language", "Spoken language",
         "Which language is spoken: German, English, Spanish, French, Italian or Russian? Trained on sentences "
         "synthesized by many espeak-ng voices (with room noise and phone-line effects), by three clean neural "
         "voices, plus one VoxForge volunteer per language; the honest score is on the 'real' split, VoxForge "
         "volunteers never heard in training, and the 'studio' split, two clean neural voices never heard.",
         LANGS, _language, splits=SPLITS + ("real", "studio"), needs=("voxforge", "noise"),
         headline_metric="real_accuracy",
         test_means=("accuracy on real VoxForge volunteers never heard in training (30 clips; on unseen synthetic "
         "voices it scores higher, which is not what people get)"),
         not_for="languages other than the six, mixed-language speech, or judging someone's accent or origin"),
    Task("emotion", "Emotion",
         "Which of eight emotions an actor expresses (neutral, calm, happy, sad, angry, fearful, disgust, "
         "surprised) while saying one of two fixed sentences, from the RAVDESS recordings. Only the voice tells "
         "the emotion; the test actors are unseen. Non-commercial use only (CC BY-NC-SA).",
         RAVDESS_EMOTIONS, _emotion, needs=("ravdess",),
         test_means="accuracy on RAVDESS actors never heard in training (acted emotions, two fixed sentences)",
         not_for="reading real people's feelings in everyday speech: it learned acted emotions in two fixed sentences"),
    Task("gender", "Speaker gender",
         "Female or male voice? Trained on RAVDESS actors plus male and female espeak-ng voices saying random "
         "English sentences; tested on actors the prompt never heard.",
         ("female", "male"), _gender, needs=("ravdess", "noise"),
         test_means="accuracy on RAVDESS actors never heard in training",
         not_for="telling anyone's gender identity: it guesses a voice's pitch-range class"),
    Task("speaker", "Who is speaking",
         "Closed-set speaker identification among the four speakers of the Free Spoken Digit Dataset (jackson, "
         "nicolas, theo, yweweler). Every digit appears in every split; the test takes are recordings the prompt "
         "never heard.",
         FSDD_SPEAKERS, _speaker, needs=("fsdd",),
         test_means="accuracy on takes never heard of the same four FSDD speakers (closed set)",
         not_for="identifying or verifying anyone else: it only knows four people"),
    Task("fake", "Real or synthetic speech",
         "Is it a real person (bonafide) or a speech synthesizer (spoof)? Real recordings from six data sets "
         "against five families of synthetic speech saying the same kind of words and sentences: rule-based "
         "(espeak-ng), concatenative (Festival diphone and unit-selection voices), statistical parametric (Flite, "
         "HTS), neural (Piper, Kokoro) and vocoded real speech (WORLD, Griffin-Lim, codec2, LPC). Both sides get "
         "the same room noise, phone-line effects and lossy codecs. Scored by equal error rate, also on each "
         "family left out of training.",
         ("bonafide", "spoof"), _fake, metric="eer",
         needs=("fsdd", "speech_commands", "ravdess", "lt_commands", "ar_commands", "voxforge", "noise"),
         headline_metric="unseen_family_eer",
         test_means=("equal error rate on synthesizer families never seen in training (leave-one-family-out, pooled) "
         "against real people never heard"),
         not_for="proving a recording is genuine: a synthesizer unlike those it learned may pass as real"),
    Task("accent", "English accent (synthetic)",
         "Which English accent: American, Received Pronunciation, Scottish, Caribbean or West Midlands? The "
         "voices are espeak-ng's accent rules, so this is about pronunciation patterns of a synthesizer, not of "
         "real people; test voices and sentences are unseen.",
         tuple(ACCENTS), _accent, needs=("noise",),
         test_means="accuracy on espeak-ng voices never heard in training: accents of a synthesizer",
         not_for="accents of people: never tested on a real speaker"),
    Task("intent", "Spoken command intent",
         "What does the speaker want? Smart-home commands in the style of Fluent Speech Commands, labelled "
         "action|object|location (e.g. 'turn the kitchen lights off' = deactivate|lights|kitchen), each said in "
         "several phrasings by synthetic voices; tested on unseen voices.",
         INTENTS, _intent, needs=("noise",),
         test_means="accuracy on synthetic voices never heard in training",
         not_for="real people's commands (never tested on a real speaker) or requests outside its 20 intents"),
    Task("question", "Statement or question",
         "Is it said as a statement or as a question? Each sentence is spoken both ways by the same synthetic "
         "voice with the same words (no question words), so only the intonation, the rising pitch at the end, "
         "tells them apart.",
         ("statement", "question"), _question, needs=("noise",),
         test_means="accuracy on synthetic voices never heard in training (the same words said both ways)",
         not_for=("real people's questions: synthetic voices only, the shared data has no real questions "
         "(RAVDESS's two sentences are statements)")),
]}

#: Further validation folds of a task whose validation is one real person: the same task with another of its
#: real people validating (:func:`with_val_speaker`). Its prompt is chosen on the mean over every fold (digits: FSDD's
#: two speakers outside the test, yweweler and jackson, each in turn never heard in training); one person could not
#: tell apart data recipes whose refits read 0.887-0.909 on the test (docs/BACKBONE_V2.md section 21); emotion since
#: session 16: actors 13 and 14 validate while its validation actors 15 and 16 train, one man and one woman each).
CHOICE_FOLDS: dict[str, tuple[Task, ...]] = {"digits": (with_val_speaker(TASKS["digits"], "jackson"),),
                                              "emotion": (with_val_speaker(TASKS["emotion"], "13_14"),)}
