"""A prompt's files: ``prompt.safetensors`` (tensors) + ``task.json`` (labels, verbalizer, backbone fingerprint,
metrics...): save, read, load and validate (shapes, dtypes, sizes, the backbone fingerprint). No pickle anywhere.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import save as safetensors_bytes

from .lm import UnitLMConfig
from .prompting import PromptConfig, PromptError, TaskCard, TaskInfo, TaskPrompt, stream_sizes

FORMAT_VERSION = 1
MAX_PROMPT_FILE_BYTES = 16 * 2**20


def save_prompt(prompt: TaskPrompt, folder: str | Path, backbone_id: str, fingerprint: str) -> Path:
    """Write ``prompt.safetensors`` + ``task.json``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = prompt.state_tensors()
    save_file(tensors, str(folder / "prompt.safetensors"), metadata={"task": prompt.task})
    info = prompt.info
    meta = {
        "format_version": FORMAT_VERSION,
        "id": info.id,
        "title": info.title,
        "description": info.description,
        "labels": info.labels,
        "verbalizer": prompt.verbalizer_dict(),
        "prompt_length": prompt.config.prompt_length,
        "deep": prompt.config.deep,
        "backbone": {"id": backbone_id, "fingerprint": fingerprint},
        "trainable_params": prompt.num_trainable(),
        "size_bytes": (folder / "prompt.safetensors").stat().st_size,
        "training_data": info.training_data,
        "metrics": info.metrics,
        "date": _dt.date.today().isoformat(),
        **({"extra": info.extra} if info.extra else {}),
        **({"card": info.card.to_json()} if info.card else {}),
    }
    (folder / "task.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def read_task_json(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "task.json"
    if not path.is_file():
        raise PromptError(f"{path} is missing.")
    if path.stat().st_size > 1_000_000:
        raise PromptError(f"{path} is too large to be a task description.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict):
        raise PromptError(f"{path} must hold a JSON object.")
    return meta


def load_prompt(folder: str | Path, lm_config: UnitLMConfig, fingerprint: str | None = None) -> TaskPrompt:
    """Load and validate a prompt folder against a backbone (shapes, dtypes, sizes and fingerprint)."""
    folder = Path(folder)
    meta = read_task_json(folder)
    try:
        info = TaskInfo(
            id=meta["id"], labels=meta["labels"], title=meta.get("title", ""),
            description=meta.get("description", ""), training_data=meta.get("training_data", ""),
            metrics=meta.get("metrics", {}), extra=meta.get("extra", {}),
            card=TaskCard.from_json(meta["card"], meta.get("metrics", {})) if "card" in meta else None,
        )
        verb = meta["verbalizer"]
        reads = list(verb.get("reads", ["units"]))  # prompts from before prosody-aware verbalizers read units only
        if verb["kind"] == "learnable" and (not reads or reads[0] != "units"
                                           or any(r not in stream_sizes(lm_config) for r in reads)):
            raise PromptError(f"verbalizer reads {reads!r}, but this LM's outputs are {list(stream_sizes(lm_config))}.")
        config = PromptConfig(prompt_length=int(meta["prompt_length"]), deep=bool(meta.get("deep", True)),
                              verbalizer=verb["kind"], prosody=len(reads) > 1,
                              read_at=str(verb.get("read_at", "separator")))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PromptError):
            raise
        raise PromptError(f"{folder / 'task.json'} is incomplete or malformed ({exc}).") from None
    if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise PromptError(f"{folder.name}: prompt format {meta['format_version']} is newer than this app.")
    want = (meta.get("backbone") or {}).get("fingerprint")
    if fingerprint is not None and want != fingerprint:
        raise PromptError(
            f"Prompt {info.id!r} was trained for backbone {want!r}, but the loaded backbone is {fingerprint!r}: "
            "a prompt only works with the backbone it was trained on."
        )
    prompt = TaskPrompt(lm_config, info, config, tokens=verb.get("tokens"))
    path = folder / "prompt.safetensors"
    if not path.is_file():
        raise PromptError(f"{path} is missing.")
    if path.stat().st_size > MAX_PROMPT_FILE_BYTES:
        raise PromptError(f"{path} is larger than any prompt should be ({path.stat().st_size} bytes).")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PromptError(f"{path} is not a valid safetensors file ({exc}).") from None
    expected = prompt.expected_shapes()
    if set(tensors) != set(expected):
        raise PromptError(f"{path}: tensors {sorted(tensors)} do not match the expected {sorted(expected)}.")
    params = dict(prompt.named_parameters())
    for name, shape in expected.items():
        t = tensors[name]
        if t.dtype != torch.float32:
            raise PromptError(f"{path}: tensor {name} has dtype {t.dtype}, expected float32.")
        if tuple(t.shape) != shape:
            raise PromptError(f"{path}: tensor {name} has shape {tuple(t.shape)}, expected {shape}.")
        if not torch.isfinite(t).all():
            raise PromptError(f"{path}: tensor {name} contains NaN or Inf.")
        with torch.no_grad():
            params[name].copy_(t)
    prompt.folder = folder
    return prompt


def prompt_file_bytes(prompt: TaskPrompt) -> int:
    """Size of the prompt's file: the real one if it was loaded from disk, else the exact serialised size."""
    if prompt.folder is not None and (prompt.folder / "prompt.safetensors").is_file():
        return (prompt.folder / "prompt.safetensors").stat().st_size
    return len(safetensors_bytes(prompt.state_tensors(), metadata={"task": prompt.task}))
