"""SpeechPrompt v2 demo: one frozen speech unit LM, many tiny task prompts.

Data flows one way: audio -> units (app.encoder) -> unit LM + task prompt (app.lm, app.prompting) -> verbalizer
-> class probabilities (app.engine serves them). Training lives in app.training, the tools in app.perf, the UI in
app.ui.
"""
__version__ = "0.1.0"
