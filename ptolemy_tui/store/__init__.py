"""Persistence: peewee models and queries, the single source of truth for TUI, CLI and workers."""
