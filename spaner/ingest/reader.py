"""Ingest stage 2 (reader): read each candidate's content once (size limit checked first),
hash it (sha256), skip content already stored or already taken in this run, and group what
is left into per-modality jobs of ``batch_size`` items for the encoder stage.

Decoding (``Encoder.load``) belongs to the encoder stage, so that it runs where the encoders
run (in this process, or in Ray workers). Content that repeats within a run waits for its
first occurrence: when that decodes, the repeats count as already stored; when it is bad,
each repeat is reported with the same problem (the bytes are the same).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaner.errors import InputError

from .report import IngestReport, Problems
from .sources import Candidate

__all__ = ["Ready", "Job", "Reader", "read_content", "make_jobs"]


def read_content(path: str | Path | None, text: str | None, enc: Any, source: str) -> bytes | str:
    """An input's content as its encoder takes it: inline ``text``, or the file's bytes
    (``enc.limits`` checked before reading), or for a text encoder the file's UTF-8 text,
    stripped. Raises InputError (bad input) or OSError (unreadable)."""
    from spaner.encoders.decode import read_bytes

    if text is not None:
        return text
    data = read_bytes(Path(path), enc.limits, source)
    if enc.input_kind != "text":
        return data
    try:
        content = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InputError(source, "not UTF-8 text") from None
    if not content:
        raise InputError(source, "empty text file")
    return content


@dataclass
class Ready:
    """A candidate read and hashed, not yet decoded."""

    cand: Candidate
    content: bytes | str
    digest: str


@dataclass
class Job:
    """One encoder batch: items of one modality. ``contents[i]`` None means the encoder
    stage reads ``paths[i]`` itself (and checks it still hashes to ``digests[i]``); ``ids``
    are set when the encoder stage writes the vectors to the index itself."""

    index: int
    modality: str
    sources: list[str]
    digests: list[str]
    contents: list[bytes | str | None]
    paths: list[str | None]
    texts: list[str | None]
    concepts: list[str | None] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        """The job without file contents (workers read the files), as JSON-able data."""
        return {
            "index": self.index,
            "modality": self.modality,
            "sources": self.sources,
            "digests": self.digests,
            "paths": self.paths,
            "texts": self.texts,
            "concepts": self.concepts,
            "extras": self.extras,
            "ids": self.ids,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Job:
        return cls(
            index=int(d["index"]),
            modality=d["modality"],
            sources=list(d["sources"]),
            digests=list(d["digests"]),
            contents=list(d["texts"]),  # inline texts travel; files are read by the worker
            paths=list(d["paths"]),
            texts=list(d["texts"]),
            concepts=list(d["concepts"]),
            extras=list(d["extras"]),
            ids=d.get("ids"),
        )


class Reader:
    """Reads and hashes candidates for ``sp``'s encoders; ``stored(digest)`` tells whether
    the destination already holds that content."""

    def __init__(
        self,
        sp: Any,
        stored: Callable[[str], bool],
        report: IngestReport,
        problem: Problems,
        modalities: Sequence[str] | None = None,
    ) -> None:
        self.sp, self.stored, self.report, self.problem = sp, stored, report, problem
        self.wanted = set(modalities) if modalities else None
        self.decoded: set[str] = set()  # digests taken in this run whose first copy decoded
        self.pending: dict[str, list[Candidate]] = {}  # digest -> repeats awaiting the first

    def read(self, cand: Candidate) -> Ready | None:
        """The read candidate, or None (not wanted, already stored or taken, or reported)."""
        from spaner.index import content_sha256

        m = cand.modality
        if self.wanted is not None and m not in self.wanted:
            return None
        enc = self.sp.encoders.get(m)
        if enc is None:
            have = ", ".join(sorted(self.sp.encoders))
            self.problem(cand.source, f"the model has no {m} encoder (has: {have})", "unknown")
            return None
        try:
            content = read_content(cand.path, cand.text, enc, cand.source)
        except InputError as exc:
            self.problem(cand.source, exc.problem)
            return None
        except OSError as exc:
            self.problem(cand.source, f"cannot read: {exc.strerror or exc}")
            return None
        digest = content_sha256(content)
        if digest in self.decoded or self.stored(digest):
            self.report.skipped_present += 1
            return None
        if digest in self.pending:
            self.pending[digest].append(cand)
            return None
        self.pending[digest] = []
        return Ready(cand, content, digest)

    def settle(self, digest: str, problem: str | None) -> None:
        """The first copy of ``digest`` decoded (``problem`` None) or was bad: its repeats
        count as stored, or are reported with the same problem."""
        repeats = self.pending.pop(digest, [])
        if problem is None:
            self.decoded.add(digest)
            self.report.skipped_present += len(repeats)
        else:
            for c in repeats:
                self.problem(c.source, problem)


def make_jobs(
    ready: Iterable[Ready],
    batch_size: int,
    *,
    keep_contents: bool = True,
    concept: str | None = None,
) -> Iterator[tuple[Job, list[Candidate]]]:
    """Per-modality jobs of ``batch_size`` items (the last ones smaller), each with its
    candidates, in the order a modality's buffer fills. Without ``keep_contents`` file
    contents are left for the encoder stage to read again (inline texts always travel).
    ``concept`` labels items whose candidate has none."""
    buffers: dict[str, list[Ready]] = {}
    index = 0

    def job(items: list[Ready]) -> tuple[Job, list[Candidate]]:
        nonlocal index
        index += 1
        cands = [r.cand for r in items]
        return (
            Job(
                index=index - 1,
                modality=cands[0].modality,
                sources=[c.source for c in cands],
                digests=[r.digest for r in items],
                contents=[
                    r.content if keep_contents or r.cand.text is not None else None for r in items
                ],
                paths=[None if c.path is None else str(c.path) for c in cands],
                texts=[c.text for c in cands],
                concepts=[concept if c.concept is None else c.concept for c in cands],
                extras=[dict(c.extra) for c in cands],
            ),
            cands,
        )

    for r in ready:
        buf = buffers.setdefault(r.cand.modality, [])
        buf.append(r)
        if len(buf) >= batch_size:
            yield job(buffers.pop(r.cand.modality))
    for m in list(buffers):
        yield job(buffers.pop(m))
