"""recipes/build/train_prompts.py: which trained prompt is shipped, and how the report reads the results."""
from __future__ import annotations

import json

from recipes.build.train_prompts import select_and_ship
from recipes.common.results import shipped


def _candidate(root, variant, task, marker):
    folder = root / variant / task
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps({"marker": marker}))
    (folder / "prompt.safetensors").write_bytes(marker.encode())


def _row(val, test, fp="fp"):
    return {"val_accuracy": val, "test": {"accuracy": test}, "fingerprint": fp}


def test_ships_the_better_validation_prompt_never_looking_at_test(tmp_path):
    cands, out = tmp_path / "cands", tmp_path / "prompts"
    _candidate(cands, "v2", "t", "prosody")
    _candidate(cands, "v2_units", "t", "units")
    # v2_units is better on validation but worse on test: validation decides
    results = {"v2": _row(0.80, 0.99), "v2_units": _row(0.85, 0.50)}
    assert select_and_ship("t", results, cands, out, "fp") == "v2_units"
    assert json.loads((out / "t" / "task.json").read_text()) == {"marker": "units"}
    # a tie goes to v2; the previous shipped folder is replaced, not merged
    results["v2"]["val_accuracy"] = 0.85
    assert select_and_ship("t", results, cands, out, "fp") == "v2"
    assert (out / "t" / "prompt.safetensors").read_bytes() == b"prosody"
    assert shipped({**results, "shipped": "v2"}) is results["v2"]


def test_rows_of_another_backbone_or_without_files_are_not_shipped(tmp_path):
    cands, out = tmp_path / "cands", tmp_path / "prompts"
    _candidate(cands, "v2", "t", "prosody")
    results = {"v2": _row(0.5, 0.5, fp="other"), "v2_units": _row(0.9, 0.9)}  # no v2_units files on disk
    assert select_and_ship("t", results, cands, out, "fp") is None
    assert not out.exists()
    assert shipped({"v2": results["v2"]}) is results["v2"]  # older results without a "shipped" key


def test_targets_table_says_met_only_when_the_shipped_prompt_reaches_the_target():
    from recipes.build.train_prompts import target_lines

    def task(acc, ft, split="test"):
        v2 = {"val_accuracy": 0.9, split: {"accuracy": acc}, "test": {"accuracy": acc}, "trainable_params": 5}
        return {"v2": v2, "shipped": "v2", "finetune": {"test": {"accuracy": ft}, "trainable_params": 1000}}

    lines = "\n".join(target_lines({"digits": task(0.91, 0.93), "gender": task(0.94, 0.94),
                                    "language": task(0.61, 0.70, split="real")}))
    assert "| digits test accuracy >= 0.90 | 0.910 | yes |" in lines
    assert "| gender test accuracy >= 0.95 | 0.940 | no |" in lines
    assert "| language real accuracy >= 0.60 | 0.610 | yes |" in lines
    assert "| mean over 3 tasks within 3 points of full fine-tuning | -3.67 points | no |" in lines
    assert "| at most 1 % of fine-tuning's trainable parameters | 0.50 % | yes |" in lines


def _families(eers, complete=True):
    held = {f: {"eer": e, "spoofs": 10, "real": 20, "spoofs_passed_as_real": 0.3, "real_called_spoof": 0.1,
                "epochs_run": 6, "train_seconds": 420.0, "scores_real": [], "scores_spoofs": []}
            for f, e in eers.items()}
    return {"command": "python -m recipes.build.fake_families", "backbone": "fp", "variant": "v2_units",
            "date": "2026-11-30", "budget": {"max_train": 1000, "max_val": 300, "epochs": 30, "seed": 0},
            "held_out": held, "seen": {f: {"eer": 0.01} for f in eers} | {"all": {"eer": 0.02}},
            "pooled_eer": 0.12, "complete": complete}


def test_unseen_family_figures_and_table_come_from_a_complete_run(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from recipes.build import train_prompts
    from recipes.common.results import unseen_family_metrics
    from recipes.common.tasks import FAKE_FAMILIES

    eers = dict(zip(FAKE_FAMILIES, (0.05, 0.10, 0.14, 0.16, 0.30)))
    path = tmp_path / "fake.json"
    path.write_text(json.dumps(_families(eers, complete=False)))
    assert unseen_family_metrics(path) == {}  # a partial run never reaches task.json
    path.write_text(json.dumps(_families(eers)))
    m = unseen_family_metrics(path)
    assert m["unseen_family_eer"] == 0.12 and m["unseen_family_eer_worst"] == 0.30
    assert m["unseen_family_eer_neural"] == 0.16
    monkeypatch.setattr(train_prompts, "FAMILIES_FILE", path)
    text = "\n".join(train_prompts.family_lines(SimpleNamespace(fingerprint="fp")))
    assert "| neural | " in text and "| 0.160 | 30.0% | 10.0% | 6 (420.0) | 0.010 |" in text
    assert "| **pooled** | | 50 | **0.120** | | | | 0.020 |" in text
    assert "| EER <= 0.15 on each held-out family | worst 0.300 | no |" in text
    assert "| pooled EER <= 0.10 | 0.120 | no |" in text
    assert train_prompts.family_lines(SimpleNamespace(fingerprint="other")) == []  # another backbone's run


def test_fold_scores_measure_a_family_against_the_real_clips():
    from recipes.build.fake_families import fold_scores

    p = [0.1, 0.2, 0.7, 0.9, 0.3, 0.8]  # clips 0-2 real, 3-5 spoofs of the held-out family
    r = fold_scores(p, [0, 1, 2], [3, 4, 5])
    assert r["spoofs"] == 3 and r["real"] == 3
    assert abs(r["spoofs_passed_as_real"] - 1 / 3) < 1e-3 and abs(r["real_called_spoof"] - 1 / 3) < 1e-3
    assert abs(r["eer"] - 1 / 3) < 1e-3
