"""Look and feel: theme (bundled fonts only: nothing is fetched from the internet), CSS and the page header."""
from __future__ import annotations

import html

import gradio as gr

from ..engine import Engine

THEME = gr.themes.Soft(
    primary_hue="indigo", secondary_hue="amber", neutral_hue="slate",
    font=[gr.themes.LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"],
)

CSS = """
/* Secondary text: the theme's "subdued" grey reads at about 2.6:1 on white; this one at 7.6:1 (and light on dark). */
.gradio-container { --sp-muted: #475569; }
.dark .gradio-container, .gradio-container.dark { --sp-muted: #cbd5e1; }
.gradio-container .info-text { color: var(--sp-muted) !important; }  /* a control's hint (Gradio's is slate-400) */
.gradio-container { max-width: min(1280px, 100vw) !important; min-width: 0 !important; margin: 0 auto; }
/* Gradio prefixes rules inside @media with ".gradio-container... .contain", so the page frame itself narrows here,
   with the screen: 32 px side padding on a desktop, 6 px on a phone. */
.gradio-container .main { min-width: 0 !important; padding-left: clamp(6px, 2.5vw, 32px) !important;
                          padding-right: clamp(6px, 2.5vw, 32px) !important; }
.app-header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; padding: 6px 2px 2px; }
.app-header h1 { font-size: 1.7rem; margin: 0; font-weight: 700; }
.app-header .tagline { color: var(--sp-muted); font-size: 1.02rem; }
.app-chips { display: flex; flex-wrap: wrap; gap: 6px; margin: 6px 2px 4px; }
.chip { background: var(--color-accent-soft); color: var(--body-text-color); border-radius: 999px;
        padding: 2px 10px; font-size: 0.85rem; }
.headline { border-radius: 14px; padding: 14px 18px; background: linear-gradient(135deg, #eef2ff, #e0e7ff);
            border: 1px solid #c7d2fe; }
.headline-empty { color: #475569; font-size: 1.05rem; background: #f8fafc; border-color: #e2e8f0; }
.headline-task { font-size: 0.9rem; color: #4338ca; text-transform: uppercase; letter-spacing: 0.04em; }
.headline-label { font-size: 2.3rem; font-weight: 700; color: #1e1b4b; line-height: 1.15; word-break: break-word; }
.headline-conf { font-size: 1rem; color: #3730a3; }
.facts { font-size: 0.92rem; }
.trust { margin-top: 8px; padding: 8px 12px; border-radius: 10px; background: #fffbeb; border: 1px solid #fde68a;
         font-size: 0.88rem; line-height: 1.35; color: #422006; overflow-wrap: anywhere; }
.trust-row + .trust-row { margin-top: 4px; }
.trust-key { font-weight: 700; color: #92400e; margin-right: 2px; }
.trust-key::after { content: ":"; }
.caption { font-size: 0.88rem; color: var(--sp-muted); }
.task-card { font-size: 0.92rem; }
.examples-title { margin-bottom: -6px; }
.example-row { flex-wrap: wrap !important; gap: 6px !important; }
.example-row button { flex: 0 1 auto !important; }
.unit-strip { padding: 4px 2px; }
.unit-caption { font-size: 0.85rem; color: var(--sp-muted); margin-bottom: 6px; }
/* about 5.5 rows of tokens (a long clip scrolls; the half row shows there is more); 3 px so a focus ring shows */
.unit-tokens { display: flex; flex-wrap: wrap; gap: 3px; max-height: 188px; overflow-y: auto; padding: 3px; }
.unit-tok { display: inline-block; min-width: 26px; text-align: center; color: #fff; font-weight: 600;
            font-size: 0.8rem; border-radius: 5px; padding: 2px 4px; cursor: default;
            font-family: var(--font-mono); text-shadow: 0 0 2px rgba(0,0,0,0.45); }
.unit-tok:hover { outline: 2px solid #111827; }
.how-flow { display: flex; flex-wrap: wrap; align-items: stretch; gap: 6px; margin: 8px 0 14px; }
.how-box { flex: 1 1 150px; border: 1px solid #cbd5e1; border-radius: 12px; padding: 10px 12px; background: #f8fafc; }
.how-box.frozen { background: #e2e8f0; border-color: #94a3b8; }
.how-box.trained { background: #eef2ff; border-color: #a5b4fc; }
.how-title { font-weight: 700; margin-bottom: 4px; }
.how-body { font-size: 0.88rem; color: #334155; }
.how-arrow { align-self: center; font-size: 1.6rem; color: #64748b; }
.how-seq { border: 1px dashed #a5b4fc; border-radius: 12px; padding: 10px 12px; margin-bottom: 8px; }
.how-seq-title { font-weight: 700; margin-bottom: 6px; }
.seq-row { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.seq-tok { display: inline-block; min-width: 28px; text-align: center; padding: 3px 6px; border-radius: 6px;
           color: #fff; font-weight: 600; font-family: var(--font-mono); font-size: 0.85rem; }
.seq-prompt { background: #4f46e5; }
.seq-sep { background: #f59e0b; }
.seq-more { background: #94a3b8; }
.seq-next { margin-left: 8px; font-weight: 600; color: #4338ca; }
.how-legend { font-size: 0.85rem; color: #475569; margin-top: 8px; line-height: 1.9; }
.headline-note { font-size: 0.82rem; color: #475569; margin-top: 6px; }
/* Errors stay on the page (role=alert) until the next action replaces them. */
.alert { border-radius: 12px; padding: 12px 16px; background: #fef2f2; border: 1px solid #fca5a5; color: #7f1d1d; }
.alert-title { font-weight: 600; }
.alert-hint { font-size: 0.9rem; margin-top: 4px; color: #991b1b; }
#all-table th, #all-table th * { white-space: nowrap; }
#all-table td, #all-table td * { overflow-wrap: anywhere; }
/* Touch: a tapped unit token shows its timing and pitch below the tokens (hover does the same with a mouse). */
.unit-tok:focus { outline: 2px solid #111827; }
.unit-tokens:has(.unit-tok:focus)::after { content: ""; flex-basis: 100%; }
/* the tapped token's details sit in the strip's bottom padding: room for two lines on a phone */
.unit-tok:focus::after { content: attr(title); position: absolute; left: 2px; right: 2px; bottom: 0.2rem;
    font-size: 0.8rem; line-height: 1.25; color: var(--body-text-color); text-shadow: none; font-weight: 500;
    font-family: var(--font); white-space: normal; text-align: left; }
.unit-strip { position: relative; padding-bottom: 1.8rem; }
/* Phones: nothing wider than the screen; plot toolbars stay out of the way of titles. */
@media (max-width: 640px) {
  .column, .form { min-width: 0 !important; }
  /* all four tab names fit on one line at 360 px and up (narrower, they wrap: gr.Tabs(overflow_behavior="wrap")) */
  .tab-container button { padding: 6px 7px !important; font-size: 0.8rem !important; letter-spacing: -0.01em; }
  .row { flex-wrap: wrap !important; }
  .row > .column { flex-basis: 100% !important; }
  .js-plotly-plot .modebar-container { display: none !important; }
  .headline-label { font-size: 1.8rem; }
  .unit-strip { padding-bottom: 2.9rem; }  /* a tapped token's details take two lines */
  .how-arrow { transform: rotate(90deg); flex-basis: 100%; text-align: center; }
  .how-box { flex-basis: 100%; }
  /* wide tables scroll inside themselves instead of squashing every column */
  #how-text table { display: block; overflow-x: auto; }
  #how-text th, #how-text td { white-space: nowrap; }
}
.js-plotly-plot, .plot-container { max-width: 100%; }
/* A figure with nothing to draw yet (before the first answer, after a problem) is one quiet line, not a tall empty
   box with an icon. */
.sp-figure > .empty { min-height: 0 !important; height: auto !important; padding: 8px 12px !important;
                      justify-content: flex-start; }
.sp-figure > .empty .icon { display: none; }
.sp-figure > .empty::after { content: "Drawn when a clip is classified."; font-size: 0.85rem;
                             color: var(--sp-muted); }
#train-curve > .empty::after { content: "The learning curve is drawn while the prompt trains."; }
"""


def header_html(engine: Engine) -> str:
    """Title, one-line idea, and chips with the loaded backbone's real numbers."""
    d = engine.backbone.describe()
    chips = [f"backbone {html.escape(str(d['id']))}", f"frozen unit LM: {d['lm_params']:,} parameters",
             f"{d['n_units']} speech units"]
    if d.get("voice_streams"):
        chips.append(f"{d['voice_streams']['streams']} voice streams")
    chips.append(f"{len(engine.tasks)} ready-made task prompts")  # a visitor's own (Train) are extra
    return ('<div class="app-header"><h1>SpeechPrompt v2</h1><span class="tagline">One frozen speech language '
            'model, many tiny task prompts: only the prompt is trained for each task.</span></div>'
            '<div class="app-chips">' + "".join(f'<span class="chip">{c}</span>' for c in chips) + "</div>")
