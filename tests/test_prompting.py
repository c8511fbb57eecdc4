"""SpeechPrompt v2 mechanics: frozen LM, many tasks in one batch, prompt files, learning a small task."""
import json
from typing import Sequence

import pytest
import torch
import torch.nn as nn

from app.encoder.units import Units
from app.engine import Engine
from app.lm import UnitLM
from app.prompt_files import load_prompt, save_prompt
from app.prompting import PromptConfig, PromptError, TaskInfo, collate, prompted_forward
from app.training import Progress, TrainConfig, TrainResult, finetune, fit, new_prompt, train_prompt

from .conftest import KINDS, tone_clip


def _units(backbone, kinds=KINDS, n=5):
    return [(backbone.encoder(torch.from_numpy(tone_clip(k, seed=i))), c) for c, k in enumerate(kinds) for i in range(n)]


def _prompt(backbone, task="t", labels=("a", "b", "c"), seed=0, **cfg):
    info = TaskInfo(id=task, labels=list(labels))
    return new_prompt(backbone.lm, info, PromptConfig(**cfg), [], seed) if cfg.get("verbalizer", "learnable") == "learnable" \
        else new_prompt(backbone.lm, info, PromptConfig(**cfg), [u for u, _ in _units(backbone)], seed)


def test_trainable_parameter_count(backbone):
    p = _prompt(backbone)
    cfg = backbone.lm.config
    c, L = cfg.n_embd, cfg.n_layer
    V = cfg.vocab_size + cfg.n_duration + cfg.n_pitch  # the verbalizer reads units, duration and pitch outputs
    assert p.num_trainable() == 5 * c + L * 2 * 5 * c + c + V * 3 + 3
    shallow = _prompt(backbone, deep=False)
    assert shallow.num_trainable() == 5 * c + c + V * 3 + 3
    units_only = _prompt(backbone, prosody=False)
    assert units_only.reads == ("units",)
    assert units_only.num_trainable() == p.num_trainable() - (cfg.n_duration + cfg.n_pitch) * 3


def test_prosody_verbalizer_uses_pitch_predictions_and_round_trips(backbone, tmp_path):
    """A prosody-aware verbalizer's class logits move when only the LM's pitch prediction changes, and the
    files record what it reads; a prompt file without "reads" (older format) loads as units-only."""
    p = _prompt(backbone, seed=3)
    cfg = backbone.lm.config
    logits = {"units": torch.randn(1, cfg.vocab_size), "duration": torch.randn(1, cfg.n_duration),
              "pitch": torch.randn(1, cfg.n_pitch)}
    with torch.no_grad():
        p.verbalizer.weight.normal_()
        a = p.classify(logits)
        b = p.classify({**logits, "pitch": logits["pitch"].flip(-1)})
    assert not torch.allclose(a, b)
    with pytest.raises(PromptError, match="duration"):
        p.classify(logits["units"])
    save_prompt(p, tmp_path / "t", "bb", backbone.fingerprint)
    meta = json.loads((tmp_path / "t" / "task.json").read_text())
    assert meta["verbalizer"] == {"kind": "learnable", "reads": ["units", "duration", "pitch"]}
    back = load_prompt(tmp_path / "t", cfg, backbone.fingerprint)
    assert back.reads == p.reads and torch.allclose(back.classify(logits), a)
    old = _prompt(backbone, task="old", prosody=False)
    save_prompt(old, tmp_path / "old", "bb", backbone.fingerprint)
    meta = json.loads((tmp_path / "old" / "task.json").read_text())
    del meta["verbalizer"]["reads"]
    (tmp_path / "old" / "task.json").write_text(json.dumps(meta))
    assert load_prompt(tmp_path / "old", cfg, backbone.fingerprint).reads == ("units",)
    meta["verbalizer"]["reads"] = ["units", "loudness"]
    (tmp_path / "old" / "task.json").write_text(json.dumps(meta))
    with pytest.raises(PromptError, match="loudness"):
        load_prompt(tmp_path / "old", cfg, backbone.fingerprint)


def test_training_learns_small_task_and_leaves_backbone_untouched(backbone):
    before = {k: v.clone() for k, v in backbone.lm.state_dict().items()}
    enc_before = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    data = _units(backbone)
    prompt = _prompt(backbone)
    res = train_prompt(backbone.lm, prompt, data, None, TrainConfig(epochs=60, lr=2e-2, batch_size=8,
                                                                     target_train_acc=1.0))
    assert res.train_acc == 1.0
    for k, v in backbone.lm.state_dict().items():
        assert torch.equal(v, before[k]), f"LM weight {k} changed"
    for k, v in backbone.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k])
    assert all(not p.requires_grad for p in backbone.lm.parameters())


def test_mixed_task_batch_equals_single_task_passes(backbone):
    data = _units(backbone, n=2)
    prompts = [
        _prompt(backbone, "a", ("x", "y"), seed=1),
        _prompt(backbone, "b", ("p", "q", "r"), seed=2, prompt_length=3),
        _prompt(backbone, "c", ("u", "v", "w"), seed=3, verbalizer="freq"),
        _prompt(backbone, "d", ("m", "n", "o"), seed=4, deep=False, prompt_length=7),
        _prompt(backbone, "e", ("g", "h", "i"), seed=5, prompt_length=0, verbalizer="random"),
    ]
    with torch.no_grad():
        rows = [(u, p) for (u, _), p in zip(data, prompts * 2)]
        mixed = prompted_forward(backbone.lm, [u for u, _ in rows], [p for _, p in rows])
        for i, (u, p) in enumerate(rows):
            alone = prompted_forward(backbone.lm, [u], [p])
            assert torch.allclose(mixed.class_logits[i], alone.class_logits[0], atol=1e-5)
            assert torch.allclose(mixed.unit_logits[i], alone.unit_logits[0], atol=1e-4)


def test_engine_predicts_all_tasks_in_one_pass(backbone):
    engine = Engine(backbone)
    for i, t in enumerate(["one", "two", "three"]):
        engine.add(_prompt(backbone, t, seed=i))
    u = backbone.encoder(torch.from_numpy(tone_clip("low")))
    together = engine.predict_units(u, engine.tasks)
    for pred in together:
        alone = engine.predict_units(u, [pred.task])[0]
        assert torch.allclose(pred.probs, alone.probs, atol=1e-5)
        assert abs(float(pred.probs.sum()) - 1) < 1e-5


def test_shortcuts_of_the_lm_pass_change_nothing(backbone):
    """``read_at`` (the last layer at one position) and ``shared`` (one clip's units projected once by the first
    layer) only skip work: the final states equal the plain pass's."""
    lm = backbone.lm
    u = backbone.encoder(torch.from_numpy(tone_clip("chirp")))
    prompts = [_prompt(backbone, t, seed=i) for i, t in enumerate("abcd")]
    with torch.no_grad():
        tokens = lm.embed(u.ids[None], u.duration_buckets()[None], u.pitch_buckets()[None])[0]
        x = torch.stack([torch.cat([p.input_prompt, tokens, p.separator[None]]) for p in prompts])
        prefix = torch.stack([p.prefix() for p in prompts])
        last = torch.full((len(prompts),), x.shape[1] - 1)
        P = prompts[0].config.prompt_length
        plain = lm.run(x, prefix)[:, -1]
        quick = lm.run(x, prefix, read_at=last, shared=slice(P, P + len(u)))
        assert torch.allclose(plain, quick, atol=1e-5)
        # the shortcut is really taken: claiming the (different) prompt vectors are shared changes the answer
        assert not torch.allclose(plain, lm.run(x, prefix, read_at=last, shared=slice(0, P + len(u))), atol=1e-3)


def test_prompts_change_the_output(backbone):
    u = backbone.encoder(torch.from_numpy(tone_clip("high")))
    a, b = _prompt(backbone, "a", seed=1), _prompt(backbone, "b", seed=2)
    with torch.no_grad():
        out = prompted_forward(backbone.lm, [u, u], [a, b])
    assert not torch.allclose(out.unit_logits[0], out.unit_logits[1])


def test_save_load_round_trip(tmp_path, backbone):
    for cfg in (dict(), dict(verbalizer="freq"), dict(deep=False, prompt_length=3)):
        p = _prompt(backbone, "round", **cfg)
        save_prompt(p, tmp_path / "round", backbone.id, backbone.fingerprint)
        q = load_prompt(tmp_path / "round", backbone.lm.config, backbone.fingerprint)
        for k, v in p.state_tensors().items():
            assert torch.equal(v, q.state_tensors()[k])
        assert q.labels == p.labels and q.config == p.config
        meta = json.loads((tmp_path / "round" / "task.json").read_text())
        for key in ("id", "title", "description", "labels", "verbalizer", "prompt_length", "backbone",
                    "trainable_params", "size_bytes", "training_data", "metrics", "date"):
            assert key in meta
        assert meta["trainable_params"] == p.num_trainable()
        assert meta["size_bytes"] == (tmp_path / "round" / "prompt.safetensors").stat().st_size


def test_load_rejects_wrong_backbone_and_bad_files(tmp_path, backbone):
    p = _prompt(backbone, "bad")
    folder = save_prompt(p, tmp_path / "bad", backbone.id, backbone.fingerprint)
    with pytest.raises(PromptError, match="trained for backbone"):
        load_prompt(folder, backbone.lm.config, "0123456789abcdef")
    meta = json.loads((folder / "task.json").read_text())
    meta["labels"] = ["a", "b"]  # 2 labels but the verbalizer has 3 rows
    (folder / "task.json").write_text(json.dumps(meta))
    with pytest.raises(PromptError, match="shape"):
        load_prompt(folder, backbone.lm.config, backbone.fingerprint)
    (folder / "prompt.safetensors").write_bytes(b"not a safetensors file")
    meta["labels"] = ["a", "b", "c"]
    (folder / "task.json").write_text(json.dumps(meta))
    with pytest.raises(PromptError, match="safetensors"):
        load_prompt(folder, backbone.lm.config, backbone.fingerprint)
    (folder / "task.json").write_text("{not json")
    with pytest.raises(PromptError, match="JSON"):
        load_prompt(folder, backbone.lm.config, backbone.fingerprint)


@pytest.mark.parametrize("task_id", ["../etc", "a/b", "", "UPPER", "x" * 65, "..", "a\\b"])
def test_task_ids_cannot_escape(task_id, backbone):
    with pytest.raises(PromptError):
        TaskInfo(id=task_id, labels=["a", "b"])
    with pytest.raises(PromptError):
        Engine(backbone).get(task_id)


def test_engine_skips_malformed_prompts(tmp_path, backbone):
    good = _prompt(backbone, "good")
    save_prompt(good, tmp_path / "good", backbone.id, backbone.fingerprint)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "task.json").write_text("[]")
    engine = Engine(backbone)
    engine.load_prompts(tmp_path)
    assert engine.tasks == ["good"] and "broken" in engine.skipped


# A baseline the tests keep: a linear probe on the frozen LM's mean-pooled hidden states (no prompt).
class LinearProbe(nn.Module):
    """Linear classifier on the frozen LM's mean-pooled final hidden states (no prompt)."""

    def __init__(self, lm: UnitLM, n_classes: int) -> None:
        super().__init__()
        self.lm = lm
        self.head = nn.Linear(lm.config.n_embd, n_classes)

    def forward(self, units: Sequence[Units]) -> torch.Tensor:
        batch = collate(units, self.lm.config.block_size)
        with torch.no_grad():
            h = self.lm.run(self.lm.embed(batch.ids, batch.dur, batch.pitch))
        mask = (torch.arange(h.shape[1])[None, :] < torch.tensor(batch.lengths)[:, None]).float()
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return self.head(pooled)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.head.parameters())


def linear_probe(lm: UnitLM, n_classes: int, train, val=None, cfg: TrainConfig | None = None,
                 progress: Progress | None = None) -> tuple[LinearProbe, TrainResult]:
    cfg = cfg or TrainConfig()
    lm.eval()
    lm.requires_grad_(False)
    probe = LinearProbe(lm, n_classes)
    groups = [{"params": list(probe.head.parameters()), "lr": cfg.lr}]
    return probe, fit(probe, probe, groups, train, val, n_classes, cfg, progress)


def test_baselines_finetune_and_probe_do_not_touch_backbone(backbone):
    before = {k: v.clone() for k, v in backbone.lm.state_dict().items()}
    data = _units(backbone, n=3)
    model, res = finetune(backbone.lm, _prompt(backbone), data, None, TrainConfig(epochs=3, batch_size=8))
    assert model.num_trainable() > backbone.lm.num_params()
    probe, res2 = linear_probe(backbone.lm, 3, data, None, TrainConfig(epochs=3, batch_size=8))
    assert probe.num_trainable() == backbone.lm.config.n_embd * 3 + 3
    for k, v in backbone.lm.state_dict().items():
        assert torch.equal(v, before[k])


def test_backbone_save_load_keeps_fingerprint(tmp_path, backbone):
    from app.backbone import Backbone

    backbone.save(tmp_path / "bb")
    again = Backbone.load(tmp_path / "bb")
    assert again.fingerprint == backbone.fingerprint
    assert again.describe()["bytes_on_disk"] > 0
