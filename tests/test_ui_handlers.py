"""Every UI event function, called directly with a tiny engine (no server, no browser)."""
from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
import torch

from app.engine import Engine
from app.prompt_files import load_prompt, prompt_file_bytes as prompt_bytes
from app.prompting import TaskCard, TaskInfo, verbalizer_input
from app.settings import DEFAULT_PROMPTS_DIR, EXAMPLES_DIR
from app.ui import all_view, api, build_ui, how_view, plots, train_data, train_run, try_view
from app.ui.server import launch_kwargs, parse_args
from app.ui.session import Session, cleanup_session, session_engine, task_choices
from app.ui.widgets import Example, examples

from .conftest import KINDS
from .ui_engine import CARD, TASKS, ui_engine, write_tone


@pytest.fixture(scope="module")
def engine():
    return ui_engine()


@pytest.fixture
def clip(tmp_path) -> str:
    return str(write_tone(tmp_path / "chirp.wav", "chirp"))


@pytest.fixture
def bad_file(tmp_path) -> str:
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio")
    return str(p)


def _bars(fig, i=0):
    return fig.data[i]


# ------------------------------------------------------------------ Try a task


def test_probabilities_print_alike_in_every_chart():
    assert [plots.percent(p) for p in (0.0, 0.004, 0.005, 0.006, 0.456, 1.0)] == ["0%", "<1%", "<1%", "1%", "46%",
                                                                                   "100%"]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_run_task_builds_every_figure(engine, clip, task):
    out = try_view.run_task(engine, Session(), clip, task)
    pred = engine.classify(clip, task)
    assert pred.label in out.headline and f"{pred.confidence:.0%}" in out.headline
    # Probabilities sorted descending, winner highlighted.
    bars = _bars(out.probs)
    assert list(bars.x) == sorted(bars.x, reverse=True)
    assert bars.y[0] == pred.label and bars.marker.color[0] == plots.ACCENT
    assert set(bars.marker.color[1:]) <= {plots.MUTED}
    assert abs(sum(bars.x) - 1) < 1e-4
    # Units drawn as segments that tile the clip, one per unit, with the token strip matching.
    _, units = engine.encode(clip)
    seg = [t for t in out.signal.data if t.type == "bar"][0]
    assert len(seg.x) == len(units)
    assert abs(sum(seg.width) - float(units.durations.sum()) / units.frame_rate) < 1e-6
    assert [int(t) for t in seg.text] == units.ids.tolist()
    assert out.strip.count('class="unit-tok"') == len(units)
    assert "starts 0.00 s" in out.strip
    assert any(t.type == "heatmap" for t in out.signal.data)
    pitch = [t for t in out.signal.data if t.name == "pitch"][0]
    assert len(pitch.x) == units.frame_pitch.numel()
    # Steering: the unprompted and prompted next-unit distributions, each a full distribution.
    base, prompted = out.steering.data[0], out.steering.data[1]
    V = engine.backbone.lm.config.vocab_size
    assert len(base.y) == len(prompted.y) == V
    assert abs(sum(base.y) - 1) < 1e-4 and abs(sum(prompted.y) - 1) < 1e-4
    assert torch.allclose(torch.tensor(prompted.y), pred.unit_probs, atol=1e-5)
    assert torch.allclose(torch.tensor(base.y), engine.unprompted_distribution(units), atol=1e-5)
    for yref, dist in (("y", base.y), ("y2", prompted.y)):  # each row names its likeliest unit (thin bars on a phone)
        top = max(range(V), key=lambda i: dist[i])
        named = [a.text for a in out.steering.layout.annotations if a.x == top and a.yref == yref]
        assert any(t.startswith(f"unit {plots.unit_label(top, V)}: ") for t in named), (yref, named)
    # Facts: latency and parameter counts.
    assert "Latency" in out.facts and f"{engine.prompts[task].num_trainable():,}" in out.facts
    assert f"{engine.backbone.lm.num_params():,}" in out.facts
    assert len(out.as_tuple()) == 7


def test_learnable_verbalizer_figure_shows_weight_times_input(engine, clip):
    prompt = engine.prompts["tones"]
    pred = engine.classify(clip, "tones")
    assert prompt.reads == ("units", "duration", "pitch")  # a prosody LM: the verbalizer reads all three
    fig = plots.verbalizer_figure(prompt, pred.probs, pred.stream_probs)
    logp = {k: torch.log(v)[None] for k, v in pred.stream_probs.items()}
    x = verbalizer_input(logp, prompt.reads)[0]
    winner = int(pred.probs.argmax())
    contrib = prompt.verbalizer.weight[winner] * x
    top = contrib.abs().argsort(descending=True)[:6]
    first = fig.data[0]  # the most likely class comes first
    assert [float(v) for v in first.x] == pytest.approx(contrib[top].tolist(), abs=1e-4)
    assert len(fig.data) == 3
    # The contributions plus the bias are the class logit (up to the units not shown).
    full = float(contrib.sum() + prompt.verbalizer.bias[winner])
    names = [plots.stream_feature_label(k, i, len(pred.unit_probs)) for k in prompt.reads
             for i in range(len(pred.stream_probs[k]))]
    assert list(first.y) == [names[i] for i in top]
    logits = prompt.classify(logp)[0]
    assert full == pytest.approx(float(logits[winner]), abs=1e-3)


def test_fixed_verbalizer_figure_shows_class_tokens(engine, clip):
    prompt = engine.prompts["tones-freq"]
    pred = engine.classify(clip, "tones-freq")
    fig = plots.verbalizer_figure(prompt, pred.probs, pred.stream_probs)
    assert list(fig.data[0].y) == pytest.approx([float(pred.unit_probs[t]) for t in prompt.tokens])
    assert all(f"unit {t}" in x for t, x in zip(prompt.tokens.tolist(), fig.data[0].x))
    assert int(np.argmax(fig.data[0].y)) == int(pred.probs.argmax())


def test_run_task_errors_are_clear(engine, clip, bad_file, tmp_path):
    with pytest.raises(gr.Error, match="Record or upload"):
        try_view.run_task(engine, Session(), None, "tones")
    with pytest.raises(gr.Error, match="Choose a task"):
        try_view.run_task(engine, Session(), clip, None)
    with pytest.raises(gr.Error, match="Unknown task"):
        try_view.run_task(engine, Session(), clip, "nope")
    with pytest.raises(gr.Error, match="Invalid task id"):
        try_view.run_task(engine, Session(), clip, "../etc")
    with pytest.raises(gr.Error, match="Could not read notes.wav"):
        try_view.run_task(engine, Session(), bad_file, "tones")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(gr.Error, match="silent"):
        try_view.run_task(engine, Session(), str(silent), "tones")


def test_long_clip_notice_reaches_the_page(engine, tmp_path):
    p = tmp_path / "long.wav"
    t = np.arange(16000 * 31) / 16000
    sf.write(p, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    out = try_view.run_task(engine, Session(), str(p), "tones")
    assert "only the first 30 s" in out.facts


def test_browser_recording_at_44k_stereo_works(engine, tmp_path):
    p = tmp_path / "mic.wav"
    from .conftest import tone_clip

    mono = tone_clip("high", seed=3, sr=44100)
    sf.write(p, np.stack([mono, mono], 1), 44100)
    out = try_view.run_task(engine, Session(), str(p), "tones")
    assert engine.classify(str(p), "tones").label in out.headline


def test_task_card_describes_the_task(engine):
    card = try_view.task_card(engine, None, "tones")
    assert "Tone shape (learnable)" in card and "`low` `high` `chirp`" in card
    assert "Test accuracy 90.0%" in card and "learnable verbalizer" in card
    assert "Choose a task" in try_view.task_card(engine, None, None)
    from app.engine import Engine

    assert "No task prompts" in try_view.task_card(Engine(engine.backbone), None, None)


@pytest.fixture
def carded(engine):
    """The tones prompt with a task card (the shared engine is restored afterwards)."""
    info = engine.prompts["tones"].info
    old = info.card
    info.card = TaskCard(**CARD)
    yield info.card
    info.card = old


def test_try_view_shows_the_task_card_beside_the_answer(engine, clip, carded):
    out = try_view.run_task(engine, Session(), clip, "tones")
    head, trust = out.headline.split('<div class="trust">')
    assert engine.classify(clip, "tones").label in head  # the answer, then its card right below it
    assert "90.0% — accuracy on tones never heard in training" in trust
    assert "Learned from</span> 3 synthetic voices only, no real person" in trust
    assert "Not for</span> real speech: it only ever heard three kinds of tone" in trust
    card = try_view.task_card(engine, None, "tones")
    assert "Measured: 90.0% — accuracy on tones never heard in training." in card
    assert "**Not for:** real speech" in card and "Test accuracy" not in card
    assert "accuracy 90.0% (33%)" in how_view.how_markdown(engine)


def test_without_a_card_the_try_view_shows_no_card(engine, clip):
    assert engine.prompts["tones"].info.card is None
    assert 'class="trust"' not in try_view.run_task(engine, Session(), clip, "tones").headline


def test_card_html_words_an_error_rate_and_escapes_its_texts():
    info = TaskInfo(id="fake", labels=["bonafide", "spoof"], metrics={"unseen_family_eer": 0.213},
                    card=TaskCard("both", 1, 12, "unseen_family_eer", "EER on families never seen",
                                  "proving <b>anything</b>"))
    html = plots.card_html(info)
    assert "21.3% (lower is better) — EER on families never seen" in html
    assert "1 real person and 12 synthetic voices" in html
    assert "&lt;b&gt;anything&lt;/b&gt;" in html and "<b>anything" not in html
    assert plots.card_html(TaskInfo(id="x", labels=["a", "b"])) == ""


# ------------------------------------------------------------------ All tasks at once


def test_run_all_matches_single_tasks_and_tells_storage(engine, clip, tmp_path):
    out = all_view.run_all(engine, Session(), clip)
    assert len(out.rows) == len(engine.tasks)
    for row, task in zip(out.rows, engine.tasks):
        pred = engine.classify(clip, task)
        assert row[0] == engine.prompts[task].info.title
        assert row[1] == pred.label and row[2] == f"{pred.confidence:.0%}"
    assert f"{len(engine.tasks)} tasks in one batched pass" in out.timing
    # Storage figures come from real sizes: the serialised prompt equals the file save_prompt writes.
    from app.prompt_files import load_prompt, save_prompt

    for t in engine.tasks:
        save_prompt(engine.prompts[t], tmp_path / t, engine.backbone.id, engine.backbone.fingerprint)
        on_disk = (tmp_path / t / "prompt.safetensors").stat().st_size
        loaded = load_prompt(tmp_path / t, engine.backbone.lm.config, engine.backbone.fingerprint)
        assert prompt_bytes(loaded) == on_disk  # a prompt loaded from files reports its real file size
        assert abs(prompt_bytes(engine.prompts[t]) - on_disk) < 64
    total = sum(prompt_bytes(engine.prompts[t]) for t in engine.tasks)
    assert list(out.storage_fig.data[0].y) == [total, engine.backbone.lm.num_params() * 4,
                                               len(engine.tasks) * engine.backbone.lm.num_params() * 4]
    assert f"{len(engine.tasks)} task prompts" in out.storage


def test_run_all_errors(engine, bad_file):
    with pytest.raises(gr.Error, match="Record or upload"):
        all_view.run_all(engine, Session(), "")
    with pytest.raises(gr.Error, match="Could not read"):
        all_view.run_all(engine, Session(), bad_file)
    from app.engine import Engine

    with pytest.raises(gr.Error, match="No task prompts"):
        all_view.run_all(Engine(engine.backbone), Session(), bad_file)


# ------------------------------------------------------------------ Train a prompt


def test_parse_classes_limits():
    assert train_data.parse_classes(" yes, no ,\nstop ") == ["yes", "no", "stop"]
    for bad, msg in [("yes", "at least 2"), (",".join(map(str, range(11))), "At most 10"),
                     ("yes, Yes", "different"), ("a, " + "b" * 41, "under 40"), ("a|b, c", "may not contain"),
                     ("<b>x</b>, y", "may not contain")]:
        with pytest.raises(gr.Error, match=msg):
            train_data.parse_classes(bad)


def test_add_examples_counts_warns_and_cleans_uploads(engine, tmp_path, bad_file, monkeypatch):
    monkeypatch.setattr(train_data, "get_upload_folder", lambda: str(tmp_path))
    s = Session()
    with pytest.raises(gr.Error, match="Set the classes"):
        train_data.add_examples(engine, s, "low", str(write_tone(tmp_path / "a.wav")), None)
    s, status, names = train_data.set_classes(s, "low, high")
    assert names == ["low", "high"] and "needs 3 more" in status
    rec = write_tone(tmp_path / "rec.wav", "low", 1)
    files = [str(write_tone(tmp_path / f"f{i}.wav", "low", 10 + i)) for i in range(2)] + [bad_file]
    s, status, warnings = train_data.add_examples(engine, s, "low", str(rec), files)
    assert len(s.examples["low"]) == 3 and "| low | 3 | ✓ ready |" in status
    assert len(warnings) == 1 and "notes.wav" in warnings[0]
    assert not rec.exists() and not Path(files[0]).exists(), "consumed uploads are removed"
    with pytest.raises(gr.Error, match="which class"):
        train_data.add_examples(engine, s, "nope", None, files)
    with pytest.raises(gr.Error, match="Record a clip"):
        train_data.add_examples(engine, s, "low", None, [])
    with pytest.raises(gr.Error, match="At most 30 files"):
        train_data.add_examples(engine, s, "low", None, ["x.wav"] * 31)
    # Renaming classes keeps examples of classes that stay.
    s, status, _ = train_data.set_classes(s, "low, chirp")
    assert len(s.examples["low"]) == 3 and s.examples["chirp"] == []
    first = s.examples["low"][0]
    s, status = train_data.remove_last(s, "low")
    assert len(s.examples["low"]) == 2 and s.examples["low"][0] is first and "| low | 2 | needs 1 more |" in status
    with pytest.raises(gr.Error, match="'chirp' has no examples"):
        train_data.remove_last(s, "chirp")
    s, status = train_data.clear_examples(s)
    assert s.examples == {"low": [], "chirp": []}


def test_add_examples_never_deletes_outside_the_upload_folder(engine, tmp_path):
    s = Session()
    train_data.set_classes(s, "low, high")
    keep = write_tone(tmp_path / "mine.wav", "low")
    train_data.add_examples(engine, s, "low", str(keep), None)
    assert keep.exists()


def test_add_examples_caps_each_class(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(train_data, "MAX_PER_CLASS", 4)
    s = Session()
    train_data.set_classes(s, "low, high")
    files = [str(write_tone(tmp_path / f"f{i}.wav", "low", i)) for i in range(6)]
    monkeypatch.setattr(train_data, "get_upload_folder", lambda: str(tmp_path))
    s, _, warnings = train_data.add_examples(engine, s, "low", None, files)
    assert len(s.examples["low"]) == 4 and "already has 4" in warnings[0]
    assert not any(Path(f).exists() for f in files), "uploads past the cap are removed too"
    too_many = [str(write_tone(tmp_path / f"g{i}.wav", "low", i)) for i in range(31)]
    with pytest.raises(gr.Error, match="At most 30 files"):
        train_data.add_examples(engine, s, "low", None, too_many)
    assert not any(Path(f).exists() for f in too_many), "refused uploads are removed as well"


def test_bundled_training_set_loads():
    s, text, status = train_data.load_bundled(ui_engine(), Session())
    assert text == "no, stop, yes" and s.classes == ["no", "stop", "yes"]
    assert all(len(s.examples[c]) >= train_data.MIN_PER_CLASS for c in s.classes)
    assert train_data.ready(s) and status.count("✓ ready") == 3


def _trained_session(engine, title="Tone words", verbalizer="learnable", visitor="v1", **kw):
    s = Session()
    train_data.set_classes(s, "low, high")
    for c in ("low", "high"):
        s.examples[c] = [engine.encode(torch.from_numpy(_tone(c, i)), 16000)[1] for i in range(3)]
    updates = list(train_run.train(engine, s, title, 4, verbalizer, True, visitor, **kw))
    return s, updates


def _tone(kind, seed):
    from .conftest import tone_clip

    return tone_clip(kind, seed=seed)


def test_train_streams_epochs_and_keeps_the_lm_frozen(engine, tmp_path):
    lm_before = {k: v.clone() for k, v in engine.backbone.lm.state_dict().items()}
    tasks_before = list(engine.tasks)
    calls = []
    s, updates = _trained_session(engine, progress=lambda frac, desc="": calls.append(frac))
    assert updates[0].history == [] and "Training **Tone words**" in updates[0].status
    epochs = updates[1:-1]
    assert epochs and [u.history[-1]["epoch"] for u in epochs] == list(range(1, len(epochs) + 1))
    assert len(epochs[-1].curve.data[0].x) == len(epochs)
    final = updates[-1]
    assert final.done and final.task == "tone-words" and "✓ Trained" in final.status
    assert calls and calls[0] == 0.0 and all(0 <= c <= 1 for c in calls)
    for k, v in engine.backbone.lm.state_dict().items():
        assert torch.equal(v, lm_before[k])
    assert engine.tasks == tasks_before, "a visitor's prompt never enters the shared engine"
    assert s.prompts["tone-words"].labels == ["low", "high"] and s.last_task == "tone-words"
    # The download: a zip that unpacks into a valid prompt folder for this backbone.
    with zipfile.ZipFile(final.zip_path) as z:
        assert sorted(z.namelist()) == ["tone-words/prompt.safetensors", "tone-words/task.json"]
        z.extractall(tmp_path)
    loaded = load_prompt(tmp_path / "tone-words", engine.backbone.lm.config, engine.backbone.fingerprint)
    assert loaded.labels == ["low", "high"]
    meta = json.loads((tmp_path / "tone-words" / "task.json").read_text())
    assert meta["metrics"]["epochs_run"] == len(epochs)
    # Test it right away.
    head, fig = train_run.test_clip(engine, s, str(write_tone(tmp_path / "t.wav", "low", 99)))
    assert "Tone words" in head and set(fig.data[0].y) == {"low", "high"}
    # It is in this visitor's task list, and only theirs.
    assert ("★ Tone words (tone-words, yours)", "tone-words") in task_choices(engine, s)
    assert "tone-words" not in dict((v, k) for k, v in task_choices(engine, Session()))
    out = try_view.run_task(engine, s, str(tmp_path / "t.wav"), "tone-words")
    assert "Tone words" in out.headline
    with pytest.raises(gr.Error, match="Unknown task"):
        try_view.run_task(engine, Session(), str(tmp_path / "t.wav"), "tone-words")
    assert len(all_view.run_all(engine, s, str(tmp_path / "t.wav")).rows) == len(engine.tasks) + 1
    folder = Path(s.workdir)
    cleanup_session(s)
    assert not folder.exists()


def test_train_with_a_fixed_verbalizer_and_time_budget(engine):
    s, updates = _trained_session(engine, "Fixed", verbalizer="random", visitor="v2", max_seconds=0.0)
    assert updates[-1].done and "budget ran out" in updates[-1].status and len(updates) == 3
    assert s.prompts["fixed"].verbalizer is None


def test_train_refuses_bad_requests(engine):
    s = Session()
    with pytest.raises(gr.Error, match="Set the classes first"):
        next(train_run.train(engine, s, "x", 5, "learnable", True, "v3"))
    train_data.set_classes(s, "low, high")
    s.examples = {"low": [engine.encode(torch.from_numpy(_tone("low", i)), 16000)[1] for i in range(3)], "high": []}
    with pytest.raises(gr.Error) as refused:  # plain words: no table or markdown leaks into a message
        next(train_run.train(engine, s, "x", 5, "learnable", True, "v3"))
    assert refused.value.message == "Every class needs at least 3 examples before training: 'high' needs 3 more."
    s.examples = {c: [engine.encode(torch.from_numpy(_tone(c, i)), 16000)[1] for i in range(3)]
                  for c in ("low", "high")}
    with pytest.raises(gr.Error, match="under 60"):
        next(train_run.train(engine, s, "x" * 61, 5, "learnable", True, "v3"))
    with pytest.raises(gr.Error, match="verbalizer must be"):
        next(train_run.train(engine, s, "x", 5, "bogus", True, "v3"))
    train_run._ACTIVE.add("busy-visitor")
    try:
        with pytest.raises(gr.Error, match="already have a training run"):
            next(train_run.train(engine, s, "x", 5, "learnable", True, "busy-visitor"))
    finally:
        train_run._ACTIVE.discard("busy-visitor")
    assert "v3" not in train_run._ACTIVE
    with pytest.raises(gr.Error, match="Train a prompt first"):
        train_run.test_clip(engine, Session(), "x.wav")


def test_task_ids_never_shadow_loaded_tasks_and_are_capped(engine, monkeypatch):
    s = Session()
    assert train_run.new_task_id(engine, s, "Tones") == "tones-2"
    assert train_run.new_task_id(engine, s, "!!!") == "my-task"
    monkeypatch.setattr(train_run, "MAX_OWN_PROMPTS", 1)
    s.prompts["mine"] = engine.prompts["tones"]
    assert train_run.new_task_id(engine, s, "mine") == "mine"  # retraining replaces
    with pytest.raises(gr.Error, match="already have 1 prompts"):
        train_run.new_task_id(engine, s, "other")


def test_session_engine_is_a_private_view(engine):
    s = Session(prompts={"mine": engine.prompts["tones"]})
    view = session_engine(engine, s)
    assert "mine" in view.tasks and "mine" not in engine.tasks
    assert session_engine(engine, Session()) is engine


# ------------------------------------------------------------------ How it works, API, media, app


def test_how_it_works_uses_real_numbers(engine):
    d = engine.backbone.describe()
    text = how_view.how_markdown(engine)
    assert f"{d['lm_params']:,}" in text and d["fingerprint"] in text
    trained = engine.prompts["tones"]  # a 3-class prompt trained with the app's default settings
    assert len(trained.labels) == 3 and trained.config == train_run.PromptConfig()
    assert f"**{trained.num_trainable():,} trainable parameters**" in text  # prosody inputs counted too
    assert "centroids*" in text and "*keys*" in text  # the words a newcomer meets are explained
    for t in engine.tasks:
        assert f"| {engine.prompts[t].num_trainable():,} |" in text
    assert text.count("| 90.0% (33%) |") == len(engine.tasks)  # the prompts' recorded test accuracy, 3 classes
    html = how_view.pipeline_html(engine)
    assert f"{d['n_units']} k-means centroids" in html and f"{d['lm_params']:,} parameters" in html


def test_api_functions(engine, clip, bad_file):
    one = api.classify(engine, clip, "tones")
    assert one == {**engine.classify(clip, "tones").to_dict(), "notices": []}
    every = api.classify_all(engine, clip)
    assert [r["task"] for r in every] == engine.tasks
    assert every[0]["label"] == one["label"]
    for args, msg in [((None, "tones"), "Send an audio file"), ((clip, ""), "Give a task id"),
                      ((clip, "nope"), "Unknown task"), ((bad_file, "tones"), "Could not read")]:
        with pytest.raises(gr.Error, match=msg):
            api.classify(engine, *args)
    assert api.classify(engine, {"path": clip}, "tones")["task"] == "tones"


def test_views_decode_other_formats_through_app_audio(tmp_path, clip, bad_file, engine):
    """The UI hands paths to the engine; app.encoder.audio converts what libsndfile cannot read (WebM here) with ffmpeg."""
    with pytest.raises(gr.Error, match="Could not read notes.wav as audio: it is a text file"):
        api.classify(engine, bad_file, "tones")
    with pytest.raises(gr.Error, match="not found"):
        api.classify(engine, str(tmp_path / "missing.webm"), "tones")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: only WAV/FLAC/OGG/MP3 uploads work")
    webm = tmp_path / "rec.webm"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", clip, "-c:a", "libopus", str(webm)], check=True)
    assert api.classify(engine, str(webm), "tones")["label"] in KINDS
    assert try_view.run_task(engine, Session(), str(webm), "tones").headline


def test_an_example_brings_its_task_along_when_loaded(engine):
    ex = Example("a chirp", "/clips/chirp.wav", "tones-freq")
    assert try_view.pick_example(engine, ex, "tones") == ("/clips/chirp.wav", "tones-freq")
    assert try_view.pick_example(engine, ex._replace(task="digits"), "tones") == ("/clips/chirp.wav", "tones")
    assert try_view.pick_example(engine, ex._replace(task=None), "tones") == ("/clips/chirp.wav", "tones")


def test_try_view_opens_on_digits_when_loaded(engine):
    assert try_view.default_task(engine) == engine.tasks[0]
    with_digits = Engine(engine.backbone, {**engine.prompts, "digits": engine.prompts["tones"]})
    assert try_view.default_task(with_digits) == "digits"
    assert try_view.default_task(Engine(engine.backbone)) is None


def test_examples_are_bundled_and_small():
    clips = examples()
    assert 3 <= len(clips) <= 6
    for caption, path, task, label in clips:
        assert caption and Path(path).stat().st_size < 100_000
        assert task is None or label, f"{caption}: a featured clip says what its task should answer"
        assert task is None or (DEFAULT_PROMPTS_DIR / task / "task.json").is_file(), f"{caption}: no task {task}"
        info = sf.info(path)
        assert info.samplerate == 16000 and info.channels == 1
    for word in ("yes", "no", "stop"):
        assert len(list((EXAMPLES_DIR / "train_set" / word).glob("*.wav"))) >= 3


def test_build_ui_exposes_only_the_named_api(engine):
    demo = build_ui(engine)
    named = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert named == {"classify", "classify_all"}
    train = [fn for fn in demo.fns.values() if fn.concurrency_id == "train"]
    assert len(train) == 1 and train[0].concurrency_limit == 1


def test_server_options_from_env_and_flags(tmp_path):
    args = parse_args([], env={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "9999"})
    kw = launch_kwargs(args)
    assert (kw["server_name"], kw["server_port"]) == ("0.0.0.0", 9999) and "ssl_certfile" not in kw
    assert (parse_args([], env={}).host, parse_args([], env={}).port) == ("127.0.0.1", 7860)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    kw = launch_kwargs(parse_args(["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)], env={}))
    assert kw["ssl_certfile"] == str(cert) and kw["ssl_keyfile"] == str(key) and kw["ssl_verify"] is False
    env = {"SPEECHPROMPT_SSL_CERTFILE": str(cert), "SPEECHPROMPT_SSL_KEYFILE": str(key)}
    kw = launch_kwargs(parse_args([], env=env))
    assert kw["ssl_certfile"] == str(cert)
    with pytest.raises(SystemExit):
        parse_args(["--ssl-certfile", str(cert)], env={})
    with pytest.raises(SystemExit):
        parse_args(["--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "missing.pem")], env={})


def test_closing_a_training_run_stops_its_thread(engine, monkeypatch):
    """A visitor who leaves mid-training (Gradio closes the generator) frees the server's training slot."""
    import threading
    import time

    from dataclasses import replace

    from app import training

    monkeypatch.setattr(training, "FEW_SHOT_SETTINGS", replace(training.FEW_SHOT_SETTINGS, steps=1_000_000))

    s = Session()
    train_data.set_classes(s, "low, high")
    same = [engine.encode(torch.from_numpy(_tone("low", i)), 16000)[1] for i in range(3)]
    s.examples = {"low": same, "high": same}  # unlearnable: it would run for the whole time budget
    before = {t.ident for t in threading.enumerate()}
    run = train_run.train(engine, s, "Leaving", 5, "learnable", True, "leaver")
    next(run), next(run)  # the intro and the first epoch
    worker = [t for t in threading.enumerate() if t.ident not in before and t.name == "prompt-training"]
    assert len(worker) == 1 and worker[0].is_alive()
    start = time.perf_counter()
    run.close()
    assert "leaver" not in train_run._ACTIVE
    worker[0].join(timeout=10)
    assert not worker[0].is_alive() and time.perf_counter() - start < 5
    assert "leaving" not in s.prompts


# ------------------------------------------------------------------ issue #15: ways forward from every state


def test_try_errors_replace_the_answer_and_stay_on_the_page(engine, clip, tmp_path):
    good = try_view.answer_or_alert(engine, Session(), clip, "tones")
    assert "headline-label" in good[0] and good[1] is not None
    assert "Confidence is not correctness" in good[0]
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    out = try_view.answer_or_alert(engine, Session(), str(silent), "tones")
    assert 'role="alert"' in out[0] and "silent" in out[0] and "headline-label" not in out[0]
    assert out[1:] == (None, "", None, "", None, None), "no figure of the previous answer is left"


def test_a_new_task_clears_the_old_answer(engine, clip):
    out = try_view.task_changed(engine, Session(), "tones-freq", clip)
    assert "Task changed" in out[0] and "Classify" in out[0] and out[1:] == (None, "", None, "", None, None)
    assert try_view.task_changed(engine, Session(), "tones", None)[0] == try_view.PLACEHOLDER


def test_too_short_clips_are_refused_everywhere(engine, tmp_path):
    short = tmp_path / "blip.wav"
    sf.write(short, _tone("chirp", 3)[:1600], 16000)  # 0.1 s
    with pytest.raises(gr.Error, match="too short"):
        try_view.run_task(engine, Session(), str(short), "tones")
    with pytest.raises(gr.Error, match="too short"):
        all_view.run_all(engine, Session(), str(short))
    assert 'role="alert"' in all_view.answer_or_alert(engine, Session(), str(short))[1]
    s, _, _ = train_data.set_classes(Session(), "low, high")
    s, status, warnings = train_data.add_examples(engine, s, "low", str(short), None)
    assert s.examples["low"] == [] and "too short" in warnings[0] and "the recording" in warnings[0]


def test_empty_class_names_are_refused():
    for text in ("yes, , no", "yes,,no"):
        with pytest.raises(gr.Error, match="empty name"):
            train_data.parse_classes(text)
    assert train_data.parse_classes("yes, no,\n\nstop,") == ["yes", "no", "stop"]


def test_a_recording_before_classes_leaves_no_ghost(engine, tmp_path):
    s = Session()
    rec = write_tone(tmp_path / "audio.wav", "low", 1)
    with pytest.raises(gr.Error, match="Set the classes first"):
        train_data.add_examples(engine, s, None, str(rec), None)
    s, _, _ = train_data.set_classes(s, "low, high")
    rec.unlink()  # used up (an upload is removed once consumed), yet its path came back: a message, no crash
    s, _, warnings = train_data.add_examples(engine, s, "low", str(rec), None)
    assert warnings == ["the recording is gone (already used or removed): record or upload it again."]


def test_verbalizer_panels_are_stacked_and_explained(engine, clip):
    pred = engine.classify(clip, "tones")
    fig = plots.verbalizer_figure(engine.prompts["tones"], pred.probs, pred.stream_probs)
    domains = [fig.layout[f"xaxis{i if i > 1 else ''}"].domain for i in range(1, 4)]
    assert all(tuple(d) == (0.0, 1.0) for d in domains), "each class's panel gets the whole width"
    assert "speech sound no." in fig.layout.title.text
    assert "weight ×" in fig.layout.xaxis3.title.text
