"""View 4, "How it works": the pipeline and the prompt, illustrated with the loaded backbone's real numbers."""
from __future__ import annotations

import html
from typing import Any

import gradio as gr

from ..engine import Engine
from . import plots
from ..prompt_files import prompt_file_bytes
from ..prompting import PromptConfig, TaskInfo, TaskPrompt


def _box(title: str, body: str, kind: str = "") -> str:
    return f'<div class="how-box {kind}"><div class="how-title">{title}</div><div class="how-body">{body}</div></div>'


def pipeline_html(engine: Engine) -> str:
    """The data flow as boxes and arrows, with this backbone's sizes."""
    d = engine.backbone.describe()
    fps = engine.backbone.sample_rate / engine.backbone.encoder.hop
    vs = voice_streams(engine)
    arrow = '<div class="how-arrow">→</div>'
    boxes = [
        _box("1 · Audio", f"mono, {d['sample_rate'] // 1000} kHz, trimmed and levelled"),
        _box("2 · Units", f"{html.escape(str(d['dense_model']))} features, {fps:.0f} frames/s → nearest of "
                          f"{d['n_units']} k-means centroids (typical sounds found once by grouping many "
                          "frames of speech; each frame becomes the number of the closest); repeats collapsed, "
                          "each unit keeps its duration and pitch"
                          + (f", and {vs['streams']} voice codes (the timbre of the voice over "
                             f"~{vs['seconds']:g} s)" if vs else "")),
        _box("3 · Frozen unit LM", f"{d['layers']} layers × {d['width']} wide, {d['heads']} heads, "
                                   f"{d['lm_params']:,} parameters that never change", "frozen"),
        _box("4 · Verbalizer", f"next-token output ({d['vocab_size']} units"
                               + (", duration and pitch buckets" if engine.backbone.lm.config.n_pitch else "")
                               + (f", {vs['streams']} voice codes" if vs else "")
                               + ") → class scores", "trained"),
        _box("5 · Answer", "class probabilities"),
    ]
    sample = [5, 5, 12, 40, 7, 7, 3]
    tokens = ('<span class="seq-tok seq-prompt">P</span>' * 5
              + "".join(f'<span class="seq-tok" style="background:{plots.unit_color(u)}">{u}</span>' for u in sample)
              + '<span class="seq-tok seq-more">…</span><span class="seq-tok seq-sep">SEP</span>'
              + '<span class="seq-next">→ next unit?</span>')
    return (f'<div class="how-flow">{arrow.join(boxes)}</div>'
            f'<div class="how-seq"><div class="how-seq-title">What the LM reads for one task</div>'
            f'<div class="seq-row">{tokens}</div>'
            '<div class="how-legend"><span class="seq-tok seq-prompt">P</span> trainable input prompt · '
            '<span class="seq-tok" style="background:#4e79a7">12</span> the clip\'s units (with duration and pitch '
            + (f"embeddings, and those of its {vs['streams']} voice codes, summed into one vector per unit"
               if vs else "embeddings")
            + ') · <span class="seq-tok seq-sep">SEP</span> trainable separator · and at every layer, '
            'trainable key/value prefixes (the deep prompt): in attention each position looks things up by '
            '<i>keys</i> and reads their <i>values</i>; the prefixes add P learned entries to every layer\'s '
            'lookup, like invisible tokens before the clip.</div></div>')


def voice_streams(engine: Engine) -> dict | None:
    """The backbone's voice streams: ``{"streams", "buckets", "layer", "window" (frames), "seconds"}``, or None for
    a backbone without them (v1)."""
    voice = engine.backbone.encoder.voice
    if voice is None or not engine.backbone.lm.config.n_voice:
        return None
    fps = engine.backbone.sample_rate / engine.backbone.encoder.hop
    return {"streams": voice.n_streams, "buckets": voice.n_buckets, "layer": voice.layer, "window": voice.window,
            "seconds": round(voice.window / fps, 1)}


def example_prompt(engine: Engine, n_classes: int = 3) -> TaskPrompt:
    """An untrained prompt shaped exactly like the one "Train a prompt" makes by default, for counting."""
    info = TaskInfo(id="example", labels=[f"class-{i}" for i in range(n_classes)])
    return TaskPrompt(engine.backbone.lm.config, info, PromptConfig())


def _stream_counts(engine: Engine, prompt: TaskPrompt) -> list[int]:
    from ..prompting import stream_sizes

    sizes = stream_sizes(engine.backbone.lm.config)
    return [sizes[s] for s in prompt.reads]


def how_markdown(engine: Engine) -> str:
    """The explanation, with parameter counts computed from the backbone and the loaded prompts."""
    d = engine.backbone.describe()
    L, C, V = d["layers"], d["width"], d["vocab_size"]
    p = example_prompt(engine)
    P, K = p.config.prompt_length, len(p.labels)
    inp, sep = p.input_prompt.numel(), p.separator.numel()
    deep = p.deep_prompt.numel() if p.deep_prompt is not None else 0
    verb = sum(t.numel() for t in p.verbalizer.parameters()) if p.verbalizer is not None else 0
    n_in = p.verbalizer.in_features if p.verbalizer is not None else 0
    total = p.num_trainable()
    reads = " + ".join(f"{n} {s}" for s, n in zip(p.reads, _stream_counts(engine, p)))
    vs = voice_streams(engine)
    lines = [
        "### One frozen model, many tiny prompts",
        "SpeechPrompt v2 (Chang et al., 2023) reuses **one** speech language model for many classification tasks. "
        "The model was trained once, to predict the next speech unit; it is then **frozen**. For each task only a "
        "small *prompt* is trained: vectors the model reads before and after the clip, plus key/value prefixes "
        "at every layer, plus a verbalizer that maps the model's next-unit guess to the task's classes.",
        "### Words used here",
        "- **Unit:** a number for a short stretch of sound. The encoder turns every "
        f"{1000 * engine.backbone.encoder.hop / engine.backbone.sample_rate:.0f} ms of audio into a feature "
        f"vector; grouping many such vectors from lots of speech (*k-means*) found {d['n_units']} typical ones, "
        "the *centroids*, and each frame gets the number of the nearest. Equal neighbours merge into one unit "
        "that keeps its duration and pitch.\n"
        "- **Key/value prefixes (deep prompt):** inside each layer, every position decides what to look at by "
        "comparing its query with the *keys* of the others and then reads their *values*. The prompt adds P "
        "learned keys and values to every layer, so every position can also look at the prompt.\n"
        + (f"- **Voice codes:** units keep *what* is said and drop *who* says it. So that the LM also hears the "
           f"voice, every ~{vs['seconds']:g} s of audio is summed up by {vs['streams']} small numbers, the *voice "
           f"codes*: how the encoder's features vary over that stretch, along the {vs['streams']} directions in "
           f"which voices differ most, each cut into {vs['buckets']} buckets (low..high). Each unit carries the "
           "codes of its stretch, like its duration and pitch (the *voice map* in *Try a task*).\n" if vs else "")
        + "- **Verbalizer:** turns the LM's guess about the next unit (and its duration and pitch"
        + (", and its voice codes" if vs else "") + ") into class scores.\n"
        "- **Frozen:** not changed by training; only the prompt learns.",
        "### The numbers for this backbone",
        f"- Backbone `{html.escape(str(d['id']))}` (fingerprint `{d['fingerprint']}`): "
        f"{d['encoder_params']:,} encoder parameters and a unit LM of **{d['lm_params']:,}** parameters "
        f"({plots.human_bytes(engine.backbone.lm_bytes())}), context of {d['block_size']} positions.\n"
        f"- Units: {d['n_units']} discrete units + 1 end token = vocabulary of {V}; "
        f"{d['prosody_streams']['duration_buckets']} duration buckets and {d['prosody_streams']['pitch_buckets']} "
        "pitch buckets ride along with every unit (prosody streams).\n"
        + (f"- Voice streams: {vs['streams']} streams of {vs['buckets']} codes, from the mean and spread of encoder "
           f"block {vs['layer']}'s features over windows of {vs['window']} frames (~{vs['seconds']:g} s). What the "
           f"LM reads at each position: 1 unit + 1 duration + 1 pitch + {vs['streams']} voice codes = "
           f"{3 + vs['streams']} embeddings summed into one vector; what it predicts next: {V} units, "
           f"{d['prosody_streams']['duration_buckets']} duration and {d['prosody_streams']['pitch_buckets']} pitch "
           f"buckets and {vs['streams']}×{vs['buckets']} = {vs['streams'] * vs['buckets']} voice-code "
           "probabilities.\n" if vs else "")
        + f"- A {K}-class prompt as *Train a prompt* makes it by default (length P = {P}, deep, "
        f"{p.config.verbalizer} verbalizer): input prompt P×C = {inp:,} + deep prompt "
        f"L×2×P×C = {L}×2×{P}×{C} = {deep:,} + separator C = {sep:,} + verbalizer "
        f"({reads} = {n_in} inputs)×K + K = {verb:,} "
        f"= **{total:,} trainable parameters**, {total / max(d['lm_params'], 1):.2%} of the LM.",
    ]
    if engine.tasks:
        rows = ["| task | classes | measured on unseen speakers (chance) | verbalizer | trainable parameters | file "
                "| of the LM |",
                "|---|---:|---:|---|---:|---:|---:|"]
        for t in engine.tasks:
            p = engine.prompts[t]
            n = p.num_trainable()
            acc, head = p.info.metrics.get("test_accuracy"), p.info.headline()
            measured = (plots.figure_text(*head, hint=False) if head else f"{acc:.1%}" if isinstance(acc, (int, float))
                        else "not measured")
            rows.append(f"| {html.escape(p.info.title)} | {len(p.labels)} | {measured} ({1 / len(p.labels):.0%}) | "
                        f"{p.config.verbalizer} | {n:,} | {plots.human_bytes(prompt_file_bytes(p))} | "
                        f"{n / max(d['lm_params'], 1):.2%} |")
        lines += ["### The loaded task prompts", "\n".join(rows)]
    lines += [
        "### Why it is interesting",
        "- **Storage:** a new task costs kilobytes, not another copy of the model.\n"
        "- **Batching:** rows of one batch can carry different prompts, so one forward pass answers every task "
        "(see *All tasks at once*).\n"
        "- **The limits:** the frozen model only knows what its units capture. Tasks that depend on words it "
        "never learned, or on cues lost in the units, stay hard, whatever the prompt.\n"
        "- **Verbalizers:** SpeechPrompt v1 gave each class one fixed unit (*freq*: the most frequent units, "
        "*random*); v2 learns a linear map from the whole next-unit distribution, which the paper "
        "found works better, above all for tasks with many classes. Here the LM also predicts the next unit's "
        "duration and pitch bucket (as pGSLM does), and a learnable verbalizer may read those too, which "
        "speaks to prosody tasks"
        + (" (and the next voice codes, which speak to who is talking)" if vs else "")
        + ". Try the verbalizers in *Train a prompt*.",
    ]
    return "\n\n".join(lines)


def build(engine: Engine) -> dict[str, Any]:
    diagram = gr.HTML(pipeline_html(engine), elem_id="how-diagram")
    text = gr.Markdown(how_markdown(engine), elem_id="how-text")
    return {"diagram": diagram, "text": text}
