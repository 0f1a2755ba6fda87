"""Byte sizes as operators type them, and the Filecoin piece a payload of a given size lands in."""
from __future__ import annotations

import re
from dataclasses import dataclass

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

_UNITS = {"": GiB, "b": 1, "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

# A CAR must fit an unpadded 64 GiB piece with room left: the product caps car_size here.
MAX_CAR_SIZE = 63 * GiB + 512 * MiB
MIN_SHARD_SIZE = 1 * MiB


class SizeError(ValueError):
    """A size string that cannot be understood."""


def parse_size(text: str | int) -> int:
    """'17GiB', '512MiB', '1048576B', '1.5GiB', and a bare integer meaning GiB (the seed's convention)."""
    if isinstance(text, int):
        return text * GiB
    match = _SIZE_RE.match(str(text))
    if not match:
        raise SizeError(f"cannot read size {text!r}: use e.g. 17GiB, 512MiB, 1048576B, or a bare number of GiB")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise SizeError(f"unknown unit {unit!r} in size {text!r}: use B, KiB, MiB, GiB or TiB")
    if unit == "" and "." in number:
        raise SizeError(f"cannot read size {text!r}: a bare number means whole GiB")
    value = float(number) * factor if "." in number else int(number) * factor
    if value != int(value):
        raise SizeError(f"size {text!r} is not a whole number of bytes")
    return int(value)


def format_size(n: int) -> str:
    """The exact binary form that parse_size reads back ('17GiB', '1536MiB', '1000B')."""
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


@dataclass(frozen=True)
class PieceFit:
    """Where a payload of `payload` bytes lands: the padded piece and how much of it the payload uses."""

    payload: int
    padded_piece: int
    unpadded_piece: int

    @property
    def utilisation(self) -> float:
        return self.payload / self.unpadded_piece if self.unpadded_piece else 0.0


def piece_fit(payload: int) -> PieceFit:
    """Padded piece = the next power of two ≥ payload·128/127 (at least 128 bytes)."""
    needed = -(-payload * 128 // 127)
    padded = 128
    while padded < needed:
        padded <<= 1
    return PieceFit(payload, padded, padded // 128 * 127)
