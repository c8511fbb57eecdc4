"""A tiny engine with two prompts trained in seconds on synthetic tones, shared by the UI tests."""
from __future__ import annotations

import functools
import socket
from pathlib import Path

import soundfile as sf
import torch

from app.backbone import tiny_backbone
from app.engine import Engine
from app.prompts import PromptConfig, TaskInfo
from app.tuning import TrainConfig, new_prompt, train_prompt

from .conftest import KINDS, SR, tone_clip

TASKS = {"tones": "learnable", "tones-freq": "freq"}


@functools.lru_cache(maxsize=1)
def ui_engine() -> Engine:
    """Tiny backbone + a learnable-verbalizer and a fixed-verbalizer prompt for low / high / chirp tones."""
    bb = tiny_backbone(seed=0)
    engine = Engine(bb)
    data = [(bb.encoder(torch.from_numpy(tone_clip(k, seed=i))), c) for c, k in enumerate(KINDS) for i in range(4)]
    for task, verbalizer in TASKS.items():
        info = TaskInfo(id=task, labels=list(KINDS), title=f"Tone shape ({verbalizer})",
                        description="Low hum, high whistle or rising chirp.", metrics={"test_accuracy": 0.9})
        prompt = new_prompt(bb.lm, info, PromptConfig(verbalizer=verbalizer), [u for u, _ in data], seed=0)
        train_prompt(bb.lm, prompt, data, None, TrainConfig(epochs=30, lr=2e-2, batch_size=8, target_train_acc=1.0))
        engine.add(prompt)
    return engine


def write_tone(path: Path, kind: str = "chirp", seed: int = 7, sr: int = SR) -> Path:
    sf.write(path, tone_clip(kind, seed=seed, sr=sr), sr)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
