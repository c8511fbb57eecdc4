"""The one training flow (issue #14): augmentation, the mean readout, class-mean verbalizer, SPoT, the k-fold
estimate, the background class, and that the Train view, the CLI and the prompt recipe all call ``train_task``."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from app import training
from app.encoder import augment
from app.prompt_files import load_prompt, save_prompt
from app.prompting import PromptConfig, TaskInfo, prompted_forward, standardised
from app.training import FewShotSettings, Take, few_shot, make_take, new_prompt, train_task

from .conftest import KINDS, tone_clip

SR = 16_000
FAST = FewShotSettings(copies=2, steps=12, batch_size=8, cv_folds=3, cv_steps=4)


def _wav(seed: int = 0, kind: str = "chirp") -> torch.Tensor:
    return torch.from_numpy(tone_clip(kind, seed=seed)).float()


# ------------------------------------------------------------------------------------------------ augmentation
def test_speed_and_pitch_change_what_they_should():
    x = _wav()
    fast = augment.speed(x, 10, 9)  # 10/9 as fast: 9/10 of the samples
    assert abs(fast.numel() - x.numel() * 9 / 10) <= 2
    shifted = augment.pitch_shift(x, 9, 8)  # higher, same length
    assert shifted.numel() == x.numel() and not torch.allclose(shifted, x)
    # the dominant frequency of a steady tone goes up by about 9/8
    t = torch.arange(SR) / SR
    tone = torch.sin(2 * torch.pi * 200 * t)
    peak = lambda w: int(torch.fft.rfft(w).abs().argmax()) * SR / w.numel()  # noqa: E731 (Hz)
    assert abs(peak(augment.pitch_shift(tone, 9, 8)) - 225) <= 6
    assert abs(peak(augment.speed(tone, 9, 10)) - 180) <= 4


def test_room_noise_and_gain():
    rng = np.random.default_rng(0)
    x = _wav()
    rir = augment.room_impulse(rng, rt60=0.3)
    assert rir[0] == 1.0 and rir.numel() == int(0.3 * SR)
    wet = augment.reverberate(x, rir)
    assert wet.numel() == x.numel() and torch.isclose(wet.pow(2).mean(), x.pow(2).mean(), rtol=1e-3)
    noise = augment.coloured_noise(x.numel(), rng)
    mixed = augment.mix_at_snr(x, noise, 10.0)
    n = mixed - x
    assert 10 * torch.log10(x.pow(2).mean() / n.pow(2).mean()) == pytest.approx(10.0, abs=1e-3)
    out = augment.augment(x, "gain", rng)
    assert torch.isclose(out.pow(2).mean().sqrt(), torch.tensor(0.1), rtol=0.05)  # level-normalised at the end
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.augment(x, "echo", rng)


def test_crop_cuts_quiet_edges_to_the_loud_core():
    """A tightly cut take (FSDD's): a faint fricative-like noise before and after a loud vowel falls away, within
    the drawn margin; a clip under the minimum length comes back whole, and the plans name the step."""
    rng = np.random.default_rng(0)
    t = torch.arange(int(0.3 * SR)) / SR
    vowel = 0.5 * torch.sin(2 * torch.pi * 150 * t)
    hiss = 0.005 * torch.from_numpy(rng.standard_normal(int(0.2 * SR)).astype(np.float32))  # -40 dB
    x = torch.cat([hiss, vowel, hiss])
    for _ in range(5):
        y = augment.crop_edges(x, rng)
        assert int(0.3 * SR) <= y.numel() <= int(0.3 * SR) + 2 * int(0.03 * SR) + 2 * (SR // 100)
    short = x[: int(0.05 * SR)]
    assert torch.equal(augment.crop_edges(short, rng), short)
    quiet_start = torch.cat([hiss, vowel[: int(0.05 * SR)]])  # loud part shorter than 0.1 s: widened to 0.1 s
    assert augment.crop_edges(quiet_start, rng).numel() == int(0.1 * SR)
    assert augment.augment(x, "crop", rng).numel() < x.numel()
    broken = x.clone()
    broken[100] = float("nan")  # no level to cut at: left whole, no IndexError
    assert augment.crop_edges(broken, rng).numel() == x.numel()
    with pytest.raises(ValueError, match="mono"):
        augment.crop_edges(x[None], rng)
    assert set(augment.PLANS) == {"copies", "channel", "cropped"}
    assert sum("crop" in step for step in augment.CROPPED_PLAN) == 2


def test_background_reads_recordings_or_falls_back(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    assert augment.background(8000, rng, tmp_path / "missing").numel() == 8000  # generated noise
    sf.write(tmp_path / "hum.wav", (0.1 * np.sin(np.arange(32000) / 10)).astype(np.float32), SR)
    clip = augment.background(8000, rng, tmp_path)
    assert clip.numel() == 8000 and float(clip.abs().max()) <= 0.11


def test_copies_are_deterministic_and_each_encoded(backbone):
    x = _wav(3)
    a = augment.copies(x, 5, np.random.default_rng(1))
    b = augment.copies(x, 5, np.random.default_rng(1))
    assert len(a) == 5 and all(torch.equal(u, v) for u, v in zip(a, b))
    take = make_take(backbone.encoder, x, 3, seed=1)
    assert len(take.copies) == 3 and all(len(c) > 0 for c in take.copies)
    assert training.clip_seed(x) == training.clip_seed(x.clone())


def test_unit_dropout_keeps_a_sequence(backbone):
    u = backbone.encoder(_wav(2))
    out = training.drop_units(0.5)(u, np.random.default_rng(0))
    assert 0 < len(out) <= len(u) and out.ids.shape == out.durations.shape == out.pitch.shape


# ------------------------------------------------------------------------------------------------ the readout
def _units(backbone, n=3):
    return [backbone.encoder(torch.from_numpy(tone_clip(k, seed=i))) for k in KINDS for i in range(n)]


def test_mean_readout_is_the_mean_next_token_distribution(backbone):
    lm = backbone.lm
    units = _units(backbone, 1)
    info = TaskInfo(id="t", labels=list(KINDS))
    prompt = new_prompt(lm, info, PromptConfig(read_at="mean"), units)
    out = prompted_forward(lm, units, [prompt] * len(units))
    for b, u in enumerate(units):  # by hand: the sequence alone, every position's output from the first unit on
        from app.prompting import collate
        batch = collate([u], 10_000)
        x = torch.cat([prompt.input_prompt, lm.embed(batch.ids, batch.dur, batch.pitch)[0], prompt.separator[None]])
        h = lm.run(x[None], prompt.prefix()[None])
        logits = lm.next_token_logits(h[0, prompt.config.prompt_length:])
        feats = torch.cat([standardised(torch.log(torch.softmax(logits[s], -1).mean(0)))[None][0]
                           for s in prompt.reads])
        assert torch.allclose(prompt.verbalizer(feats), out.class_logits[b], atol=1e-4)
    # what the Try view plots as "what the verbalizer reads" is that mean distribution
    assert torch.allclose(torch.softmax(out.read_logits["units"], -1), out.mean_logp["units"].exp(), atol=1e-5)
    # batched with a separator-reading prompt, each row reads as it does alone
    other = new_prompt(lm, TaskInfo(id="o", labels=["a", "b"]), PromptConfig(), units, seed=1)
    mixed = prompted_forward(lm, [units[0], units[0]], [prompt, other])
    assert torch.allclose(mixed.class_logits[0], out.class_logits[0], atol=1e-4)
    alone = prompted_forward(lm, [units[0]], [other])
    assert torch.allclose(mixed.class_logits[1], alone.class_logits[0], atol=1e-4)


def test_read_at_is_saved_and_loaded(backbone, tmp_path):
    lm = backbone.lm
    prompt = new_prompt(lm, TaskInfo(id="m", labels=["a", "b"]), PromptConfig(read_at="mean"), [])
    save_prompt(prompt, tmp_path / "m", backbone.id, backbone.fingerprint)
    assert json.loads((tmp_path / "m" / "task.json").read_text())["verbalizer"]["read_at"] == "mean"
    assert load_prompt(tmp_path / "m", lm.config, backbone.fingerprint).config.read_at == "mean"
    old = new_prompt(lm, TaskInfo(id="s", labels=["a", "b"]), PromptConfig(), [])
    save_prompt(old, tmp_path / "s", backbone.id, backbone.fingerprint)
    assert "read_at" not in json.loads((tmp_path / "s" / "task.json").read_text())["verbalizer"]
    assert load_prompt(tmp_path / "s", lm.config, backbone.fingerprint).config.read_at == "separator"
    with pytest.raises(ValueError, match="read_at"):
        PromptConfig(read_at="everywhere")


# ------------------------------------------------------------------------------------------------ the flow
def _takes(backbone, per_class=4, copies=1):
    return {k: [make_take(backbone.encoder, _wav(i, k), copies, seed=i) for i in range(per_class)] for k in KINDS}


def test_class_mean_start_classifies_before_any_step(backbone):
    lm = backbone.lm
    rows = [(u, c) for c, k in enumerate(KINDS) for u in _units(backbone, 3)[3 * c: 3 * c + 3]]
    prompt = new_prompt(lm, TaskInfo(id="c", labels=list(KINDS)), PromptConfig(read_at="mean"), [])
    training.init_verbalizer_from_means(lm, prompt, rows)
    acc, _ = training.evaluate(training.prompt_logits_fn(lm, prompt), rows)
    assert acc >= 2 / 3  # a nearest-class-mean classifier on what the verbalizer reads, before training


@pytest.mark.parametrize("c", [training.PROBE_C, 1.0])
def test_linear_probe_start_is_the_balanced_l2_logistic_regression_on_what_the_verbalizer_reads(backbone, c):
    sklearn = pytest.importorskip("sklearn.linear_model")
    lm = backbone.lm
    units = _units(backbone, 4)
    rows = [(units[4 * k + i], k) for k in range(len(KINDS)) for i in range(3 + k % 2)]  # unbalanced: 3, 4, 3
    prompt = new_prompt(lm, TaskInfo(id="c", labels=list(KINDS)), PromptConfig(read_at="mean"), [])
    training.init_verbalizer_from_probe(lm, prompt, rows, c=c)
    feats = training.verbalizer_features(lm, prompt, [u for u, _ in rows]).double().numpy()
    y = np.array([label for _, label in rows])
    z = (feats - feats.mean(0)) / np.maximum(feats.std(0, ddof=1), 1e-6)
    ref = sklearn.LogisticRegression(C=c, class_weight="balanced", max_iter=5000, tol=1e-10).fit(z, y)
    ours = training.predict_proba(training.prompt_logits_fn(lm, prompt), [u for u, _ in rows]).double().numpy()
    assert np.abs(ours - ref.predict_proba(z)).max() < 2e-3
    if c >= 1.0:  # weakly regularised: it separates its own rows, before any prompt tuning
        assert training.evaluate(training.prompt_logits_fn(lm, prompt), rows)[0] == 1.0


def test_few_shot_uses_every_take_and_its_copies(backbone):
    shot = few_shot(backbone.lm, "t", "T", _takes(backbone, 3, copies=2), PromptConfig(read_at="mean"),
                    settings=FAST)
    assert shot.val == [] and shot.rows == 9 * 3
    res = shot.run(backbone.lm)
    m = shot.info.metrics
    assert m["train_clips"] == 9 and m["train_rows"] == 27 and m["val_accuracy"] is None
    assert res.stopped == "epochs" and m["epochs_run"] == shot.train_config().epochs
    assert 0 <= m["cv_accuracy"] <= 1 and shot.estimate["folds"] == 3 and shot.estimate["takes"] == 9
    assert set(shot.estimate["per_class"]) == set(KINDS)
    assert not any(p.requires_grad for p in shot.prompt.parameters())


def test_copies_are_swapped_in_at_random_and_other_sequences_left_alone():
    a, b, c, other = object(), object(), object(), object()
    fn = training.swap_in_copies({id(a): [b, c]})
    rng = np.random.default_rng(0)
    seen = {id(fn(a, rng)) for _ in range(60)}
    assert seen == {id(a), id(b), id(c)}
    assert fn(other, rng) is other


def test_sampled_copies_train_one_version_of_each_take_per_draw(backbone):
    takes = _takes(backbone, 3, copies=2)
    data = [(t, c) for c, k in enumerate(KINDS) for t in takes[k]]
    seen: list[int] = []

    def spy(u, rng):  # an augment already set runs after the swap, on whichever version was drawn
        seen.append(id(u))
        return u
    cfg = training.TrainConfig(epochs=4, lr=1e-2, batch_size=9, augment=spy)
    info = TaskInfo(id="t", labels=list(KINDS))
    train_task(backbone.lm, info, PromptConfig(read_at="mean"), data, None, cfg, sample_copies=True)
    assert len(seen) == 4 * 9  # one row per take and epoch, not per copy
    originals = {id(t.units) for t, _ in data}
    copies = {id(c) for t, _ in data for c in t.copies}
    assert set(seen) & originals and set(seen) & copies and set(seen) <= originals | copies
    assert info.metrics["train_clips"] == 9 and info.metrics["train_rows"] == 27


def test_spot_starts_from_the_source_prompt(backbone):
    lm = backbone.lm
    src = new_prompt(lm, TaskInfo(id="src", labels=["a", "b"]), PromptConfig(read_at="mean"), [], seed=5)
    takes = _takes(backbone, 3, copies=0)
    data = [(t, c) for c, k in enumerate(KINDS) for t in takes[k]]
    cfg = training.TrainConfig(epochs=1, lr=0.0, batch_size=9)  # no learning: the start is what stays
    prompt, _ = train_task(lm, TaskInfo(id="dst", labels=list(KINDS)), PromptConfig(read_at="mean"), data, None, cfg,
                           source=src)
    assert torch.equal(prompt.deep_prompt, src.deep_prompt) and torch.equal(prompt.separator, src.separator)
    with pytest.raises(ValueError, match="another shape"):
        training.transfer_prompt(new_prompt(lm, TaskInfo(id="x", labels=["a", "b"]), PromptConfig(prompt_length=3),
                                            []), src)


def test_cross_validation_needs_two_takes_per_class(backbone):
    takes = _takes(backbone, 2, copies=0)
    data = [(t, c) for c, k in enumerate(KINDS) for t in takes[k]]
    info = TaskInfo(id="cv", labels=list(KINDS))
    est = training.cross_validate(backbone.lm, info, PromptConfig(read_at="mean"), data, FAST)
    assert est["folds"] == 2 and est["takes"] == 6
    one = [(t, c) for c, k in enumerate(KINDS) for t in takes[k][:1]]
    assert training.cross_validate(backbone.lm, info, PromptConfig(read_at="mean"), one, FAST) is None


# --------------------------------------------------------------------------------------- one flow, three callers
class Spy:
    def __init__(self, monkeypatch, *modules):
        self.calls = []
        real = training.train_task

        def spy(*a, **kw):
            self.calls.append(a[1].id)
            return real(*a, **kw)
        for m in modules:
            monkeypatch.setattr(m, "train_task", spy)


def test_the_train_view_calls_train_task(monkeypatch):
    from app.ui import train_data, train_run
    from app.ui.session import Session

    from .ui_engine import ui_engine

    spy = Spy(monkeypatch, training)
    monkeypatch.setattr(training, "FEW_SHOT_SETTINGS", FAST)
    monkeypatch.setattr(train_data, "FEW_SHOT_SETTINGS", FAST)
    engine = ui_engine()
    s = Session()
    train_data.set_classes(s, "low, high")
    for c in ("low", "high"):
        s.examples[c] = [train_data.make_take(engine.backbone.encoder, _wav(i, c), 1, i) for i in range(3)]
    updates = list(train_run.train(engine, s, "Spy", 5, "learnable", True, "spy"))
    assert spy.calls[0] == "spy" and len(spy.calls) == 1 + 3  # the run, then the 3 folds of the estimate
    assert "Estimated accuracy on new takes" in updates[-1].status and "3-fold cross-validation" in updates[-1].status
    assert s.prompts["spy"].config.read_at == "mean"


def test_the_cli_calls_train_task(monkeypatch, backbone_dir, labelled_dir, tmp_path, capsys):
    from app import cli

    spy = Spy(monkeypatch, training)
    assert cli.main(["train", "--task", "clitones", "--data", str(labelled_dir), "--out", str(tmp_path / "p"),
                     "--backbone", str(backbone_dir), "--steps", "6", "--copies", "1", "--json"]) == 0
    assert spy.calls == ["clitones"]
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["train_rows"] == 2 * out["train_clips"] and out["val_accuracy"] is None
    assert json.loads((tmp_path / "p" / "task.json").read_text())["verbalizer"]["read_at"] == "mean"


def test_the_prompt_recipe_calls_train_task(monkeypatch, backbone, tmp_path):
    from recipes.build import train_prompts
    from recipes.common.tasks import Example

    spy = Spy(monkeypatch, train_prompts)
    units = _units(backbone, 2)
    labels = [c for c in range(3) for _ in range(2)]
    stats = {"clips": 6, "speakers": 2}
    monkeypatch.setattr(train_prompts, "encode_split", lambda *a, **k: (units, labels, stats))

    class Task:
        id, title, description, metric = "rt", "Recipe tones", "", "accuracy"
        labels = list(KINDS)
        splits = ("train", "val", "test")

        def examples(self, split):  # who speaks each test clip: the recipe measures the spread over speakers
            return [Example("", KINDS[y], f"spk{i % 2}", "real") for i, y in enumerate(labels)]

    args = argparse.Namespace(max_train=0, max_val=0, seed=0, cache=tmp_path, epochs=2, lr=1e-2, batch_size=8,
                              patience=2, max_minutes=1.0, candidates=tmp_path / "cand")
    out = train_prompts.run_task(backbone, Task(), ["v2"], args)
    assert spy.calls == ["rt"] and out["v2"]["epochs_run"] >= 1
    assert out["v2"]["test"]["spread"]["speakers"] == 2


# ------------------------------------------------------------------------------------------------ background class
def test_background_class_in_one_click(monkeypatch):
    import gradio as gr

    from app.ui import train_data
    from app.ui.session import Session

    from .ui_engine import ui_engine

    monkeypatch.setattr(train_data, "FEW_SHOT_SETTINGS", FAST)
    engine = ui_engine()
    s = Session()
    with pytest.raises(gr.Error, match="Set your classes first"):
        train_data.add_background(engine, s)
    train_data.set_classes(s, "low, high")
    s, status, names = train_data.add_background(engine, s)
    assert names == ["low", "high", "background"] and s.classes[-1] == "background"
    takes = s.examples["background"]
    assert len(takes) == train_data.BACKGROUND_TAKES and all(len(t.copies) == FAST.copies for t in takes)
    assert "| background | 5 | ✓ ready |" in status
    with pytest.raises(gr.Error, match="already a 'background' class"):
        train_data.add_background(engine, s)


def test_spot_runs_of_an_older_commands_prompt_are_measured_again():
    """A SPoT run starts from the shipped commands prompt: once that prompt is retrained, the runs (and the bundled
    set) that started from the old one leave the results, so no report mixes the two."""
    from recipes.experiments.fewshot import drop_stale_spot

    spot, plain = {"transfer": "commands"}, {"transfer": None}
    results = {"spot_source": {"sha256": "old"}, "bundled": [{"method": "prompt: flow"}], "runs": [
        {"method": "a", "settings": spot},  # recorded before runs carried their source: the file's
        {"method": "b", "settings": spot, "spot_sha256": "new"},
        {"method": "c", "settings": plain},
        {"method": "MFCC + LR"}]}
    assert drop_stale_spot(results, "new") == 2
    assert [r["method"] for r in results["runs"]] == ["b", "c", "MFCC + LR"] and "bundled" not in results
    results["bundled"], results["bundled_spot_sha256"] = [], "new"
    assert drop_stale_spot(results, "new") == 0 and "bundled" in results


def test_the_report_sets_each_backbone_beside_the_one_before(tmp_path, monkeypatch):
    from recipes.experiments import fewshot

    monkeypatch.setattr(fewshot, "DOCS", tmp_path)

    def runs(acc):
        return {"runs": [{"set": "commands", "k": 5, "draw": d, "method": "prompt: flow", "accuracy": acc,
                          "test_clips": 200} for d in range(2)]}
    v1, v2 = fewshot.EARLIER["v1"][0], fewshot.EARLIER["v2"][0]
    assert fewshot.previous_backbone("new") is None  # no earlier runs kept
    (tmp_path / "fewshot_v1.json").write_text(json.dumps(runs(0.8)))
    (tmp_path / "fewshot_v2.json").write_text(json.dumps(runs(0.9)))
    assert [fewshot.previous_backbone(fp) for fp in (v1, v2, "new")] == [None, "v1", "v2"]
    now = fewshot.summarise(runs(0.95)["runs"])
    lines = fewshot.versus_previous(now, "new")
    assert "### Against backbone v2" in lines
    assert "| commands | prompt: flow without SPoT | 0.900 -> 0.950 (+5.0) |" in lines
    assert "0.800 -> 0.900 (+10.0)" in "\n".join(fewshot.versus_previous(fewshot.summarise(runs(0.9)["runs"]), v2))
    assert fewshot.versus_previous(now, v1) == []
