"""Varints, multihashes, CIDs and multibase base32: the byte-level vocabulary shared by UnixFS, CAR and CommP."""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

CODEC_RAW = 0x55
CODEC_DAG_PB = 0x70
CODEC_DAG_CBOR = 0x71
CODEC_FIL_COMMITMENT_UNSEALED = 0xF101

HASH_IDENTITY = 0x00
HASH_SHA2_256 = 0x12
HASH_BLAKE2B_256 = 0xB220
HASH_SHA2_256_TRUNC254_PADDED = 0x1012
HASH_FR32_SHA256_TRUNC254_PADBINTREE = 0x1011
HASH_MURMUR3_X64_64 = 0x22


class FormatError(ValueError):
    """Bytes that do not decode as the format they claim to be."""


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_length(value: int) -> int:
    length = 1
    while value >= 0x80:
        value >>= 7
        length += 1
    return length


def decode_varint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Return (value, position after the varint). Rejects truncated and over-long (> 9 byte) varints."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise FormatError(f"truncated varint at offset {start}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise FormatError(f"varint too long at offset {start}")


def base32_lower(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def base32_decode(text: str) -> bytes:
    text = text.upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58btc_encode(data: bytes) -> str:
    num = int.from_bytes(data, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58_ALPHABET[rem] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def base58btc_decode(text: str) -> bytes:
    num = 0
    for ch in text:
        idx = _B58_ALPHABET.find(ch)
        if idx < 0:
            raise FormatError(f"invalid base58 character {ch!r}")
        num = num * 58 + idx
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def multihash(code: int, digest: bytes) -> bytes:
    return encode_varint(code) + encode_varint(len(digest)) + digest


@dataclass(frozen=True, slots=True)
class CID:
    """A content identifier: version 0 (implicit dag-pb + sha2-256) or 1."""

    version: int
    codec: int
    hash_code: int
    digest: bytes

    @classmethod
    def v1(cls, codec: int, hash_code: int, digest: bytes) -> "CID":
        return cls(1, codec, hash_code, bytes(digest))

    @classmethod
    def sha256(cls, codec: int, block: bytes | memoryview) -> "CID":
        return cls(1, codec, HASH_SHA2_256, hashlib.sha256(block).digest())

    @property
    def multihash(self) -> bytes:
        return multihash(self.hash_code, self.digest)

    def to_bytes(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return encode_varint(1) + encode_varint(self.codec) + self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return base58btc_encode(self.multihash)
        return "b" + base32_lower(self.to_bytes())

    @classmethod
    def decode(cls, buf: bytes | memoryview, pos: int = 0) -> tuple["CID", int]:
        """Decode binary CID bytes starting at pos; return (cid, position after it)."""
        if len(buf) - pos >= 2 and buf[pos] == 0x12 and buf[pos + 1] == 0x20:
            end = pos + 34
            if end > len(buf):
                raise FormatError(f"truncated CIDv0 at offset {pos}")
            return cls(0, CODEC_DAG_PB, HASH_SHA2_256, bytes(buf[pos + 2 : end])), end
        version, p = decode_varint(buf, pos)
        if version != 1:
            raise FormatError(f"unsupported CID version {version} at offset {pos}")
        codec, p = decode_varint(buf, p)
        hash_code, p = decode_varint(buf, p)
        length, p = decode_varint(buf, p)
        if p + length > len(buf):
            raise FormatError(f"truncated CID digest at offset {pos}")
        return cls(1, codec, hash_code, bytes(buf[p : p + length])), p + length

    @classmethod
    def parse(cls, text: str) -> "CID":
        """Parse the text form: base32 CIDv1 (`b…`) or base58btc CIDv0 (`Qm…`)."""
        try:
            if text.startswith("Qm") and len(text) == 46:
                raw = base58btc_decode(text)
            elif text.startswith("b"):
                raw = base32_decode(text[1:])
            else:
                raise FormatError(f"unsupported multibase in CID {text!r}")
        except (ValueError, TypeError) as exc:
            raise FormatError(f"not a CID: {text!r}") from exc
        cid, end = cls.decode(raw)
        if end != len(raw):
            raise FormatError(f"trailing bytes after CID {text!r}")
        return cid
