"""Opsgraph: one live timeline of changes, incidents and agent actions."""

__version__ = "0.1.0"
