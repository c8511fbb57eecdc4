"""Few-shot benchmark: what a teacher gets from K takes per word, on speakers never recorded.

    python -m recipes.experiments.fewshot --pieces flow "flow + SPoT (commands)"   # K = 3, 5, 10; 3 draws; both sets
    python -m recipes.experiments.fewshot --ks 5 --ablation      # each piece of the flow on its own draws at K = 5

Words from the shared Speech Commands (real crowd-sourced speakers): ``commands`` = yes, no, up, down, stop (in the
shipped commands prompt's labels), ``new`` = happy, sheila, wow, forward, marvin (in no shipped task's labels). Per
draw (seed 0, 1, 2...) and K, each word gets K takes from K different speakers (no speaker in two words), and the
test set is every clip of those words by every other speaker; for ``commands`` the test speakers are only those the
backbone's corpus and the commands prompt never heard (the held-out split of recipes.common.splits), the takes come
from its training speakers. The prompt is trained by the library's own flow (``app.training.few_shot``, what the
Train view and ``python -m app train`` run), side by side with MFCC statistics + logistic regression and the
encoder's pooled dense frames + logistic regression. Units, copies and features are cached under work/fewshot/.
Writes docs/FEWSHOT.md, docs/fewshot.html (plotly) and docs/fewshot.json, which records the backbone: runs of another
backbone are never mixed in (earlier backbones' are kept in docs/fewshot_<name>.json with their FEWSHOT_<name>.md,
:data:`EARLIER`, and the one before is shown side by side).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from app.backbone import Backbone
from app.encoder.audio import prepare
from app.encoder.units import Units
from app.prompt_files import load_prompt
from app.prompting import PromptConfig
from app.settings import DEFAULT_PROMPTS_DIR
from app.training import (FEW_SHOT_PROMPT, FEW_SHOT_SETTINGS, FewShotSettings, Take, few_shot, predict_proba,
                          prompt_logits_fn)
from recipes.common import splits
from recipes.common.paths import DATA_ROOT, DOCS, WORK

SETS = {"commands": ("yes", "no", "up", "down", "stop"), "new": ("happy", "sheila", "wow", "forward", "marvin")}
MAX_COPIES = 6
CACHE = WORK / "fewshot"
#: Earlier backbones whose runs are kept for comparison, oldest first: name -> (fingerprint, id); their runs in
#: docs/fewshot_<name>.json, their reports in docs/FEWSHOT_<name>.md (v1's runs were recorded before the results
#: named their backbone: a file without one is v1's)
EARLIER = {"v1": ("316ed6029b4a586b", "sp-whisper-L3-km100-ulm4x128"),
           "v2": ("816aacc732cf6e6e", "sp-whisper-L3-km250-v16x8-ulm4x128")}
V1_FINGERPRINT = EARLIER["v1"][0]


def earlier_results(name: str) -> Path:
    return DOCS / f"fewshot_{name}.json"


def previous_backbone(fingerprint: str) -> str | None:
    """The name of the backbone before the one with ``fingerprint`` whose runs are kept (None for the first)."""
    names = [n for n in EARLIER if earlier_results(n).exists()]
    fps = [EARLIER[n][0] for n in names]
    if fingerprint in fps:
        i = fps.index(fingerprint)
        return names[i - 1] if i else None
    return names[-1] if names else None

#: The pieces of the flow, measured one at a time (``--ablation``); "flow" is the library's default.
SEP, MEAN = PromptConfig(read_at="separator"), FEW_SHOT_PROMPT
FLOW = replace(FEW_SHOT_SETTINGS, cv_folds=0, transfer=None)  # the app's flow without its SPoT start
BARE = FewShotSettings(copies=0, verbalizer_init="random", cv_folds=0, transfer=None)
PIECES = {
    "plain (read at separator)": (SEP, BARE),
    "sep + class-mean verbalizer": (SEP, replace(BARE, verbalizer_init="class_means")),
    "sep + class-mean + 4 copies": (SEP, replace(BARE, verbalizer_init="class_means", copies=4)),
    "sep + class-mean + 4 copies + SPoT": (SEP, replace(BARE, verbalizer_init="class_means", copies=4,
                                                        transfer="commands")),
    "mean readout, random verbalizer": (MEAN, BARE),
    "mean + class-mean verbalizer": (MEAN, replace(BARE, verbalizer_init="class_means")),
    "flow": (MEAN, FLOW),
    "flow, 2 copies": (MEAN, replace(FLOW, copies=2)),
    "flow, 6 copies": (MEAN, replace(FLOW, copies=6)),
    "flow, 20 steps": (MEAN, replace(FLOW, steps=20)),
    "flow, 80 steps": (MEAN, replace(FLOW, steps=80)),
    "flow + unit dropout 0.1": (MEAN, replace(FLOW, unit_dropout=0.1)),
    "flow + SPoT (commands)": (MEAN, replace(FLOW, transfer="commands")),
    "flow + SPoT, 0 copies": (MEAN, replace(FLOW, transfer="commands", copies=0)),
    "flow + SPoT, 2 copies": (MEAN, replace(FLOW, transfer="commands", copies=2)),
    # backbone v2: the verbalizer also reads the LM's voice-code predictions (PromptConfig.voice); without them
    "flow, no voice codes read": (replace(MEAN, voice=False), FLOW),
    "flow + SPoT, no voice codes read": (replace(MEAN, voice=False), replace(FLOW, transfer="commands")),
    # the verbalizer started from a logistic regression on what it reads (LP-FT; train_prompts' v2_mean_lp)
    "flow, linear-probe verbalizer": (MEAN, replace(FLOW, verbalizer_init="linear_probe")),
    "flow + SPoT, linear-probe verbalizer": (MEAN, replace(FLOW, transfer="commands", verbalizer_init="linear_probe")),
}
#: What the bundled synthetic set is trained with (its test: real held-out speakers).
BUNDLED_PIECES = ("flow", "flow + SPoT (commands)", "flow + SPoT, 0 copies", "flow + SPoT, 2 copies", "flow, 2 copies",
                  "flow, no voice codes read", "flow + SPoT, no voice codes read")
#: What the report calls each method (the app's default flow starts from the commands prompt: SPoT).
SHOWN = {"prompt: flow": "prompt: flow without SPoT", "prompt: flow + SPoT (commands)": "prompt: the app's flow "
         "(SPoT from commands)"}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ------------------------------------------------------------------------------------------------------ data
def word_of(path: Path, label: str) -> str:
    return path.name.split("_")[0] if label == "_unknown_" else label


def pool(words, held_out_test: bool) -> tuple[dict, dict]:
    """Clips of ``words`` by speaker: (training candidates, test candidates), each word -> speaker -> [paths]."""
    parts = splits.split("speech_commands", 0, DATA_ROOT)
    train_c: dict = {w: {} for w in words}
    test_c: dict = {w: {} for w in words}
    for part, items in parts.items():
        for path, label, spk in items:
            w = word_of(Path(path), label)
            if w not in words:
                continue
            if not held_out_test or part == "train":
                train_c[w].setdefault(spk, []).append(Path(path))
            if not held_out_test or part != "train":
                test_c[w].setdefault(spk, []).append(Path(path))
    return train_c, test_c


def draw(words, k: int, seed: int, train_c: dict, test_c: dict) -> tuple[dict, list]:
    """K takes per word from K different speakers (no speaker twice), and the test clips of everyone else."""
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    takes = {}
    for w in words:
        spk = sorted(s for s in train_c[w] if s not in used)
        rng.shuffle(spk)
        chosen = spk[:k]
        used.update(chosen)
        takes[w] = [sorted(train_c[w][s])[int(rng.integers(len(train_c[w][s])))] for s in chosen]
    for w in words:  # a speaker who recorded any word's take is tested on nothing
        used.update(s for s in train_c[w] if any(p in takes[w] for p in train_c[w][s]))
    test = [(p, w) for w in words for s, ps in sorted(test_c[w].items()) if s not in used for p in ps]
    return takes, test


def nested_draw(words, ks, seed, train_c, test_c) -> dict:
    """Draws for every K from one speaker order per word, so K = 3's takes are among K = 5's (less noise)."""
    big = max(ks)
    takes, _ = draw(words, big, seed, train_c, test_c)
    out = {}
    for k in ks:
        sub = {w: takes[w][:k] for w in words}
        spk_used = {splits_speaker(p) for ps in takes.values() for p in ps}  # test: nobody from the largest draw
        test = [(p, w) for w in words for s, ps in sorted(test_c[w].items()) if s not in spk_used for p in ps]
        out[k] = (sub, test)
    return out


def splits_speaker(path: Path) -> str:
    return path.stem.split("_nohash_")[0]


# ------------------------------------------------------------------------------------------------------ cache
class Features:
    """Per clip, cached on disk: units, perturbed copies' units, MFCC statistics, pooled encoder frames."""

    def __init__(self, bb: Backbone, noise_dir: Path) -> None:
        self.bb, self.noise_dir = bb, noise_dir
        self.dir = CACHE / bb.encoder_fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self.mem: dict = {}

    def _path(self, p: Path, kind: str) -> Path:
        key = hashlib.sha1(str(p.relative_to(DATA_ROOT)).encode()).hexdigest()[:16]
        return self.dir / f"{key}.{kind}.pt"

    def _get(self, p: Path, kind: str, make):
        if (p, kind) in self.mem:
            return self.mem[(p, kind)]
        f = self._path(p, kind)
        if f.exists():
            with torch.serialization.safe_globals([Units]):  # tensors and Units only: no arbitrary unpickling
                v = torch.load(f, weights_only=True)
        else:
            v = make()
            torch.save(v, f)
        self.mem[(p, kind)] = v
        return v

    def wav(self, p: Path) -> torch.Tensor:
        return prepare(str(p), max_seconds=10.0).wav

    def units(self, p: Path):
        return self._get(p, "units", lambda: self.bb.encoder(self.wav(p)))

    def copies(self, p: Path):
        from app.training import make_take
        seed = int(hashlib.sha1(p.name.encode()).hexdigest()[:8], 16)
        return self._get(p, f"copies{MAX_COPIES}", lambda: make_take(
            self.bb.encoder, self.wav(p), MAX_COPIES, seed, self.noise_dir, self.units(p)).copies)

    def take(self, p: Path, n_copies: int) -> Take:
        return Take(self.units(p), list(self.copies(p)[:n_copies]) if n_copies else [])

    def mfcc(self, p: Path) -> np.ndarray:
        def make():
            import torchaudio
            m = torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=20, melkwargs={
                "n_mels": 40, "n_fft": 400, "hop_length": 160})(self.wav(p))
            d = torch.diff(m, dim=1)
            return torch.cat([m.mean(1), m.std(1), d.mean(1), d.std(1)])
        return self._get(p, "mfcc", make).numpy()

    def pooled(self, p: Path) -> np.ndarray:
        def make():
            with torch.no_grad():
                f = self.bb.encoder.features(self.wav(p))
            return torch.cat([f.mean(0), f.std(0)])
        return self._get(p, "pooled", make).numpy()


def lr_peer(feat, takes: dict, test: list) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    words = list(takes)
    X = np.stack([feat(p) for w in words for p in takes[w]])
    y = [i for i, w in enumerate(words) for _ in takes[w]]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(X, y)
    Xt = np.stack([feat(p) for p, _ in test])
    return float(np.mean(clf.predict(Xt) == np.array([words.index(w) for _, w in test])))


# ------------------------------------------------------------------------------------------------------ runs
def prompt_accuracy(bb, feats: Features, takes: dict, test: list, piece, source) -> dict:
    config, settings = piece
    examples = {w: [feats.take(p, settings.copies) for p in ps] for w, ps in takes.items()}
    t = time.perf_counter()
    shot = few_shot(bb.lm, "fewshot", "fewshot", examples, config, settings=settings,
                    source=source if settings.transfer else None)
    res = shot.run(bb.lm, estimate=settings.cv_folds > 0)
    seconds = time.perf_counter() - t
    words = list(takes)
    probs = predict_proba(prompt_logits_fn(bb.lm, shot.prompt), [feats.units(p) for p, _ in test])
    acc = float((probs.argmax(1) == torch.tensor([words.index(w) for _, w in test])).float().mean())
    out = {"accuracy": acc, "train_seconds": round(seconds, 2), "train_acc": res.train_acc}
    if shot.estimate is not None:
        out["cv_accuracy"] = shot.estimate["accuracy"]
    return out


def bundled(bb, feats: Features, source, pieces=BUNDLED_PIECES) -> list[dict]:
    """The bundled yes/no/stop set (assets/examples/train_set, synthetic voices) trained by the flow, tested on the
    real Speech Commands speakers the backbone and the commands prompt never heard (held-out split)."""
    from app.data import list_labelled
    from app.settings import TRAIN_SET_DIR
    from app.training import clip_seed, make_take

    items = list_labelled(TRAIN_SET_DIR)
    words = sorted({lab for _, lab in items})
    _, test_c = pool(words, held_out_test=True)
    test = [(p, w) for w in words for ps in test_c[w].values() for p in ps]
    rows = []
    for name in pieces:
        config, settings = PIECES[name]
        examples: dict = {w: [] for w in words}
        for path, lab in items:
            wav = prepare(str(path), max_seconds=10.0).wav
            examples[lab].append(make_take(bb.encoder, wav, settings.copies, clip_seed(wav), feats.noise_dir))
        shot = few_shot(bb.lm, "bundled", "bundled", examples, config, settings=settings,
                        source=source if settings.transfer else None)
        shot.run(bb.lm, estimate=False)
        probs = predict_proba(prompt_logits_fn(bb.lm, shot.prompt), [feats.units(p) for p, _ in test])
        acc = float((probs.argmax(1) == torch.tensor([words.index(w) for _, w in test])).float().mean())
        rows.append({"method": f"prompt: {name}", "accuracy": acc, "test_clips": len(test), "words": words,
                     "train_clips": len(items)})
        log(f"bundled set -> real speakers, {name}: {acc:.3f} ({len(test)} clips)")
    return rows


# ------------------------------------------------------------------------------------------------------ report
def summarise(runs: list[dict]) -> dict:
    """(set, k, method) -> mean, min, max accuracy and the draws."""
    out: dict = {}
    for r in runs:
        out.setdefault((r["set"], r["k"], r["method"]), []).append(r)
    summ: dict = {"_rows": out}
    summ.update({key: {"mean": float(np.mean([r["accuracy"] for r in rs])), "min": min(r["accuracy"] for r in rs),
                  "max": max(r["accuracy"] for r in rs), "draws": len(rs),
                  "test_clips": int(np.mean([r["test_clips"] for r in rs])),
                  "train_seconds": (float(np.median([r["train_seconds"] for r in rs]))
                                    if all("train_seconds" in r for r in rs) else None)}
            for key, rs in out.items()})
    return summ


HEADLINE = ("prompt: flow", "prompt: flow + SPoT (commands)", "MFCC + LR", "pooled encoder + LR")


def cell(v: dict | None) -> str:
    if not v:
        return ""
    return f"{v['mean']:.3f} ({v['min']:.2f}-{v['max']:.2f}, {v['draws']})"


def report(results: dict) -> None:
    """docs/FEWSHOT.md and the chart: the K sweep from draws nested up to K = 10 (one test set per draw for every
    K), the pieces from the ablation's draws at K = 5 (nested up to 5: a larger test set for **new**)."""
    summ = summarise([r for r in results["runs"] if r.get("nest", 10) == 10])
    pieces_summ = summarise([r for r in results["runs"] if r.get("nest", 10) == 5])
    ks = sorted({key[1] for key in summ if key != "_rows"})
    bb = results.get("backbone") or {"id": EARLIER["v1"][1], "fingerprint": V1_FINGERPRINT}
    earlier = [n for n in EARLIER if EARLIER[n][0] != bb["fingerprint"] and (DOCS / f"FEWSHOT_{n}.md").exists()]
    src = results.get("spot_source")
    lines = [
        "# Few-shot: a prompt from a few takes per word, tested on voices it never heard",
        "",
        f"Backbone: `{bb['id']}` (fingerprint `{bb['fingerprint']}`)"
        + (f"; SPoT starts from the shipped commands prompt of that backbone (prompt.safetensors sha256 "
           f"`{src['sha256'][:16]}`, test accuracy {src['test_accuracy']})" if src else "") + ". "
        "Results: [fewshot.json](fewshot.json); chart: [fewshot.html](fewshot.html)."
        + (" Earlier backbones: " + ", ".join(f"{n} [FEWSHOT_{n}.md](FEWSHOT_{n}.md) ([fewshot_{n}.json](fewshot_{n}"
                                               f".json))" for n in earlier)
           + "; the one before side by side below." if earlier else ""),
        "",
        "Reproduce (K = 3, 5, 10 nest up to 10, 3 draws, seeds 0-2, both word sets; `--ks 5` runs the pieces on "
        "their own draws; a run already in the results is skipped):",
        "",
        "```bash",
        *(results.get("commands") or ["python -m recipes.experiments.fewshot"]),
        "```",
        "",
        "Set-up: real crowd-sourced speakers of the shared Speech Commands. **commands** = yes, no, up, down, stop "
        "(labels of the shipped commands prompt); **new** = happy, sheila, wow, forward, marvin (labels of no shipped "
        "task). Per draw (seed d = 0, 1, 2) and K, each word gets K takes, one per speaker, from K different "
        "speakers (no speaker in two words); the test set is every clip of the five words by every speaker not "
        "in the draw (speaker = the file name's part before `_nohash_`). For **commands** the takes come from the "
        "training split of `recipes.common.splits` and the test speakers from its held-out split (never in the "
        "backbone's corpus nor in the commands prompt's training); **new** has too few speakers for that, so "
        "its test speakers may be in the backbone's unlabelled corpus (and in the commands prompt's `_unknown_` "
        "class). The draws for K = 3, 5, 10 are nested (one speaker order per word) and share one test set per "
        "draw. Cells: mean accuracy (min-max over draws, number of draws).",
        "",
        "The prompt is trained by `app.training.few_shot` (what the Train view runs; `python -m app train` and "
        "the prompt recipe call the same `train_task`): " + flow_text(results.get("settings", {}).get("flow")),
        "",
        "## Accuracy against K",
        "",
        "| set | method | " + " | ".join(f"K = {k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for set_name in SETS:
        for m in HEADLINE:
            if any((set_name, k, m) in summ for k in ks):
                lines.append(f"| {set_name} | {SHOWN.get(m, m)} | "
                             + " | ".join(cell(summ.get((set_name, k, m))) for k in ks) + " |")
    lines += versus_previous(summ, bb["fingerprint"])
    lines += targets(summ, results)
    clips = {s: sorted({r["test_clips"] for r in rs}) for (s, k, m), rs in summ["_rows"].items() if m == "MFCC + LR"}
    lines += ["", "Test clips per draw: " + ", ".join(f"{s} {min(n)}-{max(n)}" if min(n) != max(n) else f"{s} {n[0]}"
                                                     for s, n in clips.items()) + " (the same for every K of a draw). "
              "With 26-27 clips a draw, one clip of **new** is 4 points: its cells are rough.", ""]
    pieces = [key[2] for key in pieces_summ if key != "_rows" and key[1] == 5 and key[2].startswith("prompt: ")]
    pieces = [f"prompt: {p}" for p in PIECES if f"prompt: {p}" in pieces]
    if pieces:
        peers = " ".join(f"{s}: MFCC + LR {cell(pieces_summ.get((s, 5, 'MFCC + LR')))}, pooled encoder + LR "
                         f"{cell(pieces_summ.get((s, 5, 'pooled encoder + LR')))}, "
                         f"{pieces_summ.get((s, 5, 'MFCC + LR'), {}).get('test_clips')} test clips per draw."
                         for s in SETS if (s, 5, "MFCC + LR") in pieces_summ)
        lines += ["## What each piece gives (K = 5)", "",
                  "The ablation's own draws (seeds 0-2, not nested with K = 10, so **new** keeps more test "
                  "speakers); not every piece ran on every draw (the last number in a cell). Peers on the same "
                  "draws: " + peers, "",
                  "| prompt variant | commands | new | median train s |", "|---|---|---|---|"]
        for m in pieces:
            secs = [pieces_summ[(s, 5, m)]["train_seconds"] for s in SETS if (s, 5, m) in pieces_summ]
            lines.append(f"| {m[len('prompt: '):]} | {cell(pieces_summ.get(('commands', 5, m)))} | "
                         f"{cell(pieces_summ.get(('new', 5, m)))} | {np.median(secs) if secs else 0:.0f} |")
        lines += ["", PIECES_NOTE, "", "Step by step (mean accuracy at K = 5, commands / new):", ""]
        lines += [f"- {text}" for text in piece_steps(pieces_summ)]
        lines.append("")
    if results.get("bundled"):
        lines += ["## The bundled yes / no / stop set on real speakers", "",
                  "The Train view's bundled set (assets/examples/train_set: 5 synthetic takes per word) trained by "
                  "the flow, tested on every held-out real Speech Commands speaker of the three words:", "",
                  "| prompt | accuracy | test clips |", "|---|---|---|"]
        for r in results["bundled"]:
            lines.append(f"| {SHOWN.get(r['method'], r['method'])[len('prompt: '):]} | {r['accuracy']:.3f} | "
                         f"{r['test_clips']} |")
        lines.append("")
    if results.get("timing"):
        lines += ["## Training time", "", results["timing"], ""]
    elif summ.get(("commands", 5, APP)):
        secs = [r["train_seconds"] for s in SETS for r in summ["_rows"].get((s, 5, APP), [])]
        lines += ["## Training time", "",
                  f"Training alone (the takes and their copies already encoded, as the Train view does when a take is "
                  f"added), the app's flow at K = 5 (25 takes, 125 rows): {min(secs):.1f}-{max(secs):.1f} s wall, "
                  f"median {np.median(secs):.1f} s, over {len(secs)} runs, 1 torch thread on the 2-core machine "
                  "shared with other jobs. `python -m app bench`'s `train_5x5_*` measures the whole run, encoding "
                  "included, on an idle machine: docs/BENCHMARKS.md.", ""]
    lines += ["## What the flow keeps, and why", "",
              CHOICES.get(bb["fingerprint"], "Not yet read for this backbone: see the tables above."), ""]
    (DOCS / "FEWSHOT.md").write_text("\n".join(lines))
    chart(summ, ks, bb["id"])


def versus_previous(summ: dict, fingerprint: str) -> list[str]:
    """The headline means of this backbone next to those of the backbone before it (:func:`previous_backbone`; the
    same draws and test clips: the draws depend only on the data and the seed)."""
    name = previous_backbone(fingerprint)
    if name is None:
        return []
    old = summarise([r for r in json.loads(earlier_results(name).read_text())["runs"] if r.get("nest", 10) == 10])
    ks = sorted({key[1] for key in summ if key != "_rows"})
    fp, bid = EARLIER[name]
    lines = ["", f"### Against backbone {name}", "",
             f"Mean accuracy over the draws, {name} (`{bid}`, `{fp}`, measured before the backbone was replaced) -> "
             "this backbone; the same draws, takes and test clips. MFCC + LR does not depend on the backbone, so it "
             "repeats; the pooled encoder frames change with the encoder only.", "",
             "| set | method | " + " | ".join(f"K = {k}: {name} -> now" for k in ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for set_name in SETS:
        for m in HEADLINE:
            cells = []
            for k in ks:
                a, b = old.get((set_name, k, m)), summ.get((set_name, k, m))
                cells.append(f"{a['mean']:.3f} -> {b['mean']:.3f} ({100 * (b['mean'] - a['mean']):+.1f})" if a and b
                             else "")
            lines.append(f"| {set_name} | {SHOWN.get(m, m)} | " + " | ".join(cells) + " |")
    return lines


APP = "prompt: flow + SPoT (commands)"  # the app's default flow
STEPS = [  # (what changes, from piece, to piece)
    ("augmentation alone, read at the separator (4 copies, class-mean start)", "sep + class-mean verbalizer",
     "sep + class-mean + 4 copies"),
    ("the verbalizer reads the LM's next-token distribution averaged over the clip instead of at the separator",
     "plain (read at separator)", "mean readout, random verbalizer"),
    ("class-mean start of the verbalizer (mean readout, no copies)", "mean readout, random verbalizer",
     "mean + class-mean verbalizer"),
    ("4 perturbed copies per take (mean readout, class-mean start)", "mean + class-mean verbalizer", "flow"),
    ("2 copies instead of 4", "flow", "flow, 2 copies"),
    ("6 copies instead of 4", "flow", "flow, 6 copies"),
    ("20 steps instead of 40", "flow", "flow, 20 steps"),
    ("80 steps instead of 40", "flow", "flow, 80 steps"),
    ("unit dropout 0.1 on top", "flow", "flow + unit dropout 0.1"),
    ("SPoT: start from the shipped commands prompt (the app's default)", "flow", "flow + SPoT (commands)"),
    ("SPoT with the separator readout", "sep + class-mean + 4 copies", "sep + class-mean + 4 copies + SPoT"),
    ("the verbalizer does not read the voice-code predictions (backbone v2)", "flow", "flow, no voice codes read"),
    ("... with SPoT (the app's flow without the voice codes read)", "flow + SPoT (commands)",
     "flow + SPoT, no voice codes read"),
    ("the verbalizer starts from a linear probe instead of the class means (LP-FT)", "flow",
     "flow, linear-probe verbalizer"),
    ("... with SPoT (the app's flow started so)", "flow + SPoT (commands)", "flow + SPoT, linear-probe verbalizer"),
]


def piece_steps(summ: dict) -> list[str]:
    """One line per step of :data:`STEPS`: the change in mean accuracy on each set, on the draws both pieces ran."""
    out = []
    for text, a, b in STEPS:
        parts = []
        for s in SETS:
            ra = {r["draw"]: r["accuracy"] for r in summ.get("_rows", {}).get((s, 5, f"prompt: {a}"), [])}
            rb = {r["draw"]: r["accuracy"] for r in summ.get("_rows", {}).get((s, 5, f"prompt: {b}"), [])}
            both = sorted(set(ra) & set(rb))
            if both:
                x, y = np.mean([ra[d] for d in both]), np.mean([rb[d] for d in both])
                parts.append(f"{s} {x:.3f} -> {y:.3f} ({100 * (y - x):+.1f} points, {len(both)} draws)")
        if parts:
            out.append(f"{text}: " + "; ".join(parts))
    return out


def targets(summ: dict, results: dict) -> list[str]:
    """Issue #14's targets against these measurements."""
    lines = ["", "## Targets (issue #14)", "", "| target | measured | met |", "|---|---|---|"]
    for set_name in SETS:
        v = summ.get((set_name, 5, APP))
        if v:
            lines.append(f"| {set_name}: 5 takes x 5 words, unseen speakers, mean of draws >= 0.85 | "
                         f"{v['mean']:.3f} ({v['draws']} draws) | {'yes' if v['mean'] >= 0.85 else 'no'} |")
        a, m = summ.get((set_name, 3, APP)), summ.get((set_name, 3, "MFCC + LR"))
        if a and m:
            lines.append(f"| {set_name}: at least the MFCC peer at K = 3 | {a['mean']:.3f} vs {m['mean']:.3f} | "
                         f"{'yes' if a['mean'] >= m['mean'] else 'no'} |")
    for r in results.get("bundled", []):
        if r["method"] == APP:
            lines.append(f"| bundled yes/no/stop set on real speakers >= 0.80 | {r['accuracy']:.3f} "
                         f"({r['test_clips']} clips) | {'yes' if r['accuracy'] >= 0.80 else 'no'} |")
    if results.get("timing_row"):
        lines.append(results["timing_row"])
    lines += ["", "These speakers are in the shared folder (held out from every recipe for **commands**); the issue's "
              "own figures were measured on speakers in no shared folder, which this repository cannot reach, so "
              "they may differ.", ""]
    return lines


CHOICES_V1 = (
    "- **The readout** is what makes a prompt generalise from a few takes: read at the separator (the paper's design) "
    "the verbalizer sees one next-token distribution, shaped mostly by the clip's last units, and it fits the takes' "
    "voices (about 0.5 on new speakers); read as the mean over the clip of the same next-token outputs, it sees what "
    "the prompted LM expects throughout the word, a bag of predicted units that carries the word and little of the "
    "voice (about 0.9). The verbalizer still reads only the LM's output, through the same learnable linear map; "
    "shipped prompts keep reading at the separator (`read_at` is recorded in task.json; older files read as "
    "`separator`).\n"
    "- **SPoT** from the shipped commands prompt helps its own words (+1 to +4 points at K = 3, 5, 10) and most "
    "when the takes are synthetic and the test real (the bundled set: +22 points); on words outside its labels it "
    "is mixed (+2.6 points on the ablation's draws, -3.8 / +2.5 / -2.5 at K = 3 / 5 / 10 in the sweep, where one "
    "clip of **new** is 4 points): no clear gain nor loss there. The app starts from it whenever it is installed "
    "with the same prompt shape (`FewShotSettings.transfer`; `--transfer none` for a fresh prompt).\n"
    "- **Class-mean start** of the verbalizer: a small gain on commands, none on new; kept because it costs one "
    "forward pass and makes the start a sensible classifier (short runs, like the estimate's folds, need it).\n"
    "- **Perturbed copies**: within the noise of these draws on real takes (0 to -4 points on 52 clips), but +8 "
    "points (2 -> 4 copies) without SPoT and +1 point with it when the takes are synthetic and the test is real; they "
    "are encoded when a take is added (the view) and do not lengthen training (a fixed step budget), so the flow keeps "
    "4.\n"
    "- **Steps**: 20, 40 and 80 are within the noise; 40 fits the time budget. No validation split and no early stop: "
    "a fifth of five takes says nothing reliable and costs a take per class.\n"
    "- **Unit dropout**: no gain; not used.\n"
    "- **Held-out feedback** in the Train view: 3-fold cross-validation over the visitor's takes (each fold a 12-step "
    "run of the same flow that never heard the held-out takes, scored on their original units), shown per class and "
    "labelled as an estimate; it costs about as much as the main run.")


CHOICES_V2 = (  # backbone v2 (sp-whisper-L3-km250-v16x8-ulm4x128); v1's reasons: CHOICES_V1, docs/FEWSHOT_v1.md
    "Measured on backbone v2 (the tables above); v1's reading of its own ablation is in FEWSHOT_v1.md.\n\n"
    "- **The readout** is what makes a prompt generalise from a few takes: read at the separator (the paper's design) "
    "the verbalizer sees one next-token distribution, shaped mostly by the clip's last units, and it fits the takes' "
    "voices (0.50 / 0.62 on new speakers); read as the mean over the clip of the same next-token outputs, it sees "
    "what the prompted LM expects throughout the word (0.81 / 0.90 with a random start, +31 / +28 points). The "
    "verbalizer still reads only the LM's output, through the same learnable linear map; shipped prompts keep "
    "reading at the separator (`read_at` is recorded in task.json; older files read as `separator`).\n"
    "- **SPoT** from the shipped commands prompt matters more on v2 than on v1: on its own words +11.3 / +8.1 / "
    "+6.1 points at K = 3 / 5 / 10 (v1: +4.1 / +1.3 / +1.6), and +18 points when the takes are synthetic and the "
    "test real (the bundled set, 0.797 -> 0.977); on words outside its labels +1.2 points at every K and +1.9 on the "
    "ablation's draws (one clip of **new** is 2-4 points): no loss there. Without SPoT the v2 flow is 5-8 points "
    "below v1's on **commands**; with it, within about a point of v1 (the app's default). The app starts from it "
    "whenever it is installed with the same prompt shape (`FewShotSettings.transfer`; `--transfer none` for a fresh "
    "prompt).\n"
    "- **Class-mean start** of the verbalizer: +1.6 / +0.6 points; kept because it costs one forward pass and makes "
    "the start a sensible classifier (short runs, like the estimate's folds, need it).\n"
    "- **Perturbed copies**: 4 copies against none +3.1 / +3.8 points without SPoT and +2.3 / +2.6 with it; 2 copies "
    "-2.5 / 0, 6 copies +0.5 / +0.6 against 4. On the synthetic bundled set with SPoT, 0 and 4 copies tie (0.977) "
    "and 2 copies get 0.922 (128 clips: noisy). They are encoded when a take is added (the view) and "
    "do not lengthen training (a fixed step budget), so the flow keeps 4.\n"
    "- **Steps**: 20, 40 and 80 are within 2 points; 40 fits the time budget. No validation split and no early stop: "
    "a fifth of five takes says nothing reliable and costs a take per class.\n"
    "- **Unit dropout**: no gain; not used.\n"
    "- **The voice codes** (new in v2): the flow's verbalizer also reads the LM's predictions of the 16 voice "
    "streams (`PromptConfig.voice`, on by default). For words they give nothing: without them +0.9 / 0.0 points "
    "(flow), +0.6 / 0.0 (flow + SPoT), and on the synthetic bundled set +9.4 points without SPoT (0.797 -> 0.891) "
    "and +0.7 with it (0.977 -> 0.984): reading the voice lets a prompt fit the takes' voices. The flow still reads "
    "them (`FEW_SHOT_PROMPT`, unchanged by this measurement; with SPoT the cost for words is under a point here); "
    "not reading them for word tasks is worth considering.\n"
    "- **Held-out feedback** in the Train view: 3-fold cross-validation over the visitor's takes (each fold a 12-step "
    "run of the same flow that never heard the held-out takes, scored on their original units), shown per class and "
    "labelled as an estimate; it costs about as much as the main run.")


PIECES_NOTE = (
    "Reading: *sep* = the verbalizer reads the LM's next-token output at the separator only (SpeechPrompt v2's "
    "design); *mean* = it reads the LM's next-token distribution averaged over every position of the clip (unit "
    "positions and the separator; the log of that mean, standardised per stream, then the same learnable linear "
    "verbalizer). Class-mean verbalizer: the verbalizer starts as a nearest-class-mean classifier on what it "
    "reads. Copies: perturbed copies of each take (speed, pitch, room, noise; app/encoder/augment.py), each encoded "
    "on its own. SPoT: the input prompt, deep prompt and separator start from the shipped commands prompt. "
    "Train seconds: training alone (units and copies already encoded), 1 torch thread on a 2-core machine shared "
    "with other jobs; on v1 at load 9-16, several times the unloaded figure, on v2 at load 4.5-5.5 (`python -m app "
    "bench` measures the whole 5 x 5 run).")


CHOICES_V3 = (  # backbone v3 (sp-whisper-L4-km500-tinyL1v16x8-ulm4x128), measured 2026-12-01 (session 14)
    "Measured on backbone v3 (the tables above); v2's reading of its own ablation is in FEWSHOT_v2.md. Points are "
    "commands / new at K = 5 on the ablation's draws (213 / 52 test clips per draw: one clip of **new** is 1.9 "
    "points).\n\n"
    "- **The readout** matters most again: the mean over the clip against the separator +29.0 / +38.5 points "
    "(0.585 -> 0.875, 0.538 -> 0.923, random start, no copies).\n"
    "- **Class-mean start** +1.4 / +3.2, **4 perturbed copies** +2.8 / +2.6; 2 or 6 copies, 20 or 80 steps are "
    "within 1.3 points of the flow; unit dropout costs 0.9 / 1.3: not used.\n"
    "- **SPoT** from the shipped commands prompt: +4.2 points on its own words, -1.9 on the new ones (one clip); in "
    "the K sweep +7.9 / +4.2 / +1.8 at K = 3 / 5 / 10 on the commands words and +1.3 / -1.3 / +2.6 on the new ones. "
    "Smaller than on v2 (+11.3 / +8.1 / +6.1) because v3's flow without SPoT is 4-6 points stronger. The source "
    "prompt matters by about a point: from the commands prompt before it was trained again on train + val "
    "(2026-12-01, RESULTS) the sweep read 0.962 / 0.961 / 0.966 on the commands words, from the refit one 0.944 / "
    "0.953 / 0.959.\n"
    "- **The voice codes**: not reading them moves words by under a point either way (+0.9 / -0.6 without SPoT, "
    "-0.2 / +0.6 with it); the flow keeps reading them.\n"
    "- **The bundled synthetic set** no longer transfers to real speakers with the app's flow: 0.664 on 128 held-out "
    "real clips (v2: 0.977), 0.805 without SPoT, 0.875 with SPoT and no copies, 0.648 with 2 copies. These are "
    "test figures of one synthetic take set, not a validation: the flow is left as the real-take ablation above "
    "chose it, and the Train view, loading the set, tells the teacher its takes are synthetic and to record real "
    "voices too.\n"
    "- **Held-out feedback** in the Train view: 3-fold cross-validation over the visitor's takes, as on v2.")

#: The reading of each backbone's ablation, by fingerprint (what the report ends with).
CHOICES = {V1_FINGERPRINT: CHOICES_V1, EARLIER["v2"][0]: CHOICES_V2, "421cd0a4a7927cff": CHOICES_V3}


def flow_text(flow: dict | None) -> str:
    if not flow:
        return ""
    return (f"every take plus {flow['copies']} perturbed copies, {flow['steps']} steps of {flow['batch_size']} "
            f"(AdamW, lr {flow['lr']}, one-cycle), no validation split, verbalizer started from the class means and "
            f"reading the LM's next-token distribution averaged over the clip (`read_at=\"{flow['read_at']}\"`); "
            "SPoT only where named.")


def chart(summ: dict, ks: list[int], backbone: str = "") -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for set_name, dash in (("commands", "solid"), ("new", "dot")):
        for m in HEADLINE:
            pts = [(k, summ[(set_name, k, m)]) for k in ks if (set_name, k, m) in summ]
            if not pts:
                continue
            fig.add_trace(go.Scatter(
                x=[k for k, _ in pts], y=[v["mean"] for _, v in pts], mode="lines+markers",
                name=f"{set_name}: {SHOWN.get(m, m)}", line=dict(dash=dash),
                error_y=dict(type="data", symmetric=False, array=[v["max"] - v["mean"] for _, v in pts],
                             arrayminus=[v["mean"] - v["min"] for _, v in pts])))
    fig.update_layout(title="Few-shot accuracy on unseen speakers against takes per word (K)"
                            + (f" - backbone {backbone}" if backbone else ""),
                      xaxis=dict(title="takes per word (K), each from a different speaker", tickvals=ks),
                      yaxis=dict(title="accuracy on other speakers", range=[0, 1.02]), template="plotly_white")
    fig.write_html(DOCS / "fewshot.html", include_plotlyjs="cdn")


def spot_source(bb: Backbone, needed: bool):
    """The shipped commands prompt SPoT starts from, if it was trained on this backbone (else None; an error only if a
    requested piece needs it)."""
    from app.prompting import PromptError

    try:
        return load_prompt(DEFAULT_PROMPTS_DIR / "commands", bb.lm.config, bb.fingerprint)
    except PromptError as exc:
        if needed:
            raise SystemExit(f"SPoT needs the shipped commands prompt of this backbone: {exc}") from None
        log(f"no SPoT source ({exc}); running the pieces without SPoT only")
        return None


def spot_sha() -> str:
    """sha256 of the shipped commands prompt's weights: which prompt a SPoT run started from."""
    return hashlib.sha256((DEFAULT_PROMPTS_DIR / "commands" / "prompt.safetensors").read_bytes()).hexdigest()


def drop_stale_spot(results: dict, sha: str) -> int:
    """Remove the runs that started from another commands prompt than the one with weights ``sha`` (SPoT runs, and
    the bundled set, which has SPoT rows), so that they are measured again and every row of the report started from
    the prompt ``spot_source`` names; runs recorded before each carried its source have the file's ``spot_source``.
    Returns how many runs were removed."""
    before = (results.get("spot_source") or {}).get("sha256")

    def stale(r: dict) -> bool:
        return bool((r.get("settings") or {}).get("transfer")) and r.get("spot_sha256", before) != sha

    kept = [r for r in results["runs"] if not stale(r)]
    dropped = len(results["runs"]) - len(kept)
    results["runs"] = kept
    if "bundled" in results and results.get("bundled_spot_sha256", before) != sha:
        del results["bundled"]
        dropped += 1
    return dropped


def same_backbone(results: dict, backbone: dict, path: Path) -> dict | None:
    """``results`` if they were measured on ``backbone``; runs of another backbone (files from before the backbone
    was recorded are v1's) are never mixed in: None, and a line in the log."""
    had = results.get("backbone", {}).get("fingerprint", V1_FINGERPRINT)  # v1's runs named no backbone
    if had != backbone["fingerprint"]:
        log(f"{path}: runs of backbone {had}, not {backbone['fingerprint']}: not used")
        return None
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", nargs="*", type=int, default=[3, 5, 10])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--train-ks", nargs="*", type=int, default=None,
                    help="run only these of --ks (the draws still nest up to the largest of --ks)")
    ap.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    ap.add_argument("--pieces", nargs="*", default=["flow"], help=f"of {list(PIECES)}")
    ap.add_argument("--ablation", action="store_true", help="every piece (at K = 5)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DOCS / "fewshot.json")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--no-bundled", action="store_true", help="do not measure the bundled set on real speakers")
    ap.add_argument("--report-only", action="store_true", help="only rewrite docs/FEWSHOT.md and the chart")
    ap.add_argument("--merge", nargs="*", type=Path, default=[], help="add the runs of other result files")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bb = Backbone.load()
    feats = Features(bb, DATA_ROOT / "noise")
    pieces = list(PIECES) if args.ablation else args.pieces
    source = spot_source(bb, needed=any(PIECES[p][1].transfer for p in pieces))
    backbone = {"id": bb.id, "fingerprint": bb.fingerprint}
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    if args.out.exists() and same_backbone(results, backbone, args.out) is None:
        raise SystemExit(f"{args.out} holds another backbone's runs: keep them as docs/fewshot_<name>.json (EARLIER; "
                         f"as {earlier_results('v1').name} keeps v1's) or pass --out.")
    results["backbone"] = backbone
    command = "python -m recipes.experiments.fewshot " + " ".join(
        f'"{a}"' if " " in a else a for a in sys.argv[1:])
    results.setdefault("commands", [])
    if command.strip() not in results["commands"] and not args.report_only:
        results["commands"].append(command.strip())
    for extra in args.merge:
        other = same_backbone(json.loads(extra.read_text()), backbone, extra)
        if other is None:
            continue
        results["runs"] += other["runs"]
        for key in ("bundled", "timing"):
            if key in other and key not in results:
                results[key] = other[key]
    sha = spot_sha() if source is not None else None
    if sha and not args.report_only:
        dropped = drop_stale_spot(results, sha)
        if dropped:
            log(f"{dropped} runs started from an older commands prompt: measured again where this run asks for them")
    key = lambda r: (r["set"], r["k"], r["draw"], r["method"], r.get("nest", 10))  # noqa: E731
    done = {key(r) for r in results["runs"]}
    results["runs"] = [r for i, r in enumerate(results["runs"]) if key(r) not in {key(q) for q in results["runs"][:i]}]
    if args.report_only:
        results["settings"] = {"flow": {**asdict(FEW_SHOT_SETTINGS), "read_at": FEW_SHOT_PROMPT.read_at}}
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        report(results)
        return
    for set_name in args.sets:
        words = SETS[set_name]
        train_c, test_c = pool(words, held_out_test=set_name == "commands")
        for d in range(args.draws):
            draws = nested_draw(words, args.ks, d, train_c, test_c)
            for k in args.train_ks or args.ks:
                takes, test = draws[k]
                methods = {f"prompt: {p}": PIECES[p] for p in pieces if k == 5 or p == "flow" or not args.ablation}
                for name in ["MFCC + LR", "pooled encoder + LR", *methods]:
                    if (set_name, k, d, name, max(args.ks)) in done:
                        continue
                    if name == "MFCC + LR":
                        row = {"accuracy": lr_peer(feats.mfcc, takes, test)}
                    elif name == "pooled encoder + LR":
                        row = {"accuracy": lr_peer(feats.pooled, takes, test)}
                    else:
                        row = prompt_accuracy(bb, feats, takes, test, methods[name], source)
                        row["settings"] = {**asdict(methods[name][1]), "read_at": methods[name][0].read_at}
                        if methods[name][1].transfer:
                            row["spot_sha256"] = sha
                    row.update({"set": set_name, "k": k, "draw": d, "seed": d, "method": name, "test_clips": len(test),
                                "nest": max(args.ks), "backbone": bb.fingerprint})
                    results["runs"].append(row)
                    secs = f", {row['train_seconds']:.1f} s" if "train_seconds" in row else ""
                    log(f"{set_name} K={k} draw {d} {name}: {row['accuracy']:.3f} ({len(test)} test clips{secs})")
                    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if source is not None and any(r["method"].startswith("prompt: ") and r.get("settings", {}).get("transfer")
                                  for r in results["runs"]):
        meta = json.loads((DEFAULT_PROMPTS_DIR / "commands" / "task.json").read_text())
        results["spot_source"] = {"sha256": sha, "test_accuracy": meta.get("metrics", {}).get("test_accuracy")}
    if "bundled" not in results and not args.no_bundled:
        if source is None:
            log("bundled set not measured: no commands prompt for this backbone (its SPoT row needs one)")
        else:
            results["bundled"], results["bundled_spot_sha256"] = bundled(bb, feats, source), sha
    results["settings"] = {"flow": {**asdict(FEW_SHOT_SETTINGS), "read_at": FEW_SHOT_PROMPT.read_at}}
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_report:
        report(results)
    log("done")


if __name__ == "__main__":
    main()
