"""Train the prompt library and its baselines on the shipped backbone, and write docs/RESULTS.md.

    python -m recipes.build.train_prompts                       # every task, SpeechPrompt v2 + all baselines
    python -m recipes.build.train_prompts --tasks digits gender --variants v2 mfcc

Methods (recipes.common.results.VARIANTS): v2, v2_units, shallow, freq, finetune, mfcc. Of the two v2 prompts the
one with the better validation accuracy is shipped to prompts/<task>/; results accumulate in docs/results/<task>.json
and docs/RESULTS.md is regenerated (--report-only does just that). Each shipped task.json gets its task card
(--cards-only writes just the cards, into the prompts already shipped: no training). Details:
docs/RECIPES.md#train_prompts.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file


from app.backbone import Backbone
from app.encoder.audio import prepare
from app.metrics import accuracy, eer, macro_f1
from app.prompt_files import save_prompt
from app.prompting import PromptConfig, PromptError, TaskInfo
from app.settings import ROOT
from app.training import TrainConfig, finetune, new_prompt, predict_proba, prompt_logits_fn, train_task
from recipes.common.paths import DOCS, WORK
from recipes.common.results import (FAMILIES_FILE, RESULTS_DIR, VARIANTS, encode_split, load_results, log,
                                    shipped, split_examples, task_card, unseen_family_metrics)
from recipes.common.tasks import FAKE_FAMILIES, REAL_LANGUAGE_COPIES, TASKS

SHIPPABLE = ("v2", "v2_units")  # prompt-tuning variants a shipped prompt is chosen from, by validation accuracy
PROMPT_VARIANTS = {  # "finetune" trains the whole LM with the v2_units prompt in front of it
    "v2": PromptConfig(prompt_length=5, deep=True, verbalizer="learnable", prosody=True),
    "v2_units": PromptConfig(prompt_length=5, deep=True, verbalizer="learnable", prosody=False),
    "shallow": PromptConfig(prompt_length=5, deep=False, verbalizer="learnable", prosody=False),
    "freq": PromptConfig(prompt_length=5, deep=True, verbalizer="freq"),
}
#: The prompt library's accuracy targets: task -> (evaluation split, minimum accuracy of the shipped prompt).
TARGETS = {"digits": ("test", 0.90), "commands": ("test", 0.85), "ar_commands": ("test", 0.97),
           "lt_commands": ("test", 0.70), "language": ("real", 0.60), "emotion": ("test", 0.50),
           "gender": ("test", 0.95)}
MAX_GAP_POINTS = 3.0  # SpeechPrompt v2's mean accuracy at most this far below full fine-tuning...
MAX_PARAM_SHARE = 0.01  # ...with at most this share of its trainable parameters


# ---------------------------------------------------------------------------------------------- unit cache
def split_cap(args, split: str) -> int:
    return {"train": args.max_train, "val": args.max_val}.get(split, 0)


# ---------------------------------------------------------------------------------------------- scoring
def scores(task, probs: torch.Tensor, y: list[int]) -> dict:
    pred = probs.argmax(1).tolist()
    out = {"accuracy": round(accuracy(y, pred), 4), "macro_f1": round(macro_f1(y, pred, len(task.labels)), 4)}
    if task.metric == "eer":
        pos = task.labels.index("spoof")
        out["eer"] = round(eer(probs[:, pos].tolist(), [t == pos for t in y]), 4)
    return out


def mfcc_features(examples) -> np.ndarray:
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(sample_rate=16000, n_mfcc=20, melkwargs={"n_mels": 40, "n_fft": 400,
                                                                              "hop_length": 160})
    feats = []
    for e in examples:
        m = mfcc(prepare(e.audio).wav)
        d = torch.diff(m, dim=1) if m.shape[1] > 1 else torch.zeros_like(m)
        feats.append(torch.cat([m.mean(1), m.std(1, unbiased=False), d.mean(1), d.std(1, unbiased=False)]).numpy())
    return np.stack(feats)


def run_mfcc(task, splits_needed, args) -> tuple[dict, dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.time()
    ex = {s: split_examples(task, s, split_cap(args, s), args.seed) for s in splits_needed}
    X = {s: mfcc_features(ex[s]) for s in splits_needed}
    y = {s: [task.labels.index(e.label) for e in ex[s]] for s in splits_needed}
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    clf.fit(np.concatenate([X["train"], X["val"]]), y["train"] + y["val"])
    out = {}
    for s in splits_needed:
        if s in ("train", "val"):
            continue
        probs = np.zeros((len(X[s]), len(task.labels)))
        probs[:, clf.classes_] = clf.predict_proba(X[s])
        out[s] = scores(task, torch.from_numpy(probs), y[s])
    n_params = int(clf[-1].coef_.size + clf[-1].intercept_.size)
    return out, {"trainable_params": n_params, "train_seconds": round(time.time() - t0, 1)}


# ---------------------------------------------------------------------------------------------- one task
def run_task(bb: Backbone | None, task, variants, args) -> dict:
    """Train and score ``variants`` on one task; ``bb`` may be None when only the MFCC baseline runs."""
    eval_splits = [s for s in task.splits if s not in ("train", "val")]
    results: dict = {"title": task.title, "labels": list(task.labels), "metric": task.metric}
    if bb is None:
        results["data"] = {s: {"clips": len(split_examples(task, s, split_cap(args, s), args.seed))}
                           for s in task.splits}
    else:
        data = {s: encode_split(bb.encoder, bb.encoder_fingerprint, task, s, args.cache, split_cap(args, s),
                                args.seed) for s in task.splits}
        train = list(zip(data["train"][0], data["train"][1]))
        val = list(zip(data["val"][0], data["val"][1]))
        results["data"] = sizes = {s: data[s][2] for s in task.splits}
        lm = bb.lm
    for variant in variants:
        log(f"  {task.id}: {variant}")
        torch.manual_seed(args.seed)
        if variant == "mfcc":
            out, extra = run_mfcc(task, task.splits, args)
            results[variant] = {**out, **extra}
            continue
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                          seed=args.seed, max_seconds=args.max_minutes * 60)
        info = TaskInfo(id=task.id, labels=list(task.labels), title=task.title, description=task.description)
        config = PROMPT_VARIANTS.get(variant, PROMPT_VARIANTS["v2_units"])
        if variant == "finetune":
            prompt = new_prompt(lm, info, config, [u for u, _ in train], args.seed)
            model, res = finetune(lm, prompt, train, val, cfg)
            logits_fn, n_params = model, model.num_trainable()
        else:  # the library's one training flow (what the Train view and `python -m app train` run), with this
            # recipe's budget: a validation split picks the epoch; the verbalizer starts at random as it always has
            prompt, res = train_task(lm, info, config, train, val, cfg, verbalizer_init="random", seed=args.seed)
            logits_fn, n_params = prompt_logits_fn(lm, prompt), prompt.num_trainable()
        out = {}
        for s in eval_splits:
            probs = predict_proba(logits_fn, data[s][0])
            out[s] = scores(task, probs, data[s][1])
        row = {**out, "trainable_params": n_params, "verbalizer_reads": list(prompt.reads),
               "train_seconds": round(res.seconds, 1),
               "epochs_run": len(res.history), "best_epoch": res.best_epoch, "val_accuracy": res.best_val_acc,
               "train_accuracy": round(res.train_acc, 4)}
        if variant in SHIPPABLE:
            test = out["test"]
            info.metrics = {"test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
                            **({"test_eer": test["eer"]} if "eer" in test else {}),
                            **({f"{s}_accuracy": out[s]["accuracy"] for s in eval_splits if s != "test"}),
                            "val_accuracy": res.best_val_acc, "train_seconds": round(res.seconds, 1),
                            "epochs_run": len(res.history)}
            info.training_data = (f"{sizes['train']['clips']} train / {sizes['val']['clips']} val / "
                                  f"{sizes['test']['clips']} test clips ({sizes['train']['speakers']} training "
                                  f"speakers or voices; test speakers never heard in training). Built by "
                                  f"recipes/build/tasks.py.")
            folder = save_prompt(prompt, args.candidates / variant / task.id, bb.id, bb.fingerprint)
            row["bytes"] = (folder / "prompt.safetensors").stat().st_size
        results[variant] = {**row, "fingerprint": bb.fingerprint}
        log(f"    {variant}: {json.dumps(out)} ({n_params:,} params, {res.seconds:.0f} s, {len(res.history)} epochs)")
    return results


# ---------------------------------------------------------------------------------------------- task cards
def write_card(task, folder: Path, args) -> bool:
    """Write ``task``'s card (and, for ``fake``, the leave-one-family-out figures) into ``folder/task.json`` of a
    shipped prompt; False when there is no prompt or the card's headline figure is not measured yet."""
    path = folder / "task.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text(encoding="utf-8"))
    metrics = dict(meta.get("metrics") or {})
    if task.id == "fake":
        metrics = {k: v for k, v in metrics.items() if not k.startswith("unseen_family_eer")}
        metrics.update(unseen_family_metrics())
    try:
        card = task_card(task, metrics, args.max_train, args.seed)
    except PromptError as exc:
        log(f"{task.id}: no task card ({exc})")
        return False
    meta["metrics"], meta["card"] = metrics, card
    path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


# ---------------------------------------------------------------------------------------------- reports
def select_and_ship(tid: str, results: dict, candidates: Path, out: Path, fingerprint: str) -> str | None:
    """Ship the v2 prompt with the best validation accuracy (ties: the first of SHIPPABLE) to ``out/<task>``;
    returns its variant, or None when no candidate for this backbone is on disk."""
    rows = [(results[v]["val_accuracy"], -i, v) for i, v in enumerate(SHIPPABLE)
            if v in results and results[v].get("fingerprint") == fingerprint
            and (candidates / v / tid / "task.json").is_file()]
    if not rows:
        return None
    best = max(rows)[2]
    dest = out / tid
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(candidates / best / tid, dest)
    return best


def headline(r: dict, metric: str) -> float | None:
    if r is None or "test" not in r:
        return None
    return r["test"]["eer"] if metric == "eer" else r["test"]["accuracy"]


def write_reports(all_results: dict, bb: Backbone) -> None:
    names = {"v2": "v2, verbalizer on units + prosody", "v2_units": "v2, verbalizer on units",
             "shallow": "input prompt only", "freq": "deep + freq verbalizer",
             "finetune": "full fine-tuning", "mfcc": "MFCC + logistic regression"}
    lines = [
        "# Results: the prompt library on our backbone",
        "",
        f"Backbone `{bb.id}` (fingerprint `{bb.fingerprint}`), frozen unit LM of {bb.lm.num_params():,} parameters.",
        "Every number is on a test split whose speakers (or synthetic voices) were never in training.",
        "Reproduce everything (prompts, this table, the chart): `python -m recipes.build.train_prompts`.",
        "",
        "## SpeechPrompt v2 prompts (shipped in prompts/)",
        "",
        "The shipped prompt of each task is the v2 variant (verbalizer on units + prosody, or on units only) with the",
        "better validation accuracy; the test split plays no part in that choice.",
        "",
        "| task | labels | test accuracy | macro-F1 | other | verbalizer reads | val acc | trainable params | bytes | "
        "train s | train / val / test clips |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tid, r in all_results.items():
        v = shipped(r)
        if not v:
            continue
        other = []
        if "eer" in v["test"]:
            other.append(f"EER {v['test']['eer']:.3f}")
        for s, m in v.items():
            if isinstance(m, dict) and s not in ("test",) and "accuracy" in m:
                other.append(f"{s} acc {m['accuracy']:.3f}")
        d = r["data"]
        lines.append(f"| {tid} | {len(r['labels'])} | {v['test']['accuracy']:.3f} | {v['test']['macro_f1']:.3f} | "
                     f"{'; '.join(other)} | {' + '.join(v.get('verbalizer_reads', ['units']))} | "
                     f"{v['val_accuracy']:.3f} | {v['trainable_params']:,} | {v.get('bytes', '')} | "
                     f"{v['train_seconds']} | "
                     f"{d['train']['clips']} / {d['val']['clips']} / {d['test']['clips']} |")
    lines += target_lines(all_results)
    lines += ["", "## Baselines on the same splits (test accuracy; EER for fake, lower is better)", "",
              "| task | " + " | ".join(names[k] for k in VARIANTS) + " |", "|---" * (len(VARIANTS) + 1) + "|"]
    for tid, r in all_results.items():
        cells = []
        for k in VARIANTS:
            h = headline(r.get(k), r["metric"])
            star = " *" if k == r.get("shipped") else ""
            cells.append("" if h is None else f"{h:.3f}{star} ({r[k]['trainable_params']:,})")
        lines.append(f"| {tid} | " + " | ".join(cells) + " |")
    lines += ["", "Parameters in brackets are the trainable parameters of each method; * marks the SpeechPrompt v2 "
              "variant shipped in prompts/ (chosen on validation accuracy).", ""]
    vs = versus_finetune(all_results)
    if vs:
        lines += [f"Mean test accuracy over the {vs['tasks']} tasks with both: SpeechPrompt v2 (shipped) "
                  f"{vs['v2']:.3f}, full fine-tuning {vs['finetune']:.3f} "
                  f"(difference {vs['gap_points']:+.1f} points), with at most "
                  f"{100 * vs['param_share']:.2f} % of fine-tuning's trainable parameters.", ""]
    lines += ["Budget: at most 1,000 training clips per task (stratified), 30 epochs, AdamW lr 3e-2 with one-cycle "
              "schedule, early stopping on validation accuracy (patience 8), at most 7 minutes per run on one CPU "
              "thread; runs that hit the time cap stopped before 30 epochs (see train s). Full fine-tuning trains the "
              "whole unit LM together with a v2 prompt whose verbalizer reads units (LM lr separate, see "
              "app/training.py); input prompt only and the freq verbalizer read units too. An empty cell is a method "
              "not yet run on this backbone.", "",
              "language: `real acc` is the accuracy on real VoxForge volunteers never heard in training (one "
              "session per language, 30 clips); training adds one other volunteer per language (5 clips, repeated "
              f"{REAL_LANGUAGE_COPIES} times) to 850 synthetic sentences, validation a third. What the backbone's "
              "streams can carry at "
              "all, task by task: [STREAM_PROBE.md](STREAM_PROBE.md).", "",
              "Chart: [accuracy against trainable parameters](accuracy_vs_params.html).", ""]
    lines += family_lines(bb)
    (DOCS / "RESULTS.md").write_text("\n".join(lines))
    write_chart(all_results, names)


#: The issue's targets for the fake prompt on spoof families never seen in training (EER, lower is better).
FAMILY_TARGETS = {"each held-out family": 0.15, "pooled": 0.10}


def family_lines(bb: Backbone) -> list[str]:
    """RESULTS.md's section on the fake prompt's leave-one-family-out run (empty without one on this backbone)."""
    if not FAMILIES_FILE.is_file():
        return []
    r = json.loads(FAMILIES_FILE.read_text())
    if r.get("backbone") != bb.fingerprint or not r.get("held_out"):
        return []
    lines = ["## fake: synthesizer families never seen in training", "",
             f"Leave-one-family-out: for each family a {r['variant']} prompt is trained like the shipped one "
             f"(same budget: at most {r['budget']['max_train']:,} training clips, seed {r['budget']['seed']}) on "
             "the other four families and the real clips, then scored on the test split's real clips (people never "
             "heard) against that family's test spoofs. The last column is the shipped prompt, trained on all five "
             "families (test voices still unseen where the family has enough voices). "
             f"Command: `{r['command'].strip()}` ({r['date']}); data: `python -m recipes.build.tasks --build fake`.",
             "", "| held-out family | test voices | test spoofs | EER, family never seen | spoofs passed as real "
             "(p < 0.5) | real called spoof | epochs (train s) | EER, shipped prompt (family seen) |",
             "|---|---|---|---|---|---|---|---|"]
    for fam, row in r["held_out"].items():
        voices = ", ".join(v for _, v in FAKE_FAMILIES[fam]["test"]) if fam != "formant" else \
            f"{len(FAKE_FAMILIES[fam]['test'])} espeak-ng variants"
        seen = r.get("seen", {}).get(fam, {}).get("eer")
        lines.append(f"| {fam} | {voices} | {row['spoofs']} | {row['eer']:.3f} | {row['spoofs_passed_as_real']:.1%} "
                     f"| {row['real_called_spoof']:.1%} | {row.get('epochs_run', '')} ({row.get('train_seconds', '')}) "
                     f"| {'' if seen is None else f'{seen:.3f}'} |")
    seen_all = r.get("seen", {}).get("all", {}).get("eer")
    if "pooled_eer" in r:
        lines.append(f"| **pooled** | | {sum(x['spoofs'] for x in r['held_out'].values())} | "
                     f"**{r['pooled_eer']:.3f}** | | | | {'' if seen_all is None else f'{seen_all:.3f}'} |")
    worst = max(x["eer"] for x in r["held_out"].values())
    lines += ["", "| target | measured | met |", "|---|---|---|",
              f"| EER <= {FAMILY_TARGETS['each held-out family']:.2f} on each held-out family | worst "
              f"{worst:.3f} | {'yes' if worst <= FAMILY_TARGETS['each held-out family'] else 'no'} |"]
    if "pooled_eer" in r:
        lines.append(f"| pooled EER <= {FAMILY_TARGETS['pooled']:.2f} | {r['pooled_eer']:.3f} | "
                     f"{'yes' if r['pooled_eer'] <= FAMILY_TARGETS['pooled'] else 'no'} |")
    lines += ["", "Each run has the budget of the shipped prompts, 7-minute wall-clock cap included: on a busy "
              "machine a run stops after fewer epochs (see the epochs column and the fake row of the first table)."]
    if not r.get("complete"):
        lines += ["", "Not every family has been held out yet: the pooled figure covers those listed."]
    return lines + [""]


def versus_finetune(all_results: dict) -> dict | None:
    """Shipped v2 against full fine-tuning over the tasks that have both: mean test accuracies, their gap in
    points, and the largest share of fine-tuning's trainable parameters a shipped prompt uses."""
    both = [r for r in all_results.values() if shipped(r) and "finetune" in r]
    if not both:
        return None
    v2 = float(np.mean([shipped(r)["test"]["accuracy"] for r in both]))
    ft = float(np.mean([r["finetune"]["test"]["accuracy"] for r in both]))
    share = max(shipped(r)["trainable_params"] / r["finetune"]["trainable_params"] for r in both)
    return {"tasks": len(both), "v2": v2, "finetune": ft, "gap_points": 100 * (v2 - ft), "param_share": share}


def target_lines(all_results: dict) -> list[str]:
    """The targets table: each shipped prompt's accuracy against its target, and v2 against full fine-tuning."""
    lines = ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for tid, (split, minimum) in TARGETS.items():
        v = shipped(all_results.get(tid, {}))
        if v and split in v:
            acc = v[split]["accuracy"]
            met = "yes" if acc >= minimum else "no"
            lines.append(f"| {tid} {split} accuracy >= {minimum:.2f} | {acc:.3f} | {met} |")
    vs = versus_finetune(all_results)
    if vs:
        gap, share = vs["gap_points"], vs["param_share"]
        lines += [f"| mean over {vs['tasks']} tasks within {MAX_GAP_POINTS:.0f} points of full fine-tuning | "
                  f"{gap:+.2f} points | {'yes' if gap >= -MAX_GAP_POINTS else 'no'} |",
                  f"| at most {100 * MAX_PARAM_SHARE:.0f} % of fine-tuning's trainable parameters | "
                  f"{100 * share:.2f} % | {'yes' if share <= MAX_PARAM_SHARE else 'no'} |"]
    return lines


def write_chart(all_results: dict, names: dict) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for k in VARIANTS:
        xs, ys, text = [], [], []
        for tid, r in all_results.items():
            if k in r and r["metric"] != "eer" and "test" in r[k]:
                xs.append(r[k]["trainable_params"])
                ys.append(r[k]["test"]["accuracy"])
                text.append(tid)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", name=names[k], text=text,
                                     textposition="top center"))
    fig.update_layout(title="Test accuracy against trainable parameters (unseen speakers)",
                      xaxis=dict(type="log", title="trainable parameters (log scale)"),
                      yaxis=dict(title="test accuracy", range=[0, 1.05]), template="plotly_white")
    fig.write_html(DOCS / "accuracy_vs_params.html", include_plotlyjs="cdn")


def encode_only(args) -> None:
    from app.backbone import VOICE_TENSORS, encoder_fingerprint
    from app.encoder.dense import build_dense
    from app.encoder.units import SpeechEncoder, VoiceQuantizer

    config = json.loads((args.encode_only / "config-encoder.json").read_text())
    dense = build_dense(config["dense"])
    dense.load_state_dict({k[len("dense."):]: v.float() for k, v in
                           load_file(str(args.encode_only / "dense.safetensors")).items()})
    centroids = load_file(str(args.encode_only / "centroids.safetensors"))["centroids"]
    voice = None
    if "voice" in config:
        t = load_file(str(args.encode_only / "voice.safetensors"))
        voice = VoiceQuantizer(*(t[n] for n in VOICE_TENSORS), layer=config["voice"]["layer"],
                               window=config["voice"]["window"])
    encoder = SpeechEncoder(dense, centroids, config["quantizer"]["feature_norm"], voice=voice).eval()
    fp = encoder_fingerprint(config, encoder)
    for tid in args.tasks:
        task = TASKS[tid]
        if task.missing_data():
            continue
        for s in task.splits:
            _, _, stats = encode_split(encoder, fp, task, s, args.cache, split_cap(args, s), args.seed)
            log(f"{tid}/{s}: {stats}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "prompts")
    ap.add_argument("--candidates", type=Path, default=WORK / "prompt_candidates",
                    help="where every trained v2 / v2_units prompt is kept; the better on validation is shipped")
    ap.add_argument("--cache", type=Path, default=WORK / "units")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--max-train", type=int, default=1000, help="cap training clips per task (stratified), 0 = all")
    ap.add_argument("--max-val", type=int, default=300, help="cap validation clips per task (stratified), 0 = all")
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--max-minutes", type=float, default=7.0, help="wall-clock cap per training run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-report", action="store_true", help="do not regenerate docs/RESULTS.md (parallel runs)")
    ap.add_argument("--report-only", action="store_true", help="only regenerate docs/RESULTS.md and the chart")
    ap.add_argument("--ship-only", action="store_true",
                    help="only choose each task's prompt from --candidates (validation accuracy), then report")
    ap.add_argument("--cards-only", action="store_true",
                    help="only write the task cards into the shipped prompts' task.json (no training), then report")
    ap.add_argument("--encode-only", type=Path, default=None, metavar="WORK",
                    help="only cache task units, with the encoder of an unfinished backbone recipe's work dir "
                         "(its config-encoder.json + centroids), e.g. while the LM is still training")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.encode_only:
        encode_only(args)
        return
    if args.report_only or args.ship_only or args.cards_only:
        bb = Backbone.load(args.backbone)
    if args.cards_only:
        for tid in args.tasks:
            if not TASKS[tid].missing_data():
                log(f"{tid}: card {'written' if write_card(TASKS[tid], args.out / tid, args) else 'not written'}")
        write_reports(load_results(bb), bb)
        return
    if args.ship_only:
        for tid in args.tasks:
            path = RESULTS_DIR / f"{tid}.json"
            if path.exists():
                r = json.loads(path.read_text())
                r["shipped"] = select_and_ship(tid, r, args.candidates, args.out, bb.fingerprint) or r.get("shipped")
                path.write_text(json.dumps(r, indent=1) + "\n")
                write_card(TASKS[tid], args.out / tid, args)
                log(f"{tid}: shipped {r['shipped']}")
    if args.report_only or args.ship_only:
        write_reports(load_results(bb), bb)
        return
    needs_backbone = any(v != "mfcc" for v in args.variants)
    bb = Backbone.load(args.backbone) if needs_backbone or not args.no_report else None
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for tid in args.tasks:
        task = TASKS[tid]
        if task.missing_data():
            log(f"{tid}: skipped, missing {task.missing_data()}")
            continue
        log(f"{tid}: {task.title}")
        r = run_task(bb if needs_backbone else None, task, args.variants, args)
        path = RESULTS_DIR / f"{tid}.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        if "data" in old and not needs_backbone:
            r["data"] = old["data"]  # keep the richer encoder statistics of an earlier prompt run
        merged = {**old, **r}
        if bb is not None:
            merged["shipped"] = select_and_ship(tid, merged, args.candidates, args.out, bb.fingerprint) or \
                old.get("shipped")
        path.write_text(json.dumps(merged, indent=1) + "\n")
        if bb is not None:
            write_card(task, args.out / tid, args)
        if bb is not None and not args.no_report:
            write_reports(load_results(bb), bb)
    log("done")


if __name__ == "__main__":
    main()
