"""A CommP sink that keeps what it is given, for tests of the CAR writers' sink contract: every byte after the
header through update(), then the header through set_prefix()."""
from __future__ import annotations


class RecordingSink:
    def __init__(self):
        self.data = bytearray()
        self.prefix = None

    def update(self, buf):
        self.data += bytes(buf)

    def set_prefix(self, header):
        self.prefix = bytes(header)
