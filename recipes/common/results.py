"""What train_prompts writes and other recipes read: the method variants, units of task splits cached per encoder
fingerprint, and the per-task results in docs/results/."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from app.backbone import Backbone
from app.encoder.audio import prepare
from app.encoder.units import Units

from .paths import DOCS, written_whole
from .tasks import FAKE_FAMILIES, TASKS

#: The methods train_prompts compares on every task (SpeechPrompt v2 and its baselines).
VARIANTS = ("v2", "v2_units", "v2_mean", "v2_mean_novoice", "v2_aug", "v2_mean_aug", "v2_mean_novoice_aug",
            "v2_units_aug", "v2_mean_aug_spot", "v2_mean_novoice_aug_spot", "v2_aug_spot", "v2_units_aug_spot",
            "v2_mean_lp", "v2_mean_aug_lp", "shallow", "freq", "finetune", "pooled", "mfcc")
RESULTS_DIR = DOCS / "results"
#: The ``fake`` task's leave-one-family-out run (recipes.build.fake_families).
FAMILIES_FILE = RESULTS_DIR / "families" / "fake.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def encode_split(encoder, fingerprint: str, task, split: str, cache: Path, cap: int = 0,
                 seed: int = 0) -> tuple[list[Units], list[int], dict]:
    """Units and label indices of a task split, at most ``cap`` clips (stratified; 0 = all), cached under the
    encoder's fingerprint so that variants, reruns and a retrained LM reuse them."""
    examples = split_examples(task, split, cap, seed)
    path = cache / fingerprint / f"{task.id}_{split}{f'_cap{cap}' if cap else ''}.safetensors"
    labels = [task.labels.index(e.label) for e in examples]
    digest = clips_digest(examples)
    if cached_from(path) == digest:
        units, stored = read_units(path)
        if stored == labels:
            return units, labels, json.loads(path.with_suffix(".json").read_text())
    t0 = time.time()
    units, seconds = [], 0.0
    for i, e in enumerate(examples):
        audio = prepare(e.audio)
        seconds += audio.seconds
        with torch.no_grad():
            units.append(encoder(audio.wav))
        if i and i % 500 == 0:
            log(f"    {task.id}/{split}: encoded {i}/{len(examples)}")
    write_units(path, units, labels, digest)
    stats = {"clips": len(examples), "audio_seconds": round(seconds, 1), "encode_seconds": round(time.time() - t0, 1),
             "speakers": len({e.speaker for e in examples}), "real": sum(e.source == "real" for e in examples)}
    path.with_suffix(".json").write_text(json.dumps(stats))
    return units, labels, stats


def clips_digest(examples: list) -> str:
    """Which clips a cached file holds, in order: a digest of each clip's file (a real recording's folder and name,
    a synthetic clip's recipe key is in its name), so a changed recipe is encoded again even where its labels are
    the same."""
    names = "\n".join("/".join(Path(e.audio).parts[-2:]) for e in examples)
    return hashlib.sha256(names.encode("utf-8")).hexdigest()[:32]


def cached_from(path: Path) -> str | None:
    """The :func:`clips_digest` a cached units file was written with (None: no file, or written without one)."""
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("clips")


def read_units(path: Path) -> tuple[list[Units], list[int]]:
    """Unit sequences and their labels as :func:`write_units` stored them."""
    t = load_file(str(path))
    off = t["offsets"].tolist()
    voice = t.get("voice")
    units = [Units(ids=t["ids"][a:b].long(), durations=t["dur"][a:b].long(), pitch=t["pitch"][a:b].float(),
                   voice=voice[a:b].long() if voice is not None else None)
             for a, b in zip(off[:-1], off[1:])]
    return units, t["labels"].tolist()


def write_units(path: Path, units: list[Units], labels: list[int], digest: str = "") -> None:
    """Store unit sequences (concatenated, with offsets) and their labels in one safetensors file, with the
    :func:`clips_digest` of the clips they were encoded from; the file is replaced in one step, so a run of the same
    task in another process never reads half of it."""
    off = np.cumsum([0] + [len(u) for u in units])
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"ids": torch.cat([u.ids for u in units]).to(torch.int16),
               "dur": torch.cat([u.durations for u in units]).to(torch.int16),
               "pitch": torch.cat([u.pitch for u in units]).float(),
               "offsets": torch.tensor(off, dtype=torch.int64), "labels": torch.tensor(labels)}
    if units and units[0].voice is not None:
        tensors["voice"] = torch.cat([u.voice for u in units]).to(torch.int8)
    with written_whole(path) as tmp:  # a parallel run of the same task may read it meanwhile
        save_file(tensors, str(tmp), metadata={"clips": digest})


def encode_copies(encoder, fingerprint: str, task, split: str, cache: Path, n: int, cap: int = 0,
                  seed: int = 0, noise_dir: Path | None = None, plan: str = "copies") -> list[list[Units]]:
    """For every clip of a split (as :func:`encode_split` picks them), the units of ``n`` perturbed copies of its
    audio by app.encoder.augment's plan ``plan`` (PLANS: "copies" speed, pitch, room + noise, ...; "channel" room,
    noise, level; "cropped" PLAN's copies, some cut to their loud core), clip i's copies seeded by ``seed + i`` (a
    clip listed twice gets different copies), cached beside the split's units under the plan's name."""
    from app.encoder import augment

    examples = split_examples(task, split, cap, seed)
    labels = [task.labels.index(e.label) for e in examples]
    steps, kind = augment.PLANS[plan], plan
    path = cache / fingerprint / f"{task.id}_{split}{f'_cap{cap}' if cap else ''}_{kind}{n}.safetensors"
    digest = clips_digest(examples)
    if cached_from(path) == digest:
        units, stored = read_units(path)
        if stored == [y for y in labels for _ in range(n)]:
            return [units[i * n:(i + 1) * n] for i in range(len(examples))]
    t0 = time.time()
    flat: list[Units] = []
    for i, e in enumerate(examples):
        wav = prepare(e.audio).wav
        with torch.no_grad():
            flat += [encoder(w) for w in augment.copies(wav, n, np.random.default_rng(seed + i), noise_dir, steps)]
        if i and i % 200 == 0:
            log(f"    {task.id}/{split}: {n} copies of {i}/{len(examples)} clips ({time.time() - t0:.0f} s)")
    write_units(path, flat, [y for y in labels for _ in range(n)], digest)
    return [flat[i * n:(i + 1) * n] for i in range(len(examples))]


def pooled_features(encoder, fingerprint: str, task, split: str, cache: Path, cap: int = 0,
                    seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Per clip, the mean and standard deviation over time of the encoder's dense frames (what its k-means
    quantizes), audio prepared as for units; cached under the encoder's fingerprint like the units."""
    examples = split_examples(task, split, cap, seed)
    labels = [task.labels.index(e.label) for e in examples]
    path = cache / fingerprint / f"{task.id}_{split}{f'_cap{cap}' if cap else ''}_pooled.safetensors"
    digest = clips_digest(examples)
    if cached_from(path) == digest:
        t = load_file(str(path))
        if t["labels"].tolist() == labels:
            return t["features"].numpy(), labels
    feats = []
    for e in examples:
        with torch.no_grad():
            f = encoder.features(prepare(e.audio).wav).float()
        feats.append(torch.cat([f.mean(0), f.std(0, unbiased=False)]))
    features = torch.stack(feats)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"features": features.contiguous(), "labels": torch.tensor(labels)}, str(path),
              metadata={"clips": digest})
    return features.numpy(), labels


def split_examples(task, split: str, cap: int = 0, seed: int = 0) -> list:
    """The examples of a split, at most ``cap`` of them (stratified, seeded): every method trains on these."""
    examples = task.examples(split)
    if cap and len(examples) > cap:
        examples = [e for e, _ in cap_stratified([(e, e.label) for e in examples], cap, seed)]
    return examples


def cap_stratified(items: list, n: int, seed: int) -> list:
    """At most ``n`` items, keeping the label proportions (a seeded choice); all of them when n <= 0."""
    if n <= 0 or len(items) <= n:
        return items
    rng = np.random.default_rng(seed)
    labels = np.array([y for _, y in items])
    keep: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep += rng.permutation(idx)[: max(1, round(n * len(idx) / len(items)))].tolist()
    return [items[i] for i in sorted(keep)]


def task_card(task, metrics: dict, cap: int = 0, seed: int = 0, val_cap: int | None = None) -> dict:
    """The task card of ``task``'s shipped prompt (``app.prompting.TaskCard`` as JSON): whose speech it learned
    from, counted on the training clips train_prompts uses (at most ``cap``, stratified, seeded: as
    :func:`split_examples` picks them, without making audio; with ``val_cap`` not None the validation clips too, at
    most that many: a prompt trained again on train + val), and the task's own texts. Raises PromptError when
    ``metrics`` lack the task's headline metric."""
    from app.prompting import TaskCard

    def picked(split: str, n: int) -> list:
        return [c for c, _ in cap_stratified([(c, c.label) for c in task.clips(split)], n, seed)]

    clips = picked("train", cap) + (picked("val", val_cap) if val_cap is not None else [])
    real = len({c.speaker for c in clips if c.source == "real"})
    synthetic = len({c.speaker for c in clips if c.source != "real"})
    card = TaskCard(training_speech="both" if real and synthetic else "real" if real else "synthetic",
                    real_speakers=real, synthetic_voices=synthetic, headline_metric=task.headline_metric,
                    test_means=task.test_means, not_for=task.not_for)
    return TaskCard.from_json(card.to_json(), metrics).to_json()


def unseen_family_metrics(path: Path = FAMILIES_FILE, fingerprint: str | None = None) -> dict:
    """What prompts/fake/task.json carries from a complete leave-one-family-out run: ``unseen_family_eer`` (pooled
    over the folds), ``unseen_family_eer_worst`` and each family's ``unseen_family_eer_<family>``; {} before, and {}
    when ``fingerprint`` (the prompt's backbone) is given and the run was measured on another backbone."""
    if not path.is_file():
        return {}
    r = json.loads(path.read_text())
    if not r.get("complete") or (fingerprint is not None and r.get("backbone") != fingerprint):
        return {}
    per = {f: r["held_out"][f]["eer"] for f in FAKE_FAMILIES}
    return {"unseen_family_eer": r["pooled_eer"], "unseen_family_eer_worst": max(per.values()),
            **{f"unseen_family_eer_{f}": v for f, v in per.items()}}


def shipped(r: dict) -> dict | None:
    """The row of the prompt shipped in prompts/: the chosen variant's, or its ``refit`` on train + val where there
    is one of that variant (older results: plain v2)."""
    again = r.get("refit")
    if again and again.get("variant") == r.get("shipped"):
        return again
    return r.get(r.get("shipped", "v2"))


def load_results(bb: Backbone) -> dict:
    """Per-task results, keeping only rows measured on this backbone (the MFCC baseline needs none; the pooled
    encoder baseline only this backbone's encoder)."""
    out = {}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        if path.stem not in TASKS:  # other measurements kept beside them (lm_health.json)
            continue
        r = json.loads(path.read_text())
        for k in [*VARIANTS, "refit"]:
            if k not in r or k == "mfcc":
                continue
            key, fp = ("encoder_fingerprint", bb.encoder_fingerprint) if k == "pooled" else ("fingerprint",
                                                                                          bb.fingerprint)
            if r[k].get(key) != fp:
                del r[k]
        out[path.stem] = r
    order = list(TASKS)
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


#: The report the fake section lives in (train_prompts writes the rest of it).
RESULTS_MD = DOCS / "RESULTS.md"
FAMILY_SECTION = "## fake: synthesizer families never seen in training"
#: The issue's targets for the fake prompt on spoof families never seen in training (EER, lower is better).
FAMILY_TARGETS = {"each held-out family": 0.15, "pooled": 0.10}


#: The probes of a leave-one-family-out run, in the table's order (recipes.build.fake_families.BASELINES).
PROBES = {"mfcc_lr": "MFCC + LR", "encoder_pooled_lr": "encoder pooled + LR", "lfcc_lr": "LFCC + LR"}


def _cell(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def family_lines(r: dict, fingerprint: str) -> list[str]:
    """RESULTS.md's section on the fake task's leave-one-family-out run ``r`` (docs/results/families/fake.json):
    per held-out family the prompt's EER beside the probes' (MFCC + LR, encoder pooled + LR, LFCC + LR) on the same
    folds, and the targets; empty when ``r`` was measured on another backbone than ``fingerprint`` or has no fold."""
    base = r.get("baselines", {})
    fams = [f for f in FAKE_FAMILIES if f in r.get("held_out", {}) or any(f in b.get("held_out", {})
                                                                           for b in base.values())]
    if r.get("backbone") != fingerprint or not fams:
        return []
    b, setup = r.get("budget", {}), r.get("setup", {})
    probe_keys = [k for k in PROBES if k in base]  # runs from before a probe existed lack its column
    lines = [FAMILY_SECTION, "",
             f"Leave-one-family-out: for each family a {r['variant']} prompt is trained like the shipped one "
             f"(at most {b.get('max_train', 1000):,} training clips, {b.get('epochs', 30)} epochs, "
             f"{b.get('max_minutes', 7):g}-minute cap, seed {b.get('seed', 0)}"
             + (f"; {setup['copies']} channel-perturbed copies of each training clip, one swapped in at random per "
                "epoch" if setup.get("copies") else "")
             + (f"; unit dropout {setup['unit_dropout']:g}" if setup.get("unit_dropout") else "")
             + ") on the other four families and the "
             "real clips, then scored on the test split's real clips (people never heard) against that family's test "
             "spoofs. On the same folds and clips, probes (baselines, never shipped): MFCC statistics + LR, "
             "encoder pooled + LR (mean and std over time of the encoder frames the k-means quantizes) and LFCC + LR "
             "(ASVspoof's linear-frequency cepstra with deltas, mean and std over time); each a "
             "standardised logistic regression, C picked on the fold's validation clips, refit on training + "
             "validation. "
             "The last column is "
             "the shipped prompt, trained on all five families (test voices still unseen where the family has "
             f"enough voices). Backbone `{r.get('backbone_id', '')}` (fingerprint `{r['backbone']}`). "
             f"Command: `{r['command'].strip()}` ({r['date']})"
             + "".join(f"; probes: `{c}`" for c in sorted({b.get("command", "").strip() for b in base.values()})
                       if c and c != r["command"].strip())
             + "; data: `python -m recipes.build.tasks --build fake`. What was tried to make the prompt generalise: "
             "[FAKE.md](FAKE.md).",
             "", "| held-out family | test voices | test spoofs | EER, prompt (family never seen) | "
             + "".join(f"EER, {PROBES[k]} | " for k in probe_keys)
             + "spoofs passed as real (prompt, p < 0.5) | real called spoof (prompt) | "
             "epochs (train s wall / CPU) | EER, shipped prompt (family seen) |",
             "|---|---|---|---|" + "---|" * len(probe_keys) + "---|---|---|---|"]
    for fam in fams:
        row = r.get("held_out", {}).get(fam, {})
        voices = ", ".join(v for _, v in FAKE_FAMILIES[fam]["test"]) if fam != "formant" else \
            f"{len(FAKE_FAMILIES[fam]['test'])} espeak-ng variants"
        probes = [base.get(k, {}).get("held_out", {}).get(fam, {}) for k in probe_keys]
        n = row.get("spoofs") or next((p["spoofs"] for p in probes if p), "")
        seen = r.get("seen", {}).get(fam, {}).get("eer")
        cpu = row.get("train_cpu_seconds")
        run = f"{row['epochs_run']} ({row.get('train_seconds', '')}{'' if cpu is None else f' / {cpu}'})" \
            if row else ""
        lines.append(f"| {fam} | {voices} | {n} | {_cell(row.get('eer'))} | "
                     + "".join(f"{_cell(x.get('eer'))} | " for x in probes) +
                     f"{'' if not row else format(row['spoofs_passed_as_real'], '.1%')} | "
                     f"{'' if not row else format(row['real_called_spoof'], '.1%')} | {run} | {_cell(seen)} |")
    pooled = [r.get("pooled_eer")] + [base.get(k, {}).get("pooled_eer") for k in probe_keys]
    seen_all = r.get("seen", {}).get("all", {}).get("eer")
    total = sum(x["spoofs"] for x in r.get("held_out", {}).values()) or ""
    lines.append(f"| **pooled** | | {total} | **{_cell(pooled[0])}** | " + "".join(f"{_cell(x)} | " for x in pooled[1:])
                 + f"| | | {_cell(seen_all)} |")
    if r.get("held_out"):
        worst = max(x["eer"] for x in r["held_out"].values())
        each = FAMILY_TARGETS["each held-out family"]
        lines += ["", "| target (the prompt) | measured | met |", "|---|---|---|",
                  f"| EER <= {each:.2f} on each held-out family | worst {worst:.3f} | "
                  f"{'yes' if worst <= each and r.get('complete') else 'no'} |"]
        if r.get("pooled_eer") is not None:
            lines.append(f"| pooled EER <= {FAMILY_TARGETS['pooled']:.2f} | {r['pooled_eer']:.3f} | "
                         f"{'yes' if r['pooled_eer'] <= FAMILY_TARGETS['pooled'] else 'no'} |")
        lines += ["", f"Each fold's training stops after {b.get('epochs', 30)} epochs, {setup.get('patience', 8)} "
                  "epochs without a better validation accuracy, or at the wall-clock cap; on a busy machine the cap "
                  "comes after fewer epochs (epochs column; CPU seconds measure the work done)."]
        if not r.get("complete"):
            lines += ["", f"Not every family has been held out yet: the prompt's pooled figure covers the "
                      f"{len(r['held_out'])} families it has a fold for; the probes' pooled figures cover the "
                      "families they have."]
    return lines + [""]


def report_backbone(path: Path) -> str | None:
    """The backbone fingerprint a report (RESULTS.md) names first, None if it names none."""
    import re

    m = re.search(r"fingerprint `([0-9a-f]{16})`", path.read_text()) if path.is_file() else None
    return m.group(1) if m else None


def write_family_section(path: Path, lines: list[str], fingerprint: str | None = None) -> bool:
    """Put ``lines`` (:func:`family_lines`) in place of the fake section of the report at ``path`` (it runs to the
    next ``## `` heading or the end), or after the report's end when it has none. Nothing when ``lines`` is empty or
    when the report is about another backbone than ``fingerprint`` (given): a run on a new backbone does not
    replace the section of the backbone the rest of the report describes. True if written."""
    if not lines or not path.is_file():
        return False
    if fingerprint is not None and report_backbone(path) not in (None, fingerprint):
        return False
    old = path.read_text().split("\n")
    start = next((i for i, line in enumerate(old) if line.strip() == FAMILY_SECTION), None)
    if start is None:
        new = old + ([""] if old and old[-1] else []) + lines
    else:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
        new = old[:start] + lines + old[end:]
    path.write_text("\n".join(new))
    return True
