"""Textual screens of the Ptolemy TUI."""
