"""Helpers the recipes share: paths, speech synthesis, speaker splits, the task definitions, cached task units."""
