"""Backbone + many task prompts -> predictions, in one batched pass over the frozen LM.

:func:`prompted_forward` is the single place where SpeechPrompt v2's sequence is built, per row of a batch:

    [input prompt (P vectors)] [unit embeddings + duration + pitch] [separator]   (+ deep prompt prefixes)

and the next-unit logits are read at the separator. Training and inference both use it, so a task behaves the
same alone or batched with other tasks.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from .audio import Audio, AudioInput, prepare
from .backbone import ROOT, Backbone
from .lm import UnitLM
from .prompts import PromptError, TaskPrompt, check_task_id, load_prompt, standardised
from .units import Units

log = logging.getLogger(__name__)
DEFAULT_PROMPTS_DIR = ROOT / "prompts"


@dataclass
class UnitBatch:
    """Unit sequences padded to one length: ids, duration and pitch buckets ``(B, T)``, and true lengths."""

    ids: torch.Tensor
    dur: torch.Tensor
    pitch: torch.Tensor
    lengths: list[int]


def collate(units: Sequence[Units], max_len: int) -> UnitBatch:
    """Pad unit sequences (each truncated to ``max_len``) into one batch."""
    ids = [u.ids[:max_len] for u in units]
    dur = [u.duration_buckets()[:max_len] for u in units]
    pitch = [u.pitch_buckets()[:max_len] for u in units]
    return UnitBatch(
        ids=pad_sequence(ids, batch_first=True),
        dur=pad_sequence(dur, batch_first=True),
        pitch=pad_sequence(pitch, batch_first=True),
        lengths=[int(t.numel()) for t in ids],
    )


def max_units(lm: UnitLM, prompts: Sequence[TaskPrompt]) -> int:
    """How many units fit in the LM's context after the longest prompt and the separator."""
    longest = max((p.config.prompt_length for p in prompts), default=0)
    return lm.config.block_size - longest - 1


@dataclass
class PromptedOutput:
    logits: dict[str, torch.Tensor]  # the LM's next-token outputs at each row's separator: "units" (B, V), ...
    class_logits: list[torch.Tensor]  # per row, (n_classes of that row's task,)

    @property
    def unit_logits(self) -> torch.Tensor:
        return self.logits["units"]


def prompted_forward(lm: UnitLM, units: Sequence[Units], prompts: Sequence[TaskPrompt]) -> PromptedOutput:
    """One pass of the frozen LM over rows that may each carry a different task prompt."""
    if len(units) != len(prompts):
        raise ValueError("one prompt per row is needed")
    one_clip = all(u is units[0] for u in units)  # one clip, many tasks: embed it once
    batch = collate(units[:1] if one_clip else units, max_units(lm, prompts))
    tokens = lm.embed(batch.ids, batch.dur, batch.pitch)
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
    logits = lm.next_token_logits(lm.run(x, prefix, mask, read_at=last, shared=shared))
    class_logits: list[torch.Tensor | None] = [None] * len(rows)
    groups: dict[int, list[int]] = {}
    for b, p in enumerate(prompts):
        groups.setdefault(id(p), []).append(b)
    # learnable verbalizers read standardised streams: standardise each stream they read once for every row
    reads = {s for p in prompts if p.verbalizer is not None for s in p.reads} if len(groups) > 1 else set()
    ready = {s: standardised(logits[s]) for s in reads if s in logits}
    for idx in groups.values():
        sel = slice(idx[0], idx[0] + 1) if len(idx) == 1 else idx  # a slice is a view, a list copies
        out = prompts[idx[0]].classify({k: v[sel] for k, v in logits.items()},
                                       {k: v[sel] for k, v in ready.items()})
        for j, b in enumerate(idx):
            class_logits[b] = out[j]
    return PromptedOutput(logits=logits, class_logits=class_logits)  # type: ignore[arg-type]


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


@dataclass
class Prediction:
    """One task's answer for one clip."""

    task: str
    labels: list[str]
    probs: torch.Tensor  # (n_classes,)
    stream_probs: dict[str, torch.Tensor]  # the prompted LM's next-token distributions at the separator, per stream

    @property
    def unit_probs(self) -> torch.Tensor:
        """(V,) the next-unit distribution."""
        return self.stream_probs["units"]

    @property
    def label(self) -> str:
        return self.labels[int(self.probs.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probs.max())

    def probs_dict(self) -> dict[str, float]:
        return {lab: round(float(p), 6) for lab, p in zip(self.labels, self.probs)}

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "label": self.label, "probs": self.probs_dict()}


@dataclass
class Analysis:
    """Everything the UI shows for one clip: audio, units, predictions, timings (ms) and notices."""

    audio: Audio
    units: Units
    predictions: list[Prediction]
    timings_ms: dict[str, float]
    notices: list[str] = field(default_factory=list)


class Engine:
    """The frozen backbone plus the loaded task prompts."""

    def __init__(self, backbone: Backbone, prompts: dict[str, TaskPrompt] | None = None) -> None:
        self.backbone = backbone
        self.prompts: dict[str, TaskPrompt] = dict(prompts or {})
        self.skipped: dict[str, str] = {}

    @classmethod
    def load(cls, backbone_dir: str | Path | None = None, prompts_dir: str | Path | None = None) -> "Engine":
        """Load a backbone and every valid prompt folder for it; malformed prompts are skipped with a warning."""
        engine = cls(Backbone.load(backbone_dir))
        engine.load_prompts(prompts_dir if prompts_dir is not None else DEFAULT_PROMPTS_DIR)
        return engine

    def load_prompts(self, folder: str | Path) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            return
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and (p / "task.json").exists()):
            try:
                prompt = load_prompt(sub, self.backbone.lm.config, self.backbone.fingerprint)
                if prompt.task != sub.name:
                    raise PromptError(f"task.json id {prompt.task!r} does not match folder name {sub.name!r}")
            except PromptError as exc:
                self.skipped[sub.name] = str(exc)
                log.warning("Skipping prompt %s: %s", sub.name, exc)
                continue
            self.add(prompt)

    def add(self, prompt: TaskPrompt) -> None:
        if prompt.lm_config != self.backbone.lm.config:
            raise PromptError(f"Prompt {prompt.task!r} does not fit this backbone's LM.")
        prompt.eval()
        prompt.requires_grad_(False)
        self.prompts[prompt.task] = prompt

    def get(self, task: str) -> TaskPrompt:
        check_task_id(task)
        if task not in self.prompts:
            raise PromptError(f"Unknown task {task!r}. Available: {', '.join(sorted(self.prompts)) or 'none'}.")
        return self.prompts[task]

    @property
    def tasks(self) -> list[str]:
        return sorted(self.prompts)

    @torch.no_grad()
    def encode(self, source: AudioInput, sample_rate: int | None = None, max_seconds: float = 30.0) -> tuple[Audio, Units]:
        audio = prepare(source, sample_rate, max_seconds=max_seconds)
        return audio, self.backbone.encoder(audio.wav)

    @torch.no_grad()
    def predict_units(self, units: Units, tasks: Sequence[str]) -> list[Prediction]:
        """All ``tasks`` for one clip in one batched forward pass."""
        prompts = [self.get(t) for t in tasks]
        if not prompts:
            return []
        out = prompted_forward(self.backbone.lm, [units] * len(prompts), prompts)
        probs = {k: torch.softmax(v, dim=-1) for k, v in out.logits.items()}
        return [
            Prediction(p.task, p.labels, torch.softmax(c, dim=-1), {k: v[i] for k, v in probs.items()})
            for i, (p, c) in enumerate(zip(prompts, out.class_logits))
        ]

    @torch.no_grad()
    def unprompted_distribution(self, units: Units) -> torch.Tensor:
        """The frozen LM's own next-unit distribution after the units and its end-of-utterance token."""
        lm = self.backbone.lm
        ids = torch.cat([units.ids[: lm.config.block_size - 1], torch.tensor([lm.config.eos])])[None]
        dur = torch.cat([units.duration_buckets()[: lm.config.block_size - 1], torch.zeros(1, dtype=torch.long)])[None]
        pitch = torch.cat([units.pitch_buckets()[: lm.config.block_size - 1], torch.zeros(1, dtype=torch.long)])[None]
        return torch.softmax(lm(ids, dur, pitch)["units"][0, -1], dim=-1)

    def analyze(self, source: AudioInput, tasks: Sequence[str], sample_rate: int | None = None) -> Analysis:
        """Decode, encode and classify with timings per stage."""
        t0 = time.perf_counter()
        audio = prepare(source, sample_rate)
        t1 = time.perf_counter()
        with torch.no_grad():
            units = self.backbone.encoder(audio.wav)
        t2 = time.perf_counter()
        preds = self.predict_units(units, tasks)
        t3 = time.perf_counter()
        notices = list(audio.notices)
        limit = max_units(self.backbone.lm, [self.get(t) for t in tasks])
        if len(units) > limit:
            notices.append(f"Only the first {limit} of {len(units)} units fit the LM's context.")
        timings = {"decode": (t1 - t0) * 1e3, "encode": (t2 - t1) * 1e3, "lm": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3}
        return Analysis(audio=audio, units=units, predictions=preds, timings_ms=timings, notices=notices)

    def classify(self, source: AudioInput, task: str, sample_rate: int | None = None) -> Prediction:
        return self.analyze(source, [task], sample_rate).predictions[0]
