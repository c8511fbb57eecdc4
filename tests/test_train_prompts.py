"""recipes/build/train_prompts.py: which trained prompt is shipped, and how the report reads the results."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from recipes.build.train_prompts import select_and_ship
from recipes.common.results import shipped


def _candidate(root, variant, task, marker):
    folder = root / variant / task
    folder.mkdir(parents=True)
    (folder / "task.json").write_text(json.dumps({"marker": marker}))
    (folder / "prompt.safetensors").write_bytes(marker.encode())


def _row(val, test, fp="fp"):
    return {"val_accuracy": val, "test": {"accuracy": test}, "fingerprint": fp}


def test_each_read_out_says_how_its_verbalizer_starts():
    from recipes.build import train_prompts as tp

    assert tp.verbalizer_start("v2_mean_lp") == "linear_probe" and tp.verbalizer_start("v2_mean") == "random"
    assert tp.verbalizer_start("v2_mean_aug") == "class_means" == tp.verbalizer_start("v2_mean_novoice_aug_spot")
    assert tp.PROMPT_VARIANTS["v2_mean_lp"] == tp.PROMPT_VARIANTS["v2_mean"] and "v2_mean_lp" in tp.SHIPPABLE
    assert "linear probe" in tp.NAMES["v2_mean_lp"]
    assert tp.verbalizer_start("v2_mean_aug_lp") == "linear_probe" and "v2_mean_aug_lp" in tp.AUGMENTED
    assert tp.PROMPT_VARIANTS["v2_mean_aug_lp"] == tp.PROMPT_VARIANTS["v2_mean"]
    assert tp.NAMES["v2_mean_aug_lp"].endswith("+ copies, started from a linear probe")


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


def test_accuracy_on_unseen_validation_speakers_decides_when_every_candidate_has_it(tmp_path):
    cands, out = tmp_path / "cands", tmp_path / "prompts"
    _candidate(cands, "v2", "t", "prosody")
    _candidate(cands, "v2_mean", "t", "mean")
    results = {"v2": _row(0.95, 0.88), "v2_mean": _row(0.93, 0.95)}
    real = {"v2": 0.80, "v2_mean": 0.90}
    assert select_and_ship("t", results, cands, out, "fp", real.get) == "v2_mean"
    assert results["v2"]["val_choice_score"] == 0.80
    # without such a figure for every candidate the whole validation split decides
    assert select_and_ship("t", results, cands, out, "fp", {"v2": 0.8, "v2_mean": None}.get) == "v2"


def test_the_mean_over_validation_folds_decides_where_every_candidate_has_the_same_folds(tmp_path):
    cands, out = tmp_path / "cands", tmp_path / "prompts"
    _candidate(cands, "v2", "t", "prosody")
    _candidate(cands, "v2_mean", "t", "mean")

    def fold(score, epoch=4):
        return [{"fold": "t_val_bob", "val_choice_score": score, "best_epoch": epoch, "epochs_run": 9}]
    results = {"v2": {**_row(0.9, 0.5), "folds": fold(0.70)}, "v2_mean": {**_row(0.9, 0.5), "folds": fold(0.85)}}
    first = {"v2": 0.90, "v2_mean": 0.80}  # the first fold alone would ship v2
    assert select_and_ship("t", results, cands, out, "fp", first.get) == "v2_mean"
    assert results["v2"]["val_choice_folds"] == [0.90, 0.70] and results["v2"]["val_choice_score"] == 0.8
    assert results["v2_mean"]["val_choice_score"] == 0.825
    del results["v2_mean"]["folds"]  # a candidate without the fold: the first fold decides for all
    assert select_and_ship("t", results, cands, out, "fp", first.get) == "v2"
    assert "val_choice_folds" not in results["v2"] and results["v2"]["val_choice_score"] == 0.90


def test_a_validation_fold_trains_the_read_out_with_the_other_person_validating(tmp_path, backbone, monkeypatch):
    from dataclasses import replace
    from types import SimpleNamespace

    from recipes.build import train_prompts as tp

    task, args = _tone_task(tmp_path)
    plan = task.plan
    swap = {"train:0": "val:0", "val:0": "train:0"}  # speaker 0 of train validates, speaker 0 of val trains
    both = [c for s in ("train", "val") for c in plan(s)]
    fold = replace(task, id="tones_val_0", plan=lambda split: plan(split) if split == "test" else
                   [c for c in both if swap.get(c.speaker, c.speaker).startswith(split)])
    assert {c.speaker for c in fold.plan("val")} == {"train:0", "val:1"}
    monkeypatch.setattr(tp, "MIN_CHOICE_VAL", 3)
    args = SimpleNamespace(**vars(args), epochs=2, lr=3e-2, batch_size=8, patience=8, max_minutes=1.0, copies=0)
    row = tp.fold_row(backbone, fold, "v2_mean", args)
    assert row["fold"] == "tones_val_0" and row["basis"].startswith("real speakers never heard in training (12")
    assert row["clips"] == 12
    assert 0 <= row["val_choice_score"] <= 1 and 1 <= row["best_epoch"] <= row["epochs_run"] == 2


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
    # a run without probes has no probe columns
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


def _tone_task(tmp_path):
    """A tiny real-file task: three tone kinds, two 'speakers' per split, six clips each (no synthesis)."""
    from types import SimpleNamespace

    import soundfile as sf

    from recipes.common.tasks import SPLITS, Clip, Task

    from .conftest import KINDS, SR, tone_clip

    def plan(split):
        clips = []
        for spk in (0, 1):
            for i in range(6):
                kind = KINDS[i % 3]
                path = tmp_path / "audio" / f"{split}-{spk}-{i}.wav"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, tone_clip(kind, seed=100 * SPLITS.index(split) + 10 * spk + i), SR)
                clips.append(Clip(kind, f"{split}:{spk}", "real", path=str(path)))
        return clips

    task = Task("tones", "Tones", "Three synthetic tones.", KINDS, plan)
    args = SimpleNamespace(max_train=0, max_val=0, seed=0, cache=tmp_path / "cache")
    return task, args


def test_pooled_baseline_learns_a_tiny_task_and_caches_its_features(tmp_path, backbone):
    from recipes.build.train_prompts import run_baseline
    from recipes.common.results import split_examples

    task, args = _tone_task(tmp_path)
    ex = {"test": split_examples(task, "test")}
    row = run_baseline("pooled", backbone, task, ex, args)
    assert row["test"]["accuracy"] >= 0.8  # chance: 0.33
    assert row["encoder_fingerprint"] == backbone.encoder_fingerprint and row["C"] in (0.01, 0.1, 1.0, 10.0)
    dim = backbone.encoder.features(torch.zeros(16000)).shape[1]
    assert row["trainable_params"] == 3 * 2 * dim + 3  # mean + std of each dense dimension, per class, + biases
    spread = row["test"]["spread"]
    assert spread["speakers"] == 2 and set(spread["per_speaker"]) == {"test:0", "test:1"}
    cached = sorted(p.name for p in (args.cache / backbone.encoder_fingerprint).iterdir())
    assert cached == ["tones_test_pooled.safetensors", "tones_train_pooled.safetensors", "tones_val_pooled.safetensors"]

    class Deaf:  # the second run reads every feature from the cache: the encoder is never called
        def features(self, wav):
            raise AssertionError("encoder called despite the cache")

    from types import SimpleNamespace
    again = run_baseline("pooled", SimpleNamespace(encoder=Deaf(), encoder_fingerprint=backbone.encoder_fingerprint),
                         task, ex, args)
    assert again["test"]["accuracy"] == row["test"]["accuracy"]


def _split_row(acc, interval=None, per=None, speakers=4, real=4, eer=None):
    row = {"accuracy": acc, "macro_f1": acc,
           "spread": {"metric": "accuracy", "speakers": speakers, "real_speakers": real,
                      "synthetic_voices": speakers - real, "interval": interval, "per_speaker": per or {}}}
    return row if eer is None else {**row, "eer": eer}


def _task_results(v2_test, pooled_test, metric="accuracy"):
    data = {s: {"clips": n} for s, n in (("train", 100), ("val", 20), ("test", 40))}
    v2 = {"test": v2_test, "val_accuracy": 0.9, "trainable_params": 6000, "train_seconds": 10.0,
          "verbalizer_reads": ["units"], "fingerprint": "fp"}
    return {"labels": ["a", "b"], "metric": metric, "data": data, "shipped": "v2_mean", "v2_mean": v2,
            "pooled": {"test": pooled_test, "trainable_params": 300}}


def test_report_shows_intervals_speakers_and_flags_tasks_far_under_the_pooled_baseline(tmp_path, monkeypatch,
                                                                                        capsys):
    from types import SimpleNamespace

    from recipes.build import train_prompts

    monkeypatch.setattr(train_prompts, "FAMILIES_FILE", tmp_path / "none.json")
    monkeypatch.setattr(train_prompts, "GAP_NOTES", {})
    results = {
        "digits": _task_results(_split_row(0.9, [0.85, 0.95], {"x": 0.8, "y": 1.0}), _split_row(0.93)),
        "gender": _task_results(_split_row(0.7, [0.6, 0.8]), _split_row(0.9, [0.8, 1.0])),
        "speaker": _task_results(_split_row(0.8, speakers=1, real=1), _split_row(0.8, speakers=1, real=1)),
        "intent": _task_results(_split_row(0.6, [0.5, 0.7], real=0), _split_row(0.6, real=0)),
        "fake": _task_results(_split_row(0.7, [0.2, 0.4], eer=0.3), _split_row(0.9, eer=0.1), metric="eer"),
    }
    bb = SimpleNamespace(id="tiny", fingerprint="fp", lm=SimpleNamespace(num_params=lambda: 1000))
    text = "\n".join(train_prompts.report_lines(results, bb))
    assert "encoder pooled + LR" in text and "v2, verbalizer on the mean over the clip" in text
    assert "| digits | 2 | 0.900 [0.850, 0.950] | 4 | 0.800-1.000 (2) | -3.0 |" in text  # within 5 points
    assert "| gender | 2 | 0.700 [0.600, 0.800] | 4 |  | -20.0 **flagged** |" in text
    assert "| speaker | 2 | 0.800 | 1: a single test speaker, no speaker spread |" in text
    assert "| intent | 2 | 0.600 [0.500, 0.700] | 4 synthetic voices only |" in text
    assert "| fake | 2 | 0.300 [0.200, 0.400] | 4 |  | -20.0 **flagged** |" in text  # EER: lower is better
    assert "- **gender** (20.0 points under encoder pooled + LR): tried on this backbone `v2_mean`; nothing noted yet" \
        in text
    assert "| gender | " in text and "0.900 [0.800-1.000] (300)" in text  # the baselines table's pooled cell
    out = capsys.readouterr().out
    assert "WARNING: gender" in out and "WARNING: fake" in out and "WARNING: digits" not in out
    monkeypatch.setattr(train_prompts, "GAP_NOTES", {"gender": "tried v2_units and longer prompts: no better",
                                                     "fake": "tried the mean read-out"})
    text = "\n".join(train_prompts.report_lines(results, bb))
    assert "- **gender** (20.0 points under encoder pooled + LR): tried on this backbone `v2_mean`; tried v2_units and " \
        "longer prompts" in text
    assert "WARNING" not in capsys.readouterr().out


def test_fake_families_reruns_the_shipped_variant_v2_mean_included(tmp_path):
    from recipes.build.fake_families import shipped_variant
    from recipes.build.train_prompts import PROMPT_VARIANTS, SHIPPABLE

    assert "v2_mean" in SHIPPABLE and PROMPT_VARIANTS["v2_mean"].read_at == "mean"
    from app.lm import UnitLMConfig

    assert shipped_variant(tmp_path, UnitLMConfig()) == "v2_units"  # nothing shipped
    for verbalizer, variant in (({"kind": "learnable", "reads": ["units"]}, "v2_units"),
                                ({"kind": "learnable", "reads": ["units", "duration", "pitch"]}, "v2"),
                                ({"kind": "learnable", "reads": ["units", "duration", "pitch"], "read_at": "mean"},
                                 "v2_mean")):
        (tmp_path / "task.json").write_text(json.dumps({"verbalizer": verbalizer}))
        assert shipped_variant(tmp_path, UnitLMConfig()) == variant
    # v2_mean_lp has v2_mean's shape: the results file's record of what shipped tells them apart, where it fits
    assert shipped_variant(tmp_path, UnitLMConfig(), recorded="v2_mean_lp") == "v2_mean_lp"
    assert shipped_variant(tmp_path, UnitLMConfig(), recorded="v2_units") == "v2_mean"


def test_augmented_variant_trains_on_cached_copies_seeded_per_clip(tmp_path, backbone):
    from types import SimpleNamespace

    from recipes.build.train_prompts import PROMPT_VARIANTS, run_task
    from recipes.common.results import encode_copies

    task, args = _tone_task(tmp_path)
    fp = backbone.encoder_fingerprint
    copies = encode_copies(backbone.encoder, fp, task, "train", args.cache, 2)
    assert len(copies) == 12 and all(len(c) == 2 for c in copies)
    assert (args.cache / fp / "tones_train_copies2.safetensors").is_file()

    class Deaf:  # a second read comes from the cache
        def __call__(self, wav):
            raise AssertionError("encoder called despite the cache")
    again = encode_copies(Deaf(), fp, task, "train", args.cache, 2)
    assert all(torch.equal(a.ids, b.ids) for x, y in zip(copies, again) for a, b in zip(x, y))

    assert PROMPT_VARIANTS["v2_mean_aug"] == PROMPT_VARIANTS["v2_mean"]
    assert PROMPT_VARIANTS["v2_units_aug"] == PROMPT_VARIANTS["v2_units"]  # the paper's read-out, on copies
    args = SimpleNamespace(**vars(args), epochs=2, lr=3e-2, batch_size=8, patience=8, max_minutes=1.0, copies=2,
                           candidates=tmp_path / "candidates")
    r = run_task(backbone, task, ["v2_mean_aug"], args)
    row = r["v2_mean_aug"]
    assert row["copies"] == 2 and row["epochs_run"] == 2 and 0 <= row["test"]["accuracy"] <= 1
    assert (args.candidates / "v2_mean_aug" / "tones" / "prompt.safetensors").is_file()


def test_prompts_are_chosen_on_validation_voices_never_heard_in_training(monkeypatch):
    from types import SimpleNamespace

    from recipes.build import train_prompts as tp

    def clip(label, speaker, source):
        return SimpleNamespace(label=label, speaker=speaker, source=source)
    train = [clip(lab, "anna", "real") for lab in "ab"] + [clip(lab, "voice1", "synthetic") for lab in "ab"]
    val = ([clip(lab, "anna", "real") for lab in "ab" * 3]  # later takes of a training speaker
           + [clip(lab, "voice2", "synthetic") for lab in "ab" * 2])
    monkeypatch.setattr(tp, "split_examples", lambda task, split, cap=0, seed=0: train if split == "train" else val)
    monkeypatch.setattr(tp, "MIN_CHOICE_VAL", 4)
    task, args = SimpleNamespace(id="t", labels=["a", "b"]), SimpleNamespace(max_train=0, max_val=0, seed=0)
    idx, basis = tp.choice_clips(task, args)
    assert idx == [6, 7, 8, 9] and basis.startswith("voices never heard in training (4")
    val[:2] = [clip("a", "bob", "real"), clip("b", "bob", "real")]  # too few unseen real clips: all unseen voices
    val[2:4] = [clip("a", "carl", "real"), clip("b", "carl", "real")]
    idx, basis = tp.choice_clips(task, args)
    assert idx == [0, 1, 2, 3] and basis.startswith("real speakers never heard")
    monkeypatch.setattr(tp, "MIN_CHOICE_VAL", 20)
    assert tp.choice_clips(task, args) is None  # too few clips: the whole split decides


def test_unseen_family_figures_reach_the_card_only_for_the_read_out_they_measured(tmp_path):
    from app.lm import UnitLMConfig
    from recipes.build.train_prompts import family_run_fits

    lm = UnitLMConfig(n_voice=16, voice_buckets=8)
    run = tmp_path / "fake.json"
    run.write_text(json.dumps({"variant": "v2_mean"}))
    mean_all = {"verbalizer": {"reads": ["units", "duration", "pitch", "voice"], "read_at": "mean"}}
    assert family_run_fits(mean_all, lm, run)
    assert not family_run_fits({"verbalizer": {**mean_all["verbalizer"], "read_at": "separator"}}, lm, run)
    assert not family_run_fits({"verbalizer": {"reads": ["units"], "read_at": "mean"}}, lm, run)
    run.write_text(json.dumps({"variant": "v2_units_mean"}))  # a screening read-out no shipped prompt has
    assert not family_run_fits(mean_all, lm, run)
    assert not family_run_fits(mean_all, lm, tmp_path / "none.json")


@pytest.mark.parametrize("kind", ["plain", "own_voice_encoder"])
def test_encode_only_caches_splits_and_copies_under_the_finished_backbones_encoder_fingerprint(tmp_path, backbone,
                                                                                                 monkeypatch, kind):
    """A backbone recipe's work dir (encoder parts only, LM still training) -> task units and perturbed copies, cached
    where the finished bundle will look for them (also with voice streams read from a second encoder)."""
    from types import SimpleNamespace

    from safetensors.torch import save_file

    from recipes.build import train_prompts as tp
    from recipes.build.backbone import save_encoder_parts
    from recipes.common.results import encode_copies, encode_split
    from tests.conftest import tiny_voice_backbone

    if kind == "own_voice_encoder":
        backbone = tiny_voice_backbone(seed=0, own_voice_encoder=True)
    task, args = _tone_task(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    config = {k: v for k, v in backbone.config.items() if k in ("dense", "quantizer", "voice")}
    save_encoder_parts(work, config, backbone.encoder)
    save_file({"centroids": backbone.encoder.centroids.contiguous()}, str(work / "centroids.safetensors"))
    monkeypatch.setattr(tp, "TASKS", {"tones": task})
    tp.encode_only(SimpleNamespace(**vars(args), encode_only=work, tasks=["tones"], copies=2))
    fp = backbone.encoder_fingerprint
    cached = sorted(p.name for p in (args.cache / fp).glob("*.safetensors"))
    assert cached == ["tones_test.safetensors", "tones_train.safetensors", "tones_train_copies2.safetensors",
                      "tones_val.safetensors"]

    class Deaf:  # the finished backbone reads them all from the cache
        def __call__(self, wav):
            raise AssertionError("encoder called despite the cache")
    units, _, _ = encode_split(Deaf(), fp, task, "train", args.cache)
    direct = [backbone.encoder(tp.prepare(e.audio).wav) for e in tp.split_examples(task, "train")]
    assert [u.ids.tolist() for u in units] == [u.ids.tolist() for u in direct]
    if kind == "own_voice_encoder":
        assert all(torch.equal(a.voice, b.voice) for a, b in zip(units, direct))
    assert len(encode_copies(Deaf(), fp, task, "train", args.cache, 2)) == 12


def test_baseline_cells_mark_runs_the_time_cap_stopped_not_early_stopped_ones():
    from recipes.build.train_prompts import baseline_cell, time_capped

    test = {"accuracy": 0.5, "macro_f1": 0.5}
    capped = {"test": test, "trainable_params": 10, "epochs": 30, "epochs_run": 9, "train_seconds": 460.2,
              "max_minutes": 7.0}
    early = {**capped, "epochs_run": 12, "train_seconds": 200.0}  # patience ended it well inside the cap
    full = {**capped, "epochs_run": 30, "train_seconds": 419.0}
    assert time_capped(capped) and not time_capped(early) and not time_capped(full)
    assert not time_capped({k: v for k, v in capped.items() if k != "max_minutes"})  # rows without a cap recorded
    r = {"metric": "accuracy", "finetune": capped, "shallow": early}
    assert "† 9/30 ep" in baseline_cell(r, "finetune") and "†" not in baseline_cell(r, "shallow")


def test_the_shipped_prompt_stands_in_for_its_lost_candidate(tmp_path):
    """A run of other variants on a new machine (no candidates on disk) is chosen against the shipped prompt."""
    cands, out = tmp_path / "cands", tmp_path / "prompts"
    (out / "t").mkdir(parents=True)
    (out / "t" / "task.json").write_text(json.dumps({"marker": "shipped", "backbone": {"fingerprint": "fp"}}))
    _candidate(cands, "v2_units", "t", "units")
    results = {"v2_aug": _row(0.95, 0.9), "v2_units": _row(0.90, 0.99), "shipped": "v2_aug"}
    assert select_and_ship("t", results, cands, out, "fp") == "v2_aug"
    assert json.loads((out / "t" / "task.json").read_text())["marker"] == "shipped"
    assert (cands / "v2_aug" / "t" / "task.json").is_file()
    # a shipped prompt of another backbone is not restored: the new run's own candidate is all there is
    (out / "t" / "task.json").write_text(json.dumps({"marker": "old", "backbone": {"fingerprint": "other"}}))
    results = {"v2_aug": _row(0.95, 0.9, fp="fp"), "v2_units": _row(0.90, 0.99), "shipped": "v2_aug"}
    shutil.rmtree(cands / "v2_aug")
    assert select_and_ship("t", results, cands, out, "fp") == "v2_units"


def test_digits_trains_and_validates_on_its_whole_splits_and_the_others_on_the_caps():
    from types import SimpleNamespace

    from recipes.build.train_prompts import FULL_SPLITS, split_cap

    args = SimpleNamespace(max_train=1000, max_val=300)
    assert "digits" in FULL_SPLITS and split_cap(args, "train", "digits") == 0
    assert split_cap(args, "val", "digits") == 0 and split_cap(args, "test", "digits") == 0
    assert split_cap(args, "train", "commands") == 1000 and split_cap(args, "train") == 1000
    assert split_cap(args, "val", "commands") == 300


def test_a_read_out_chosen_on_real_unseen_people_is_trained_again_on_train_and_val(tmp_path, backbone, monkeypatch):
    """Validation on real people never heard chooses the read-out; the shipped prompt is then that read-out trained
    on train + val for the epochs validation picked, with no early stopping, and its row is what the report shows."""
    from types import SimpleNamespace

    from app.prompt_files import read_task_json
    from recipes.build import train_prompts as tp

    task, args = _tone_task(tmp_path)
    args = SimpleNamespace(**vars(args), epochs=3, lr=3e-2, batch_size=8, patience=8, max_minutes=1.0, copies=2,
                           candidates=tmp_path / "candidates", out=tmp_path / "prompts")
    results = tp.run_task(backbone, task, ["v2_units"], args)
    results["v2_units"]["best_epoch"] = 2
    seen = {}
    train_task = tp.train_task

    def spy(lm, info, config, rows, val, cfg, **kw):
        seen.update(rows=len(rows), val=val, epochs=cfg.epochs)
        return train_task(lm, info, config, rows, val, cfg, **kw)

    monkeypatch.setattr(tp, "train_task", spy)
    monkeypatch.setattr(tp, "choice_val_scorer", lambda bb, t, a: ((lambda v: 0.5), f"{tp.REAL_CHOICE} (12 clips)"))
    monkeypatch.setattr(tp, "write_card", lambda *a, **k: True)
    tp.choose_and_ship(backbone, task, results, args)
    assert seen == {"rows": 12 + 12, "val": None, "epochs": 2}
    again = results["refit"]
    assert again["variant"] == "v2_units" and again["trained_on"] == "train + val" and again["epochs_run"] == 2
    assert again["val_choice_score"] == 0.5 and 0 <= again["test"]["accuracy"] <= 1
    assert shipped(results) is again
    meta = read_task_json(args.out / "tones")
    assert meta["extra"]["refit"] == {"read_out": "v2_units", "epochs": 2, "trained_on": "train + val"}
    assert meta["metrics"]["test_accuracy"] == again["test"]["accuracy"]
    # the same candidate chosen again: its refit is shipped again without training; new weights: trained again
    seen.clear()
    tp.choose_and_ship(backbone, task, results, args)
    assert seen == {} and results["refit"] is again and (args.out / "tones" / "prompt.safetensors").is_file()
    weights = args.candidates / "v2_units" / "tones" / "prompt.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    tp.choose_and_ship(backbone, task, results, args)
    assert seen["epochs"] == 2 and results["refit"]["of"]["candidate_sha256"] != again["of"]["candidate_sha256"]
    # chosen over validation folds: the choice is their mean, and the refit trains for the mean of their epochs
    results["v2_units"]["folds"] = [{"fold": "tones_val_0", "val_choice_score": 0.7, "best_epoch": 4, "epochs_run": 5,
                                     "basis": f"{tp.REAL_CHOICE} (6 clips)", "clips": 6}]
    tp.choose_and_ship(backbone, task, results, args)
    assert results["v2_units"]["val_choice_score"] == 0.6 and seen["epochs"] == 3
    assert results["refit"]["epochs"] == 3 and results["val_choice"].startswith(tp.REAL_CHOICE)
    assert results["val_choice"].endswith("; averaged with the fold tones_val_0 (6 clips)")
    # the refit is not put back as the candidate it came from (it trained on the clips that choose)
    shutil.rmtree(args.candidates / "v2_units")
    assert not tp.restore_shipped("tones", "v2_units", args.candidates, args.out, backbone.fingerprint)
    # chosen on synthetic voices, or on the whole split: the candidate itself ships
    for basis in ("voices never heard in training (12 clips)", "the whole validation split"):
        assert not tp.refits({"val_choice": basis, "shipped": "v2_units"})
    assert tp.refits({"val_choice": f"{tp.REAL_CHOICE} (120 clips)", "shipped": "v2_units"})
    assert shipped({**results, "shipped": "v2_mean"}) is None  # a refit of another read-out is not the shipped row


def test_report_names_a_refit_and_what_its_read_out_scored_before():
    from recipes.build.train_prompts import shipped_row

    r = _task_results(_split_row(0.85, [0.8, 0.9]), _split_row(0.93))
    r["refit"] = {**r["v2_mean"], "variant": "v2_mean", "test": _split_row(0.89, [0.84, 0.94]), "trained_on":
                  "train + val", "epochs": 18, "epochs_run": 18}
    row = shipped_row("digits", r)
    assert row.startswith("| digits | 2 | 0.890 [0.840, 0.940] |")
    assert "trained again on train + val for 18 epochs; before, trained on train only: 0.850 [0.800, 0.900]" in row


def test_spot_variants_start_from_the_shipped_commands_prompt_and_so_do_their_refits(tmp_path, backbone, monkeypatch):
    from types import SimpleNamespace

    from app.prompting import TaskInfo
    from app.prompt_files import save_prompt
    from app.training import new_prompt
    from recipes.build import train_prompts as tp

    task, args = _tone_task(tmp_path)
    args = SimpleNamespace(**vars(args), epochs=2, lr=3e-2, batch_size=8, patience=8, max_minutes=1.0, copies=2,
                           candidates=tmp_path / "candidates", out=tmp_path / "prompts")
    source = new_prompt(backbone.lm, TaskInfo(id="commands", labels=["yes", "no"]), tp.PROMPT_VARIANTS["v2_aug"], [])
    with torch.no_grad():
        source.input_prompt.fill_(0.5)
    save_prompt(source, args.out / tp.SPOT_SOURCE, backbone.id, backbone.fingerprint)
    seen = []
    train_task = tp.train_task

    def spy(lm, info, config, rows, val, cfg, **kw):
        seen.append(kw.get("source"))
        return train_task(lm, info, config, rows, val, cfg, **kw)

    monkeypatch.setattr(tp, "train_task", spy)
    results = tp.run_task(backbone, task, ["v2_mean_aug_spot", "v2_mean_aug"], args)
    assert seen[0] is not None and torch.equal(seen[0].input_prompt, source.input_prompt) and seen[1] is None
    assert results["v2_mean_aug_spot"]["copies"] == 2  # a SPoT variant is its read-out's `+ copies` form
    assert tp.PROMPT_VARIANTS["v2_mean_aug_spot"] == tp.PROMPT_VARIANTS["v2_mean"]
    results["shipped"] = "v2_mean_aug_spot"
    tp.refit(backbone, task, results, args)
    assert seen[-1] is not None  # the refit starts from the same place


def test_cached_units_are_encoded_again_when_the_recipe_gives_other_clips_with_the_same_labels(tmp_path, backbone):
    """The units cache knows which clips it holds: a task whose recipe changed (other clips, the same labels in the
    same order, as a changed mix of synthetic voices gives) is encoded again, copies and pooled features too."""
    from dataclasses import replace

    from recipes.common.results import encode_copies, encode_split, pooled_features, split_examples

    task, args = _tone_task(tmp_path)
    fp = backbone.encoder_fingerprint
    first = encode_split(backbone.encoder, fp, task, "train", args.cache)[0]
    encode_copies(backbone.encoder, fp, task, "train", args.cache, 1)
    pooled_features(backbone.encoder, fp, task, "train", args.cache)

    class Deaf:  # the same clips: everything comes from the cache
        def __call__(self, wav):
            raise AssertionError("encoder called despite the cache")
        features = __call__
    assert [u.ids.tolist() for u in encode_split(Deaf(), fp, task, "train", args.cache)[0]] == \
        [u.ids.tolist() for u in first]
    encode_copies(Deaf(), fp, task, "train", args.cache, 1)
    pooled_features(Deaf(), fp, task, "train", args.cache)

    plan = task.plan
    swapped = lambda split: [c if i % 3 else replace(c, path=plan("test")[i].path)  # noqa: E731
                             for i, c in enumerate(plan(split))]
    before = split_examples(task, "train")
    task = replace(task, plan=swapped)  # every third clip another recording of the same kind
    after = split_examples(task, "train")
    assert [e.label for e in after] == [e.label for e in before] and after != before
    calls = []

    class Counting:
        def __call__(self, wav):
            calls.append(1)
            return backbone.encoder(wav)

        def features(self, wav):
            calls.append(1)
            return backbone.encoder.features(wav)
    encode_split(Counting(), fp, task, "train", args.cache)
    assert len(calls) == 12
    encode_copies(Counting(), fp, task, "train", args.cache, 1)
    pooled_features(Counting(), fp, task, "train", args.cache)
    assert len(calls) == 36


def test_results_lock_serialises_runs_of_one_task(tmp_path):
    """Two runs of one task (other variants, parallel processes) merge its results one after the other: while one
    holds the lock, the other waits."""
    import threading
    import time

    from recipes.build.train_prompts import results_lock

    path, order = tmp_path / "results" / "digits.json", []

    def second() -> None:
        with results_lock(path):
            order.append("second")

    with results_lock(path):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]


def test_copy_plans_per_task():
    """Digits and its validation fold train on copies some of which are cut as FSDD's takes are; voice tasks on
    channel copies; the rest on PLAN's; every plan named has its steps and its own cache name."""
    from app.encoder import augment
    from recipes.build.train_prompts import COPY_PLAN_TEXT, copy_plan
    from recipes.common.tasks import CHOICE_FOLDS

    assert copy_plan("digits") == "cropped" and {copy_plan(f.id) for f in CHOICE_FOLDS["digits"]} == {"cropped"}
    assert copy_plan("gender") == copy_plan("speaker") == "channel"
    assert copy_plan("commands") == copy_plan("language") == "copies"
    assert set(COPY_PLAN_TEXT) == set(augment.PLANS)


def test_results_are_written_whole(tmp_path):
    """A results file is replaced in one step (temporary file, then rename): no half-written JSON, no leftovers."""
    from recipes.build.train_prompts import write_json

    path = tmp_path / "digits.json"
    write_json(path, {"shipped": "v2"})
    write_json(path, {"shipped": "v2_mean"})
    assert json.loads(path.read_text()) == {"shipped": "v2_mean"} and [f.name for f in tmp_path.iterdir()] == [path.name]


def test_folds_only_scores_kept_candidates_and_merges_under_the_lock(tmp_path, monkeypatch):
    """--folds-only: the further folds of candidates of this backbone with files on disk are scored, and merged
    into the results as they are when the lock is taken (another run's rows kept), then the task is chosen again."""
    from types import SimpleNamespace

    from recipes.build import train_prompts as tp

    cands = tmp_path / "cands"
    _candidate(cands, "v2", "t", "prosody")
    results = {"v2": _row(0.5, 0.5), "v2_units": _row(0.9, 0.9), "v2_mean": _row(0.7, 0.7, fp="other")}
    monkeypatch.setattr(tp, "RESULTS_DIR", tmp_path)
    (tmp_path / "t.json").write_text(json.dumps(results))
    monkeypatch.setattr(tp, "CHOICE_FOLDS", {"t": ("fold",)})
    monkeypatch.setattr(tp, "fold_row", lambda bb, fold, v, args: {"fold": fold, "val_choice_score": 0.6})
    chosen = []

    def choose(bb, task, r, args, old):
        r["v2"]["seen_by_choice"] = True
        r["shipped"] = "v2"
        chosen.append(sorted(k for k in r if "folds" in (r[k] if isinstance(r[k], dict) else {})))

    monkeypatch.setattr(tp, "choose_and_ship", choose)
    bb, task = SimpleNamespace(fingerprint="fp"), SimpleNamespace(id="t")
    real_lock = tp.results_lock

    def lock_after_another_run(path):  # another run writes its row while this one scores its folds
        data = json.loads(path.read_text())
        data["v2_aug"] = _row(0.8, 0.8)
        path.write_text(json.dumps(data))
        return real_lock(path)

    monkeypatch.setattr(tp, "results_lock", lock_after_another_run)
    tp.add_folds(bb, task, ["v2", "v2_units", "v2_mean"], SimpleNamespace(candidates=cands))
    r = json.loads((tmp_path / "t.json").read_text())
    assert chosen == [["v2"]] and r["v2"]["folds"] == [{"fold": "fold", "val_choice_score": 0.6}]
    assert "folds" not in r["v2_units"] and "folds" not in r["v2_mean"]  # no files / another backbone
    assert "v2_aug" in r and r["shipped"] == "v2" and r["v2"]["seen_by_choice"]


def test_written_whole_replaces_only_on_success(tmp_path):
    """The shared whole-file writer: the old file stays until the new one is complete; a failed write leaves it."""
    from recipes.common.paths import written_whole

    path = tmp_path / "units.safetensors"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with written_whole(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    with written_whole(path, ".flac") as tmp:
        assert tmp.name.endswith(".flac") and tmp != path
        tmp.write_text("new")
    assert path.read_text() == "new"
