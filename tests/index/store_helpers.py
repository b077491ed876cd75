"""Helpers shared by the vector-store tests: seeded unit vectors and items."""

from __future__ import annotations

import importlib.util

import numpy as np
from spaner.index import Item

DIM = 16
HAS_MILVUS = (
    importlib.util.find_spec("pymilvus") is not None
    and importlib.util.find_spec("milvus_lite") is not None
)
MILVUS_SKIP = "pymilvus/milvus-lite not installed (pip install 'spaner[milvus]')"


def unit(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def items(n: int, start: int = 0, content: bool = True) -> list[Item]:
    mods = ("text", "image", "audio")
    out = []
    for i in range(start, start + n):
        m = mods[i % 3]
        content = (f"text {i}" if m == "text" else f"bytes-{i}".encode()) if content else None
        out.append(
            Item(
                modality=m,
                concept=f"c{i % 4}",
                source=f"src/{i}",
                extra={"split": i % 2, "tag": f"t{i % 5}"},
                content=content,
            )
        )
    return out
