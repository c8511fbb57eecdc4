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
