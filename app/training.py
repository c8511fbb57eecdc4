"""Training on unit sequences: prompt tuning (SpeechPrompt), full fine-tuning, and few-shot training from clips.

Every run goes through one loop (:func:`fit`): AdamW, class-balanced loss, an optional validation split with early
stopping, seeds, an optional augmentation hook on units, and a progress callback that receives a dict per epoch, so
a tqdm bar (CLI) and ``gr.Progress`` / a live plot (UI) can both follow along. The backbone is never modified: prompt
tuning trains only the prompt, fine-tuning trains a copy of the LM.

Every prompt is trained by one function, :func:`train_task` (the Train view through :func:`few_shot`, ``python -m
app train`` and recipes/build/train_prompts.py): takes (units plus the units of perturbed copies,
:func:`make_take`), an optional start from another prompt (SPoT), a class-mean start of the verbalizer, the run, and
one record of it in the prompt's task info. :func:`cross_validate` gives the Train view its held-out estimate.
docs/FEWSHOT.md measures each piece.
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


TRAIN_MAX_SECONDS = 1800.0  # the command line's default wall-clock budget (the app's runs have 60 s)
MAX_TRAIN_SECONDS = 24 * 3600.0


def check_max_seconds(value: float) -> float:
    """A training time budget a person gave: positive and at most a day."""
    if not 0 < value <= MAX_TRAIN_SECONDS:
        raise ValueError(f"The training time limit must be between 0 and {MAX_TRAIN_SECONDS:g} s, got {value:g}.")
    return float(value)


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


# ------------------------------------------------------------------------------------------------------------------
# The one training flow: a prompt from labelled clips (the Train view, `python -m app train`, the recipes)
# ------------------------------------------------------------------------------------------------------------------
MIN_CLASSES, MAX_CLASSES = 2, 10
MIN_PER_CLASS, MAX_PER_CLASS = 3, 30
MAX_CLIP_SECONDS = 10.0  # each example clip is cut to this
FEW_SHOT_SECONDS = 60.0  # wall-clock budget of one run (the view's; the bench's 5 x 5 target is 10 s)
VERBALIZER_INITS = ("class_means", "random", "linear_probe")


@dataclass
class Take:
    """One labelled recording as the training flow sees it: its units, plus the units of perturbed copies of its
    audio (:mod:`app.encoder.augment`; each copy was encoded on its own)."""

    units: Units
    copies: list[Units] = field(default_factory=list)

    def __len__(self) -> int:  # a take reads like its units where a length is asked for
        return len(self.units)


def as_take(x: "Take | Units") -> Take:
    return x if isinstance(x, Take) else Take(x)


def make_take(encoder, wav: torch.Tensor, n_copies: int, seed: int, noise_dir=None, units: Units | None = None) -> Take:
    """Encode a prepared 16 kHz clip and ``n_copies`` perturbed copies of it (speed, pitch, room, noise...)."""
    from .encoder import augment

    with torch.no_grad():
        base = units if units is not None else encoder(wav)
        rng = np.random.default_rng(seed)
        return Take(base, [encoder(w) for w in augment.copies(wav, n_copies, rng, noise_dir)])


def clip_seed(wav: torch.Tensor) -> int:
    """A seed from a clip's samples: the same recording always gets the same perturbed copies."""
    import zlib

    return zlib.crc32(wav[:: max(1, wav.numel() // 4096)].numpy().tobytes())


@dataclass
class FewShotSettings:
    """How a prompt is trained from a few takes per class (chosen by docs/FEWSHOT.md's measurements)."""

    copies: int = 4  # perturbed copies of each take, encoded before training (0: none)
    steps: int = 40  # optimisation steps; no validation split and no early stop (too few takes to judge by)
    batch_size: int = 32
    lr: float = 1e-2
    verbalizer_init: str = "class_means"  # or "random", "linear_probe"
    unit_dropout: float = 0.0  # drop this share of a sequence's units at random in every step
    # start the input/deep prompt and separator from this installed prompt where it has the same shape (SPoT): the
    # shipped commands prompt helps words outside its labels too (docs/FEWSHOT.md); None: a fresh prompt
    transfer: str | None = "commands"
    cv_folds: int = 3  # held-out estimate: k-fold over the takes (0: none)
    cv_steps: int = 12  # steps of each fold's shorter run (3 folds x 12 steps cost about one main run)

    def __post_init__(self) -> None:
        if self.verbalizer_init not in VERBALIZER_INITS:
            raise ValueError(f"verbalizer_init must be one of {VERBALIZER_INITS}")


FEW_SHOT_SETTINGS = FewShotSettings()
#: The few-shot flow's prompt shape: the verbalizer reads the mean of the LM's next-token output over the clip.
FEW_SHOT_PROMPT = PromptConfig(read_at="mean")


def transfer_source(prompts: Mapping[str, TaskPrompt], config: PromptConfig,
                    settings: FewShotSettings | None = None) -> TaskPrompt | None:
    """The prompt a few-shot run starts from (SPoT): ``settings.transfer`` among the installed ``prompts`` if it is
    there and has the same shape as ``config`` asks for (prompt length, deep or not), else None (a fresh start)."""
    name = (settings or FEW_SHOT_SETTINGS).transfer
    src = prompts.get(name) if name else None
    if src is None or src.config.prompt_length != config.prompt_length or (src.deep_prompt is None) == config.deep:
        return None
    return src


def expand(data: Sequence[tuple["Take | Units", int]]) -> list[tuple[Units, int]]:
    """Takes to training rows: every take's units and each of its copies, with the take's label."""
    out = []
    for x, y in data:
        t = as_take(x)
        out += [(t.units, y)] + [(c, y) for c in t.copies]
    return out


def drop_units(p: float) -> Augment:
    """A unit-level augmentation: drop each unit with probability ``p`` (never all of them)."""
    def fn(u: Units, rng: np.random.Generator) -> Units:
        if len(u) < 3:
            return u
        keep = torch.from_numpy(rng.random(len(u)) >= p)
        if not bool(keep.any()):
            return u
        return replace(u, ids=u.ids[keep], durations=u.durations[keep], pitch=u.pitch[keep], frame_pitch=None,
                       voice=u.voice[keep] if u.voice is not None else None)
    return fn


@torch.no_grad()
def verbalizer_features(lm: UnitLM, prompt: TaskPrompt, units: Sequence[Units], batch_size: int = 64) -> torch.Tensor:
    """What the prompt's learnable verbalizer reads for each clip: the LM's standardised next-token outputs at the
    separator (:func:`app.prompting.verbalizer_input`)."""
    from .prompting import verbalizer_input

    rows = []
    for i in range(0, len(units), batch_size):
        chunk = list(units[i : i + batch_size])
        out = prompted_forward(lm, chunk, [prompt] * len(chunk))
        streams = out.mean_logp if prompt.config.read_at == "mean" else out.logits
        rows.append(verbalizer_input(streams, prompt.reads))
    return torch.cat(rows)


@torch.no_grad()
def init_verbalizer_from_means(lm: UnitLM, prompt: TaskPrompt, data: Sequence[tuple[Units, int]],
                               scale: float = 2.0) -> None:
    """Nearest-class-mean start for a learnable verbalizer: row c = mean feature of class c (centred), bias from
    its norm, scaled so the starting logits spread by about ``scale``. Training then refines it."""
    if prompt.verbalizer is None:
        return
    feats = verbalizer_features(lm, prompt, [u for u, _ in data])
    y = torch.tensor([label for _, label in data])
    n = len(prompt.labels)
    means = torch.stack([feats[y == c].mean(0) if bool((y == c).any()) else feats.mean(0) for c in range(n)])
    centre = means.mean(0)
    w = means - centre
    b = -0.5 * (means.pow(2).sum(1) - centre.pow(2).sum())
    logits = feats @ w.T + b
    s = scale / float((logits - logits.mean(1, keepdim=True)).std().clamp_min(1e-6))
    prompt.verbalizer.weight.copy_(w * s)
    prompt.verbalizer.bias.copy_(b * s)


#: inverse L2 strength of the linear-probe start, on scikit-learn's scale (C): the value LR on the frozen LM's
#: clip-mean outputs picks for emotion on two folds of unseen actors (recipes.experiments.readout_probe)
PROBE_C = 0.003


def init_verbalizer_from_probe(lm: UnitLM, prompt: TaskPrompt, data: Sequence[tuple[Units, int]],
                               c: float = PROBE_C, max_iter: int = 200) -> None:
    """LP-FT's start (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features"): the learnable verbalizer
    set to a class-balanced, L2-regularised multinomial logistic regression on the features it reads at the
    untrained prompt (fit on standardised features, then folded back into its weights and bias), so prompt tuning
    starts from the best linear read-out of the frozen LM instead of the class means."""
    if prompt.verbalizer is None:
        return
    feats = verbalizer_features(lm, prompt, [u for u, _ in data])
    y = torch.tensor([label for _, label in data])
    n = len(prompt.labels)
    mu, sd = feats.mean(0), feats.std(0).clamp_min(1e-6)
    z = (feats - mu) / sd
    counts = torch.bincount(y, minlength=n).float()
    weight = counts.sum() / (n * counts.clamp_min(1))
    w = torch.zeros(n, z.shape[1], requires_grad=True)
    b = torch.zeros(n, requires_grad=True)
    l2 = 1.0 / (c * len(z))  # C * sum(loss) + |w|^2 / 2, divided by C * N: mean loss + |w|^2 / (2 C N)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, y, weight=weight) + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        scaled = w.detach() / sd
        prompt.verbalizer.weight.copy_(scaled)
        prompt.verbalizer.bias.copy_(b.detach() - scaled @ mu)


@torch.no_grad()
def transfer_prompt(prompt: TaskPrompt, source: TaskPrompt) -> None:
    """SPoT (Vu et al., 2022): start the input prompt, deep prompt and separator from another task's prompt."""
    if source.config.prompt_length != prompt.config.prompt_length or (source.deep_prompt is None) != (
            prompt.deep_prompt is None):
        raise ValueError(f"Prompt {source.task!r} has another shape (length {source.config.prompt_length}, deep "
                         f"{source.deep_prompt is not None}); it cannot start this one.")
    prompt.input_prompt.copy_(source.input_prompt)
    prompt.separator.copy_(source.separator)
    if prompt.deep_prompt is not None:
        prompt.deep_prompt.copy_(source.deep_prompt)


def swap_in_copies(copies: Mapping[int, Sequence[Units]]) -> Augment:
    """An ``augment`` hook for :func:`fit`: each time a training sequence is drawn it is kept or replaced by one of
    ``copies[id(units)]``, at random (an epoch has as many rows as without copies, however many there are)."""
    def fn(u: Units, rng: np.random.Generator) -> Units:
        options = copies.get(id(u))
        if not options:
            return u
        k = int(rng.integers(len(options) + 1))
        return u if k == len(options) else options[k]
    return fn


def run_metrics(result: TrainResult, n_train: int, n_rows: int) -> dict:
    """What every caller records about a run in the prompt's task info (one definition for all of them)."""
    return {"train_accuracy": round(result.train_acc, 4), "val_accuracy": result.best_val_acc,
            "epochs_run": len(result.history), "best_epoch": result.best_epoch, "stopped": result.stopped,
            "train_seconds": round(result.seconds, 1), "train_clips": n_train, "train_rows": n_rows}


def train_task(lm: UnitLM, info: TaskInfo, config: PromptConfig, train: Sequence[tuple["Take | Units", int]],
               val: Sequence[tuple[Units, int]] | None = None, cfg: TrainConfig | None = None,
               verbalizer_init: str = "class_means", source: TaskPrompt | None = None,
               progress: Progress | None = None, seed: int = 0,
               sample_copies: bool = False) -> tuple[TaskPrompt, TrainResult]:
    """The one way a prompt is trained, for every caller (the Train view, ``python -m app train``, the recipes):
    a fresh prompt (or one started from ``source``: SPoT), its verbalizer started from the class means
    (or at random, or from a linear probe: ``verbalizer_init``), trained
    with only the prompt learning, then frozen, with its run recorded in ``info.metrics``. ``train`` holds takes
    (units plus perturbed copies) or bare units; ``val``, if given, selects the best epoch and may stop early.
    Every copy is a training row of its own, or with ``sample_copies`` each take trains once per epoch as itself
    or one of its copies drawn at random (large sets: epochs as long as without copies)."""
    cfg = cfg or TrainConfig(seed=seed)
    rows = expand(train)
    n_rows = len(rows)
    prompt = new_prompt(lm, info, config, [u for u, _ in rows], seed)
    if source is not None:
        transfer_prompt(prompt, source)
    if verbalizer_init == "class_means":
        init_verbalizer_from_means(lm, prompt, rows)
    elif verbalizer_init == "linear_probe":
        init_verbalizer_from_probe(lm, prompt, rows)
    if sample_copies:
        takes = [as_take(x) for x, _ in train]
        pick, then = swap_in_copies({id(t.units): t.copies for t in takes}), cfg.augment
        cfg = replace(cfg, augment=pick if then is None else (lambda u, rng: then(pick(u, rng), rng)))
        rows = [(t.units, y) for t, (_, y) in zip(takes, train)]
    result = train_prompt(lm, prompt, rows, val or None, cfg, progress)
    prompt.eval()
    prompt.requires_grad_(False)
    info.metrics = {**info.metrics, **run_metrics(result, len(train), n_rows)}
    return prompt, result


def few_shot_config(settings: FewShotSettings, n_rows: int, seed: int = 0, max_seconds: float | None = None,
                    should_stop: Callable[[], bool] | None = None) -> TrainConfig:
    """A fixed step budget as a TrainConfig: as many epochs as ``settings.steps`` batches need, no validation."""
    batch = min(settings.batch_size, max(n_rows, 1))
    epochs = max(1, round(settings.steps * batch / max(n_rows, 1)))
    augment = drop_units(settings.unit_dropout) if settings.unit_dropout > 0 else None
    return TrainConfig(epochs=epochs, batch_size=batch, lr=settings.lr, seed=seed, patience=epochs,
                       max_seconds=max_seconds, augment=augment, should_stop=should_stop)


def cross_validate(lm: UnitLM, info: TaskInfo, config: PromptConfig, data: Sequence[tuple[Take, int]],
                   settings: FewShotSettings, source: TaskPrompt | None = None,
                   should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Held-out estimate for the visitor: k-fold over the takes (fold f holds out every class's takes number f, f+k,
    ...), each fold a shorter run (``settings.cv_steps``) of the same flow, scored on the held-out takes' original
    units (never their copies). Returns accuracy, per-class accuracy and the folds, or None if too few takes."""
    k = settings.cv_folds
    per_class: dict[int, list[int]] = {}
    for i, (_, y) in enumerate(data):
        per_class.setdefault(y, []).append(i)
    if k < 2 or min(len(v) for v in per_class.values()) < 2:
        return None
    k = min(k, min(len(v) for v in per_class.values()))
    fold_of = {i: j % k for idx in per_class.values() for j, i in enumerate(idx)}
    correct = {c: 0 for c in per_class}
    total = {c: 0 for c in per_class}
    start = time.perf_counter()
    short = replace(settings, steps=settings.cv_steps)
    for f in range(k):
        train = [data[i] for i in range(len(data)) if fold_of[i] != f]
        held = [data[i] for i in range(len(data)) if fold_of[i] == f]
        sub = TaskInfo(id=info.id, labels=info.labels)
        n_rows = len(expand(train))
        prompt, _ = train_task(lm, sub, config, train, None, few_shot_config(short, n_rows, seed=f + 1),
                               settings.verbalizer_init, source, seed=f + 1)
        probs = predict_proba(prompt_logits_fn(lm, prompt), [as_take(t).units for t, _ in held])
        for (_, y), p in zip(held, probs.argmax(1).tolist()):
            correct[y] += int(p == y)
            total[y] += 1
        if should_stop is not None and should_stop():
            return None
    n = sum(total.values())
    return {"accuracy": sum(correct.values()) / n, "folds": k, "takes": n, "steps_per_fold": short.steps,
            "per_class": {info.labels[c]: correct[c] / total[c] for c in sorted(total)},
            "seconds": round(time.perf_counter() - start, 1)}


@dataclass
class FewShot:
    """A few-shot run ready to start: the task, the takes (with their perturbed copies) and the settings."""

    info: TaskInfo
    config: PromptConfig
    train: list[tuple[Take, int]]
    settings: FewShotSettings
    max_seconds: float = FEW_SHOT_SECONDS
    source: TaskPrompt | None = None
    prompt: TaskPrompt | None = None
    estimate: dict | None = None

    @property
    def val(self) -> list:  # no validation split: every take trains (the held-out estimate is cross-validated)
        return []

    @property
    def rows(self) -> int:
        return len(expand(self.train))

    def train_config(self, should_stop: Callable[[], bool] | None = None) -> TrainConfig:
        return few_shot_config(self.settings, self.rows, 0, self.max_seconds, should_stop)

    def run(self, lm: UnitLM, progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None, estimate: bool = True) -> TrainResult:
        """Train (only the prompt learns), then, if asked, the k-fold held-out estimate; both are recorded in the
        prompt's task info (``metrics``: ``cv_accuracy`` is the estimate)."""
        self.prompt, result = train_task(lm, self.info, self.config, self.train, None,
                                         self.train_config(should_stop), self.settings.verbalizer_init,
                                         self.source, progress)
        if estimate and result.stopped not in ("stopped",):
            self.estimate = cross_validate(lm, self.info, self.config, self.train, self.settings, self.source,
                                           should_stop)
            if self.estimate is not None:
                self.info.metrics["cv_accuracy"] = round(self.estimate["accuracy"], 4)
                self.info.metrics["cv_folds"] = self.estimate["folds"]
        return result


def few_shot(lm: UnitLM, task: str, title: str, examples: Mapping[str, Sequence["Take | Units"]], config: PromptConfig,
             max_seconds: float = FEW_SHOT_SECONDS, settings: FewShotSettings | None = None,
             source: TaskPrompt | None = None) -> FewShot:
    """Prepare training a prompt from labelled takes: ``examples`` maps each class to its takes (units with their
    perturbed copies, :func:`make_take`; bare units train without copies). Every take trains; the prompt is
    seeded (same takes, same run)."""
    labels = list(examples)
    if not MIN_CLASSES <= len(labels) <= MAX_CLASSES or min(len(v) for v in examples.values()) < MIN_PER_CLASS:
        raise ValueError(f"Few-shot training needs {MIN_CLASSES}-{MAX_CLASSES} classes with at least "
                         f"{MIN_PER_CLASS} examples each.")
    data = [(as_take(u), y) for y, c in enumerate(labels) for u in examples[c]]
    n_copies = sum(len(t.copies) for t, _ in data)
    info = TaskInfo(id=task, labels=labels, title=title,
                    description=f"Trained in the browser on {len(data)} clips ({', '.join(labels)}).",
                    training_data=f"{len(data)} clips given by a visitor (+ {n_copies} perturbed copies)")
    settings = settings or FEW_SHOT_SETTINGS
    if source is not None and settings.transfer is not None:
        info.extra["started_from"] = source.task  # SPoT: recorded in task.json
    return FewShot(info, config, data, settings, max_seconds, source if settings.transfer is not None else None)
