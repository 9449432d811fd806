"""Placeholder: filled by the techniques work (issue 3)."""
