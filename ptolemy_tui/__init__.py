"""Ptolemy TUI: turn a large file tree into Filecoin-ready CAR files, watched live in a terminal UI."""

__version__ = "0.1.0"
