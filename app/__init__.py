"""SpeechPrompt v2 demo: one frozen speech unit LM, many tiny task prompts.

Data flows one way: audio (app.audio) -> units (app.units) -> unit LM + task prompt (app.lm, app.prompts)
-> verbalizer -> class probabilities (app.engine). Training loops live in app.tuning; the UI in app.ui.
"""
__version__ = "0.1.0"
