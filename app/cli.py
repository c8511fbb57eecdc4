"""Command line: ``python -m app {tasks,info,predict,eval,train,bench,loadtest,pull,push}``; ``--json`` for machines.

Errors end with a non-zero exit and one clear line on stderr (a traceback only with ``--debug``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .backbone import Backbone
from .data import DataError, list_labelled, require_every_class
from .encoder.audio import AudioError
from .engine import Engine
from .errors import USER_ERRORS
from .metrics import summary
from .prompt_files import save_prompt
from .prompting import PromptConfig, PromptError, TaskInfo, check_task_id
from .settings import DEFAULT_PROMPTS_DIR
from .training import TRAIN_MAX_SECONDS, check_max_seconds


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--backbone", help="backbone folder (default: $SPEECHPROMPT_BACKBONE or assets/backbone)")
    common.add_argument("--prompts", default=str(DEFAULT_PROMPTS_DIR), help="folder of task prompts")
    p = argparse.ArgumentParser(prog="python -m app", description="SpeechPrompt v2 on a frozen speech unit LM.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", parents=[common], help="list the task prompts")
    sub.add_parser("info", parents=[common], help="describe the backbone")
    pr = sub.add_parser("predict", parents=[common], help="classify audio files with a task prompt")
    pr.add_argument("--task", required=True)
    pr.add_argument("files", nargs="+")
    ev = sub.add_parser("eval", parents=[common], help="accuracy of a task prompt on a labelled folder")
    ev.add_argument("--task", required=True)
    ev.add_argument("--data", required=True, help="folder with one sub-folder per label, or a path,label CSV")
    tr = sub.add_parser("train", parents=[common], help="train a task prompt (the LM stays frozen)")
    tr.add_argument("--task", required=True, help="task id (folder name)")
    tr.add_argument("--data", required=True, help="folder with one sub-folder per label, or a path,label CSV")
    tr.add_argument("--out", required=True, help="output folder, e.g. prompts/NAME")
    tr.add_argument("--prompt-length", type=int, default=5)
    tr.add_argument("--verbalizer", choices=["learnable", "freq", "random"], default="learnable")
    tr.add_argument("--shallow", action="store_true", help="input prompt only, no deep prompt (SpeechPrompt v1)")
    tr.add_argument("--copies", type=int, default=None,
                    help="perturbed copies of each clip (speed, pitch, room, noise), encoded too (default: the app's)")
    tr.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the app's few-shot budget)")
    tr.add_argument("--epochs", type=int, default=None, help="a number of epochs instead of --steps")
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--val-fraction", type=float, default=0.0,
                    help="hold out this share of each class to pick the best epoch (default 0: every clip trains)")
    tr.add_argument("--max-seconds", type=float, default=None,
                    help=f"stop training after this long, keeping the best epoch (default {TRAIN_MAX_SECONDS:g})")
    tr.add_argument("--read-at", choices=["mean", "separator"], default="mean",
                    help="the verbalizer reads the LM's next-token output averaged over the clip, or at the separator")
    tr.add_argument("--transfer", default=None, metavar="TASK",
                    help="start from this installed prompt's input/deep prompt and separator (SPoT; default: the "
                         "app's, 'commands', when installed with the same shape; 'none': a fresh prompt)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--title", default="")
    tr.add_argument("--description", default="")
    bench = sub.add_parser("bench", parents=[common], help="latency, batching, training speed and memory figures")
    bench.add_argument("--repeats", type=int, default=30)
    bench.add_argument("--threads", type=int, help="torch threads (default: what app.py uses on this machine)")
    bench.add_argument("--no-server", action="store_true",
                       help="skip launching app.py to measure its peak memory (in-process figures only)")
    lt = sub.add_parser("loadtest", parents=[common],
                        help="many concurrent /classify calls against a loopback server: latency and errors")
    lt.add_argument("--url", help="a running server on a loopback address (default: launch app.py on a free port)")
    lt.add_argument("--concurrency", type=int, default=50, help="simultaneous visitors (at most 200)")
    lt.add_argument("--seconds", type=float, default=60.0, help="duration (at most 600)")
    lt.add_argument("--max-requests", type=int, default=10_000, help="stop after this many calls (at most 100000)")
    lt.add_argument("--task", help="task id to classify with (default: the server's first task)")
    lt.add_argument("--clip", help="audio file to send (default: a 1 s clip)")
    lt.add_argument("--client", choices=["http", "gradio"], default="http",
                    help="http: Gradio's REST API over pooled connections (light); gradio: gradio_client")
    pull = sub.add_parser("pull", parents=[common], help="install a task prompt from the Hugging Face Hub")
    pull.add_argument("repo", metavar="OWNER/REPO")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--force", action="store_true", help="replace an installed prompt of the same task")
    push = sub.add_parser("push", parents=[common], help="upload a task prompt to the Hugging Face Hub")
    push.add_argument("task", help="task id (a folder in --prompts)")
    push.add_argument("repo", metavar="OWNER/REPO")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure still gets one line, unless --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1


def _emit(args, obj: Any, text: str) -> None:
    print(json.dumps(obj, ensure_ascii=False) if args.json else text)


def cmd_tasks(args) -> int:
    engine = Engine.load(args.backbone, args.prompts)
    rows = []
    for t in engine.tasks:
        p = engine.prompts[t]
        rows.append({"task": t, "title": p.info.title, "labels": p.labels, "trainable_params": p.num_trainable(),
                     "metrics": p.info.metrics, "card": p.info.card.to_json() if p.info.card else None})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        lm_params = engine.backbone.lm.num_params()
        print(f"{len(rows)} task prompts on backbone {engine.backbone.id} (frozen LM: {lm_params:,} parameters)")
        for r in rows:
            acc = r["metrics"].get("test_accuracy")
            acc_s = f"  test acc {acc:.3f}" if isinstance(acc, (int, float)) else ""
            print(f"  {r['task']:<14} {len(r['labels']):>3} labels  {r['trainable_params']:>7,} trainable{acc_s}  "
                  f"{r['title']}")
    for name, why in engine.skipped.items():
        print(f"warning: skipped prompt {name}: {why}", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    d = Backbone.load(args.backbone).describe()
    text = "\n".join(f"{k:>16}: {v}" for k, v in d.items())
    _emit(args, d, text)
    return 0


def predict_record(file: str, task: str, a) -> dict:
    """``predict --json``'s object for one file: the answer, the units with their durations (frames) and, on a
    backbone with voice streams, ``voice``: each unit's voice codes (one list per unit, one code per stream,
    0-based buckets)."""
    pred = a.predictions[0]
    obj = {"file": file, "task": task, "label": pred.label, "probs": pred.probs_dict(),
           "units": a.units.ids.tolist(), "durations": a.units.durations.tolist()}
    if a.units.voice is not None:
        obj["voice"] = a.units.voice.tolist()
    obj["notices"] = a.notices
    return obj


def cmd_predict(args) -> int:
    engine = Engine.load(args.backbone, args.prompts)
    engine.get(args.task)
    failures = 0
    for f in args.files:
        try:
            a = engine.analyze(f, [args.task])
        except AudioError as exc:
            failures += 1
            print(f"error: {f}: {exc}", file=sys.stderr)
            continue
        pred = a.predictions[0]
        obj = predict_record(f, args.task, a)
        top = sorted(obj["probs"].items(), key=lambda kv: -kv[1])[:3]
        notes = "".join(f"\n  note: {n}" for n in a.notices)
        _emit(args, obj, f"{f}: {pred.label}  ({', '.join(f'{k} {v:.2f}' for k, v in top)}; "
                         f"{len(a.units)} units"
                         + (f", {a.units.voice.shape[1]} voice codes each" if a.units.voice is not None else "")
                         + f"){notes}")
    return 1 if failures else 0


def _encode_all(engine: Engine, items: list[tuple[Path, str]], quiet: bool):
    from tqdm import tqdm

    units, kept, errors = [], [], []
    for path, label in tqdm(items, desc="encoding", disable=quiet, file=sys.stderr):
        try:
            units.append(engine.encode(path)[1])
            kept.append(label)
        except AudioError as exc:
            errors.append(f"{path}: {exc}")
    for e in errors[:5]:
        print(f"warning: skipped {e}", file=sys.stderr)
    if len(errors) > 5:
        print(f"warning: skipped {len(errors) - 5} more files", file=sys.stderr)
    return units, kept


def cmd_eval(args) -> int:
    engine = Engine.load(args.backbone, args.prompts)
    prompt = engine.get(args.task)
    items = list_labelled(args.data)
    unknown = sorted({lab for _, lab in items} - set(prompt.labels))
    if unknown:
        raise DataError(f"labels {unknown} in {args.data} are not labels of task {args.task!r}: {prompt.labels}")
    units, labels = _encode_all(engine, items, args.json)
    from .training import predict_proba, prompt_logits_fn

    probs = predict_proba(prompt_logits_fn(engine.backbone.lm, prompt), units)
    y_true = [prompt.labels.index(lab) for lab in labels]
    y_pred = probs.argmax(1).tolist()
    out = {"task": args.task, **summary(y_true, y_pred, prompt.labels)}
    text = f"{args.task}: n={out['n']} accuracy={out['accuracy']:.4f} macro_f1={out['macro_f1']:.4f}"
    _emit(args, out, text)
    return 0


def cmd_train(args) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from .settings import NOISE_DIR
    from .training import (FEW_SHOT_SETTINGS, TrainConfig, clip_seed, few_shot_config, make_take, stratified_split,
                           train_task)

    check_task_id(args.task)
    engine = Engine(Backbone.load(args.backbone))
    items = list_labelled(args.data)
    labels = sorted({lab for _, lab in items})
    if len(labels) < 2:
        raise DataError(f"{args.data} has only {len(labels)} label(s); a classifier needs at least 2.")
    settings = replace(FEW_SHOT_SETTINGS, **{k: v for k, v in (("copies", args.copies), ("steps", args.steps),
                       ("lr", args.lr), ("batch_size", args.batch_size)) if v is not None})
    y = [labels.index(lab) for _, lab in items]
    tr_idx, va_idx = stratified_split(y, args.val_fraction, args.seed)
    val_set = set(va_idx)
    train, val, skipped = [], [], []
    for i, (path, lab) in enumerate(tqdm(items, desc="encoding", disable=args.json, file=sys.stderr)):
        try:
            audio, units = engine.encode(path)
        except AudioError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        if i in val_set:  # validation clips are scored as they are: no copies
            val.append((units, y[i]))
        else:
            take = make_take(engine.backbone.encoder, audio.wav, settings.copies, clip_seed(audio.wav), NOISE_DIR,
                             units)
            train.append((take, y[i]))
    for e in skipped[:5]:
        print(f"warning: skipped {e}", file=sys.stderr)
    if len(skipped) > 5:
        print(f"warning: skipped {len(skipped) - 5} more files", file=sys.stderr)
    require_every_class(labels, [labels[label] for _, label in train + val], args.data)
    info = TaskInfo(id=args.task, labels=labels, title=args.title or args.task, description=args.description,
                    training_data=f"{len(train)} training (+ {settings.copies} perturbed copies each) / {len(val)} "
                                  f"validation clips from {args.data}")
    config = PromptConfig(prompt_length=args.prompt_length, deep=not args.shallow, verbalizer=args.verbalizer,
                          read_at=args.read_at)
    lm = engine.backbone.lm
    n_rows = len(train) * (1 + settings.copies)
    cfg = few_shot_config(settings, n_rows, args.seed)
    if args.epochs:
        cfg = replace(cfg, epochs=args.epochs, patience=args.epochs)
    if val:
        cfg = replace(cfg, patience=TrainConfig.patience)
    cfg = replace(cfg, max_seconds=check_max_seconds(args.max_seconds) if args.max_seconds is not None
                  else (cfg.max_seconds or TRAIN_MAX_SECONDS))
    source = None
    name = settings.transfer if args.transfer is None else (None if args.transfer == "none" else args.transfer)
    if name:
        from .prompt_files import load_prompt
        from .training import transfer_source
        try:
            found = {name: load_prompt(Path(args.prompts) / name, lm.config, engine.backbone.fingerprint)}
        except PromptError:
            if args.transfer:  # asked for by name: say why it cannot be used
                raise
            found = {}  # the default's prompt is not installed for this backbone: a fresh start
        source = transfer_source(found, config, replace(settings, transfer=name))
    if source is not None:
        info.extra["started_from"] = source.task
    bar = tqdm(total=cfg.epochs, desc="training", disable=args.json, file=sys.stderr)

    def progress(row: dict) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", train=f"{row['train_acc']:.2f}",
                        val="-" if row["val_acc"] is None else f"{row['val_acc']:.2f}")

    prompt, result = train_task(lm, info, config, train, val or None, cfg, settings.verbalizer_init, source,
                                progress, args.seed)
    bar.close()
    if result.stopped == "time":
        print(f"warning: training stopped at the {cfg.max_seconds:g} s limit after {len(result.history)} epochs "
              "(--max-seconds); the best epoch was kept", file=sys.stderr)
    out = save_prompt(prompt, args.out, engine.backbone.id, engine.backbone.fingerprint)
    obj = {"task": args.task, "out": str(out), "labels": labels, "trainable_params": prompt.num_trainable(),
           **info.metrics}
    _emit(args, obj, f"saved {out} ({prompt.num_trainable():,} trainable parameters); train acc "
                     f"{result.train_acc:.3f}, val acc {result.best_val_acc}")
    return 0


def cmd_bench(args) -> int:
    from .perf.bench import run_bench

    obj = run_bench(args.backbone, args.prompts, repeats=args.repeats, server=not args.no_server, threads=args.threads)
    _emit(args, obj, "\n".join(f"{k:>32}: {v}" for k, v in obj.items()))
    return 0


def cmd_loadtest(args) -> int:
    from .perf.loadtest import check_loopback, run_loadtest
    from .perf.process import launched_server

    kw = dict(concurrency=args.concurrency, seconds=args.seconds, max_requests=args.max_requests, task=args.task,
              clip=args.clip, client=args.client)
    if args.clip and not Path(args.clip).is_file():
        raise FileNotFoundError(f"File not found: {args.clip}")
    if args.url:
        obj = run_loadtest(check_loopback(args.url), **kw)
    else:
        # Its visitors all come from one loopback address: lift the per-address upload budget of its own server.
        unlimited = {"SPEECHPROMPT_UPLOAD_MB_PER_MIN": "1000000", "SPEECHPROMPT_UPLOAD_TOTAL_MB_PER_MIN": "1000000"}
        with launched_server(args.backbone, args.prompts, env=unlimited) as server:
            cpu0 = server.cpu_seconds()
            obj = run_loadtest(server.url, **kw)
            cpu1 = server.cpu_seconds()
            obj["server_peak_rss_mb"] = server.peak_rss_mb()
            if cpu0 is not None and cpu1 is not None and obj["n"]:
                obj["server_cpu_ms_per_call"] = round((cpu1 - cpu0) * 1e3 / obj["n"], 1)
    text = (f"{obj['n']} calls to {obj['endpoint']} ({obj['task']}) by {obj['concurrency']} concurrent clients in "
            f"{obj['seconds']} s: {obj['errors']} errors; latency p50 {obj['latency_ms_p50']} ms, p95 "
            f"{obj['latency_ms_p95']} ms, max {obj['latency_ms_max']} ms; {obj['throughput_per_s']} calls/s")
    if obj.get("server_peak_rss_mb") is not None:
        text += f"; server peak memory {obj['server_peak_rss_mb']} MB"
    for e in obj["error_samples"]:
        text += f"\n  error: {e}"
    _emit(args, obj, text)
    return 0 if obj["errors"] == 0 else 1


def cmd_pull(args) -> int:
    from .hub import pull

    prompt = pull(args.repo, args.backbone, args.prompts, revision=args.revision, force=args.force)
    obj = {"repo": args.repo, "task": prompt.task, "folder": str(prompt.folder), "labels": prompt.labels}
    _emit(args, obj, f"installed {args.repo} as {prompt.folder} (task {prompt.task!r}, {len(prompt.labels)} labels)")
    return 0


def cmd_push(args) -> int:
    from .hub import push

    check_task_id(args.task)
    url = push(Path(args.prompts) / args.task, args.repo, Backbone.load(args.backbone), private=args.private)
    _emit(args, {"repo": args.repo, "task": args.task, "url": url}, f"pushed {args.task} to {url}")
    return 0


COMMANDS = {"tasks": cmd_tasks, "info": cmd_info, "predict": cmd_predict, "eval": cmd_eval, "train": cmd_train,
            "bench": cmd_bench, "loadtest": cmd_loadtest, "pull": cmd_pull, "push": cmd_push}
