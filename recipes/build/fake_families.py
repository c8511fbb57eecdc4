"""Leave-one-family-out evaluation of the ``fake`` prompt: EER on each spoof family never seen in training.

    python -m recipes.build.fake_families                  # all five folds, the variant shipped in prompts/fake
    python -m recipes.build.fake_families --variant v2 --families neural vocoded

For each family of recipes.common.tasks.FAKE_FAMILIES, a v2 prompt is trained exactly as train_prompts trains the
shipped one (same budget, seed and early stopping) on the training split without that family, then scored on the
test split's real clips against that family's test spoofs (its test voices; EER). The pooled EER puts the
held-out scores of all folds together (each fold's real clips and held-out spoofs). The shipped prompt, which
heard every family, is scored per family too. Writes docs/results/families/fake.json; then
``python -m recipes.build.train_prompts --cards-only`` copies the figures into prompts/fake/task.json and
docs/RESULTS.md. Details: docs/RECIPES.md#fake_families.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from app.backbone import Backbone
from app.metrics import eer
from app.prompt_files import load_prompt
from app.prompting import TaskInfo
from app.settings import ROOT
from app.training import TrainConfig, predict_proba, prompt_logits_fn, train_task
from recipes.build.train_prompts import PROMPT_VARIANTS, SHIPPABLE
from recipes.common.paths import WORK
from recipes.common.results import FAMILIES_FILE, cap_stratified, encode_split, log, split_examples
from recipes.common.tasks import FAKE_FAMILIES, TASKS, spoof_family

def fold_scores(p_spoof: list[float], real: list[int], spoofs: list[int]) -> dict:
    """EER of the clips ``real + spoofs`` and the error rates at the prompt's own decision (p >= 0.5)."""
    idx = real + spoofs
    return {"eer": round(eer([p_spoof[i] for i in idx], [False] * len(real) + [True] * len(spoofs)), 4),
            "spoofs": len(spoofs), "real": len(real),
            "spoofs_passed_as_real": round(float(np.mean([p_spoof[i] < 0.5 for i in spoofs])), 4),
            "real_called_spoof": round(float(np.mean([p_spoof[i] >= 0.5 for i in real])), 4)}


def shipped_variant(folder: Path) -> str:
    """The train_prompts variant of the prompt shipped in ``folder`` (told apart by what its verbalizer reads and
    where); v2_units when none is shipped."""
    path = folder / "task.json"
    if not path.is_file():
        return "v2_units"
    verb = json.loads(path.read_text())["verbalizer"]
    if verb.get("read_at", "separator") == "mean":
        return "v2_mean"
    return "v2" if len(verb.get("reads", ["units"])) > 1 else "v2_units"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="*", default=list(FAKE_FAMILIES), choices=list(FAKE_FAMILIES),
                    help="families to hold out (folds of others from an earlier run of the same set-up are kept); "
                         "none: only score the shipped prompt per family")
    ap.add_argument("--variant", choices=SHIPPABLE, default=None,
                    help="prompt variant (default: the one shipped in prompts/fake, else v2_units)")
    ap.add_argument("--prompts", type=Path, default=ROOT / "prompts")
    ap.add_argument("--cache", type=Path, default=WORK / "units")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--max-val", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--max-minutes", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=FAMILIES_FILE)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = TASKS["fake"]
    bb = Backbone.load()
    shipped_dir = args.prompts / "fake"
    variant = args.variant or shipped_variant(shipped_dir)
    data = {}
    for split in ("train", "val", "test"):  # train and val uncapped here: each fold caps after leaving a family out
        units, labels, _ = encode_split(bb.encoder, bb.encoder_fingerprint, task, split, args.cache, 0, args.seed)
        fams = [spoof_family(e.speaker) for e in split_examples(task, split, 0, args.seed)]
        data[split] = (units, labels, fams)
        log(f"fake/{split}: {len(units)} clips")
    test_units, test_y, test_f = data["test"]
    real = [i for i, y in enumerate(test_y) if y == 0]
    result: dict = {"command": "python -m recipes.build.fake_families " + " ".join(argv or sys.argv[1:]),
                    "backbone": bb.fingerprint, "variant": variant, "date": time.strftime("%Y-%m-%d"),
                    "budget": {"max_train": args.max_train, "max_val": args.max_val, "epochs": args.epochs,
                               "seed": args.seed},
                    "held_out": {}, "seen": {}}
    if args.out.is_file():  # keep folds of other families from an earlier run of the same set-up
        old = json.loads(args.out.read_text())
        if old.get("backbone") == bb.fingerprint and old.get("variant") == variant:
            result["held_out"] = {k: v for k, v in old.get("held_out", {}).items() if k not in args.families}
    for family in args.families:
        picked = {}
        for split, cap in (("train", args.max_train), ("val", args.max_val)):
            units, labels, fams = data[split]
            keep = [i for i, f in enumerate(fams) if f != family]
            picked[split] = [(units[i], labels[i]) for i, _ in cap_stratified([(i, labels[i]) for i in keep], cap,
                                                                             args.seed)]
        torch.manual_seed(args.seed)
        info = TaskInfo(id=task.id, labels=list(task.labels), title=task.title)
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                          seed=args.seed, max_seconds=args.max_minutes * 60)
        # the library's one training flow with train_prompts' settings (random verbalizer start, validation split)
        prompt, res = train_task(bb.lm, info, PROMPT_VARIANTS[variant], picked["train"], picked["val"], cfg,
                                 verbalizer_init="random", seed=args.seed)
        p = predict_proba(prompt_logits_fn(bb.lm, prompt), test_units)[:, 1].tolist()
        spoofs = [i for i, f in enumerate(test_f) if f == family]
        row = {**fold_scores(p, real, spoofs), "train_clips": len(picked["train"]), "val_accuracy": res.best_val_acc,
               "train_seconds": round(res.seconds, 1), "epochs_run": len(res.history),
               "scores_real": [round(p[i], 5) for i in real], "scores_spoofs": [round(p[i], 5) for i in spoofs]}
        result["held_out"][family] = row
        log(f"{family} held out: EER {row['eer']:.3f}, spoofs passed as real {row['spoofs_passed_as_real']:.1%}, "
            f"real called spoof {row['real_called_spoof']:.1%} ({res.seconds:.0f} s, {len(res.history)} epochs)")
    folds = [result["held_out"][f] for f in FAKE_FAMILIES if f in result["held_out"]]
    if folds:
        s_real = [s for r in folds for s in r["scores_real"]]
        s_spoof = [s for r in folds for s in r["scores_spoofs"]]
        result["pooled_eer"] = round(eer(s_real + s_spoof, [False] * len(s_real) + [True] * len(s_spoof)), 4)
        result["complete"] = len(folds) == len(FAKE_FAMILIES)
    if (shipped_dir / "task.json").is_file():  # loaded now: it may have been shipped while the folds ran
        shipped_prompt = load_prompt(shipped_dir, bb.lm.config, bb.fingerprint)
        result["seen_prompt"] = {"reads": list(shipped_prompt.reads), "metrics": shipped_prompt.info.metrics}
        p = predict_proba(prompt_logits_fn(bb.lm, shipped_prompt), test_units)[:, 1].tolist()
        for family in FAKE_FAMILIES:
            result["seen"][family] = fold_scores(p, real, [i for i, f in enumerate(test_f) if f == family])
        result["seen"]["all"] = {"eer": round(eer(p, [y == 1 for y in test_y]), 4)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"pooled EER on held-out families: {result.get('pooled_eer')}; wrote {args.out}")


if __name__ == "__main__":
    main()
