"""Adding stored items: embed under the active space, skip content already stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from spaner.index import Item, content_sha256

from .inputs import Upload, embed_texts, embed_uploads
from .state import ActiveSpace

__all__ = ["NewItem", "add_items"]


@dataclass
class NewItem:
    """A text (``text``) or an upload to store, with its metadata."""

    text: str | None = None
    upload: Upload | None = None
    concept: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> str:
        return "text" if self.upload is None else self.upload.kind.modality

    @property
    def content(self) -> bytes | str:
        return self.upload.data if self.upload is not None else str(self.text)


def add_items(active: ActiveSpace, items: Sequence[NewItem]) -> tuple[list[int], list[int]]:
    """Store and index ``items``; returns (ids of every item in order, ids that were duplicates).

    An item whose content (same modality) is already stored is not added again: its
    existing id is returned and listed as a duplicate.
    """
    ids: list[int | None] = [None] * len(items)
    dups: list[int] = []
    fresh: list[int] = []
    for i, it in enumerate(items):
        existing = active.store.find_by_hash(content_sha256(it.content))
        same = (
            [
                e
                for e, m in zip(existing, active.store.get(existing), strict=True)
                if m["modality"] == it.modality
            ]
            if existing
            else []
        )
        if same:
            ids[i] = same[0]
            dups.append(same[0])
        else:
            fresh.append(i)
    if fresh:
        vecs = np.zeros((len(fresh), active.space.dim), np.float32)
        texts = [j for j, i in enumerate(fresh) if items[i].upload is None]
        files = [j for j, i in enumerate(fresh) if items[i].upload is not None]
        if texts:
            vecs[texts] = embed_texts(active, [str(items[fresh[j]].text) for j in texts])
        if files:
            vecs[files] = embed_uploads(active, [items[fresh[j]].upload for j in files])  # type: ignore[misc]
        records = [
            Item(
                items[i].modality,
                content=items[i].content,
                source=items[i].source or (items[i].upload.name if items[i].upload else None),
                concept=items[i].concept,
                extra=items[i].extra,
            )
            for i in fresh
        ]
        new_ids = active.store.add(vecs, records)
        for i, new in zip(fresh, new_ids.tolist(), strict=True):
            ids[i] = int(new)
    return [int(x) for x in ids if x is not None], dups
