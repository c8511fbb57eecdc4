"""TaskPrompt: the small trainable part of SpeechPrompt v2, and its files.

A task prompt is data, not code: ``prompt.safetensors`` (tensors) + ``task.json`` (labels, verbalizer, backbone
fingerprint, metrics...). It holds

- ``input_prompt`` (P, C): trainable vectors placed before the units,
- ``deep_prompt`` (n_layer, 2, P, C): trainable key and value prefixes for every layer (prefix tuning),
- ``separator`` (C,): a trainable embedding after the units; the LM's next-unit distribution is read there,
- a verbalizer: learnable linear map from the (standardised log-)vocabulary distribution to classes (v2), or a fixed one that
  gives each class a unit token chosen by frequency or at random (v1). With a prosody-aware LM (pGSLM) the
  vocabulary is the LM's whole next-token output: next unit, next duration bucket and next pitch bucket.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .lm import UnitLM, UnitLMConfig

FORMAT_VERSION = 1
VERBALIZERS = ("learnable", "freq", "random")
TASK_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_PROMPT_FILE_BYTES = 16 * 2**20
MAX_LABELS = 1000


class PromptError(ValueError):
    """A prompt file that cannot be used, with a message saying why."""


@dataclass
class PromptConfig:
    """How a prompt is shaped (PEFT-style config object)."""

    prompt_length: int = 5  # input prompt vectors (and deep prompt prefix length)
    deep: bool = True  # key/value prefixes at every layer
    verbalizer: str = "learnable"  # learnable | freq | random
    prosody: bool = True  # a learnable verbalizer also reads the LM's duration and pitch predictions

    def __post_init__(self) -> None:
        if not 0 <= self.prompt_length <= 64:
            raise ValueError("prompt_length must be between 0 and 64")
        if self.verbalizer not in VERBALIZERS:
            raise ValueError(f"verbalizer must be one of {VERBALIZERS}, got {self.verbalizer!r}")
        self.prosody = self.prosody and self.verbalizer == "learnable"  # a fixed verbalizer reads unit tokens


@dataclass
class TaskInfo:
    """The JSON side of a prompt: what the task is and how the prompt was made."""

    id: str
    labels: list[str]
    title: str = ""
    description: str = ""
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_task_id(self.id)
        self.labels = [str(x) for x in self.labels]
        if not 2 <= len(self.labels) <= MAX_LABELS or len(set(self.labels)) != len(self.labels):
            raise PromptError(f"Task {self.id!r} needs 2 or more distinct labels, got {self.labels!r}.")
        self.title = self.title or self.id


def check_task_id(task_id: str) -> str:
    """Task ids name folders: allow only lower-case letters, digits, '_' and '-' (no paths)."""
    if not isinstance(task_id, str) or not TASK_ID.match(task_id):
        raise PromptError(f"Invalid task id {task_id!r}: use lower-case letters, digits, '_' or '-' (max 64).")
    return task_id


StreamLogits = Mapping[str, torch.Tensor]


def standardised(logits: torch.Tensor) -> torch.Tensor:
    """One stream's next-token log-distribution ``(B, n)``, standardised per row (zero mean, unit spread)."""
    logp = torch.log_softmax(logits, dim=-1)
    spread, mean = torch.std_mean(logp, dim=-1, keepdim=True)
    return (logp - mean) / (spread + 1e-5)


def verbalizer_input(logits: StreamLogits | torch.Tensor, reads: tuple[str, ...] = ("units",),
                     ready: StreamLogits | None = None) -> torch.Tensor:
    """What a learnable verbalizer reads: each stream's next-token log-distribution (``logits[name] (B, n)``; a
    bare tensor means the units), standardised per row and stream so the linear map works the same whether the
    LM is sharp or flat, then concatenated in ``reads`` order. ``ready``: streams already :func:`standardised`
    (a batch of many tasks does that once for all rows)."""
    streams = {"units": logits} if isinstance(logits, torch.Tensor) else logits
    parts = []
    for name in reads:
        if ready is not None and name in ready:
            parts.append(ready[name])
        elif name in streams:
            parts.append(standardised(streams[name]))
        else:
            raise PromptError(f"The verbalizer reads the LM's {name!r} output, which was not given.")
    return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


def stream_sizes(lm_config: UnitLMConfig) -> dict[str, int]:
    """Size of each next-token output the LM has (duration and pitch only for a prosody-aware LM)."""
    sizes = {"units": lm_config.vocab_size, "duration": lm_config.n_duration, "pitch": lm_config.n_pitch}
    return {k: v for k, v in sizes.items() if v}


class TaskPrompt(nn.Module):
    """The trainable part for one task; the frozen LM is passed in, never owned."""

    def __init__(self, lm_config: UnitLMConfig, info: TaskInfo, config: PromptConfig | None = None,
                 tokens: list[int] | None = None) -> None:
        super().__init__()
        self.info, self.config, self.lm_config = info, config or PromptConfig(), lm_config
        self.folder: Path | None = None  # where it was loaded from, if from files
        c, P = lm_config.n_embd, self.config.prompt_length
        self.input_prompt = nn.Parameter(torch.zeros(P, c))
        self.deep_prompt = nn.Parameter(torch.zeros(lm_config.n_layer, 2, P, c)) if self.config.deep else None
        self.separator = nn.Parameter(torch.zeros(c))
        n = len(info.labels)
        sizes = stream_sizes(lm_config)
        learnable = self.config.verbalizer == "learnable"
        self.reads: tuple[str, ...] = tuple(s for s in sizes if s == "units" or (learnable and self.config.prosody))
        if learnable:
            self.verbalizer = nn.Linear(sum(sizes[s] for s in self.reads), n)
            nn.init.normal_(self.verbalizer.weight, 0.0, 0.02)
            nn.init.zeros_(self.verbalizer.bias)
            self.register_buffer("tokens", torch.zeros(0, dtype=torch.long))
        else:
            self.verbalizer = None
            if tokens is None or len(tokens) != n or len(set(tokens)) != n:
                raise PromptError(f"A {self.config.verbalizer} verbalizer needs {n} distinct unit tokens.")
            if not all(0 <= t < lm_config.vocab_size for t in tokens):
                raise PromptError("Verbalizer tokens must be ids in the LM's vocabulary.")
            self.register_buffer("tokens", torch.tensor(tokens, dtype=torch.long))

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @property
    def task(self) -> str:
        return self.info.id

    def num_trainable(self) -> int:
        """Parameters that prompt tuning trains: all of the prompt's (even while frozen for serving)."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def init_from_lm(self, lm: UnitLM, generator: torch.Generator | None = None) -> None:
        """Start from the LM's own statistics: prompt vectors from random unit embeddings, prefixes from the
        keys/values the LM computes for a random unit sequence, separator from the end-of-utterance token."""
        cfg = self.lm_config
        P = self.config.prompt_length
        ids = torch.randint(0, cfg.vocab_size - 1, (1, max(P, 1)), generator=generator)
        emb = lm.wte(ids)[0]
        self.input_prompt.copy_(emb[:P])
        self.separator.copy_(lm.wte.weight[cfg.eos])
        if self.deep_prompt is not None and P:
            _, kvs = lm.run(lm.embed(ids), return_kv=True)
            for i, (k, v) in enumerate(kvs):  # (1, n_head, P, head_dim) -> (P, C)
                self.deep_prompt[i, 0].copy_(k[0].transpose(0, 1).reshape(P, -1))
                self.deep_prompt[i, 1].copy_(v[0].transpose(0, 1).reshape(P, -1))

    def prefix(self) -> torch.Tensor | None:
        """Deep prompt as per-layer keys/values ``(n_layer, 2, n_head, P, head_dim)``."""
        if self.deep_prompt is None:
            return None
        L, _, P, _ = self.deep_prompt.shape
        h, d = self.lm_config.n_head, self.lm_config.head_dim
        return self.deep_prompt.view(L, 2, P, h, d).transpose(2, 3)

    def classify(self, logits: StreamLogits | torch.Tensor, ready: StreamLogits | None = None) -> torch.Tensor:
        """Class logits ``(B, n_classes)`` from the LM's next-token logits at the separator: ``{"units": (B, V),
        "duration": ..., "pitch": ...}`` (a bare tensor is the units); ``ready``: see :func:`verbalizer_input`."""
        if self.verbalizer is not None:
            return self.verbalizer(verbalizer_input(logits, self.reads, ready))
        units = logits if isinstance(logits, torch.Tensor) else logits["units"]
        return units[:, self.tokens]

    def feature_names(self) -> list[str]:
        """One name per verbalizer input: ``unit 17``, ``duration 3``, ``pitch 7`` (stream and bucket)."""
        sizes = stream_sizes(self.lm_config)
        return [f"{'unit' if s == 'units' else s} {i}" for s in self.reads for i in range(sizes[s])]

    def verbalizer_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.config.verbalizer}
        if self.verbalizer is None:
            d["tokens"] = self.tokens.tolist()
        else:
            d["reads"] = list(self.reads)
        return d

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors that make up the prompt file (float32, contiguous)."""
        out = {"input_prompt": self.input_prompt, "separator": self.separator}
        if self.deep_prompt is not None:
            out["deep_prompt"] = self.deep_prompt
        if self.verbalizer is not None:
            out["verbalizer.weight"] = self.verbalizer.weight
            out["verbalizer.bias"] = self.verbalizer.bias
        return {k: v.detach().float().contiguous().clone() for k, v in out.items()}

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.state_tensors().items()}


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
        )
        verb = meta["verbalizer"]
        reads = list(verb.get("reads", ["units"]))  # prompts from before prosody-aware verbalizers read units only
        if verb["kind"] == "learnable" and (not reads or reads[0] != "units"
                                           or any(r not in stream_sizes(lm_config) for r in reads)):
            raise PromptError(f"verbalizer reads {reads!r}, but this LM's outputs are {list(stream_sizes(lm_config))}.")
        config = PromptConfig(prompt_length=int(meta["prompt_length"]), deep=bool(meta.get("deep", True)),
                              verbalizer=verb["kind"], prosody=len(reads) > 1)
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
