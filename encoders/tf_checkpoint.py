"""Read a TensorFlow checkpoint (the V2 "tensor bundle": ``PREFIX.index`` + ``PREFIX.data-*``)
without TensorFlow.

The index is a LevelDB table: data blocks of prefix-compressed ``key -> value`` entries, an
index block pointing at them, and a 48-byte footer. Each key is a variable name; its value a
``BundleEntryProto`` (dtype, shape, shard, offset, size), parsed here with a few lines of
protobuf wire-format decoding. Only uncompressed tables and unsliced tensors are read (what
``tf.train.Saver`` writes).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["read_tf_checkpoint"]

_MAGIC = 0xDB4775248B80FB57
#: TensorFlow DataType enum -> numpy dtype (the ones checkpoints of plain models hold)
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a protobuf message: ints for varints and fixed
    widths, bytes for length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            (value,) = struct.unpack("<Q", buf[pos : pos + 8])
            pos += 8
        elif wire == 5:
            (value,) = struct.unpack("<I", buf[pos : pos + 4])
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        else:
            raise ValueError(f"protobuf wire type {wire} is not supported")
        out.append((field, value))
    return out


def _block(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    if table[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    data = table[offset : offset + size]
    (restarts,) = struct.unpack("<I", data[-4:])
    end = len(data) - 4 - 4 * restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(data, pos)
        fresh, pos = _varint(data, pos)
        vlen, pos = _varint(data, pos)
        key = key[:shared] + data[pos : pos + fresh]
        pos += fresh
        entries.append((key, data[pos : pos + vlen]))
        pos += vlen
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_tf_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint at ``prefix`` (``model.ckpt`` for ``model.ckpt.index``;
    a prefix naming a folder's files that start with a dot, as musicnn's do, is ``folder/``)."""
    prefix = str(prefix)
    table = Path(prefix + ".index").read_bytes()
    (magic,) = struct.unpack("<Q", table[-8:])
    if magic != _MAGIC:
        raise ValueError(f"{prefix}.index is not a TensorFlow checkpoint index")
    footer = table[-48:]
    _, _, pos = _handle(footer)
    index_offset, index_size, _ = _handle(footer, pos)
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    num_shards = 1
    for _, handle in _block(table, index_offset, index_size):
        offset, size, _ = _handle(handle)
        for key, value in _block(table, offset, size):
            if key == b"":  # the BundleHeaderProto
                num_shards = next((int(v) for f, v in _fields(value) if f == 1), 1)  # type: ignore[arg-type]
                continue
            entry = dict(_fields(value))
            dtype = _DTYPES.get(int(entry.get(1, 0)))  # type: ignore[arg-type]
            if dtype is None:
                continue  # strings and other kinds a model's weights do not use
            if 7 in entry:
                raise ValueError(f"{key.decode()}: sliced tensors are not supported")
            shape_msg = entry.get(2, b"")
            dims = [
                int(dict(_fields(d)).get(1, 0))  # type: ignore[arg-type]
                for f, d in _fields(shape_msg)  # type: ignore[arg-type]
                if f == 2
            ]
            shard = int(entry.get(3, 0))  # type: ignore[arg-type]
            if shard not in shards:
                shards[shard] = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}").read_bytes()
            start, size = int(entry.get(4, 0)), int(entry.get(5, 0))  # type: ignore[arg-type]
            raw = shards[shard][start : start + size]
            out[key.decode()] = np.frombuffer(raw, dtype=dtype).reshape(dims).copy()
    return out
