"""Training on unit sequences: prompt tuning (SpeechPrompt), full fine-tuning, and few-shot training from clips.

Every run goes through one loop (:func:`fit`): AdamW, class-balanced loss, a validation split with early stopping,
seeds, an optional augmentation hook on units, and a progress callback that receives a dict per epoch, so a tqdm
bar (CLI) and ``gr.Progress`` / a live plot (UI) can both follow along. The backbone is never modified: prompt
tuning trains only the prompt, fine-tuning trains a copy of the LM.
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .encoder.units import Units
from .lm import UnitLM
from .prompting import PromptConfig, TaskInfo, TaskPrompt, prompted_forward

Progress = Callable[[dict], None]
Augment = Callable[[Units, np.random.Generator], Units]


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 5e-3  # prompt / verbalizer / probe learning rate
    lm_lr: float = 1e-4  # LM learning rate in full fine-tuning
    weight_decay: float = 0.01
    patience: int = 8  # epochs without validation improvement before stopping
    seed: int = 0
    balance: bool = True  # weight the loss by inverse class frequency
    target_train_acc: float | None = None  # stop once training accuracy reaches this (no-validation runs)
    max_seconds: float | None = None  # wall-clock budget
    augment: Augment | None = None
    should_stop: Callable[[], bool] | None = None  # checked after every epoch (e.g. the visitor left)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float | None = None
    train_acc: float = 0.0
    seconds: float = 0.0
    stopped: str = "epochs"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    model: nn.Module,
    logits_fn: Callable[[Sequence[Units]], torch.Tensor],
    param_groups: list[dict],
    train: Sequence[tuple[Units, int]],
    val: Sequence[tuple[Units, int]] | None,
    n_classes: int,
    cfg: TrainConfig,
    progress: Progress | None = None,
) -> TrainResult:
    """Generic loop: ``logits_fn(units_list) -> (B, n_classes)``; keeps the best state of ``model``'s trainables."""
    if not train:
        raise ValueError("No training examples.")
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    labels = torch.tensor([y for _, y in train])
    counts = torch.bincount(labels, minlength=n_classes).float()
    weight = (counts.sum() / (n_classes * counts.clamp_min(1))) if cfg.balance else None
    opt = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    trainable = [p for g in param_groups for p in g["params"]]
    steps_per_epoch = max(1, -(-len(train) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in param_groups], total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1
    )
    result = TrainResult()
    best_score, best_state, bad_epochs = -1.0, None, 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        total_loss, correct = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            units = [train[j][0] for j in idx]
            if cfg.augment is not None:
                units = [cfg.augment(u, rng) for u in units]
            y = labels[idx]
            logits = logits_fn(units)
            loss = F.cross_entropy(logits, y, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        model.eval()
        train_acc = correct / len(train)
        if cfg.target_train_acc is not None:  # small live sets: measure it exactly, with the weights as they are now
            train_acc = evaluate(logits_fn, train, cfg.batch_size)[0]
        val_acc, val_loss = evaluate(logits_fn, val, cfg.batch_size) if val else (None, None)
        row = {"epoch": epoch, "epochs": cfg.epochs, "loss": total_loss / len(train), "train_acc": train_acc,
               "val_acc": val_acc, "val_loss": val_loss, "seconds": time.perf_counter() - start}
        result.history.append(row)
        # Early stopping score: validation accuracy (ties broken by loss), else training accuracy/loss.
        score = (val_acc - 1e-3 * val_loss) if val else (train_acc - 1e-3 * row["loss"])
        if score > best_score:
            best_score, bad_epochs, result.best_epoch = score, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            result.best_val_acc = val_acc
        else:
            bad_epochs += 1
        if progress is not None:
            progress(row)
        if cfg.target_train_acc is not None and train_acc >= cfg.target_train_acc:
            result.stopped = "target"
            break
        if val and bad_epochs >= cfg.patience:
            result.stopped = "early"
            break
        if cfg.should_stop is not None and cfg.should_stop():
            result.stopped = "stopped"
            break
        if cfg.max_seconds is not None and row["seconds"] > cfg.max_seconds:
            result.stopped = "time"
            break
    if best_state is not None and result.stopped != "target":
        model.load_state_dict(best_state)
    model.eval()
    result.train_acc = evaluate(logits_fn, train, cfg.batch_size)[0]
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate(logits_fn, data: Sequence[tuple[Units, int]], batch_size: int = 64) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``logits_fn`` on labelled units."""
    correct, loss = 0, 0.0
    for i in range(0, len(data), batch_size):
        chunk = data[i : i + batch_size]
        logits = logits_fn([u for u, _ in chunk])
        y = torch.tensor([label for _, label in chunk])
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
    return correct / max(len(data), 1), loss / max(len(data), 1)


@torch.no_grad()
def predict_proba(logits_fn, units: Sequence[Units], batch_size: int = 64) -> torch.Tensor:
    out = [torch.softmax(logits_fn(list(units[i : i + batch_size])), dim=-1) for i in range(0, len(units), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def prompt_logits_fn(lm: UnitLM, prompt: TaskPrompt) -> Callable[[Sequence[Units]], torch.Tensor]:
    """Class logits of a prompted frozen LM, through the same path as inference."""
    return lambda units: torch.stack(prompted_forward(lm, units, [prompt] * len(units)).class_logits)


def train_prompt(lm: UnitLM, prompt: TaskPrompt, train, val=None, cfg: TrainConfig | None = None,
                 progress: Progress | None = None) -> TrainResult:
    """SpeechPrompt tuning: only the prompt (and a learnable verbalizer) learns; the LM stays frozen."""
    cfg = cfg or TrainConfig()
    lm.eval()
    lm.requires_grad_(False)
    prompt.requires_grad_(True)
    groups = [{"params": [p for p in prompt.parameters() if p.requires_grad], "lr": cfg.lr}]
    return fit(prompt, prompt_logits_fn(lm, prompt), groups, train, val, len(prompt.labels), cfg, progress)


class FineTuned(nn.Module):
    """Full fine-tuning baseline: a private copy of the LM trained together with a prompt and verbalizer."""

    def __init__(self, lm: UnitLM, prompt: TaskPrompt) -> None:
        super().__init__()
        self.lm = copy.deepcopy(lm).requires_grad_(True)
        self.prompt = prompt

    def forward(self, units: Sequence[Units]) -> torch.Tensor:
        return torch.stack(prompted_forward(self.lm, units, [self.prompt] * len(units)).class_logits)

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def finetune(lm: UnitLM, prompt: TaskPrompt, train, val=None, cfg: TrainConfig | None = None,
             progress: Progress | None = None) -> tuple[FineTuned, TrainResult]:
    cfg = cfg or TrainConfig()
    model = FineTuned(lm, prompt)
    prompt.requires_grad_(True)
    groups = [{"params": list(model.lm.parameters()), "lr": cfg.lm_lr},
              {"params": list(prompt.parameters()), "lr": cfg.lr}]
    result = fit(model, model, groups, train, val, len(prompt.labels), cfg, progress)
    return model, result


def fixed_verbalizer_tokens(kind: str, units: Sequence[Units], n_classes: int, vocab: int, seed: int = 0) -> list[int]:
    """SpeechPrompt v1 fixed verbalizers: each class gets one unit token, the ``n_classes`` most frequent units
    in the training data (``freq``) or distinct units drawn at random (``random``)."""
    if kind == "freq":
        counts = torch.zeros(vocab - 1)
        for u in units:
            counts += torch.bincount(u.ids, minlength=vocab - 1)[: vocab - 1].float()
        return counts.argsort(descending=True, stable=True)[:n_classes].tolist()
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.randperm(vocab - 1, generator=g)[:n_classes].tolist()
    raise ValueError(f"not a fixed verbalizer: {kind!r}")


def new_prompt(lm: UnitLM, info, config, train_units: Sequence[Units], seed: int = 0) -> TaskPrompt:
    """A freshly initialised prompt for ``info``'s labels, its fixed tokens (if any) chosen from training data."""
    tokens = None
    if config.verbalizer != "learnable":
        tokens = fixed_verbalizer_tokens(config.verbalizer, train_units, len(info.labels), lm.config.vocab_size, seed)
    with torch.random.fork_rng():  # the verbalizer's random init is seeded too: same data, same prompt
        torch.manual_seed(seed)
        prompt = TaskPrompt(lm.config, info, config, tokens=tokens)
    prompt.init_from_lm(lm, torch.Generator().manual_seed(seed))
    return prompt


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices for train / validation, keeping every class in training (validation only for classes with 3+)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction)) if len(idx) >= 3 else 0
        val_idx += idx[:n_val]
        train_idx += idx[n_val:]
    return sorted(train_idx), sorted(val_idx)


# Few-shot training from a handful of clips per class: "Train a prompt" in the app, and what the benchmark times.
MIN_CLASSES, MAX_CLASSES = 2, 10
MIN_PER_CLASS, MAX_PER_CLASS = 3, 30
MAX_CLIP_SECONDS = 10.0  # each example clip is cut to this
FEW_SHOT_SECONDS = 60.0  # wall-clock budget of one run
# No early stopping on the few held-out clips (one or two per class are too noisy to judge by): a run stops when
# every training clip is right, or when the time budget ends (then the best epoch is kept).
FEW_SHOT = TrainConfig(epochs=80, batch_size=16, lr=1e-2, target_train_acc=1.0, max_seconds=FEW_SHOT_SECONDS,
                       seed=0, patience=80)


@dataclass
class FewShot:
    """A few-shot run ready to start: a fresh prompt, the examples split into training and held-out clips."""

    prompt: TaskPrompt
    train: list[tuple[Units, int]]
    val: list[tuple[Units, int]]
    config: TrainConfig

    def run(self, lm: UnitLM, progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None) -> TrainResult:
        """Train (only the prompt learns), then freeze the prompt and record the run in its task info's metrics."""
        cfg = replace(self.config, should_stop=should_stop)
        result = train_prompt(lm, self.prompt, self.train, self.val or None, cfg, progress)
        self.prompt.eval()
        self.prompt.requires_grad_(False)
        self.prompt.info.metrics = {"train_accuracy": round(result.train_acc, 4), "val_accuracy": result.best_val_acc,
                                    "epochs_run": len(result.history), "train_seconds": round(result.seconds, 1)}
        return result


def few_shot(lm: UnitLM, task: str, title: str, examples: Mapping[str, Sequence[Units]], config: PromptConfig,
             max_seconds: float = FEW_SHOT_SECONDS) -> FewShot:
    """Prepare training a prompt from labelled clips: ``examples`` maps each class to its clips' units. With 5 or
    more clips in every class, a fifth of each class is held out; the prompt is seeded (same clips, same run)."""
    labels = list(examples)
    if not MIN_CLASSES <= len(labels) <= MAX_CLASSES or min(len(v) for v in examples.values()) < MIN_PER_CLASS:
        raise ValueError(f"Few-shot training needs {MIN_CLASSES}-{MAX_CLASSES} classes with at least "
                         f"{MIN_PER_CLASS} examples each.")
    data = [(u, y) for y, c in enumerate(labels) for u in examples[c]]
    ys = [y for _, y in data]
    use_val = min(ys.count(y) for y in range(len(labels))) >= 5
    tr_idx, va_idx = stratified_split(ys, 0.2, seed=0) if use_val else (list(range(len(data))), [])
    train, val = [data[i] for i in tr_idx], [data[i] for i in va_idx]
    info = TaskInfo(id=task, labels=labels, title=title,
                    description=f"Trained in the browser on {len(data)} clips ({', '.join(labels)}).",
                    training_data=f"{len(train)} training / {len(val)} held-out clips given by a visitor")
    prompt = new_prompt(lm, info, config, [u for u, _ in train], seed=0)
    return FewShot(prompt, train, val, replace(FEW_SHOT, max_seconds=max_seconds))
