"""Leave-one-family-out evaluation of the ``fake`` prompt: EER on each spoof family never seen in training.

    python -m recipes.build.fake_families                  # all five folds, the variant shipped in prompts/fake
    python -m recipes.build.fake_families --variant v2_mean --families neural vocoded --out /tmp/screen.json
    python -m recipes.build.fake_families --baselines-only # only the three probes, every fold (seconds)
    python -m recipes.build.fake_families --report-only    # only rewrite RESULTS.md's fake section from the json
    python -m recipes.build.fake_families --report-only --out docs/results/families/fake_<fingerprint>.json

For each family of recipes.common.tasks.FAKE_FAMILIES, a prompt is trained exactly as train_prompts trains the
shipped one (same budget, seed and early stopping; the variant, the epochs and the time cap can be changed) on the
training split without that family, then scored on the test split's real clips against that family's test spoofs
(its test voices; EER). The same fold's clips train three baselines (probes, never shipped): MFCC statistics + LR
(train_prompts' ``mfcc`` features), "encoder pooled + LR" (mean and std over time of the frames the k-means
quantizes, ``backbone.encoder.features``: train_prompts' ``pooled``) and LFCC + LR (:func:`lfcc_features`, ASVspoof's
classic front end), each train_prompts' standardised logistic
regression (C picked on the fold's validation clips, then refit on its training and validation clips). The pooled
EER puts the held-out scores of all folds together (each fold's real clips and held-out spoofs). The shipped
prompt, which heard every family, is scored per family too (when it was trained on this backbone). Writes
docs/results/families/fake.json and, when docs/RESULTS.md is about the same backbone, its fake section; then
``python -m recipes.build.train_prompts --cards-only`` copies the figures into prompts/fake/task.json. Details:
docs/RECIPES.md#fake_families, what was tried: docs/FAKE.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from app.backbone import Backbone
from app.encoder.audio import prepare
from app.encoder.augment import CHANNEL_PLAN
from app.metrics import eer
from app.prompt_files import load_prompt
from app.lm import UnitLMConfig
from app.prompting import PromptConfig, PromptError, TaskInfo, verbalizer_reads
from app.settings import NOISE_DIR, ROOT
from app.training import Take, TrainConfig, drop_units, predict_proba, prompt_logits_fn, train_task
from recipes.build.train_prompts import (LINEAR_PROBE, PROMPT_VARIANTS, SHIPPABLE, SPOT, add_budget_args, fit_lr,
                                         mfcc_features)
from recipes.common.paths import WORK
from recipes.common.results import (FAMILIES_FILE, PROBES, RESULTS_DIR, RESULTS_MD, cap_stratified, encode_split,
                                    family_lines, log, pooled_features, report_backbone, split_examples,
                                    write_family_section)
from recipes.common.tasks import FAKE_FAMILIES, TASKS, spoof_family

#: Prompt variants a fold can train: train_prompts' shippable ones (its ``v2_mean`` included), and its units-only
#: variant reading the clip's mean next-token distribution instead (``read_at="mean"``, docs/FEWSHOT.md). In this
#: order :func:`shipped_variant` tells them apart.
FAMILY_VARIANTS: dict[str, PromptConfig] = {
    **{k: PROMPT_VARIANTS[k] for k in SHIPPABLE if k not in SPOT},  # SPoT starts from another task's prompt
    "v2_units_mean": replace(PROMPT_VARIANTS["v2_units"], read_at="mean"),
}
#: The probes scored beside the prompt on every fold (baselines, never the shipped classifier).
BASELINES = PROBES
#: which clip features each probe reads (split_features' keys)
PROBE_FEATURES = {"mfcc_lr": "mfcc", "encoder_pooled_lr": "encoder", "lfcc_lr": "lfcc"}


def lfcc_features(examples) -> np.ndarray:
    """ASVspoof's classic spoofing front end, as clip statistics: 20 linear-frequency cepstral coefficients (20
    linear filters, 512-point FFT, 30 ms windows every 15 ms) with deltas and double deltas, mean and std over time
    (120 numbers). A linear filterbank keeps the high band that mel scales and Whisper's log-mel squeeze, where
    vocoders and codecs leave their traces."""
    import torchaudio

    lfcc = torchaudio.transforms.LFCC(sample_rate=16000, n_filter=20, n_lfcc=20,
                                      speckwargs={"n_fft": 512, "win_length": 480, "hop_length": 240})
    feats = []
    for e in examples:
        c = lfcc(prepare(e.audio).wav)
        d = torchaudio.functional.compute_deltas(c)
        dd = torchaudio.functional.compute_deltas(d)
        x = torch.cat([c, d, dd])
        feats.append(torch.cat([x.mean(1), x.std(1, unbiased=False)]).numpy())
    return np.stack(feats)


def fold_scores(p_spoof: list[float], real: list[int], spoofs: list[int]) -> dict:
    """EER of the clips ``real + spoofs`` and the error rates at the prompt's own decision (p >= 0.5)."""
    idx = real + spoofs
    return {"eer": round(eer([p_spoof[i] for i in idx], [False] * len(real) + [True] * len(spoofs)), 4),
            "spoofs": len(spoofs), "real": len(real),
            "spoofs_passed_as_real": round(float(np.mean([p_spoof[i] < 0.5 for i in spoofs])), 4),
            "real_called_spoof": round(float(np.mean([p_spoof[i] >= 0.5 for i in real])), 4)}


def pooled_eer(rows: list[dict]) -> float:
    """EER over every fold's held-out scores put together (``scores_real`` and ``scores_spoofs`` of each row)."""
    s_real = [s for r in rows for s in r["scores_real"]]
    s_spoof = [s for r in rows for s in r["scores_spoofs"]]
    return round(eer(s_real + s_spoof, [False] * len(s_real) + [True] * len(s_spoof)), 4)


def split_features(encoder, fingerprint: str, task, split: str, units_cache: Path, cache: Path,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """The probes' inputs for every clip of a split (uncapped, in :func:`split_examples` order): ``encoder``
    (mean and std over time of ``encoder.features``: train_prompts' ``pooled`` baseline, cached with the units
    under the encoder's fingerprint), ``mfcc`` (train_prompts' MFCC statistics) and ``lfcc`` (:func:`lfcc_features`),
    the last two cached in ``cache``."""
    enc, labels = pooled_features(encoder, fingerprint, task, split, units_cache, 0, seed)
    labels = np.array(labels)
    out = {"encoder": np.asarray(enc, dtype=np.float32), "labels": labels}
    for name, fn in (("mfcc", mfcc_features), ("lfcc", lfcc_features)):
        path = cache / f"{task.id}_{split}_{name}.npz"
        if path.is_file():
            with np.load(path) as z:
                if np.array_equal(z["labels"], labels):
                    out[name] = z[name]
        if name not in out:
            t0 = time.time()
            out[name] = fn(split_examples(task, split, 0, seed)).astype(np.float32)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **{name: out[name]}, labels=labels)
            log(f"  {task.id}/{split}: {name.upper()} statistics of {len(labels)} clips in {time.time() - t0:.0f} s")
    return out


def probe_scores(x: dict[str, np.ndarray], y: dict[str, list[int]], x_test: np.ndarray) -> tuple[list[float], float]:
    """P(spoof) on ``x_test`` of train_prompts' probe: a standardised logistic regression, C picked on ``x["val"]``
    then refit on train + val (:func:`recipes.build.train_prompts.fit_lr`); and the C chosen."""
    clf, _ = fit_lr(x, y)
    return clf.predict_proba(x_test)[:, list(clf.classes_).index(1)].tolist(), float(clf[-1].C)


def perturbed_units(encoder, examples, n: int, noise_dir=None, plan=CHANNEL_PLAN) -> list[list]:
    """Units of ``n`` channel-perturbed copies of each example's audio (seeded by the clip's samples)."""
    from app.encoder import augment
    from app.training import clip_seed

    out = []
    for e in examples:
        wav = prepare(e.audio).wav
        rng = np.random.default_rng(clip_seed(wav))
        with torch.no_grad():
            out.append([encoder(w) for w in augment.copies(wav, n, rng, noise_dir, plan)])
    return out


def fold_indices(labels: list[int], fams: list[str], family: str, cap: int, seed: int) -> list[int]:
    """Clips of a split a fold trains on: every clip not of ``family``, at most ``cap`` (stratified by label)."""
    keep = [i for i, f in enumerate(fams) if f != family]
    return [i for i, _ in cap_stratified([(i, labels[i]) for i in keep], cap, seed)]


def setup_of(args, variant: str) -> dict:
    """What makes two runs' folds comparable (folds of another set-up are never mixed into the pooled figure)."""
    return {"variant": variant, "max_train": args.max_train, "max_val": args.max_val, "epochs": args.epochs,
            "lr": args.lr, "patience": args.patience, "max_minutes": args.max_minutes, "seed": args.seed,
            "unit_dropout": args.unit_dropout, "copies": args.copies}


#: Set-up keys added later, with the value an older run had.
SETUP_DEFAULTS = {"unit_dropout": 0.0, "copies": 0}


def same_setup(old: dict, setup: dict) -> bool:
    """Whether an earlier run's folds (``old``, a fake.json) were trained as ``setup`` trains them; a run without a
    recorded set-up (older files) is compared by its variant and budget."""
    if "setup" not in old:
        b = old.get("budget", {})
        return old.get("variant") == setup["variant"] and all(b.get(k) == setup[k] for k in
                                                               ("max_train", "max_val", "epochs", "seed"))
    return {**SETUP_DEFAULTS, **old["setup"]} == {**SETUP_DEFAULTS, **setup}


def shipped_variant(folder: Path, lm_config: UnitLMConfig, recorded: str | None = None) -> str:
    """The variant of the prompt shipped in ``folder`` (prompts/fake): ``recorded`` (what train_prompts' results say
    it shipped) when its verbalizer reads what the shipped one reads on this LM, where it reads it (v2_mean_lp has
    v2_mean's shape and differs only in how it started), else the first of FAMILY_VARIANTS that does (v2_units when
    none is shipped or none fits)."""
    path = folder / "task.json"
    if not path.is_file():
        return "v2_units"
    verb = json.loads(path.read_text())["verbalizer"]
    reads, read_at = verb.get("reads", ["units"]), verb.get("read_at", "separator")
    fits = [name for name, cfg in FAMILY_VARIANTS.items()
            if cfg.read_at == read_at and list(verbalizer_reads(lm_config, cfg)) == reads]
    return recorded if recorded in fits else fits[0] if fits else "v2_units"


def keep_earlier(result: dict, out: Path, args, fingerprint: str, setup: dict) -> None:
    """Add to ``result`` the folds of other families that ``out`` holds from a run on the same backbone (the
    prompt's only when trained as ``setup`` trains them; the probes' always). ``out`` is read now, just before this
    run writes it, so that runs holding out other families in parallel keep each other's folds."""
    if not out.is_file():
        return
    old = json.loads(out.read_text())
    if old.get("backbone") != fingerprint:
        return
    if args.baselines_only:  # the prompt's folds are not rerun: keep them as they were
        result.update({k: old[k] for k in ("command", "date", "variant", "budget", "setup", "held_out", "seen",
                                           "seen_prompt") if k in old})
    elif same_setup(old, setup):
        kept = {k: v for k, v in old.get("held_out", {}).items() if k not in args.families}
        result["held_out"] = {**kept, **result["held_out"]}
    for k in BASELINES:  # the probes do not depend on the prompt's set-up
        rows = old.get("baselines", {}).get(k, {}).get("held_out", {})
        kept = {f: r for f, r in rows.items() if f not in args.families or args.no_baselines}
        result["baselines"][k]["held_out"] = {**kept, **result["baselines"][k]["held_out"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="*", default=list(FAKE_FAMILIES), choices=list(FAKE_FAMILIES),
                    help="families to hold out (folds of others from an earlier run of the same set-up are kept); "
                         "none: only score the shipped prompt per family")
    ap.add_argument("--variant", choices=sorted(FAMILY_VARIANTS), default=None,
                    help="prompt variant (default: the one shipped in prompts/fake, else v2_units)")
    ap.add_argument("--prompts", type=Path, default=ROOT / "prompts")
    ap.add_argument("--cache", type=Path, default=WORK / "units")
    ap.add_argument("--features-cache", type=Path, default=WORK / "families",
                    help="the MFCC probe's per-clip features (the encoder's are cached with the units)")
    add_budget_args(ap)
    ap.add_argument("--unit-dropout", type=float, default=0.0,
                    help="drop this share of each training sequence's units in every epoch (0: none)")
    ap.add_argument("--copies", type=int, default=0,
                    help="channel-perturbed copies of each training clip (CHANNEL_PLAN), swapped in at random")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baselines-only", action="store_true", help="score only the probes (no prompt training)")
    ap.add_argument("--no-baselines", action="store_true", help="do not score the probes")
    ap.add_argument("--report-only", action="store_true",
                    help="only rewrite docs/RESULTS.md's fake section from --out (after train_prompts --cards-only)")
    ap.add_argument("--out", type=Path, default=FAMILIES_FILE)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.report_only:
        r = json.loads(args.out.read_text())  # a run kept for another backbone is reported as measured
        done = write_family_section(RESULTS_MD, family_lines(r, r["backbone"]), r["backbone"])
        log(f"{'rewrote' if done else 'did not rewrite (another backbone)'} the fake section of {RESULTS_MD}")
        return
    bb = Backbone.load()
    task = TASKS["fake"]
    shipped_dir = args.prompts / "fake"
    results_file = RESULTS_DIR / "fake.json"
    recorded = json.loads(results_file.read_text()).get("shipped") if results_file.is_file() else None
    variant = args.variant or shipped_variant(shipped_dir, bb.lm.config, recorded)
    data = {}
    for split in ("train", "val", "test"):  # train and val uncapped here: each fold caps after leaving a family out
        units = labels = None
        if not args.baselines_only:
            units, labels, _ = encode_split(bb.encoder, bb.encoder_fingerprint, task, split, args.cache, 0, args.seed)
        feats = None if args.no_baselines else split_features(bb.encoder, bb.encoder_fingerprint, task, split,
                                                               args.cache, args.features_cache, args.seed)
        if labels is None:
            labels = feats["labels"].tolist()
        fams = [spoof_family(e.speaker) for e in split_examples(task, split, 0, args.seed)]
        data[split] = (units, labels, fams, feats)
        log(f"fake/{split}: {len(labels)} clips")
    test_units, test_y, test_f, test_x = data["test"]
    real = [i for i, y in enumerate(test_y) if y == 0]
    setup = setup_of(args, variant)
    train_examples = split_examples(task, "train", 0, args.seed)
    train_copies: dict[int, list] = {}
    result: dict = {"command": "python -m recipes.build.fake_families " + " ".join(argv or sys.argv[1:]),
                    "backbone": bb.fingerprint, "backbone_id": bb.id, "variant": variant,
                    "date": time.strftime("%Y-%m-%d"),
                    "budget": {"max_train": args.max_train, "max_val": args.max_val, "epochs": args.epochs,
                               "max_minutes": args.max_minutes, "seed": args.seed},
                    "setup": setup, "held_out": {}, "seen": {},
                    "baselines": {k: {"name": v, "command": "python -m recipes.build.fake_families "
                                                           + " ".join(argv or sys.argv[1:]), "held_out": {}}
                                  for k, v in BASELINES.items()}}
    for family in args.families:
        spoofs = [i for i, f in enumerate(test_f) if f == family]
        picked = {split: fold_indices(data[split][1], data[split][2], family, cap, args.seed)
                  for split, cap in (("train", args.max_train), ("val", args.max_val))}
        if not args.no_baselines:
            y_fit = {s: [data[s][1][i] for i in picked[s]] for s in ("train", "val")}
            for key, feat in PROBE_FEATURES.items():
                x_fit = {s: data[s][3][feat][picked[s]] for s in ("train", "val")}
                p, c = probe_scores(x_fit, y_fit, test_x[feat])
                row = {**fold_scores(p, real, spoofs), "C": c,
                       "train_clips": len(picked["train"]) + len(picked["val"]),
                       "scores_real": [round(p[i], 5) for i in real],
                       "scores_spoofs": [round(p[i], 5) for i in spoofs]}
                result["baselines"][key]["held_out"][family] = row
                log(f"{family} held out, {BASELINES[key]}: EER {row['eer']:.3f}")
        if args.baselines_only:
            continue
        val = [(data["val"][0][i], data["val"][1][i]) for i in picked["val"]]
        if args.copies:
            todo = [i for i in picked["train"] if i not in train_copies]
            if todo:
                t0 = time.time()
                made = perturbed_units(bb.encoder, [train_examples[i] for i in todo], args.copies, NOISE_DIR)
                train_copies.update(zip(todo, made))
                log(f"  {family}: {args.copies} perturbed copies of {len(todo)} clips in {time.time() - t0:.0f} s")
        train = [(Take(data["train"][0][i], train_copies.get(i, [])), data["train"][1][i]) for i in picked["train"]]
        torch.manual_seed(args.seed)
        info = TaskInfo(id=task.id, labels=list(task.labels), title=task.title)
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                          seed=args.seed, max_seconds=args.max_minutes * 60,
                          augment=drop_units(args.unit_dropout) if args.unit_dropout > 0 else None)
        cpu0 = time.process_time()
        # the library's one training flow with train_prompts' settings (random verbalizer start, or v2_mean_lp's
        # linear probe; validation split; each epoch a clip trains as itself or one of its copies)
        prompt, res = train_task(bb.lm, info, FAMILY_VARIANTS[variant], train, val, cfg, sample_copies=True,
                                 verbalizer_init="linear_probe" if variant in LINEAR_PROBE else "random",
                                 seed=args.seed, progress=lambda row: log(
                                     f"  {family} epoch {row['epoch']}: loss {row['loss']:.3f}, val acc "
                                     f"{row['val_acc']:.3f} ({row['seconds']:.0f} s)"))
        cpu = time.process_time() - cpu0
        p = predict_proba(prompt_logits_fn(bb.lm, prompt), test_units)[:, 1].tolist()
        row = {**fold_scores(p, real, spoofs), "train_clips": len(train), "val_accuracy": res.best_val_acc,
               "train_seconds": round(res.seconds, 1), "train_cpu_seconds": round(cpu, 1),
               "epochs_run": len(res.history), "best_epoch": res.best_epoch, "stopped": res.stopped,
               "scores_real": [round(p[i], 5) for i in real], "scores_spoofs": [round(p[i], 5) for i in spoofs]}
        result["held_out"][family] = row
        log(f"{family} held out: EER {row['eer']:.3f}, spoofs passed as real {row['spoofs_passed_as_real']:.1%}, "
            f"real called spoof {row['real_called_spoof']:.1%} ({res.seconds:.0f} s wall, {cpu:.0f} s CPU, "
            f"{len(res.history)} epochs, stopped: {res.stopped})")
    keep_earlier(result, args.out, args, bb.fingerprint, setup)
    folds = [result["held_out"][f] for f in FAKE_FAMILIES if f in result["held_out"]]
    if folds:
        result["pooled_eer"] = pooled_eer(folds)
        result["complete"] = len(folds) == len(FAKE_FAMILIES)
    for k, b in result["baselines"].items():
        rows = [b["held_out"][f] for f in FAKE_FAMILIES if f in b["held_out"]]
        if rows:
            b["pooled_eer"] = pooled_eer(rows)
            b["complete"] = len(rows) == len(FAKE_FAMILIES)
    shipped_prompt = None
    if (shipped_dir / "task.json").is_file() and not args.baselines_only:  # loaded now: it may have been
        try:  # shipped while the folds ran
            shipped_prompt = load_prompt(shipped_dir, bb.lm.config, bb.fingerprint)
        except PromptError as exc:  # e.g. trained on another backbone: no "family seen" column
            log(f"shipped fake prompt not scored: {exc}")
            result["seen"] = {}
    if shipped_prompt is not None:
        result["seen_prompt"] = {"reads": list(shipped_prompt.reads), "metrics": shipped_prompt.info.metrics}
        p = predict_proba(prompt_logits_fn(bb.lm, shipped_prompt), test_units)[:, 1].tolist()
        for family in FAKE_FAMILIES:
            result["seen"][family] = fold_scores(p, real, [i for i, f in enumerate(test_f) if f == family])
        result["seen"]["all"] = {"eer": round(eer(p, [y == 1 for y in test_y]), 4)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"pooled EER on held-out families: prompt {result.get('pooled_eer')}, " + ", ".join(
        f"{BASELINES[k]} {b.get('pooled_eer')}" for k, b in result["baselines"].items()) + f"; wrote {args.out}")
    if args.out.resolve() == FAMILIES_FILE.resolve() and not write_family_section(
            RESULTS_MD, family_lines(result, bb.fingerprint), bb.fingerprint):
        log(f"{RESULTS_MD} describes backbone {report_backbone(RESULTS_MD)}: its fake section was left as it is")


if __name__ == "__main__":
    main()
