"""Ingest stage 4 (writer): each encoded batch is one atomic ``store.add`` (vectors,
metadata, original content), counted in the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .report import IngestReport
from .sources import Candidate

__all__ = ["Writer"]


class Writer:
    """Writes batches into ``store``; ``concept`` labels items whose candidate has none."""

    def __init__(self, store: Any, report: IngestReport, concept: str | None = None) -> None:
        self.store, self.report, self.concept = store, report, concept

    def write(
        self,
        modality: str,
        cands: Sequence[Candidate],
        contents: Sequence[bytes | str],
        vecs: np.ndarray,
    ) -> int:
        """Add one batch as a unit; returns how many items went in."""
        from spaner.index import Item

        metas = [
            Item(
                modality,
                source=c.source,
                concept=c.concept if c.concept is not None else self.concept,
                extra=c.extra,
                content=content,
            )
            for c, content in zip(cands, contents, strict=True)
        ]
        self.store.add(np.ascontiguousarray(vecs, dtype=np.float32), metas)
        n = len(metas)
        self.report.added += n
        by = self.report.added_by_modality
        by[modality] = by.get(modality, 0) + n
        return n
