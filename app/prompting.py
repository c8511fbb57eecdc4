"""Where the prompt enters the LM: PromptConfig, TaskPrompt, the verbalizers and :func:`prompted_forward`.

A task prompt is the small trainable part of SpeechPrompt v2 (its files: app/prompt_files.py). It holds

- ``input_prompt`` (P, C): trainable vectors placed before the units,
- ``deep_prompt`` (n_layer, 2, P, C): trainable key and value prefixes for every layer (prefix tuning),
- ``separator`` (C,): a trainable embedding after the units; the LM's next-unit distribution is read there,
- a verbalizer: learnable linear map from the (standardised log-)vocabulary distribution to classes (v2), or a
  fixed one that gives each class a unit token chosen by frequency or at random (v1). With a prosody-aware LM
  (pGSLM) the vocabulary is the LM's whole next-token output: next unit, next duration bucket and next pitch bucket
  (and, on a backbone with voice streams, the next unit's voice codes).

:func:`prompted_forward` is the single place where SpeechPrompt v2's sequence is built, per row of a batch:

    [input prompt (P vectors)] [unit embeddings + duration + pitch (+ voice)] [separator]   (+ deep prompt prefixes)

and the next-unit logits are read at the separator (the LM's side of it: ``UnitLM.run``). Training and inference
both use it, so a task behaves the same alone or batched with other tasks.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

from .encoder.units import Units
from .lm import UnitLM, UnitLMConfig

VERBALIZERS = ("learnable", "freq", "random")
READ_AT = ("separator", "mean")
TASK_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
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
    voice: bool = True  # ... and its voice-code predictions, on a backbone with voice streams
    # where a learnable verbalizer reads the LM's next-token output: at the separator (the paper), or its mean over
    # every position from the first unit to the separator ("mean": what the prompted LM expects next, on average
    # over the clip; docs/FEWSHOT.md measures it)
    read_at: str = "separator"

    def __post_init__(self) -> None:
        if not 0 <= self.prompt_length <= 64:
            raise ValueError("prompt_length must be between 0 and 64")
        if self.verbalizer not in VERBALIZERS:
            raise ValueError(f"verbalizer must be one of {VERBALIZERS}, got {self.verbalizer!r}")
        if self.read_at not in READ_AT:
            raise ValueError(f"read_at must be one of {READ_AT}, got {self.read_at!r}")
        self.prosody = self.prosody and self.verbalizer == "learnable"  # a fixed verbalizer reads unit tokens
        self.voice = self.voice and self.verbalizer == "learnable"
        if self.verbalizer != "learnable":
            self.read_at = "separator"  # a fixed verbalizer reads its unit tokens at the separator


#: Whose speech a prompt learned from (``TaskCard.training_speech``).
CARD_SPEECH = ("real", "synthetic", "both")
CARD_TEXT_MAX = 300  # characters of a card's one-line texts


@dataclass(frozen=True)
class TaskCard:
    """What to read beside a task's answer: whose speech the prompt learned from, which of its figures is the
    honest one and what that figure measures, and what the prompt is not for.

    ``headline_metric`` names a number among the prompt's metrics (``test_accuracy``, ``real_accuracy``,
    ``unseen_family_eer``...); a name ending in ``eer`` is an equal error rate (lower is better)."""

    training_speech: str  # "real" (recordings of people) | "synthetic" (synthesizers, vocoders) | "both"
    real_speakers: int  # people heard in training
    synthetic_voices: int  # synthetic voices (and vocoders) heard in training
    headline_metric: str
    test_means: str  # one line: what the headline figure measures, on whom
    not_for: str  # one line: what the prompt must not be used for

    def __post_init__(self) -> None:
        if self.training_speech not in CARD_SPEECH:
            raise PromptError(f"card.training_speech must be one of {CARD_SPEECH}, got {self.training_speech!r}.")
        for name in ("real_speakers", "synthetic_voices"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise PromptError(f"card.{name} must be a whole number >= 0, got {v!r}.")
        heard = (self.real_speakers > 0, self.synthetic_voices > 0)
        if heard != {"real": (True, False), "synthetic": (False, True), "both": (True, True)}[self.training_speech]:
            raise PromptError(f"card.training_speech {self.training_speech!r} does not match {self.real_speakers} "
                              f"real speakers and {self.synthetic_voices} synthetic voices.")
        for name in ("headline_metric", "test_means", "not_for"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip() or len(v) > CARD_TEXT_MAX:
                raise PromptError(f"card.{name} must be a non-empty text of at most {CARD_TEXT_MAX} characters.")

    @classmethod
    def from_json(cls, d: Any, metrics: Mapping[str, Any]) -> "TaskCard":
        """A card from task.json's ``card`` object; its headline metric must be a number among ``metrics``."""
        if not isinstance(d, dict):
            raise PromptError("card must be a JSON object.")
        names = [f.name for f in fields(cls)]
        missing, unknown = [n for n in names if n not in d], sorted(set(d) - set(names))
        if missing or unknown:
            raise PromptError(f"card: missing fields {missing}, unknown fields {unknown}.")
        card = cls(**{n: d[n] for n in names})
        value = metrics.get(card.headline_metric) if isinstance(metrics, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PromptError(f"card.headline_metric {card.headline_metric!r} is not a number among the metrics.")
        return card

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def lower_is_better(self) -> bool:
        return self.headline_metric.endswith("eer")


@dataclass
class TaskInfo:
    """The JSON side of a prompt: what the task is and how the prompt was made (``card``: optional)."""

    id: str
    labels: list[str]
    title: str = ""
    description: str = ""
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    card: TaskCard | None = None

    def headline(self) -> tuple[str, float] | None:
        """The card's honest figure ``(metric name, value)``, or None without a card."""
        if self.card is None:
            return None
        value = self.metrics.get(self.card.headline_metric) if isinstance(self.metrics, dict) else None
        return (self.card.headline_metric, float(value)) if isinstance(value, (int, float)) else None

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
    """Size of each next-token output the LM has (duration and pitch only for a prosody-aware LM, voice only with
    voice streams)."""
    sizes = {"units": lm_config.vocab_size, "duration": lm_config.n_duration, "pitch": lm_config.n_pitch,
             "voice": lm_config.n_voice * lm_config.voice_buckets}
    return {k: v for k, v in sizes.items() if v}


def verbalizer_reads(lm_config: UnitLMConfig, config: PromptConfig) -> tuple[str, ...]:
    """The LM outputs a prompt's verbalizer reads: the units, plus duration and pitch (``prosody``) and the voice
    codes (``voice``) where a learnable verbalizer asks for them and the LM has them."""
    wanted = {"units": True, "duration": config.prosody, "pitch": config.prosody, "voice": config.voice}
    return tuple(s for s in stream_sizes(lm_config) if wanted[s])


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
        self.reads: tuple[str, ...] = verbalizer_reads(lm_config, self.config)
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

    def verbalizer_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.config.verbalizer}
        if self.verbalizer is None:
            d["tokens"] = self.tokens.tolist()
        else:
            d["reads"] = list(self.reads)
            if self.config.read_at != "separator":
                d["read_at"] = self.config.read_at
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


@dataclass
class UnitBatch:
    """Unit sequences padded to one length: ids, duration and pitch buckets ``(B, T)``, voice codes ``(B, T, S)``
    (None without voice streams), and true lengths."""

    ids: torch.Tensor
    dur: torch.Tensor
    pitch: torch.Tensor
    lengths: list[int]
    voice: torch.Tensor | None = None


def collate(units: Sequence[Units], max_len: int) -> UnitBatch:
    """Pad unit sequences (each truncated to ``max_len``) into one batch."""
    ids = [u.ids[:max_len] for u in units]
    dur = [u.duration_buckets()[:max_len] for u in units]
    pitch = [u.pitch_buckets()[:max_len] for u in units]
    has_voice = all(u.voice is not None for u in units) and len(units) > 0
    return UnitBatch(
        ids=pad_sequence(ids, batch_first=True),
        dur=pad_sequence(dur, batch_first=True),
        pitch=pad_sequence(pitch, batch_first=True),
        lengths=[int(t.numel()) for t in ids],
        voice=pad_sequence([u.voice[:max_len] for u in units], batch_first=True) if has_voice else None,
    )


def max_units(lm: UnitLM, prompts: Sequence[TaskPrompt]) -> int:
    """How many units fit in the LM's context after the longest prompt and the separator."""
    longest = max((p.config.prompt_length for p in prompts), default=0)
    return lm.config.block_size - longest - 1


@dataclass
class PromptedOutput:
    logits: dict[str, torch.Tensor]  # the LM's next-token outputs at each row's separator: "units" (B, V), ...
    class_logits: list[torch.Tensor]  # per row, (n_classes of that row's task,)
    # rows whose verbalizer reads the mean: log of the mean next-token distribution over the clip, per stream
    mean_logp: dict[str, torch.Tensor] | None = None
    # what each row's verbalizer reads, as logits (B, V) per stream: the separator's, or the clip's mean for
    # rows whose prompt reads the mean (their log-probabilities)
    read_logits: dict[str, torch.Tensor] | None = None

    @property
    def unit_logits(self) -> torch.Tensor:
        return self.logits["units"]


def mean_log_distribution(logits: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """``logits (B, T, V)`` -> log of the mean next-token distribution over positions ``starts[b]..ends[b]``."""
    T = logits.shape[1]
    pos = torch.arange(T)[None, :]
    w = ((pos >= starts[:, None]) & (pos <= ends[:, None])).to(logits.dtype)
    w = w / w.sum(1, keepdim=True)
    probs = torch.softmax(logits, dim=-1)
    return torch.log(torch.einsum("bt,btv->bv", w, probs).clamp_min(1e-8))


def prompted_forward(lm: UnitLM, units: Sequence[Units], prompts: Sequence[TaskPrompt]) -> PromptedOutput:
    """One pass of the frozen LM over rows that may each carry a different task prompt."""
    if len(units) != len(prompts):
        raise ValueError("one prompt per row is needed")
    one_clip = all(u is units[0] for u in units)  # one clip, many tasks: embed it once
    batch = collate(units[:1] if one_clip else units, max_units(lm, prompts))
    tokens = lm.embed(batch.ids, batch.dur, batch.pitch, batch.voice)
    src = [0] * len(units) if one_clip else range(len(units))
    rows = [
        torch.cat([p.input_prompt, tokens[s, : batch.lengths[s]], p.separator[None]], dim=0)
        for s, p in zip(src, prompts)
    ]
    last = torch.tensor([r.shape[0] - 1 for r in rows])
    x = pad_sequence(rows, batch_first=True)
    prefix, mask = _stack_prefixes(lm, prompts)
    P = prompts[0].config.prompt_length
    shared = None  # the clip's units sit at the same positions of every row: the first layer projects them once
    if one_clip and all(p.config.prompt_length == P for p in prompts):
        shared = slice(P, P + batch.lengths[0])
    pooled = [b for b, p in enumerate(prompts) if p.verbalizer is not None and p.config.read_at == "mean"]
    mean_logp = None
    if pooled:  # every position's output is needed: the last layer runs on all of them
        h = lm.run(x, prefix, mask, shared=shared)
        logits = lm.next_token_logits(h[torch.arange(len(rows)), last])
        sel = torch.tensor(pooled)
        starts = torch.tensor([prompts[b].config.prompt_length for b in pooled])
        full = lm.next_token_logits(h[sel])
        mean_logp = {k: mean_log_distribution(v, starts, last[sel]) for k, v in full.items()}
    else:
        logits = lm.next_token_logits(lm.run(x, prefix, mask, read_at=last, shared=shared))
    class_logits: list[torch.Tensor | None] = [None] * len(rows)
    groups: dict[int, list[int]] = {}
    for b, p in enumerate(prompts):
        groups.setdefault(id(p), []).append(b)
    # learnable verbalizers read standardised streams: standardise each stream they read once for every row
    reads = {s for p in prompts if p.verbalizer is not None and p.config.read_at == "separator" for s in p.reads} \
        if len(groups) > 1 else set()
    ready = {s: standardised(logits[s]) for s in reads if s in logits}
    row_of = {b: j for j, b in enumerate(pooled)}
    for idx in groups.values():
        prompt = prompts[idx[0]]
        if mean_logp is not None and idx[0] in row_of:
            rs = [row_of[b] for b in idx]
            out = prompt.classify({k: v[rs] for k, v in mean_logp.items()})
        else:
            sel = slice(idx[0], idx[0] + 1) if len(idx) == 1 else idx  # a slice is a view, a list copies
            out = prompt.classify({k: v[sel] for k, v in logits.items()}, {k: v[sel] for k, v in ready.items()})
        for j, b in enumerate(idx):
            class_logits[b] = out[j]
    read = logits
    if mean_logp is not None:
        read = {k: v.clone() for k, v in logits.items()}
        for k in read:
            read[k][torch.tensor(pooled)] = mean_logp[k]
    return PromptedOutput(logits=logits, class_logits=class_logits, mean_logp=mean_logp,  # type: ignore[arg-type]
                          read_logits=read)


def _stack_prefixes(lm: UnitLM, prompts: Sequence[TaskPrompt]):
    """Deep prompts of all rows as ``(B, n_layer, 2, n_head, P, head_dim)`` plus a ``(B, P)`` validity mask."""
    prefixes = [p.prefix() for p in prompts]
    P = max((t.shape[-2] for t in prefixes if t is not None), default=0)
    if P == 0:
        return None, None
    cfg = lm.config
    first = next(t for t in prefixes if t is not None)
    if all(t is not None and t.shape[-2] == P for t in prefixes) and len({id(p) for p in prompts}) == 1:
        return first[None].expand(len(prompts), *first.shape), None
    out, mask = [], torch.zeros(len(prompts), P, dtype=torch.bool)
    for b, t in enumerate(prefixes):
        if t is None:
            t = first.new_zeros(cfg.n_layer, 2, cfg.n_head, 0, cfg.head_dim)
        mask[b, : t.shape[-2]] = True
        out.append(torch.nn.functional.pad(t, (0, 0, 0, P - t.shape[-2])))
    return torch.stack(out), mask
