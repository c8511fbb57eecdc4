"""The task data sets of recipes/common/tasks.py: definitions and held-out splits, without generating the big sets.

Offline. Tasks whose shared data folder is missing are skipped; the one synthesis test needs espeak-ng.
"""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recipes.common import tasks as T
from recipes.common.splits import FEMALE_VARIANTS, VOICE_SPLITS

IDS = ("digits", "commands", "ar_commands", "lt_commands", "language", "emotion", "gender", "speaker", "fake",
       "accent", "intent", "question")


def _need(task: T.Task) -> None:
    missing = task.missing_data()
    if missing:
        pytest.skip(f"{task.id}: shared data missing: {', '.join(missing)}")


def _fake_sentence(lang: str, n_words: int, rng: np.random.Generator) -> str:
    """Stands in for synth.sentence (no word lists needed): distinct word sequences per draw."""
    return " ".join(f"w{int(rng.integers(10_000))}" for _ in range(n_words)).capitalize() + "."


def test_registry_and_labels():
    assert tuple(T.TASKS) == IDS
    for tid, task in T.TASKS.items():
        assert task.id == tid and task.title and len(task.description) > 80
        assert len(task.labels) >= 2 and len(set(task.labels)) == len(task.labels)
        assert task.splits[:3] == T.SPLITS
    assert T.TASKS["digits"].labels == tuple("0123456789")
    assert T.TASKS["emotion"].labels == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
                                         "surprised")
    assert T.TASKS["language"].labels == ("de", "en", "es", "fr", "it", "ru")
    assert T.TASKS["language"].splits == ("train", "val", "test", "real", "studio")
    assert T.TASKS["fake"].labels == ("bonafide", "spoof") and T.TASKS["fake"].metric == "eer"
    assert 10 <= len(T.INTENTS) <= 31
    assert all(re.fullmatch(r"[a-z ]+\|\w+\|\w+", i) for i in T.INTENTS)


@pytest.mark.parametrize("tid,folder", [("commands", "speech_commands"), ("ar_commands", "ar_commands"),
                                        ("lt_commands", "lt_commands"), ("language", "voxforge")])
def test_labels_are_the_folder_names(tid, folder):
    root = T.DATA / folder
    if not root.is_dir():
        pytest.skip(f"{root} missing")
    assert set(T.TASKS[tid].labels) == {d.name for d in root.iterdir() if d.is_dir()}


def test_variant_partition():
    parts = [set(VOICE_SPLITS[s]) for s in T.SPLITS]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    for s in ("val", "test"):  # both genders among the held-out voices
        assert set(VOICE_SPLITS[s]) & FEMALE_VARIANTS and set(VOICE_SPLITS[s]) - FEMALE_VARIANTS

    def family(v):
        return "default" if v is None else v if re.fullmatch(r"[mf]\d", v) else re.sub(r"\d+$", "", v)
    fams = [{family(v) for v in p} for p in parts]
    assert not (fams[0] & fams[2] or fams[0] & fams[1] or fams[1] & fams[2])


@pytest.mark.parametrize("tid", ["digits", "commands", "ar_commands", "lt_commands", "emotion", "gender",
                                 "intent"])
def test_train_and_test_speakers_are_disjoint(tid, monkeypatch):
    task = T.TASKS[tid]
    _need(task)
    monkeypatch.setattr(T.synth, "sentence", _fake_sentence)
    train, val, test = (task.clips(s) for s in T.SPLITS)
    spk = [{c.speaker for c in part} for part in (train, val, test)]
    assert not spk[0] & spk[2], f"{tid}: test speakers in train: {sorted(spk[0] & spk[2])[:5]}"
    assert not spk[0] & spk[1]
    if tid == "digits":  # a real person validates, two others test
        assert {c.speaker for c in val if c.source == "real"} == {f"fsdd:{T.DIGITS_VAL_SPEAKER}"}
        assert {c.speaker for c in test} == {"fsdd:nicolas", "fsdd:theo"}
    assert len(train) <= T.MAX_TRAIN and test
    assert {c.label for c in train} == set(task.labels)
    assert {c.label for c in test} <= set(task.labels)
    for split, part in zip(T.SPLITS, (train, val, test)):
        for c in part:
            assert c.source in ("real", "synth") and (c.path or c.recipe)
            if c.source == "synth":  # synthetic voices come from the split's own variants
                assert c.recipe.variant in VOICE_SPLITS[split]


def test_digits_second_validation_fold_swaps_its_two_fsdd_people_and_keeps_everything_else():
    task = T.TASKS["digits"]
    _need(task)
    (fold,) = T.CHOICE_FOLDS["digits"]
    real = lambda clips: {c.speaker for c in clips if c.speaker.startswith("fsdd:")}  # noqa: E731
    assert real(task.clips("train")) == real(fold.clips("val")) == {"fsdd:jackson"}
    assert real(fold.clips("train")) == real(task.clips("val")) == {f"fsdd:{T.DIGITS_VAL_SPEAKER}"}
    for split in T.SPLITS:  # the crowd, the synthetic clips and the test are the task's own
        assert [c for c in fold.clips(split) if not c.speaker.startswith("fsdd:")] == \
            [c for c in task.clips(split) if not c.speaker.startswith("fsdd:")]
    assert fold.clips("test") == task.clips("test") and fold.labels == task.labels
    with pytest.raises(ValueError):
        T.with_val_speaker(T.TASKS["commands"], "bob")


def test_emotion_second_validation_fold_swaps_two_pairs_of_actors():
    task = T.TASKS["emotion"]
    _need(task)
    (fold,) = T.CHOICE_FOLDS["emotion"]
    actors = lambda clips: {c.speaker.removeprefix("ravdess:") for c in clips}  # noqa: E731
    assert actors(task.clips("val")) == {"15", "16"} and actors(fold.clips("val")) == {"13", "14"}
    assert actors(fold.clips("train")) == actors(task.clips("train")) - {"13", "14"} | {"15", "16"}
    assert fold.clips("test") == task.clips("test") and fold.labels == task.labels
    assert {int(a) % 2 for a in actors(fold.clips("val"))} == {0, 1}  # one man, one woman validating


def test_digits_test_is_the_held_out_real_speaker():
    task = T.TASKS["digits"]
    _need(task)
    test = task.clips("test")
    assert {c.source for c in test} == {"real"} and len({c.speaker for c in test}) >= 1


def test_digits_train_adds_speech_commands_digit_words_of_its_training_speakers_only():
    task = T.TASKS["digits"]
    _need(task)
    crowd = [c for c in task.clips("train") if c.speaker.startswith("speech_commands:")]
    assert len({c.speaker for c in crowd}) > 50  # many more people than FSDD's training speaker
    for c in crowd:
        path = Path(c.path)
        assert path.parent.name == "_unknown_" and T.DIGIT_WORDS[int(c.label)] == path.name.split("_")[0]
    commands_held_out = {c.speaker for s in ("val", "test") for c in T.TASKS["commands"].clips(s)}
    assert not {c.speaker for c in crowd} & commands_held_out  # commands' unseen speakers stay unseen
    assert not any(c.speaker.startswith("speech_commands:") for s in ("val", "test") for c in task.clips(s))
    assert T._sc_digit(Path("speech_commands/_unknown_/seven_abc_nohash_0.wav.flac")) == "7"
    assert T._sc_digit(Path("speech_commands/_unknown_/bird_abc_nohash_0.wav.flac")) is None
    assert T._sc_digit(Path("speech_commands/yes/seven_abc_nohash_0.wav.flac")) is None


def test_speaker_task_splits_takes_not_speakers():
    task = T.TASKS["speaker"]
    _need(task)
    files = [{c.path for c in task.clips(s)} for s in T.SPLITS]
    assert not (files[0] & files[2] or files[0] & files[1])
    for s in T.SPLITS:
        clips = task.clips(s)
        assert {c.label for c in clips} == set(task.labels)
        assert {c.label for c in clips} == {c.speaker.split(":")[1] for c in clips}


def test_language_real_split_is_unheard_voxforge_speakers(monkeypatch):
    task = T.TASKS["language"]
    _need(task)
    monkeypatch.setattr(T.synth, "sentence", _fake_sentence)
    real = task.clips("real")
    assert real and {c.source for c in real} == {"real"} and {c.label for c in real} == set(task.labels)
    heard = {c.speaker for s in ("train", "val") for c in task.clips(s) if c.source == "real"}
    train_real = [c for c in task.clips("train") if c.source == "real"]
    assert train_real and {c.label for c in train_real} == set(task.labels)
    assert heard and not heard & {c.speaker for c in real}


def test_language_studio_voices_read_every_language_and_test_voices_are_unheard(monkeypatch):
    """Clean neural voices: each reads the six languages equally often (its timbre tells nothing of the language);
    the studio split's voices are in no other split; only training clips vary speed and get room and noise."""
    task = T.TASKS["language"]
    _need(task)
    monkeypatch.setattr(T.synth, "sentence", _fake_sentence)
    voices = {}
    for split in ("train", "val", "studio"):
        clips = [c for c in task.clips(split) if c.speaker.split(":")[0] in ("kokoro", "piper")]
        assert len(clips) == T.STUDIO_CLIPS[split]
        voices[split] = {c.speaker for c in clips}
        assert voices[split] == {f"{e}:{v}" for e, v in T.STUDIO_VOICES[split]}
        for v in voices[split]:
            per = Counter(c.label for c in clips if c.speaker == v)
            assert set(per) == set(task.labels) and max(per.values()) - min(per.values()) <= 1, (v, per)
        assert all(c.recipe.lang == c.label for c in clips)
        if split != "train":
            assert all(c.recipe.augment is None and c.recipe.rate == 1.0 for c in clips)
    assert not voices["studio"] & (voices["train"] | voices["val"]) and not voices["train"] & voices["val"]
    assert {c.speaker.split(":")[0] for c in task.clips("studio")} == {"kokoro", "piper"}


def test_question_pairs_differ_only_in_punctuation(monkeypatch):
    _need(T.TASKS["question"])
    monkeypatch.setattr(T.synth, "sentence", _fake_sentence)
    clips = T.TASKS["question"].clips("test")
    for a, b in zip(clips[::2], clips[1::2]):
        assert (a.label, b.label) == ("statement", "question")
        assert a.recipe.text[:-1] == b.recipe.text[:-1] and (a.recipe.text[-1], b.recipe.text[-1]) == (".", "?")
        assert a.recipe.variant == b.recipe.variant and a.recipe.augment == b.recipe.augment
    train_texts = {c.recipe.text for c in T.TASKS["question"].clips("train")}
    assert not train_texts & {c.recipe.text for c in clips}


def test_intent_text_names_the_location():
    rng = np.random.default_rng(0)
    for intent in T.INTENTS:
        loc = intent.split("|")[2]
        for _ in range(10):
            text = T._intent_text(intent, rng)
            assert ("kitchen" in text or "bedroom" in text) == (loc != "none"), (intent, text)
            if loc != "none":
                assert loc in text


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_synthetic_clips_are_cached_16k_flac_and_deterministic(tmp_path):
    task = T.TASKS["intent"]
    _need(task)
    clips = task.clips("test")[:2]
    assert T.make("intent", "test", clips, tmp_path) == 2
    assert T.make("intent", "test", clips, tmp_path) == 0  # resumable: nothing left to do
    path = T.cache_path("intent", "test", clips[0], tmp_path)
    wav, sr = sf.read(path)
    assert sr == 16_000 and wav.ndim == 1 and 0.3 < len(wav) / sr < 10
    assert path.suffix == ".flac" and str(path).startswith(str(tmp_path / "intent" / "test"))
    again = clips[0].recipe.render()
    assert np.allclose(again, wav, atol=1 / 32768 + 1e-6)


def test_fake_spoofs_come_from_five_families_with_held_out_voices(monkeypatch):
    task = T.TASKS["fake"]
    _need(task)
    monkeypatch.setattr(T.synth, "sentence", _fake_sentence)
    clips = {s: task.clips(s) for s in T.SPLITS}
    for split, part in clips.items():
        per_family = Counter(T.spoof_family(c.speaker) for c in part if c.label == "spoof")
        assert per_family == {f: T.SPOOFS_PER_FAMILY[split] for f in T.FAKE_FAMILIES}, split
        bona = [c for c in part if c.label == "bonafide"]
        assert {c.source for c in bona} == {"real"} and not any(T.spoof_family(c.speaker) for c in bona)
        assert {c.speaker.split(":")[0] for c in bona} == set(T.FAKE_SOURCES)
        for c in part:
            if c.recipe is not None and c.recipe.real:  # degraded or vocoded real clips: this split's speakers
                assert c.recipe.real in {b.path or b.recipe.real for b in bona} or c.label == "spoof"
    heard = {c.speaker for c in clips["train"] if c.label == "bonafide"}
    assert not heard & {c.speaker for c in clips["test"] if c.label == "bonafide"}
    fams = T.FAKE_FAMILIES
    for fam in ("formant", "concat", "parametric"):  # test voices never in training
        assert not set(fams[fam]["train"]) & set(fams[fam]["test"]), fam
    assert not {v for v in fams["neural"]["test"] if v[0] == "kokoro"} & set(fams["neural"]["train"])
    test_voices = {c.speaker for c in clips["test"] if c.label == "spoof"}
    assert test_voices >= {f"{e}:{v}" for f in ("concat", "parametric") for e, v in fams[f]["test"]}


def test_vocoded_spoofs_resynthesise_real_clips_of_their_own_split(monkeypatch):
    task = T.TASKS["fake"]
    _need(task)
    monkeypatch.setattr(T.synth, "sentence", _fake_sentence)
    for split in T.SPLITS:
        real = {c.path for source in T.FAKE_SOURCES for c in T._real(source, split)}
        vocoded = [c for c in task.clips(split) if c.speaker.startswith("vocoder:")]
        assert vocoded and all(c.recipe.real in real for c in vocoded)
        assert {c.recipe.voice for c in vocoded} == set(T.spoofs.VOCODERS)


def test_task_card_counts_whose_speech_the_prompt_learned_from():
    from app.prompting import PromptError
    from recipes.common.results import task_card

    plan = [T.Clip("a", "fsdd:x", "real", path="x.wav"), T.Clip("b", "fsdd:y", "real", path="y.wav"),
            T.Clip("a", "espeak:m1", "synth", recipe=T.Recipe("hi")),
            T.Clip("b", "espeak:m1", "synth", recipe=T.Recipe("ho"))]
    task = T.Task("toy", "Toy", "A toy task.", ("a", "b"), lambda split: plan, headline_metric="real_accuracy",
                  test_means="accuracy on people never heard", not_for="anything real")
    assert task_card(task, {"real_accuracy": 0.5}) == {
        "training_speech": "both", "real_speakers": 2, "synthetic_voices": 1, "headline_metric": "real_accuracy",
        "test_means": "accuracy on people never heard", "not_for": "anything real"}
    assert task_card(task, {"real_accuracy": 0.5}, cap=2)["training_speech"] in ("real", "synthetic", "both")
    val = [T.Clip("a", "fsdd:z", "real", path="z.wav"), T.Clip("b", "fsdd:z", "real", path="z2.wav")]
    both = T.Task("toy", "Toy", "A toy task.", ("a", "b"), lambda split: plan if split == "train" else val,
                  headline_metric="real_accuracy", test_means="people never heard", not_for="anything real")
    assert task_card(both, {"real_accuracy": 0.5})["real_speakers"] == 2  # a prompt trained on train
    assert task_card(both, {"real_accuracy": 0.5}, val_cap=0)["real_speakers"] == 3  # ... and again on train + val
    with pytest.raises(PromptError, match="not a number among the metrics"):
        task_card(task, {"test_accuracy": 0.9})
    for tid, t in T.TASKS.items():  # every task says what its figure means and what it is not for
        assert t.test_means and t.not_for and len(t.test_means) <= 300 and len(t.not_for) <= 300, tid


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("kind", T.spoofs.CHANNELS)
def test_lossy_channels_keep_the_clip_length(kind):
    rng = np.random.default_rng(0)
    t = np.arange(12_345) / 16_000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = T.spoofs.channel(wav, kind, rng)
    assert out.shape == wav.shape and out.dtype == np.float32 and np.abs(out).max() > 0.05


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_a_degraded_real_clip_renders_through_its_recipe(tmp_path):
    path = tmp_path / "real.wav"
    sf.write(path, (0.2 * np.sin(np.arange(8_000) / 5)).astype(np.float32), 8_000)
    r = T.SpoofRecipe("real", real=str(path), channel="gsm", channel_seed=1)
    wav = r.render()
    assert len(wav) == 16_000 and np.abs(wav).max() <= 0.99
    assert r.key() == T.SpoofRecipe("real", real=str(path), channel="gsm", channel_seed=1).key() != \
        T.SpoofRecipe("real", real=str(path)).key()


def test_a_split_as_csv_for_app_eval(tmp_path):
    """`python -m recipes.build.tasks --csv TASK SPLIT`: path,label lines that `python -m app eval --data` reads."""
    import io

    from recipes.build.tasks import write_csv

    task = T.TASKS["emotion"]  # real recordings only: nothing to synthesize
    _need(task)
    buf = io.StringIO()
    n = write_csv(task, "test", buf)
    rows = [line.rsplit(",", 1) for line in buf.getvalue().splitlines()]
    assert n == len(rows) == len(task.clips("test")) > 0
    assert all(Path(p).is_file() and lab in task.labels for p, lab in rows)
    with pytest.raises(ValueError, match="no split 'studio'"):
        write_csv(task, "studio", buf)
