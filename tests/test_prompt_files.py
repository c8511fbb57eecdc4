"""Prompt folders are data: only safetensors + JSON, validated, and a broken one is skipped, never fatal."""
from __future__ import annotations

import os
import pickle

import pytest

from app.engine import Engine
from app.prompt_files import load_prompt
from app.prompting import PromptError

from .ui_engine import add_malformed_prompts, save_engine, ui_engine


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
