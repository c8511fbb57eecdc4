"""Voice streams (backbone v2, issue #13): the quantizer, the encoder's codes, the LM's embeddings and heads, the
bundle round trip, prompts that read the streams, and the recipe's batches and loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app.backbone import Backbone, BackboneError
from app.encoder.units import VoiceQuantizer, window_bounds, window_stats
from app.lm import UnitLM, UnitLMConfig
from app.prompt_files import load_prompt, save_prompt
from app.prompting import PromptConfig, TaskInfo, TaskPrompt, collate, prompted_forward
from app.training import TrainConfig, train_task
from tests.conftest import KINDS, tiny_backbone, tiny_voice_backbone, tone_clip


@pytest.fixture(scope="module")
def vbb() -> Backbone:
    return tiny_voice_backbone(seed=0)


def _units(bb: Backbone, kind: str, seed: int = 0, seconds: float = 1.5):
    return bb.encoder(torch.from_numpy(tone_clip(kind, seed=seed, seconds=seconds)))


def test_window_stats_match_a_hand_computation():
    frames = torch.arange(24, dtype=torch.float).reshape(12, 2)
    stats, which = window_stats(frames, 5)  # 12 frames at ~5 per window -> 2 windows of 6
    assert window_bounds(12, 5).tolist() == [0, 6, 12]
    assert which.tolist() == [0] * 6 + [1] * 6
    assert torch.allclose(stats[0, :2], frames[:6].mean(0))
    assert torch.allclose(stats[1, 2:], frames[6:].std(0, unbiased=False))
    assert window_stats(frames[:2], 50)[0].shape == (1, 4)  # a short clip is one window


def test_quantizer_buckets_have_equal_mass_on_the_data_it_was_fit_on():
    g = torch.Generator().manual_seed(0)
    stats = torch.randn(4000, 6, generator=g) @ torch.randn(6, 6, generator=g)
    vq = VoiceQuantizer.fit(stats, layer=1, window=50, n_streams=3, n_buckets=8)
    z = vq.whiten(stats)
    codes = (z[:, :, None] > vq.edges[None]).sum(-1)
    for s in range(3):
        counts = torch.bincount(codes[:, s], minlength=8)
        assert counts.min() >= 450 and counts.max() <= 550, counts
    # whitened: unit variance, uncorrelated directions
    assert torch.allclose(torch.cov(z.T), torch.eye(3), atol=0.05)
    assert vq.config() == {"layer": 1, "window": 50, "n_streams": 3, "n_buckets": 8, "dim": 3}


def test_recipe_fits_the_voice_quantizer_on_real_windows_when_asked(tmp_path):
    """``--voice-fit real``: only the windows the sample marks as real recordings fit the quantizer."""
    from argparse import Namespace

    from safetensors.torch import save_file

    from recipes.build.backbone import stage_kmeans

    g = torch.Generator().manual_seed(0)
    real = torch.randn(600, 4, generator=g) * torch.tensor([3.0, 1.0, 1.0, 1.0])
    synth = torch.randn(600, 4, generator=g) * torch.tensor([1.0, 1.0, 1.0, 5.0]) + 2.0
    save_file({"centroids": torch.zeros(3, 4), "voice_stats": torch.cat([real, synth]),
               "voice_real": torch.cat([torch.ones(600), torch.zeros(600)]).to(torch.uint8)},
              str(tmp_path / "centroids.safetensors"))
    args = Namespace(work=tmp_path, voice_streams=2, voice_layer=1, voice_window=50, voice_buckets=8,
                     voice_fit="real")
    _, vq = stage_kmeans(args, [], None)
    want = VoiceQuantizer.fit(real, 1, 50, 2, 8)
    assert torch.allclose(vq.mean, want.mean) and torch.allclose(vq.edges, want.edges)
    _, whole = stage_kmeans(Namespace(**{**vars(args), "voice_fit": "sample"}), [], None)
    assert not torch.allclose(whole.mean, want.mean)  # the synthetic windows moved the sample's fit
    save_file({"centroids": torch.zeros(3, 4), "voice_stats": synth, "voice_real": torch.zeros(600, dtype=torch.uint8)},
              str(tmp_path / "centroids.safetensors"))
    with pytest.raises(SystemExit, match="too few"):  # a sample without real recordings cannot fit it
        stage_kmeans(args, [], None)
    save_file({"centroids": torch.zeros(3, 4), "voice_stats": real}, str(tmp_path / "centroids.safetensors"))
    with pytest.raises(SystemExit, match="real windows"):
        stage_kmeans(args, [], None)


def test_encoder_gives_each_unit_the_codes_of_its_window(vbb):
    u = _units(vbb, "chirp", seconds=2.0)
    assert u.voice is not None and u.voice.shape == (len(u), 4)
    assert int(u.voice.min()) >= 0 and int(u.voice.max()) < 8
    states = vbb.encoder.dense.hidden_states(torch.from_numpy(tone_clip("chirp", seconds=2.0)))
    per_frame = vbb.encoder.voice(states[1][: int(u.durations.sum())])
    assert torch.equal(u.voice, per_frame[u.starts])
    # the content units are what the encoder without voice streams gives
    plain = vbb.encoder.quantize(vbb.encoder.features(torch.from_numpy(tone_clip("chirp", seconds=2.0))))
    assert torch.equal(torch.unique_consecutive(plain), u.ids)
    assert len(u.to_dict()["voice"]) == len(u)


def test_voice_streams_from_their_own_encoder(tmp_path):
    """A bundle whose voice streams read a second encoder (content from one Whisper, voice from another): the codes
    come from that encoder's block, the content units from the first, and both survive a save and load."""
    from safetensors.torch import load_file, save_file

    bb = tiny_voice_backbone(seed=0, own_voice_encoder=True)
    wav = torch.from_numpy(tone_clip("chirp", seconds=2.0))
    u = bb.encoder(wav)
    low = bb.encoder.voice_dense.hidden_states(wav)[1]
    assert low.shape[1] == 24 and bb.encoder.dense.dim == 32
    assert torch.equal(u.voice, bb.encoder.voice(low[: int(u.durations.sum())])[u.starts])
    assert torch.equal(torch.unique_consecutive(bb.encoder.quantize(bb.encoder.features(wav))), u.ids)
    assert not torch.equal(u.voice, _units(tiny_voice_backbone(seed=0), "chirp", seconds=2.0).voice)
    folder = bb.save(tmp_path / "bb", dense_dtype=torch.float16)
    enc = load_file(str(folder / "encoder.safetensors"))
    assert any(k.startswith("voice_dense.") for k in enc)
    again = Backbone.load(folder)
    assert again.fingerprint == bb.fingerprint and again.encoder_fingerprint == bb.encoder_fingerprint
    assert torch.equal(again.encoder(wav).voice, bb.encoder(wav).voice)
    assert again.describe()["encoder_params"] > tiny_voice_backbone(seed=0).describe()["encoder_params"]
    # the voice encoder's weights are part of the bundle: without them it does not load
    save_file({k: v for k, v in enc.items() if not k.startswith("voice_dense.")}, str(folder / "encoder.safetensors"))
    with pytest.raises(BackboneError, match="weights"):
        Backbone.load(folder)


def test_lm_voice_outputs_are_per_stream_distributions_and_change_with_the_codes():
    cfg = UnitLMConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=16, block_size=32, n_voice=3, voice_buckets=4)
    torch.manual_seed(0)
    lm = UnitLM(cfg).eval()
    ids = torch.randint(0, 10, (2, 7))
    v1 = torch.randint(0, 4, (2, 7, 3))
    out = lm(ids, voice=v1)
    assert out["voice"].shape == (2, 7, 12)
    assert torch.allclose(out["voice"].unflatten(-1, (3, 4)).exp().sum(-1), torch.ones(2, 7, 3), atol=1e-5)
    v2 = (v1 + 1) % 4
    assert not torch.allclose(lm.embed(ids, voice=v1), lm.embed(ids, voice=v2))
    # a config without voice streams writes no voice fields: v1 backbones keep their fingerprints
    assert "n_voice" not in UnitLMConfig().to_dict() and cfg.to_dict()["n_voice"] == 3


def test_bundle_round_trip_keeps_codes_and_fingerprint(vbb, tmp_path):
    vbb.save(tmp_path / "bb")
    again = Backbone.load(tmp_path / "bb")
    assert again.fingerprint == vbb.fingerprint
    u1, u2 = _units(vbb, "low"), _units(again, "low")
    assert torch.equal(u1.ids, u2.ids) and torch.equal(u1.voice, u2.voice)
    assert again.describe()["voice_streams"] == {"streams": 4, "buckets": 8}


def test_bundle_with_mismatched_voice_parts_is_refused(vbb, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = vbb.save(tmp_path / "bb")
    enc = load_file(str(folder / "encoder.safetensors"))
    save_file({k: v for k, v in enc.items() if k != "voice.edges"}, str(folder / "encoder.safetensors"))
    with pytest.raises(BackboneError, match="voice"):
        Backbone.load(folder)
    cfg = dict(vbb.config)
    cfg["lm"] = {**cfg["lm"], "n_voice": 2}
    with pytest.raises(BackboneError, match="voice"):
        Backbone.build(cfg, vbb.encoder.centroids, voice=vbb.encoder.voice)
    with pytest.raises(BackboneError, match="voice"):
        Backbone.build(vbb.config, vbb.encoder.centroids, voice=None)


def test_prompts_read_the_voice_stream_unless_told_not_to(vbb, tmp_path):
    info = TaskInfo(id="toy", labels=list(KINDS))
    with_voice = TaskPrompt(vbb.lm.config, info, PromptConfig())
    without = TaskPrompt(vbb.lm.config, info, PromptConfig(voice=False))
    assert with_voice.reads == ("units", "duration", "pitch", "voice")
    assert without.reads == ("units", "duration", "pitch")
    assert with_voice.verbalizer.in_features == without.verbalizer.in_features + 32
    # on a backbone without voice streams the same config reads what that LM has
    assert TaskPrompt(tiny_backbone().lm.config, info, PromptConfig()).reads == ("units", "duration", "pitch")
    with_voice.init_from_lm(vbb.lm)
    save_prompt(with_voice, tmp_path / "toy", vbb.id, vbb.fingerprint)
    loaded = load_prompt(tmp_path / "toy", vbb.lm.config, vbb.fingerprint)
    assert loaded.reads == with_voice.reads
    u = _units(vbb, "high")
    a = prompted_forward(vbb.lm, [u], [with_voice]).class_logits[0]
    b = prompted_forward(vbb.lm, [u], [loaded]).class_logits[0]
    assert torch.allclose(a, b, atol=1e-5)


def test_voice_codes_reach_the_prompted_lm_and_batches_agree_with_single_rows(vbb):
    info = TaskInfo(id="toy", labels=list(KINDS))
    prompts = []
    for read_at in ("separator", "mean"):
        p = TaskPrompt(vbb.lm.config, info, PromptConfig(read_at=read_at))
        p.init_from_lm(vbb.lm, torch.Generator().manual_seed(1))
        prompts.append(p)
    u = _units(vbb, "chirp")
    other = type(u)(**{**u.__dict__, "voice": (u.voice + 3) % 8})
    single = prompted_forward(vbb.lm, [u], [prompts[0]]).class_logits[0]
    changed = prompted_forward(vbb.lm, [other], [prompts[0]]).class_logits[0]
    assert not torch.allclose(single, changed)
    both = prompted_forward(vbb.lm, [u, u], prompts).class_logits
    assert torch.allclose(both[0], single, atol=1e-5)
    assert torch.allclose(both[1], prompted_forward(vbb.lm, [u], [prompts[1]]).class_logits[0], atol=1e-5)
    batch = collate([u, _units(vbb, "low", seconds=0.6)], 500)
    assert batch.voice.shape == (2, len(u), 4)


def test_a_prompt_learns_on_a_voice_backbone(vbb):
    train = [(_units(vbb, k, seed=s), i) for i, k in enumerate(KINDS) for s in range(6)]
    test = [(_units(vbb, k, seed=100 + s), i) for i, k in enumerate(KINDS) for s in range(4)]
    info = TaskInfo(id="toy", labels=list(KINDS))
    prompt, _ = train_task(vbb.lm, info, PromptConfig(read_at="mean"), train,
                           cfg=TrainConfig(epochs=30, batch_size=6, lr=3e-2))
    assert "voice" in prompt.reads
    out = prompted_forward(vbb.lm, [u for u, _ in test], [prompt] * len(test))
    pred = [int(c.argmax()) for c in out.class_logits]
    assert np.mean([p == y for p, (_, y) in zip(pred, test)]) >= 0.75  # chance: 0.33


def test_recipe_batches_and_loss_carry_the_voice_streams():
    from recipes.build.backbone import lm_loss, make_batch, utterances

    data = {"ids": torch.randint(0, 10, (40,)), "dur": torch.randint(0, 8, (40,)), "pitch": torch.randint(0, 15, (40,)),
            "voice": torch.randint(0, 4, (40, 3)), "offsets": torch.tensor([0, 15, 40]),
            "heldout": torch.tensor([False, False])}
    utts = utterances(data, False)
    assert len(utts) == 2 and utts[0][3].shape == (15, 3)
    batch = make_batch(utts, [0, 1], eos=10, max_len=20, rng=np.random.default_rng(0))
    assert len(batch) == 4 and batch[3].shape == (2, 21, 3)
    assert int(batch[3][0, 16:].max()) == -100 and int(batch[3][0, 15].max()) == 0  # end token, then padding
    cfg = UnitLMConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=16, block_size=32, n_voice=3, voice_buckets=4)
    torch.manual_seed(0)
    lm = UnitLM(cfg)
    loss_v, unit_v = lm_loss(lm, *batch)
    loss_plain, unit_plain = lm_loss(lm, *batch[:3])
    assert torch.allclose(unit_v, lm_loss(lm, *batch)[1])
    assert loss_v.item() > unit_v.item()  # the voice term adds its cross-entropy
    # a summed loss over the same targets divided by their count is the mean loss
    n = int((batch[0][:, 1:] != -100).sum())
    assert torch.allclose(lm_loss(lm, *batch, reduction="sum")[0] / n, loss_v, atol=1e-5)
    assert loss_plain.shape == ()
