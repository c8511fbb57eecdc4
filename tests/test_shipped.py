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
    assert d["bytes_on_disk"] <= 60e6, "the embedded backbone must stay at most 60 MB (issue #13)"
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


def test_every_shipped_prompt_says_what_its_task_definition_says(engine):
    """The title and description a visitor reads are the recipe's current ones (--cards-only refreshes a prompt kept
    from an earlier run)."""
    from recipes.common.tasks import TASKS

    for task in engine.tasks:
        info = engine.prompts[task].info
        assert (info.title, info.description) == (TASKS[task].title, TASKS[task].description), task


def test_every_shipped_prompt_carries_its_task_card(engine):
    """Whose speech it learned from, the honest figure and what it is not for: written by the recipe (task.json)."""
    for task in engine.tasks:
        info = engine.prompts[task].info
        assert info.card is not None, f"{task}: no task card in task.json"
        assert info.headline() is not None and info.card.not_for and info.card.test_means
    cards = {t: engine.prompts[t].info.card for t in engine.tasks}
    for task in ("accent", "intent", "question"):  # learned from synthetic voices only, and say so
        assert cards[task].training_speech == "synthetic" and cards[task].real_speakers == 0
    assert "RAVDESS" in cards["question"].not_for  # the shared data has no real questions
    assert cards["language"].headline_metric == "real_accuracy"  # real volunteers, not the synthetic test split
    fake = engine.prompts["fake"].info
    assert fake.card.headline_metric == "unseen_family_eer" and fake.card.training_speech == "both"
    families = ("formant", "concat", "parametric", "neural", "vocoded")
    assert all(isinstance(fake.metrics.get(f"unseen_family_eer_{f}"), float) for f in families), fake.metrics
    assert fake.metrics["unseen_family_eer_worst"] == max(fake.metrics[f"unseen_family_eer_{f}"] for f in families)
