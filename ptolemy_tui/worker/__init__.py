"""Build worker: the subprocess entry point that claims containers and writes CARs."""
