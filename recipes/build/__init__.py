"""What makes assets/ and prompts/: run each step as ``python -m recipes.build.<step> --help``."""
