"""SPANER: one embedding space for text, images and audio, aligned few-shot by a shared prompt.

The package's face is what a user needs::

    import spaner

    sp = spaner.Spaner.from_profile("offline")              # frozen encoders + aligners
    sp.fit("data/manifest.jsonl", spaner.TrainConfig(shots=5))
    sp.save("runs/model")
    space = spaner.EmbeddingSpace(sp.space_id, sp.model.dim)
    with spaner.create_store("runs/store", space) as store:
        store.add(vectors, [spaner.Item("text", content="seven", concept="7")])
        hits = store.search(query, k=5, filters=spaner.Filter(modality="image"))

These names are loaded on first use (PEP 562), so ``import spaner`` stays cheap: it imports
neither torch nor FAISS nor gradio. Frozen modality encoders (:mod:`spaner.encoders`) produce
token sequences; a learnable shared prompt and per-modality cross-attention aligners
(:mod:`spaner.model`) map them to unit vectors in one space, searched by :mod:`spaner.index`
and served by :mod:`spaner.app`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "Spaner": "spaner.pipeline",
    "TrainConfig": "spaner.model.config",
    "create_store": "spaner.index",
    "open_store": "spaner.index",
    "Filter": "spaner.index",
    "Item": "spaner.index",
    "EmbeddingSpace": "spaner.index",
    "Modality": "spaner.modality",
}

__all__ = [
    "__version__",
    "Spaner",
    "TrainConfig",
    "create_store",
    "open_store",
    "Filter",
    "Item",
    "EmbeddingSpace",
    "Modality",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads them
    from spaner.index import EmbeddingSpace, Filter, Item, create_store, open_store
    from spaner.modality import Modality
    from spaner.model.config import TrainConfig
    from spaner.pipeline import Spaner


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spaner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
