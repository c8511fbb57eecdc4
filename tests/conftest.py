"""Shared fixtures: a tiny deterministic backbone and synthetic clips (no downloads, no shared data)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(1)

from app.backbone import Backbone, tiny_backbone  # noqa: E402

SR = 16_000


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
