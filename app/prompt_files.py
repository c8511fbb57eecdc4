"""A prompt's files: ``prompt.safetensors`` (tensors) + ``task.json`` (labels, verbalizer, backbone fingerprint,
metrics...): save, read, load and validate (shapes, dtypes, sizes, the backbone fingerprint). No pickle anywhere.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from safetensors.torch import save as safetensors_bytes

from .lm import UnitLMConfig
from .prompting import (MAX_LABELS, VERBALIZERS, PromptConfig, PromptError, TaskCard, TaskInfo, TaskPrompt,
                        check_task_id, stream_sizes, verbalizer_reads)

FORMAT_VERSION = 1
MAX_PROMPT_FILE_BYTES = 16 * 2**20
MAX_LABEL_CHARS = 100


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


def _fail(where: str, what: str) -> PromptError:
    return PromptError(f"{where} is malformed: {what}.")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _text(meta: dict, key: str, where: str, limit: int, default: str = "") -> str:
    value = meta.get(key, default)
    if not isinstance(value, str):
        raise _fail(where, f"'{key}' must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise _fail(where, f"'{key}' is {len(value):,} characters long (at most {limit:,})")
    return value


def _metric_value(v: Any) -> bool:
    """A metric a run records: a finite number, true/false, a short string (e.g. why it stopped) or null."""
    if v is None or isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    return isinstance(v, str) and len(v) <= 200


def parse_task_json(meta: dict[str, Any], where: str, lm_config: UnitLMConfig
                    ) -> tuple[TaskInfo, PromptConfig, list[int] | None, str | None]:
    """Every field of a task.json checked for its type and range: ``(info, config, verbalizer tokens, the backbone
    fingerprint it names)``. Anything else raises :class:`PromptError` with a short message (never the field's
    whole value: a bad file may hold 60,000 labels)."""
    version = meta.get("format_version", FORMAT_VERSION)
    if not _is_int(version) or version < 1:
        raise _fail(where, f"'format_version' must be a whole number >= 1, got {_brief(version)}")
    if version > FORMAT_VERSION:
        raise PromptError(f"{where}: prompt format {version} is newer than this app (it reads {FORMAT_VERSION}).")
    for key in ("id", "labels", "verbalizer", "prompt_length"):
        if key not in meta:
            raise _fail(where, f"'{key}' is missing")
    if not isinstance(meta["id"], str) or len(meta["id"]) > 64:
        raise PromptError(f"Invalid task id {_brief(meta['id'])}: use lower-case letters, digits, '_' or '-' (max 64).")
    check_task_id(meta["id"])
    labels = meta["labels"]
    if not isinstance(labels, list):
        raise _fail(where, f"'labels' must be a list of strings, got {type(labels).__name__}")
    if not 2 <= len(labels) <= MAX_LABELS:
        raise _fail(where, f"a task needs 2 or more distinct labels (at most {MAX_LABELS:,}); 'labels' holds "
                           f"{len(labels):,}")
    if not all(isinstance(x, str) and 0 < len(x) <= MAX_LABEL_CHARS for x in labels):
        raise _fail(where, f"every label must be a non-empty string of at most {MAX_LABEL_CHARS} characters")
    if len(set(labels)) != len(labels):
        raise _fail(where, "the labels must be distinct")
    metrics = meta.get("metrics", {})
    if not isinstance(metrics, dict) or len(metrics) > 100 or not all(
            isinstance(k, str) and len(k) <= 100 and _metric_value(v) for k, v in metrics.items()):
        raise _fail(where, "'metrics' must map names to numbers, short strings or null")
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise _fail(where, f"'extra' must be an object, got {type(extra).__name__}")
    verb = meta["verbalizer"]
    if not isinstance(verb, dict):
        raise _fail(where, f"'verbalizer' must be an object, got {type(verb).__name__}")
    kind = verb.get("kind")
    if kind not in VERBALIZERS:
        raise _fail(where, f"verbalizer 'kind' must be one of {', '.join(VERBALIZERS)}, got {_brief(kind)}")
    reads = verb.get("reads", ["units"])  # prompts from before prosody-aware verbalizers read units only
    if not isinstance(reads, list) or not all(isinstance(r, str) for r in reads):
        raise _fail(where, "verbalizer 'reads' must be a list of stream names")
    streams = list(stream_sizes(lm_config))
    if kind == "learnable" and (not reads or reads[0] != "units" or any(r not in streams for r in reads)
                                or len(set(reads)) != len(reads)):
        raise PromptError(f"{where}: verbalizer reads {_brief(reads)}, but this LM's outputs are {streams}.")
    tokens = verb.get("tokens")
    if tokens is not None and (not isinstance(tokens, list) or not all(_is_int(t) for t in tokens)):
        raise _fail(where, "verbalizer 'tokens' must be a list of unit ids (whole numbers)")
    length = meta["prompt_length"]
    if not _is_int(length) or not 0 <= length <= 64:
        raise _fail(where, f"'prompt_length' must be a whole number from 0 to 64, got {_brief(length)}")
    deep = meta.get("deep", True)
    if not isinstance(deep, bool):
        raise _fail(where, f"'deep' must be true or false, got {_brief(deep)}")
    backbone = meta.get("backbone")
    if not isinstance(backbone, dict) or not isinstance(backbone.get("fingerprint"), str) \
            or not isinstance(backbone.get("id", ""), str):
        raise _fail(where, "'backbone' must be an object with the string 'id' and 'fingerprint' of its backbone")
    for key in ("trainable_params", "size_bytes"):
        if key in meta and not _is_int(meta[key]):
            raise _fail(where, f"'{key}' must be a whole number, got {_brief(meta[key])}")
    _text(meta, "date", where, 40)
    card = None
    if "card" in meta:
        try:
            card = TaskCard.from_json(meta["card"], metrics)
        except (TypeError, ValueError) as exc:  # PromptError included
            raise _fail(where, _brief(str(exc), 200)) from None
    info = TaskInfo(id=meta["id"], labels=list(labels), title=_text(meta, "title", where, 200),
                    description=_text(meta, "description", where, 5000),
                    training_data=_text(meta, "training_data", where, 2000), metrics=dict(metrics), extra=extra,
                    card=card)
    read_at = verb.get("read_at", "separator")
    if not isinstance(read_at, str):
        raise _fail(where, f"verbalizer 'read_at' must be a string, got {_brief(read_at)}")
    try:
        # "voice" says whether the verbalizer reads the voice codes; on an LM without them it keeps its default
        voice = "voice" in reads if "voice" in streams else PromptConfig.voice
        config = PromptConfig(prompt_length=length, deep=deep, verbalizer=kind,
                              prosody="duration" in reads or "pitch" in reads, voice=voice, read_at=read_at)
    except ValueError as exc:
        raise _fail(where, _brief(str(exc), 200)) from None
    if kind == "learnable" and list(verbalizer_reads(lm_config, config)) != reads:
        raise PromptError(f"{where}: verbalizer reads {_brief(reads)}, which is not a set of outputs a prompt reads "
                          f"on this LM ({streams}).")
    return info, config, tokens, backbone["fingerprint"]


def _brief(value: Any, limit: int = 60) -> str:
    """A value for a message, cut short (a malformed file's field can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_prompt(folder: str | Path, lm_config: UnitLMConfig, fingerprint: str | None = None) -> TaskPrompt:
    """Load and validate a prompt folder against a backbone: every task.json field (:func:`parse_task_json`), then
    the tensors' names, shapes, dtypes, sizes and values, and the fingerprint. Anything wrong is a PromptError."""
    folder = Path(folder)
    meta = read_task_json(folder)
    info, config, tokens, want = parse_task_json(meta, str(folder / "task.json"), lm_config)
    if fingerprint is not None and want != fingerprint:
        raise PromptError(
            f"Prompt {info.id!r} was trained for backbone {want!r}, but the loaded backbone is {fingerprint!r}: "
            "a prompt only works with the backbone it was trained on."
        )
    try:
        prompt = TaskPrompt(lm_config, info, config, tokens=tokens)
    except PromptError:
        raise
    except (ValueError, TypeError, RuntimeError) as exc:
        raise PromptError(f"{folder / 'task.json'} does not describe a prompt for this LM ({_brief(str(exc), 200)})."
                          ) from None
    path = folder / "prompt.safetensors"
    if not path.is_file():
        raise PromptError(f"{path} is missing.")
    if path.stat().st_size > MAX_PROMPT_FILE_BYTES:
        raise PromptError(f"{path} is larger than any prompt should be ({path.stat().st_size} bytes).")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- safetensors raises several types on a bad header; all mean "invalid"
        raise PromptError(f"{path} is not a valid safetensors file ({_brief(str(exc), 200)}).") from None
    expected = prompt.expected_shapes()
    if set(tensors) != set(expected):
        raise PromptError(f"{path}: tensors {_brief(sorted(tensors), 200)} do not match the expected "
                          f"{sorted(expected)}.")
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
