"""Performance tools: ``python -m app bench`` and ``python -m app loadtest``, and the process helpers they share."""
