"""recipes/experiments/refit.py: the chosen read-out trained again on train + validation, scored on test."""
from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from app.encoder.units import Units
from recipes.experiments import refit

SPLITS = {"train": 12, "val": 6, "test": 8}


def _units(label: int, i: int) -> Units:
    ids = torch.tensor([1 + label * 5 + (i % 3)] * 4)  # each label its own few units
    return Units(ids=ids, durations=torch.ones(4, dtype=torch.long), pitch=torch.full((4,), 100.0))


def test_refit_trains_on_train_and_validation_without_early_stopping(monkeypatch, capsys, backbone):
    task = SimpleNamespace(id="toy", title="Toy", labels=("a", "b"), splits=tuple(SPLITS), metric="accuracy")
    data = {s: ([_units(i % 2, i) for i in range(n)], [i % 2 for i in range(n)]) for s, n in SPLITS.items()}
    monkeypatch.setitem(refit.TASKS, "toy", task)
    monkeypatch.setattr(refit.Backbone, "load", staticmethod(lambda *a, **k: backbone))
    monkeypatch.setattr(refit, "encode_split", lambda enc, fp, t, split, cache, cap, seed: (*data[split], {}))
    monkeypatch.setattr(refit, "split_examples", lambda t, split, cap, seed: [
        SimpleNamespace(speaker=f"s{i % 2}", source="real", label=task.labels[i % 2]) for i in range(SPLITS[split])])
    seen = {}
    train_task = refit.train_task

    def spy(lm, info, config, takes, val, cfg, **kw):
        seen.update(rows=len(takes), val=val, epochs=cfg.epochs)
        return train_task(lm, info, config, takes, val, cfg, **kw)

    monkeypatch.setattr(refit, "train_task", spy)
    refit.main(["--task", "toy", "--variant", "v2_units", "--epochs", "3"])
    out = json.loads(capsys.readouterr().out)
    assert seen == {"rows": SPLITS["train"] + SPLITS["val"], "val": None, "epochs": 3}
    assert out["trained_on"] == "train + val" and out["split"] == "test" and 0.0 <= out["accuracy"] <= 1.0
    assert set(out["spread"]["per_speaker"]) <= {"s0", "s1"}
