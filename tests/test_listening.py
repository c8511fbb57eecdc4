"""Listen mode without a browser: chunks of a synthetic stream in, words and labels out; bounds; odd chunks."""
from __future__ import annotations

import numpy as np
import pytest

from app.ui import listening
from app.ui.listen_view import on_chunk
from app.ui.listening import Listener, listen_html
from app.ui.session import Session

from .conftest import tone_clip
from .ui_engine import ui_engine


def _stream(kinds, sr=48_000, gap_s=0.8):
    parts = [np.zeros(int(0.5 * sr), np.float32)]
    for k in kinds:
        parts += [0.5 * tone_clip(k, seed=1, seconds=0.6, sr=sr).astype(np.float32), np.zeros(int(gap_s * sr), np.float32)]
    return (np.concatenate(parts) * 32767).astype(np.int16)


def _feed(lis, x, sr=48_000, task="tones", chunk=4800):
    engine = ui_engine()
    views = []
    for i in range(0, x.size, chunk):
        views.append(on_chunk(engine, Session(), lis, task, (sr, x[i:i + chunk])))
    return views


def test_each_word_is_labelled_once_it_ends():
    engine = ui_engine()
    lis = Listener()
    x = _stream(["low", "high", "chirp"])
    views = _feed(lis, x)
    dets = list(reversed(lis.detections))
    assert [d.label for d in dets] == [engine.classify((48_000, x[a:b]), "tones").label for a, b in
                                       (d.span for d in dets)]
    assert all(abs(d.at_s - end) < 0.05 for d, end in zip(dets, (1.1, 2.5, 3.9))), [d.at_s for d in dets]
    assert all(a / 48_000 <= start and b >= d.end_sample for d, (a, b), start in
               zip(dets, (d.span for d in dets), (0.5, 1.9, 3.3)))
    html = [v for v in views if isinstance(v, str)][-1]
    assert html.count('class="listen-det"') == 3 and 'class="tl-tok"' in html and 'class="tl-gap"' in html
    assert sum(isinstance(v, str) for v in views) < len(views) / 2  # silence sends nothing


def test_the_buffer_and_the_stream_are_bounded(monkeypatch):
    lis = Listener()
    monkeypatch.setattr(listening, "MAX_STREAM_S", 3.0)
    _feed(lis, (np.random.default_rng(0).standard_normal(48_000 * 5) * 3000).astype(np.int16))
    assert lis.buffer.size <= listening.BUFFER_S * 48_000
    assert lis.stopped and "Record again" in listen_html(lis, "t")
    big = Listener()
    on_chunk(ui_engine(), Session(), big, "tones", (16_000, np.zeros(16_000 * 60, np.int16)))
    assert big.received == listening.MAX_CHUNK_S * 16_000


@pytest.mark.parametrize("chunk", [None, "x", (48_000,), (0, np.zeros(10)), (10**9, np.zeros(10)),
                                   (48_000, np.zeros(0)), (48_000, np.array(["a", "b"])), ("fast", np.zeros(10))])
def test_odd_chunks_are_ignored(chunk):
    lis = Listener()
    assert not isinstance(on_chunk(ui_engine(), Session(), lis, "tones", chunk), str)
    assert lis.received == 0


def test_without_a_task_words_are_heard_but_not_labelled():
    lis = Listener()
    _feed(lis, _stream(["low"]), task=None)
    assert not lis.detections and "Choose a task" in listen_html(lis, "Choose a task")


def test_stereo_and_float_chunks():
    lis = Listener()
    x = _stream(["high"]).astype(np.float32) / 32767
    _feed(lis, np.stack([x, x], axis=1))
    assert len(lis.detections) == 1


def test_a_prompt_the_visitor_just_trained_is_heard_too():
    engine = ui_engine()
    mine = Session(prompts={"mine": engine.prompts["tones-freq"]})
    lis = Listener()
    x = _stream(["high", "low"])
    for i in range(0, x.size, 4800):
        on_chunk(engine, mine, lis, "mine", (48_000, x[i:i + 4800]))
    assert len(lis.detections) == 2 and lis.task == "mine"
    other = Listener()  # another visitor has no such prompt: words are heard, not labelled
    for i in range(0, x.size, 4800):
        on_chunk(engine, Session(), other, "mine", (48_000, x[i:i + 4800]))
    assert not other.detections and other.received == x.size
