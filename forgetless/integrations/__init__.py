"""Bridges to other evaluation tools (optional extras, imported only when used)."""
