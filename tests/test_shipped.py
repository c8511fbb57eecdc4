"""The shipped backbone and prompt library: they load, fit the paper's budget and answer on an example clip."""
import json
from pathlib import Path

import pytest

from app.backbone import Backbone
from app.engine import Engine
from app.settings import DEFAULT_BACKBONE_DIR, DEFAULT_PROMPTS_DIR

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load(DEFAULT_BACKBONE_DIR, DEFAULT_PROMPTS_DIR)


def test_backbone_bundle_is_complete():
    for name in ("config.json", "encoder.safetensors", "lm.safetensors", "MODEL_CARD.md"):
        assert (DEFAULT_BACKBONE_DIR / name).is_file(), name
    bb = Backbone.load()
    d = bb.describe()
    assert d["bytes_on_disk"] <= 30e6, "the embedded backbone must stay at most 30 MB"
    assert d["vocab_size"] == d["n_units"] + 1


def test_every_prompt_loads_and_fits_the_budget(engine):
    folders = sorted(p.name for p in DEFAULT_PROMPTS_DIR.iterdir() if (p / "task.json").is_file())
    assert folders, "no prompts shipped"
    assert engine.skipped == {}, engine.skipped
    assert engine.tasks == folders
    lm_params = engine.backbone.lm.num_params()
    for task in engine.tasks:
        p = engine.prompts[task]
        assert p.num_trainable() < 150_000, task
        assert lm_params >= 20 * p.num_trainable(), f"{task}: the frozen LM must be at least 20x the prompt"
        meta = json.loads((DEFAULT_PROMPTS_DIR / task / "task.json").read_text())
        assert meta["trainable_params"] == p.num_trainable()
        assert meta["backbone"]["fingerprint"] == engine.backbone.fingerprint
        assert "test_accuracy" in meta["metrics"], f"{task}: measured metrics missing"


def test_example_clip_runs_through_all_tasks(engine):
    clip = sorted((ROOT / "assets" / "examples").glob("*.wav"))[0]
    analysis = engine.analyze(clip, engine.tasks)
    assert len(analysis.predictions) == len(engine.tasks)
    for pred in analysis.predictions:
        assert abs(float(pred.probs.sum()) - 1) < 1e-4
        assert pred.label in pred.labels


FEATURED = json.loads((ROOT / "assets" / "examples" / "examples.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("item", FEATURED, ids=[item["file"] for item in FEATURED])
def test_shipped_prompts_get_every_featured_example_right(engine, item):
    """Each example button in the app (examples.json) shows off a task: that task's shipped prompt must give the
    clip's own label (the German and Spanish sentences once came out 'fr')."""
    assert item["label"], f"{item['file']}: examples.json names no expected label"
    pred = engine.classify(ROOT / "assets" / "examples" / item["file"], item["task"])
    assert pred.label == item["label"], pred.probs_dict()
