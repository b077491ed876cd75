"""Frozen-encoder token features, computed once and cached on disk.

Cache layout: ``<root>/<encoder fingerprint>/<aa>/<content sha256>.safetensors`` holding
``tokens`` ``[T, width]`` and, when the encoder has one, ``native``. The key covers the
encoder (name, options, weights) and the input's bytes (or text), so changing either
invalidates the entry. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from spaner.encoders.base import Encoder, ItemTokens
from spaner.index.atomic_io import atomic_write_with

__all__ = [
    "FeatureCache",
    "content_hash",
    "content_key",
    "encode_items",
    "default_cache_dir",
    "cache_root",
]

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """SPANER's cache directory: ``$SPANER_CACHE``, else ``~/.cache/spaner``."""
    return Path(os.environ.get("SPANER_CACHE", Path.home() / ".cache" / "spaner"))


def default_cache_dir() -> Path:
    return cache_root() / "features"


def content_key(encoder: Encoder, content: bytes | str) -> str:
    """The cache key of content already in memory: a text, or a file's bytes (equal to
    :func:`content_hash` of the same text or file)."""
    if encoder.input_kind == "text" or isinstance(content, str):
        text = content if isinstance(content, str) else content.decode("utf-8")
        return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()
    return hashlib.sha256(content).hexdigest()


def content_hash(encoder: Encoder, value: str) -> str:
    """sha256 of the text (text encoders) or of the file's bytes."""
    h = hashlib.sha256()
    if encoder.input_kind == "text":
        h.update(b"text\0" + value.encode("utf-8"))
    else:
        with open(value, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class FeatureCache:
    """A content-addressed on-disk cache of :class:`ItemTokens`."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def _path(self, encoder: Encoder, key: str) -> Path:
        return self.root / encoder.fingerprint() / key[:2] / f"{key}.safetensors"

    def get(self, encoder: Encoder, key: str) -> ItemTokens | None:
        path = self._path(encoder, key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # a corrupt entry is recomputed, not fatal
            log.warning("feature cache entry %s is unreadable (%s); recomputing", path, exc)
            return None
        return ItemTokens(tensors["tokens"], tensors.get("native"))

    def put(self, encoder: Encoder, key: str, item: ItemTokens) -> None:
        path = self._path(encoder, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"tokens": item.tokens.contiguous()}
        if item.native is not None:
            tensors["native"] = item.native.contiguous()
        # a cache: never torn, but not fsynced (a lost entry is only recomputed)
        atomic_write_with(path, lambda tmp: save_file(tensors, tmp), fsync=False)


def encode_items(
    encoder: Encoder,
    values: Sequence[str],
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    desc: str | None = None,
) -> list[ItemTokens]:
    """Frozen features for each value (text or file path), from the cache where possible."""
    out: list[ItemTokens | None] = [None] * len(values)
    keys: list[str | None] = [None] * len(values)
    todo: list[int] = []
    for i, v in enumerate(values):
        if cache is not None:
            keys[i] = content_hash(encoder, v)
            hit = cache.get(encoder, keys[i])  # type: ignore[arg-type]
            if hit is not None:
                out[i] = hit
                continue
        todo.append(i)
    if encoder.input_kind == "text":  # a batch is padded to its longest text: batch by length
        todo.sort(key=lambda i: len(values[i]))
    if todo:
        log.info(
            "encoding %d %s item(s) with %s (%d cached)",
            len(todo),
            encoder.modality,
            encoder.name,
            len(values) - len(todo),
        )
    with tqdm(
        total=len(todo),
        desc=desc or f"encode {encoder.modality}",
        unit="item",
        disable=True if len(todo) < 2 * batch_size else None,
        leave=False,
    ) as bar:
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            batch = encoder.encode(
                [values[i] for i in idx],
                names=[values[i] if encoder.input_kind == "file" else None for i in idx],
            )
            for i, item in zip(idx, batch.split(), strict=True):
                out[i] = item
                if cache is not None:
                    cache.put(encoder, keys[i], item)  # type: ignore[arg-type]
            bar.update(len(idx))
    return out  # type: ignore[return-value]
