"""Pipeline services shared by the CLI and the TUI: projects, scan, containerize, build, results."""
