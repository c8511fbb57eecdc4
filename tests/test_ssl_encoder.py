"""recipes/experiments/ssl_encoder.py: span masking, masked-only loss, training step, safetensors round trip (offline, tiny model)."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import torch

from recipes.experiments.ssl_encoder import (SSLConfig, SSLEncoder, cmd_targets, cmd_train, load_checkpoint,  # noqa: E402
                                 make_opt, save_checkpoint, span_mask)


def tiny(**kw) -> SSLEncoder:
    torch.manual_seed(0)
    return SSLEncoder(SSLConfig(n_mels=8, d_model=32, n_head=2, n_layer=2, pos_kernel=5, n_targets=7, **kw))


def runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    out, start = [], None
    for i, v in enumerate(row.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - start))
            start = None
    return out


def test_span_mask_spans_and_ratio():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([2000] * 8)
    mask = span_mask(lengths, 0.08, 10, g)
    # runs are unions of overlapping 10-frame spans: each is >= 10 long unless cut by the end
    for row in mask:
        for s, n in runs(row):
            assert n >= 10 or s + n == 2000
    expected = 1 - (1 - 0.08) ** 10  # P(a frame is covered by a span starting in the 10 frames up to it)
    assert abs(mask.float().mean().item() - expected) < 0.03
    # sparse starts: isolated spans of exactly 10
    sparse = span_mask(torch.tensor([5000]), 0.002, 10, g)[0]
    lens = [n for s, n in runs(sparse) if s + n < 5000]
    assert lens and sum(n == 10 for n in lens) >= 0.8 * len(lens)


def test_span_mask_respects_lengths_and_never_empty():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([30, 5, 1, 17])
    for _ in range(20):
        mask = span_mask(lengths, 0.01, 10, g)
        assert mask.shape == (4, 30)
        for b, L in enumerate(lengths.tolist()):
            assert not mask[b, L:].any()
            assert mask[b, :L].any()


def test_loss_only_on_masked_frames():
    model = tiny()
    mel, lengths = torch.randn(3, 40, 8), torch.tensor([40, 40, 26])
    targets = torch.randint(0, 7, (3, 20))
    targets[2, 13:] = -1  # padding
    g = torch.Generator().manual_seed(3)
    loss, info = model.loss(mel, lengths, targets, g)
    # recompute by hand with the same mask
    mask = span_mask(SSLEncoder.out_lengths(lengths), 0.08, 10, torch.Generator().manual_seed(3))
    logits, _ = model(mel, lengths, mask)
    sel = mask & (targets >= 0)
    assert 0 < sel.sum() < (targets >= 0).sum()
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[sel], targets[sel]))
    # changing the targets of unmasked frames does not change the loss
    t2 = targets.clone()
    t2[~mask & (targets >= 0)] = (t2[~mask & (targets >= 0)] + 1) % 7
    loss2, _ = model.loss(mel, lengths, t2, torch.Generator().manual_seed(3))
    assert torch.allclose(loss, loss2)
    assert 0 < info["masked_frac"] < 1


def test_padding_does_not_change_valid_frames():
    model = tiny().eval()
    mel = torch.randn(1, 26, 8)
    with torch.no_grad():
        _, h1 = model(mel)
        _, h2 = model(torch.cat([mel, torch.randn(1, 14, 8)], 1), torch.tensor([26]))
    assert torch.allclose(h1[-1][0], h2[-1][0, :13], atol=1e-5)


def test_loss_decreases():
    model = tiny()
    opt = make_opt(model, 3e-3)
    mel = torch.randn(4, 40, 8)
    targets = torch.randint(0, 7, (4, 20))
    lengths = torch.full((4,), 40)
    losses = []
    for step in range(30):  # same mask every step: the model can fit the masked targets
        loss, _ = model.loss(mel, lengths, targets, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_checkpoint_round_trip(tmp_path):
    model = tiny()
    opt = make_opt(model)
    loss, _ = model.loss(torch.randn(2, 20, 8), torch.tensor([20, 20]), torch.randint(0, 7, (2, 10)))
    loss.backward()
    opt.step()
    save_checkpoint(tmp_path, model, opt, {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "optim.safetensors", "state.json"]
    model2, opt2, state = load_checkpoint(tmp_path, make_opt)
    assert state["step"] == 1 and model2.cfg == model.cfg
    for (k, a), (k2, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for i in s1:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(s1[i][name]), torch.as_tensor(s2[i][name]))
    x = torch.randn(1, 20, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[0], model2.eval()(x)[0])


def test_targets_train_resume_iteration2(tmp_path):
    """End to end on a fake 80-bin corpus: targets (it1), train, resume, targets from the model (it2)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(30, 90, size=12)
    np.save(tmp_path / "feats.npy", rng.standard_normal((lengths.sum(), 80)).astype(np.float16))
    (tmp_path / "index.json").write_text(json.dumps({"offsets": [0] + np.cumsum(lengths).tolist(), "clips": []}))
    base = dict(root=tmp_path, clusters=5, fit_clips=6, from_ckpt=None, layer=1, name="it1")
    cmd_targets(argparse.Namespace(**base))
    t = np.load(tmp_path / "targets_it1.npy")
    assert len(t) == ((lengths + 1) // 2).sum() and t.max() < 5
    train = dict(root=tmp_path, targets="it1", out=tmp_path / "m", d_model=32, layers=2, heads=2, minutes=1.0,
                 lr=1e-3, warmup=2, max_mel=40, batch_mel=160, log_every=1, ckpt_every=100)
    cmd_train(argparse.Namespace(**train, steps=3))
    cmd_train(argparse.Namespace(**train, steps=5))  # resumes at step 3
    state = json.loads((tmp_path / "m" / "state.json").read_text())
    assert state["step"] == 5 and state["config"]["n_targets"] == 5
    assert [json.loads(line)["step"] for line in (tmp_path / "m" / "log.jsonl").open()] == [1, 2, 3, 4, 5]
    cmd_targets(argparse.Namespace(**{**base, "from_ckpt": tmp_path / "m", "name": "it2"}))
    assert len(np.load(tmp_path / "targets_it2.npy")) == len(t)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
