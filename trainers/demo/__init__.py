"""Build the embedded demo suite (issue #5): a byte-level 1-layer GELU model on the Python stdlib and two SAE seeds."""
