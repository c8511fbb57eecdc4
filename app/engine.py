"""Serving: the frozen backbone + many task prompts -> predictions, all tasks of a clip in one batched pass
(through :func:`app.prompting.prompted_forward`, the same path training uses)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .backbone import Backbone
from .encoder.audio import Audio, AudioInput, prepare
from .encoder.units import Units
from .prompt_files import load_prompt
from .prompting import PromptError, TaskPrompt, check_task_id, collate, max_units, prompted_forward
from .settings import DEFAULT_PROMPTS_DIR

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One task's answer for one clip."""

    task: str
    labels: list[str]
    probs: torch.Tensor  # (n_classes,)
    # the prompted LM's next-token distributions the verbalizer reads, per stream: at the separator, or averaged over
    # the clip for a prompt that reads the mean
    stream_probs: dict[str, torch.Tensor]

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


def one_line(text: str, limit: int = 300) -> str:
    """A message as one line of at most ``limit`` characters (a warning about a bad file stays readable)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
            except Exception as exc:  # noqa: BLE001 -- a bad prompt folder is skipped, never fatal to the app
                why = str(exc) if isinstance(exc, PromptError) else f"unexpected {type(exc).__name__}: {exc}"
                self.skipped[sub.name] = one_line(why)
                log.warning("Skipping prompt %s: %s", sub.name, self.skipped[sub.name])
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
    def encode(self, source: AudioInput, sample_rate: int | None = None,
               max_seconds: float = 30.0) -> tuple[Audio, Units]:
        audio = prepare(source, sample_rate, max_seconds=max_seconds)
        return audio, self.backbone.encoder(audio.wav)

    @torch.no_grad()
    def predict_units(self, units: Units, tasks: Sequence[str]) -> list[Prediction]:
        """All ``tasks`` for one clip in one batched forward pass."""
        prompts = [self.get(t) for t in tasks]
        if not prompts:
            return []
        out = prompted_forward(self.backbone.lm, [units] * len(prompts), prompts)
        probs = {k: torch.softmax(v, dim=-1) for k, v in (out.read_logits or out.logits).items()}
        return [
            Prediction(p.task, p.labels, torch.softmax(c, dim=-1), {k: v[i] for k, v in probs.items()})
            for i, (p, c) in enumerate(zip(prompts, out.class_logits))
        ]

    @torch.no_grad()
    def unprompted_distribution(self, units: Units) -> torch.Tensor:
        """The frozen LM's own next-unit distribution after the units and its end-of-utterance token."""
        lm = self.backbone.lm
        batch = collate([units], lm.config.block_size - 1)  # the units, then the end-of-utterance token
        eos, blank = torch.tensor([[lm.config.eos]]), torch.zeros(1, 1, dtype=torch.long)
        voice = batch.voice
        if voice is not None:  # the end token carries code 0 of every voice stream, as in the LM's training
            voice = torch.cat([voice, voice.new_zeros(1, 1, voice.shape[-1])], 1)
        out = lm(torch.cat([batch.ids, eos], 1), torch.cat([batch.dur, blank], 1), torch.cat([batch.pitch, blank], 1),
                 voice)
        return torch.softmax(out["units"][0, -1], dim=-1)

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
