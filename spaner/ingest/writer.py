"""Ingest stage 4 (writer): each encoded job is one atomic ``store.add`` (vectors,
metadata with the transcripts of spoken audio, original content), counted in the report. :class:`StoreSink` writes to a vector
store; :class:`~spaner.ingest.parquet.ParquetSink` writes Parquet files. Both answer
``stored(digest)`` for the reader, so a second run skips what is there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spaner.errors import InputError

from .encoder import Result
from .reader import Job, read_content
from .report import IngestReport, Problems
from .sources import Candidate
from .transcripts import with_transcript

__all__ = ["StoreSink", "count_added", "job_contents"]


def count_added(report: IngestReport, modality: str, n: int) -> None:
    report.added += n
    by = report.added_by_modality
    by[modality] = by.get(modality, 0) + n


def job_contents(
    sp: Any, job: Job, keep: Sequence[int], problem: Problems
) -> tuple[list[int], list[bytes | str]]:
    """The contents of ``job``'s kept positions, reading again the files the encoder stage
    read itself (a file that changed since it was hashed is reported and dropped)."""
    from spaner.index import content_sha256

    enc = sp.encoders[job.modality]
    got, contents = [], []
    for i in keep:
        content = job.contents[i]
        if content is None:
            try:
                content = read_content(job.paths[i], job.texts[i], enc, job.sources[i])
                if content_sha256(content) != job.digests[i]:
                    raise InputError(job.sources[i], "the file changed while it was being ingested")
            except InputError as exc:
                problem(job.sources[i], exc.problem)
                continue
            except OSError as exc:
                problem(job.sources[i], f"cannot read: {exc.strerror or exc}")
                continue
        got.append(i)
        contents.append(content)
    return got, contents


class StoreSink:
    """Writes jobs into ``store`` (the run's default concept is already in ``job.concepts``)."""

    def __init__(self, store: Any, sp: Any, report: IngestReport, problem: Problems) -> None:
        self.store, self.sp, self.report, self.problem = store, sp, report, problem

    def stored(self, digest: str) -> bool:
        return bool(self.store.find_by_hash(digest))

    def write(self, job: Job, cands: Sequence[Candidate], result: Result) -> int:
        """Add one job's encoded items as a unit; returns how many went in."""
        from spaner.index import Item

        got, contents = job_contents(self.sp, job, result.keep, self.problem)
        if not got:
            return 0
        rows = [result.keep.index(i) for i in got]
        vecs = np.ascontiguousarray(result.vectors[rows], dtype=np.float32)
        metas = [
            Item(
                job.modality,
                source=cands[i].source,
                concept=job.concepts[i],
                extra=with_transcript(cands[i].extra, result.transcripts.get(i)),
                content=content,
            )
            for i, content in zip(got, contents, strict=True)
        ]
        self.report.transcribed += sum(i in result.transcripts for i in got)
        if result.indexed:  # the encoder stage wrote the vectors to the index under job.ids
            ids = [job.ids[i] for i in got]
            self.store.add_indexed(vecs, metas, ids, written=[job.ids[i] for i in result.keep])
        else:
            self.store.add(vecs, metas)
        count_added(self.report, job.modality, len(metas))
        return len(metas)
