"""The local stack: the whole API on one machine, read from template.yaml (see README)."""
