"""Prompt folders are data: only safetensors + JSON, validated, and a broken one is skipped, never fatal."""
from __future__ import annotations

import json
import os
import pickle
import re

import pytest

from app.engine import Engine
from app.prompt_files import load_prompt, save_prompt
from app.prompting import PromptError, TaskCard

from .ui_engine import CARD, add_malformed_prompts, save_engine, ui_engine


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    backbone, prompts = save_engine(tmp_path_factory.mktemp("engine"))
    return backbone, prompts, add_malformed_prompts(prompts)


def test_each_malformed_prompt_is_skipped_with_its_reason(folders, caplog):
    _, prompts, cases = folders
    engine = Engine(ui_engine().backbone)
    with caplog.at_level("WARNING"):
        engine.load_prompts(prompts)
    assert engine.tasks == sorted(ui_engine().tasks), "the good prompts still load"
    assert set(engine.skipped) == set(cases)
    for name, fragment in cases.items():
        assert fragment in engine.skipped[name], (name, engine.skipped[name])
        assert any(name in r.getMessage() for r in caplog.records), f"no warning logged for {name}"


class _Payload:
    """Unpickling this would create a file: loading a prompt must never unpickle anything."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_posing_as_a_prompt_is_never_executed(folders, tmp_path):
    _, prompts, _ = folders
    marker = tmp_path / "pwned"
    evil = prompts / "pickled"
    (evil / "prompt.safetensors").write_bytes(pickle.dumps(_Payload(str(marker))))
    (evil / "prompt.pt").write_bytes(pickle.dumps(_Payload(str(marker))))  # other files are never read
    bb = ui_engine().backbone
    with pytest.raises(PromptError, match="not a valid safetensors file"):
        load_prompt(evil, bb.lm.config, bb.fingerprint)
    Engine(bb).load_prompts(prompts)
    assert not marker.exists()


@pytest.mark.parametrize("task", ["../tones", "tones/../../x", "/etc/passwd", "Tones", "", "a" * 65, ".hidden",
                                  "tones\x00", "tönes"])
def test_task_ids_that_could_escape_are_refused(task):
    with pytest.raises(PromptError, match="Invalid task id"):
        ui_engine().get(task)


def test_symlinked_prompt_folder_outside_is_just_data(folders, tmp_path):
    """A folder's contents are validated like any other: a link to elsewhere gains nothing."""
    _, prompts, _ = folders
    link = prompts / "linked"
    if not link.exists():
        os.symlink(prompts / "tones", link)
    engine = Engine(ui_engine().backbone)
    engine.load_prompts(prompts)
    assert "does not match folder name" in engine.skipped["linked"]


# ------------------------------------------------------------------ task cards (optional, type-checked)


def _with_card(folder, card):
    meta = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    if card is None:
        meta.pop("card", None)
    else:
        meta["card"] = card
    (folder / "task.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


@pytest.fixture
def tones_folder(tmp_path):
    bb = ui_engine().backbone
    return save_prompt(ui_engine().prompts["tones"], tmp_path / "tones", bb.id, bb.fingerprint)


def test_a_task_card_round_trips_and_stays_optional(tones_folder, tmp_path):
    bb = ui_engine().backbone
    assert load_prompt(tones_folder, bb.lm.config, bb.fingerprint).info.card is None  # no card: loads as before
    prompt = load_prompt(_with_card(tones_folder, CARD), bb.lm.config, bb.fingerprint)
    assert prompt.info.card == TaskCard(**CARD)
    assert prompt.info.headline() == ("test_accuracy", 0.9)
    again = load_prompt(save_prompt(prompt, tmp_path / "copy" / "tones", bb.id, bb.fingerprint), bb.lm.config)
    assert again.info.card == prompt.info.card  # save_prompt writes it back


@pytest.mark.parametrize("change, fragment", [
    ({"training_speech": "people"}, "training_speech must be one of"),
    ({"real_speakers": -1}, "whole number"),
    ({"synthetic_voices": True}, "whole number"),
    ({"synthetic_voices": 2.5}, "whole number"),
    ({"real_speakers": 4}, "does not match"),
    ({"training_speech": "both"}, "does not match"),
    ({"headline_metric": "real_accuracy"}, "not a number among the metrics"),
    ({"headline_metric": "date"}, "not a number among the metrics"),
    ({"not_for": "  "}, "non-empty text"),
    ({"test_means": 3}, "non-empty text"),
    ({"test_means": "x" * 301}, "at most 300"),
    ({"owner": "me"}, "unknown fields ['owner']"),
])
def test_a_malformed_card_is_refused_with_its_reason(tones_folder, change, fragment):
    bb = ui_engine().backbone
    with pytest.raises(PromptError, match=re.escape(fragment)):
        load_prompt(_with_card(tones_folder, {**CARD, **change}), bb.lm.config, bb.fingerprint)


@pytest.mark.parametrize("card, fragment", [("synthetic", "card must be a JSON object"),
                                            ({k: v for k, v in CARD.items() if k != "not_for"}, "missing fields")])
def test_a_card_that_is_not_a_full_object_is_refused(tones_folder, card, fragment):
    bb = ui_engine().backbone
    with pytest.raises(PromptError, match=fragment):
        load_prompt(_with_card(tones_folder, card), bb.lm.config, bb.fingerprint)
