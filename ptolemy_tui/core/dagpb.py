"""dag-pb (PBNode / PBLink) and the UnixFS Data message, byte for byte as go-codec-dagpb and @ipld/dag-pb.

Encoding rules that make CIDs match the reference tools:
- PBNode writes Links (field 2) first, then Data (field 1), although Data has the lower field number.
- PBLink writes Hash (1), Name (2), Tsize (3); UnixFS builders always set Name (possibly empty) and Tsize.
- UnixFS Data fields are written in field-number order; blocksizes are repeated, not packed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ptolemy_tui.core.multiformats import CID, FormatError, decode_varint, encode_varint, varint_length

# UnixFS Data.Type
UNIXFS_RAW = 0
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2
UNIXFS_METADATA = 3
UNIXFS_SYMLINK = 4
UNIXFS_HAMT_SHARD = 5

# The Data of every plain directory node: UnixFS {Type: Directory}.
DIRECTORY_DATA = b"\x08\x01"


def encode_link(cid: bytes, name: bytes, tsize: int) -> bytes:
    """One PBNode.Links entry (field tag included)."""
    body = b"".join((b"\x0a", encode_varint(len(cid)), cid,
                     b"\x12", encode_varint(len(name)), name,
                     b"\x18", encode_varint(tsize)))
    return b"\x12" + encode_varint(len(body)) + body


def link_length(cid_len: int, name_len: int, tsize: int) -> int:
    """len(encode_link(...)) without building it (size prediction)."""
    body = 1 + varint_length(cid_len) + cid_len + 1 + varint_length(name_len) + name_len + 1 + varint_length(tsize)
    return 1 + varint_length(body) + body


def encode_node(encoded_links: list[bytes], data: bytes | None) -> bytes:
    """A PBNode from already encoded links (in their final order) and the Data bytes (None: no Data field)."""
    parts = list(encoded_links)
    if data is not None:
        parts.append(b"\x0a" + encode_varint(len(data)) + data)
    return b"".join(parts)


def data_field_length(data_len: int) -> int:
    return 1 + varint_length(data_len) + data_len


def unixfs_data(kind: int, *, data: bytes | None = None, filesize: int | None = None,
                blocksizes: list[int] | tuple[int, ...] = (), hash_type: int | None = None,
                fanout: int | None = None) -> bytes:
    """The UnixFS Data protobuf. Empty `data` is omitted, as ipfs-unixfs does."""
    out = bytearray(b"\x08")
    out += encode_varint(kind)
    if data:
        out += b"\x12" + encode_varint(len(data)) + data
    if filesize is not None:
        out += b"\x18" + encode_varint(filesize)
    for size in blocksizes:
        out += b"\x20" + encode_varint(size)
    if hash_type is not None:
        out += b"\x28" + encode_varint(hash_type)
    if fanout is not None:
        out += b"\x30" + encode_varint(fanout)
    return bytes(out)


# ---------------------------------------------------------------- decoding (CAR reader, ls, verify)

@dataclass(frozen=True)
class PBLink:
    cid: CID
    name: bytes | None
    tsize: int | None


@dataclass
class PBNode:
    links: list[PBLink] = field(default_factory=list)
    data: bytes | None = None


@dataclass
class UnixFSData:
    kind: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None


def _fields(buf: bytes | memoryview):
    """Yield (field number, wire type, value) of a protobuf message; value is int or a memoryview."""
    mv = memoryview(buf)
    pos = 0
    end = len(mv)
    while pos < end:
        key, pos = decode_varint(mv, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_varint(mv, pos)
        elif wire == 2:
            length, pos = decode_varint(mv, pos)
            if pos + length > end:
                raise FormatError("protobuf field runs past the end of the block")
            value = mv[pos:pos + length]
            pos += length
        else:
            raise FormatError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def decode_node(buf: bytes | memoryview) -> PBNode:
    node = PBNode()
    for number, wire, value in _fields(buf):
        if number == 2 and wire == 2:
            node.links.append(_decode_link(value))
        elif number == 1 and wire == 2:
            if node.data is not None:
                raise FormatError("dag-pb node has two Data fields")
            node.data = bytes(value)
        else:
            raise FormatError(f"unexpected dag-pb PBNode field {number}")
    return node


def _decode_link(buf: memoryview) -> PBLink:
    cid = name = tsize = None
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 2:
            cid, end = CID.decode(value)
            if end != len(value):
                raise FormatError("trailing bytes after a dag-pb link CID")
        elif number == 2 and wire == 2:
            name = bytes(value)
        elif number == 3 and wire == 0:
            tsize = value
        else:
            raise FormatError(f"unexpected dag-pb PBLink field {number}")
    if cid is None:
        raise FormatError("dag-pb link without Hash")
    return PBLink(cid, name, tsize)


def decode_unixfs(buf: bytes | memoryview) -> UnixFSData:
    out = UnixFSData(kind=-1)
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            out.kind = value
        elif number == 2 and wire == 2:
            out.data = bytes(value)
        elif number == 3 and wire == 0:
            out.filesize = value
        elif number == 4 and wire == 0:
            out.blocksizes.append(value)
        elif number == 5 and wire == 0:
            out.hash_type = value
        elif number == 6 and wire == 0:
            out.fanout = value
        # mode (7) and mtime (8) are legal but not used by Ptolemy
    if out.kind < 0:
        raise FormatError("UnixFS Data without Type")
    return out
