"""Experiments behind design choices (encoders compared, what the unit streams keep); not part of the build."""
