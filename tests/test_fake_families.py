"""recipes/build/fake_families.py: the folds, the probes beside the prompt, and the RESULTS section (offline, fast)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from app.lm import UnitLMConfig
from recipes.build import fake_families as ff
from recipes.common import results
from recipes.common.tasks import FAKE_FAMILIES

FAMS = list(FAKE_FAMILIES)


def test_a_fold_never_trains_on_its_family_and_keeps_label_proportions():
    labels = [0] * 40 + [1] * 50
    fams = [""] * 40 + [f for f in FAMS for _ in range(10)]
    idx = ff.fold_indices(labels, fams, "neural", cap=0, seed=0)
    assert all(fams[i] != "neural" for i in idx) and len(idx) == 80
    capped = ff.fold_indices(labels, fams, "neural", cap=40, seed=0)
    assert len(capped) == 40 and sum(labels[i] for i in capped) == 20  # 40 real : 40 spoof kept 1:1
    assert all(fams[i] != "neural" for i in capped)


def test_pooled_eer_puts_the_folds_scores_together():
    a = {"scores_real": [0.1, 0.2], "scores_spoofs": [0.9]}
    b = {"scores_real": [0.3], "scores_spoofs": [0.15]}  # this fold's spoof scores below two real clips
    assert ff.pooled_eer([a]) == 0.0
    assert ff.pooled_eer([a, b]) > 0.0


def test_the_probe_scores_p_spoof_not_p_bonafide():
    rng = np.random.default_rng(0)
    x = {s: np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(4, 1, (40, 3))]) for s in ("train", "val")}
    y = {s: [0] * 40 + [1] * 40 for s in ("train", "val")}
    p, c = ff.probe_scores(x, y, np.array([[0.0, 0, 0], [4.0, 4, 4]]))
    assert p[0] < 0.5 < p[1] and c > 0


def test_mean_variants_read_the_mean_and_the_shipped_variant_is_recognised(tmp_path):
    assert ff.FAMILY_VARIANTS["v2_units_mean"].read_at == "mean"
    assert ff.FAMILY_VARIANTS["v2_units"].read_at == "separator"
    assert ff.FAMILY_VARIANTS["v2_mean"] == ff.PROMPT_VARIANTS["v2_mean"]  # train_prompts' definition wins
    assert not ff.FAMILY_VARIANTS["v2_units_mean"].prosody and ff.FAMILY_VARIANTS["v2_mean"].prosody
    v1 = UnitLMConfig()
    assert ff.shipped_variant(tmp_path, v1) == "v2_units"  # nothing shipped
    (tmp_path / "task.json").write_text(json.dumps({"verbalizer": {"reads": ["units"], "read_at": "mean"}}))
    assert ff.shipped_variant(tmp_path, v1) == "v2_units_mean"
    (tmp_path / "task.json").write_text(json.dumps({"verbalizer": {"reads": ["units", "duration", "pitch"]}}))
    assert ff.shipped_variant(tmp_path, v1) == "v2"
    # on an LM with voice streams the voice read-out tells v2_mean from v2_mean_novoice
    voiced = UnitLMConfig(n_voice=16)
    for reads, variant in ((["units", "duration", "pitch", "voice"], "v2_mean"),
                           (["units", "duration", "pitch"], "v2_mean_novoice")):
        (tmp_path / "task.json").write_text(json.dumps({"verbalizer": {"reads": reads, "read_at": "mean"}}))
        assert ff.shipped_variant(tmp_path, voiced) == variant


def _fold(e, n_real=2):
    return {"eer": e, "spoofs": 3, "real": n_real, "spoofs_passed_as_real": 0.5, "real_called_spoof": 0.25,
            "epochs_run": 4, "train_seconds": 10.0, "train_cpu_seconds": 9.0,
            "scores_real": [0.1] * n_real, "scores_spoofs": [0.9] * 3}


def _run(prompt_eers, probe_eers, fp="fp"):
    return {"command": "python -m recipes.build.fake_families", "backbone": fp, "backbone_id": "bb",
            "variant": "v2_units_mean", "date": "2026-11-30", "budget": {"max_train": 1000, "epochs": 30, "seed": 0},
            "held_out": {f: _fold(e) for f, e in prompt_eers.items()},
            "complete": len(prompt_eers) == len(FAMS), "pooled_eer": 0.08,
            "seen": {"all": {"eer": 0.2}},
            "baselines": {"mfcc_lr": {"held_out": {f: _fold(e) for f, e in probe_eers.items()}, "pooled_eer": 0.3},
                          "encoder_pooled_lr": {"held_out": {}, "pooled_eer": None}}}


def test_results_section_shows_the_probes_beside_the_prompt_and_the_targets():
    r = _run({f: 0.1 for f in FAMS}, {"formant": 0.4})
    text = "\n".join(results.family_lines(r, "fp"))
    assert "| formant | 13 espeak-ng variants | 3 | 0.100 | 0.400 |  | 50.0% | 25.0% | 4 (10.0 / 9.0) |  |" in text
    assert "| **pooled** | | 15 | **0.080** | 0.300 |  | | | | 0.200 |" in text
    assert "EER, LFCC + LR" not in text  # a run from before that probe: no empty column for it
    r["baselines"]["lfcc_lr"] = {"held_out": {"formant": _fold(0.05)}, "pooled_eer": 0.05}
    text = "\n".join(results.family_lines(r, "fp"))
    assert "EER, LFCC + LR" in text
    assert "| formant | 13 espeak-ng variants | 3 | 0.100 | 0.400 |  | 0.050 | 50.0%" in text
    assert "| EER <= 0.15 on each held-out family | worst 0.100 | yes |" in text
    assert "| pooled EER <= 0.10 | 0.080 | yes |" in text
    r["held_out"]["vocoded"]["eer"] = 0.2
    assert "| EER <= 0.15 on each held-out family | worst 0.200 | no |" in "\n".join(results.family_lines(r, "fp"))
    assert results.family_lines(r, "another backbone") == []
    assert "copies" not in "\n".join(results.family_lines(r, "fp"))
    r["setup"] = {"copies": 2}
    assert "seed 0; 2 channel-perturbed copies of each training clip" in "\n".join(results.family_lines(r, "fp"))


def test_probes_alone_make_a_section_and_an_incomplete_run_never_meets_the_target():
    r = _run({}, {f: 0.3 for f in FAMS})
    text = "\n".join(results.family_lines(r, "fp"))
    assert "| vocoded | world, griffinlim, codec2, lpc | 3 |  | 0.300 |" in text and "target" not in text
    r = _run({"formant": 0.05}, {})
    text = "\n".join(results.family_lines(r, "fp"))
    assert "| EER <= 0.15 on each held-out family | worst 0.050 | no |" in text and "Not every family" in text


def test_the_section_replaces_only_itself_in_the_report(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# R\n\ntable\n\n{results.FAMILY_SECTION}\n\nold figures\n\n## later\n\nkept\n")
    results.write_family_section(path, [results.FAMILY_SECTION, "", "new figures", ""])
    assert path.read_text() == f"# R\n\ntable\n\n{results.FAMILY_SECTION}\n\nnew figures\n\n## later\n\nkept\n"
    path.write_text("# R\n\ntable\n")
    results.write_family_section(path, [results.FAMILY_SECTION, "", "x", ""])
    assert path.read_text() == f"# R\n\ntable\n\n{results.FAMILY_SECTION}\n\nx\n"
    results.write_family_section(path, [])  # nothing measured on this backbone: the report stays as it is
    assert path.read_text().endswith("x\n")
    path.write_text(f"# R\n\nBackbone `b` (fingerprint `{'1' * 16}`)\n\n{results.FAMILY_SECTION}\n\nold\n")
    assert results.report_backbone(path) == "1" * 16
    assert not results.write_family_section(path, [results.FAMILY_SECTION, "", "new", ""], "2" * 16)
    assert path.read_text().endswith("old\n")  # a run on another backbone leaves the report's section alone
    assert results.write_family_section(path, [results.FAMILY_SECTION, "", "new", ""], "1" * 16)
    assert path.read_text().endswith("new\n")


@pytest.fixture
def toy_task(monkeypatch):
    """A fake ``fake`` task: 2-d features, real clips near 0, each family's spoofs shifted along its own axis."""
    rng = np.random.default_rng(1)
    splits = {}
    for split, n in (("train", 20), ("val", 6), ("test", 10)):
        speakers = ["real"] * (2 * n) + [f for f in FAMS for _ in range(n)]
        shift = {"": 0.0, **{f: 3.0 for f in FAMS}}
        fams = ["" if s == "real" else s for s in speakers]
        x = np.stack([rng.normal(shift[f], 1.0, 4) for f in fams]).astype(np.float32)
        labels = np.array([0 if f == "" else 1 for f in fams])
        splits[split] = (speakers, {"encoder": x, "mfcc": -x, "lfcc": 2 * x, "labels": labels})
    monkeypatch.setattr(ff.Backbone, "load", staticmethod(lambda *a, **k: SimpleNamespace(
        fingerprint="fp", id="bb", encoder=None, encoder_fingerprint="efp", lm=SimpleNamespace(config=UnitLMConfig()))))
    monkeypatch.setattr(ff, "split_features", lambda enc, fp, task, split, ucache, cache, seed=0: splits[split][1])
    monkeypatch.setattr(ff, "split_examples", lambda task, split, cap=0, seed=0: [
        SimpleNamespace(speaker=s) for s in splits[split][0]])
    monkeypatch.setattr(ff, "spoof_family", lambda s: "" if s == "real" else s)
    return splits


def test_baselines_only_scores_every_fold_and_keeps_the_prompts_folds(tmp_path, toy_task):
    out = tmp_path / "fake.json"
    old = _run({f: 0.2 for f in FAMS}, {})
    out.write_text(json.dumps(old))
    ff.main(["--baselines-only", "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["held_out"] == old["held_out"] and r["command"] == old["command"]  # the prompt was not rerun
    for key in ff.BASELINES:
        b = r["baselines"][key]
        assert set(b["held_out"]) == set(FAMS) and b["complete"]
        assert b["held_out"]["neural"]["spoofs"] == 10 and b["held_out"]["neural"]["real"] == 20
        assert b["pooled_eer"] < 0.2  # separable toy data
    # one family again: the others' probe folds are kept
    ff.main(["--baselines-only", "--families", "neural", "--out", str(out)])
    assert set(json.loads(out.read_text())["baselines"]["mfcc_lr"]["held_out"]) == set(FAMS)


def test_a_run_keeps_the_folds_a_parallel_run_wrote_while_it_worked(tmp_path, toy_task, monkeypatch):
    out = tmp_path / "fake.json"
    other = _run({}, {"formant": 0.3})  # what a run holding out "formant" writes while this one works
    score = ff.probe_scores

    def probe_then_other_run_writes(*a, **k):
        if not out.is_file():
            out.write_text(json.dumps(other))
        return score(*a, **k)

    monkeypatch.setattr(ff, "probe_scores", probe_then_other_run_writes)
    ff.main(["--baselines-only", "--families", "neural", "--out", str(out)])
    held = json.loads(out.read_text())["baselines"]["mfcc_lr"]["held_out"]
    assert set(held) == {"formant", "neural"} and held["formant"]["eer"] == 0.3


def test_folds_of_another_set_up_are_not_mixed_in():
    setup = {"variant": "v2_units_mean", "max_train": 1000, "max_val": 300, "epochs": 30, "lr": 0.03,
             "patience": 8, "max_minutes": 7.0, "seed": 0, "unit_dropout": 0.0, "copies": 0}
    older = {k: v for k, v in setup.items() if k not in ("unit_dropout", "copies")}
    assert ff.same_setup({"setup": older}, setup)  # a run from before those options had none of them
    assert not ff.same_setup({"setup": {**setup, "copies": 2}}, setup)
    assert not ff.same_setup({"setup": {**setup, "variant": "v2_units"}}, setup)
    legacy = {"variant": "v2_units_mean", "budget": {"max_train": 1000, "max_val": 300, "epochs": 30, "seed": 0}}
    assert ff.same_setup(legacy, setup) and not ff.same_setup({**legacy, "variant": "v2"}, setup)


def test_perturbed_copies_change_the_channel_only_and_are_seeded_by_the_clip():
    t = np.arange(16000) / 16000
    clip = SimpleNamespace(audio=(16000, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)))
    encoder = lambda w: w.clone()  # noqa: E731 - the "units" are the perturbed samples themselves
    first = ff.perturbed_units(encoder, [clip, clip], 3, noise_dir=None)
    assert len(first) == 2 and len(first[0]) == 3
    assert all(torch.equal(x, y) for x, y in zip(first[0], first[1]))  # same clip, same copies
    base = ff.prepare(clip.audio).wav
    assert all(c.numel() == base.numel() for c in first[0])  # no speed change: the length is kept
    assert not any(torch.allclose(c, base, atol=1e-3) for c in first[0])


def test_card_figures_come_only_from_a_complete_run_on_the_prompts_backbone(tmp_path):
    path = tmp_path / "fake.json"
    r = _run({f: 0.1 for f in FAMS}, {})
    r["held_out"]["vocoded"]["eer"] = 0.3
    path.write_text(json.dumps(r))
    m = results.unseen_family_metrics(path)
    assert m["unseen_family_eer"] == 0.08 and m["unseen_family_eer_worst"] == 0.3
    assert results.unseen_family_metrics(path, "fp") == m
    assert results.unseen_family_metrics(path, "another backbone") == {}
    path.write_text(json.dumps({**r, "complete": False}))
    assert results.unseen_family_metrics(path, "fp") == {}


def test_lfcc_statistics_see_the_high_band_that_mel_features_squeeze():
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    hiss = np.random.default_rng(0).normal(0, 1, 16000)
    high = np.real(np.fft.ifft(np.fft.fft(hiss) * (np.abs(np.fft.fftfreq(16000, 1 / 16000)) > 6000)))
    hissing = tone + 0.05 * high.astype(np.float32)
    clips = [SimpleNamespace(audio=(16000, tone)), SimpleNamespace(audio=(16000, hissing))]
    x = ff.lfcc_features(clips)
    assert x.shape == (2, 120) and np.isfinite(x).all()
    assert np.abs(x[0] - x[1]).max() > 0.5  # a faint 6-8 kHz band changes the linear cepstrum
