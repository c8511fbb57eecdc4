"""A tiny engine with two prompts trained in seconds on synthetic tones, shared by the UI tests."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import functools
import socket
from pathlib import Path

import soundfile as sf
import torch

from app.engine import Engine
from app.prompting import PromptConfig, TaskInfo
from app.training import TrainConfig, new_prompt, train_prompt

from .conftest import KINDS, SR, tiny_backbone, tone_clip

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


@functools.lru_cache(maxsize=1)
def voice_engine() -> Engine:
    """A tiny backbone with voice streams (4 streams of 8 codes) + a learnable prompt that reads them."""
    from .conftest import tiny_voice_backbone

    bb = tiny_voice_backbone(seed=0)
    engine = Engine(bb)
    data = [(bb.encoder(torch.from_numpy(tone_clip(k, seed=i, seconds=1.5))), c) for c, k in enumerate(KINDS)
            for i in range(4)]
    info = TaskInfo(id="tones", labels=list(KINDS), title="Tone shape (voice)", metrics={"test_accuracy": 0.9})
    prompt = new_prompt(bb.lm, info, PromptConfig(), [u for u, _ in data], seed=0)
    train_prompt(bb.lm, prompt, data, None, TrainConfig(epochs=10, lr=2e-2, batch_size=8, target_train_acc=1.0))
    engine.add(prompt)
    return engine


def write_tone(path: Path, kind: str = "chirp", seed: int = 7, sr: int = SR) -> Path:
    sf.write(path, tone_clip(kind, seed=seed, sr=sr), sr)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_engine(root: Path, engine: Engine | None = None) -> tuple[Path, Path]:
    """The engine's backbone and prompts as folders (``root/backbone``, ``root/prompts``), for the CLI and app.py."""
    from app.prompt_files import save_prompt

    engine = engine or ui_engine()
    bb = engine.backbone
    folder = bb.folder
    try:
        bb.save(root / "backbone")
    finally:
        bb.folder = folder  # the shared engine stays as it was
    for task, prompt in engine.prompts.items():
        save_prompt(prompt, root / "prompts" / task, bb.id, bb.fingerprint)
    return root / "backbone", root / "prompts"


def add_malformed_prompts(prompts: Path, good: str = "tones") -> dict[str, str]:
    """Broken prompt folders next to the good ones: {folder name: a fragment of the reason it must be skipped}."""
    import json
    import pickle
    import shutil

    from safetensors.torch import load_file, save_file

    src = prompts / good
    meta = json.loads((src / "task.json").read_text(encoding="utf-8"))
    tensors = load_file(str(src / "prompt.safetensors"))
    cases: dict[str, str] = {}

    def clone(name: str, **changes) -> Path:
        d = prompts / name
        shutil.copytree(src, d)
        (d / "task.json").write_text(json.dumps({**meta, "id": name, **changes}), encoding="utf-8")
        return d

    d = clone("bad-json")
    (d / "task.json").write_text("{not json", encoding="utf-8")
    cases["bad-json"] = "not valid JSON"
    clone("wrong-backbone", backbone={"id": "other", "fingerprint": "0123456789abcdef"})
    cases["wrong-backbone"] = "trained for backbone"
    d = clone("escape")
    (d / "task.json").write_text(json.dumps({**meta, "id": "../../etc"}), encoding="utf-8")
    cases["escape"] = "Invalid task id"
    clone("mismatch")
    (prompts / "mismatch" / "task.json").write_text(json.dumps({**meta, "id": "other-name"}), encoding="utf-8")
    cases["mismatch"] = "does not match folder name"
    d = clone("half-precision")
    save_file({k: v.half() for k, v in tensors.items()}, str(d / "prompt.safetensors"))
    cases["half-precision"] = "dtype"
    d = clone("wrong-shape")
    save_file({**tensors, "input_prompt": tensors["input_prompt"][:2].contiguous()}, str(d / "prompt.safetensors"))
    cases["wrong-shape"] = "shape"
    d = clone("extra-tensor")
    save_file({**tensors, "payload": tensors["separator"].clone()}, str(d / "prompt.safetensors"))
    cases["extra-tensor"] = "do not match the expected"
    d = clone("nan")
    save_file({**tensors, "separator": tensors["separator"] * float("nan")}, str(d / "prompt.safetensors"))
    cases["nan"] = "NaN"
    d = clone("pickled")
    (d / "prompt.safetensors").write_bytes(pickle.dumps({k: v.numpy() for k, v in tensors.items()}))
    cases["pickled"] = "not a valid safetensors file"
    d = clone("missing-weights")
    (d / "prompt.safetensors").unlink()
    cases["missing-weights"] = "missing"
    d = clone("oversized")
    with open(d / "prompt.safetensors", "ab") as f:
        f.truncate(17 * 2**20)
    cases["oversized"] = "larger than any prompt"
    clone("no-labels", labels=["only-one"])
    cases["no-labels"] = "2 or more distinct labels"
    clone("bad-card", card={**CARD, "training_speech": "robots"})
    cases["bad-card"] = "card.training_speech"
    # Issue #16: each of these stopped the app from starting (a traceback, nothing served) before task.json's
    # fields were type-checked inside the loader.
    for name, changes, fragment in [
        ("version-text", {"format_version": "2"}, "'format_version' must be a whole number"),
        ("version-newer", {"format_version": 99}, "newer than this app"),
        ("backbone-text", {"backbone": "abc"}, "'backbone' must be an object"),
        ("verbalizer-list", {"verbalizer": ["learnable"]}, "'verbalizer' must be an object"),
        ("tokens-nested", {"verbalizer": {"kind": "freq", "tokens": [[0], [1], [2]]}}, "'tokens' must be a list"),
        ("title-number", {"title": 123}, "'title' must be a string"),
        ("metrics-list", {"metrics": [1, 2]}, "'metrics' must map names"),
        ("metrics-nested", {"metrics": {"a": {"b": 1}}}, "'metrics' must map names"),
        ("metrics-empty-list", {"metrics": []}, "'metrics' must map names"),
        ("labels-numbers", {"labels": [1, 2, 3]}, "every label must be a non-empty string"),
        ("length-text", {"prompt_length": "five"}, "'prompt_length' must be a whole number"),
        ("deep-text", {"deep": "yes"}, "'deep' must be true or false"),
        ("labels-60000", {"labels": [f"label-{i}" for i in range(60_000)]}, "'labels' holds 60,000"),
    ]:
        clone(name, **changes)
        cases[name] = fragment
    return cases


#: A valid task card for the tone prompts (their metrics hold test_accuracy 0.9).
CARD = {"training_speech": "synthetic", "real_speakers": 0, "synthetic_voices": 3,
        "headline_metric": "test_accuracy", "test_means": "accuracy on tones never heard in training",
        "not_for": "real speech: it only ever heard three kinds of tone"}


@contextmanager
def served_ui(engine: Engine | None = None) -> Iterator[str]:
    """Launch the UI of ``engine`` (default: the tiny UI engine) on a free loopback port; yields its URL."""
    from app.ui import build_ui, launch_options

    demo = build_ui(engine or ui_engine())
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
