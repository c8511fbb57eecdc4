"""Recipes that rebuild everything the app ships: ``python -m recipes.build.X`` (corpus, backbone, task data,
prompts, model card, examples, screenshots) and ``python -m recipes.experiments.X`` (probes that informed the
design); shared helpers in recipes/common/."""
