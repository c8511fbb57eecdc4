"""Shared fixtures: a tiny deterministic backbone and synthetic clips (no downloads, no shared data)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(1)

from app.backbone import Backbone  # noqa: E402
from app.encoder.dense import build_dense  # noqa: E402
from app.encoder.units import N_DURATION_BUCKETS, N_PITCH_BUCKETS  # noqa: E402
from app.lm import UnitLMConfig  # noqa: E402

SR = 16_000


def tiny_config(n_units: int = 16, n_embd: int = 32, n_layer: int = 2, n_head: int = 2) -> dict[str, Any]:
    """Config of a tiny backbone for tests and quick experiments."""
    return {
        "id": f"tiny-logmel{n_units}-lm{n_layer}x{n_embd}",
        "sample_rate": 16_000,
        "dense": {"kind": "logmel", "n_mels": 20, "context": 1},
        "quantizer": {"n_units": n_units, "feature_norm": "none"},
        "lm": UnitLMConfig(vocab_size=n_units + 1, n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=256,
                           n_duration=N_DURATION_BUCKETS, n_pitch=N_PITCH_BUCKETS).to_dict(),
    }


def tiny_backbone(seed: int = 0, n_units: int = 16, **lm_kwargs: int) -> Backbone:
    """A tiny deterministic backbone built in well under a second: log-mel features, centroids taken from
    frames of a fixed synthetic signal, a randomly initialised LM. For tests, not for accuracy."""
    g = torch.Generator().manual_seed(seed)
    config = tiny_config(n_units, **lm_kwargs)
    dense = build_dense(config["dense"])
    t = torch.arange(32_000) / 16_000
    signal = torch.sin(2 * torch.pi * (200 + 1500 * t) * t) + 0.3 * torch.randn(t.shape, generator=g)
    feats = dense(signal)
    centroids = feats[torch.randperm(feats.shape[0], generator=g)[:n_units]].clone()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Backbone.build(config, centroids)


def tone_clip(kind: str, seed: int = 0, seconds: float = 0.8, sr: int = SR) -> np.ndarray:
    """Three easily separable synthetic 'classes': low hum, high whistle, rising chirp (+ a little noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    jitter = 1 + 0.05 * rng.standard_normal()
    if kind == "low":
        x = np.sin(2 * np.pi * 150 * jitter * t) + 0.5 * np.sin(2 * np.pi * 300 * jitter * t)
    elif kind == "high":
        x = np.sin(2 * np.pi * 2500 * jitter * t)
    elif kind == "chirp":
        x = np.sin(2 * np.pi * (300 + 3000 * t / seconds) * jitter * t)
    else:
        raise ValueError(kind)
    x = x * np.hanning(t.size) ** 0.3 + 0.02 * rng.standard_normal(t.size)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


KINDS = ("low", "high", "chirp")


@pytest.fixture(scope="session")
def backbone() -> Backbone:
    return tiny_backbone(seed=0)


@pytest.fixture(scope="session")
def backbone_dir(tmp_path_factory, backbone) -> Path:
    folder = tmp_path_factory.mktemp("backbone")
    tiny_backbone(seed=0).save(folder)
    return folder


@pytest.fixture(scope="session")
def labelled_dir(tmp_path_factory) -> Path:
    """low/ high/ chirp/ folders with 5 wav clips each."""
    root = tmp_path_factory.mktemp("labelled")
    for kind in KINDS:
        (root / kind).mkdir()
        for i in range(5):
            sf.write(root / kind / f"{kind}_{i}.wav", tone_clip(kind, seed=i), SR)
    return root


@pytest.fixture(scope="session")
def clip_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("clips") / "chirp.wav"
    sf.write(p, tone_clip("chirp", seed=42), SR)
    return p


def tiny_voice_backbone(seed: int = 0, n_units: int = 16, n_voice: int = 4, buckets: int = 8,
                        own_voice_encoder: bool = False) -> Backbone:
    """A tiny backbone with voice streams: a random 2-block Whisper-shaped encoder (width 32), k-means centroids
    and a voice quantizer fitted on frames of fixed synthetic signals, a randomly initialised LM.
    ``own_voice_encoder``: the voice streams read a second random Whisper (1 block, width 24) instead."""
    from app.encoder.units import VoiceQuantizer, window_stats

    g = torch.Generator().manual_seed(seed)
    config = tiny_config(n_units)
    config["dense"] = {"kind": "whisper", "n_mels": 80, "n_ctx": 1500, "d_model": 32, "n_head": 2, "n_layer": 2,
                       "post_ln": False}
    config["lm"] = {**config["lm"], "n_voice": n_voice, "voice_buckets": buckets}
    config["id"] = f"tiny-whisper{n_units}-v{n_voice}x{buckets}"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dense = build_dense(config["dense"]).eval()
        voice_cfg = {**config["dense"], "d_model": 24, "n_layer": 1}
        voice_dense = build_dense(voice_cfg).eval() if own_voice_encoder else None
        with torch.no_grad():  # random convolutions strong enough that the frames follow the sound, not the position
            for model in (dense, voice_dense) if own_voice_encoder else (dense,):
                for conv in (model.encoder.conv1, model.encoder.conv2):
                    conv.weight.mul_(20.0)
        t = torch.arange(48_000) / 16_000
        stats, feats = [], []
        with torch.no_grad():
            for f0 in (120.0, 220.0, 400.0, 800.0):
                signal = torch.sin(2 * torch.pi * f0 * t * (1 + t)) + 0.3 * torch.randn(t.shape, generator=g)
                states = dense.hidden_states(signal)
                feats.append(states[-1])
                low = voice_dense.hidden_states(signal) if own_voice_encoder else states
                stats.append(window_stats(low[1], 10)[0])
        feats_all = torch.cat(feats)
        centroids = feats_all[torch.randperm(feats_all.shape[0], generator=g)[:n_units]].clone()
        voice = VoiceQuantizer.fit(torch.cat(stats), layer=1, window=10, n_streams=n_voice, n_buckets=buckets)
        config["voice"] = {**voice.config(), **({"dense": voice_cfg} if own_voice_encoder else {})}
        if own_voice_encoder:
            config["id"] += "-own-voice"
        bb = Backbone.build(config, centroids, voice=voice)
        bb.encoder.dense.load_state_dict(dense.state_dict())
        if own_voice_encoder:
            bb.encoder.voice_dense.load_state_dict(voice_dense.state_dict())
        bb.fingerprint = bb._fingerprint()
        return bb
